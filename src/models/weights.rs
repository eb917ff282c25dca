//! Weight files: safetensors with the architecture name in the metadata (what `anu train`
//! writes, atomically), and PyTorch checkpoints (`.pth`/`.pt` state dicts, zip or legacy
//! pickle) of the built-in architectures, whose architecture the caller names.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, PytorchStore, SafetensorsStore};

use super::format::{ModelFormat, format_err, read_err};
use super::{Architecture, Classifier, InputSpec, ModelError, check_fits};
use crate::data::DatasetName;

/// Metadata key that records the architecture.
pub const ARCH_KEY: &str = "anu.architecture";

/// Largest weight file read, of either format: several times the largest built-in
/// architecture (WRN-28-10, about 146 MB of 32-bit floats). A larger file is refused before
/// any of it is read.
pub const MAX_WEIGHT_FILE_BYTES: u64 = 1 << 30;

/// Largest safetensors header read (the limit of the safetensors format itself).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A model read from a file, with what identifies it.
#[derive(Debug)]
pub struct LoadedModel {
    /// The built-in architecture (`None` for an ONNX graph, which says what it is itself).
    pub arch: Option<Architecture>,
    /// The model.
    pub model: Classifier,
    /// The file it came from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes (hex): identifies the weights in result files.
    pub sha256: String,
    /// The images and classes the model takes.
    input_spec: InputSpec,
    /// Multiply-adds of one forward pass on one image.
    forward_macs: u64,
}

impl LoadedModel {
    /// A model made in memory (not read by [`load_model`]), described by hand: `arch` if it is
    /// one of the built-in architectures, the images and classes it takes, its multiply-adds
    /// per image, and the file it stands for.
    pub fn from_parts(
        model: Classifier,
        arch: Option<Architecture>,
        input_spec: InputSpec,
        forward_macs: u64,
        path: PathBuf,
        sha256: String,
    ) -> Self {
        Self {
            arch,
            model,
            path,
            sha256,
            input_spec,
            forward_macs,
        }
    }

    /// The model's name in reports: its architecture's, else its kind's (`onnx` for an ONNX
    /// graph).
    pub fn name(&self) -> &'static str {
        match (self.arch, &self.model) {
            (Some(arch), _) => arch.name(),
            (None, Classifier::Onnx(_)) => "onnx",
            (None, Classifier::Linear(_)) => "linear",
            (None, Classifier::SmallCnn(_)) => "small-cnn",
            (None, Classifier::WideResNet(_)) => "wide-resnet",
            (None, Classifier::EfficientNet(_)) => "efficientnet",
        }
    }

    /// The images and classes the model takes.
    pub fn input_spec(&self) -> InputSpec {
        self.input_spec
    }

    /// Multiply-adds of one forward pass on one image.
    pub fn forward_macs(&self) -> u64 {
        self.forward_macs
    }

    /// Checks the model can classify `dataset`'s images, with an error naming the file.
    pub fn check_fits(&self, dataset: DatasetName) -> Result<(), ModelError> {
        check_fits(self.input_spec(), self.name(), &self.path, dataset)
    }
}

/// Opens a weight file: a regular file of at most [`MAX_WEIGHT_FILE_BYTES`]. Returns the open
/// file and its length.
fn open_weights(path: &Path) -> Result<(std::fs::File, u64), ModelError> {
    let (file, len) = crate::fsutil::open_regular(path).map_err(|e| read_err(path, e))?;
    if len > MAX_WEIGHT_FILE_BYTES {
        return Err(read_err(path, crate::fsutil::too_large(len, MAX_WEIGHT_FILE_BYTES)));
    }
    Ok((file, len))
}

