//! `anu reproduce`: the paper's attack evaluation (Tables 1-2, Figures 3-4) in one job, with
//! finished rows saved as they complete and skipped on a rerun.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use crate::attack::stats::mean_median;
use crate::attack::{AttackSet, attack_all, paper_config};
use crate::data::{Dataset, DatasetName};
use crate::figures::{Series, line_chart};
use crate::fsutil::write_atomic;
use crate::models::Classifier;

/// The paper's budgets for Table 1 (untargeted).
pub const TABLE1_BUDGETS: [usize; 6] = [50, 70, 100, 200, 500, 1000];
/// The paper's budgets for Table 2 (targeted).
pub const TABLE2_BUDGETS: [usize; 6] = [50, 85, 100, 300, 500, 1000];
/// The attacks compared, in table order.
pub const ATTACKS: [&str; 2] = ["ddn", "anu"];

/// What to run.
#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    /// Data set (selects the paper's hyperparameters).
    pub dataset: DatasetName,
    /// Output folder.
    pub out: PathBuf,
    /// Budgets of Table 1 (empty: skip the table).
    pub table1_budgets: Vec<usize>,
    /// Budgets of Table 2 (empty: skip the table).
    pub table2_budgets: Vec<usize>,
    /// Iterations of the Figure 4 runs (the paper: 1000); reused from Table 1 when it has them.
    pub fig4_steps: usize,
    /// Redo rows that are already saved.
    pub force: bool,
    /// Images per batch (targeted attacks count one image per target).
    pub batch_size: usize,
    /// Images per forward/backward pass inside a batch (see [`crate::attack::AttackConfig`]).
    pub pass_chunk: usize,
}

/// One row of Table 1 or 2.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Row {
    /// `table1` or `table2`.
    pub table: String,
    /// `ddn` or `anu`.
    pub attack: String,
    /// Iterations K.
    pub budget: usize,
    /// Images attacked.
    pub n_images: usize,
    /// Attacks run (9 per image when targeted).
    pub n_attacks: usize,
    /// Fraction of successful attacks.
    pub success_rate: f64,
    /// Mean L2 norm over successful attacks (NaN, stored as null, when none succeeded).
    #[serde(with = "nan_as_null")]
    pub mean_l2: f64,
    /// Median L2 norm over successful attacks (NaN, stored as null, when none succeeded).
    #[serde(with = "nan_as_null")]
    pub median_l2: f64,
    /// Wall time of the attack loops, in seconds.
    pub seconds: f64,
    /// Batch size used.
    pub batch_size: usize,
}

/// JSON has no NaN: store it as null and read null back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// A unit of work: one attack at one budget on one table.
struct Job {
    table: &'static str,
    attack: &'static str,
    budget: usize,
    trace_for_fig4: bool,
}

impl Job {
    fn row_path(&self, out: &Path) -> PathBuf {
        out.join("rows")
            .join(format!("{}-{}-{}.json", self.table, self.attack, self.budget))
    }
    fn targeted(&self) -> bool {
        self.table == "table2"
    }
}

fn fig4_path(out: &Path, attack: &str) -> PathBuf {
    out.join("rows").join(format!("fig4-{attack}.json"))
}

/// Data behind Figure 4: mean norm of the current iterates over the images, per iteration.
#[derive(serde::Serialize, serde::Deserialize)]
struct Fig4Data {
    attack: String,
    steps: usize,
    n_images: usize,
    mean_norm: Vec<f64>,
}

