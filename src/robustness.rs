//! Robust accuracy as a function of the maximum L2 norm, from minimal-norm attacks
//! (paper Figure 5), and the adversarial-example grid (Figure 6).

use std::path::Path;

use burn::prelude::*;

use crate::attack::{AttackSet, AttackSpec, Execution, Observer, attack_all};
use crate::data::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::eval::predictions;
use crate::figures::{Cell, Series, image_grid, line_chart, unless_undrawable};
use crate::fsutil::{create_dir, write_atomic, write_json};
use crate::models::LoadedModel;

/// Accuracy at each `eps`: the fraction of images whose minimal adversarial distance exceeds
/// eps. Distances are 0 for images misclassified already and infinity where the attack
/// failed, so the value at eps = 0 is the clean accuracy and the curve never increases.
/// Without any distance there is no accuracy: every value is NaN.
pub fn robust_accuracy(distances: &[f32], eps: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = distances.iter().map(|&d| d as f64).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len() as f64;
    eps.iter()
        .map(|&e| {
            // Number of distances <= e, by binary search on the sorted list.
            let at_most = sorted.partition_point(|&d| d <= e);
            (sorted.len() - at_most) as f64 / n
        })
        .collect()
}

/// Most points of an eps grid: far more than a figure or a table can show.
pub const MAX_EPS_POINTS: usize = 100_000;

/// Evenly spaced eps values from 0 to `max` inclusive. `max` must be a positive number and
/// the grid needs at least 2 points (0 and `max`); other values are refused rather than
/// stretched into a grid they do not describe.
pub fn eps_grid(max: f64, points: usize) -> Result<Vec<f64>> {
    if !(max.is_finite() && max > 0.0) {
        return Err(Error::Invalid(format!(
            "the largest eps of the curve must be a positive number, not {max}"
        )));
    }
    if points < 2 {
        return Err(Error::Invalid(format!(
            "the eps grid needs at least 2 points (0 and the largest eps), not {points}"
        )));
    }
    if points > MAX_EPS_POINTS {
        return Err(Error::Invalid(format!(
            "the eps grid takes at most {MAX_EPS_POINTS} points (a curve of more shows nothing more), not {points}"
        )));
    }
    Ok((0..points).map(|i| max * i as f64 / (points - 1) as f64).collect())
}

/// The eps values the one-line summary of a model reports accuracy at.
pub const SUMMARY_EPS: [f64; 4] = [0.5, 1.0, 1.5, 2.0];

/// Accuracy at the grid points nearest to each of `targets`, as (eps of that grid point,
/// accuracy) pairs in grid order. A target beyond the grid's largest eps is left out (the
/// curve says nothing there), and a grid point nearest to several targets is given once.
pub fn summary_points(eps: &[f64], accuracy: &[f64], targets: &[f64]) -> Vec<(f64, f64)> {
    let Some(&last) = eps.last() else {
        return Vec::new();
    };
    let mut indices: Vec<usize> = targets
        .iter()
        .filter(|&&t| t <= last + 1e-9)
        .filter_map(|&t| {
            (0..eps.len().min(accuracy.len())).min_by(|&a, &b| (eps[a] - t).abs().total_cmp(&(eps[b] - t).abs()))
        })
        .collect();
    indices.sort_unstable();
    indices.dedup();
    indices.into_iter().map(|i| (eps[i], accuracy[i])).collect()
}

/// An eps value as the summary prints it: at most 4 decimals, trailing zeros dropped but one
/// decimal kept (`0.5`, `1.0`, `0.4286`).
pub fn eps_label(eps: f64) -> String {
    let text = format!("{eps:.4}");
    let trimmed = text.trim_end_matches('0');
    match trimmed.strip_suffix('.') {
        Some(whole) => format!("{whole}.0"),
        None => trimmed.to_string(),
    }
}

/// One line summarising a model's result: clean accuracy, then the accuracy at the grid
/// points nearest to [`SUMMARY_EPS`], each labelled with the eps it was measured at; when the
/// grid stops short of some of them, the line says where it ends.
pub fn summary_line(result: &ModelRobustness, eps: &[f64]) -> String {
    let points = summary_points(eps, &result.accuracy, &SUMMARY_EPS);
    let mut line = format!("{}: clean {:.4}", result.name, result.clean_accuracy);
    for (e, acc) in &points {
        line.push_str(&format!(", acc@{} {acc:.4}", eps_label(*e)));
    }
    let last = eps.last().copied().unwrap_or(0.0);
    if SUMMARY_EPS.iter().any(|&t| t > last + 1e-9) {
        line.push_str(&format!(" (the eps grid ends at {})", eps_label(last)));
    }
    line.push_str(&format!(" ({:.0} s)", result.seconds));
    line
}

