//! `anu reproduce`: the paper's attack evaluation (Tables 1-2, Figures 3-4) in one job, with
//! finished rows saved as they complete and reused on a rerun of the same experiment. A row
//! (other than one that also records Figure 4's per-iteration means) saves the results of its
//! finished batches in `rows/.NAME.json.part` as it goes, and a rerun continues from them.
//!
//! [`protocol`] says how much of the paper's protocol to run, [`plan`] lists the jobs and which are already done, [`rows`] keeps the saved results and
//! their keys, [`report`] writes tables and figures; [`reproduce`] runs them.

pub mod merge;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod rows;

use std::path::PathBuf;

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

pub use plan::{Job, JobKind, Plan};
pub use protocol::Protocol;
pub use rows::{Fig4Data, Row, RowKey, Table};

use crate::attack::stats::mean_median;
use crate::attack::{
    AttackKind, AttackSet, Campaign, EveryStep, Execution, MeanNormRecorder, OnOtherCampaign, SavedCampaign,
    TraceRecorder, attack_all, paper_spec,
};
use crate::data::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::fsutil::{create_dir, partial_path, remove_if_present, write_json};
use crate::models::LoadedModel;
use crate::shard::{Shard, ShardPart};
use report::Fig3Data;

/// Iterations of the Figure 3 runs (the paper's).
pub const FIG3_STEPS: usize = 100;

/// What to run.
#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    /// Data set (selects the paper's hyperparameters).
    pub dataset: DatasetName,
    /// Output folder.
    pub out: PathBuf,
    /// The attacks compared, in table order.
    pub attacks: Vec<AttackKind>,
    /// Budgets of Table 1 (empty: skip the table).
    pub table1_budgets: Vec<usize>,
    /// Budgets of Table 2 (empty: skip the table).
    pub table2_budgets: Vec<usize>,
    /// Iterations of the Figure 4 runs (the paper: 1000; 0: no Figure 4); taken from the
    /// Table 1 row of that budget when there is one.
    pub fig4_steps: usize,
    /// Redo rows that are already saved.
    pub force: bool,
    /// Batch size and pass chunking.
    pub execution: Execution,
    /// The device as it names itself, recorded with each run's share of a row.
    pub device_name: String,
    /// Run only this part of each table's attacks (`merge` joins the parts).
    pub shard: Option<Shard>,
}

