//! Training cannot report success with a broken model (no data folder: small synthetic MNIST
//! sets): it stops at the first non-finite loss, never saves weights holding a NaN or an
//! infinity, refuses unusable settings before any work, and never replaces a checkpoint of
//! an earlier run unless asked to with `--force`.

mod common;

use std::path::Path;
use std::process::Command;

use anu::data::{Dataset, DatasetName};
use anu::models::Architecture;
use anu::train::checkpoint;
use anu::train::{EpochLog, OptimizerKind, RunOptions, TrainConfig, train};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

/// `n` synthetic MNIST images.
fn images(n: usize) -> Dataset {
    common::synthetic(
        DatasetName::Mnist,
        n,
        &common::random_model(Architecture::MnistCnn, 1),
        2,
    )
}

/// SGD with a learning rate (and weight decay) so large that one step ruins the weights.
fn exploding(epochs: usize) -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerKind::Sgd,
        lr: 1e38,
        weight_decay: 1e38,
        ..common::train_config(epochs, None)
    }
}

#[test]
fn a_diverging_run_stops_at_the_first_non_finite_loss_and_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    // Two batches per epoch: the first step ruins the weights, the second batch's loss is NaN.
    let err = train(
        &exploding(2),
        &images(64),
        None,
        &Device::flex(),
        &out,
        &RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("epoch 1 batch 2 of 2") && err.contains("lower --lr"),
        "{err}"
    );
    assert_eq!(common::file_names(dir.path()), Vec::<String>::new(), "nothing is saved");
}

#[test]
fn weights_that_turn_non_finite_in_the_last_step_are_never_saved() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    // One batch, one epoch: the loss was finite, the step that followed it was not.
    let err = train(
        &exploding(1),
        &images(32),
        None,
        &Device::flex(),
        &out,
        &RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("not finite after epoch 1") && err.contains("nothing was saved"),
        "{err}"
    );
    assert_eq!(common::file_names(dir.path()), Vec::<String>::new(), "nothing is saved");
}

/// Sets the first bias of a model to NaN.
struct PoisonFirstBias(bool);

impl ModuleMapper for PoisonFirstBias {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 1 || self.0 {
            return param;
        }
        self.0 = true;
        param.map(|t| t.slice_fill(0..1, f32::NAN))
    }
}

#[test]
fn a_checkpoint_of_non_finite_weights_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors.ckpt");
    let config = common::train_config(2, None);
    let model = common::random_model(Architecture::MnistCnn, 3).map(&mut PoisonFirstBias(false));
    let log = [EpochLog {
        epoch: 1,
        loss: 0.5,
        train_accuracy: 0.9,
        test_accuracy: None,
        mean_perturbation: None,
        seconds: 1.0,
    }];
    let err = checkpoint::save(&ckpt, &config, &model, &config.optimizer(), &log)
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-finite") && err.contains("bias"), "{err}");
    assert!(!ckpt.exists(), "nothing is written");
}

#[test]
fn unusable_settings_are_refused_before_any_work() {
    let base = common::train_config(1, None);
    let bad = [
        TrainConfig {
            train_subset: Some(0),
            ..base.clone()
        },
        TrainConfig {
            weight_decay: f64::NAN,
            ..base.clone()
        },
        TrainConfig {
            weight_decay: -0.1,
            ..base.clone()
        },
        TrainConfig {
            weight_decay: f64::INFINITY,
            ..base.clone()
        },
        TrainConfig {
            lr: f64::NAN,
            ..base.clone()
        },
        TrainConfig {
            lr: -1e-3,
            ..base.clone()
        },
        TrainConfig {
            lr: 0.0,
            ..base.clone()
        },
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?} was accepted");
    }
    base.validate().unwrap();

    // The command refuses them before it looks for the data.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors").to_string_lossy().into_owned();
    let data = dir.path().join("no-data").to_string_lossy().into_owned();
    for (flag, why) in [
        ("--train-subset=0", "training subset"),
        ("--weight-decay=NaN", "weight decay"),
        ("--weight-decay=-0.5", "weight decay"),
        ("--lr=-1", "learning rate"),
    ] {
        let (ok, stderr) = anu(&["train", flag, "--out", &out, "--data-dir", &data]);
        assert!(
            !ok && stderr.contains(why) && !stderr.contains("no-data"),
            "{flag}: {stderr}"
        );
    }
    for flag in ["--stop-after-epochs=0", "--epochs=0"] {
        let (ok, stderr) = anu(&["train", flag, "--out", &out, "--data-dir", &data]);
        assert!(
            !ok && stderr.contains("at least 1") && !stderr.contains("no-data"),
            "{flag}: {stderr}"
        );
    }
    let no_epoch = RunOptions {
        stop_after: Some(0),
        ..Default::default()
    };
    let err = train(&base, &images(8), None, &Device::flex(), Path::new(&out), &no_epoch).unwrap_err();
    assert!(err.to_string().contains("--stop-after-epochs"), "{err}");
    let (ok, stderr) = anu(&["train", "--resume", "--force", "--out", &out, "--data-dir", &data]);
    assert!(
        !ok && stderr.contains("--force") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert_eq!(common::file_names(dir.path()), Vec::<String>::new());
}

