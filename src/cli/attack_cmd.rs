//! `anu attack`: DDN or ANU on the first N test images, summarised as in Tables 1-2.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use anu::attack::stats::{TraceSummary, mean_median};
use anu::attack::{AttackConfig, AttackSet, NormUpdate, attack_all, paper_config};
use anu::data::Split;
use anu::models::weights;

use super::Common;

#[derive(Args)]
pub struct AttackArgs {
    #[command(flatten)]
    common: Common,
    /// Weight file written by `anu train`.
    #[arg(long)]
    model_file: PathBuf,
    /// The attack.
    #[arg(long, value_parser = ["anu", "ddn"], default_value = "anu")]
    attack: String,
    /// Iterations K.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Targeted: attack every image towards each of the other classes.
    #[arg(long)]
    targeted: bool,
    /// Number of test images (the first N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// DDN's gamma, or ANU's gamma_0 (default: the paper's value).
    #[arg(long)]
    gamma0: Option<f32>,
    /// ANU's initial alpha_gamma (default: the paper's value; 0 makes ANU equal DDN).
    #[arg(long)]
    alpha_gamma: Option<f32>,
    /// Floor on ANU's gamma_k (default 0: the paper's rule; see `NormUpdate::Anu`).
    #[arg(long)]
    gamma_min: Option<f32>,
    /// Round iterates to 256 levels, as the original DDN code.
    #[arg(long)]
    quantize: bool,
    /// Images per forward/backward pass inside a batch (default: 64 on CPU, whole batch on GPU).
    #[arg(long)]
    pass_chunk: Option<usize>,
    /// Record the run and add per-iteration medians (best norm, eps, gamma_k) to the JSON.
    #[arg(long)]
    trace: bool,
    /// Write the result JSON here.
    #[arg(long)]
    json: PathBuf,
}

/// The attack config from the paper's defaults and the command-line overrides.
pub fn attack_config(
    attack: &str,
    dataset: anu::data::DatasetName,
    targeted: bool,
    steps: usize,
    gamma0: Option<f32>,
    alpha_gamma: Option<f32>,
    gamma_min: Option<f32>,
) -> Result<AttackConfig> {
    let mut config = paper_config(attack, dataset, targeted, steps).map_err(anyhow::Error::msg)?;
    config.norm_update = match config.norm_update {
        NormUpdate::Ddn { gamma } => {
            if alpha_gamma.is_some() || gamma_min.is_some() {
                bail!("--alpha-gamma and --gamma-min apply to ANU only");
            }
            NormUpdate::Ddn {
                gamma: gamma0.unwrap_or(gamma),
            }
        }
        NormUpdate::Anu {
            gamma0: g,
            alpha_gamma0,
            gamma_min: floor,
        } => NormUpdate::Anu {
            gamma0: gamma0.unwrap_or(g),
            alpha_gamma0: alpha_gamma.unwrap_or(alpha_gamma0),
            gamma_min: gamma_min.unwrap_or(floor),
        },
    };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
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

pub fn run(args: AttackArgs) -> Result<()> {
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let dataset = args.common.dataset;
    let mut config = attack_config(
        &args.attack,
        dataset,
        args.targeted,
        args.steps,
        args.gamma0,
        args.alpha_gamma,
        args.gamma_min,
    )?;
    config.quantize = args.quantize;
    config.record_trace = args.trace;
    config.pass_chunk = args.pass_chunk.unwrap_or(anu::device::pass_chunk(args.common.device));
    let device = args.common.device()?;
    let named = weights::load(&args.model_file, &device)?;
    if named.arch.dataset() != dataset {
        bail!(
            "{}: a {} model cannot attack {dataset}",
            args.model_file.display(),
            named.arch.name()
        );
    }
    let test = args.common.load(Split::Test)?.take(args.n);
    let set = if args.targeted {
        AttackSet::all_other_targets(&test)
    } else {
        AttackSet::untargeted(test.clone())
    };
    let batches = set.len().div_ceil(args.batch_size) as u64;
    let bar = iteration_bar(batches * args.steps as u64, &format!("{} {}", args.attack, args.steps));
    let result = attack_all(&named.model, &set, &config, args.batch_size, &device, false, || {
        bar.inc(1)
    });
    bar.finish_and_clear();
    let (mean, median) = mean_median(&result.norms);
    let successes = result.success.iter().filter(|&&s| s).count();
    let norms: Vec<Option<f32>> = result.norms.iter().map(|n| n.is_finite().then_some(*n)).collect();
    let trace_summary = result.trace.as_ref().map(TraceSummary::of);
    let out = serde_json::json!({
        "attack": args.attack,
        "dataset": dataset,
        "model": named.arch.name(),
        "model_file": args.model_file,
        "steps": args.steps,
        "targeted": args.targeted,
        "n_images": test.len(),
        "n_attacks": set.len(),
        "batch_size": args.batch_size,
        "success_rate": successes as f64 / set.len() as f64,
        "mean_l2": mean,
        "median_l2": median,
        "seconds": result.seconds,
        "device": format!("{:?}", args.common.device),
        "config": config,
        "norms": norms,
        "trace_summary": trace_summary,
    });
    anu::fsutil::write_atomic(&args.json, serde_json::to_string_pretty(&out)?.as_bytes())?;
    println!(
        "{} {} steps{}: {} attacks, success {:.4}, mean L2 {mean:.4}, median L2 {median:.4}, {:.1} s -> {}",
        args.attack,
        args.steps,
        if args.targeted { " (targeted)" } else { "" },
        set.len(),
        successes as f64 / set.len() as f64,
        result.seconds,
        args.json.display()
    );
    Ok(())
}
