//! Joining the output folders of a sharded `anu reproduce` into the folder the unsharded run
//! writes: every row's norms in set order and its summary recomputed, Figure 4's sums added,
//! Figure 3 (the first image, which every shard runs) taken from the first shard, the tables
//! and figures drawn again.

use std::path::{Path, PathBuf};

use super::FIG3_STEPS;
use super::report::{self, Fig3Data};
use super::rows::{Fig4Data, Row, RowKey, Table};
use crate::attack::stats::mean_median;
use crate::error::{Error, Result};
use crate::fsutil::{JsonFile, create_dir, read_json, write_json};
use crate::manifest::Manifest;
use crate::shard::{ShardPart, check_cover};

/// Whether `dir` looks like the output folder of `anu reproduce`.
pub fn is_reproduce_folder(dir: &Path) -> bool {
    dir.join("rows").is_dir()
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    match read_json(path) {
        JsonFile::Valid(v) => Ok(v),
        JsonFile::Absent => Err(Error::Invalid(format!(
            "{}: no such file (has that shard finished?)",
            path.display()
        ))),
        JsonFile::Corrupt(reason) => Err(Error::Invalid(format!("{}: {reason}", path.display()))),
    }
}

/// The saved results (rows and Figure 4 data) of a folder: the JSON files of `rows/`, without
/// the partial files of unfinished rows.
fn saved_names(dir: &Path) -> Result<Vec<String>> {
    let rows = dir.join("rows");
    let entries = std::fs::read_dir(&rows).map_err(|e| Error::Invalid(format!("{}: {e}", rows.display())))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The key without its shard, and the shard's part (an error naming `file` when it has none).
fn split_key(key: &RowKey, file: &Path) -> Result<(RowKey, ShardPart)> {
    let mut bare = key.clone();
    let part = bare.shard.take().ok_or_else(|| {
        Error::Invalid(format!(
            "{} is not the result of a sharded run (its key has no shard)",
            file.display()
        ))
    })?;
    Ok((bare, part))
}

/// Reads file `name` of `rows/` from every shard folder, checks that they are the parts of one
/// experiment covering its attacks once, and returns them in set order with their parts.
fn gather<T: serde::de::DeserializeOwned>(
    shards: &[PathBuf],
    name: &str,
    key: impl Fn(&T) -> &RowKey,
) -> Result<Vec<(T, ShardPart)>> {
    let mut items = Vec::with_capacity(shards.len());
    let mut named = Vec::with_capacity(shards.len());
    let mut reference: Option<(RowKey, PathBuf)> = None;
    for dir in shards {
        let file = dir.join("rows").join(name);
        let item: T = read(&file)?;
        let (bare, part) = split_key(key(&item), &file)?;
        match &reference {
            None => reference = Some((bare, file.clone())),
            Some((first, first_file)) if *first != bare => {
                return Err(Error::Invalid(format!(
                    "{} is a shard of another experiment than {} (data set, model, N, attack settings or batch size differ)",
                    file.display(),
                    first_file.display()
                )));
            }
            Some(_) => {}
        }
        named.push((file.display().to_string(), part.clone()));
        items.push((item, part));
    }
    let order = check_cover(&named)?;
    let mut items: Vec<Option<(T, ShardPart)>> = items.into_iter().map(Some).collect();
    Ok(order
        .iter()
        .map(|&i| items[i].take().expect("each index once"))
        .collect())
}

fn merge_row(parts: Vec<(Row, ShardPart)>, file: &Path) -> Result<Row> {
    let mut merged: Option<Row> = None;
    for (row, part) in parts {
        if row.norms.len() != part.len() {
            return Err(Error::Invalid(format!(
                "{}: a row of {} attacks holds {} norms (made by an earlier build, or damaged)",
                file.display(),
                part.len(),
                row.norms.len()
            )));
        }
        match merged.as_mut() {
            None => merged = Some(row),
            Some(m) => {
                m.norms.extend(row.norms);
                m.segments.extend(row.segments);
                m.seconds += row.seconds;
            }
        }
    }
    let mut m = merged.expect("at least one shard");
    m.key.shard = None;
    let values: Vec<f32> = m.norms.iter().map(|n| n.unwrap_or(f32::INFINITY)).collect();
    let (mean, median) = mean_median(&values);
    m.n_attacks = m.norms.len();
    m.success_rate = m.norms.iter().filter(|n| n.is_some()).count() as f64 / m.n_attacks.max(1) as f64;
    m.mean_l2 = mean;
    m.median_l2 = median;
    Ok(m)
}

fn merge_fig4(parts: Vec<(Fig4Data, ShardPart)>, file: &Path) -> Result<Fig4Data> {
    let steps = parts[0].0.key.spec.steps();
    let mut merged: Option<Fig4Data> = None;
    for (data, _) in parts {
        if data.sums.len() != steps && data.attacks > 0 {
            return Err(Error::Invalid(format!(
                "{}: Figure 4 data without its sums (made by an earlier build, or damaged)",
                file.display()
            )));
        }
        match merged.as_mut() {
            None => merged = Some(data),
            Some(m) => {
                if m.sums.is_empty() {
                    m.sums = vec![0.0; data.sums.len()];
                }
                for (s, d) in m.sums.iter_mut().zip(&data.sums) {
                    *s += d;
                }
                m.attacks += data.attacks;
            }
        }
    }
    let mut m = merged.expect("at least one shard");
    m.key.shard = None;
    m.mean_norm = m.sums.iter().map(|s| s / m.attacks.max(1) as f64).collect();
    Ok(m)
}

/// Merges the shard folders `shards` into `out` and returns the merged rows; `command` is the
/// merge's command line, for the manifest.
pub fn merge_folders(out: &Path, shards: &[PathBuf], command: String) -> Result<Vec<Row>> {
    let first = shards
        .first()
        .ok_or_else(|| Error::Invalid("no shards to merge".into()))?;
    let names = saved_names(first)?;
    for dir in &shards[1..] {
        let theirs = saved_names(dir)?;
        if let Some(missing) = names
            .iter()
            .find(|n| !theirs.contains(n))
            .or(theirs.iter().find(|n| !names.contains(n)))
        {
            return Err(Error::Invalid(format!(
                "{} and {} do not hold the same rows (rows/{missing} is in only one): has every shard finished the same tables?",
                first.display(),
                dir.display()
            )));
        }
    }
    create_dir(&out.join("rows"))?;
    let mut rows = Vec::new();
    let mut fig4 = Vec::new();
    for name in &names {
        let file = first.join("rows").join(name);
        if name.starts_with("fig4-") {
            let data = merge_fig4(gather(shards, name, |d: &Fig4Data| &d.key)?, &file)?;
            write_json(&out.join("rows").join(name), &data)?;
            fig4.push(data);
        } else {
            let row = merge_row(gather(shards, name, |r: &Row| &r.key)?, &file)?;
            write_json(&out.join("rows").join(name), &row)?;
            rows.push(row);
        }
    }
    let manifest: Manifest = read(&first.join("manifest.json"))?;
    let model_file = manifest
        .models
        .first()
        .map_or_else(PathBuf::new, |m| PathBuf::from(&m.path));
    let dataset = manifest.dataset;
    // Rows in the order of the first shard's tables (attacks as asked, then budgets).
    let mut all = Vec::new();
    for table in Table::ALL {
        let mut table_rows: Vec<Row> = rows.iter().filter(|r| r.table == table).cloned().collect();
        if table_rows.is_empty() {
            continue;
        }
        let order: Vec<Row> = match read_json(&first.join(format!("{}.json", table.stem()))) {
            JsonFile::Valid(order) => order,
            _ => Vec::new(),
        };
        let position = |r: &Row| {
            order
                .iter()
                .position(|o| o.attack == r.attack && o.budget == r.budget)
                .unwrap_or(usize::MAX)
        };
        table_rows.sort_by_key(|r| (position(r), r.budget));
        report::write_table(out, table, dataset, &model_file, &table_rows)?;
        all.extend(table_rows);
    }
    let fig3: Vec<Fig3Data> = read(&first.join("fig3.json"))?;
    report::figure3(out, dataset, FIG3_STEPS, &fig3)?;
    if !fig4.is_empty() {
        let attack_order: Vec<_> = fig3.iter().map(|f| f.attack).collect();
        fig4.sort_by_key(|f| attack_order.iter().position(|a| *a == f.attack));
        report::figure4(out, dataset, fig4[0].key.n_images, &fig4)?;
    }
    Manifest::merged(&manifest, command, shards.len()).write_to(out)?;
    Ok(all)
}
