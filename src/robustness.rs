//! Robust accuracy as a function of the maximum L2 norm, from minimal-norm attacks
//! (paper Figure 5), and the adversarial-example grid (Figure 6).

use std::path::Path;

use burn::prelude::*;

use crate::attack::{AttackSet, AttackSpec, Execution, Observer, attack_all};
use crate::data::{Dataset, DatasetName};
use crate::error::Result;
use crate::eval::predictions;
use crate::figures::{Cell, Series, image_grid, line_chart};
use crate::fsutil::{create_dir, write_atomic, write_json};
use crate::models::LoadedModel;

/// Accuracy at each `eps`: the fraction of images whose minimal adversarial distance exceeds
/// eps. Distances are 0 for images misclassified already and infinity where the attack
/// failed, so the value at eps = 0 is the clean accuracy and the curve never increases.
pub fn robust_accuracy(distances: &[f32], eps: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = distances.iter().map(|&d| d as f64).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len().max(1) as f64;
    eps.iter()
        .map(|&e| {
            // Number of distances <= e, by binary search on the sorted list.
            let at_most = sorted.partition_point(|&d| d <= e);
            (sorted.len() - at_most) as f64 / n
        })
        .collect()
}

/// Evenly spaced eps values from 0 to `max` inclusive.
pub fn eps_grid(max: f64, points: usize) -> Vec<f64> {
    let points = points.max(2);
    (0..points).map(|i| max * i as f64 / (points - 1) as f64).collect()
}

/// One evaluated model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelRobustness {
    /// Label in the figures (the file stem).
    pub name: String,
    /// Weight file.
    pub file: String,
    /// Clean accuracy on the attacked images.
    pub clean_accuracy: f64,
    /// Minimal adversarial distance per image (0 misclassified, null for failed attacks).
    pub distances: Vec<Option<f32>>,
    /// Robust accuracy at each eps of the grid.
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

/// Attacks `data` (of `dataset`) with `spec` on each named model and gathers distances and
/// curves; every model must fit the data set.
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
    for (_, loaded) in models {
        loaded.check_fits(dataset)?;
    }
    let set = AttackSet::untargeted(data.clone());
    Ok(models
        .iter()
        .map(|(name, loaded)| {
            let model = &loaded.model;
            let result = attack_all(model, &set, spec, execution, device, true, observer);
            let adversarials = result.adversarials.unwrap_or_default();
            let [c, h, w] = data.image_shape;
            let images = Tensor::<1>::from_data(
                TensorData::new(adversarials.clone(), [adversarials.len()]),
                &device.clone().inner(),
            )
            .reshape([data.len(), c, h, w]);
            let adversarial_predictions = predictions(model, images);
            let clean = result.norms.iter().filter(|&&d| d > 0.0).count() as f64 / data.len().max(1) as f64;
            ModelRobustness {
                name: name.clone(),
                file: loaded.path.display().to_string(),
                clean_accuracy: clean,
                distances: result.norms.iter().map(|d| d.is_finite().then_some(*d)).collect(),
                accuracy: robust_accuracy(&result.norms, eps),
                seconds: result.seconds,
                adversarials,
                adversarial_predictions,
            }
        })
        .collect())
}

/// Writes `robustness.json`, `robustness.csv`, `fig5.png` and `fig6.png` to `out`.
pub fn write_outputs(
    out: &Path,
    data: &Dataset,
    eps: &[f64],
    results: &[ModelRobustness],
    class_names: &[String],
    fig6_images: usize,
) -> Result<()> {
    create_dir(out)?;
    write_json(
        &out.join("robustness.json"),
        &serde_json::json!({ "eps": eps, "models": results }),
    )?;
    let mut csv = String::from("eps");
    for r in results {
        csv.push_str(&format!(",{}", r.name));
    }
    csv.push('\n');
    for (i, e) in eps.iter().enumerate() {
        csv.push_str(&format!("{e}"));
        for r in results {
            csv.push_str(&format!(",{}", r.accuracy[i]));
        }
        csv.push('\n');
    }
    let csv_path = out.join("robustness.csv");
    write_atomic(&csv_path, csv.as_bytes())?;

    let series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: r.name.clone(),
            points: eps.iter().copied().zip(r.accuracy.iter().copied()).collect(),
        })
        .collect();
    if let Err(e) = line_chart(
        &out.join("fig5.png"),
        "Figure 5: accuracy vs maximum L2 norm",
        "maximum L2 norm eps",
        "accuracy",
        &series,
    ) {
        eprintln!("warning: {e}");
    }

    let len = data.image_len();
    let k = fig6_images.min(data.len());
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
    // Small images are enlarged; ImageNet-sized ones are drawn at half size.
    let scale = (84 / data.image_shape[1]).max(1);
    if let Err(e) = image_grid(
        &out.join("fig6.png"),
        "Figure 6: adversarial examples (L2 norm above, predicted class below)",
        &rows,
        scale,
    ) {
        eprintln!("warning: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_starts_at_clean_accuracy_and_never_rises() {
        // Two misclassified (0), one failed attack (inf), others at known distances.
        let d = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, f32::INFINITY, 0.25];
        let eps = eps_grid(3.0, 31);
        let acc = robust_accuracy(&d, &eps);
        assert_eq!(acc[0], 6.0 / 8.0);
        assert!(acc.windows(2).all(|w| w[1] <= w[0]));
        // At eps = 1.0, distances 1.5, 2.0 and inf remain.
        assert_eq!(acc[10], 3.0 / 8.0);
        // Beyond every finite distance only the failed attack counts.
        assert_eq!(*acc.last().unwrap(), 1.0 / 8.0);
    }
}
