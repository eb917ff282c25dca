//! The settings of a training run (stored in checkpoints) and what follows from them: the
//! optimiser and the learning rate at each iteration.

use std::path::PathBuf;

use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig};

use super::adversarial::Adversary;
use super::augment::Augmentation;
use crate::error::{Error, Result};
use crate::models::Architecture;

/// Which optimiser updates the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum 0.9.
    Sgd,
    /// Adam.
    Adam,
}

/// How the learning rate moves over the epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Multiply by 0.1 every `lr_step` epochs.
    Step,
    /// Cosine annealing to 0 over all iterations.
    Cosine,
    /// Constant.
    Constant,
}

/// Everything that determines a training run's result; stored in checkpoints, and a resumed
/// run must have the same. How the run executes (device, pass chunking) is not part of it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// The architecture to train.
    pub arch: Architecture,
    /// Number of epochs.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Epochs between x0.1 steps for the step schedule.
    pub lr_step: usize,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Seed for initialisation, shuffling, dropout and augmentation.
    pub seed: u64,
    /// Data augmentation of training images.
    pub augmentation: Augmentation,
    /// Attack used to make the training images adversarial, if any.
    pub adversary: Option<Adversary>,
    /// Use only the first N training images (all when absent).
    pub train_subset: Option<usize>,
    /// Start from these weights instead of a fresh initialisation (fine-tuning, e.g.
    /// adversarial epochs after clean ones as in the DDN recipe).
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

impl TrainConfig {
    /// Checks the settings before any work is done.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.epochs == 0 {
            return Err(Error::Invalid("batch size and epochs must be at least 1".into()));
        }
        if self.train_subset == Some(0) {
            return Err(Error::Invalid("the training subset must hold at least 1 image".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Invalid(format!(
                "the learning rate must be positive, got {}",
                self.lr
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::Invalid(format!(
                "the weight decay must be at least 0, got {}",
                self.weight_decay
            )));
        }
        match &self.adversary {
            Some(a) => a.validate(),
            None => Ok(()),
        }
    }

    /// A fresh optimiser for these settings.
    pub fn optimizer(&self) -> ModuleOptimizer {
        let decay = (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.optimizer {
            OptimizerKind::Sgd => SgdConfig::new()
                .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
                .with_weight_decay(decay)
                .init(),
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        }
    }

    /// Learning rate at iteration `iter` of `total`, in epoch `epoch` (0-based).
    pub fn learning_rate(&self, epoch: usize, iter: usize, total: usize) -> f64 {
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Step => self.lr * 0.1f64.powi((epoch / self.lr_step.max(1)) as i32),
            LrSchedule::Cosine => {
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * iter as f64 / total.max(1) as f64).cos())
            }
        }
    }
}
