//! DDN and ANU against an affine classifier, whose minimal adversarial L2 distance is known
//! exactly: min over j != y of (z_y - z_j) / ||w_y - w_j|| when the box [0,1] does not bind;
//! and the robustness curve built from those distances.

use anu::attack::{AttackSpec, AttackedModel, Ddn, Fmn, Goal, NormUpdate, TraceRecorder, run};
use anu::data::{Label, labels_tensor};
use anu::models::Classifier;
use burn::module::Param;
use burn::nn::LinearConfig;
use burn::prelude::*;
use rand::{Rng, SeedableRng};

/// An affine classifier over `n` inputs and `k` classes with random weights and biases set so
/// that the image 0.5 lies at distance 0.4 + 0.2 (j - 1) from the boundary between class 0 and
/// class j; the images are 0.5 plus small noise, so the minimal perturbations (norm ~0.4)
/// stay well inside the box.
fn setup(n: usize, k: usize, batch: usize, seed: u64) -> (Classifier, Vec<f32>, Vec<Vec<f32>>, Vec<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let device = Device::flex();
    let w: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let b: Vec<f32> = (0..k)
        .map(|j| {
            if j == 0 {
                return 0.0;
            }
            let diff: Vec<f64> = w[0].iter().zip(&w[j]).map(|(a, c)| (a - c) as f64).collect();
            let norm = diff.iter().map(|d| d * d).sum::<f64>().sqrt();
            let margin_at_half = diff.iter().map(|d| d * 0.5).sum::<f64>();
            (margin_at_half - (0.4 + 0.2 * (j - 1) as f64) * norm) as f32
        })
        .collect();
    let flat_w: Vec<f32> = (0..n).flat_map(|i| w.iter().map(move |row| row[i])).collect();
    let mut linear = LinearConfig::new(n, k).init(&device);
    linear.weight =
        Param::from_tensor(Tensor::<1>::from_data(TensorData::new(flat_w, [n * k]), &device).reshape([n, k]));
    linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
        TensorData::new(b.clone(), [k]),
        &device,
    )));
    let images: Vec<f32> = (0..batch * n).map(|_| 0.5 + rng.random_range(-0.01..0.01)).collect();
    (Classifier::Linear(linear), images, w, b)
}

fn logits(w: &[Vec<f32>], b: &[f32], x: &[f32]) -> Vec<f64> {
    w.iter()
        .zip(b)
        .map(|(row, bi)| row.iter().zip(x).map(|(a, c)| (*a as f64) * (*c as f64)).sum::<f64>() + *bi as f64)
        .collect()
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap()
}

