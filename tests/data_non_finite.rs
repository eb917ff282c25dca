//! A model whose weights are finite but so large that its logits overflow f32 (NaN or
//! infinity) answers nothing: evaluation, attacks and the commands that run them stop with an
//! error that names the model instead of reporting an accuracy or norms computed from NaN.

mod common;

use std::path::Path;
use std::process::Command;

use anu::attack::{AttackSet, AttackSpec, Ddn, Execution, NoObserver, NormUpdate, attack_all};
use anu::data::Dataset;
use anu::models::{Architecture, Classifier, weights};
use anu::robustness::{eps_grid, evaluate};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

/// Multiplies every weight and bias by a factor.
struct Scale(f32);

impl ModuleMapper for Scale {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let factor = self.0;
        param.map(|t| t.mul_scalar(factor))
    }
}

/// The MNIST CNN with random weights scaled so far up that its activations overflow f32 while
/// every weight stays finite (so no weight check refuses it).
fn overflowing_model() -> Classifier {
    common::random_model(Architecture::MnistCnn, 3).map(&mut Scale(1e30))
}

/// Eight mid-grey MNIST-shaped images.
fn grey_images() -> Dataset {
    Dataset::new(vec![128; 8 * 28 * 28], vec![0, 1, 2, 3, 4, 5, 6, 7], [1, 28, 28], 10).unwrap()
}

#[test]
fn evaluation_and_attacks_refuse_nan_logits() {
    let model = overflowing_model();
    assert!(
        weights::weight_problem(&model).is_none(),
        "the weights themselves are finite"
    );
    let device = Device::flex();
    let data = grey_images();
    let err = anu::eval::accuracy(&model, &data, &device, 4).unwrap_err();
    assert!(matches!(err, anu::Error::NonFinite { of: 4, .. }), "{err}");

    let spec = AttackSpec::new(5, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let set = AttackSet::untargeted(data.clone());
    let err = attack_all(
        &model,
        &set,
        &spec,
        &Execution::new(4, 0).unwrap(),
        &device,
        false,
        &mut NoObserver,
    )
    .unwrap_err();
    assert!(matches!(err, anu::Error::NonFinite { .. }), "{err}");
    assert!(err.to_string().contains("NaN or infinite"), "{err}");

    // Where the model has a file, the error names it.
    let path = Path::new("huge-weights.safetensors").to_path_buf();
    let arch = Architecture::MnistCnn;
    let loaded = weights::LoadedModel::from_parts(
        model,
        Some(arch),
        arch.input_spec(),
        arch.forward_macs(),
        path.clone(),
        String::new(),
    );
    let err = evaluate(
        &[("huge".to_string(), loaded)],
        anu::data::DatasetName::Mnist,
        &data,
        &spec,
        &Execution::new(8, 0).unwrap(),
        &eps_grid(1.0, 11).unwrap(),
        &device,
        &mut NoObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("huge-weights.safetensors: "), "{err}");
}

#[test]
fn a_sound_model_passes_the_check() {
    let model = common::random_model(Architecture::MnistCnn, 3);
    let data = grey_images();
    anu::eval::accuracy(&model, &data, &Device::flex(), 4).unwrap();
    let spec = AttackSpec::new(3, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let set = AttackSet::untargeted(data);
    let r = attack_all(
        &model,
        &set,
        &spec,
        &Execution::new(8, 0).unwrap(),
        &Device::flex(),
        false,
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!(r.norms.len(), 8);
}

#[test]
fn the_commands_name_the_model_file_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.safetensors");
    weights::save(&overflowing_model(), Architecture::MnistCnn, &file).unwrap();
    let file = file.to_string_lossy().into_owned();
    let data = common::data_dir().to_string_lossy().into_owned();
    let json = dir.path().join("a.json").to_string_lossy().into_owned();
    let commands: [&[&str]; 2] = [
        &["eval", "--dataset", "mnist", "--model-file", &file],
        &[
            "attack",
            "--dataset",
            "mnist",
            "--model-file",
            &file,
            "--n",
            "4",
            "--steps",
            "3",
            "--json",
            &json,
        ],
    ];
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_anu"))
            .args(args)
            .args(["--data-dir", &data])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "anu {args:?} succeeded: {stderr}");
        assert!(
            stderr.contains(&file) && stderr.contains("NaN or infinite"),
            "anu {args:?}: {stderr}"
        );
    }
    assert!(
        !Path::new(&json).exists(),
        "no result file from a model that answers NaN"
    );
}
