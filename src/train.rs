//! Training of classifiers: standard (clean) and adversarial (paper Eq. 6-7), with a
//! progress bar, an atomic checkpoint after every epoch and `--resume`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{ModuleMapper, Param, ParamId};
use burn::optim::{
    AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use burn::tensor::activation::log_softmax;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::adversarial::Adversary;
use crate::augment::Augmentation;
use crate::data::Dataset;
use crate::eval::accuracy;
use crate::models::{Architecture, Classifier, weights};

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

/// Everything that determines a training run; stored in checkpoints.
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

/// What `latest.json` in a checkpoint folder says.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CheckpointIndex {
    config: TrainConfig,
    epochs_done: usize,
    log: Vec<EpochLog>,
    weights: String,
    optimizer: String,
}

/// Checkpoint folder that belongs to the output file `out`: `<out>.ckpt/`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".ckpt");
    out.with_file_name(name)
}

fn make_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
    }
}

/// Learning rate at iteration `iter` of `total`, in epoch `epoch` (0-based).
pub fn learning_rate(config: &TrainConfig, epoch: usize, iter: usize, total: usize) -> f64 {
    match config.schedule {
        LrSchedule::Constant => config.lr,
        LrSchedule::Step => config.lr * 0.1f64.powi((epoch / config.lr_step.max(1)) as i32),
        LrSchedule::Cosine => {
            config.lr * 0.5 * (1.0 + (std::f64::consts::PI * iter as f64 / total.max(1) as f64).cos())
        }
    }
}

/// Mean cross-entropy of `logits` against `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let b = labels.dims()[0];
    log_softmax(logits, 1).gather(1, labels.reshape([b, 1])).mean().neg()
}

/// How one invocation of [`train`] runs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Continue from the checkpoint `<out>.ckpt/` when there is one.
    pub resume: bool,
    /// Stop (after checkpointing) once this many epochs have run in this invocation; a later
    /// `resume` continues exactly where it stopped.
    pub stop_after: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
}

