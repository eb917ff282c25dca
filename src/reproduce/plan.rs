//! The jobs of a reproduction and which of them are already done.

use std::fmt;
use std::path::PathBuf;

use super::ReproduceOptions;
use super::rows::{Fig4Data, Keyed, Row, RowKey, Saved, Table, fig4_path, lookup, row_path};
use crate::attack::{AttackKind, paper_spec};
use crate::error::Result;
use crate::shard::ShardPart;

/// What a job produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A row of Table 1 or 2 (and Figure 4's data when [`Job::records_fig4`]).
    Row(Table),
    /// Only Figure 4's data (when Table 1 has no row of the Figure 4 budget).
    Fig4,
}

/// One attack at one budget.
#[derive(Clone, Debug)]
pub struct Job {
    /// What it produces.
    pub kind: JobKind,
    /// The attack.
    pub attack: AttackKind,
    /// Iterations.
    pub budget: usize,
    /// Whether the run also records Figure 4's mean norms.
    fig4: bool,
    /// Everything that determines its result.
    pub key: RowKey,
}

impl Job {
    /// Whether its attacks are targeted.
    pub fn targeted(&self) -> bool {
        self.key.targeted
    }

    /// Whether the run records Figure 4's data.
    pub fn records_fig4(&self) -> bool {
        self.fig4
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JobKind::Row(t) => t.stem(),
            JobKind::Fig4 => "fig4",
        };
        write!(f, "{what} {} {}", self.attack, self.budget)
    }
}

/// A job with what was found saved for it.
struct Planned {
    job: Job,
    row: Option<Saved<Row>>,
    fig4: Option<Saved<Fig4Data>>,
    row_path: Option<PathBuf>,
    fig4_path: Option<PathBuf>,
}

impl Planned {
    fn done(&self) -> bool {
        let row_done = self.row.as_ref().is_none_or(|s| matches!(s, Saved::Done(_)));
        let fig4_done = self.fig4.as_ref().is_none_or(|s| matches!(s, Saved::Done(_)));
        row_done && fig4_done
    }
}

/// Every job of a reproduction, each with its saved result if there is a valid one.
pub struct Plan {
    jobs: Vec<Planned>,
}

impl Plan {
    /// The jobs `options` ask for on the first `n_images` test images with the model of hash
    /// `model_sha256`, looked up in the output folder (not at all under `force`); `parts` are
    /// the shard's parts of Table 1's and Table 2's attacks when the run is sharded.
    pub fn new(
        options: &ReproduceOptions,
        model_sha256: &str,
        n_images: usize,
        parts: &[Option<ShardPart>; 2],
    ) -> Result<Self> {
        let key = |targeted: bool, attack: AttackKind, budget: usize| -> Result<RowKey> {
            Ok(RowKey {
                dataset: options.dataset,
                model_sha256: model_sha256.to_string(),
                n_images,
                targeted,
                spec: paper_spec(attack, options.dataset, targeted, budget)?,
                batch_size: options.execution.batch_size(),
                shard: parts[usize::from(targeted)].clone(),
            })
        };
        let want_fig4 = !options.table1_budgets.is_empty() && options.fig4_steps > 0;
        let mut jobs = Vec::new();
        for table in Table::ALL {
            let budgets = match table {
                Table::Untargeted => &options.table1_budgets,
                Table::Targeted => &options.table2_budgets,
            };
            for &attack in &options.attacks {
                for &budget in budgets {
                    jobs.push(Job {
                        kind: JobKind::Row(table),
                        attack,
                        budget,
                        fig4: want_fig4 && table == Table::Untargeted && budget == options.fig4_steps,
                        key: key(table.targeted(), attack, budget)?,
                    });
                }
            }
        }
        if want_fig4 && !options.table1_budgets.contains(&options.fig4_steps) {
            for &attack in &options.attacks {
                jobs.push(Job {
                    kind: JobKind::Fig4,
                    attack,
                    budget: options.fig4_steps,
                    fig4: true,
                    key: key(false, attack, options.fig4_steps)?,
                });
            }
        }
        let out = &options.out;
        let jobs = jobs
            .into_iter()
            .map(|job| {
                let row_path = match job.kind {
                    JobKind::Row(table) => Some(row_path(out, table, job.attack, job.budget)),
                    JobKind::Fig4 => None,
                };
                let fig4_path = job.fig4.then(|| fig4_path(out, job.attack));
                Planned {
                    row: look_up(&row_path, &job.key, options.force),
                    fig4: look_up(&fig4_path, &job.key, options.force),
                    job,
                    row_path,
                    fig4_path,
                }
            })
            .collect();
        Ok(Self { jobs })
    }

    /// Says on stderr which saved files are for another experiment or damaged (they are
    /// recomputed).
    pub fn report_stale(&self) {
        for p in &self.jobs {
            let found = [
                (p.row_path.as_ref(), p.row.as_ref().map(Saved::status)),
                (p.fig4_path.as_ref(), p.fig4.as_ref().map(Saved::status)),
            ];
            for (path, status) in found {
                if let (Some(path), Some(Some(why))) = (path, status) {
                    eprintln!("{}: {why}; recomputing", path.display());
                }
            }
        }
    }

    /// The jobs still to run.
    pub fn todo(&self) -> Vec<Job> {
        self.jobs.iter().filter(|p| !p.done()).map(|p| p.job.clone()).collect()
    }

    /// The rows reused from earlier runs.
    pub fn done_rows(&self) -> Vec<Row> {
        self.jobs
            .iter()
            .filter(|p| p.done())
            .filter_map(|p| match &p.row {
                Some(Saved::Done(r)) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Figure 4 data reused from earlier runs.
    pub fn done_fig4(&self) -> Vec<Fig4Data> {
        self.jobs
            .iter()
            .filter(|p| p.done())
            .filter_map(|p| match &p.fig4 {
                Some(Saved::Done(f)) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What is saved at `path` (if the job has such a file) for `key`; nothing under `force`.
fn look_up<T: Keyed + serde::de::DeserializeOwned>(
    path: &Option<PathBuf>,
    key: &RowKey,
    force: bool,
) -> Option<Saved<T>> {
    path.as_ref()
        .map(|p| if force { Saved::Absent } else { lookup(p, key) })
}

impl<T> Saved<T> {
    /// Why the saved file is not reused, when it exists but is not.
    fn status(&self) -> Option<String> {
        match self {
            Saved::Done(_) | Saved::Absent => None,
            Saved::Mismatch => Some("saved for a different experiment (data set, model, settings or N)".into()),
            Saved::Corrupt(reason) => Some(format!("damaged ({reason})")),
        }
    }
}
