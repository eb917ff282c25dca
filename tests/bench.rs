//! `anu bench` (no data folder): every row it promises, with speeds and FLOP rates tied to the
//! model's multiply-adds counted by hand; a model that does not fit the data set is refused.

mod common;

use anu::attack::AttackKind;
use anu::bench::{BenchSettings, Measured, bench, cpu_peak_gflops};
use anu::data::DatasetName;
use anu::models::Architecture;
use burn::prelude::*;

#[test]
fn bench_times_every_pass_and_both_rules_per_batch() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::saved_random_model(dir.path(), "m.safetensors", Architecture::MnistCnn, 5);
    let data = common::synthetic(DatasetName::Mnist, 8, &loaded.model, 6);
    let settings = BenchSettings {
        batches: vec![4, 12],
        steps: 1,
        reps: 1,
        pass_chunk: 8,
        peak_gflops: Some(cpu_peak_gflops().0),
    };
    let rows = bench(&loaded, DatasetName::Mnist, &data, &settings, &device).unwrap();
    let (peak, _) = cpu_peak_gflops();
    assert!(peak > 0.0);
    let names = |b: usize| rows.iter().filter(|r| r.batch == b).map(|r| r.what).collect::<Vec<_>>();
    let iterations = [
        Measured::Iteration(AttackKind::Ddn),
        Measured::Iteration(AttackKind::Anu),
    ];
    // Batch 4 fits in one chunk, so it has no chunked row; batch 12 (cycling the 8 images) does.
    assert_eq!(
        names(4),
        [vec![Measured::Forward, Measured::ForwardInputGrad], iterations.to_vec()].concat()
    );
    assert_eq!(
        names(12),
        [
            vec![
                Measured::Forward,
                Measured::ForwardInputGrad,
                Measured::ForwardInputGradChunked
            ],
            iterations.to_vec()
        ]
        .concat()
    );
    assert_eq!(Measured::Iteration(AttackKind::Anu).to_string(), "anu-iteration");
    // 9.9524 million multiply-adds per MNIST image (counted layer by layer in tests/model.rs):
    // 2 FLOPs each forward, 4 with the input gradient.
    for r in &rows {
        assert!(r.images_per_second.is_finite() && r.images_per_second > 0.0, "{r:?}");
        let flops_per_image = if r.what == Measured::Forward {
            19.9048e6
        } else {
            39.8096e6
        };
        let expected = r.images_per_second * flops_per_image / 1e9;
        assert!((r.gflops - expected).abs() <= 1e-6 * expected, "{r:?}");
        let fraction = r.peak_fraction.expect("a peak was given");
        assert!((fraction * peak - r.gflops).abs() <= 1e-9 * r.gflops, "{r:?}");
    }
}

#[test]
fn bench_refuses_a_model_for_another_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let cifar = common::saved_random_model(dir.path(), "cifar.safetensors", Architecture::CifarCnn, 1);
    let mnist_model = common::random_model(Architecture::MnistCnn, 2);
    let data = common::synthetic(DatasetName::Mnist, 4, &mnist_model, 3);
    let settings = BenchSettings {
        batches: vec![4],
        steps: 1,
        reps: 1,
        pass_chunk: 0,
        peak_gflops: None,
    };
    let err = bench(&cifar, DatasetName::Mnist, &data, &settings, &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("cifar.safetensors"), "{err}");
}
