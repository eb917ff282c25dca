//! Attack tests on the committed MNIST model: the adversarials are real, inside [0,1], with
//! the norms reported and close to minimal; ANU with alpha_gamma = 0 is DDN bit for bit;
//! gradients are right; `anu attack` reports a set with no success as such, without a mean.

mod common;

use anu::attack::{
    Anu, AttackSet, AttackSpec, AttackedModel, Ddn, EveryStep, Execution, Goal, NoObserver, NormUpdate, TraceRecorder,
    attack_all, run,
};
use anu::data::{Label, labels_tensor};
use anu::eval::predictions;
use anu::models::{Classifier, weights};
use burn::prelude::*;

fn model() -> Classifier {
    weights::load(&common::mnist_model_path(), &Device::flex())
        .expect("committed MNIST model")
        .model
}

const ANU_MNIST: NormUpdate = NormUpdate::Anu(Anu {
    gamma0: 0.4,
    alpha_gamma0: 0.15,
    gamma_min: 0.0,
});

fn spec(steps: usize, rule: NormUpdate) -> AttackSpec {
    AttackSpec::new(steps, rule).unwrap()
}

fn exec(batch: usize) -> Execution {
    Execution::new(batch, 64).unwrap()
}

/// Checks every successful adversarial: misclassified (or on target), in [0,1], norm as reported.
fn check_adversarials(model: &Classifier, set: &AttackSet, adv: &[f32], norms: &[f32], success: &[bool]) {
    let device = Device::flex();
    let [c, h, w] = set.data.image_shape;
    let images =
        Tensor::<1>::from_data(TensorData::new(adv.to_vec(), [adv.len()]), &device).reshape([set.len(), c, h, w]);
    let predicted = predictions(model, images).unwrap();
    assert!(adv.iter().all(|p| (0.0..=1.0).contains(p)), "adversarial outside [0,1]");
    let len = set.data.image_len();
    for i in 0..set.len() {
        if !success[i] {
            continue;
        }
        match &set.targets {
            Some(t) => assert_eq!(predicted[i], t[i] as i64, "attack {i} missed its target"),
            None => assert_ne!(
                predicted[i], set.data.labels[i] as i64,
                "attack {i} is not misclassified"
            ),
        }
        let x = set.data.image(i);
        let a = &adv[i * len..(i + 1) * len];
        let l2 = x
            .iter()
            .zip(a)
            .map(|(p, q)| ((q - p) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            (l2 - norms[i] as f64).abs() < 1e-4 * (1.0 + l2),
            "attack {i}: reported {} but ||x'-x|| = {l2}",
            norms[i]
        );
    }
}

#[test]
fn untargeted_anu_and_ddn_find_real_near_minimal_adversarials() {
    let model = model();
    let set = AttackSet::untargeted(common::mnist_test(24));
    let device = Device::flex();
    // A long DDN run is the yardstick of "minimal" here.
    let reference = attack_all(
        &model,
        &set,
        &spec(300, NormUpdate::Ddn(Ddn { gamma: 0.05 })),
        &exec(12),
        &device,
        false,
        &mut NoObserver,
    )
    .unwrap();
    let (reference_mean, _) = anu::attack::stats::mean_median(&reference.norms);
    for rule in [ANU_MNIST, NormUpdate::Ddn(Ddn { gamma: 0.05 })] {
        let r = attack_all(&model, &set, &spec(60, rule), &exec(12), &device, true, &mut NoObserver).unwrap();
        let adv = r.adversarials.clone().unwrap();
        assert!(
            r.success.iter().all(|&s| s),
            "{rule:?}: every MNIST image should be broken"
        );
        check_adversarials(&model, &set, &adv, &r.norms, &r.success);
        let (mean, _) = anu::attack::stats::mean_median(&r.norms);
        // 60 iterations get within a few percent of 300; they cannot beat them by much.
        let ratio = mean / reference_mean;
        assert!(
            (0.98..1.06).contains(&ratio),
            "{rule:?}: mean {mean} vs DDN-300 {reference_mean}"
        );
    }
}

#[test]
fn targeted_attacks_reach_their_targets() {
    let model = model();
    let set = AttackSet::all_other_targets(&common::mnist_test(2));
    assert_eq!(set.len(), 18);
    let rule = NormUpdate::Anu(Anu {
        gamma0: 0.05,
        alpha_gamma0: 0.05,
        gamma_min: 0.0,
    });
    let r = attack_all(
        &model,
        &set,
        &spec(100, rule),
        &exec(18),
        &Device::flex(),
        true,
        &mut NoObserver,
    )
    .unwrap();
    assert!(r.success.iter().filter(|&&s| s).count() >= 17, "{:?}", r.success);
    check_adversarials(&model, &set, r.adversarials.as_ref().unwrap(), &r.norms, &r.success);
}

#[test]
fn anu_with_zero_alpha_gamma_is_exactly_ddn() {
    let model = AttackedModel::new(&model(), &Device::flex());
    let data = common::mnist_test(10);
    let device = Device::flex().autodiff();
    let (images, labels) = data.batch(0, 10, &device);
    let goal = Goal::Untargeted(labels);
    let ddn = spec(40, NormUpdate::Ddn(Ddn { gamma: 0.05 }));
    let anu0 = spec(
        40,
        NormUpdate::Anu(Anu {
            gamma0: 0.05,
            alpha_gamma0: 0.0,
            gamma_min: 0.0,
        }),
    );
    let (mut ta, mut tb) = (TraceRecorder::default(), TraceRecorder::default());
    let a = run(&model, images.clone(), &goal, &ddn, 64, &mut ta).unwrap();
    let b = run(&model, images.clone(), &goal, &anu0, 64, &mut tb).unwrap();
    assert_eq!(a.norms, b.norms);
    assert_eq!(a.success, b.success);
    assert_eq!(ta.trace.eps, tb.trace.eps);
    assert_eq!(ta.trace.norm, tb.trace.norm);
    let xa: Vec<f32> = a.adversarials.into_data().iter::<f32>().collect();
    let xb: Vec<f32> = b.adversarials.into_data().iter::<f32>().collect();
    assert_eq!(xa, xb);
    // And the adaptive rule does change the run once alpha_gamma > 0.
    let anu = spec(
        40,
        NormUpdate::Anu(Anu {
            gamma0: 0.05,
            alpha_gamma0: 0.15,
            gamma_min: 0.0,
        }),
    );
    let mut tc = TraceRecorder::default();
    run(&model, images, &goal, &anu, 64, &mut tc).unwrap();
    assert_ne!(ta.trace.eps, tc.trace.eps);
}

#[test]
fn already_reached_goal_has_norm_zero_and_trace_is_monotone() {
    let model = model();
    let data = common::mnist_test(6);
    let device = Device::flex();
    let predicted = predictions(&model, data.batch(0, 6, &device).0).unwrap();
    // Targeting the class the model already predicts: x itself is the answer.
    let targets: Vec<Label> = predicted.iter().map(|&p| p as Label).collect();
    let prepared = AttackedModel::new(&model, &device);
    let ad = device.clone().autodiff();
    let spec = spec(10, ANU_MNIST);
    let r = run(
        &prepared,
        data.batch(0, 6, &ad).0,
        &Goal::Targeted(labels_tensor(&targets, &ad)),
        &spec,
        64,
        &mut NoObserver,
    )
    .unwrap();
    assert!(r.success.iter().all(|&s| s));
    assert!(r.norms.iter().all(|&n| n == 0.0), "{:?}", r.norms);

    let mut recorder = TraceRecorder::default();
    run(
        &prepared,
        data.batch(0, 6, &ad).0,
        &Goal::Untargeted(labels_tensor(&data.labels, &ad)),
        &spec,
        64,
        &mut recorder,
    )
    .unwrap();
    let trace = recorder.trace;
    assert_eq!(trace.best_norm.len(), 10);
    for i in 0..6 {
        for k in 1..10 {
            assert!(trace.best_norm[k][i] <= trace.best_norm[k - 1][i]);
        }
        assert_eq!(trace.norm[0][i], 0.0, "the first iterate is x itself");
    }
}

#[test]
fn quantised_iterates_lie_on_the_256_level_grid() {
    let model = model();
    let set = AttackSet::untargeted(common::mnist_test(6));
    let spec = spec(30, NormUpdate::Ddn(Ddn { gamma: 0.05 })).with_quantize(true);
    let r = attack_all(&model, &set, &spec, &exec(6), &Device::flex(), true, &mut NoObserver).unwrap();
    let adv = r.adversarials.unwrap();
    assert!(adv.iter().all(|&p| ((p * 255.0) - (p * 255.0).round()).abs() < 1e-3));
    check_adversarials(&model, &set, &adv, &r.norms, &r.success);
}

#[test]
fn input_gradient_matches_finite_differences() {
    let device = Device::flex();
    let prepared = AttackedModel::new(&model(), &device);
    let model = prepared.classifier();
    let data = common::mnist_test(3);
    let ad = device.clone().autodiff();
    let (images, labels) = data.batch(0, 3, &ad);
    let loss_of = |x: Tensor<4>| -> f64 {
        let logits = model.forward(x).unwrap();
        anu::loss::cross_entropy(logits, labels.clone())
            .inner()
            .into_scalar::<f32>() as f64
    };
    let leaf = images.clone().require_grad();
    let loss = anu::loss::cross_entropy(model.forward(leaf.clone()).unwrap(), labels.clone());
    let grad = leaf.grad(&loss.backward()).unwrap().inner();
    // Directional derivatives along a few random directions, by central differences.
    for seed in 0..3 {
        device.seed(seed);
        let v = images
            .clone()
            .inner()
            .random_like(burn::tensor::Distribution::Normal(0.0, 1.0));
        let v = v
            .clone()
            .div_scalar(v.clone().square().sum().sqrt().into_scalar::<f32>());
        let analytic = grad.clone().mul(v.clone()).sum().into_scalar::<f32>() as f64;
        let h = 1e-2f32;
        let plus = loss_of(Tensor::from_inner(images.clone().inner().add(v.clone().mul_scalar(h))));
        let minus = loss_of(Tensor::from_inner(images.clone().inner().sub(v.mul_scalar(h))));
        let numeric = (plus - minus) / (2.0 * h as f64);
        assert!(
            (analytic - numeric).abs() <= 0.05 * analytic.abs().max(numeric.abs()) + 1e-4,
            "direction {seed}: autodiff {analytic} vs finite differences {numeric}"
        );
    }
}

#[test]
fn anu_gamma_follows_alg2_and_respects_its_floor() {
    let model = AttackedModel::new(&model(), &Device::flex());
    let data = common::mnist_test(8);
    let device = Device::flex().autodiff();
    let (images, labels) = data.batch(0, 8, &device);
    let goal = Goal::Untargeted(labels);
    for floor in [0.0f32, 0.05] {
        let rule = NormUpdate::Anu(Anu {
            gamma0: 0.4,
            alpha_gamma0: 0.15,
            gamma_min: floor,
        });
        let mut recorder = TraceRecorder::default();
        run(&model, images.clone(), &goal, &spec(40, rule), 64, &mut recorder).unwrap();
        let trace = recorder.trace;
        // Step 2: A_{-1} = 0 and x'_0 = x is correctly classified, so gamma_1 = 1.15 gamma_0.
        assert!(
            trace.gamma[0].iter().all(|&g| (g - 0.46).abs() < 1e-6),
            "{:?}",
            trace.gamma[0]
        );
        let all: Vec<f32> = trace.gamma.iter().flatten().copied().collect();
        assert!(all.iter().all(|&g| g >= floor && g <= anu::attack::rules::GAMMA_MAX));
        let lowest = all.iter().copied().fold(f32::INFINITY, f32::min);
        if floor > 0.0 {
            assert_eq!(lowest, floor, "the floor should bind once the iterates alternate");
        } else {
            assert!(
                lowest < 0.05,
                "near the boundary gamma_k shrinks below DDN's 0.05: {lowest}"
            );
        }
    }
}

#[test]
fn a_progress_observer_sees_every_iteration_of_every_batch() {
    let model = model();
    let set = AttackSet::untargeted(common::mnist_test(5));
    let mut calls = 0;
    attack_all(
        &model,
        &set,
        &spec(7, ANU_MNIST),
        &exec(2),
        &Device::flex(),
        false,
        &mut EveryStep(|| calls += 1),
    )
    .unwrap();
    assert_eq!(calls, 3 * 7, "3 batches of 7 iterations");
}

#[test]
fn an_attack_with_no_success_reports_no_norms() {
    // One iteration only evaluates the clean image (x'_0 = x), which the model classifies
    // correctly, so no targeted attack can have succeeded.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("none.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anu"))
        .args(["attack", "--dataset", "mnist", "--data-dir"])
        .arg(common::data_dir())
        .arg("--model-file")
        .arg(common::mnist_model_path())
        .args(["--attack", "ddn", "--steps", "1", "--targeted", "--n", "2", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("success 0.0000, no adversarial found"), "{stdout}");
    assert!(!stdout.contains("NaN"), "{stdout}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(result["n_attacks"], 18);
    assert!(result["mean_l2"].is_null() && result["median_l2"].is_null(), "{result}");
    assert!(result["norms"].as_array().unwrap().iter().all(|n| n.is_null()));
}
