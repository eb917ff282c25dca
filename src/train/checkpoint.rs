//! Training checkpoints: after every epoch the model, the optimiser state and the log go to
//! `<out>.ckpt/`, each file written atomically, then `latest.json` is pointed at them with the
//! SHA-256 of each, which a resumed run checks before it uses them.

use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use super::{EpochLog, TrainConfig};
use crate::error::{Error, Result};
use crate::fsutil::{JsonFile, create_dir, read_json, read_regular, sha256_hex, write_atomic, write_json};
use crate::models::{Classifier, weights};

/// Largest checkpoint file read (the optimiser state of Adam is twice the weights).
const MAX_CHECKPOINT_FILE_BYTES: u64 = 3 * weights::MAX_WEIGHT_FILE_BYTES;

/// Name of the index file that points at the latest checkpoint.
const INDEX: &str = "latest.json";

/// What `latest.json` in a checkpoint folder says.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CheckpointIndex {
    config: TrainConfig,
    epochs_done: usize,
    log: Vec<EpochLog>,
    weights: String,
    optimizer: String,
    /// SHA-256 of the weights file (absent in checkpoints written before digests were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weights_sha256: Option<String>,
    /// SHA-256 of the optimiser-state file (likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optimizer_sha256: Option<String>,
}

/// A training state restored from a checkpoint.
pub struct Restored {
    /// The model after the last finished epoch.
    pub model: Classifier,
    /// The optimiser state then.
    pub optimizer: ModuleOptimizer,
    /// The log of the finished epochs.
    pub log: Vec<EpochLog>,
}

/// Checkpoint folder that belongs to the output file `out`: `<out>.ckpt/`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".ckpt");
    out.with_file_name(name)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Restores the state saved in `ckpt` into `model` and `optimizer` (fresh ones built from
/// `config`); `None` when the folder holds no checkpoint. A checkpoint made with other
/// settings is refused.
pub fn restore(
    ckpt: &Path,
    config: &TrainConfig,
    model: Classifier,
    optimizer: ModuleOptimizer,
) -> Result<Option<Restored>> {
    let index_path = ckpt.join(INDEX);
    let index: CheckpointIndex = match read_json(&index_path) {
        JsonFile::Absent => return Ok(None),
        JsonFile::Corrupt(reason) => {
            return Err(corrupt(
                &index_path,
                format!("not a valid checkpoint index: {reason}; pass --force instead of --resume to start over"),
            ));
        }
        JsonFile::Valid(index) => index,
    };
    if index.config != *config {
        return Err(corrupt(
            ckpt,
            format!(
                "the checkpoint was made with different settings ({}); rerun with the same flags, or pass --force instead of --resume to delete it and start over",
                differences(&index.config, config)
            ),
        ));
    }
    // The burnpack record keeps each parameter's id, which the optimiser state is keyed by.
    let weights = checkpoint_file(ckpt, &index.weights)?;
    let bytes = read_regular(&weights, MAX_CHECKPOINT_FILE_BYTES)
        .map_err(|e| Error::io(&weights, "cannot read the checkpoint", e))?;
    check_digest(&weights, &bytes, index.weights_sha256.as_deref())?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| corrupt(&weights, format!("corrupt checkpoint: {e:?}")))?;
    let model = with_stable_ids(
        model
            .try_load_record(record)
            .map_err(|e| corrupt(&weights, format!("checkpoint does not fit the model: {e:?}")))?,
    );
    if let Some(problem) = weights::weight_problem(&model) {
        return Err(corrupt(
            &weights,
            format!(
                "the checkpoint holds unusable weights ({problem}); pass --force instead of --resume to start over"
            ),
        ));
    }
    let optim_path = checkpoint_file(ckpt, &index.optimizer)?;
    let bytes = read_regular(&optim_path, MAX_CHECKPOINT_FILE_BYTES)
        .map_err(|e| Error::io(&optim_path, "cannot read the optimiser state", e))?;
    check_digest(&optim_path, &bytes, index.optimizer_sha256.as_deref())?;
    let optimizer = optimizer
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| corrupt(&optim_path, format!("corrupt optimiser state: {e:?}")))?;
    Ok(Some(Restored {
        model,
        optimizer,
        log: index.log,
    }))
}

/// Refuses the bytes read from `path` when they differ from what was written there: their
/// SHA-256 is not the `expected` one the index recorded.
fn check_digest(path: &Path, bytes: &[u8], expected: Option<&str>) -> Result<()> {
    match expected {
        Some(expected) if sha256_hex(bytes) != expected => Err(corrupt(
            path,
            format!(
                "the file changed after it was written (its SHA-256 is not the {expected} that {INDEX} recorded): it is damaged; pass --force instead of --resume to start over"
            ),
        )),
        _ => Ok(()),
    }
}

/// The path of a file the index names, which must be a plain `epoch-*` name inside `ckpt`.
fn checkpoint_file(ckpt: &Path, name: &str) -> Result<PathBuf> {
    let plain = name.starts_with("epoch-") && !name.contains(['/', '\\']);
    match plain {
        true => Ok(ckpt.join(name)),
        false => Err(corrupt(
            &ckpt.join(INDEX),
            format!("names `{name}`, not a checkpoint file of this folder"),
        )),
    }
}

