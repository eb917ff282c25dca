//! Subcommands of the `anu` tool. Each command parses its flags, loads what it needs through
//! the helpers here and calls the library; the shared flag groups live in this file.

mod attack_cmd;
mod bench_cmd;
mod data_cmd;
mod eval_cmd;
mod merge_cmd;
mod reproduce_cmd;
mod robustness_cmd;
mod train_cmd;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use anu::attack::{AttackKind, AttackSpec, Execution, SpecOverrides, paper_spec};
use anu::data::{self, DatasetName, Split};
use anu::device::{DeviceChoice, describe};
use anu::manifest::Manifest;
use anu::models::{LoadedModel, weights};

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
    Eval(eval_cmd::EvalArgs),
    /// Attack the first N test images with DDN, ANU or FMN and summarise the norms.
    Attack(attack_cmd::AttackArgs),
    /// Join the parts of a sharded `anu attack`, `robustness` or `reproduce` (`--shard I/N`).
    Merge(merge_cmd::MergeArgs),
    /// Reproduce the paper's Tables 1-2 and Figures 3-4 (attack evaluation).
    Reproduce(reproduce_cmd::ReproduceArgs),
    /// Accuracy vs maximum L2 norm for several models (Figures 5-6).
    Robustness(robustness_cmd::RobustnessArgs),
    /// Measure attack-iteration throughput (images x iterations per second, % of FLOP peak).
    Bench(bench_cmd::BenchArgs),
    /// Manage the data folder: `anu data fetch --dataset mnist` downloads a data set.
    Data(data_cmd::DataArgs),
}

/// Options every subcommand shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Data set.
    #[arg(long, value_enum, default_value_t = DatasetName::Mnist)]
    pub dataset: DatasetName,
    /// Folder that holds `mnist/` and `cifar10/` (default: $ANU_DATA, else ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute device: flex (CPU), wgpu[:N] (any GPU; a software Vulkan driver on a machine
    /// without one), vulkan[:N], cuda[:N], ndarray or libtorch. GPU backends need the build's
    /// cargo feature of the same name.
    #[arg(long, default_value = "flex")]
    pub device: DeviceChoice,
    /// Architecture: for `train` the one to build (default: the data set's); for a PyTorch
    /// checkpoint (.pth/.pt), which does not record it, the one it holds.
    #[arg(long, value_enum)]
    pub model: Option<anu::models::Architecture>,
    /// For an ONNX model (`--model-file F.onnx`), the per-channel mean its graph expects its
    /// images normalised with, comma-separated (e.g. 0.4914,0.4822,0.4465): attacks work on
    /// [0,1] images and `(x - mean) / std` is put in front of the graph. Needs `--std`.
    #[arg(long, value_delimiter = ',', num_args = 1.., requires = "std")]
    pub mean: Option<Vec<f32>>,
    /// For an ONNX model, the per-channel standard deviation of that normalisation. Needs `--mean`.
    #[arg(long, value_delimiter = ',', num_args = 1.., requires = "mean")]
    pub std: Option<Vec<f32>>,
    /// Download the data set (MNIST, CIFAR-10) into the data folder first when its files are
    /// not there, as `anu data fetch` does.
    #[arg(long)]
    pub fetch: bool,
}

impl Common {
    /// The chosen device.
    pub fn device(&self) -> Result<burn::prelude::Device> {
        Ok(self.device.open()?)
    }

    /// The chosen device as it names itself (a GPU's model), for reports.
    pub fn device_name(&self) -> String {
        match self.device() {
            Ok(device) => describe(self.device, &device),
            Err(_) => self.device.to_string(),
        }
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        data::resolve_data_dir(self.data_dir.as_deref())
    }

    /// One split of the data set; with `--fetch`, downloaded first when its files are missing.
    pub fn load(&self, split: Split) -> Result<data::Dataset> {
        let dir = self.data_dir();
        match data::load(self.dataset, &dir, split) {
            Err(data::DataError::Missing(_)) if self.fetch && self.dataset != DatasetName::ImagenetSample => {
                eprintln!(
                    "{}: files missing in {}, downloading them",
                    self.dataset,
                    dir.join(self.dataset.info().folder).display()
                );
                data::fetch::fetch_dataset(self.dataset, &dir, &[], &data::fetch::FetchOptions::default())?;
                Ok(data::load(self.dataset, &dir, split)?)
            }
            loaded => Ok(loaded?),
        }
    }

    /// The normalisation `--mean` and `--std` give, if any.
    pub fn normalization(&self) -> Option<anu::models::Normalization> {
        match (&self.mean, &self.std) {
            (Some(mean), Some(std)) => Some(anu::models::Normalization {
                mean: mean.clone(),
                std: std.clone(),
            }),
            _ => None,
        }
    }