/// One CSV field as RFC 4180 writes it: as is, or, when it holds a comma, a double quote or
/// a line break, between double quotes with each double quote inside doubled.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The text of `robustness.csv`: a header `eps,<model name>...`, then one row per eps with
/// each model's accuracy there.
pub fn robustness_csv(eps: &[f64], results: &[ModelRobustness]) -> String {
    let mut csv = String::from("eps");
    for r in results {
        csv.push(',');
        csv.push_str(&csv_field(&r.name));
    }
    csv.push('\n');
    for (i, e) in eps.iter().enumerate() {
        csv.push_str(&format!("{e}"));
        for r in results {
            csv.push_str(&format!(",{}", r.accuracy[i]));
        }
        csv.push('\n');
    }
    csv
}

/// One evaluated model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ModelRobustness {
    /// Label in the figures (the file stem).
    pub name: String,
    /// Weight file.
    pub file: String,
    /// SHA-256 of the weight file.
    #[serde(default)]
    pub model_sha256: String,
    /// Clean accuracy on the attacked images (NaN, written null, without images).
    #[serde(with = "crate::json_nan")]
    pub clean_accuracy: f64,
    /// Minimal adversarial distance per image (0 misclassified, null for failed attacks).
    pub distances: Vec<Option<f32>>,
    /// Robust accuracy at each eps of the grid (NaN, written null, without images).
    #[serde(with = "crate::json_nan::each")]
    pub accuracy: Vec<f64>,
    /// Wall time of the attack, in seconds.
    pub seconds: f64,
    /// Adversarial images (flattened), used for Figure 6; not serialised.
    #[serde(skip)]
    pub adversarials: Vec<f32>,
    /// Predicted class of each adversarial image.
    #[serde(skip)]
    pub adversarial_predictions: Vec<i64>,
}

impl ModelRobustness {
    /// The result of a model from its minimal adversarial distances (`None`: the attack
    /// failed): clean accuracy and the accuracy curve over `eps`; no adversarial images.
    pub fn of_distances(
        name: String,
        file: String,
        model_sha256: String,
        distances: Vec<Option<f32>>,
        eps: &[f64],
        seconds: f64,
    ) -> Self {
        let values: Vec<f32> = distances.iter().map(|d| d.unwrap_or(f32::INFINITY)).collect();
        let clean = values.iter().filter(|&&d| d > 0.0).count() as f64 / values.len() as f64;
        Self {
            name,
            file,
            model_sha256,
            clean_accuracy: clean,
            accuracy: robust_accuracy(&values, eps),
            distances,
            seconds,
            adversarials: Vec::new(),
            adversarial_predictions: Vec::new(),
        }
    }
}

/// Attacks `data` (of `dataset`) with `spec` on each named model and gathers distances and
/// curves; every model must fit the data set, and an empty data set is refused (it has no
/// accuracy to report).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    models: &[(String, LoadedModel)],
    dataset: DatasetName,
    data: &Dataset,
    spec: &AttackSpec,
    execution: &Execution,
    eps: &[f64],
    device: &Device,
    observer: &mut impl Observer,
) -> Result<Vec<ModelRobustness>> {
    if data.is_empty() {
        return Err(Error::Invalid("no images to attack: the data set is empty".into()));
    }
    for (_, loaded) in models {
        loaded.check_fits(dataset)?;
    }
    let set = AttackSet::untargeted(data.clone());
    models
        .iter()
        .map(|(name, loaded)| {
            let model = &loaded.model;
            let result =
                attack_all(model, &set, spec, execution, device, true, observer).map_err(|e| e.blamed_on(loaded))?;
            let adversarials = result.adversarials.unwrap_or_default();
            let [c, h, w] = data.image_shape;
            let images = Tensor::<1>::from_data(
                TensorData::new(adversarials.clone(), [adversarials.len()]),
                &device.clone().inner(),
            )
            .reshape([data.len(), c, h, w]);
            let adversarial_predictions = predictions(model, images)?;
            let mut model = ModelRobustness::of_distances(
                name.clone(),
                loaded.path.display().to_string(),
                loaded.sha256.clone(),
                result.norms.iter().map(|d| d.is_finite().then_some(*d)).collect(),
                eps,
                result.seconds,
            );
            model.adversarials = adversarials;
            model.adversarial_predictions = adversarial_predictions;
            Ok(model)
        })
        .collect()
}