/// The settings that differ between a checkpoint's `saved` settings and the `current` ones,
/// in words (`epochs: 3 in the checkpoint, 2 now`).
pub fn differences(saved: &TrainConfig, current: &TrainConfig) -> String {
    let as_map = |c: &TrainConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (saved, current) = (as_map(saved), as_map(current));
    let differing: Vec<String> = saved
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .map(|(key, value)| {
            let now = current.get(key).cloned().unwrap_or(serde_json::Value::Null);
            format!("{key}: {value} in the checkpoint, {now} now")
        })
        .collect();
    match differing.is_empty() {
        true => "settings that do not compare equal".to_string(),
        false => differing.join("; "),
    }
}

/// Prepares `ckpt` for a run that does not resume. A checkpoint there, of this run or of
/// another, is never overwritten silently: it is refused with advice (see
/// [`refuse_overwrite`]), unless `force` asks to delete it and start over.
pub fn prepare_fresh_start(ckpt: &Path, config: &TrainConfig, force: bool) -> Result<()> {
    match force {
        true if std::fs::symlink_metadata(ckpt.join(INDEX)).is_ok() => remove(ckpt),
        true => Ok(()),
        false => refuse_overwrite(ckpt, config),
    }
}

/// Refuses to start a run that does not resume when `ckpt` holds a checkpoint (of this run or
/// of another), saying which and what to pass instead: `--resume` to continue it, `--force` to
/// delete it. Lets a command refuse before its long work (loading the data); changes nothing.
pub fn refuse_overwrite(ckpt: &Path, config: &TrainConfig) -> Result<()> {
    let what = match read_json::<CheckpointIndex>(&ckpt.join(INDEX)) {
        JsonFile::Absent => return Ok(()),
        JsonFile::Valid(index) if index.config == *config => format!(
            "a checkpoint of this training run after epoch {}/{}",
            index.epochs_done, config.epochs
        ),
        JsonFile::Valid(index) => format!(
            "a checkpoint of another training run ({})",
            differences(&index.config, config)
        ),
        JsonFile::Corrupt(_) => "a checkpoint that cannot be read".to_string(),
    };
    Err(corrupt(
        ckpt,
        format!(
            "holds {what}; pass --resume to continue it (with the flags it was made with), or --force to delete it and start over"
        ),
    ))
}

/// Deletes the checkpoint in `ckpt`: the index first (so that an interrupted deletion leaves
/// no index pointing at missing files), then the epoch files, then the folder if it is empty.
/// Nothing else in the folder is touched.
fn remove(ckpt: &Path) -> Result<()> {
    let index_path = ckpt.join(INDEX);
    std::fs::remove_file(&index_path).map_err(|e| Error::io(&index_path, "cannot delete", e))?;
    let entries = std::fs::read_dir(ckpt).map_err(|e| Error::io(ckpt, "cannot list", e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("epoch-") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, "cannot delete", e))?;
        }
    }
    let _ = std::fs::remove_dir(ckpt);
    Ok(())
}

/// Writes epoch files, then atomically points `latest.json` at them, then drops older files.
/// A model with a NaN or an infinity in its weights is refused, and nothing is written.
pub fn save(
    ckpt: &Path,
    config: &TrainConfig,
    model: &Classifier,
    optimizer: &ModuleOptimizer,
    log: &[EpochLog],
) -> Result<()> {
    if let Some(problem) = weights::weight_problem(model) {
        return Err(corrupt(ckpt, format!("checkpoint not written: {problem}")));
    }
    create_dir(ckpt)?;
    let epoch = log.len();
    let weights_name = format!("epoch-{epoch:04}.bpk");
    let optim_name = format!("epoch-{epoch:04}.optim");
    let record = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| corrupt(ckpt, format!("cannot serialise the model: {e:?}")))?;
    let weights_path = ckpt.join(&weights_name);
    write_atomic(&weights_path, &record)?;
    let bytes = optimizer
        .into_bytes()
        .map_err(|e| corrupt(ckpt, format!("cannot serialise the optimiser: {e:?}")))?;
    let optim_path = ckpt.join(&optim_name);
    write_atomic(&optim_path, &bytes)?;
    let index = CheckpointIndex {
        config: config.clone(),
        epochs_done: epoch,
        log: log.to_vec(),
        weights: weights_name.clone(),
        optimizer: optim_name.clone(),
        weights_sha256: Some(sha256_hex(&record)),
        optimizer_sha256: Some(sha256_hex(&bytes)),
    };
    write_json(&ckpt.join(INDEX), &index)?;
    let entries = std::fs::read_dir(ckpt).map_err(|e| Error::io(ckpt, "cannot list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("epoch-") && name != weights_name && name != optim_name {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Gives the parameters ids that depend only on their order in the model, so that the
/// optimiser state saved in a checkpoint (keyed by parameter id) finds its parameters again
/// in a model rebuilt on resume.
pub fn with_stable_ids(model: Classifier) -> Classifier {
    struct StableIds(u64);
    impl ModuleMapper for StableIds {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            let (_, value, mapper) = param.consume();
            Param::from_mapped_value(ParamId::from(self.0), value, mapper)
        }
    }
    model.map(&mut StableIds(0x616e_7500_0000))
}