    /// A model file (safetensors, a PyTorch checkpoint of `--model`, or an ONNX graph with
    /// `--mean`/`--std` in front), checked to fit the data set.
    pub fn load_model(&self, path: &Path, device: &burn::prelude::Device) -> Result<LoadedModel> {
        let loaded = weights::load_model(path, self.model, self.normalization().as_ref(), device)?;
        loaded.check_fits(self.dataset)?;
        Ok(loaded)
    }

    /// A manifest of this run with `models`.
    pub fn manifest(&self, models: &[&LoadedModel]) -> Manifest {
        let command: Vec<String> = std::env::args().collect();
        Manifest::new(command.join(" "), self.device, self.device_name(), models, self.dataset)
    }
}

/// The shard this run is (`flag`, else the one a scheduler's variables name; said on
/// stderr), and where the run writes what an unsharded run writes to `path`.
pub fn shard_and_output(flag: Option<anu::shard::Shard>, path: &Path) -> Result<(Option<anu::shard::Shard>, PathBuf)> {
    let shard = anu::shard::Shard::from_flag_or_env(flag)?.map(|(shard, said)| {
        eprintln!("{said}");
        shard
    });
    let out = match shard {
        Some(s) if s.count > 1 => s.output_path(path),
        _ => path.to_path_buf(),
    };
    Ok((shard, out))
}

/// The attack and changes to the paper's settings for it.
#[derive(Args, Clone, Debug)]
pub struct SpecArgs {
    /// The attack.
    #[arg(long, value_enum, default_value_t = AttackKind::Anu)]
    pub attack: AttackKind,
    /// DDN's gamma, or ANU's gamma_0 (default: the paper's value).
    #[arg(long)]
    pub gamma0: Option<f32>,
    /// ANU's initial alpha_gamma (default: the paper's value; 0 makes ANU equal DDN).
    #[arg(long)]
    pub alpha_gamma: Option<f32>,
    /// Floor on ANU's gamma_k (default 0: the paper's rule; see `NormUpdate::Anu`).
    #[arg(long)]
    pub gamma_min: Option<f32>,
    /// Round iterates to 256 levels, as the original DDN code.
    #[arg(long)]
    pub quantize: bool,
}

impl SpecArgs {
    /// The paper's settings for `steps` iterations on `dataset`, with the overrides applied.
    pub fn spec(&self, dataset: DatasetName, targeted: bool, steps: usize) -> Result<AttackSpec> {
        let overrides = SpecOverrides {
            gamma0: self.gamma0,
            alpha_gamma: self.alpha_gamma,
            gamma_min: self.gamma_min,
            quantize: self.quantize,
        };
        Ok(paper_spec(self.attack, dataset, targeted, steps)?.with_overrides(&overrides)?)
    }
}

/// Batch size and pass chunking of attacks.
#[derive(Args, Clone, Debug)]
pub struct ExecArgs {
    /// Attacks per batch (default: 1000 for MNIST and CIFAR-10; for ImageNet 25 on a CPU,
    /// 100 on a GPU).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Images per forward/backward pass inside a batch (default: 64 on CPU, whole batch on GPU).
    #[arg(long)]
    pub pass_chunk: Option<usize>,
}

impl ExecArgs {
    /// The execution settings on `device` for `dataset`.
    pub fn execution(&self, device: DeviceChoice, dataset: DatasetName) -> Result<Execution> {
        let backend = device.backend();
        let info = dataset.info();
        let default = if backend.is_cpu() {
            info.default_batch_size
        } else {
            info.default_gpu_batch_size
        };
        let batch = self.batch_size.unwrap_or(default);
        let exec = Execution::for_device(backend, batch)?;
        Ok(match self.pass_chunk {
            Some(chunk) => exec.with_pass_chunk(chunk),
            None => exec,
        })
    }
}

/// A progress bar over `total` attack iterations.
pub fn iteration_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} iterations, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Refuses a count of zero for `flag`.
pub fn at_least_one(value: usize, flag: &str) -> Result<()> {
    if value == 0 {
        anyhow::bail!("{flag} must be at least 1");
    }
    Ok(())
}

