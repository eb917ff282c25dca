//! `anu reproduce`: Tables 1-2 and Figures 3-4 in one command.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use anu::data::Split;
use anu::models::{Architecture, weights};
use anu::reproduce::{ReproduceOptions, TABLE1_BUDGETS, TABLE2_BUDGETS, reproduce};

use super::Common;

#[derive(Args)]
pub struct ReproduceArgs {
    #[command(flatten)]
    common: Common,
    /// Weight file (default: models/<architecture>.safetensors).
    #[arg(long)]
    model_file: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Number of test images (the first N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Budgets for both tables (default: the paper's, 50,70,100,200,500,1000 and 50,85,100,300,500,1000).
    #[arg(long, value_delimiter = ',')]
    budgets: Option<Vec<usize>>,
    /// Only Table 1 (and Figures 3-4).
    #[arg(long, conflicts_with = "targeted_only")]
    untargeted_only: bool,
    /// Only Table 2 (and Figure 3).
    #[arg(long)]
    targeted_only: bool,
    /// Iterations of the Figure 4 runs.
    #[arg(long, default_value_t = 1000)]
    fig4_steps: usize,
    /// Redo rows that are already saved.
    #[arg(long)]
    force: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let dataset = args.common.dataset;
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    if args.budgets.as_ref().is_some_and(|b| b.is_empty() || b.contains(&0)) {
        bail!("--budgets needs positive iteration counts, e.g. 50,100");
    }
    let model_file = args.model_file.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "models/{}.safetensors",
            Architecture::default_for(dataset).name()
        ))
    });
    let device = args.common.device()?;
    let named = weights::load(&model_file, &device)?;
    if named.arch.dataset() != dataset {
        bail!(
            "{}: a {} model cannot attack {dataset}",
            model_file.display(),
            named.arch.name()
        );
    }
    let test = args.common.load(Split::Test)?.take(args.n);
    let (t1, t2) = match &args.budgets {
        Some(b) => (b.clone(), b.clone()),
        None => (TABLE1_BUDGETS.to_vec(), TABLE2_BUDGETS.to_vec()),
    };
    let options = ReproduceOptions {
        dataset,
        out: args.out.clone(),
        table1_budgets: if args.targeted_only { vec![] } else { t1 },
        table2_budgets: if args.untargeted_only { vec![] } else { t2 },
        fig4_steps: args.fig4_steps,
        force: args.force,
        batch_size: args.batch_size,
        pass_chunk: anu::device::pass_chunk(args.common.device),
    };
    let rows = reproduce(&named.model, &test, &options, &device)?;
    for r in &rows {
        println!(
            "{} {:>3} {:>5}: mean {:.4} median {:.4} success {:.4} {:.1} s",
            r.table,
            r.attack.to_uppercase(),
            r.budget,
            r.mean_l2,
            r.median_l2,
            r.success_rate,
            r.seconds
        );
    }
    println!("wrote tables and figures to {}", args.out.display());
    Ok(())
}