/// Data behind Figure 3: best adversarial norm so far per iteration for one image.
#[derive(serde::Serialize, serde::Deserialize)]
struct Fig3Data {
    attack: String,
    best_norm: Vec<Option<f32>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Runs the reproduction on `test` (the first N test images) and writes everything to
/// `options.out`. Returns the rows of both tables.
pub fn reproduce(model: &Classifier, test: &Dataset, options: &ReproduceOptions, device: &Device) -> Result<Vec<Row>> {
    let out = &options.out;
    std::fs::create_dir_all(out.join("rows")).with_context(|| format!("{}: cannot create", out.display()))?;
    let n = test.len();
    let untargeted = AttackSet::untargeted(test.clone());
    let targeted = AttackSet::all_other_targets(test);
    let batch = options.batch_size.max(1);

    let mut jobs = Vec::new();
    for attack in ATTACKS {
        for &budget in &options.table1_budgets {
            jobs.push(Job {
                table: "table1",
                attack,
                budget,
                trace_for_fig4: budget == options.fig4_steps,
            });
        }
    }
    let want_fig4 = !options.table1_budgets.is_empty() && options.fig4_steps > 0;
    if want_fig4 {
        for attack in ATTACKS {
            if !options.table1_budgets.contains(&options.fig4_steps) {
                jobs.push(Job {
                    table: "fig4",
                    attack,
                    budget: options.fig4_steps,
                    trace_for_fig4: true,
                });
            }
        }
    }
    for attack in ATTACKS {
        for &budget in &options.table2_budgets {
            jobs.push(Job {
                table: "table2",
                attack,
                budget,
                trace_for_fig4: false,
            });
        }
    }

    let is_done = |job: &Job| -> bool {
        if options.force {
            return false;
        }
        let row_ok = job.table == "fig4"
            || read_json::<Row>(&job.row_path(out)).is_some_and(|r| r.n_images == n && r.batch_size == batch);
        let fig_ok = !job.trace_for_fig4
            || read_json::<Fig4Data>(&fig4_path(out, job.attack))
                .is_some_and(|f| f.n_images == n && f.steps == job.budget);
        row_ok && fig_ok
    };
    let iterations = |job: &Job| -> u64 {
        let attacks = if job.targeted() {
            targeted.len()
        } else {
            untargeted.len()
        };
        (attacks.div_ceil(batch) * job.budget) as u64
    };
    let fig3_steps = 100;
    let total: u64 = jobs.iter().filter(|j| !is_done(j)).map(iterations).sum::<u64>() + 2 * fig3_steps as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "reproduce [{bar:30}] {pos}/{len} batch-iterations {msg} elapsed {elapsed} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );

    // Figure 3: the first test image, 100 iterations, DDN vs ANU.
    let first = AttackSet::untargeted(test.take(1));
    let mut fig3 = Vec::new();
    for attack in ATTACKS {
        let mut config = paper_config(attack, options.dataset, false, fig3_steps).map_err(anyhow::Error::msg)?;
        config.record_trace = true;
        config.pass_chunk = options.pass_chunk;
        bar.set_message(format!("fig3 {attack}"));
        let result = attack_all(model, &first, &config, 1, device, false, || bar.inc(1));
        let trace = result.trace.expect("trace requested");
        fig3.push(Fig3Data {
            attack: attack.to_string(),
            best_norm: trace
                .best_norm
                .iter()
                .map(|row| row[0].is_finite().then_some(row[0]))
                .collect(),
        });
    }
    write_json(&out.join("fig3.json"), &fig3)?;

    for job in &jobs {
        if is_done(job) {
            continue;
        }
        let set = if job.targeted() { &targeted } else { &untargeted };
        let mut config =
            paper_config(job.attack, options.dataset, job.targeted(), job.budget).map_err(anyhow::Error::msg)?;
        config.record_trace = job.trace_for_fig4;
        config.pass_chunk = options.pass_chunk;
        bar.set_message(format!("{} {} {}", job.table, job.attack, job.budget));
        let result = attack_all(model, set, &config, batch, device, false, || bar.inc(1));
        if let Some(trace) = &result.trace {
            let mean_norm = trace
                .norm
                .iter()
                .map(|row| row.iter().map(|&v| v as f64).sum::<f64>() / row.len() as f64)
                .collect();
            let data = Fig4Data {
                attack: job.attack.to_string(),
                steps: job.budget,
                n_images: n,
                mean_norm,
            };
            write_json(&fig4_path(out, job.attack), &data)?;
        }
        if job.table != "fig4" {
            let (mean_l2, median_l2) = mean_median(&result.norms);
            let row = Row {
                table: job.table.to_string(),
                attack: job.attack.to_string(),
                budget: job.budget,
                n_images: n,
                n_attacks: set.len(),
                success_rate: result.success.iter().filter(|&&s| s).count() as f64 / set.len() as f64,
                mean_l2,
                median_l2,
                seconds: result.seconds,
                batch_size: batch,
            };
            write_json(&job.row_path(out), &row)?;
        }
    }
    bar.finish_and_clear();

    let mut rows = Vec::new();
    for (table, budgets, title) in [
        ("table1", &options.table1_budgets, "Table 1: untargeted attacks"),
        (
            "table2",
            &options.table2_budgets,
            "Table 2: targeted attacks (all other classes)",
        ),
    ] {
        if budgets.is_empty() {
            continue;
        }
        let mut table_rows = Vec::new();
        for attack in ATTACKS {
            for &budget in budgets.iter() {
                let job = Job {
                    table: if table == "table1" { "table1" } else { "table2" },
                    attack,
                    budget,
                    trace_for_fig4: false,
                };
                let row: Row = read_json(&job.row_path(out))
                    .with_context(|| format!("{}: missing row", job.row_path(out).display()))?;
                table_rows.push(row);
            }
        }
        write_table(out, table, title, options.dataset, &table_rows)?;
        rows.extend(table_rows);
    }

    let fig3_series: Vec<Series> = fig3
        .iter()
        .map(|f| Series {
            name: f.attack.to_uppercase(),
            points: f
                .best_norm
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.map(|v| ((k + 1) as f64, v as f64)))
                .collect(),
        })
        .collect();
    plot_or_warn(line_chart(
        &out.join("fig3.png"),
        &format!(
            "Figure 3: {} first test image, {fig3_steps} iterations",
            options.dataset
        ),
        "iteration",
        "minimum adversarial L2 norm so far",
        &fig3_series,
    ));
    if want_fig4 {
        let series: Vec<Series> = ATTACKS
            .iter()
            .filter_map(|a| read_json::<Fig4Data>(&fig4_path(out, a)))
            .map(|f| Series {
                name: f.attack.to_uppercase(),
                points: f
                    .mean_norm
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| ((k + 1) as f64, v))
                    .collect(),
            })
            .collect();
        plot_or_warn(line_chart(
            &out.join("fig4.png"),
            &format!("Figure 4: {} first {n} test images", options.dataset),
            "iteration",
            "mean L2 norm of the perturbed images",
            &series,
        ));
    }
    Ok(rows)
}