/// Runs the reproduction on `test` (the first N test images) and writes everything to
/// `options.out`. Returns the rows of both tables.
pub fn reproduce(model: &LoadedModel, test: &Dataset, options: &ReproduceOptions, device: &Device) -> Result<Vec<Row>> {
    if test.is_empty() {
        return Err(Error::Invalid("no images to attack: the data set is empty".into()));
    }
    model.check_fits(options.dataset)?;
    let out = &options.out;
    create_dir(&out.join("rows"))?;
    let batch = options.execution.batch_size();
    // The sets are split after they are made, so a shard attacks exactly what the unsharded
    // run attacks in those places.
    let (untargeted, untargeted_part) = shard_of(AttackSet::untargeted(test.clone()), options.shard, batch);
    let (targeted, targeted_part) = shard_of(
        AttackSet::targeted(test, options.dataset.info().targets),
        options.shard,
        batch,
    );
    let plan = Plan::new(options, &model.sha256, test.len(), &[untargeted_part, targeted_part])?;
    plan.report_stale();

    let todo = plan.todo();
    let total: u64 = todo
        .iter()
        .map(|j| {
            let attacks = if j.targeted() { targeted.len() } else { untargeted.len() };
            (attacks.div_ceil(batch) * j.budget) as u64
        })
        .sum::<u64>()
        + (options.attacks.len() * FIG3_STEPS) as u64;
    let bar = progress_bar(total);

    let fig3 = figure3_runs(model, test, options, device, &bar)?;
    report::figure3(out, options.dataset, FIG3_STEPS, &fig3)?;

    let mut rows = plan.done_rows();
    let mut fig4 = plan.done_fig4();
    for job in todo {
        let set = if job.targeted() { &targeted } else { &untargeted };
        bar.set_message(job.to_string());
        // A row resumes from its finished batches, unless it also records Figure 4's means
        // (those need every batch of one run) or the rerun is forced.
        let partial = match job.kind {
            JobKind::Row(table) if !job.records_fig4() => {
                Some(partial_path(&rows::row_path(out, table, job.attack, job.budget)))
            }
            _ => None,
        };
        let run = serde_json::to_value(&job.key).map_err(|e| Error::Invalid(format!("row key: {e}")))?;
        if let (Some(path), true) = (&partial, options.force) {
            remove_if_present(path)?;
        }
        // As with saved rows, partial results of another experiment, or damaged ones, are
        // reported and the row starts over (overwriting them).
        let mut note = |line: String| bar.suspend(|| eprintln!("{line}"));
        let mut saved = SavedCampaign::open(partial.as_deref(), run, set, OnOtherCampaign::StartOver, &mut note)?;
        bar.inc((saved.done() / batch * job.budget) as u64);
        let mut progress = EveryStep(|| bar.inc(1));
        let mut means = MeanNormRecorder::default();
        let mut observers = (&mut progress, job.records_fig4().then_some(&mut means));
        let campaign = Campaign {
            model: &model.model,
            set,
            spec: &job.key.spec,
            execution: &options.execution,
            device,
        };
        let result = saved
            .run(&campaign, options.device_name.clone(), &mut observers, &mut note)
            .map_err(|e| e.blamed_on(model))?;
        if job.records_fig4() {
            let data = Fig4Data {
                attack: job.attack,
                mean_norm: means.means(),
                sums: means.sums().to_vec(),
                attacks: means.attacks(),
                key: job.key.clone(),
            };
            write_json(&rows::fig4_path(out, job.attack), &data)?;
            fig4.push(data);
        }
        if let JobKind::Row(table) = job.kind {
            let (mean_l2, median_l2) = mean_median(&result.norms);
            let row = Row {
                table,
                attack: job.attack,
                budget: job.budget,
                n_attacks: set.len(),
                success_rate: result.success_rate(),
                mean_l2,
                median_l2,
                seconds: result.seconds,
                segments: saved.checkpoint.segments.clone(),
                norms: result.norms.iter().map(|n| n.is_finite().then_some(*n)).collect(),
                key: job.key.clone(),
            };
            write_json(&rows::row_path(out, table, job.attack, job.budget), &row)?;
            saved.finish()?;
            rows.push(row);
        }
    }
    bar.finish_and_clear();

    let mut all = Vec::new();
    for table in Table::ALL {
        let mut table_rows: Vec<Row> = rows.iter().filter(|r| r.table == table).cloned().collect();
        if table_rows.is_empty() {
            continue;
        }
        let order = |r: &Row| (options.attacks.iter().position(|a| *a == r.attack), r.budget);
        table_rows.sort_by_key(order);
        report::write_table(out, table, options.dataset, &model.path, &table_rows)?;
        all.extend(table_rows);
    }
    if !fig4.is_empty() {
        fig4.sort_by_key(|f| options.attacks.iter().position(|a| *a == f.attack));
        report::figure4(out, options.dataset, test.len(), &fig4)?;
    }
    Ok(all)
}

/// The part of `set` that `shard` attacks in batches of `batch`, with its record; all of it
/// without a shard.
fn shard_of(set: AttackSet, shard: Option<Shard>, batch: usize) -> (AttackSet, Option<ShardPart>) {
    let Some(shard) = shard else {
        return (set, None);
    };
    let range = shard.range(set.len(), batch);
    let part = ShardPart {
        shard,
        first: range.start,
        end: range.end,
        total: set.len(),
        set_sha256: set.sha256(),
    };
    (set.slice(range), Some(part))
}

/// Figure 3: the first test image, [`FIG3_STEPS`] iterations of every attack.
fn figure3_runs(
    model: &LoadedModel,
    test: &Dataset,
    options: &ReproduceOptions,
    device: &Device,
    bar: &ProgressBar,
) -> Result<Vec<Fig3Data>> {
    let first = AttackSet::untargeted(test.take(1));
    let one = Execution::new(1, options.execution.pass_chunk())?;
    let mut data = Vec::new();
    for &attack in &options.attacks {
        let spec = paper_spec(attack, options.dataset, false, FIG3_STEPS)?;
        bar.set_message(format!("fig3 {attack}"));
        let mut trace = TraceRecorder::default();
        attack_all(
            &model.model,
            &first,
            &spec,
            &one,
            device,
            false,
            &mut (EveryStep(|| bar.inc(1)), &mut trace),
        )
        .map_err(|e| e.blamed_on(model))?;
        data.push(Fig3Data {
            attack,
            best_norm: trace
                .trace
                .best_norm
                .iter()
                .map(|row| row[0].is_finite().then_some(row[0]))
                .collect(),
        });
    }
    Ok(data)
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "reproduce [{bar:30}] {pos}/{len} batch-iterations {msg} elapsed {elapsed} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
