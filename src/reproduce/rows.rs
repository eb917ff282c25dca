//! Rows of Tables 1-2 and the data behind Figure 4, saved one file each as soon as they are
//! computed, with the key of everything that determined them: a saved result is reused only
//! for exactly the same experiment.

use std::path::{Path, PathBuf};

use crate::attack::campaign_checkpoint::Segment;
use crate::attack::{AttackKind, AttackSpec};
use crate::data::{DatasetName, TargetProtocol};
use crate::fsutil::{JsonFile, read_json};
use crate::shard::ShardPart;

/// The paper's two attack tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Table {
    /// Table 1: untargeted attacks.
    #[serde(rename = "table1")]
    Untargeted,
    /// Table 2: targeted attacks towards every other class.
    #[serde(rename = "table2")]
    Targeted,
}

impl Table {
    /// Both tables, in order.
    pub const ALL: [Table; 2] = [Table::Untargeted, Table::Targeted];

    /// File stem of the table's files: `table1` or `table2`.
    pub fn stem(self) -> &'static str {
        match self {
            Table::Untargeted => "table1",
            Table::Targeted => "table2",
        }
    }

    /// Heading of the table on `dataset` (whose target protocol Table 2 follows).
    pub fn title(self, dataset: DatasetName) -> String {
        match (self, dataset.info().targets) {
            (Table::Untargeted, _) => "Table 1: untargeted attacks".into(),
            (Table::Targeted, TargetProtocol::AllOthers) => "Table 2: targeted attacks (all other classes)".into(),
            (Table::Targeted, TargetProtocol::Random { per_image, .. }) => {
                format!("Table 2: targeted attacks ({per_image} random target classes per image)")
            }
        }
    }

    /// Whether the table's attacks are targeted.
    pub fn targeted(self) -> bool {
        matches!(self, Table::Targeted)
    }
}

/// Everything that determines a saved result. A saved file counts as done only when its key
/// equals the key of the job at hand.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowKey {
    /// The data set attacked.
    pub dataset: DatasetName,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// The first N test images were attacked.
    pub n_images: usize,
    /// Targeted (towards every other class) or not.
    pub targeted: bool,
    /// The attack's full settings.
    pub spec: AttackSpec,
    /// Attacks per batch (timings depend on it).
    pub batch_size: usize,
    /// The part of the table's attacks, when the run was sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardPart>,
}

/// One row of Table 1 or 2.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The table.
    pub table: Table,
    /// The attack.
    pub attack: AttackKind,
    /// Iterations K.
    pub budget: usize,
    /// Attacks run (9 per image when targeted on 10 classes).
    pub n_attacks: usize,
    /// Fraction of successful attacks.
    pub success_rate: f64,
    /// Mean L2 norm over successful attacks (NaN, stored as null, when none succeeded).
    #[serde(with = "crate::json_nan")]
    pub mean_l2: f64,
    /// Median L2 norm over successful attacks (NaN, stored as null, when none succeeded).
    #[serde(with = "crate::json_nan")]
    pub median_l2: f64,
    /// Wall time of the attack loops, in seconds.
    pub seconds: f64,
    /// Each run's share of the row when it was resumed after an interruption (one entry
    /// otherwise): attacks, seconds, device, CPU and commit.
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// Norm per attack, in order (`None`: the attack failed; empty in rows of earlier builds).
    #[serde(default)]
    pub norms: Vec<Option<f32>>,
    /// What determined the row.
    pub key: RowKey,
}

impl Row {
    /// The row in one line, as the commands print it.
    pub fn summary_line(&self) -> String {
        format!(
            "{} {:>3} {:>5}: mean {:.4} median {:.4} success {:.4} {:.1} s",
            self.table.stem(),
            self.attack.label(),
            self.budget,
            self.mean_l2,
            self.median_l2,
            self.success_rate,
            self.seconds
        )
    }
}

/// Data behind Figure 4: mean norm of the current iterates over the images, per iteration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fig4Data {
    /// The attack.
    pub attack: AttackKind,
    /// Mean norm at iterations 1..=K.
    pub mean_norm: Vec<f64>,
    /// Sum of the norms over the attacks at iterations 1..=K (empty in files of earlier
    /// builds): what shards' data is merged from.
    #[serde(default)]
    pub sums: Vec<f64>,
    /// Number of attacks summed.
    #[serde(default)]
    pub attacks: usize,
    /// What determined it.
    pub key: RowKey,
}

/// Something saved under a key.
pub trait Keyed {
    /// The key it was computed under.
    fn key(&self) -> &RowKey;
}

impl Keyed for Row {
    fn key(&self) -> &RowKey {
        &self.key
    }
}

impl Keyed for Fig4Data {
    fn key(&self) -> &RowKey {
        &self.key
    }
}

/// What was found at a result's path.
#[derive(Debug)]
pub enum Saved<T> {
    /// A result for exactly this key: reuse it.
    Done(T),
    /// Nothing saved yet.
    Absent,
    /// A result for another experiment (data set, model, settings, N): recompute.
    Mismatch,
    /// An unreadable or damaged file (the reason): recompute.
    Corrupt(String),
}

/// Looks up the result saved at `path` for `key`.
pub fn lookup<T: Keyed + serde::de::DeserializeOwned>(path: &Path, key: &RowKey) -> Saved<T> {
    match read_json::<T>(path) {
        JsonFile::Absent => Saved::Absent,
        JsonFile::Corrupt(reason) => Saved::Corrupt(reason),
        JsonFile::Valid(v) if v.key() == key => Saved::Done(v),
        JsonFile::Valid(_) => Saved::Mismatch,
    }
}

/// Path of a table row's file in the output folder.
pub fn row_path(out: &Path, table: Table, attack: AttackKind, budget: usize) -> PathBuf {
    out.join("rows")
        .join(format!("{}-{attack}-{budget}.json", table.stem()))
}

/// Path of an attack's Figure 4 data in the output folder.
pub fn fig4_path(out: &Path, attack: AttackKind) -> PathBuf {
    out.join("rows").join(format!("fig4-{attack}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_2_is_titled_by_the_data_sets_target_protocol() {
        assert!(Table::Targeted.title(DatasetName::Mnist).contains("all other classes"));
        assert!(
            Table::Targeted
                .title(DatasetName::ImagenetSample)
                .contains("20 random target classes")
        );
        assert_eq!(
            Table::Untargeted.title(DatasetName::Cifar10),
            "Table 1: untargeted attacks"
        );
        assert_eq!(serde_json::to_string(&Table::Targeted).unwrap(), "\"table2\"");
    }
}
