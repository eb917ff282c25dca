//! File helpers. Every file anu writes goes through [`write_atomic`]: the bytes go to a fresh
//! temporary file beside the target, are synced, and the temporary file is renamed onto the
//! target, so a crash or a full disk never leaves a half-written result. A failed write removes
//! its temporary file at once; one left by a process that was killed is removed by the next
//! write into the same folder ([`remove_stale_temp_files`]). Only regular files are replaced: a symbolic link, a folder, a device
//! or a FIFO at the target is refused. [`check_output_file`] and [`check_output_dir`] let a
//! command find an unusable output path before its long work rather than after it. JSON files
//! are read and written with errors that name the file. A download, too large to hold and meant
//! to survive an interruption, grows in a hidden partial file beside its target
//! ([`partial_path`], [`open_partial`]) and is renamed onto the target only once it is complete
//! and verified ([`finish_partial`]); the same rules hold for it.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A file operation that failed: the path, what was attempted, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {action}: {source}")]
pub struct FileError {
    /// The file or folder.
    pub path: PathBuf,
    /// What was attempted (`cannot write`, `cannot create the folder`, ...).
    pub action: &'static str,
    /// Why it failed.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// `action` on `path` failed with `source`.
    pub fn new(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Self {
            path: path.into(),
            action,
            source,
        }
    }

    /// `path` cannot be written, for the reason `why`.
    fn refused(path: &Path, kind: std::io::ErrorKind, why: String) -> Self {
        Self::new(path, "cannot write", std::io::Error::new(kind, why))
    }
}

/// Writes `bytes` to `path`, creating its folder if needed, through a temporary file in the
/// same folder that is synced and renamed onto `path`. `path` is refused when something other
/// than a regular file is there. On any failure the temporary file is removed and `path` is
/// left as it was. The new file gets the usual permissions of a new file (0666 less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::result::Result<(), FileError> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, "cannot create the folder", e))?;
    refuse_non_regular(path)?;
    sweep_once(dir);
    let mut tmp = temp_file_beside(path)?;
    fill(tmp.as_file_mut(), bytes).map_err(|e| FileError::new(path, "cannot write", e))?;
    replace(tmp, path)
}

/// The partial file in which a download of `target` grows: `.<name>.part` beside it. Its name
/// is fixed, so that an interrupted download can be found and continued later.
pub fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(target).join(format!(".{name}.part"))
}

/// Bytes already in the partial file `path` (0 when there is none). Anything there other than a
/// regular file is refused.
pub fn partial_len(path: &Path) -> std::result::Result<u64, FileError> {
    refuse_non_regular(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(FileError::new(path, "cannot inspect", e)),
    }
}

/// Opens the partial file `path` for writing, creating its folder if needed: with `resume`,
/// what it holds is kept and new bytes go after it; otherwise it starts empty. Anything there
/// other than a regular file is refused.
pub fn open_partial(path: &Path, resume: bool) -> std::result::Result<std::fs::File, FileError> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, "cannot create the folder", e))?;
    refuse_non_regular(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if resume {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options.open(path).map_err(|e| FileError::new(path, "cannot write", e))
}

/// Puts the complete, verified partial file `partial` in place as `target`: it is synced and
/// renamed onto `target`, which is refused when something other than a regular file is there.
/// On failure `target` is left as it was.
pub fn finish_partial(partial: &Path, target: &Path) -> std::result::Result<(), FileError> {
    let file = std::fs::File::open(partial).map_err(|e| FileError::new(partial, "cannot open", e))?;
    file.sync_all().map_err(|e| FileError::new(partial, "cannot sync", e))?;
    refuse_non_regular(target)?;
    std::fs::rename(partial, target).map_err(|e| FileError::new(target, "cannot rename the download onto", e))
}

/// An exclusive lock on the folder `dir`, held until the returned file is dropped: the hidden
/// lock file `.<folder name>.lock` beside the folder is locked with the operating system's
/// advisory file lock, so a second process asking for the same folder waits (after `on_wait`
/// is called once) until the first releases it or exits. Keeps two downloads into one folder
/// from growing the same partial file. The lock file stays (removing it would let a waiting
/// process and a new one lock different files).
pub fn lock_folder(dir: &Path, on_wait: impl FnOnce()) -> std::result::Result<std::fs::File, FileError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_string());
    let path = parent_dir(dir).join(format!(".{name}.lock"));
    let parent = parent_dir(&path);
    std::fs::create_dir_all(parent).map_err(|e| FileError::new(parent, "cannot create the folder", e))?;
    refuse_non_regular(&path)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FileError::new(&path, "cannot open the lock file", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            on_wait();
            file.lock().map_err(|e| FileError::new(&path, "cannot lock", e))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::Error(e)) => Err(FileError::new(&path, "cannot lock", e)),
    }
}

