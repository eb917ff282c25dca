//! The library's error type: every failure names what it concerns (a file, a setting).

use std::path::PathBuf;

use crate::attack::settings::SpecError;
use crate::data::DataError;
use crate::data::fetch::FetchError;
use crate::models::ModelError;

/// A failure of a library operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file could not be read or is malformed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A data set could not be downloaded.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A model file could not be read, written or used.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Attack settings are unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A file or folder could not be read, written or created.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was attempted (`cannot write`, `cannot create`, ...).
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A figure could not be drawn.
    #[error("{path}: cannot draw: {reason}")]
    Figure {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A training checkpoint cannot be used.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Training stopped because it went wrong (diverged, bad settings).
    #[error("training: {0}")]
    Training(String),
    /// The requested device is not in this build.
    #[error("{0}")]
    Unavailable(String),
    /// The model computed a NaN or an infinity, so nothing it answers can be trusted.
    #[error(
        "the model gives NaN or infinite {what} for {images} of {of} images (weights too large for f32 arithmetic, or broken); no result is reported"
    )]
    NonFinite {
        /// What was not finite (`logits`, `logits or input gradients`).
        what: &'static str,
        /// Images concerned.
        images: usize,
        /// Images looked at.
        of: usize,
    },
    /// A setting of a run (batch size, count, ...) is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::fsutil::FileError> for Error {
    fn from(e: crate::fsutil::FileError) -> Self {
        Error::Io {
            path: e.path,
            action: e.action,
            source: e.source,
        }
    }
}

impl Error {
    /// This error with `model`'s file named when the error is the model's own (it computed a
    /// NaN or an infinity); any other error as it is.
    pub fn blamed_on(self, model: &crate::models::LoadedModel) -> Self {
        match self {
            Error::NonFinite { .. } => crate::models::format::format_err(&model.path, self.to_string()).into(),
            other => other,
        }
    }

    /// An I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
