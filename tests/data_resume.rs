//! A checkpointed, resumed training run equals an unbroken one. Alone in its test binary:
//! the device's random generator (dropout, initialisation) is shared by concurrent tests.

mod common;

use anu::models::weights;
use anu::train::{RunOptions, TrainConfig, train};
use burn::prelude::*;

fn config(epochs: usize) -> TrainConfig {
    common::train_config(epochs, None)
}

#[test]
fn resumed_training_equals_an_unbroken_run() {
    let data = common::mnist_test(96);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2);
    let straight = dir.path().join("straight.safetensors");
    let log = train(&cfg, &data, None, &device, &straight, &RunOptions::default()).unwrap();
    assert_eq!(log.len(), 2);

    let broken = dir.path().join("broken.safetensors");
    let first = RunOptions {
        stop_after: Some(1),
        ..Default::default()
    };
    let log = train(&cfg, &data, None, &device, &broken, &first).unwrap();
    assert_eq!(log.len(), 1);
    assert!(
        !broken.exists(),
        "the final model is written only when all epochs are done"
    );
    assert!(dir.path().join("broken.safetensors.ckpt/latest.json").exists());
    let log = train(
        &cfg,
        &data,
        None,
        &device,
        &broken,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(log.len(), 2);

    let a = weights::load(&straight, &device).unwrap().model;
    let b = weights::load(&broken, &device).unwrap().model;
    let (images, _) = data.batch(0, 16, &device);
    let la: Vec<f32> = a.forward(images.clone()).unwrap().into_data().iter::<f32>().collect();
    let lb: Vec<f32> = b.forward(images).unwrap().into_data().iter::<f32>().collect();
    assert_eq!(la, lb);

    // Resuming with other settings is refused with a reason.
    let other = config(3);
    let err = train(
        &other,
        &data,
        None,
        &device,
        &broken,
        &RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("different settings"), "{err}");
}
