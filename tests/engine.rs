//! The attack loop on freshly made models and images (no data folder): results do not depend
//! on how the batch is chunked or split, nor on what observes the run; a zero gradient is
//! handled without reading anything back.

mod common;

use anu::attack::{
    Anu, AttackSet, AttackSpec, AttackedModel, Ddn, Execution, Goal, MeanNormRecorder, NoObserver, NormUpdate,
    TraceRecorder, attack_all, run,
};
use anu::data::{DatasetName, labels_tensor};
use anu::models::{Architecture, Classifier};
use burn::module::Param;
use burn::nn::LinearConfig;
use burn::prelude::*;

const ANU: NormUpdate = NormUpdate::Anu(Anu {
    gamma0: 0.4,
    alpha_gamma0: 0.15,
    gamma_min: 0.0,
});

#[test]
fn results_do_not_depend_on_pass_chunks_or_batches() {
    let model = common::random_model(Architecture::MnistCnn, 1);
    let data = common::synthetic(DatasetName::Mnist, 10, &model, 2);
    let set = AttackSet::untargeted(data);
    let spec = AttackSpec::new(12, ANU).unwrap();
    let device = Device::flex();
    let reference = attack_all(
        &model,
        &set,
        &spec,
        &Execution::new(10, 0).unwrap(),
        &device,
        true,
        &mut NoObserver,
    )
    .unwrap();
    assert!(
        reference.success.iter().any(|&s| s),
        "the attack should break some images"
    );
    for (batch, chunk) in [(10, 3), (10, 64), (4, 0), (3, 2)] {
        let r = attack_all(
            &model,
            &set,
            &spec,
            &Execution::new(batch, chunk).unwrap(),
            &device,
            true,
            &mut NoObserver,
        )
        .unwrap();
        assert_eq!(r.success, reference.success, "batch {batch} chunk {chunk}");
        for (a, b) in r.norms.iter().zip(&reference.norms) {
            assert!(
                a == b || (a - b).abs() <= 1e-4 * b.abs(),
                "batch {batch} chunk {chunk}: norm {a} vs {b}"
            );
        }
    }
}

#[test]
fn observers_do_not_change_the_run_and_record_every_attack() {
    let model = common::random_model(Architecture::MnistCnn, 3);
    let data = common::synthetic(DatasetName::Mnist, 5, &model, 4);
    let set = AttackSet::untargeted(data);
    let spec = AttackSpec::new(9, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let device = Device::flex();
    let exec = Execution::new(2, 0).unwrap();
    let plain = attack_all(&model, &set, &spec, &exec, &device, true, &mut NoObserver).unwrap();
    let mut trace = TraceRecorder::default();
    let mut means = MeanNormRecorder::default();
    let watched = attack_all(&model, &set, &spec, &exec, &device, true, &mut (&mut trace, &mut means)).unwrap();
    assert_eq!(plain.norms, watched.norms);
    assert_eq!(plain.adversarials, watched.adversarials);
    // Three batches (2 + 2 + 1): every iteration's row holds all 5 attacks.
    assert_eq!(trace.trace.norm.len(), 9);
    assert!(trace.trace.norm.iter().all(|row| row.len() == 5));
    let means = means.means();
    for (k, row) in trace.trace.norm.iter().enumerate() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 5.0;
        assert!((means[k] - mean).abs() < 1e-9, "iteration {k}");
    }
    // The last trace row's best norms are the run's result.
    let last = trace.trace.best_norm.last().unwrap();
    assert_eq!(last, &watched.norms);
}

#[test]
fn a_zero_gradient_steps_along_a_fallback_direction() {
    // A classifier with zero weights: every logit is its bias, the input gradient is exactly
    // zero, and no perturbation changes the prediction.
    let device = Device::flex();
    let mut linear = LinearConfig::new(16, 3).init(&device);
    linear.weight = Param::from_tensor(Tensor::zeros([16, 3], &device));
    linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 0.0], [3]),
        &device,
    )));
    let model = AttackedModel::new(&Classifier::Linear(linear), &device);
    let ad = device.clone().autodiff();
    let images = Tensor::<4>::full([2, 1, 4, 4], 0.5, &ad);
    let spec = AttackSpec::new(5, ANU).unwrap();
    let mut trace = TraceRecorder::default();
    let r = run(
        &model,
        images,
        &Goal::Untargeted(labels_tensor(&[0, 0], &ad)),
        &spec,
        0,
        &mut trace,
    )
    .unwrap();
    assert_eq!(r.success, vec![false, false]);
    assert!(r.norms.iter().all(|n| n.is_infinite()));
    // The iterates still move: each later iterate lies on a sphere of positive radius.
    for k in 1..5 {
        assert!(
            trace.trace.norm[k].iter().all(|&n| n > 0.0 && n.is_finite()),
            "{:?}",
            trace.trace.norm[k]
        );
    }
}