/// Runs `anu` with `args`; returns whether it succeeded and what it printed on stderr.
fn anu(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anu")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Options for a run that resumes (`resume`) or starts over (`force`).
fn options(resume: bool, force: bool) -> RunOptions {
    RunOptions {
        resume,
        force,
        ..Default::default()
    }
}

#[test]
fn a_checkpoint_is_never_replaced_without_resume_or_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let ckpt = dir.path().join("m.safetensors.ckpt");
    let index = ckpt.join("latest.json");
    let data = images(32);
    let device = Device::flex();
    let (first, other) = (common::train_config(2, None), common::train_config(3, None));
    let stop_after_one = RunOptions {
        stop_after: Some(1),
        ..Default::default()
    };
    assert_eq!(
        train(&first, &data, None, &device, &out, &stop_after_one)
            .unwrap()
            .len(),
        1
    );
    let saved = std::fs::read(&index).unwrap();
    let files = common::file_names(&ckpt);

    // Another run into the same output, without --resume: refused, the checkpoint kept.
    let err = train(&other, &data, None, &device, &out, &options(false, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another training run")
            && err.contains("epochs: 2 in the checkpoint, 3 now")
            && err.contains("--resume")
            && err.contains("--force"),
        "{err}"
    );
    // The same run again, without --resume: refused too.
    let err = train(&first, &data, None, &device, &out, &options(false, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("this training run after epoch 1/2") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    // The command refuses before it looks for the data.
    let (ok, stderr) = anu(&["train", "--out", &out.to_string_lossy(), "--data-dir", "no-data"]);
    assert!(
        !ok && stderr.contains("another training run") && stderr.contains("--force") && !stderr.contains("no-data"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&index).unwrap(), saved, "the checkpoint is untouched");
    assert_eq!(common::file_names(&ckpt), files);
    assert!(!out.exists());

    // Both at once make no sense.
    let err = train(&first, &data, None, &device, &out, &options(true, true)).unwrap_err();
    assert!(err.to_string().contains("only one"), "{err}");

    // --force deletes it and starts over.
    let log = train(&other, &data, None, &device, &out, &options(false, true)).unwrap();
    assert_eq!(log.len(), 3);
    assert!(out.exists());
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(index["epochs_done"], 3);
    assert_eq!(index["config"]["epochs"], 3);
    assert_eq!(
        common::file_names(&ckpt),
        ["epoch-0003.bpk", "epoch-0003.optim", "latest.json"]
    );
}

#[test]
fn a_damaged_checkpoint_file_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let ckpt = dir.path().join("m.safetensors.ckpt");
    let data = images(16);
    let device = Device::flex();
    let config = common::train_config(2, None);
    let stop_after_one = RunOptions {
        stop_after: Some(1),
        ..Default::default()
    };
    train(&config, &data, None, &device, &out, &stop_after_one).unwrap();
    for name in ["epoch-0001.bpk", "epoch-0001.optim"] {
        let path = ckpt.join(name);
        let good = std::fs::read(&path).unwrap();
        // One flipped bit in the last byte (tensor data, which no format check sees).
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = train(&config, &data, None, &device, &out, &options(true, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains("SHA-256"), "{name}: {err}");
        std::fs::write(&path, &good).unwrap();
    }
    // Undamaged, it resumes and finishes.
    let log = train(&config, &data, None, &device, &out, &options(true, false)).unwrap();
    assert_eq!(log.len(), 2);
}
