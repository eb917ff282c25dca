//! `anu attack`: DDN, ANU or FMN on the first N test images, summarised as in Tables 1-2.
//!
//! The results so far are saved after every batch in a partial file beside the result
//! (`.NAME.part`); the same command run again after an interruption continues from there, and
//! the partial file is removed once the result is written.
//!
//! With `--shard I/N` (or a Slurm array task or Kubernetes Indexed Job, from their variables)
//! it attacks part I of N of the set and writes `NAME.shard-I-of-N.json`; `anu merge` makes
//! the unsharded result of the parts.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

use anu::attack::report::{summarise, throughput};
use anu::attack::stats::TraceSummary;
use anu::attack::{
    AttackReport, AttackSet, Campaign, EveryStep, OnOtherCampaign, Precision, SavedCampaign, TraceRecorder,
};
use anu::data::Split;
use anu::shard::{Shard, ShardPart};

use super::{Common, ExecArgs, SpecArgs, at_least_one, iteration_bar, shard_and_output};

#[derive(Args)]
pub struct AttackArgs {
    #[command(flatten)]
    pub common: Common,
    /// Weight file written by `anu train`.
    #[arg(long)]
    model_file: PathBuf,
    #[command(flatten)]
    pub spec_args: SpecArgs,
    /// Iterations K.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Targeted: attack every image towards the data set's targets (each other class; 20 random
    /// ones on ImageNet).
    #[arg(long)]
    targeted: bool,
    /// Number of test images (the first N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Precision of the attack's passes: f32, or tf32 / bf16 (emulated: weights and iterates
    /// rounded to the format; every success is then confirmed in f32, and a failed check makes
    /// it a failure).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Record the run and add per-iteration medians (best norm, eps, gamma_k) to the JSON. A
    /// traced run is not saved batch by batch and cannot be resumed.
    #[arg(long)]
    trace: bool,
    /// Write the result JSON here. Until it is written, the results so far are kept in
    /// `.NAME.part` beside it, and the same command continues from them.
    #[arg(long)]
    json: PathBuf,
    /// Attack only part I (from 0) of N of the set, e.g. 2/8, and write it to
    /// NAME.shard-I-of-N.json; `anu merge` joins the parts. Without it, a Slurm array task or
    /// a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with ANU_SHARD_COUNT) runs its part;
    /// 0/1 runs the whole set there.
    #[arg(long)]
    shard: Option<Shard>,
}

