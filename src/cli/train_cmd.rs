//! `anu train`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use anu::attack::{AttackKind, Execution, paper_spec};
use anu::data::Split;
use anu::models::Architecture;
use anu::train::adversarial::Adversary;
use anu::train::augment::Augmentation;
use anu::train::{LrSchedule, OptimizerKind, RunOptions, TrainConfig, train};

use super::{Common, at_least_one};

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    common: Common,
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
    #[arg(long, value_enum)]
    adversarial: Option<AttackKind>,
    /// Iterations of the training attack.
    #[arg(long, default_value_t = 100)]
    attack_steps: usize,
    /// Maximum L2 norm of training perturbations (default 2.4 on MNIST, 1.0 on CIFAR-10).
    #[arg(long)]
    max_norm: Option<f32>,
    /// Weight beta of the clean loss (Eq. 6); 0 is Eq. 7.
    #[arg(long, default_value_t = 0.0)]
    clean_weight: f64,
    /// Images per forward/backward pass of the training attack (default: 64 on CPU, whole batch on GPU).
    #[arg(long)]
    pass_chunk: Option<usize>,
    /// Output weight file (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the checkpoint `<out>.ckpt/` if there is one (made with the same flags).
    #[arg(long)]
    resume: bool,
    /// Start over: delete a checkpoint in `<out>.ckpt/` (without --resume or --force, a
    /// checkpoint there is never replaced).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Stop after this many epochs in this run (the checkpoint lets `--resume` go on later).
    #[arg(long)]
    stop_after_epochs: Option<usize>,
    /// Write the per-epoch log as JSON here.
    #[arg(long)]
    log_json: Option<PathBuf>,
}

/// The training settings the flags ask for, checked.
pub fn config(args: &TrainArgs) -> Result<TrainConfig> {
    let dataset = args.common.dataset;
    let info = dataset.info();
    let arch = args.common.model.unwrap_or(Architecture::default_for(dataset));
    anu::models::check_fits(arch.input_spec(), arch.name(), std::path::Path::new("--model"), dataset)?;
    let adversary = match args.adversarial {
        Some(attack) => Some(Adversary::new(
            paper_spec(attack, dataset, false, args.attack_steps)?,
            args.max_norm.unwrap_or(info.training_max_norm),
            args.clean_weight,
        )?),
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
        augmentation: args.augment.unwrap_or(Augmentation::standard(dataset)),
        adversary,
        train_subset: args.train_subset,
        init_from: args.init_from.clone(),
    };
    config.validate()?;
    Ok(config)
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(n) = args.stop_after_epochs {
        at_least_one(n, "--stop-after-epochs")?;
    }
    anu::fsutil::check_output_file(&args.out)?;
    anu::fsutil::check_output_dir(&anu::train::checkpoint_dir(&args.out))?;
    if let Some(path) = &args.log_json {
        anu::fsutil::check_output_file(path)?;
    }
    let config = config(&args)?;
    if !args.resume && !args.force {
        // Before the data is loaded: a checkpoint in the way is refused at once.
        anu::train::checkpoint::refuse_overwrite(&anu::train::checkpoint_dir(&args.out), &config)?;
    }
    let device = args.common.device()?;
    let train_set = args.common.load(Split::Train)?;
    let test_set = args.common.load(Split::Test)?;
    let start = std::time::Instant::now();
    let exec = Execution::for_device(args.common.device.backend(), config.batch_size)?;
    let options = RunOptions {
        resume: args.resume,
        force: args.force,
        stop_after: args.stop_after_epochs,
        progress: true,
        attack_pass_chunk: args.pass_chunk.unwrap_or(exec.pass_chunk()),
    };
    let log = train(&config, &train_set, Some(&test_set), &device, &args.out, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    if let Some(path) = &args.log_json {
        let summary = serde_json::json!({
            "config": config,
            "epochs": log,
            "wall_seconds_this_run": seconds,
            "train_seconds_total": log.iter().map(|e| e.seconds).sum::<f64>(),
            "out": args.out,
            "manifest": args.common.manifest(&[]),
        });
        anu::fsutil::write_json(path, &summary)?;
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
