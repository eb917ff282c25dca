//! Model tests (no data folder): forward/backward shapes, weight-file round trip, bad weight
//! files, models that do not fit a data set.

mod common;

use anu::data::DatasetName;
use anu::models::{Architecture, Classifier, SmallCnnShape, weights};
use burn::prelude::*;

#[test]
fn forward_and_backward_give_finite_logits_and_input_gradients() {
    let device = Device::flex().autodiff();
    let model = Classifier::new(Architecture::MnistCnn, &device);
    let probe = common::random_model(Architecture::MnistCnn, 0);
    let data = common::synthetic(DatasetName::Mnist, 4, &probe, 1);
    let (images, labels) = data.batch(0, 4, &device);
    let images = images.require_grad();
    let logits = model.forward(images.clone()).unwrap();
    assert_eq!(logits.dims(), [4, 10]);
    let loss = anu::loss::cross_entropy(logits, labels);
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
    let logits = model.forward(Tensor::zeros([2, 3, 32, 32], &device)).unwrap();
    assert_eq!(logits.dims(), [2, 10]);
}

#[test]
fn saved_weights_load_back_to_identical_logits() {
    let device = Device::flex();
    let model = common::random_model(Architecture::MnistCnn, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    weights::save(&model, Architecture::MnistCnn, &path).unwrap();
    let loaded = weights::load(&path, &device).unwrap();
    assert_eq!(loaded.arch, Some(Architecture::MnistCnn));
    assert_eq!(loaded.sha256.len(), 64);
    assert_eq!(loaded.sha256, anu::fsutil::sha256_hex(&std::fs::read(&path).unwrap()));
    let data = common::synthetic(DatasetName::Mnist, 8, &model, 4);
    let (images, _) = data.batch(0, 8, &device);
    let a: Vec<f32> = model
        .valid()
        .forward(images.clone())
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    let b: Vec<f32> = loaded
        .model
        .valid()
        .forward(images)
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    assert_eq!(a, b);
    assert!(a.iter().any(|&v| v != a[0]));
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

    let err = weights::load(&dir.path().join("absent.safetensors"), &device).unwrap_err();
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the I/O error is kept as the source"
    );

    // A CIFAR model's weights do not fit when relabelled as an MNIST model.
    let cifar = Classifier::new(Architecture::CifarCnn, &device);
    let wrong = dir.path().join("wrong.safetensors");
    weights::save(&cifar, Architecture::CifarCnn, &wrong).unwrap();
    let mut relabelled = std::fs::read(&wrong).unwrap();
    let at = relabelled
        .windows(9)
        .position(|w| w == b"cifar-cnn")
        .expect("the architecture is named in the header");
    relabelled[at..at + 9].copy_from_slice(b"mnist-cnn");
    let path = dir.path().join("relabelled.safetensors");
    std::fs::write(&path, relabelled).unwrap();
    let err = weights::load(&path, &device).unwrap_err().to_string();
    assert!(
        err.contains("relabelled.safetensors") && err.contains("conv1.weight"),
        "{err}"
    );
}

#[test]
fn a_model_is_checked_against_the_data_set_it_is_used_on() {
    let dir = tempfile::tempdir().unwrap();
    let cifar = common::saved_random_model(dir.path(), "c.safetensors", Architecture::CifarCnn, 1);
    assert!(cifar.check_fits(DatasetName::Cifar10).is_ok());
    let err = cifar.check_fits(DatasetName::Mnist).unwrap_err().to_string();
    assert!(
        err.contains("c.safetensors") && err.contains("3x32x32") && err.contains("1x28x28"),
        "{err}"
    );
    assert_eq!(
        Architecture::MnistCnn.input_spec().image_shape,
        DatasetName::Mnist.info().image_shape
    );
}

#[test]
fn small_cnn_counts_its_multiply_adds_layer_by_layer() {
    // MNIST CNN by hand: convs 1->32 (26x26), 32->32 (24x24), pool, 32->64 (10x10),
    // 64->64 (8x8), pool, fc 1024->200, 200->200, 200->10.
    let by_hand = 32 * 9 * 26 * 26
        + 32 * 32 * 9 * 24 * 24
        + 32 * 64 * 9 * 10 * 10
        + 64 * 64 * 9 * 8 * 8
        + 1024 * 200
        + 200 * 200
        + 200 * 10;
    assert_eq!(SmallCnnShape::MNIST.forward_macs(), by_hand as u64);
    assert_eq!(Architecture::MnistCnn.forward_macs(), 9_952_400);
}