/// Trains a model; writes it to `out` once all epochs are done. Returns the per-epoch log
/// (of all epochs so far, resumed ones included).
pub fn train(
    config: &TrainConfig,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    device: &Device,
    out: &Path,
    options: &RunOptions,
) -> Result<Vec<EpochLog>> {
    let resume = options.resume;
    if config.batch_size == 0 || config.epochs == 0 {
        bail!("batch size and epochs must be at least 1");
    }
    let train_set = match config.train_subset {
        Some(n) => train_set.take(n),
        None => train_set.clone(),
    };
    let ad_device = device.clone().autodiff();
    device.seed(config.seed);
    let mut model = match &config.init_from {
        Some(path) => {
            let named = weights::load(path, &ad_device)?;
            if named.arch != config.arch {
                bail!(
                    "{}: holds a {} model, not {}",
                    path.display(),
                    named.arch.name(),
                    config.arch.name()
                );
            }
            with_stable_ids(named.model)
        }
        None => with_stable_ids(Classifier::new(config.arch, &ad_device)),
    };
    let mut optim = make_optimizer(config);
    let ckpt = checkpoint_dir(out);
    let mut log = Vec::new();
    if resume && let Some(index) = read_index(&ckpt)? {
        {
            if index.config != *config {
                bail!(
                    "{}: the checkpoint was made with different settings ({:?}); rerun with the same flags or without --resume",
                    ckpt.display(),
                    index.config
                );
            }
            // The burnpack record keeps each parameter's id, which the optimiser state is keyed by.
            let path = ckpt.join(&index.weights);
            let bytes =
                std::fs::read(&path).with_context(|| format!("{}: cannot read the checkpoint", path.display()))?;
            let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
                .map_err(|e| anyhow::anyhow!("{}: corrupt checkpoint: {e:?}", path.display()))?;
            model = with_stable_ids(
                model
                    .try_load_record(record)
                    .map_err(|e| anyhow::anyhow!("{}: checkpoint does not fit the model: {e:?}", path.display()))?,
            );
            let bytes = std::fs::read(ckpt.join(&index.optimizer)).with_context(|| {
                format!(
                    "{}: cannot read the optimiser state",
                    ckpt.join(&index.optimizer).display()
                )
            })?;
            optim = optim.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| {
                anyhow::anyhow!(
                    "{}: corrupt optimiser state: {e:?}",
                    ckpt.join(&index.optimizer).display()
                )
            })?;
            log = index.log;
            eprintln!("resuming from {} after epoch {}", ckpt.display(), index.epochs_done);
        }
    }

    let n = train_set.len();
    let batches_per_epoch = n.div_ceil(config.batch_size);
    let total_iters = batches_per_epoch * config.epochs;
    let first = log.len();
    let last = options
        .stop_after
        .map_or(config.epochs, |n| (first + n).min(config.epochs));
    for epoch in first..last {
        // Each epoch has its own seed so a resumed run sees the same order as an unbroken one.
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed.wrapping_add(epoch as u64 * 7919));
        device.seed(config.seed.wrapping_add(epoch as u64 * 104_729));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let bar = if options.progress {
            ProgressBar::new(batches_per_epoch as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, config.epochs));
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut pert_sum) = (0.0f64, 0usize, 0usize, 0.0f64);
        for (bi, chunk) in order.chunks(config.batch_size).enumerate() {
            let batch = train_set.select(chunk);
            let batch = config.augmentation.apply(&batch, &mut rng);
            let (images, labels) = batch.batch(0, batch.len(), &ad_device);
            let images = match &config.adversary {
                Some(adversary) => {
                    let (adv, mean_norm) = adversary.perturb(&model, images, labels.clone(), device);
                    pert_sum += mean_norm * chunk.len() as f64;
                    adv
                }
                None => images,
            };
            let logits = model.forward(images.detach());
            let loss = match &config.adversary {
                Some(adversary) if adversary.clean_weight > 0.0 => {
                    // Eq. 6: beta J(x) + (1 - beta) J(x').
                    let (clean, _) = batch.batch(0, batch.len(), &ad_device);
                    let clean_loss = cross_entropy(model.forward(clean), labels.clone());
                    let beta = adversary.clean_weight;
                    clean_loss
                        .mul_scalar(beta)
                        .add(cross_entropy(logits.clone(), labels.clone()).mul_scalar(1.0 - beta))
                }
                _ => cross_entropy(logits.clone(), labels.clone()),
            };
            let predicted = logits.inner().argmax(1).reshape([chunk.len()]);
            correct += predicted.equal(labels.inner()).int().sum().into_scalar::<i64>() as usize;
            let loss_value = loss.clone().inner().into_scalar::<f32>() as f64;
            if !loss_value.is_finite() {
                bail!(
                    "training diverged: loss is {loss_value} at epoch {} batch {bi}; lower --lr",
                    epoch + 1
                );
            }
            loss_sum += loss_value * chunk.len() as f64;
            seen += chunk.len();
            let lr = learning_rate(config, epoch, epoch * batches_per_epoch + bi, total_iters);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let test_accuracy = test_set.map(|t| accuracy(&model, t, device, 1000).0);
        let entry = EpochLog {
            epoch: epoch + 1,
            loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            test_accuracy,
            mean_perturbation: config.adversary.as_ref().map(|_| pert_sum / seen as f64),
            seconds,
        };
        eprintln!("{}", serde_json::to_string(&entry)?);
        log.push(entry);
        write_checkpoint(&ckpt, config, &model, &optim, &log)?;
    }
    if log.len() == config.epochs {
        weights::save(&model, config.arch, out)?;
    }
    Ok(log)
}

/// Gives the parameters ids that depend only on their order in the model, so that the
/// optimiser state saved in a checkpoint (keyed by parameter id) finds its parameters again
/// in a model rebuilt on resume.
fn with_stable_ids(model: Classifier) -> Classifier {
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

fn read_index(ckpt: &Path) -> Result<Option<CheckpointIndex>> {
    let path = ckpt.join("latest.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let index =
        serde_json::from_str(&text).with_context(|| format!("{}: not a valid checkpoint index", path.display()))?;
    Ok(Some(index))
}

/// Writes epoch files, then atomically points `latest.json` at them, then drops older files.
fn write_checkpoint(
    ckpt: &Path,
    config: &TrainConfig,
    model: &Classifier,
    optim: &ModuleOptimizer,
    log: &[EpochLog],
) -> Result<()> {
    std::fs::create_dir_all(ckpt).with_context(|| format!("{}: cannot create", ckpt.display()))?;
    let epoch = log.len();
    let weights_name = format!("epoch-{epoch:04}.bpk");
    let optim_name = format!("epoch-{epoch:04}.optim");
    let record = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the model: {e:?}"))?;
    crate::fsutil::write_atomic(&ckpt.join(&weights_name), &record)?;
    let bytes = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e:?}"))?;
    crate::fsutil::write_atomic(&ckpt.join(&optim_name), &bytes)?;
    let index = CheckpointIndex {
        config: config.clone(),
        epochs_done: epoch,
        log: log.to_vec(),
        weights: weights_name.clone(),
        optimizer: optim_name.clone(),
    };
    crate::fsutil::write_atomic(
        &ckpt.join("latest.json"),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )?;
    for entry in std::fs::read_dir(ckpt)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("epoch-") && name != weights_name && name != optim_name {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
