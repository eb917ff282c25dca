//! The result file of `anu attack`: what was run, on what, each attack's norm and the
//! summary of Tables 1-2, with its provenance; and the merge of the files of a sharded run
//! into the file the unsharded run writes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::campaign_checkpoint::Segment;
use super::stats::{TraceSummary, mean_median};
use super::{AttackKind, AttackSpec, Precision, Recheck};
use crate::data::DatasetName;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::shard::{ShardPart, check_cover};

/// Everything `anu attack` writes about one campaign.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttackReport {
    /// The attack.
    pub attack: AttackKind,
    /// The data set attacked.
    pub dataset: DatasetName,
    /// The model's architecture.
    pub model: String,
    /// The model file as given.
    pub model_file: PathBuf,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// Iterations K.
    pub steps: usize,
    /// Whether the attacks were targeted.
    pub targeted: bool,
    /// The first N test images were attacked.
    pub n_images: usize,
    /// Attacks in this file (of a shard: the shard's).
    pub n_attacks: usize,
    /// Attacks per batch.
    pub batch_size: usize,
    /// Precision of the attack's passes.
    pub precision: Precision,
    /// The full-f32 check of the successes (reduced precision only).
    pub f32_recheck: Recheck,
    /// Fraction of successful attacks.
    pub success_rate: f64,
    /// Mean L2 norm of the successful attacks (`None`: none succeeded).
    pub mean_l2: Option<f64>,
    /// Median L2 norm of the successful attacks.
    pub median_l2: Option<f64>,
    /// Seconds of attack loops, all segments (and shards) together.
    pub seconds: f64,
    /// Attacks x iterations per second of attack loops.
    pub images_x_iterations_per_second: f64,
    /// Peak resident memory of the process (of a merge: the largest of the shards').
    pub peak_rss_bytes: Option<u64>,
    /// The device, as `--device` named it.
    pub device: DeviceChoice,
    /// The attack's full settings.
    pub spec: AttackSpec,
    /// Norm per attack, in order (`None`: the attack failed).
    pub norms: Vec<Option<f32>>,
    /// Each process's share of the work.
    pub segments: Vec<Segment>,
    /// Per-iteration medians, when the run was traced.
    pub trace_summary: Option<TraceSummary>,
    /// Where the result came from.
    pub manifest: Manifest,
    /// The part of the attacked set this file holds, when the run was sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardPart>,
    /// The shard files a merged result was made from, in set order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
}

/// One shard file of a merged result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergedShard {
    /// The file.
    pub file: String,
    /// Its part of the set.
    pub part: ShardPart,
    /// Its seconds of attack loops.
    pub seconds: f64,
    /// The command, commit and machine that made it.
    pub manifest: Manifest,
}

/// The summary numbers of a list of norms (`None`: failed): success rate, mean and median L2
/// of the successes.
pub fn summarise(norms: &[Option<f32>]) -> (f64, Option<f64>, Option<f64>) {
    let values: Vec<f32> = norms.iter().map(|n| n.unwrap_or(f32::INFINITY)).collect();
    let (mean, median) = mean_median(&values);
    let successes = norms.iter().filter(|n| n.is_some()).count();
    let rate = successes as f64 / norms.len().max(1) as f64;
    (
        rate,
        mean.is_finite().then_some(mean),
        median.is_finite().then_some(median),
    )
}

/// Attacks x iterations per second (0 when nothing ran).
pub fn throughput(attacks: usize, steps: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (attacks * steps) as f64 / seconds
    } else {
        0.0
    }
}

impl AttackReport {
    /// Reads a result file, with the file and the reason named when it cannot be read.
    pub fn read(path: &std::path::Path) -> Result<AttackReport> {
        match crate::fsutil::read_json(path) {
            crate::fsutil::JsonFile::Valid(report) => Ok(report),
            crate::fsutil::JsonFile::Absent => Err(Error::Invalid(format!("{}: no such file", path.display()))),
            crate::fsutil::JsonFile::Corrupt(reason) => Err(Error::Invalid(format!(
                "{}: not an `anu attack` result: {reason}",
                path.display()
            ))),
        }
    }

    /// What must agree between the shards of one experiment, as (field, value) pairs.
    fn experiment(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::to_value as v;
        let value = |x: std::result::Result<serde_json::Value, serde_json::Error>| x.unwrap_or_default();
        vec![
            ("attack", value(v(self.attack))),
            ("spec", value(v(&self.spec))),
            ("dataset", value(v(self.dataset))),
            ("model_sha256", value(v(&self.model_sha256))),
            ("steps", value(v(self.steps))),
            ("targeted", value(v(self.targeted))),
            ("n_images", value(v(self.n_images))),
            ("batch_size", value(v(self.batch_size))),
            ("precision", value(v(self.precision))),
        ]
    }

    /// Merges the shard files `parts` (each named by its file) of one experiment into the
    /// result the unsharded run writes: the norms in set order, the summary of all of them,
    /// the shards' seconds and segments added up, the shard files listed in `merged_from`.
    /// Files of another experiment, or that do not cover the set exactly once, are refused
    /// with the file named.
    pub fn merge(parts: Vec<(String, AttackReport)>) -> Result<AttackReport> {
        let mut named_parts = Vec::with_capacity(parts.len());
        for (name, report) in &parts {
            let part = report.shard.clone().ok_or_else(|| {
                Error::Invalid(format!(
                    "{name} is not the result of a sharded run (it has no \"shard\")"
                ))
            })?;
            if part.len() != report.norms.len() {
                return Err(Error::Invalid(format!(
                    "{name} holds {} norms for attacks {}..{}: damaged",
                    report.norms.len(),
                    part.first,
                    part.end
                )));
            }
            named_parts.push((name.clone(), part));
        }
        let (first_name, first) = &parts[0];
        let reference = first.experiment();
        for (name, report) in &parts[1..] {
            for ((field, mine), (_, theirs)) in report.experiment().iter().zip(&reference) {
                if mine != theirs {
                    return Err(Error::Invalid(format!(
                        "{name} is a shard of another experiment than {first_name}: its {field} is {mine}, not {theirs}"
                    )));
                }
            }
        }
        let order = check_cover(&named_parts)?;
        let mut merged = first.clone();
        merged.norms.clear();
        merged.segments.clear();
        merged.seconds = 0.0;
        merged.f32_recheck = Recheck::default();
        merged.peak_rss_bytes = None;
        merged.shard = None;
        merged.merged_from.clear();
        for &i in &order {
            let (name, report) = &parts[i];
            merged.norms.extend(&report.norms);
            merged.segments.extend(report.segments.iter().cloned());
            merged.seconds += report.seconds;
            merged.f32_recheck = merged.f32_recheck + report.f32_recheck;
            merged.peak_rss_bytes = merged.peak_rss_bytes.max(report.peak_rss_bytes);
            merged.merged_from.push(MergedShard {
                file: name.clone(),
                part: named_parts[i].1.clone(),
                seconds: report.seconds,
                manifest: report.manifest.clone(),
            });
        }
        let (rate, mean, median) = summarise(&merged.norms);
        merged.n_attacks = merged.norms.len();
        merged.success_rate = rate;
        merged.mean_l2 = mean;
        merged.median_l2 = median;
        merged.images_x_iterations_per_second = throughput(merged.n_attacks, merged.steps, merged.seconds);
        Ok(merged)
    }
}