pub fn run(args: AttackArgs) -> Result<()> {
    let (shard, json_path) = shard_and_output(args.shard, &args.json)?;
    if shard.is_some() && args.trace {
        anyhow::bail!("--trace records whole runs: it cannot be used on a shard (--shard 0/1 runs the whole set)");
    }
    anu::fsutil::check_output_file(&json_path)?;
    at_least_one(args.n, "--n")?;
    let dataset = args.common.dataset;
    let spec = args.spec_args.spec(dataset, args.targeted, args.steps)?;
    let execution = args
        .exec
        .execution(args.common.device, args.common.dataset)?
        .with_precision(args.precision);
    let device = args.common.device()?;
    let loaded = args.common.load_model(&args.model_file, &device)?;
    let test = args.common.load(Split::Test)?.take(args.n);
    let whole = if args.targeted {
        AttackSet::targeted(&test, dataset.info().targets)
    } else {
        AttackSet::untargeted(test.clone())
    };
    // The set is split after it is made, so a shard attacks exactly what the unsharded run
    // attacks in those places (ImageNet's random targets included).
    let (set, part) = match shard {
        Some(s) => {
            let range = s.range(whole.len(), execution.batch_size());
            let part = ShardPart {
                shard: s,
                first: range.start,
                end: range.end,
                total: whole.len(),
                set_sha256: whole.sha256(),
            };
            eprintln!("shard {s}: attacks {}..{} of {}", range.start, range.end, whole.len());
            (whole.slice(range), Some(part))
        }
        None => (whole, None),
    };
    let partial = anu::fsutil::partial_path(&json_path);
    let mut run = serde_json::json!({
        "attack": spec.kind(),
        "spec": spec,
        "dataset": dataset,
        "model": loaded.name(),
        "model_sha256": loaded.sha256,
        "steps": args.steps,
        "targeted": args.targeted,
        "n_images": test.len(),
        "precision": args.precision,
    });
    if let Some(part) = &part {
        run["shard"] = serde_json::to_value(part)?;
    }
    // A traced run is not saved: its per-iteration record needs one uninterrupted run.
    let mut saved = SavedCampaign::open(
        (!args.trace).then_some(partial.as_path()),
        run,
        &set,
        OnOtherCampaign::Refuse,
        &mut |_| {},
    )
    .map_err(|e| anyhow!("{e}; remove that file to start this attack from the beginning"))?;
    if saved.done() > 0 {
        println!(
            "continuing from {}: {} of {} attacks done in {:.1} s",
            partial.display(),
            saved.done(),
            set.len(),
            saved.checkpoint.seconds
        );
    }
    let remaining = set.len() - saved.done();
    let batches = remaining.div_ceil(execution.batch_size()) as u64;
    let bar = iteration_bar(batches * args.steps as u64, &format!("{} {}", spec.kind(), args.steps));
    let mut progress = EveryStep(|| bar.inc(1));
    let mut recorder = TraceRecorder::default();
    let mut observers = (&mut progress, args.trace.then_some(&mut recorder));
    let campaign = Campaign {
        model: &loaded.model,
        set: &set,
        spec: &spec,
        execution: &execution,
        device: &device,
    };
    let result = saved
        .run(&campaign, args.common.device_name(), &mut observers, &mut |line| {
            bar.suspend(|| eprintln!("{line}"))
        })
        .map_err(|e| e.blamed_on(&loaded))?;
    bar.finish_and_clear();
    let norms: Vec<Option<f32>> = result.norms.iter().map(|n| n.is_finite().then_some(*n)).collect();
    let (success_rate, mean, median) = summarise(&norms);
    let report = AttackReport {
        attack: spec.kind(),
        dataset,
        model: loaded.name().to_string(),
        model_file: args.model_file.clone(),
        model_sha256: loaded.sha256.clone(),
        steps: args.steps,
        targeted: args.targeted,
        n_images: test.len(),
        n_attacks: set.len(),
        batch_size: execution.batch_size(),
        precision: args.precision,
        f32_recheck: result.recheck,
        success_rate,
        mean_l2: mean,
        median_l2: median,
        seconds: result.seconds,
        images_x_iterations_per_second: throughput(set.len(), args.steps, result.seconds),
        peak_rss_bytes: anu::machine::peak_rss_bytes(),
        device: args.common.device,
        spec,
        norms,
        segments: saved.checkpoint.segments.clone(),
        trace_summary: args.trace.then(|| TraceSummary::of(&recorder.trace)),
        manifest: args.common.manifest(&[&loaded]),
        shard: part,
        merged_from: Vec::new(),
    };
    anu::fsutil::write_json(&json_path, &report)?;
    saved.finish()?;
    let peak_mb = anu::machine::peak_rss_bytes().map_or("?".to_string(), |b| format!("{:.0}", b as f64 / 1e6));
    // Failed attacks are left out of the mean and median; with no success there are none.
    let norms_line = if let (Some(mean), Some(median)) = (mean, median) {
        format!("mean L2 {mean:.4}, median L2 {median:.4}")
    } else {
        "no adversarial found, so no mean or median L2".to_string()
    };
    let precision_note = if args.precision.is_reduced() {
        format!(
            " in {} ({} successes re-checked in f32, {} failed and counted as failures)",
            args.precision, result.recheck.checked, result.recheck.failed
        )
    } else {
        String::new()
    };
    println!(
        "{} {} steps{}{precision_note}: {} attacks, success {:.4}, {norms_line}, {:.1} s, peak memory {peak_mb} MB -> {}",
        report.attack,
        args.steps,
        if args.targeted { " (targeted)" } else { "" },
        set.len(),
        success_rate,
        result.seconds,
        json_path.display()
    );
    Ok(())
}