#[test]
fn success_is_reported_only_for_a_stored_finite_adversarial() {
    // Non-finite logits (an infinite or NaN bias) make the loss and the gradient NaN: the
    // iterates become NaN, and no image may be reported as broken unless a finite adversarial
    // was stored for it.
    let device = Device::flex();
    let ad = device.clone().autodiff();
    for bias in [
        [f32::INFINITY, 0.0, 0.0],
        [0.0, f32::INFINITY, 0.0],
        [f32::NAN, 0.0, 1.0],
        [0.0, f32::NEG_INFINITY, 0.0],
    ] {
        let mut linear = LinearConfig::new(16, 3).init(&device);
        linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(bias.to_vec(), [3]),
            &device,
        )));
        let model = AttackedModel::new(&Classifier::Linear(linear), &device);
        let images = Tensor::<4>::full([6, 1, 4, 4], 0.5, &ad);
        let spec = AttackSpec::new(6, ANU).unwrap();
        for goal in [
            Goal::Untargeted(labels_tensor(&[0, 1, 2, 0, 1, 2], &ad)),
            Goal::Targeted(labels_tensor(&[1, 2, 0, 2, 0, 1], &ad)),
        ] {
            let r = run(&model, images.clone(), &goal, &spec, 0, &mut NoObserver).unwrap();
            let adv: Vec<f32> = r.adversarials.into_data().iter::<f32>().collect();
            for i in 0..6 {
                if r.success[i] {
                    let image = &adv[i * 16..(i + 1) * 16];
                    assert!(
                        r.norms[i].is_finite(),
                        "bias {bias:?}: success {i} with norm {}",
                        r.norms[i]
                    );
                    assert!(
                        image.iter().all(|v| v.is_finite()),
                        "bias {bias:?}: success {i} with a NaN image"
                    );
                    let l2 = image.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f32>().sqrt();
                    assert!(
                        (l2 - r.norms[i]).abs() <= 1e-5,
                        "bias {bias:?}: reported {} for an image at {l2}",
                        r.norms[i]
                    );
                } else {
                    assert!(r.norms[i].is_infinite());
                }
            }
        }
    }
}

#[test]
fn the_ball_projection_only_shrinks_and_the_sphere_projection_always_rescales() {
    use anu::attack::engine::projection_scale;
    let device = Device::flex();
    let eps = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 2.0], [3]), &device);
    let norms = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, 4.0, 2.0], [3]), &device);
    let ball: Vec<f32> = projection_scale(&eps, norms.clone(), false)
        .into_data()
        .iter::<f32>()
        .collect();
    assert_eq!(
        ball,
        vec![1.0, 0.25, 1.0],
        "inside the ball nothing moves; outside, onto its surface"
    );
    let sphere: Vec<f32> = projection_scale(&eps, norms, true).into_data().iter::<f32>().collect();
    assert_eq!(sphere, vec![2.0, 0.25, 1.0]);
}

#[test]
fn fmn_finds_adversarials_and_its_iterates_stay_inside_the_ball() {
    let model = common::random_model(Architecture::MnistCnn, 5);
    let data = common::synthetic(DatasetName::Mnist, 6, &model, 6);
    let set = AttackSet::untargeted(data);
    let spec = anu::attack::paper_spec(anu::attack::AttackKind::Fmn, DatasetName::Mnist, false, 30).unwrap();
    let mut trace = TraceRecorder::default();
    let r = attack_all(
        &model,
        &set,
        &spec,
        &Execution::new(6, 0).unwrap(),
        &Device::flex(),
        true,
        &mut trace,
    )
    .unwrap();
    // (Exact minimal norms are checked on affine models in tests/oracle.rs.)
    assert!(r.success.iter().filter(|&&s| s).count() >= 4, "{:?}", r.success);
    // Each evaluated iterate lies inside the ball of the previous iteration's radius.
    for k in 1..30 {
        for i in 0..6 {
            let (norm, eps) = (trace.trace.norm[k][i], trace.trace.eps[k - 1][i]);
            assert!(
                norm <= eps * (1.0 + 1e-4) + 1e-6,
                "iteration {k}, sample {i}: {norm} > {eps}"
            );
        }
    }
    // gamma follows the cosine from 0.05 to 0.001.
    assert!((trace.trace.gamma[0][0] - 0.05).abs() < 1e-7);
    assert!(trace.trace.gamma[29][0] < 0.002);
}