/// What `robustness.json` holds: the experiment, the eps grid and each model's distances and
/// curve (and, for a shard, its part of the images).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RobustnessReport {
    /// The eps grid of the curves.
    pub eps: Vec<f64>,
    /// One entry per model, in the order given.
    pub models: Vec<ModelRobustness>,
    /// The data set (`None` in files of earlier builds).
    #[serde(default)]
    pub dataset: Option<DatasetName>,
    /// The attack's settings.
    #[serde(default)]
    pub spec: Option<AttackSpec>,
    /// The first N test images were attacked.
    #[serde(default)]
    pub n_images: usize,
    /// Attacks per batch.
    #[serde(default)]
    pub batch_size: usize,
    /// The part of the images this file holds, when the run was sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardPart>,
    /// The shard folders a merged result was made from, in image order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

/// Figure 6's rows: a label and the row's cells.
pub type Fig6Rows = Vec<(String, Vec<Cell>)>;

/// Figure 6's rows (originals, then each model's adversarials, `fig6_images` columns) for the
/// images of `data`, which start at image `first` of the whole set: only images among the
/// whole set's first `fig6_images` are drawn.
pub fn fig6_rows(
    data: &Dataset,
    first: usize,
    results: &[ModelRobustness],
    class_names: &[String],
    fig6_images: usize,
) -> Fig6Rows {
    let len = data.image_len();
    let k = fig6_images.saturating_sub(first).min(data.len());
    let class = |c: i64| class_names.get(c as usize).cloned().unwrap_or_else(|| c.to_string());
    let mut rows = vec![(
        "original".to_string(),
        (0..k)
            .map(|i| Cell {
                pixels: data.image(i),
                shape: data.image_shape,
                top: String::new(),
                bottom: class(data.labels[i] as i64),
            })
            .collect(),
    )];
    for r in results {
        rows.push((
            r.name.clone(),
            (0..k)
                .map(|i| Cell {
                    pixels: r.adversarials[i * len..(i + 1) * len].to_vec(),
                    shape: data.image_shape,
                    top: r.distances[i].map_or("failed".into(), |d| format!("{d:.3}")),
                    bottom: class(r.adversarial_predictions[i]),
                })
                .collect(),
        ));
    }
    rows
}

/// The file beside a shard's `robustness.json` that keeps its Figure 6 cells for the merge.
pub const FIG6_CELLS_FILE: &str = "fig6-cells.json";

/// Writes `robustness.json`, `robustness.csv`, `fig5.png` and `fig6.png` (from `fig6`) to
/// `out`; a shard also keeps its Figure 6 cells in [`FIG6_CELLS_FILE`] for the merge.
pub fn write_outputs(out: &Path, report: &RobustnessReport, fig6: &[(String, Vec<Cell>)]) -> Result<()> {
    create_dir(out)?;
    write_json(&out.join("robustness.json"), report)?;
    let (eps, results) = (&report.eps, &report.models);
    let csv_path = out.join("robustness.csv");
    write_atomic(&csv_path, robustness_csv(eps, results).as_bytes())?;
    if report.shard.is_some() {
        write_json(&out.join(FIG6_CELLS_FILE), &fig6)?;
    }

    let series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: r.name.clone(),
            points: eps.iter().copied().zip(r.accuracy.iter().copied()).collect(),
        })
        .collect();
    unless_undrawable(line_chart(
        &out.join("fig5.png"),
        "Figure 5: accuracy vs maximum L2 norm",
        "maximum L2 norm eps",
        "accuracy",
        &series,
    ))?;
    // Small images are enlarged; ImageNet-sized ones are drawn at half size.
    let height = fig6
        .first()
        .and_then(|(_, cells)| cells.first())
        .map_or(28, |c| c.shape[1]);
    let scale = (84 / height.max(1)).max(1);
    unless_undrawable(image_grid(
        &out.join("fig6.png"),
        "Figure 6: adversarial examples (L2 norm above, predicted class below)",
        fig6,
        scale,
    ))
}