/// Removes the file `path` if it is there (a partial or rejected download).
pub fn remove_if_present(path: &Path) -> std::result::Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new(path, "cannot remove", e)),
    }
}

/// Writes `value` as pretty JSON to `path`, atomically (see [`write_atomic`]).
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> std::result::Result<(), FileError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| FileError::new(path, "cannot serialise", std::io::Error::other(e)))?;
    write_atomic(path, text.as_bytes())
}

/// Checks, before any long work, that [`write_atomic`] can later write `path`: its folder
/// exists or can be created, new files can be made in it, and `path`, if present, is a regular
/// file. Creates nothing (a probe file is made and removed at once).
pub fn check_output_file(path: &Path) -> std::result::Result<(), FileError> {
    check_folder_for(path, parent_dir(path))?;
    refuse_non_regular(path)
}

/// Checks, before any long work, that results can later be written into the folder `dir`:
/// it is a folder, or can be created, and new files can be made in it. Creates nothing (a
/// probe file is made and removed at once).
pub fn check_output_dir(dir: &Path) -> std::result::Result<(), FileError> {
    check_folder_for(dir, dir)
}

/// The folder that holds `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Refuses `path` when something other than a regular file is there (the link itself is
/// looked at, not what it points to). Nothing there is fine.
fn refuse_non_regular(path: &Path) -> std::result::Result<(), FileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(meta) => Err(FileError::refused(
            path,
            std::io::ErrorKind::AlreadyExists,
            format!(
                "it is {}, not a regular file; anu replaces only regular files (remove it or choose another path)",
                describe(&meta.file_type())
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new(path, "cannot inspect", e)),
    }
}

/// What kind of file system entry `kind` is, in words.
fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

/// Length of the random part of a temporary file's name.
const TEMP_RANDOM_LEN: usize = 6;

/// Age after which an unlocked temporary file of ours is taken as left by a killed process. The
/// writer locks its temporary file right after creating it, so only the instant between the two
/// needs this margin; a minute is far more than that.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// A new temporary file beside `path`, created exclusively under an unpredictable name
/// (`.<name>.XXXXXX.tmp`) and locked (the operating system's advisory lock) for as long as it
/// is open, which tells [`remove_stale_temp_files`] that a live process owns it; it is removed
/// when dropped.
fn temp_file_beside(path: &Path) -> std::result::Result<NamedTempFile, FileError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp").rand_bytes(TEMP_RANDOM_LEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(parent_dir(path))
        .map_err(|e| FileError::new(path, "cannot create a temporary file beside", e))?;
    // Where the file system has no locks the file is unlocked; it is then still safe from
    // removal while it is younger than STALE_TEMP_AGE, and a write takes far less.
    let _ = tmp.as_file().try_lock();
    Ok(tmp)
}