#[test]
fn attacks_land_near_the_exact_minimal_norm_of_an_affine_classifier() {
    for (n, k, batch) in [(16, 3, 5), (64, 10, 8), (3 * 8 * 8, 5, 4)] {
        let (model, images, w, b) = setup(n, k, batch, n as u64);
        let mut labels = Vec::new();
        let mut exact = Vec::new();
        for i in 0..batch {
            let x = &images[i * n..(i + 1) * n];
            let z = logits(&w, &b, x);
            let y = argmax(&z);
            labels.push(y as Label);
            let d = (0..k)
                .filter(|&j| j != y)
                .map(|j| {
                    let diff: f64 = w[y]
                        .iter()
                        .zip(&w[j])
                        .map(|(a, c)| ((a - c) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (z[y] - z[j]) / diff
                })
                .fold(f64::INFINITY, f64::min);
            exact.push(d);
        }
        // The exact minimal perturbation must stay inside the box for the formula to hold.
        assert!(
            labels.iter().all(|&y| y == 0) && exact.iter().all(|&d| d > 0.3 && d < 0.5),
            "{exact:?}"
        );
        let device = Device::flex();
        let prepared = AttackedModel::new(&model, &device);
        let ad = device.clone().autodiff();
        let shape = if n == 3 * 8 * 8 {
            [batch, 3, 8, 8]
        } else {
            [batch, 1, 1, n]
        };
        let x = Tensor::<1>::from_data(TensorData::new(images.clone(), [batch * n]), &ad).reshape(shape);
        // Every attack in the rules' table, with its papers' MNIST settings.
        for row in &anu::attack::rules::RULES {
            let rule = (row.paper)(anu::data::DatasetName::Mnist, false);
            let spec = AttackSpec::new(50, rule).unwrap();
            let mut trace = TraceRecorder::default();
            let r = run(
                &prepared,
                x.clone(),
                &Goal::Untargeted(labels_tensor(&labels, &ad)),
                &spec,
                0,
                &mut trace,
            )
            .unwrap();
            let fmn = matches!(rule, NormUpdate::Fmn(Fmn { .. }));
            for (i, &d) in exact.iter().enumerate() {
                if fmn && !r.success[i] {
                    // FMN's eps before its first adversarial is the margin's linear estimate
                    // of the distance, exact for an affine model: its iterates land on the
                    // decision boundary itself, where the label does not change yet. They must
                    // be there, not elsewhere.
                    let last = *trace.trace.norm.last().unwrap().get(i).unwrap() as f64;
                    assert!(
                        (last / d - 1.0).abs() < 1e-3,
                        "FMN n={n}: sample {i} ended at {last}, boundary at {d}"
                    );
                    continue;
                }
                assert!(r.success[i], "{rule:?} n={n}: sample {i} not broken");
                let ratio = r.norms[i] as f64 / d;
                assert!(
                    (0.999..=1.25).contains(&ratio),
                    "{rule:?} n={n} k={k}: norm {} vs exact {d} (ratio {ratio})",
                    r.norms[i]
                );
            }
        }
    }
}

#[test]
fn robustness_curve_of_an_affine_classifier_follows_its_exact_distances() {
    use anu::attack::{EveryStep, Execution};
    use anu::data::{Dataset, DatasetName};
    use anu::models::weights;
    use anu::robustness::{eps_grid, evaluate};

    // An MNIST-shaped affine classifier (784 inputs, 10 classes), images of 0.5 +- 1/255.
    let (n, k, batch) = (784, 10, 6);
    let (model, images, w, b) = setup(n, k, batch, 11);
    let pixels: Vec<u8> = images.iter().map(|v| (v * 255.0).round() as u8).collect();
    let values: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let mut exact = Vec::new();
    for i in 0..batch {
        let z = logits(&w, &b, &values[i * n..(i + 1) * n]);
        let y = argmax(&z);
        assert_eq!(y, 0);
        exact.push(
            (1..k)
                .map(|j| {
                    let d = w[0]
                        .iter()
                        .zip(&w[j])
                        .map(|(a, c)| ((a - c) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (z[0] - z[j]) / d
                })
                .fold(f64::INFINITY, f64::min),
        );
    }
    let data = Dataset::new(pixels, vec![0; batch], [1, 28, 28], 10).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("affine.safetensors");
    // The affine model is not an architecture that weight files name; wrap it by hand.
    let spec_of_mnist = anu::models::InputSpec::of_dataset(DatasetName::Mnist);
    let loaded = weights::LoadedModel::from_parts(model, None, spec_of_mnist, 784 * 10, path.clone(), String::new());
    let spec = AttackSpec::new(100, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let eps = eps_grid(1.0, 101).unwrap();
    let results = evaluate(
        &[("affine".to_string(), loaded)],
        DatasetName::Mnist,
        &data,
        &spec,
        &Execution::new(batch, 0).unwrap(),
        &eps,
        &Device::flex(),
        &mut EveryStep(|| {}),
    )
    .unwrap();
    let curve = &results[0].accuracy;
    assert_eq!(curve[0], 1.0, "every image is classified correctly");
    // The attack's distances lie between the exact ones and 5% above them, so the number of
    // images still robust at eps lies between the counts of those two bounds above eps.
    for (e, acc) in eps.iter().zip(curve) {
        let robust = (acc * batch as f64).round() as usize;
        let at_least = exact.iter().filter(|&&d| 0.999 * d > *e).count();
        let at_most = exact.iter().filter(|&&d| 1.05 * d > *e).count();
        assert!(
            (at_least..=at_most).contains(&robust),
            "eps {e}: {robust} robust, exact {exact:?}"
        );
    }
    assert_eq!(*curve.last().unwrap(), 0.0, "every distance is below 1");
}
