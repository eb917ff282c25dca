//! `anu train`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use anu::adversarial::Adversary;
use anu::attack::paper_config;
use anu::augment::Augmentation;
use anu::data::Split;
use anu::models::Architecture;
use anu::train::{LrSchedule, OptimizerKind, RunOptions, TrainConfig, train};

use super::Common;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Architecture (default: the small CNN of the data set).
    #[arg(long, value_enum)]
    model: Option<Architecture>,
    /// Number of epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    /// Initial learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    schedule: LrSchedule,
    /// Epochs between x0.1 steps (step schedule).
    #[arg(long, default_value_t = 30)]
    lr_step: usize,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Augmentation (default: crop-flip for CIFAR-10, none for MNIST).
    #[arg(long, value_enum)]
    augment: Option<Augmentation>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Start from these weights (fine-tuning) instead of a fresh model.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Adversarial training with this attack (paper Eq. 7).
    #[arg(long, value_parser = ["anu", "ddn"])]
    adversarial: Option<String>,
    /// Iterations of the training attack.
    #[arg(long, default_value_t = 100)]
    attack_steps: usize,
    /// Maximum L2 norm of training perturbations (default 2.4 on MNIST, 1.0 on CIFAR-10).
    #[arg(long)]
    max_norm: Option<f32>,
    /// Weight beta of the clean loss (Eq. 6); 0 is Eq. 7.
    #[arg(long, default_value_t = 0.0)]
    clean_weight: f64,
    /// Output weight file (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the checkpoint `<out>.ckpt/` if there is one.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs in this run (the checkpoint lets `--resume` go on later).
    #[arg(long)]
    stop_after_epochs: Option<usize>,
    /// Write the per-epoch log as JSON here.
    #[arg(long)]
    log_json: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let dataset = args.common.dataset;
    let arch = args.model.unwrap_or(Architecture::default_for(dataset));
    if arch.dataset() != dataset {
        anyhow::bail!("architecture {} is for {}, not {dataset}", arch.name(), arch.dataset());
    }
    let adversary = match &args.adversarial {
        Some(attack) => {
            let mut attack_config =
                paper_config(attack, dataset, false, args.attack_steps).map_err(anyhow::Error::msg)?;
            attack_config.validate().map_err(anyhow::Error::msg)?;
            attack_config.record_trace = false;
            attack_config.pass_chunk = anu::device::pass_chunk(args.common.device);
            let max_norm = args.max_norm.unwrap_or(match dataset {
                anu::data::DatasetName::Mnist => 2.4,
                anu::data::DatasetName::Cifar10 => 1.0,
            });
            if !(max_norm.is_finite() && max_norm > 0.0) {
                anyhow::bail!("--max-norm must be positive, got {max_norm}");
            }
            if !(0.0..1.0).contains(&args.clean_weight) {
                anyhow::bail!("--clean-weight must be in [0, 1), got {}", args.clean_weight);
            }
            Some(Adversary {
                attack: attack_config,
                max_norm,
                clean_weight: args.clean_weight,
            })
        }
        None => None,
    };
    let config = TrainConfig {
        arch,
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: args.optimizer,
        lr: args.lr,
        schedule: args.schedule,
        lr_step: args.lr_step,
        weight_decay: args.weight_decay,
        seed: args.seed,
        augmentation: args.augment.unwrap_or(match dataset {
            anu::data::DatasetName::Mnist => Augmentation::None,
            anu::data::DatasetName::Cifar10 => Augmentation::CropFlip,
        }),
        adversary,
        train_subset: args.train_subset,
        init_from: args.init_from.clone(),
    };
    let device = args.common.device()?;
    let train_set = args.common.load(Split::Train)?;
    let test_set = args.common.load(Split::Test)?;
    let start = std::time::Instant::now();
    let options = RunOptions {
        resume: args.resume,
        stop_after: args.stop_after_epochs,
        progress: true,
    };
    let log = train(&config, &train_set, Some(&test_set), &device, &args.out, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "config": config,
        "epochs": log,
        "wall_seconds_this_run": seconds,
        "train_seconds_total": log.iter().map(|e| e.seconds).sum::<f64>(),
        "out": args.out,
    });
    if let Some(path) = &args.log_json {
        anu::fsutil::write_atomic(path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    let last = log.last().and_then(|e| e.test_accuracy).unwrap_or(f64::NAN);
    if log.len() == config.epochs {
        println!("wrote {} (test accuracy {last:.4}, {seconds:.0} s)", args.out.display());
    } else {
        println!(
            "stopped after epoch {}/{} (test accuracy {last:.4}); continue with --resume",
            log.len(),
            config.epochs
        );
    }
    Ok(())
}
