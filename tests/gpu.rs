//! The GPU code path (wgpu) against the CPU one (flex), on freshly made models: same logits, same
//! input gradients, same attack results. Without a GPU, Mesa's software Vulkan driver (lavapipe)
//! runs it. Where wgpu finds no adapter at all the tests say so and pass, unless
//! `ANU_REQUIRE_GPU_TESTS=1` (set by `.ci/run`, which installs lavapipe) makes that a failure.
#![cfg(feature = "wgpu")]

mod common;

use anu::attack::{Anu, AttackSet, AttackSpec, Execution, NoObserver, NormUpdate, attack_all};
use anu::data::DatasetName;
use anu::device::DeviceChoice;
use anu::loss::cross_entropy;
use anu::models::{Architecture, Classifier};
use burn::prelude::*;

/// The wgpu device, or `None` (after saying why) where the machine has no adapter and the
/// tests were not told to insist.
fn gpu() -> Option<Device> {
    match DeviceChoice::new(anu::device::Backend::Wgpu, None).unwrap().open() {
        Ok(device) => Some(device),
        Err(e) if std::env::var("ANU_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1") => {
            panic!("ANU_REQUIRE_GPU_TESTS=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipping the GPU comparison: {e}");
            None
        }
    }
}

/// Logits and the input gradient of the summed cross-entropy of `images` on `device`.
fn logits_and_gradient(
    model: &Classifier,
    images: &[f32],
    shape: [usize; 4],
    labels: &[i64],
    device: &Device,
) -> (Vec<f32>, Vec<f32>) {
    let ad = device.clone().autodiff();
    let model = model.valid().to_device(&ad);
    let x = Tensor::<4>::from_data(TensorData::new(images.to_vec(), shape), &ad).require_grad();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), &ad);
    let logits = model.forward(x.clone()).unwrap();
    let loss = cross_entropy(logits.clone(), y).mul_scalar(labels.len() as f32);
    let grad = x.grad(&loss.backward()).expect("the input is tracked");
    let to_vec = |d: TensorData| d.iter::<f32>().collect::<Vec<_>>();
    (to_vec(logits.inner().into_data()), to_vec(grad.into_data()))
}

/// Largest difference relative to the largest magnitude of `reference`.
fn relative_error(got: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(got.len(), reference.len());
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn logits_and_input_gradients_equal_the_cpu_ones() {
    let Some(gpu) = gpu() else { return };
    for (arch, dataset, seed) in [
        (Architecture::MnistCnn, DatasetName::Mnist, 11),
        (Architecture::CifarCnn, DatasetName::Cifar10, 12),
    ] {
        let model = common::random_model(arch, seed);
        let data = common::synthetic(dataset, 5, &model, seed + 100);
        let [c, h, w] = dataset.info().image_shape;
        let (images, _) = data.batch(0, data.len(), &Device::flex());
        let images: Vec<f32> = images.into_data().iter::<f32>().collect();
        let labels: Vec<i64> = data.labels.iter().map(|&l| (l as i64 + 3) % 10).collect();
        let shape = [data.len(), c, h, w];
        let (cpu_logits, cpu_grad) = logits_and_gradient(&model, &images, shape, &labels, &Device::flex());
        let (gpu_logits, gpu_grad) = logits_and_gradient(&model, &images, shape, &labels, &gpu);
        let (e_logits, e_grad) = (
            relative_error(&gpu_logits, &cpu_logits),
            relative_error(&gpu_grad, &cpu_grad),
        );
        assert!(e_logits < 1e-4, "{arch:?}: logits differ by {e_logits:e} (relative)");
        assert!(
            e_grad < 1e-4,
            "{arch:?}: input gradients differ by {e_grad:e} (relative)"
        );
        assert!(
            cpu_grad.iter().any(|&g| g != 0.0),
            "{arch:?}: the gradient should not vanish"
        );
    }
}

#[test]
fn a_short_anu_attack_finds_the_same_adversarials() {
    let Some(gpu) = gpu() else { return };
    let model = common::random_model(Architecture::MnistCnn, 21);
    let data = common::synthetic(DatasetName::Mnist, 6, &model, 22);
    let set = AttackSet::untargeted(data);
    let spec = AttackSpec::new(
        15,
        NormUpdate::Anu(Anu {
            gamma0: 0.4,
            alpha_gamma0: 0.15,
            gamma_min: 0.0,
        }),
    )
    .unwrap();
    let run = |device: &Device, backend| {
        let exec = Execution::for_device(backend, set.len()).unwrap();
        attack_all(&model, &set, &spec, &exec, device, true, &mut NoObserver).unwrap()
    };
    let cpu = run(&Device::flex(), anu::device::Backend::Flex);
    let on_gpu = run(&gpu, anu::device::Backend::Wgpu);
    assert!(cpu.success.iter().any(|&s| s), "the attack should break some images");
    assert_eq!(on_gpu.success, cpu.success);
    for (g, c) in on_gpu.norms.iter().zip(&cpu.norms) {
        assert!(
            g == c || (g - c).abs() <= 1e-3 * c.abs(),
            "norm {g} on the GPU, {c} on the CPU"
        );
    }
    // The adversarials found on the GPU are images: inside [0,1].
    let adversarials = on_gpu.adversarials.expect("kept");
    assert!(adversarials.iter().all(|v| (0.0..=1.0).contains(v)));
}