pub fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(a) => train_cmd::run(a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Attack(a) => attack_cmd::run(a),
        Command::Merge(a) => merge_cmd::run(a),
        Command::Reproduce(a) => reproduce_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::Robustness(a) => robustness_cmd::run(a),
        Command::Data(a) => data_cmd::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anu::attack::{Anu, Ddn, NormUpdate};

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn attack_flags_parse_into_a_validated_spec() {
        let cli = parse("anu attack --dataset cifar10 --model-file m.safetensors --attack ddn --steps 70 --gamma0 0.1 --json o.json").unwrap();
        let Command::Attack(args) = cli.command else {
            panic!("not the attack command")
        };
        assert_eq!(args.common.dataset, DatasetName::Cifar10);
        let spec = args.spec_args.spec(args.common.dataset, false, args.steps).unwrap();
        assert_eq!(spec.norm_update(), NormUpdate::Ddn(Ddn { gamma: 0.1 }));
        assert_eq!(spec.steps(), 70);
        let exec = args.exec.execution(DeviceChoice::FLEX, DatasetName::Mnist).unwrap();
        assert_eq!((exec.batch_size(), exec.pass_chunk()), (1000, 64));
        assert_eq!(
            args.exec
                .execution("cuda".parse().unwrap(), DatasetName::Mnist)
                .unwrap()
                .pass_chunk(),
            0
        );

        // The paper's ANU settings by default, per data set and goal.
        let cli = parse("anu attack --model-file m --targeted --json o.json").unwrap();
        let Command::Attack(args) = cli.command else {
            panic!("not the attack command")
        };
        assert_eq!(args.spec_args.attack, AttackKind::Anu);
        let spec = args.spec_args.spec(DatasetName::Mnist, true, 100).unwrap();
        assert_eq!(
            spec.norm_update(),
            NormUpdate::Anu(Anu {
                gamma0: 0.05,
                alpha_gamma0: 0.05,
                gamma_min: 0.0
            })
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        assert!(parse("anu attack --model-file m --attack fgsm --json o").is_err());
        assert!(parse("anu attack --model-file m --dataset imagenet --json o").is_err());
        assert!(parse("anu attack --model-file m --model resnet --json o").is_err());
        assert!(parse("anu attack --model-file m --steps -3 --json o").is_err());
        assert!(parse("anu reproduce --out d --untargeted-only --targeted-only").is_err());
        let cli = parse("anu attack --model-file m --attack ddn --alpha-gamma 0.1 --json o").unwrap();
        let Command::Attack(args) = cli.command else {
            panic!("not the attack command")
        };
        let err = args.spec_args.spec(DatasetName::Mnist, false, 10).unwrap_err();
        assert!(err.to_string().contains("--alpha-gamma"), "{err}");
        let cli = parse("anu attack --model-file m --attack fmn --gamma-min 0.1 --json o").unwrap();
        let Command::Attack(args) = cli.command else {
            panic!("not the attack command")
        };
        assert!(args.spec_args.spec(DatasetName::Mnist, false, 10).is_err());
        let cli = parse("anu attack --model-file m --gamma0 1.5 --batch-size 0 --json o").unwrap();
        let Command::Attack(args) = cli.command else {
            panic!("not the attack command")
        };
        assert!(args.spec_args.spec(DatasetName::Mnist, false, 10).is_err());
        assert!(args.exec.execution(DeviceChoice::FLEX, DatasetName::Mnist).is_err());
    }

    #[test]
    fn imagenet_defaults_come_from_the_data_set() {
        let cli = parse("anu attack --dataset imagenet-sample --model efficientnet-lite0 --model-file m.pth --json o")
            .unwrap();
        let Command::Attack(args) = cli.command else {
            panic!("not the attack command")
        };
        assert_eq!(args.common.model, Some(anu::models::Architecture::EfficientNetLite0));
        let exec = args.exec.execution(DeviceChoice::FLEX, args.common.dataset).unwrap();
        assert_eq!(exec.batch_size(), 25);
        let spec = args.spec_args.spec(args.common.dataset, false, 100).unwrap();
        assert_eq!(
            spec.norm_update(),
            NormUpdate::Anu(Anu {
                gamma0: 0.1,
                alpha_gamma0: 0.08,
                gamma_min: 0.0
            })
        );
    }

    #[test]
    fn reproduce_and_train_flags_parse() {
        let cli =
            parse("anu reproduce --out d --n 10 --budgets 5,7 --attacks anu --batch-size 16 --pass-chunk 4").unwrap();
        let Command::Reproduce(args) = cli.command else {
            panic!("not reproduce")
        };
        assert_eq!(args.budgets, Some(vec![5, 7]));
        assert_eq!(args.attacks, vec![AttackKind::Anu]);
        assert_eq!(
            args.exec
                .execution(DeviceChoice::FLEX, DatasetName::Mnist)
                .unwrap()
                .pass_chunk(),
            4
        );
        let cli = parse("anu train --dataset cifar10 --adversarial ddn --attack-steps 20 --out m.safetensors").unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        let config = train_cmd::config(&args).unwrap();
        let adversary = config.adversary.unwrap();
        assert_eq!(adversary.attack.kind(), AttackKind::Ddn);
        assert_eq!(adversary.attack.steps(), 20);
        assert_eq!(adversary.max_norm, 1.0, "CIFAR-10's maximum norm by default");
        assert!(parse("anu train --adversarial cw --out m").is_err());
        let bad = parse("anu train --adversarial anu --max-norm=-1 --out m").unwrap();
        let Command::Train(args) = bad.command else {
            panic!("not train")
        };
        assert!(train_cmd::config(&args).is_err());
    }
}
