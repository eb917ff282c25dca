//! Weight files: safetensors with the architecture name in the metadata, written atomically.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use super::{Architecture, Classifier, NamedClassifier};

/// Metadata key that records the architecture.
pub const ARCH_KEY: &str = "anu.architecture";

/// A failure to read or write a weight file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn err(path: &Path, reason: impl Into<String>) -> WeightsError {
    WeightsError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `model` to `path` atomically (a temporary file renamed over the target).
pub fn save(model: &Classifier, arch: Architecture, path: &Path) -> Result<(), WeightsError> {
    let mut store = SafetensorsStore::from_bytes(None).metadata(ARCH_KEY, arch.name());
    model
        .save_into(&mut store)
        .map_err(|e| err(path, format!("cannot serialise the weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| err(path, format!("cannot serialise the weights: {e}")))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|e| err(path, format!("cannot write: {e}")))
}

/// The architecture recorded in a weight file's metadata.
pub fn read_architecture(path: &Path, bytes: &[u8]) -> Result<Architecture, WeightsError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| err(path, format!("not a valid safetensors file: {e}")))?;
    let name = meta.metadata().as_ref().and_then(|m| m.get(ARCH_KEY)).ok_or_else(|| {
        err(
            path,
            format!("no `{ARCH_KEY}` entry in the metadata: not written by anu"),
        )
    })?;
    Architecture::from_name(name).ok_or_else(|| err(path, format!("unknown architecture `{name}`")))
}

/// Reads a weight file written by [`save`] into a model on `device`.
pub fn load(path: &Path, device: &Device) -> Result<NamedClassifier, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let arch = read_architecture(path, &bytes)?;
    // The header was valid; now check every tensor's data lies inside the file.
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(path, format!("corrupt safetensors data: {e}")))?;
    let mut model = Classifier::new(arch, device);
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).validate(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| err(path, format!("cannot load the weights: {e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(err(
            path,
            format!(
                "weights do not fit architecture {}: missing [{}], errors [{}]",
                arch.name(),
                missing.join(", "),
                errors.join("; ")
            ),
        ));
    }
    Ok(NamedClassifier { arch, model })
}