/// Merges the results of the shard folders `parts` (each named by its folder, with its
/// report and Figure 6 cells) of one robustness run into the unsharded run's: every model's
/// distances in image order, its curve and clean accuracy recomputed, seconds added up, and
/// Figure 6's columns gathered from the shards that hold the first images. Shards of another
/// experiment, or that do not cover the images exactly once, are refused with the folder named.
pub fn merge(parts: Vec<(String, RobustnessReport, Fig6Rows)>) -> Result<(RobustnessReport, Fig6Rows)> {
    let mut named = Vec::with_capacity(parts.len());
    for (name, report, _) in &parts {
        let part = report.shard.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "{name} is not the result of a sharded run (its robustness.json has no \"shard\")"
            ))
        })?;
        if report.models.iter().any(|m| m.distances.len() != part.len()) {
            return Err(Error::Invalid(format!(
                "{name}: a model holds a number of distances other than its part's {}",
                part.len()
            )));
        }
        named.push((name.clone(), part));
    }
    let (first_name, first, _) = &parts[0];
    let experiment = |r: &RobustnessReport| {
        let models: Vec<(&str, &str)> = r
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.model_sha256.as_str()))
            .collect();
        serde_json::json!({
            "eps": r.eps, "dataset": r.dataset, "spec": r.spec, "n_images": r.n_images,
            "batch_size": r.batch_size, "models": models,
        })
    };
    let reference = experiment(first);
    for (name, report, _) in &parts[1..] {
        let mine = experiment(report);
        if mine != reference {
            let field = ["eps", "dataset", "spec", "n_images", "batch_size", "models"]
                .into_iter()
                .find(|f| mine[f] != reference[f])
                .unwrap_or("settings");
            return Err(Error::Invalid(format!(
                "{name} is a shard of another experiment than {first_name}: its {field} differ"
            )));
        }
    }
    let order = crate::shard::check_cover(&named)?;
    let mut models = Vec::with_capacity(first.models.len());
    for (m, model) in first.models.iter().enumerate() {
        let distances: Vec<Option<f32>> = order
            .iter()
            .flat_map(|&i| parts[i].1.models[m].distances.clone())
            .collect();
        let seconds = order.iter().map(|&i| parts[i].1.models[m].seconds).sum();
        models.push(ModelRobustness::of_distances(
            model.name.clone(),
            model.file.clone(),
            model.model_sha256.clone(),
            distances,
            &first.eps,
            seconds,
        ));
    }
    let mut fig6: Fig6Rows = Vec::new();
    for &i in &order {
        for (r, (label, cells)) in parts[i].2.iter().enumerate() {
            match fig6.get_mut(r) {
                Some((_, all)) => all.extend(cells.iter().cloned()),
                None => fig6.push((label.clone(), cells.clone())),
            }
        }
    }
    let merged = RobustnessReport {
        eps: first.eps.clone(),
        models,
        dataset: first.dataset,
        spec: first.spec.clone(),
        n_images: first.n_images,
        batch_size: first.batch_size,
        shard: None,
        merged_from: order.iter().map(|&i| parts[i].0.clone()).collect(),
    };
    Ok((merged, fig6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_starts_at_clean_accuracy_and_never_rises() {
        // Two misclassified (0), one failed attack (inf), others at known distances.
        let d = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, f32::INFINITY, 0.25];
        let eps = eps_grid(3.0, 31).unwrap();
        let acc = robust_accuracy(&d, &eps);
        assert_eq!(acc[0], 6.0 / 8.0);
        assert!(acc.windows(2).all(|w| w[1] <= w[0]));
        // At eps = 1.0, distances 1.5, 2.0 and inf remain.
        assert_eq!(acc[10], 3.0 / 8.0);
        // Beyond every finite distance only the failed attack counts.
        assert_eq!(*acc.last().unwrap(), 1.0 / 8.0);
    }

    #[test]
    fn an_empty_list_of_distances_has_no_accuracy() {
        assert!(robust_accuracy(&[], &[0.0, 1.0]).iter().all(|a| a.is_nan()));
    }

    #[test]
    fn grids_of_fewer_than_two_points_or_a_bad_largest_eps_are_refused() {
        for points in [0, 1] {
            let err = eps_grid(3.0, points).unwrap_err().to_string();
            assert!(err.contains("at least 2 points"), "{err}");
        }
        assert!(eps_grid(3.0, 1_000_000_000).is_err());
        assert_eq!(eps_grid(3.0, MAX_EPS_POINTS).unwrap().len(), MAX_EPS_POINTS);
        for max in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(eps_grid(max, 10).is_err(), "{max}");
        }
        assert_eq!(eps_grid(2.0, 2).unwrap(), vec![0.0, 2.0]);
    }

    /// A result with the given name and accuracy curve.
    fn result(name: &str, accuracy: Vec<f64>) -> ModelRobustness {
        ModelRobustness {
            name: name.into(),
            file: String::new(),
            model_sha256: String::new(),
            clean_accuracy: accuracy[0],
            distances: Vec::new(),
            accuracy,
            seconds: 1.0,
            adversarials: Vec::new(),
            adversarial_predictions: Vec::new(),
        }
    }

    #[test]
    fn a_figure_that_cannot_be_written_is_an_error_that_names_it() {
        let data = Dataset::new(vec![128; 2 * 4 * 4], vec![0, 1], [1, 4, 4], 2).unwrap();
        let mut r = result("m", vec![1.0, 0.5]);
        r.distances = vec![Some(0.5), None];
        r.adversarials = vec![0.5; 2 * 16];
        r.adversarial_predictions = vec![1, 0];
        let classes = ["a".to_string(), "b".to_string()];
        let report = |models: Vec<ModelRobustness>| RobustnessReport {
            eps: vec![0.0, 1.0],
            models,
            dataset: None,
            spec: None,
            n_images: 2,
            batch_size: 2,
            shard: None,
            merged_from: Vec::new(),
        };
        let fig6 = fig6_rows(&data, 0, std::slice::from_ref(&r), &classes, 2);
        assert_eq!(fig6.len(), 2);
        assert_eq!(fig6[1].1[1].top, "failed");
        for figure in ["fig5.png", "fig6.png"] {
            let out = tempfile::tempdir().unwrap();
            // A folder where the figure goes: it cannot be written, as on a full disk.
            std::fs::create_dir(out.path().join(figure)).unwrap();
            let err = write_outputs(out.path(), &report(vec![r.clone()]), &fig6)
                .unwrap_err()
                .to_string();
            assert!(err.contains(figure), "{figure}: {err}");
        }
        // With nothing in the way, every promised file is there.
        let out = tempfile::tempdir().unwrap();
        write_outputs(out.path(), &report(vec![r]), &fig6).unwrap();
        for file in ["robustness.json", "robustness.csv", "fig5.png", "fig6.png"] {
            assert!(out.path().join(file).is_file(), "{file}");
        }
    }

    #[test]
    fn the_summary_labels_each_value_with_the_eps_it_was_measured_at() {
        // A grid that stops at 1.5: nothing may be reported under 2.0.
        let eps = eps_grid(1.5, 151).unwrap();
        let acc: Vec<f64> = eps.iter().map(|e| 1.0 - e / 2.0).collect();
        let line = summary_line(&result("m", acc.clone()), &eps);
        assert!(line.contains("acc@1.5 0.2500"), "{line}");
        assert!(!line.contains("acc@2.0"), "{line}");
        assert!(line.contains("the eps grid ends at 1.5"), "{line}");
        let points = summary_points(&eps, &acc, &SUMMARY_EPS);
        assert_eq!(points.len(), 3);
        assert!((points[0].0 - 0.5).abs() < 1e-12 && (points[2].0 - 1.5).abs() < 1e-12);

        // A coarse grid: values are labelled with the grid points really used, each once.
        let eps = eps_grid(3.0, 4).unwrap();
        let acc = vec![0.9, 0.6, 0.3, 0.1];
        let line = summary_line(&result("m", acc.clone()), &eps);
        assert_eq!(
            summary_points(&eps, &acc, &SUMMARY_EPS),
            vec![(0.0, 0.9), (1.0, 0.6), (2.0, 0.3)]
        );
        assert!(
            line.contains("acc@0.0 0.9000, acc@1.0 0.6000, acc@2.0 0.3000"),
            "{line}"
        );
        assert!(!line.contains("grid ends"), "{line}");

        // The default MNIST grid reports at exactly 0.5, 1.0, 1.5 and 2.0.
        let eps = eps_grid(3.0, 301).unwrap();
        let acc = vec![0.5; 301];
        let labels: Vec<String> = summary_points(&eps, &acc, &SUMMARY_EPS)
            .iter()
            .map(|(e, _)| eps_label(*e))
            .collect();
        assert_eq!(labels, ["0.5", "1.0", "1.5", "2.0"]);
        assert_eq!(eps_label(3.0 / 7.0), "0.4286");
    }

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_asks() {
        assert_eq!(csv_field("mnist-cnn"), "mnist-cnn");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
        let csv = robustness_csv(
            &[0.0, 1.0],
            &[result("adv,eps=2", vec![0.9, 0.5]), result("plain", vec![0.8, 0.1])],
        );
        assert_eq!(csv, "eps,\"adv,eps=2\",plain\n0,0.9,0.8\n1,0.5,0.1\n");
    }
}