fn plot_or_warn(result: Result<()>) {
    if let Err(e) = result {
        eprintln!("warning: {e:#}");
    }
}

/// Writes `DIR/<table>.md`, `.json` and `.csv`.
fn write_table(out: &Path, table: &str, title: &str, dataset: DatasetName, rows: &[Row]) -> Result<()> {
    let mut md = format!(
        "# {title} ({dataset}, first {} test images, {} attacks)\n\n| Attack | Budget | Mean L2 | Median L2 | time (s) | success |\n|---|---:|---:|---:|---:|---:|\n",
        rows.first().map_or(0, |r| r.n_images),
        rows.first().map_or(0, |r| r.n_attacks)
    );
    let mut csv = String::from("attack,budget,n_images,n_attacks,success_rate,mean_l2,median_l2,seconds,batch_size\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.1} | {:.4} |\n",
            r.attack.to_uppercase(),
            r.budget,
            r.mean_l2,
            r.median_l2,
            r.seconds,
            r.success_rate
        ));
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.attack,
            r.budget,
            r.n_images,
            r.n_attacks,
            r.success_rate,
            r.mean_l2,
            r.median_l2,
            r.seconds,
            r.batch_size
        ));
    }
    write_atomic(&out.join(format!("{table}.md")), md.as_bytes())?;
    write_atomic(&out.join(format!("{table}.csv")), csv.as_bytes())?;
    write_json(&out.join(format!("{table}.json")), &rows)?;
    Ok(())
}
