//! Attack settings and the paper's hyperparameters.

use burn::prelude::*;

use super::NormUpdate;
use crate::data::DatasetName;

/// Settings of one DDN/ANU run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackConfig {
    /// Number of iterations K (gradient computations).
    pub steps: usize,
    /// The norm-update rule: DDN or ANU.
    pub norm_update: NormUpdate,
    /// Initial sphere radius eps_0 (1 in both papers).
    pub init_eps: f32,
    /// Step size at the first iteration (1).
    pub alpha_max: f32,
    /// Step size the cosine annealing approaches at the last iteration (0.01).
    pub alpha_min: f32,
    /// Round every iterate to 256 levels, as the original DDN code does (off by default).
    pub quantize: bool,
    /// Record the per-iteration trace (best norm so far, eps, current norm per sample).
    pub record_trace: bool,
    /// Images per forward/backward pass inside a batch (0: the whole batch at once). Results
    /// do not depend on it; on a CPU, chunks of about 64 run faster than large batches.
    pub pass_chunk: usize,
}

/// Default [`AttackConfig::pass_chunk`] for CPU backends, from `anu bench`.
pub const CPU_PASS_CHUNK: usize = 64;

impl AttackConfig {
    /// A config with the papers' step-size schedule and eps_0 = 1.
    pub fn new(steps: usize, norm_update: NormUpdate) -> Self {
        Self {
            steps,
            norm_update,
            init_eps: 1.0,
            alpha_max: 1.0,
            alpha_min: 0.01,
            quantize: false,
            record_trace: false,
            pass_chunk: CPU_PASS_CHUNK,
        }
    }

    /// Checks the settings, with a readable reason when they are unusable.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if !(self.init_eps.is_finite() && self.init_eps > 0.0) {
            return Err(format!("initial eps must be positive, got {}", self.init_eps));
        }
        if !(self.alpha_min.is_finite()
            && self.alpha_max.is_finite()
            && 0.0 < self.alpha_min
            && self.alpha_min <= self.alpha_max)
        {
            return Err(format!(
                "need 0 < alpha_min <= alpha_max, got {} and {}",
                self.alpha_min, self.alpha_max
            ));
        }
        self.norm_update.validate()
    }
}

/// What the attack aims for.
#[derive(Clone, Debug)]
pub enum Goal {
    /// Any label but these true labels (`m = +1` in Alg. 1-2).
    Untargeted(Tensor<1, Int>),
    /// Exactly these target labels (`m = -1`).
    Targeted(Tensor<1, Int>),
}

impl Goal {
    /// The labels the loss is taken on.
    pub fn labels(&self) -> &Tensor<1, Int> {
        match self {
            Goal::Untargeted(l) | Goal::Targeted(l) => l,
        }
    }

    /// Whether this is a targeted attack.
    pub fn is_targeted(&self) -> bool {
        matches!(self, Goal::Targeted(_))
    }
}

/// The papers' settings for an attack of `steps` iterations on `dataset` (section 5):
/// DDN gamma 0.05; ANU untargeted gamma_0 / alpha_gamma 0.4 / 0.15 (MNIST), 0.2 / 0.1
/// (CIFAR-10); targeted 0.05 / 0.05 (MNIST), 0.15 / 0.06 (CIFAR-10).
pub fn paper_config(attack: &str, dataset: DatasetName, targeted: bool, steps: usize) -> Result<AttackConfig, String> {
    let rule = match attack {
        "ddn" => NormUpdate::Ddn { gamma: 0.05 },
        "anu" => {
            let (gamma0, alpha_gamma0) = match (dataset, targeted) {
                (DatasetName::Mnist, false) => (0.4, 0.15),
                (DatasetName::Cifar10, false) => (0.2, 0.1),
                (DatasetName::Mnist, true) => (0.05, 0.05),
                (DatasetName::Cifar10, true) => (0.15, 0.06),
            };
            NormUpdate::Anu {
                gamma0,
                alpha_gamma0,
                gamma_min: 0.0,
            }
        }
        other => return Err(format!("unknown attack `{other}` (expected anu or ddn)")),
    };
    Ok(AttackConfig::new(steps, rule))
}
