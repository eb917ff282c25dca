//! Which format a model file is in, told from its name, and the errors every format's reader
//! reports a file with.

use std::path::Path;

use super::ModelError;

/// The model file formats anu reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// safetensors written by `anu train` (any other extension than the ones below).
    Safetensors,
    /// A PyTorch state dict of a built-in architecture (`.pth`, `.pt`).
    PyTorch,
    /// An ONNX graph (`.onnx`).
    Onnx,
}

impl ModelFormat {
    /// The format of the file at `path`, by its extension (case-insensitive).
    pub fn of(path: &Path) -> Self {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("onnx") => ModelFormat::Onnx,
            Some("pth" | "pt") => ModelFormat::PyTorch,
            _ => ModelFormat::Safetensors,
        }
    }
}

/// `path` is not a usable model file, for `reason`.
pub(crate) fn format_err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `path` could not be read.
pub(crate) fn read_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        action: "cannot read",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_extension_in_any_case() {
        for (name, format) in [
            ("m.onnx", ModelFormat::Onnx),
            ("m.ONNX", ModelFormat::Onnx),
            ("m.pth", ModelFormat::PyTorch),
            ("m.Pt", ModelFormat::PyTorch),
            ("m.safetensors", ModelFormat::Safetensors),
            ("m", ModelFormat::Safetensors),
        ] {
            assert_eq!(ModelFormat::of(Path::new(name)), format, "{name}");
        }
    }
}
