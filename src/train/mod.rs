//! Training of classifiers: standard (clean) and adversarial (paper Eq. 6-7), with a
//! progress bar, an atomic checkpoint after every epoch and resume.
//!
//! [`config`] holds the settings, [`checkpoint`] the saved state, [`epoch`] one pass over the
//! data; [`train`] ties them together.

pub mod adversarial;
pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod epoch;

use std::path::Path;

use burn::prelude::*;

pub use checkpoint::checkpoint_dir;
pub use config::{LrSchedule, OptimizerKind, TrainConfig};
pub use epoch::EpochLog;

use crate::attack::CPU_PASS_CHUNK;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::{Classifier, weights};

/// How one invocation of [`train`] runs; none of it changes the trained model.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Continue from the checkpoint `<out>.ckpt/` when there is one.
    pub resume: bool,
    /// Start over, deleting a checkpoint in `<out>.ckpt/` (without it, a run that does not
    /// resume refuses to replace a checkpoint).
    pub force: bool,
    /// Stop (after checkpointing) once this many epochs have run in this invocation; a later
    /// `resume` continues exactly where it stopped.
    pub stop_after: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
    /// Images per forward/backward pass of the training attack (see [`crate::attack::Execution`]).
    pub attack_pass_chunk: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resume: false,
            force: false,
            stop_after: None,
            progress: false,
            attack_pass_chunk: CPU_PASS_CHUNK,
        }
    }
}

/// Trains a model; writes it to `out` once all epochs are done. Returns the per-epoch log
/// (of all epochs so far, resumed ones included).
///
/// Training stops with an error at the first non-finite loss, and weights holding a NaN or an
/// infinity are never saved, neither as a checkpoint nor as the final model. A checkpoint
/// already in `<out>.ckpt/` is continued with `options.resume`, deleted with `options.force`,
/// and otherwise refused.
pub fn train(
    config: &TrainConfig,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    device: &Device,
    out: &Path,
    options: &RunOptions,
) -> Result<Vec<EpochLog>> {
    config.validate()?;
    if options.resume && options.force {
        return Err(Error::Invalid(
            "--resume continues a checkpoint and --force deletes it: pass only one".into(),
        ));
    }
    if options.stop_after == Some(0) {
        return Err(Error::Invalid(
            "--stop-after-epochs must be at least 1 (a run of no epoch trains nothing)".into(),
        ));
    }
    let train_set = match config.train_subset {
        Some(n) => train_set.take(n),
        None => train_set.clone(),
    };
    if train_set.is_empty() {
        return Err(Error::Invalid("no training images".into()));
    }
    // A batch larger than the training set is the whole set.
    crate::machine::check_batch_fits(
        "--batch-size",
        config.batch_size.min(train_set.len()),
        train_set.image_len(),
        crate::machine::TRAINING_COPIES,
        None,
    )?;
    device.seed(config.seed);
    let model = initial_model(config, &device.clone().autodiff())?;
    let ckpt = checkpoint_dir(out);
    if !options.resume {
        checkpoint::prepare_fresh_start(&ckpt, config, options.force)?;
    }
    let (mut model, mut optim, mut log) = match options.resume {
        true => match checkpoint::restore(&ckpt, config, model.clone(), config.optimizer())? {
            Some(restored) => {
                eprintln!("resuming from {} after epoch {}", ckpt.display(), restored.log.len());
                (restored.model, restored.optimizer, restored.log)
            }
            None => (model, config.optimizer(), Vec::new()),
        },
        false => (model, config.optimizer(), Vec::new()),
    };

    let first = log.len();
    let last = options
        .stop_after
        .map_or(config.epochs, |n| (first + n).min(config.epochs));
    for epoch in first..last {
        let (trained, optimizer, entry) = epoch::run_epoch(config, &train_set, model, optim, epoch, device, options)?;
        ensure_finite(&trained, Some(epoch + 1))?;
        model = trained;
        optim = optimizer;
        let test_accuracy = match test_set {
            Some(t) => Some(crate::eval::accuracy(&model, t, device, 1000)?.0),
            None => None,
        };
        let entry = EpochLog { test_accuracy, ..entry };
        eprintln!("{}", serde_json::to_string(&entry).unwrap_or_default());
        log.push(entry);
        checkpoint::save(&ckpt, config, &model, &optim, &log)?;
    }
    if log.len() == config.epochs {
        ensure_finite(&model, None)?;
        weights::save(&model, config.arch, out)?;
    }
    Ok(log)
}

/// Refuses weights that hold a NaN or an infinity (after epoch `epoch`, 1-based, when given),
/// so that they are never saved.
fn ensure_finite(model: &Classifier, epoch: Option<usize>) -> Result<()> {
    let Some(problem) = weights::weight_problem(model) else {
        return Ok(());
    };
    let when = epoch.map_or(String::new(), |e| format!(" after epoch {e}"));
    Err(Error::Training(format!(
        "diverged: the weights are not finite{when} ({problem}); nothing was saved; lower --lr"
    )))
}

/// The model training starts from: the weights of `init_from`, or a fresh initialisation.
fn initial_model(config: &TrainConfig, device: &Device) -> Result<Classifier> {
    let model = match &config.init_from {
        Some(path) => {
            let loaded = weights::load(path, device)?;
            if loaded.arch != Some(config.arch) {
                return Err(Error::Invalid(format!(
                    "{}: holds a {} model, not {}",
                    path.display(),
                    loaded.name(),
                    config.arch.name()
                )));
            }
            loaded.model
        }
        None => Classifier::new(config.arch, device),
    };
    Ok(checkpoint::with_stable_ids(model))
}
