//! Training checkpoints: after every epoch the model, the optimiser state and the log go to
//! `<out>.ckpt/`, each file written atomically, then `latest.json` is pointed at them.

use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use super::{EpochLog, TrainConfig};
use crate::error::{Error, Result};
use crate::fsutil::{JsonFile, create_dir, read_json, write_atomic, write_json};
use crate::models::Classifier;

/// What `latest.json` in a checkpoint folder says.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CheckpointIndex {
    config: TrainConfig,
    epochs_done: usize,
    log: Vec<EpochLog>,
    weights: String,
    optimizer: String,
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
    let index_path = ckpt.join("latest.json");
    let index: CheckpointIndex = match read_json(&index_path) {
        JsonFile::Absent => return Ok(None),
        JsonFile::Corrupt(reason) => {
            return Err(corrupt(&index_path, format!("not a valid checkpoint index: {reason}")));
        }
        JsonFile::Valid(index) => index,
    };
    if index.config != *config {
        return Err(corrupt(
            ckpt,
            format!(
                "the checkpoint was made with different settings ({:?}); rerun with the same flags or without --resume",
                index.config
            ),
        ));
    }
    // The burnpack record keeps each parameter's id, which the optimiser state is keyed by.
    let weights = ckpt.join(&index.weights);
    let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, "cannot read the checkpoint", e))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| corrupt(&weights, format!("corrupt checkpoint: {e:?}")))?;
    let model = with_stable_ids(
        model
            .try_load_record(record)
            .map_err(|e| corrupt(&weights, format!("checkpoint does not fit the model: {e:?}")))?,
    );
    let optim_path = ckpt.join(&index.optimizer);
    let bytes = std::fs::read(&optim_path).map_err(|e| Error::io(&optim_path, "cannot read the optimiser state", e))?;
    let optimizer = optimizer
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| corrupt(&optim_path, format!("corrupt optimiser state: {e:?}")))?;
    Ok(Some(Restored {
        model,
        optimizer,
        log: index.log,
    }))
}

/// Writes epoch files, then atomically points `latest.json` at them, then drops older files.
pub fn save(
    ckpt: &Path,
    config: &TrainConfig,
    model: &Classifier,
    optimizer: &ModuleOptimizer,
    log: &[EpochLog],
) -> Result<()> {
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
    };
    write_json(&ckpt.join("latest.json"), &index)?;
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
