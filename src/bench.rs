//! `anu bench`: throughput of one attack iteration (forward, loss, input gradient, update)
//! against the model's own passes and the machine's FLOP peak.

use std::time::Instant;

use burn::prelude::*;

use crate::attack::engine::logits_and_input_gradient;
use crate::attack::{Goal, paper_config, prepare_model, run};
use crate::data::Dataset;
use crate::models::{Architecture, Classifier};
use crate::train::cross_entropy;

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    /// What was timed: `forward`, `forward+input-grad` (whole batch in one pass),
    /// `forward+input-grad/chunked` (the attack's passes, in chunks of `--pass-chunk`),
    /// `ddn-iteration`, `anu-iteration` (whole attack iterations, passes in chunks).
    pub what: String,
    /// Batch size.
    pub batch: usize,
    /// Images x iterations per second.
    pub images_per_second: f64,
    /// Achieved GFLOP/s, counting 2 FLOPs per multiply-add of the model's passes.
    pub gflops: f64,
    /// Fraction of the FLOP peak.
    pub peak_fraction: f64,
}

/// The machine's single-precision FLOP peak in GFLOP/s: cores x clock x FLOPs per cycle, from
/// /proc/cpuinfo. Two FMA units per core: 32 FLOP/cycle with AVX2 (2 units x 8 lanes x 2 FLOPs),
/// 64 with full-width AVX-512 (16 lanes); AMD Zen 4 (family 25) runs AVX-512 on 256-bit units,
/// so it counts as 32.
pub fn cpu_peak_gflops() -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let mhz = field("cpu MHz").and_then(|v| v.parse::<f64>().ok()).unwrap_or(2500.0);
    let flags = format!("{} ", field("flags").unwrap_or_default());
    let zen4 = field("vendor_id").as_deref() == Some("AuthenticAMD") && field("cpu family").as_deref() == Some("25");
    let (per_cycle, unit) = if flags.contains(" avx512f ") && !zen4 {
        (64.0, "AVX-512 FMA")
    } else if flags.contains(" fma ") && flags.contains(" avx2 ") {
        (32.0, "AVX2 FMA")
    } else {
        (8.0, "SSE")
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let peak = cores * mhz / 1000.0 * per_cycle;
    (
        peak,
        format!(
            "{cores} cores x {:.2} GHz x {per_cycle} FLOP/cycle ({unit})",
            mhz / 1000.0
        ),
    )
}

fn time_it(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

/// What `anu bench` measures.
#[derive(Clone, Debug)]
pub struct BenchSettings {
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Attack iterations per timed run.
    pub steps: usize,
    /// Timed repetitions of the model passes.
    pub reps: usize,
    /// Images per forward/backward pass inside an attack batch.
    pub pass_chunk: usize,
}

/// Measures each batch size of `settings` on `data` (cycled to fill large batches).
pub fn bench(
    model: &Classifier,
    arch: Architecture,
    data: &Dataset,
    settings: &BenchSettings,
    device: &Device,
) -> Vec<BenchRow> {
    let (steps, reps) = (settings.steps.max(1), settings.reps.max(1));
    let (peak, _) = cpu_peak_gflops();
    let macs = arch.forward_macs() as f64;
    let prepared = prepare_model(model, device);
    let plain = model.valid().to_device(&device.clone().inner());
    let ad = device.clone().autodiff();
    let mut rows = Vec::new();
    for &b in &settings.batches {
        let reps_data = data.len().max(1);
        let idx: Vec<usize> = (0..b).map(|i| i % reps_data).collect();
        let batch = data.select(&idx);
        let (x_plain, _) = batch.batch(0, b, &device.clone().inner());
        let (x, y) = batch.batch(0, b, &ad);
        let mut row = |what: &str, seconds_per_iter: f64, flops_per_image: f64| {
            let ips = b as f64 / seconds_per_iter;
            let gflops = ips * flops_per_image / 1e9;
            rows.push(BenchRow {
                what: what.into(),
                batch: b,
                images_per_second: ips,
                gflops,
                peak_fraction: gflops / peak,
            });
        };
        let fwd = time_it(reps, || {
            let _ = plain.forward(x_plain.clone()).into_data();
        });
        row("forward", fwd, 2.0 * macs);
        let fb = time_it(reps, || {
            let leaf = x.clone().detach().require_grad();
            let loss = cross_entropy(prepared.forward(leaf.clone()), y.clone());
            let g = leaf.grad(&loss.backward()).expect("tracked");
            let _ = g.into_data();
        });
        row("forward+input-grad", fb, 4.0 * macs);
        if settings.pass_chunk > 0 && settings.pass_chunk < b {
            let grad_device = ad.clone();
            let label_index = y.clone().inner().reshape([b, 1]);
            let x_inner = x.clone().inner();
            let chunked = time_it(reps, || {
                let (logits, grad) = logits_and_input_gradient(
                    &prepared,
                    &x_inner,
                    &label_index,
                    false,
                    settings.pass_chunk,
                    &grad_device,
                );
                let _ = (logits.into_data(), grad.into_data());
            });
            row("forward+input-grad/chunked", chunked, 4.0 * macs);
        }
        // DDN and ANU runs alternate and each keeps its fastest run, so that a burst of
        // other work on the machine cannot land on one rule only: their ratio is ANU's overhead.
        let rules = ["ddn", "anu"].map(|attack| {
            let mut config = paper_config(attack, arch.dataset(), false, steps)
                .expect("the paper has a configuration for both attacks");
            config.pass_chunk = settings.pass_chunk;
            (format!("{attack}-iteration"), config)
        });
        let goal = Goal::Untargeted(y.clone());
        let mut fastest = [f64::INFINITY; 2];
        for _ in 0..reps.div_ceil(steps).max(2) {
            for ((_, config), best) in rules.iter().zip(fastest.iter_mut()) {
                let t = Instant::now();
                let _ = run(&prepared, x.clone(), &goal, config, |_| {});
                *best = best.min(t.elapsed().as_secs_f64());
            }
        }
        for ((name, _), per_run) in rules.iter().zip(fastest) {
            row(name, per_run / steps as f64, 4.0 * macs);
        }
    }
    rows
}
