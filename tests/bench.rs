//! `anu bench` measures every row it promises, with finite speeds tied to the FLOP count.

mod common;

use anu::bench::{BenchSettings, bench, cpu_peak_gflops};
use anu::models::weights;
use burn::prelude::*;

#[test]
fn bench_times_every_pass_and_both_rules_per_batch() {
    let device = Device::flex();
    let named = weights::load(&common::mnist_model_path(), &device).expect("committed MNIST model");
    let data = common::mnist_test(8);
    let settings = BenchSettings {
        batches: vec![4, 12],
        steps: 1,
        reps: 1,
        pass_chunk: 8,
    };
    let rows = bench(&named.model, named.arch, &data, &settings, &device);
    let (peak, _) = cpu_peak_gflops();
    assert!(peak > 0.0);
    let names = |b: usize| {
        rows.iter()
            .filter(|r| r.batch == b)
            .map(|r| r.what.as_str())
            .collect::<Vec<_>>()
    };
    // Batch 4 fits in one chunk, so it has no chunked row; batch 12 (cycling the 8 images) does.
    assert_eq!(
        names(4),
        ["forward", "forward+input-grad", "ddn-iteration", "anu-iteration"]
    );
    assert_eq!(
        names(12),
        [
            "forward",
            "forward+input-grad",
            "forward+input-grad/chunked",
            "ddn-iteration",
            "anu-iteration"
        ]
    );
    let macs = named.arch.forward_macs() as f64;
    for r in &rows {
        assert!(r.images_per_second.is_finite() && r.images_per_second > 0.0, "{r:?}");
        let flops = if r.what == "forward" { 2.0 } else { 4.0 } * macs;
        assert!(
            (r.gflops - r.images_per_second * flops / 1e9).abs() <= 1e-9 * r.gflops.max(1.0),
            "{r:?}"
        );
        assert!((r.peak_fraction - r.gflops / peak).abs() < 1e-12, "{r:?}");
    }
}