#[test]
fn wide_resnets_take_cifar_images_and_count_their_work() {
    let device = Device::flex();
    let model = Classifier::new(Architecture::Wrn16x2, &device);
    let logits = model.forward(Tensor::ones([2, 3, 32, 32], &device)).unwrap();
    assert_eq!(logits.dims(), [2, 10]);
    // WRN-28-10 is about 5.2 GMAC per image, WRN-16-2 about 0.1 GMAC.
    let big = Architecture::Wrn28x10.forward_macs() as f64 / 1e9;
    assert!((5.0..5.5).contains(&big), "{big}");
    let small = Architecture::Wrn16x2.forward_macs() as f64 / 1e9;
    assert!((0.05..0.2).contains(&small), "{small}");
    assert_eq!(Architecture::from_name("wrn-28-10"), Some(Architecture::Wrn28x10));
}

#[test]
fn accuracy_counts_correct_predictions_and_refuses_batch_size_zero() {
    let device = Device::flex();
    let model = common::random_model(Architecture::MnistCnn, 8);
    // Labelled with the model's own predictions: all correct; then one label changed.
    let mut data = common::synthetic(DatasetName::Mnist, 5, &model, 9);
    assert_eq!(anu::eval::accuracy(&model, &data, &device, 2).unwrap(), (1.0, 5));
    data.labels[3] = (data.labels[3] + 1) % 10;
    assert_eq!(anu::eval::accuracy(&model, &data, &device, 3).unwrap(), (0.8, 4));
    assert!(anu::eval::accuracy(&model, &data, &device, 0).is_err());
}

#[test]
fn an_empty_data_set_has_no_accuracy_and_is_refused() {
    use anu::attack::{AttackKind, EveryStep, Execution, paper_spec};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::saved_random_model(dir.path(), "m", Architecture::MnistCnn, 8);
    let empty = common::synthetic(DatasetName::Mnist, 3, &loaded.model, 9).take(0);
    let err = anu::eval::accuracy(&loaded.model, &empty, &device, 2).unwrap_err();
    assert!(err.to_string().contains("no images"), "{err}");
    let spec = paper_spec(AttackKind::Anu, DatasetName::Mnist, false, 2).unwrap();
    let err = anu::robustness::evaluate(
        &[("m".to_string(), loaded)],
        DatasetName::Mnist,
        &empty,
        &spec,
        &Execution::new(4, 0).unwrap(),
        &[0.0, 1.0],
        &device,
        &mut EveryStep(|| {}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no images"), "{err}");
}

#[test]
fn saving_the_same_model_again_gives_the_same_bytes() {
    let model = common::random_model(Architecture::MnistCnn, 5);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.safetensors");
    weights::save(&model, Architecture::MnistCnn, &first).unwrap();
    let bytes = std::fs::read(&first).unwrap();
    for i in 0..8 {
        let again = dir.path().join(format!("again{i}.safetensors"));
        weights::save(&model, Architecture::MnistCnn, &again).unwrap();
        assert!(
            std::fs::read(&again).unwrap() == bytes,
            "save number {i} wrote other bytes"
        );
    }
    // The file stays readable, with its architecture recorded.
    let loaded = weights::load(&first, &Device::flex()).unwrap();
    assert_eq!(loaded.arch, Some(Architecture::MnistCnn));
}

#[test]
fn weights_with_nan_or_infinity_are_refused_with_the_tensor_named() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let good = common::random_model(Architecture::MnistCnn, 4);
    let path = dir.path().join("good.safetensors");
    weights::save(&good, Architecture::MnistCnn, &path).unwrap();
    assert!(weights::load(&path, &device).is_ok());
    for poison in [f32::NAN, f32::INFINITY] {
        struct Poison(f32, bool);
        impl burn::module::ModuleMapper for Poison {
            fn map_float<const D: usize>(
                &mut self,
                param: burn::module::Param<Tensor<D>>,
            ) -> burn::module::Param<Tensor<D>> {
                if D != 1 || self.1 {
                    return param;
                }
                self.1 = true;
                let v = self.0;
                param.map(|t| t.clone().slice_fill(0..1, v))
            }
        }
        use burn::module::Module;
        let bad = good.clone().map(&mut Poison(poison, false));
        let path = dir.path().join("bad.safetensors");
        weights::save(&bad, Architecture::MnistCnn, &path).unwrap();
        let err = weights::load(&path, &device).unwrap_err().to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("non-finite") && err.contains("bias"),
            "{err}"
        );
    }
}