/// Whether `name` is one that [`temp_file_beside`] makes: `.<target name>.XXXXXX.tmp`, with
/// `XXXXXX` six letters or digits.
fn is_temp_file_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    match inner.rsplit_once('.') {
        Some((target, random)) => {
            !target.is_empty() && random.len() == TEMP_RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Removes from `dir` the temporary files that anu's writer made and a killed process left:
/// only names of the writer's form (`.<name>.XXXXXX.tmp`), only regular files older than a
/// minute, and only those that no process holds locked (a live writer holds its temporary
/// file locked until it is renamed or removed). Returns how many were removed; a file that
/// cannot be inspected, locked or removed is left as it is.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !is_temp_file_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if !meta.file_type().is_file() || !old {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Runs [`remove_stale_temp_files`] on `dir` the first time this process writes there.
fn sweep_once(dir: &Path) {
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut swept = SWEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !swept.contains(&key) {
        swept.push(key);
        drop(swept);
        remove_stale_temp_files(dir);
    }
}

/// Writes all of `bytes` to `file` and syncs it to the disk.
fn fill(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames the finished temporary file onto `path`, after checking once more that `path`
/// holds no special file. On failure the temporary file is removed.
fn replace(tmp: NamedTempFile, path: &Path) -> std::result::Result<(), FileError> {
    refuse_non_regular(path)?;
    rename_onto(tmp, path)
}

/// Renames `tmp` onto `path`; on failure `tmp` is removed.
fn rename_onto(tmp: NamedTempFile, path: &Path) -> std::result::Result<(), FileError> {
    match tmp.persist(path) {
        Ok(_) => Ok(()),
        // Dropping the returned temporary file removes it.
        Err(e) => Err(FileError::new(path, "cannot rename the temporary file onto", e.error)),
    }
}

/// Checks that files for `target` can be made in `dir`: the nearest existing one of `dir` and
/// its ancestors is a folder in which a new file can be created. Errors name `target`.
fn check_folder_for(target: &Path, dir: &Path) -> std::result::Result<(), FileError> {
    let existing = existing_ancestor(target, dir)?;
    // An anonymous file where the system has them (nothing is left even if anu is killed),
    // else an exclusively created one that is removed at once.
    tempfile::tempfile_in(&existing).map(drop).map_err(|e| {
        FileError::refused(
            target,
            e.kind(),
            format!("cannot create files in the folder {}: {e}", existing.display()),
        )
    })
}

/// `dir` when it exists, else its nearest ancestor that does (the rest would be created on
/// writing); refused when that is not a folder. Errors name `target`.
fn existing_ancestor(target: &Path, dir: &Path) -> std::result::Result<PathBuf, FileError> {
    for folder in dir.ancestors() {
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        match std::fs::metadata(folder) {
            Ok(meta) if meta.is_dir() => return Ok(folder.to_path_buf()),
            Ok(_) => {
                return Err(FileError::refused(
                    target,
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is a file, not a folder", folder.display()),
                ));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(FileError::new(folder, "cannot inspect", e)),
        }
    }
    Ok(PathBuf::from("."))
}

/// Opens `path` for reading when it is a regular file (or a link to one), and returns the open
/// file with its length. Anything else is refused before it is read: a device such as
/// `/dev/zero` never ends, a FIFO blocks until someone writes to it, and neither is data.
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    let file = std::fs::File::open(path)?;
    // What was opened may differ from what was looked at if the path was replaced meanwhile.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    Ok((file, meta.len()))
}

/// The error for reading something that is not a regular file.
fn not_regular(kind: &std::fs::FileType) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "it is {}, not a regular file; anu reads only regular files",
            describe(kind)
        ),
    )
}

/// Reads the whole of the regular file `path` (see [`open_regular`]) when it holds at most
/// `limit` bytes. A larger file is refused before any of it is read, and one that grows past
/// `limit` while it is read is refused too, so no more than `limit + 1` bytes are ever held.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let (file, len) = open_regular(path)?;
    if len > limit {
        return Err(too_large(len, limit));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// The error for a file of `len` bytes where at most `limit` are accepted.
pub fn too_large(len: u64, limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        format!("it holds {len} bytes or more, above the {limit} bytes accepted for such a file"),
    )
}

