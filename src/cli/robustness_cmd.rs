//! `anu robustness`: accuracy vs maximum L2 norm for several models (Figures 5-6).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use anu::data::{Split, class_names, resolve_data_dir};
use anu::models::weights;
use anu::robustness::{eps_grid, evaluate, write_outputs};

use super::Common;
use super::attack_cmd::{attack_config, iteration_bar};

#[derive(Args)]
pub struct RobustnessArgs {
    #[command(flatten)]
    common: Common,
    /// Weight files to compare (repeat the flag).
    #[arg(long = "model-file", required = true)]
    model_files: Vec<PathBuf>,
    /// The attack.
    #[arg(long, value_parser = ["anu", "ddn"], default_value = "anu")]
    attack: String,
    /// Iterations (the paper: 1000).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Number of test images (the first N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Largest eps of the curve (default 3.0 for MNIST, 1.5 for CIFAR-10).
    #[arg(long)]
    max_eps: Option<f64>,
    /// Points of the eps grid.
    #[arg(long, default_value_t = 301)]
    points: usize,
    /// Images shown per model in Figure 6.
    #[arg(long, default_value_t = 8)]
    fig6_images: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: RobustnessArgs) -> Result<()> {
    let dataset = args.common.dataset;
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let mut config = attack_config(&args.attack, dataset, false, args.steps, None, None, None)?;
    config.pass_chunk = anu::device::pass_chunk(args.common.device);
    let device = args.common.device()?;
    let mut models = Vec::new();
    for file in &args.model_files {
        let named = weights::load(file, &device)?;
        if named.arch.dataset() != dataset {
            bail!(
                "{}: a {} model cannot be evaluated on {dataset}",
                file.display(),
                named.arch.name()
            );
        }
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        models.push((name, file.display().to_string(), named.model));
    }
    let test = args.common.load(Split::Test)?.take(args.n);
    let max_eps = args.max_eps.unwrap_or(match dataset {
        anu::data::DatasetName::Mnist => 3.0,
        anu::data::DatasetName::Cifar10 => 1.5,
    });
    let eps = eps_grid(max_eps, args.points);
    let total = (models.len() * test.len().div_ceil(args.batch_size) * args.steps) as u64;
    let bar = iteration_bar(total, &format!("{} {}", args.attack, args.steps));
    let results = evaluate(&models, &test, &config, &eps, args.batch_size, &device, || bar.inc(1));
    bar.finish_and_clear();
    let names = class_names(dataset, &resolve_data_dir(args.common.data_dir.as_deref()));
    write_outputs(&args.out, &test, &eps, &results, &names, args.fig6_images)?;
    for r in &results {
        let at = |e: f64| {
            let i = eps.iter().position(|&x| x >= e - 1e-9).unwrap_or(eps.len() - 1);
            r.accuracy[i]
        };
        println!(
            "{}: clean {:.4}, acc@0.5 {:.4}, acc@1.0 {:.4}, acc@1.5 {:.4}, acc@2.0 {:.4} ({:.0} s)",
            r.name,
            r.clean_accuracy,
            at(0.5),
            at(1.0),
            at(1.5),
            at(2.0),
            r.seconds
        );
    }
    println!(
        "wrote {}/robustness.{{json,csv}}, fig5.png, fig6.png",
        args.out.display()
    );
    Ok(())
}
