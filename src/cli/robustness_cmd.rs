//! `anu robustness`: accuracy vs maximum L2 norm for several models (Figures 5-6).
//!
//! With `--shard I/N` (or a Slurm array task or Kubernetes Indexed Job) it attacks part I of
//! N of the images and writes to `OUT.shard-I-of-N`; `anu merge` makes the unsharded folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use anu::attack::EveryStep;
use anu::data::Split;
use anu::robustness::{ModelRobustness, RobustnessReport, eps_grid, evaluate, fig6_rows, summary_line, write_outputs};
use anu::shard::{Shard, ShardPart};

use super::{Common, ExecArgs, SpecArgs, at_least_one, iteration_bar, shard_and_output};

#[derive(Args)]
pub struct RobustnessArgs {
    #[command(flatten)]
    common: Common,
    /// Weight files to compare (repeat the flag).
    #[arg(long = "model-file", required = true)]
    model_files: Vec<PathBuf>,
    #[command(flatten)]
    spec_args: SpecArgs,
    /// Iterations (the paper: 1000).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Number of test images (the first N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[command(flatten)]
    exec: ExecArgs,
    /// Largest eps of the curve (default 3.0 for MNIST, 1.5 for CIFAR-10).
    #[arg(long)]
    max_eps: Option<f64>,
    /// Points of the eps grid, 0 and the largest eps included (at least 2).
    #[arg(long, default_value_t = 301)]
    points: usize,
    /// Images shown per model in Figure 6.
    #[arg(long, default_value_t = 8)]
    fig6_images: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Attack only part I (from 0) of N of the images, e.g. 2/8, and write to
    /// OUT.shard-I-of-N; `anu merge` joins the parts. Without it, a Slurm array task or a
    /// Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with ANU_SHARD_COUNT) runs its part;
    /// 0/1 runs the whole set there.
    #[arg(long)]
    shard: Option<Shard>,
}

pub fn run(args: RobustnessArgs) -> Result<()> {
    let (shard, out) = shard_and_output(args.shard, &args.out)?;
    anu::fsutil::check_output_dir(&out)?;
    let dataset = args.common.dataset;
    at_least_one(args.n, "--n")?;
    let spec = args.spec_args.spec(dataset, false, args.steps)?;
    let execution = args.exec.execution(args.common.device, args.common.dataset)?;
    let info = dataset.info();
    let eps = eps_grid(args.max_eps.unwrap_or(info.robustness_max_eps), args.points)
        .context("--max-eps and --points must describe an eps grid")?;
    let device = args.common.device()?;
    let mut models = Vec::new();
    for file in &args.model_files {
        let loaded = args.common.load_model(file, &device)?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        models.push((name, loaded));
    }
    let whole = args.common.load(Split::Test)?.take(args.n);
    let (test, part) = match shard {
        Some(s) => {
            let range = s.range(whole.len(), execution.batch_size());
            eprintln!("shard {s}: images {}..{} of {}", range.start, range.end, whole.len());
            let part = ShardPart {
                shard: s,
                first: range.start,
                end: range.end,
                total: whole.len(),
                set_sha256: anu::attack::AttackSet::untargeted(whole.clone()).sha256(),
            };
            (whole.select(&range.collect::<Vec<_>>()), Some(part))
        }
        None => (whole.clone(), None),
    };
    let total = (models.len() * test.len().div_ceil(execution.batch_size()) * args.steps) as u64;
    let bar = iteration_bar(total, &format!("{} {}", spec.kind(), args.steps));
    // A shard with no batch of its own (more shards than batches) records an empty part.
    let results = if test.is_empty() {
        models
            .iter()
            .map(|(name, m)| {
                ModelRobustness::of_distances(
                    name.clone(),
                    m.path.display().to_string(),
                    m.sha256.clone(),
                    Vec::new(),
                    &eps,
                    0.0,
                )
            })
            .collect()
    } else {
        evaluate(
            &models,
            dataset,
            &test,
            &spec,
            &execution,
            &eps,
            &device,
            &mut EveryStep(|| bar.inc(1)),
        )?
    };
    bar.finish_and_clear();
    let names = info.class_names(&args.common.data_dir());
    let first = part.as_ref().map_or(0, |p| p.first);
    let fig6 = fig6_rows(&test, first, &results, &names, args.fig6_images);
    let report = RobustnessReport {
        eps: eps.clone(),
        models: results.clone(),
        dataset: Some(dataset),
        spec: Some(spec),
        n_images: whole.len(),
        batch_size: execution.batch_size(),
        shard: part,
        merged_from: Vec::new(),
    };
    write_outputs(&out, &report, &fig6)?;
    let loaded: Vec<_> = models.iter().map(|(_, m)| m).collect();
    args.common.manifest(&loaded).write_to(&out)?;
    for r in &results {
        println!("{}", summary_line(r, &eps));
    }
    println!(
        "wrote {}/robustness.{{json,csv}}, fig5.png, fig6.png, manifest.json",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// The error `anu robustness` with `flags` stops with (it must stop before any attack).
    fn refusal(flags: &str) -> String {
        let out = tempfile::tempdir().unwrap();
        let line = format!(
            "anu robustness --model-file missing.safetensors --out {} {flags}",
            out.path().join("r").display()
        );
        let Command::Robustness(args) = Cli::try_parse_from(line.split_whitespace()).unwrap().command else {
            panic!("not the robustness command")
        };
        format!("{:#}", super::run(args).unwrap_err())
    }

    #[test]
    fn grids_that_cannot_be_made_are_refused_before_any_work() {
        for flags in [
            "--points 0",
            "--points 1",
            "--points 1000000000",
            "--max-eps 0",
            "--max-eps=-1",
        ] {
            let err = refusal(flags);
            assert!(err.contains("--max-eps and --points"), "{flags}: {err}");
        }
        assert!(refusal("--n 0").contains("--n must be at least 1"));
        assert!(refusal("--batch-size 0").contains("batch size must be at least 1"));
    }
}
