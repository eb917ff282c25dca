//! Weight files: safetensors with the architecture name in the metadata (what `anu train`
//! writes, atomically), and PyTorch checkpoints (`.pth`/`.pt` state dicts, zip or legacy
//! pickle) of the built-in architectures, whose architecture the caller names.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, PytorchStore, SafetensorsStore};

use super::{Architecture, Classifier, InputSpec, ModelError, check_fits};
use crate::data::DatasetName;

/// Metadata key that records the architecture.
pub const ARCH_KEY: &str = "anu.architecture";

/// A model read from a file, with what identifies it.
#[derive(Debug)]
pub struct LoadedModel {
    /// The architecture.
    pub arch: Architecture,
    /// The model.
    pub model: Classifier,
    /// The file it came from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes (hex): identifies the weights in result files.
    pub sha256: String,
}

impl LoadedModel {
    /// The images and classes the model takes.
    pub fn input_spec(&self) -> InputSpec {
        self.arch.input_spec()
    }

    /// Checks the model can classify `dataset`'s images, with an error naming the file.
    pub fn check_fits(&self, dataset: DatasetName) -> Result<(), ModelError> {
        check_fits(self.input_spec(), self.arch.name(), &self.path, dataset)
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `model` to `path` atomically (a temporary file renamed over the target).
pub fn save(model: &Classifier, arch: Architecture, path: &Path) -> Result<(), ModelError> {
    let mut store = SafetensorsStore::from_bytes(None).metadata(ARCH_KEY, arch.name());
    model
        .save_into(&mut store)
        .map_err(|e| format_err(path, format!("cannot serialise the weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| format_err(path, format!("cannot serialise the weights: {e}")))?;
    Ok(crate::fsutil::write_atomic(path, &bytes)?)
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

/// Whether `path` names a PyTorch checkpoint (`.pth`, `.pt`).
pub fn is_pytorch(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("pth") || e.eq_ignore_ascii_case("pt"))
}

/// Reads a weight file into a model on `device`: safetensors written by [`save`] (whose
/// metadata names the architecture; `arch`, when given, must agree) or a PyTorch checkpoint of
/// architecture `arch` (required: such files do not record it).
pub fn load_as(path: &Path, arch: Option<Architecture>, device: &Device) -> Result<LoadedModel, ModelError> {
    if is_pytorch(path) {
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
        Some(a) if a != loaded.arch => Err(format_err(
            path,
            format!("holds a {} model, not {}", loaded.arch.name(), a.name()),
        )),
        _ => Ok(loaded),
    }
}

/// Refuses a model with a parameter or buffer that is not 32-bit float or holds a NaN or an
/// infinity, naming the tensor: such a model would panic or give meaningless attacks.
pub fn check_weights(model: &impl ModuleSnapshot, path: &Path) -> Result<(), ModelError> {
    for tensor in model.collect(None, None, false) {
        if tensor.dtype != burn::tensor::DType::F32 {
            return Err(format_err(
                path,
                format!("tensor {} is {:?}, not 32-bit float", tensor.name, tensor.dtype),
            ));
        }
        let bytes = tensor
            .to_bytes()
            .map_err(|e| format_err(path, format!("tensor {}: cannot read its values: {e:?}", tensor.name)))?;
        let bad = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .position(|v| !v.is_finite());
        if let Some(i) = bad {
            return Err(format_err(
                path,
                format!("tensor {} holds a non-finite value (element {i})", tensor.name),
            ));
        }
    }
    Ok(())
}

/// A loaded model, after [`check_weights`].
fn checked(arch: Architecture, model: Classifier, path: &Path, sha256: String) -> Result<LoadedModel, ModelError> {
    check_weights(&model, path)?;
    Ok(LoadedModel {
        arch,
        model,
        path: path.to_path_buf(),
        sha256,
    })
}

/// Reads a PyTorch state dict of `arch` (see [`read_pytorch_into`]).
pub fn load_pytorch(path: &Path, arch: Architecture, device: &Device) -> Result<LoadedModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        action: "cannot read",
        source,
    })?;
    let sha256 = crate::fsutil::sha256_hex(&bytes);
    drop(bytes);
    let mut model = Classifier::new(arch, device);
    read_pytorch_into(&mut model, path).map_err(|e| match e {
        ModelError::Format { path, reason } => ModelError::Format {
            path,
            reason: format!("{reason} (architecture {})", arch.name()),
        },
        other => other,
    })?;
    checked(arch, model, path, sha256)
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

/// Reads a weight file written by [`save`] into a model on `device`.
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        action: "cannot read",
        source,
    })?;
    let arch = read_architecture(path, &bytes)?;
    // The header was valid; now check every tensor's data lies inside the file.
    safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("corrupt safetensors data: {e}")))?;
    let sha256 = crate::fsutil::sha256_hex(&bytes);
    let mut model = Classifier::new(arch, device);
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).validate(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| format_err(path, format!("cannot load the weights: {e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(format_err(
            path,
            format!(
                "weights do not fit architecture {}: missing [{}], errors [{}]",
                arch.name(),
                missing.join(", "),
                errors.join("; ")
            ),
        ));
    }
    checked(arch, model, path, sha256)
}