/// Reads a safetensors file whole, after checking that its length is what its header
/// declares (the 8-byte header length, the header, then the tensor data it describes): a
/// file is read only up to the size its header accounts for, and no further.
fn read_safetensors(path: &Path) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let (file, len) = open_weights(path)?;
    let mut reader = std::io::BufReader::new(file);
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(format_err(path, format!("not a safetensors file: only {len} bytes")));
    }
    reader.read_exact(&mut prefix).map_err(|e| read_err(path, e))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES || header_len > len - 8 {
        return Err(format_err(
            path,
            format!("not a safetensors file: its header length {header_len} does not fit in the {len}-byte file"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&prefix);
    (&mut reader)
        .take(header_len)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(path, e))?;
    let data_len = declared_data_len(path, &bytes[8..])?;
    let expected = 8 + header_len + data_len;
    if expected != len {
        return Err(format_err(
            path,
            format!(
                "the header describes {data_len} bytes of tensor data but the file holds {} (truncated or corrupt)",
                len - 8 - header_len
            ),
        ));
    }
    reader
        .take(data_len + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(path, e))?;
    if bytes.len() as u64 != len {
        return Err(format_err(path, "the file changed while it was read"));
    }
    Ok(bytes)
}

/// The bytes of tensor data a safetensors header declares: the largest end offset of its
/// tensors.
fn declared_data_len(path: &Path, header: &[u8]) -> Result<u64, ModelError> {
    let invalid = |why: String| format_err(path, format!("not a valid safetensors file: {why}"));
    let entries: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| invalid(format!("unreadable header: {e}")))?;
    let mut end = 0u64;
    for (name, entry) in entries.iter().filter(|(name, _)| *name != "__metadata__") {
        let offset = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| o[1].as_u64())
            .ok_or_else(|| invalid(format!("tensor {name} has no valid data offsets")))?;
        end = end.max(offset);
    }
    Ok(end)
}

