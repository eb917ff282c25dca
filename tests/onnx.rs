//! ONNX models: the fixtures of `scripts/fixtures/export_onnx.py` (PyTorch's logits and input
//! gradients for three fixed inputs) against ours, attacks on the exported MNIST CNN against
//! the built-in one, and the errors for files that cannot be run. Needs no data folder, except
//! for the ignored test of EfficientNet-Lite0 exported to ONNX against the built-in one.

mod common;

use std::path::{Path, PathBuf};

use anu::attack::{Anu, AttackSet, AttackSpec, AttackedModel, Ddn, Execution, NoObserver, NormUpdate, attack_all};
use anu::data::DatasetName;
use anu::models::{Architecture, Classifier, Normalization, weights};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

/// A reference record written by `scripts/fixtures/export_onnx.py`.
struct Reference {
    shape: [usize; 3],
    inputs: Vec<f32>,
    labels: Vec<i64>,
    logits: Vec<f32>,
    grads: Vec<f32>,
    normalization: Option<Normalization>,
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
        .collect()
}

fn list(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shape: Vec<usize> = json["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    Reference {
        shape: shape.try_into().unwrap(),
        inputs: floats(&json["inputs"]),
        labels: json["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect(),
        logits: floats(&json["logits"]),
        grads: floats(&json["grads"]),
        normalization: json.get("mean").map(|mean| Normalization {
            mean: list(mean),
            std: list(&json["std"]),
        }),
    }
}

/// Largest absolute difference over the largest absolute reference value.
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = ours.iter().zip(theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Our logits and the input gradient of the summed cross-entropy at `labels`.
fn logits_and_grads(model: &Classifier, r: &Reference) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex();
    let prepared = AttackedModel::new(model, &device);
    let ad = device.clone().autodiff();
    let [c, h, w] = r.shape;
    let n = r.labels.len();
    let x = Tensor::<4>::from_data(TensorData::new(r.inputs.clone(), [n, c, h, w]), &ad).require_grad();
    let logits = prepared.classifier().forward(x.clone()).unwrap();
    let labels = Tensor::<2, Int>::from_data(TensorData::new(r.labels.clone(), [n, 1]), &ad);
    let loss = log_softmax(logits.clone(), 1).gather(1, labels).neg().sum();
    let grads = loss.backward();
    let g = x.grad(&grads).unwrap();
    (
        logits.into_data().iter::<f32>().collect(),
        g.into_data().iter::<f32>().collect(),
    )
}

fn check_against_pytorch(model_file: &str, reference_file: &str) {
    let r = reference(reference_file);
    let loaded = weights::load_model(&fixture(model_file), None, r.normalization.as_ref(), &Device::flex()).unwrap();
    assert_eq!((loaded.arch, loaded.name()), (None, "onnx"));
    assert_eq!(loaded.input_spec().image_shape, r.shape);
    let (logits, grads) = logits_and_grads(&loaded.model, &r);
    let (el, eg) = (relative_error(&logits, &r.logits), relative_error(&grads, &r.grads));
    eprintln!("{model_file}: relative error of the logits {el:.2e}, of the input gradients {eg:.2e}");
    assert!(
        el < 1e-4,
        "{model_file}: logits differ from PyTorch's (relative error {el})"
    );
    assert!(
        eg < 1e-4,
        "{model_file}: input gradients differ from PyTorch's (relative error {eg})"
    );
}

#[test]
fn mnist_cnn_matches_pytorch() {
    check_against_pytorch("mnist-cnn.onnx", "mnist-cnn.json");
}

#[test]
fn resnet_with_batch_norm_and_normalisation_matches_pytorch() {
    check_against_pytorch("resnet.onnx", "resnet.json");
}

#[test]
fn resnet_from_the_default_exporter_matches_pytorch() {
    // torch's default (dynamo) exporter: fixed batch size 1, weights in a side file.
    check_against_pytorch("resnet-dynamo.onnx", "resnet.json");
}

#[test]
fn batch_norms_that_cannot_be_folded_match_pytorch() {
    // After a ReLU, on a convolution's output that is also read by an Add, on a vector.
    check_against_pytorch("batch-norm.onnx", "batch-norm.json");
}

#[test]
fn a_final_softmax_is_left_out() {
    check_against_pytorch("softmax.onnx", "softmax.json");
    let loaded = weights::load_as(&fixture("softmax.onnx"), None, &Device::flex()).unwrap();
    let Classifier::Onnx(m) = &loaded.model else {
        panic!("an ONNX model")
    };
    assert!(m.stripped_softmax());
}

#[test]
fn cifar_cnn_matches_pytorch_when_exported() {
    // The exported CIFAR-10 CNN (4.6 MB) is not committed: `scripts/fixtures/export_onnx.py` writes it.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/onnx/cifar-cnn.onnx");
    if !path.exists() {
        eprintln!(
            "{} not there (run scripts/fixtures/export_onnx.py): skipped",
            path.display()
        );
        return;
    }
    let r = reference("cifar-cnn.json");
    let loaded = weights::load_model(&path, None, None, &Device::flex()).unwrap();
    let (logits, grads) = logits_and_grads(&loaded.model, &r);
    let (el, eg) = (relative_error(&logits, &r.logits), relative_error(&grads, &r.grads));
    eprintln!("cifar-cnn.onnx: relative error of the logits {el:.2e}, of the input gradients {eg:.2e}");
    assert!(el < 1e-4 && eg < 1e-4, "logits {el}, gradients {eg}");
}

#[test]
fn the_exported_mnist_cnn_is_attacked_as_the_built_in_one() {
    let device = Device::flex();
    let builtin = weights::load(&common::mnist_model_path(), &device).unwrap();
    let exported = weights::load_as(&fixture("mnist-cnn.onnx"), None, &device).unwrap();
    assert_eq!(exported.input_spec(), builtin.input_spec());
    assert!(exported.forward_macs() > 0);
    let data = common::synthetic(DatasetName::Mnist, 6, &builtin.model, 11);
    let set = AttackSet::untargeted(data);
    for update in [
        NormUpdate::Ddn(Ddn { gamma: 0.05 }),
        NormUpdate::Anu(Anu {
            gamma0: 0.4,
            alpha_gamma0: 0.15,
            gamma_min: 0.0,
        }),
    ] {
        let spec = AttackSpec::new(15, update).unwrap();
        let exec = Execution::new(6, 0).unwrap();
        let a = attack_all(&builtin.model, &set, &spec, &exec, &device, false, &mut NoObserver).unwrap();
        let b = attack_all(&exported.model, &set, &spec, &exec, &device, false, &mut NoObserver).unwrap();
        assert_eq!(a.success, b.success, "{update:?}");
        assert!(a.success.iter().any(|&s| s), "the attack should break some images");
        for (x, y) in a.norms.iter().zip(&b.norms) {
            assert!(
                x == y || (x - y).abs() <= 1e-5,
                "{update:?}: norm {x} (built-in) vs {y} (ONNX)"
            );
        }
    }
}

#[test]
#[ignore = "needs EfficientNet-Lite0 exported by scripts/fixtures/export_onnx.py --efficientnet-weights, and the data folder"]
fn efficientnet_lite0_exported_to_onnx_matches_the_built_in_one() {
    // $ANU_EFFICIENTNET_ONNX, else where scripts/fixtures/export_onnx.py writes it by default.
    let onnx = std::env::var_os("ANU_EFFICIENTNET_ONNX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/onnx/efficientnet-lite0.onnx"));
    let checkpoint = common::data_dir().join("models/efficientnet-lite0-57934424.pth");
    for path in [&onnx, &checkpoint] {
        if !path.exists() {
            eprintln!("{} not there: skipped", path.display());
            return;
        }
    }
    let device = Device::flex();
    // The built-in model scales its [0,1] input as TF-Lite does, (255 x - 127) / 128, inside.
    let tflite = Normalization {
        mean: vec![127.0 / 255.0; 3],
        std: vec![128.0 / 255.0; 3],
    };
    let exported = weights::load_model(&onnx, None, Some(&tflite), &device).unwrap();
    assert_eq!((exported.arch, exported.name()), (None, "onnx"));
    let builtin = weights::load_as(&checkpoint, Some(Architecture::EfficientNetLite0), &device).unwrap();
    assert_eq!(exported.input_spec(), builtin.input_spec());
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet-lite0-logits.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pytorch: Vec<f32> = floats(&fixture["logits"]);
    let r = Reference {
        shape: [3, 224, 224],
        inputs: (0..3).flat_map(common::efficientnet_reference_image).collect(),
        labels: vec![3, 7, 1],
        logits: Vec::new(),
        grads: Vec::new(),
        normalization: None,
    };
    let (ours, ours_grads) = logits_and_grads(&exported.model, &r);
    let (theirs, theirs_grads) = logits_and_grads(&builtin.model, &r);
    let largest = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let (to_builtin, to_pytorch) = (largest(&ours, &theirs), largest(&ours, &pytorch));
    let grads = relative_error(&ours_grads, &theirs_grads);
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let diff: Vec<f32> = ours_grads.iter().zip(&theirs_grads).map(|(a, b)| a - b).collect();
    let grads_l2 = norm(&diff) / norm(&theirs_grads);
    eprintln!(
        "efficientnet-lite0 ONNX: largest logit difference {to_builtin:.2e} from the built-in model, \
         {to_pytorch:.2e} from PyTorch; input gradients: largest difference {grads:.2e} of the largest, \
         L2 difference {grads_l2:.2e} of the L2 norm"
    );
    assert!(to_builtin < 1e-3 && to_pytorch < 1e-3, "{to_builtin} {to_pytorch}");
    // The input gradient of this deep network of ReLU6 is sensitive to rounding: the built-in
    // model's differs from PyTorch's by 2e-3 of the largest value (6e-4 in L2) on these images.
    assert!(grads < 1e-2 && grads_l2 < 2e-3, "{grads} {grads_l2}");
}

