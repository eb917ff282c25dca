//! Training tests: adversarial training lowers its loss; the norm cap holds.

mod common;

use anu::attack::{Anu, AttackSpec, NormUpdate};
use anu::train::adversarial::{Adversary, cap_norm};
use anu::train::{RunOptions, TrainConfig, train};
use burn::prelude::*;

fn config(epochs: usize, adversary: Option<Adversary>) -> TrainConfig {
    common::train_config(epochs, adversary)
}

#[test]
fn adversarial_training_lowers_its_loss() {
    let data = common::mnist_test(128);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let adversary = Adversary {
        attack: AttackSpec::new(
            8,
            NormUpdate::Anu(Anu {
                gamma0: 0.4,
                alpha_gamma0: 0.15,
                gamma_min: 0.0,
            }),
        )
        .unwrap(),
        max_norm: 2.4,
        clean_weight: 0.0,
    };
    let cfg = config(4, Some(adversary));
    let log = train(
        &cfg,
        &data,
        None,
        &device,
        &dir.path().join("adv.safetensors"),
        &RunOptions::default(),
    )
    .unwrap();
    let first = &log[0];
    let last = log.last().unwrap();
    assert!(last.loss < first.loss, "loss {} -> {}", first.loss, last.loss);
    let pert = last.mean_perturbation.unwrap();
    assert!(pert > 0.0 && pert <= 2.4 + 1e-4, "mean perturbation {pert}");
}

#[test]
fn cap_norm_scales_only_large_perturbations() {
    let device = Device::flex();
    let x = Tensor::<4>::full([2, 1, 2, 2], 0.5, &device);
    let adv = Tensor::<4>::from_data(
        TensorData::new(vec![0.5f32, 0.5, 0.5, 0.6, 0.0, 1.0, 0.0, 1.0], [2, 1, 2, 2]),
        &device,
    );
    let (capped, norms) = cap_norm(x, adv, 0.5);
    assert!((norms[0] - 0.1).abs() < 1e-6);
    assert!((norms[1] - 0.5).abs() < 1e-6);
    let v: Vec<f32> = capped.into_data().iter::<f32>().collect();
    assert!((v[3] - 0.6).abs() < 1e-6);
    assert!((v[4] - 0.25).abs() < 1e-6 && (v[5] - 0.75).abs() < 1e-6);
}
