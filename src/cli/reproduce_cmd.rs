//! `anu reproduce`: Tables 1-2 and Figures 3-4 in one command.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use anu::attack::AttackKind;
use anu::data::Split;
use anu::models::Architecture;
use anu::reproduce::{Protocol, ReproduceOptions, reproduce};

use super::{Common, ExecArgs, at_least_one, shard_and_output};

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
    /// Run the paper's whole protocol: the first 1000 test images, every budget of Tables 1-2
    /// and Figure 4 over 1000 iterations (hours on a CPU). Without it, a quick run of the same
    /// comparisons: the data set's first few test images (MNIST 100, CIFAR-10 20, ImageNet 2),
    /// the shortest budget and 100, Figure 4 over 100 iterations.
    #[arg(long)]
    full: bool,
    /// Number of test images (the first N); overrides the protocol's.
    #[arg(long)]
    n: Option<usize>,
    /// Attacks to compare, in table order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ddn,anu")]
    pub attacks: Vec<AttackKind>,
    /// Budgets for both tables; overrides the protocol's (with `--full` the paper's, 50,70,100,200,500,1000
    /// and 50,85,100,300,500,1000; CIFAR-10 80 for 85, ImageNet 80,87 for 50,85).
    #[arg(long, value_delimiter = ',')]
    pub budgets: Option<Vec<usize>>,
    /// Only Table 1 (and Figures 3-4).
    #[arg(long, conflicts_with = "targeted_only")]
    untargeted_only: bool,
    /// Only Table 2 (and Figure 3).
    #[arg(long)]
    targeted_only: bool,
    /// Iterations of the Figure 4 runs (0: no Figure 4); overrides the protocol's.
    #[arg(long)]
    fig4_steps: Option<usize>,
    /// Redo rows that are already saved.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Run only part I (from 0) of N of each table's attacks, e.g. 2/8, into OUT.shard-I-of-N;
    /// `anu merge` joins the parts. Without it, a Slurm array task or a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, with ANU_SHARD_COUNT) runs its part; 0/1 runs everything there.
    #[arg(long)]
    shard: Option<anu::shard::Shard>,
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let (shard, out) = shard_and_output(args.shard, &args.out)?;
    anu::fsutil::check_output_dir(&out)?;
    let dataset = args.common.dataset;
    let mut protocol = match args.full {
        true => Protocol::paper(dataset),
        false => Protocol::quick(dataset),
    };
    if let Some(n) = args.n {
        at_least_one(n, "--n")?;
        protocol.n = n;
    }
    if args.budgets.as_ref().is_some_and(|b| b.is_empty() || b.contains(&0)) {
        bail!("--budgets needs positive iteration counts, e.g. 50,100");
    }
    if args.attacks.is_empty() {
        bail!("--attacks needs at least one attack");
    }
    if let Some(budgets) = &args.budgets {
        protocol.table1_budgets = budgets.clone();
        protocol.table2_budgets = budgets.clone();
    }
    if let Some(steps) = args.fig4_steps {
        protocol.fig4_steps = steps;
    }
    let model_file = args.model_file.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "models/{}.safetensors",
            Architecture::default_for(dataset).name()
        ))
    });
    let execution = args.exec.execution(args.common.device, args.common.dataset)?;
    let device = args.common.device()?;
    let loaded = args.common.load_model(&model_file, &device)?;
    let test = args.common.load(Split::Test)?.take(protocol.n);
    if !args.full && args.n.is_none() && args.budgets.is_none() {
        eprintln!(
            "quick run: {} images, budgets {:?} / {:?} (--full: the paper's whole protocol)",
            test.len(),
            protocol.table1_budgets,
            protocol.table2_budgets
        );
    }
    let options = ReproduceOptions {
        dataset,
        out: out.clone(),
        attacks: args.attacks.clone(),
        table1_budgets: if args.targeted_only {
            vec![]
        } else {
            protocol.table1_budgets
        },
        table2_budgets: if args.untargeted_only {
            vec![]
        } else {
            protocol.table2_budgets
        },
        fig4_steps: protocol.fig4_steps,
        force: args.force,
        execution,
        device_name: args.common.device_name(),
        shard,
    };
    let rows = reproduce(&loaded, &test, &options, &device)?;
    args.common.manifest(&[&loaded]).write_to(&out)?;
    for r in &rows {
        println!("{}", r.summary_line());
    }
    println!("wrote tables and figures to {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// The error `anu reproduce` with `flags` stops with (it must stop before any attack).
    fn refusal(flags: &str) -> String {
        let out = tempfile::tempdir().unwrap();
        let line = format!(
            "anu reproduce --model-file missing.safetensors --out {} {flags}",
            out.path().join("r").display()
        );
        let Command::Reproduce(args) = Cli::try_parse_from(line.split_whitespace()).unwrap().command else {
            panic!("not the reproduce command")
        };
        format!("{:#}", super::run(args).unwrap_err())
    }

    #[test]
    fn zero_counts_are_refused_not_rounded_up() {
        let err = refusal("--batch-size 0");
        assert!(err.contains("batch size must be at least 1"), "{err}");
        let err = refusal("--n 0");
        assert!(err.contains("--n must be at least 1"), "{err}");
        let err = refusal("--budgets 0,50");
        assert!(err.contains("--budgets"), "{err}");
    }
}