fn load_error(path: &Path, normalization: Option<&Normalization>) -> String {
    weights::load_model(path, None, normalization, &Device::flex())
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_truncated_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("mnist-cnn.onnx")).unwrap();
    for len in [0, 10, bytes.len() / 2, bytes.len() - 7] {
        let path = dir.path().join(format!("cut-{len}.onnx"));
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = load_error(&path, None);
        assert!(err.contains(&path.display().to_string()), "{len}: {err}");
    }
    let path = dir.path().join("noise.onnx");
    std::fs::write(&path, vec![0xff; 4096]).unwrap();
    let err = load_error(&path, None);
    assert!(err.contains("not a readable ONNX model"), "{err}");
}

#[test]
fn normalisation_is_checked() {
    let wrong = Normalization {
        mean: vec![0.5, 0.5],
        std: vec![0.2, 0.2],
    };
    let err = load_error(&fixture("resnet.onnx"), Some(&wrong));
    assert!(err.contains("one value per channel (3)"), "{err}");
    let zero = Normalization {
        mean: vec![0.5; 3],
        std: vec![0.2, 0.0, 0.2],
    };
    let err = load_error(&fixture("resnet.onnx"), Some(&zero));
    assert!(err.contains("positive"), "{err}");
    let one = Normalization {
        mean: vec![0.5],
        std: vec![0.2],
    };
    let err = load_error(&common::mnist_model_path(), Some(&one));
    assert!(err.contains("ONNX models only"), "{err}");
}

#[test]
fn an_onnx_model_that_does_not_fit_the_data_set_is_refused() {
    let loaded = weights::load_as(&fixture("resnet.onnx"), None, &Device::flex()).unwrap();
    assert_eq!(loaded.input_spec().num_classes, 10);
    let err = loaded.check_fits(DatasetName::Mnist).unwrap_err().to_string();
    assert!(err.contains("3x32x32") && err.contains("1x28x28"), "{err}");
    loaded.check_fits(DatasetName::Cifar10).unwrap();
}
