//! `anu data fetch`: downloads a data set into the data folder, checked against known
//! checksums (see `anu::data::fetch`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use anu::data::fetch::{self, FetchOptions, FetchReport};
use anu::data::{self, DatasetName};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    action: DataAction,
}

#[derive(Subcommand)]
enum DataAction {
    /// Download MNIST or CIFAR-10 into the data folder, in the layout the commands read, each
    /// file checked against its known SHA-256. Files already there and intact are kept; an
    /// interrupted download is continued by the next run.
    Fetch(FetchArgs),
}

#[derive(Args)]
pub struct FetchArgs {
    /// Data set to download (mnist or cifar10; imagenet-sample has no public download).
    #[arg(long, value_enum)]
    dataset: DatasetName,
    /// Folder that holds the data sets; the files go to its `mnist/` or `cifar10/` (default:
    /// $ANU_DATA, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Base URL to download from instead of the standard mirrors, e.g. a local copy (may be
    /// repeated: tried in order). Default: $ANU_DATA_URL_MNIST or $ANU_DATA_URL_CIFAR10
    /// (comma-separated), else the standard mirrors.
    #[arg(long = "url")]
    urls: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.action {
        DataAction::Fetch(a) => run_fetch(a),
    }
}

/// Downloads the data set and says what was done.
fn run_fetch(args: FetchArgs) -> Result<()> {
    let data_dir = data::resolve_data_dir(args.data_dir.as_deref());
    let options = FetchOptions {
        progress: !args.quiet,
        ..FetchOptions::default()
    };
    let report = fetch::fetch_dataset(args.dataset, &data_dir, &args.urls, &options)?;
    println!("{}", summary(args.dataset, &data_dir, &report));
    Ok(())
}

/// One line on what a fetch did.
fn summary(dataset: DatasetName, data_dir: &std::path::Path, report: &FetchReport) -> String {
    let folder = data_dir.join(dataset.info().folder);
    let megabytes = report.bytes_downloaded as f64 / 1e6;
    format!(
        "{dataset} is ready in {}: {} file(s) written ({megabytes:.1} MB downloaded), {} already present and intact",
        folder.display(),
        report.written.len(),
        report.present.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_files_and_bytes() {
        let report = FetchReport {
            written: vec![PathBuf::from("a"), PathBuf::from("b")],
            present: vec![PathBuf::from("c")],
            bytes_downloaded: 2_500_000,
        };
        let text = summary(DatasetName::Mnist, std::path::Path::new("data"), &report);
        assert_eq!(
            text,
            "mnist is ready in data/mnist: 2 file(s) written (2.5 MB downloaded), 1 already present and intact"
        );
    }
}
