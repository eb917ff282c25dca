//! File helpers: atomic writes so that a crash never leaves a half-written result, and JSON
//! files read and written with errors that name the file.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        reason: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, text.as_bytes()).map_err(|e| Error::io(path, "cannot write", e))
}

/// What reading a JSON file found.
#[derive(Debug)]
pub enum JsonFile<T> {
    /// No file at the path.
    Absent,
    /// The file holds a valid `T`.
    Valid(T),
    /// The file exists but cannot be read or is not a valid `T`; the reason says why.
    Corrupt(String),
}

/// Reads `path` as JSON, telling an absent file from a corrupt one.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> JsonFile<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return JsonFile::Absent,
        Err(e) => return JsonFile::Corrupt(format!("cannot read: {e}")),
    };
    match serde_json::from_str(&text) {
        Ok(v) => JsonFile::Valid(v),
        Err(e) => JsonFile::Corrupt(format!("not valid JSON for this file: {e}")),
    }
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create", e))
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
