//! Reduced precision never reports a false success: a classifier whose TF32-rounded weights
//! misclassify an image that the f32 weights classify correctly (a borderline decision) must
//! not yield an "adversarial" for it, and every success that is reported holds in f32.

use anu::attack::{AttackSpec, AttackedModel, Ddn, Goal, NoObserver, NormUpdate, Precision, run};
use anu::data::labels_tensor;
use anu::models::Classifier;
use burn::module::Param;
use burn::nn::LinearConfig;
use burn::prelude::*;

/// Logits of x = (x0, x1): z0 = (1 + 2^-12) x0 - x1 + 0.5 and z1 = x0 + 2^-14. At (0.5, 0.5)
/// class 0 wins by 2^-14 in f32; TF32 rounds 1 + 2^-12 to 1, and class 1 wins by 2^-14.
fn borderline(device: &Device) -> Classifier {
    let mut linear = LinearConfig::new(2, 2).init(device);
    let w = vec![1.0 + 2f32.powi(-12), 1.0, -1.0, 0.0];
    linear.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [2, 2]), device));
    linear.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0.5f32, 2f32.powi(-14)], [2]),
        device,
    )));
    Classifier::Linear(linear)
}

fn predictions(model: &Classifier, images: Tensor<4>) -> Vec<i64> {
    let b = images.dims()[0];
    model
        .forward(images)
        .unwrap()
        .argmax(1)
        .reshape([b])
        .into_data()
        .iter::<i64>()
        .collect()
}

#[test]
fn a_decision_that_only_tf32_takes_is_not_reported_as_a_success() {
    let device = Device::flex();
    let model = borderline(&device);
    // Image 0 sits on the border; image 1 is clearly class 0 and has a real adversarial
    // (raise x1 by about 0.3).
    let pixels = vec![0.5f32, 0.5, 0.5, 0.2];
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [2, 1, 1, 2]), &device);
    assert_eq!(
        predictions(&model, images.clone()),
        vec![0, 0],
        "f32 classifies both as class 0"
    );
    let rounded = Precision::Tf32.round_weights(model.clone());
    assert_eq!(
        predictions(&rounded, Precision::Tf32.round_tensor(images.clone()))[0],
        1,
        "the TF32 path must flip image 0, or this test shows nothing"
    );

    let ad = device.clone().autodiff();
    let goal = Goal::Untargeted(labels_tensor(&[0, 0], &ad));
    let spec = AttackSpec::new(50, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let attack = |precision| {
        let prepared = AttackedModel::with_precision(&model, &device, precision);
        run(
            &prepared,
            images.clone().to_device(&ad),
            &goal,
            &spec,
            0,
            &mut NoObserver,
        )
        .unwrap()
    };

    let exact = attack(Precision::F32);
    assert_eq!(exact.recheck.checked, 0, "an f32 run needs no check");
    assert!(exact.success[1] && exact.norms[0] > 0.0, "{:?}", exact.norms);

    let reduced = attack(Precision::Tf32);
    // In TF32 the first iterate of image 0 (the image itself) is "misclassified"; f32 disagrees.
    assert!(!reduced.success[0], "a false success: {:?}", reduced.norms);
    assert!(reduced.norms[0].is_infinite());
    assert!(reduced.recheck.failed >= 1, "{:?}", reduced.recheck);
    let reported = reduced.success.iter().filter(|&&s| s).count();
    assert_eq!(reduced.recheck.checked, reported + reduced.recheck.failed);
    // A rejected adversarial is replaced by the image; every one still reported is
    // misclassified by the f32 model, inside [0,1], at its reported norm.
    let adv = reduced.adversarials.clone().inner();
    let predicted = predictions(&model, adv.clone());
    let adv: Vec<f32> = adv.into_data().iter::<f32>().collect();
    assert_eq!(&adv[..2], &[0.5, 0.5]);
    for i in 0..2 {
        if reduced.success[i] {
            assert_ne!(predicted[i], 0, "image {i} reported broken but f32 says class 0");
            let a = &adv[2 * i..2 * i + 2];
            assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
            let norm = ((a[0] - 0.5f32).powi(2) + (a[1] - [0.5f32, 0.2][i]).powi(2)).sqrt();
            assert!((norm - reduced.norms[i]).abs() < 1e-5, "{norm} vs {}", reduced.norms[i]);
        }
    }
}
