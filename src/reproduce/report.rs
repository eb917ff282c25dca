//! The reproduction's outputs: Tables 1-2 as Markdown, CSV and JSON, Figures 3-4 as PNG.

use std::path::Path;

use super::rows::{Fig4Data, Row, Table};
use crate::attack::AttackKind;
use crate::data::DatasetName;
use crate::error::Result;
use crate::figures::{Series, line_chart, unless_undrawable};
use crate::fsutil::{write_atomic, write_json};

/// Data behind Figure 3: best adversarial norm so far per iteration for one image.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Fig3Data {
    /// The attack.
    pub attack: AttackKind,
    /// Best norm after each iteration (`None` before the first adversarial).
    pub best_norm: Vec<Option<f32>>,
}

/// Writes `DIR/<table>.md`, `.json` and `.csv`.
pub fn write_table(out: &Path, table: Table, dataset: DatasetName, model_file: &Path, rows: &[Row]) -> Result<()> {
    let first = rows.first();
    let mut md = format!(
        "# {} ({dataset}, first {} test images, {} attacks)\n\nModel `{}` (sha256 {}).\n\n| Attack | Budget | Mean L2 | Median L2 | time (s) | success |\n|---|---:|---:|---:|---:|---:|\n",
        table.title(dataset),
        first.map_or(0, |r| r.key.n_images),
        first.map_or(0, |r| r.n_attacks),
        model_file.display(),
        first.map_or("-", |r| &r.key.model_sha256[..r.key.model_sha256.len().min(16)]),
    );
    let mut csv = String::from("attack,budget,n_images,n_attacks,success_rate,mean_l2,median_l2,seconds,batch_size\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.1} | {:.4} |\n",
            r.attack.label(),
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
            r.key.n_images,
            r.n_attacks,
            r.success_rate,
            r.mean_l2,
            r.median_l2,
            r.seconds,
            r.key.batch_size
        ));
    }
    for (ext, text) in [("md", md), ("csv", csv)] {
        let path = out.join(format!("{}.{ext}", table.stem()));
        write_atomic(&path, text.as_bytes())?;
    }
    Ok(write_json(&out.join(format!("{}.json", table.stem())), rows)?)
}

/// Writes `fig3.json` and draws `fig3.png`.
pub fn figure3(out: &Path, dataset: DatasetName, steps: usize, data: &[Fig3Data]) -> Result<()> {
    write_json(&out.join("fig3.json"), data)?;
    let series: Vec<Series> = data
        .iter()
        .map(|f| Series {
            name: f.attack.label().to_string(),
            points: f
                .best_norm
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.map(|v| ((k + 1) as f64, v as f64)))
                .collect(),
        })
        .collect();
    unless_undrawable(line_chart(
        &out.join("fig3.png"),
        &format!("Figure 3: {dataset} first test image, {steps} iterations"),
        "iteration",
        "minimum adversarial L2 norm so far",
        &series,
    ))
}

/// Draws `fig4.png` from the saved mean norms.
pub fn figure4(out: &Path, dataset: DatasetName, n_images: usize, data: &[Fig4Data]) -> Result<()> {
    let series: Vec<Series> = data
        .iter()
        .map(|f| Series {
            name: f.attack.label().to_string(),
            points: f
                .mean_norm
                .iter()
                .enumerate()
                .map(|(k, &v)| ((k + 1) as f64, v))
                .collect(),
        })
        .collect();
    unless_undrawable(line_chart(
        &out.join("fig4.png"),
        &format!("Figure 4: {dataset} first {n_images} test images"),
        "iteration",
        "mean L2 norm of the perturbed images",
        &series,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_that_cannot_be_written_is_an_error_that_names_it() {
        let data = [Fig3Data {
            attack: AttackKind::Ddn,
            best_norm: vec![None, Some(1.5), Some(1.2)],
        }];
        let out = tempfile::tempdir().unwrap();
        // A folder where the figure goes: it cannot be written, as on a full disk.
        std::fs::create_dir(out.path().join("fig3.png")).unwrap();
        let err = figure3(out.path(), DatasetName::Mnist, 3, &data)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fig3.png"), "{err}");
        let out = tempfile::tempdir().unwrap();
        figure3(out.path(), DatasetName::Mnist, 3, &data).unwrap();
        assert!(out.path().join("fig3.png").is_file());
    }
}