/// Writes `model` to `path` atomically (a temporary file renamed over the target). The file
/// is the same bytes whenever the weights are the same (see [`canonical_safetensors`]), so
/// checksums of weight files can be compared.
pub fn save(model: &Classifier, arch: Architecture, path: &Path) -> Result<(), ModelError> {
    let mut store = SafetensorsStore::from_bytes(None).metadata(ARCH_KEY, arch.name());
    model
        .save_into(&mut store)
        .map_err(|e| format_err(path, format!("cannot serialise the weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| format_err(path, format!("cannot serialise the weights: {e}")))?;
    let bytes =
        canonical_safetensors(&bytes).map_err(|e| format_err(path, format!("cannot serialise the weights: {e}")))?;
    Ok(crate::fsutil::write_atomic(path, &bytes)?)
}

/// A safetensors file held in memory, rewritten with its header in one fixed order: the
/// metadata entries sorted by key, then the tensors in the order of their data (the data
/// itself is unchanged). The serialiser writes the metadata in an order that changes from
/// one save to the next; after this, the same tensors and metadata always give the same bytes.
pub fn canonical_safetensors(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let metadata: std::collections::BTreeMap<&String, &String> = meta.metadata().iter().flatten().collect();
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str(&format!("\"__metadata__\":{}", json(&metadata)?));
    }
    for name in meta.offset_keys() {
        let info = meta.info(&name).ok_or_else(|| format!("tensor {name} has no entry"))?;
        if header.len() > 1 {
            header.push(',');
        }
        header.push_str(&format!("{}:{}", json(&name)?, json(info)?));
    }
    header.push('}');
    // The format pads the header with spaces to a multiple of 8 bytes.
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let data = &bytes[8 + header_len..];
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// `value` as compact JSON text.
fn json(value: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

/// The architecture recorded in a weight file's metadata.
pub fn read_architecture(path: &Path, bytes: &[u8]) -> Result<Architecture, ModelError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format_err(path, format!("not a valid safetensors file: {e}")))?;
    let name = meta.metadata().as_ref().and_then(|m| m.get(ARCH_KEY)).ok_or_else(|| {
        format_err(
            path,
            format!("no `{ARCH_KEY}` entry in the metadata: not written by anu"),
        )
    })?;
    Architecture::from_name(name).ok_or_else(|| format_err(path, format!("unknown architecture `{name}`")))
}

/// Reads a weight file into a model on `device`: safetensors written by [`save`] (whose
/// metadata names the architecture; `arch`, when given, must agree) or a PyTorch checkpoint of
/// architecture `arch` (required: such files do not record it), or an ONNX file (see
/// [`load_model`]).
pub fn load_as(path: &Path, arch: Option<Architecture>, device: &Device) -> Result<LoadedModel, ModelError> {
    load_model(path, arch, None, device)
}

/// As [`load_as`], and also reads an ONNX file (`.onnx`, whose graph says what it is: `arch`
/// must be left out), with `normalization` put in front of its graph. A normalisation is
/// refused for the other formats, whose models take [0,1] images.
pub fn load_model(
    path: &Path,
    arch: Option<Architecture>,
    normalization: Option<&super::Normalization>,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    let format = ModelFormat::of(path);
    if format == ModelFormat::Onnx {
        if let Some(a) = arch {
            return Err(format_err(
                path,
                format!("an ONNX file describes its own graph: leave out --model ({})", a.name()),
            ));
        }
        let (model, sha256) = super::onnx::load(path, normalization, device)?;
        let (input_spec, forward_macs) = (model.input_spec(), model.forward_macs());
        return checked(None, Classifier::Onnx(model), (input_spec, forward_macs), path, sha256);
    }
    if normalization.is_some() {
        return Err(format_err(
            path,
            "--mean and --std apply to ONNX models only (the built-in networks take [0,1] images)",
        ));
    }
    if format == ModelFormat::PyTorch {
        let arch = arch.ok_or_else(|| {
            format_err(
                path,
                "a PyTorch checkpoint does not say which architecture it holds: name it with --model",
            )
        })?;
        return load_pytorch(path, arch, device);
    }
    let loaded = load(path, device)?;
    match arch {
        Some(a) if Some(a) != loaded.arch => Err(format_err(
            path,
            format!("holds a {} model, not {}", loaded.name(), a.name()),
        )),
        _ => Ok(loaded),
    }
}

/// Refuses a model with a parameter or buffer that is not 32-bit float or holds a NaN or an
/// infinity, naming the tensor: such a model would panic or give meaningless attacks.
pub fn check_weights(model: &impl ModuleSnapshot, path: &Path) -> Result<(), ModelError> {
    match weight_problem(model) {
        Some(problem) => Err(format_err(path, problem)),
        None => Ok(()),
    }
}

/// What is wrong with `model`'s weights, if anything: the first parameter or buffer that is
/// not 32-bit float or holds a NaN or an infinity, by name.
pub fn weight_problem(model: &impl ModuleSnapshot) -> Option<String> {
    for tensor in model.collect(None, None, false) {
        if tensor.dtype != burn::tensor::DType::F32 {
            return Some(format!(
                "tensor {} is {:?}, not 32-bit float",
                tensor.name, tensor.dtype
            ));
        }
        let bytes = match tensor.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => return Some(format!("tensor {}: cannot read its values: {e:?}", tensor.name)),
        };
        let bad = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .position(|v| !v.is_finite());
        if let Some(i) = bad {
            return Some(format!("tensor {} holds a non-finite value (element {i})", tensor.name));
        }
    }
    None
}

/// A loaded model, after [`check_weights`].
fn checked(
    arch: Option<Architecture>,
    model: Classifier,
    (input_spec, forward_macs): (InputSpec, u64),
    path: &Path,
    sha256: String,
) -> Result<LoadedModel, ModelError> {
    check_weights(&model, path)?;
    Ok(LoadedModel {
        arch,
        model,
        path: path.to_path_buf(),
        sha256,
        input_spec,
        forward_macs,
    })
}

/// A loaded model of a built-in architecture, after [`check_weights`].
fn checked_builtin(
    arch: Architecture,
    model: Classifier,
    path: &Path,
    sha256: String,
) -> Result<LoadedModel, ModelError> {
    checked(
        Some(arch),
        model,
        (arch.input_spec(), arch.forward_macs()),
        path,
        sha256,
    )
}

/// Reads a PyTorch state dict of `arch` (see [`read_pytorch_into`]). The file must be a
/// regular file of at most [`MAX_WEIGHT_FILE_BYTES`]; it is hashed in small pieces (never held
/// whole) and refused if it changes before the weights are loaded from it.
pub fn load_pytorch(path: &Path, arch: Architecture, device: &Device) -> Result<LoadedModel, ModelError> {
    use std::io::Read;
    let (file, _) = open_weights(path)?;
    let before = identity(&file).map_err(|e| read_err(path, e))?;
    let sha256 = crate::fsutil::sha256_hex_of((&file).take(MAX_WEIGHT_FILE_BYTES)).map_err(|e| read_err(path, e))?;
    let mut model = Classifier::new(arch, device);
    read_pytorch_into(&mut model, path).map_err(|e| match e {
        ModelError::Format { path, reason } => ModelError::Format {
            path,
            reason: format!("{reason} (architecture {})", arch.name()),
        },
        other => other,
    })?;
    let unchanged = std::fs::metadata(path).is_ok_and(|m| file_identity(&m) == before);
    if !unchanged {
        return Err(format_err(path, "the file changed while it was read"));
    }
    checked_builtin(arch, model, path, sha256)
}

/// What identifies a file's content without reading it: its length and modification time
/// (and, on Unix, the device and inode).
type FileIdentity = (u64, Option<std::time::SystemTime>, u64, u64);

/// The [`FileIdentity`] of an open file.
fn identity(file: &std::fs::File) -> std::io::Result<FileIdentity> {
    Ok(file_identity(&file.metadata()?))
}

/// The [`FileIdentity`] in a file's metadata.
fn file_identity(meta: &std::fs::Metadata) -> FileIdentity {
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    (meta.len(), meta.modified().ok(), dev, ino)
}

/// Loads a PyTorch state dict (`.pth`/`.pt`, zip or legacy pickle) into `module`, matching
/// PyTorch's parameter names with leading underscores dropped (`_blocks.3._bn1.weight` is
/// `blocks.3.bn1`'s gamma; linear weights are transposed). Refuses a checkpoint that does not
/// fit exactly, listing the missing, unexpected and wrong-shaped tensors by name; batch norm's
/// step counters (`num_batches_tracked`), which do not change any output, are ignored.
pub fn read_pytorch_into<M: ModuleSnapshot>(module: &mut M, path: &Path) -> Result<(), ModelError> {
    let mut store = PytorchStore::from_file(path)
        .with_key_remapping(r"^_", "")
        .with_key_remapping(r"\._", ".")
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| format_err(path, format!("not a readable PyTorch checkpoint: {e}")))?;
    let unexpected: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    if result.missing.is_empty() && result.errors.is_empty() && unexpected.is_empty() && !result.applied.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
    let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    Err(format_err(
        path,
        format!(
            "the checkpoint does not fit: missing [{}]; unexpected [{}]; wrong shape or type [{}]",
            missing.join(", "),
            unexpected.join(", "),
            errors.join("; ")
        ),
    ))
}

/// Reads a weight file written by [`save`] into a model on `device`. Only a regular file is
/// read, and only as far as its header accounts for (see [`MAX_WEIGHT_FILE_BYTES`]).
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let bytes = read_safetensors(path)?;
    let arch = read_architecture(path, &bytes)?;
    // The header was valid; now check every tensor's data lies inside the file.
    safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("corrupt safetensors data: {e}")))?;
    let sha256 = crate::fsutil::sha256_hex(&bytes);
    let mut model = Classifier::new(arch, device);
    // Partial: a tensor the file lacks is listed below by name, not refused with burn's generic
    // message.
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(true)
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| format_err(path, format!("cannot load the weights: {e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "the file lacks {} tensor(s) of the architecture: {}",
                missing.len(),
                missing.join(", ")
            ));
        }
        if !errors.is_empty() {
            problems.push(format!("tensors that do not fit: {}", errors.join("; ")));
        }
        return Err(format_err(
            path,
            format!(
                "weights do not fit the {} architecture its metadata names: {}",
                arch.name(),
                problems.join("; ")
            ),
        ));
    }
    checked_builtin(arch, model, path, sha256)
}
