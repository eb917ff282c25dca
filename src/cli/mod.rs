//! Subcommands of the `anu` tool.

mod attack_cmd;
mod bench_cmd;
mod reproduce_cmd;
mod robustness_cmd;
mod train_cmd;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use anu::data::{self, DatasetName, Split};
use anu::device::{DeviceKind, device};

/// Fast minimal-norm L2 adversarial attacks (ANU, DDN) and adversarial training.
#[derive(Parser)]
#[command(name = "anu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier, clean or adversarially (writes safetensors weights).
    Train(train_cmd::TrainArgs),
    /// Clean test accuracy of a trained classifier.
    Eval(EvalArgs),
    /// Attack the first N test images with DDN or ANU and summarise the norms.
    Attack(attack_cmd::AttackArgs),
    /// Reproduce the paper's Tables 1-2 and Figures 3-4 (attack evaluation).
    Reproduce(reproduce_cmd::ReproduceArgs),
    /// Accuracy vs maximum L2 norm for several models (Figures 5-6).
    Robustness(robustness_cmd::RobustnessArgs),
    /// Measure attack-iteration throughput (images x iterations per second, % of FLOP peak).
    Bench(bench_cmd::BenchArgs),
}

/// Options every subcommand shares.
#[derive(Args, Clone)]
pub struct Common {
    /// Data set.
    #[arg(long, value_enum, default_value_t = DatasetName::Mnist)]
    pub dataset: DatasetName,
    /// Folder that holds `mnist/` and `cifar10/` (default: $ANU_DATA, else ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Flex)]
    pub device: DeviceKind,
}

impl Common {
    pub fn device(&self) -> Result<burn::prelude::Device> {
        device(self.device).map_err(anyhow::Error::msg)
    }

    pub fn load(&self, split: Split) -> Result<data::Dataset> {
        let dir = data::resolve_data_dir(self.data_dir.as_deref());
        Ok(data::load(self.dataset, &dir, split)?)
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// Weight file written by `anu train`.
    #[arg(long)]
    model_file: PathBuf,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn eval(args: EvalArgs) -> Result<()> {
    let device = args.common.device()?;
    let named = anu::models::weights::load(&args.model_file, &device)?;
    if named.arch.dataset() != args.common.dataset {
        anyhow::bail!(
            "{}: a {} model cannot be evaluated on {}",
            args.model_file.display(),
            named.arch.name(),
            args.common.dataset
        );
    }
    let test = args.common.load(Split::Test)?;
    let (acc, correct) = anu::eval::accuracy(&named.model, &test, &device, 1000);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"dataset": args.common.dataset, "model": named.arch.name(), "accuracy": acc, "correct": correct, "n": test.len()})
        );
    } else {
        println!(
            "{}: {correct}/{} correct, accuracy {:.4}",
            args.model_file.display(),
            test.len(),
            acc
        );
    }
    Ok(())
}

pub fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(a) => train_cmd::run(a),
        Command::Eval(a) => eval(a),
        Command::Attack(a) => attack_cmd::run(a),
        Command::Reproduce(a) => reproduce_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::Robustness(a) => robustness_cmd::run(a),
    }
}
