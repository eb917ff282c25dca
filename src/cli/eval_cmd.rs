//! `anu eval`: clean test accuracy.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use anu::data::Split;

use super::{Common, at_least_one};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// Weight file written by `anu train`.
    #[arg(long)]
    model_file: PathBuf,
    /// Images per evaluation batch (default: the data set's attack batch size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Evaluate only the first N test images (default: all of them).
    #[arg(long)]
    n: Option<usize>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(n) = args.n {
        at_least_one(n, "--n")?;
    }
    let device = args.common.device()?;
    let loaded = args.common.load_model(&args.model_file, &device)?;
    let test = args.common.load(Split::Test)?;
    let test = match args.n {
        Some(n) => test.take(n),
        None => test,
    };
    let batch = args.batch_size.unwrap_or(args.common.dataset.info().default_batch_size);
    let (acc, correct) = anu::eval::accuracy(&loaded.model, &test, &device, batch).map_err(|e| e.blamed_on(&loaded))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"dataset": args.common.dataset, "model": loaded.name(), "model_sha256": loaded.sha256, "accuracy": acc, "correct": correct, "n": test.len()})
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
