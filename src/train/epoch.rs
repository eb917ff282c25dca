//! One epoch of training: shuffle, augment, (attack,) step the optimiser, log.

use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{RunOptions, TrainConfig};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::loss::training_loss;
use crate::models::Classifier;

/// Statistics of one finished epoch.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss (on the images the model was trained on).
    pub loss: f64,
    /// Training accuracy on those images.
    pub train_accuracy: f64,
    /// Clean test accuracy after the epoch (when a test set was given).
    pub test_accuracy: Option<f64>,
    /// Mean L2 norm of the training perturbations (adversarial training only).
    pub mean_perturbation: Option<f64>,
    /// Wall time of the epoch in seconds (training only, not the test evaluation).
    pub seconds: f64,
}

/// Runs epoch `epoch` (0-based) over `train_set`; returns the model and optimiser after it
/// and the epoch's log (without test accuracy). Each epoch has its own seeds, so a resumed
/// run sees the same order and noise as an unbroken one.
pub fn run_epoch(
    config: &TrainConfig,
    train_set: &Dataset,
    mut model: Classifier,
    mut optim: ModuleOptimizer,
    epoch: usize,
    device: &Device,
    options: &RunOptions,
) -> Result<(Classifier, ModuleOptimizer, EpochLog)> {
    let ad_device = device.clone().autodiff();
    let n = train_set.len();
    let batches_per_epoch = n.div_ceil(config.batch_size);
    let total_iters = batches_per_epoch * config.epochs;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed.wrapping_add(epoch as u64 * 7919));
    device.seed(config.seed.wrapping_add(epoch as u64 * 104_729));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let bar = epoch_bar(options.progress, batches_per_epoch, epoch, config.epochs);
    let start = Instant::now();
    let (mut loss_sum, mut correct, mut seen, mut pert_sum) = (0.0f64, 0usize, 0usize, 0.0f64);
    for (bi, chunk) in order.chunks(config.batch_size).enumerate() {
        let batch = config.augmentation.apply(&train_set.select(chunk), &mut rng);
        let (clean, labels) = batch.batch(0, batch.len(), &ad_device);
        let (images, clean) = match &config.adversary {
            Some(adversary) => {
                let (adv, mean_norm) =
                    adversary.perturb(&model, clean.clone(), labels.clone(), device, options.attack_pass_chunk)?;
                pert_sum += mean_norm * chunk.len() as f64;
                let beta = adversary.clean_weight;
                (adv, (beta > 0.0).then_some((clean, beta)))
            }
            None => (clean, None),
        };
        let logits = model.forward(images.detach())?;
        let (clean_logits, beta) = match clean {
            Some((clean, beta)) => (Some(model.forward(clean)?), beta),
            None => (None, 0.0),
        };
        let loss = training_loss(clean_logits, logits.clone(), labels.clone(), beta);
        let predicted = logits.inner().argmax(1).reshape([chunk.len()]);
        correct += predicted.equal(labels.inner()).int().sum().into_scalar::<i64>() as usize;
        let loss_value = loss.clone().inner().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            return Err(Error::Training(format!(
                "diverged: the loss is {loss_value} at epoch {} batch {} of {batches_per_epoch}; nothing of this epoch was saved; lower --lr",
                epoch + 1,
                bi + 1
            )));
        }
        loss_sum += loss_value * chunk.len() as f64;
        seen += chunk.len();
        let lr = config.learning_rate(epoch, epoch * batches_per_epoch + bi, total_iters);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        bar.set_message(format!(
            "loss {:.4} acc {:.4}",
            loss_sum / seen as f64,
            correct as f64 / seen as f64
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let log = EpochLog {
        epoch: epoch + 1,
        loss: loss_sum / seen as f64,
        train_accuracy: correct as f64 / seen as f64,
        test_accuracy: None,
        mean_perturbation: config.adversary.as_ref().map(|_| pert_sum / seen as f64),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((model, optim, log))
}

fn epoch_bar(visible: bool, batches: usize, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = if visible {
        ProgressBar::new(batches as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    bar
}