/// Largest JSON file [`read_json`] reads (result and checkpoint index files are far smaller).
pub const MAX_JSON_BYTES: u64 = 256 << 20;

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
    let bytes = match read_regular(path, MAX_JSON_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return JsonFile::Absent,
        Err(e) => return JsonFile::Corrupt(format!("cannot read: {e}")),
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => JsonFile::Valid(v),
        Err(e) => JsonFile::Corrupt(format!("not valid JSON for this file: {e}")),
    }
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> std::result::Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, "cannot create", e))
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Hex SHA-256 of everything `reader` yields, read in small pieces (the bytes are never held
/// whole).
pub fn sha256_hex_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Bytes as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_create_the_folder_and_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(&dir.path().join("a/b")), ["out.txt"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("busy");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        let mut tmp = temp_file_beside(&target).unwrap();
        fill(tmp.as_file_mut(), b"data").unwrap();
        let tmp_path = tmp.path().to_path_buf();
        assert!(tmp_path.exists());
        let err = rename_onto(tmp, &target).unwrap_err();
        assert_eq!(err.path, target);
        assert!(!tmp_path.exists(), "{} was left behind", tmp_path.display());
        assert_eq!(names(dir.path()), ["busy"]);
    }

    #[test]
    fn temporary_names_are_hidden_and_unpredictable() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.json");
        let (a, b) = (temp_file_beside(&target).unwrap(), temp_file_beside(&target).unwrap());
        for tmp in [&a, &b] {
            let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(".x.json.") && name.ends_with(".tmp"), "{name}");
            assert_ne!(name, format!(".x.json.{}.tmp", std::process::id()));
        }
        assert_ne!(a.path(), b.path());
    }

    /// Makes `dir/name` with a modification time `age` in the past.
    fn file_aged(dir: &Path, name: &str, age: std::time::Duration) -> PathBuf {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - age).unwrap();
        path
    }

    #[test]
    fn temporary_files_left_by_a_killed_writer_are_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let hour = std::time::Duration::from_secs(3600);
        // Left by killed processes: ours, old, unlocked.
        file_aged(dir.path(), ".latest.json.aB3xY9.tmp", hour);
        file_aged(dir.path(), ".epoch-0001.optim.Qw12Er.tmp", hour);
        // A live writer's: ours and old, but locked.
        let live = file_aged(dir.path(), ".table1.json.LiVe01.tmp", hour);
        let held = std::fs::File::open(&live).unwrap();
        held.try_lock().unwrap();
        // Ours but just made (the instant before the writer locks it).
        file_aged(dir.path(), ".fig3.json.NeW123.tmp", std::time::Duration::ZERO);
        // Not names our writer makes.
        for name in [".notes.tmp", "keep.abcdef.tmp", ".x.json.abc.tmp", ".data.gz.part"] {
            file_aged(dir.path(), name, hour);
        }
        write_atomic(&dir.path().join("out.json"), b"{}").unwrap();
        assert_eq!(
            names(dir.path()),
            [
                ".data.gz.part",
                ".fig3.json.NeW123.tmp",
                ".notes.tmp",
                ".table1.json.LiVe01.tmp",
                ".x.json.abc.tmp",
                "keep.abcdef.tmp",
                "out.json"
            ]
        );
        // Once the live writer is gone, its file goes too.
        drop(held);
        assert_eq!(remove_stale_temp_files(dir.path()), 1);
        assert!(!live.exists());
    }

    #[test]
    fn the_writer_makes_names_the_sweep_recognises_and_locks_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = temp_file_beside(&dir.path().join("m.safetensors")).unwrap();
        let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_temp_file_name(&name), "{name}");
        let other = std::fs::File::open(tmp.path()).unwrap();
        assert!(other.try_lock().is_err(), "a live writer's temporary file is locked");
    }

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let ours = dir.path().join("ours");
        write_atomic(&ours, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }

    #[test]
    fn checks_accept_missing_paths_and_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        check_output_file(&dir.path().join("new/deeper/out.json")).unwrap();
        check_output_dir(&dir.path().join("results/run1")).unwrap();
        check_output_file(Path::new("bare-name.json")).unwrap();
        std::fs::write(dir.path().join("old.json"), b"{}").unwrap();
        check_output_file(&dir.path().join("old.json")).unwrap();
        assert_eq!(names(dir.path()), ["old.json"]);
    }

    #[test]
    fn a_partial_download_grows_beside_its_target_and_is_renamed_onto_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/data.gz");
        let partial = partial_path(&target);
        assert_eq!(partial, dir.path().join("sub/.data.gz.part"));
        assert_eq!(partial_len(&partial).unwrap(), 0);
        open_partial(&partial, false).unwrap().write_all(b"abc").unwrap();
        open_partial(&partial, true).unwrap().write_all(b"def").unwrap();
        assert_eq!(partial_len(&partial).unwrap(), 6);
        open_partial(&partial, false).unwrap().write_all(b"xy").unwrap();
        assert_eq!(std::fs::read(&partial).unwrap(), b"xy", "without resume it starts anew");

        // A folder at the target is refused and the download kept.
        std::fs::create_dir(&target).unwrap();
        assert!(finish_partial(&partial, &target).is_err());
        assert_eq!(partial_len(&partial).unwrap(), 2);
        std::fs::remove_dir(&target).unwrap();
        finish_partial(&partial, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"xy");
        assert_eq!(names(&dir.path().join("sub")), ["data.gz"]);
        remove_if_present(&partial).unwrap();
        remove_if_present(&target).unwrap();
        assert!(names(&dir.path().join("sub")).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_in_place_of_a_partial_download_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"keep").unwrap();
        let partial = partial_path(&dir.path().join("data.gz"));
        std::os::unix::fs::symlink(&elsewhere, &partial).unwrap();
        assert!(partial_len(&partial).is_err());
        assert!(open_partial(&partial, true).is_err());
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
    }

    #[test]
    fn a_file_in_the_way_of_the_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file.txt");
        std::fs::write(&file, b"text").unwrap();
        let target = file.join("sub/out.json");
        for err in [
            check_output_file(&target).unwrap_err(),
            check_output_dir(&file).unwrap_err(),
            write_atomic(&target, b"x").unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(text.contains(&*file.to_string_lossy()), "{text}");
        }
        assert!(
            check_output_file(&target)
                .unwrap_err()
                .to_string()
                .contains("not a folder")
        );
    }
}
