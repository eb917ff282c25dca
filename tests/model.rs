//! Model tests: forward/backward shapes, weight-file round trip, bad weight files.

mod common;

use anu::models::{Architecture, Classifier, weights};
use burn::prelude::*;

#[test]
fn forward_and_backward_give_finite_logits_and_input_gradients() {
    let device = Device::flex().autodiff();
    let model = Classifier::new(Architecture::MnistCnn, &device);
    let data = common::mnist_test(4);
    let (images, labels) = data.batch(0, 4, &device);
    let images = images.require_grad();
    let logits = model.forward(images.clone());
    assert_eq!(logits.dims(), [4, 10]);
    let loss = anu::train::cross_entropy(logits, labels);
    // Zero-initialised last layer: uniform prediction, loss ln 10.
    let value = loss.clone().inner().into_scalar::<f32>();
    assert!((value - 10f32.ln()).abs() < 1e-4, "{value}");
    let grads = loss.backward();
    let g = images.grad(&grads).unwrap();
    assert_eq!(g.dims(), [4, 1, 28, 28]);
    assert!(g.into_data().iter::<f32>().all(f32::is_finite));
}

#[test]
fn cifar_cnn_takes_colour_images() {
    let device = Device::flex();
    let model = Classifier::new(Architecture::CifarCnn, &device);
    let logits = model.forward(Tensor::zeros([2, 3, 32, 32], &device));
    assert_eq!(logits.dims(), [2, 10]);
}

#[test]
fn saved_weights_load_back_to_identical_logits() {
    let device = Device::flex();
    device.seed(3);
    let mut model = Classifier::new(Architecture::MnistCnn, &device);
    // Give the zero-initialised last layer some weights so the logits differ per image.
    model = model.map(&mut Randomize);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    weights::save(&model, Architecture::MnistCnn, &path).unwrap();
    let loaded = weights::load(&path, &device).unwrap();
    assert_eq!(loaded.arch, Architecture::MnistCnn);
    let data = common::mnist_test(8);
    let (images, _) = data.batch(0, 8, &device);
    let a: Vec<f32> = model
        .valid()
        .forward(images.clone())
        .into_data()
        .iter::<f32>()
        .collect();
    let b: Vec<f32> = loaded.model.valid().forward(images).into_data().iter::<f32>().collect();
    assert_eq!(a, b);
    assert!(a.iter().any(|&v| v != a[0]));
}

struct Randomize;
impl burn::module::ModuleMapper for Randomize {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t.random_like(burn::tensor::Distribution::Normal(0.0, 0.05)))
    }
}

#[test]
fn bad_weight_files_are_reported_with_the_file() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let model = Classifier::new(Architecture::MnistCnn, &device);
    weights::save(&model, Architecture::MnistCnn, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = weights::load(&truncated, &device).unwrap_err().to_string();
    assert!(err.contains("truncated.safetensors"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a model at all").unwrap();
    let err = weights::load(&garbage, &device).unwrap_err().to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    let err = weights::load(&dir.path().join("absent.safetensors"), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.safetensors"), "{err}");

    // A CIFAR model's weights do not fit when relabelled as an MNIST model.
    let cifar = Classifier::new(Architecture::CifarCnn, &device);
    let wrong = dir.path().join("wrong.safetensors");
    weights::save(&cifar, Architecture::CifarCnn, &wrong).unwrap();
    let text = std::fs::read(&wrong).unwrap();
    let relabelled = String::from_utf8_lossy(&text)
        .replace("cifar-cnn", "mnist-cnn")
        .into_bytes();
    if relabelled.len() == text.len() {
        let path = dir.path().join("relabelled.safetensors");
        std::fs::write(&path, relabelled).unwrap();
        let err = weights::load(&path, &device).unwrap_err().to_string();
        assert!(err.contains("relabelled.safetensors"), "{err}");
    }
}

#[test]
fn wide_resnets_take_cifar_images_and_count_their_work() {
    let device = Device::flex();
    let model = Classifier::new(Architecture::Wrn16x2, &device);
    let logits = model.forward(Tensor::ones([2, 3, 32, 32], &device));
    assert_eq!(logits.dims(), [2, 10]);
    // WRN-28-10 is about 5.2 GMAC per image, WRN-16-2 about 0.1 GMAC.
    let big = Architecture::Wrn28x10.forward_macs() as f64 / 1e9;
    assert!((5.0..5.5).contains(&big), "{big}");
    let small = Architecture::Wrn16x2.forward_macs() as f64 / 1e9;
    assert!((0.05..0.2).contains(&small), "{small}");
    assert_eq!(Architecture::from_name("wrn-28-10"), Some(Architecture::Wrn28x10));
}
