//! `anu merge`: joins the result files of a sharded `anu attack` (or the folders of a sharded
//! `anu robustness`) into what the unsharded run writes, after checking that they are the
//! parts of one experiment, each once.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use anu::attack::AttackReport;
use anu::manifest::Manifest;

#[derive(Args)]
pub struct MergeArgs {
    /// Where to write the merged result (a file for `attack` shards, a folder for
    /// `robustness` and `reproduce` shards).
    out: PathBuf,
    /// The shard files (`NAME.shard-I-of-N.json`) or folders (`OUT.shard-I-of-N`), in any order.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
}

pub fn run(args: MergeArgs) -> Result<()> {
    if let Some(same) = args.shards.iter().find(|s| same_file(s, &args.out)) {
        bail!(
            "{} is one of the shards: write the merged result elsewhere",
            same.display()
        );
    }
    let folders = args.shards.iter().filter(|s| s.is_dir()).count();
    if folders == args.shards.len()
        && args
            .shards
            .iter()
            .all(|s| anu::reproduce::merge::is_reproduce_folder(s))
    {
        return merge_reproduce(&args);
    }
    if folders == args.shards.len() {
        return merge_robustness(&args);
    }
    if folders > 0 {
        bail!("give either `anu attack` shard files or `anu robustness` shard folders, not both");
    }
    anu::fsutil::check_output_file(&args.out)?;
    let mut parts = Vec::with_capacity(args.shards.len());
    for path in &args.shards {
        parts.push((path.display().to_string(), AttackReport::read(path)?));
    }
    let mut merged = AttackReport::merge(parts)?;
    let command: Vec<String> = std::env::args().collect();
    merged.manifest = Manifest::merged(&merged.manifest, command.join(" "), args.shards.len());
    let devices: std::collections::BTreeSet<&str> = merged.segments.iter().map(|s| s.device.as_str()).collect();
    if devices.len() > 1 {
        eprintln!(
            "note: the shards ran on different devices ({}); their norms may differ in the last bits from one device's run",
            devices.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    anu::fsutil::write_json(&args.out, &merged)?;
    let norms = match (merged.mean_l2, merged.median_l2) {
        (Some(mean), Some(median)) => format!("mean L2 {mean:.4}, median L2 {median:.4}"),
        _ => "no adversarial found, so no mean or median L2".to_string(),
    };
    println!(
        "{} {} steps{}: {} attacks from {} shards, success {:.4}, {norms}, {:.1} s in all -> {}",
        merged.attack,
        merged.steps,
        if merged.targeted { " (targeted)" } else { "" },
        merged.n_attacks,
        args.shards.len(),
        merged.success_rate,
        merged.seconds,
        args.out.display()
    );
    Ok(())
}

/// Merges the folders of a sharded `anu reproduce` into `args.out`.
fn merge_reproduce(args: &MergeArgs) -> Result<()> {
    anu::fsutil::check_output_dir(&args.out)?;
    let command: Vec<String> = std::env::args().collect();
    let rows = anu::reproduce::merge::merge_folders(&args.out, &args.shards, command.join(" "))?;
    for r in &rows {
        println!("{}", r.summary_line());
    }
    println!(
        "merged {} shards: wrote tables and figures to {}",
        args.shards.len(),
        args.out.display()
    );
    Ok(())
}

/// Merges the folders of a sharded `anu robustness` into `args.out`.
fn merge_robustness(args: &MergeArgs) -> Result<()> {
    use anu::fsutil::{JsonFile, read_json};
    use anu::robustness::{FIG6_CELLS_FILE, RobustnessReport, merge, summary_line, write_outputs};
    anu::fsutil::check_output_dir(&args.out)?;
    fn read<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
        match read_json(path) {
            JsonFile::Valid(v) => Ok(v),
            JsonFile::Absent => bail!(
                "{}: no such file (is its folder a finished `anu robustness` shard?)",
                path.display()
            ),
            JsonFile::Corrupt(reason) => bail!("{}: {reason}", path.display()),
        }
    }
    let mut parts = Vec::with_capacity(args.shards.len());
    let mut manifests = Vec::with_capacity(args.shards.len());
    for dir in &args.shards {
        let report: RobustnessReport = read(&dir.join("robustness.json"))?;
        let cells = if report.shard.is_some() {
            read(&dir.join(FIG6_CELLS_FILE))?
        } else {
            Vec::new()
        };
        manifests.push(read::<Manifest>(&dir.join("manifest.json"))?);
        parts.push((dir.display().to_string(), report, cells));
    }
    let (merged, fig6) = merge(parts)?;
    write_outputs(&args.out, &merged, &fig6)?;
    let command: Vec<String> = std::env::args().collect();
    Manifest::merged(&manifests[0], command.join(" "), args.shards.len()).write_to(&args.out)?;
    for r in &merged.models {
        println!("{}", summary_line(r, &merged.eps));
    }
    println!(
        "merged {} shards: wrote {}/robustness.{{json,csv}}, fig5.png, fig6.png, manifest.json",
        args.shards.len(),
        args.out.display()
    );
    Ok(())
}

/// Whether `a` and `b` name the same file (or the same path, when `b` does not exist yet).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
