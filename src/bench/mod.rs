//! `anu bench`: throughput of one attack iteration (forward, loss, input gradient, update)
//! against the model's own passes and the machine's FLOP peak.

use std::fmt;
use std::time::Instant;

use burn::prelude::*;

use crate::attack::engine::logits_and_input_gradient;
use crate::attack::rules::Objective;
use crate::attack::{AttackKind, AttackedModel, Goal, NoObserver, paper_spec, run};
use crate::data::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::loss::cross_entropy;
use crate::machine::CpuInfo;
use crate::models::LoadedModel;

pub mod pytorch;

/// What a row of the table timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub enum Measured {
    /// The model's forward pass alone, whole batch.
    Forward,
    /// Forward pass and input gradient, whole batch in one pass.
    ForwardInputGrad,
    /// Forward pass and input gradient in chunks, as the attack passes them.
    ForwardInputGradChunked,
    /// A whole attack iteration (passes in chunks).
    Iteration(AttackKind),
}

impl Measured {
    /// FLOPs per image, in multiples of the forward pass's multiply-adds: 2 for a forward
    /// pass, 4 with the input gradient (the backward pass costs about as much again).
    pub fn flops_per_mac(self) -> f64 {
        match self {
            Measured::Forward => 2.0,
            _ => 4.0,
        }
    }
}

impl fmt::Display for Measured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measured::Forward => f.write_str("forward"),
            Measured::ForwardInputGrad => f.write_str("forward+input-grad"),
            Measured::ForwardInputGradChunked => f.write_str("forward+input-grad/chunked"),
            Measured::Iteration(a) => write!(f, "{a}-iteration"),
        }
    }
}

impl From<Measured> for String {
    fn from(m: Measured) -> Self {
        m.to_string()
    }
}

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    /// What was timed.
    pub what: Measured,
    /// Batch size.
    pub batch: usize,
    /// Images x iterations per second.
    pub images_per_second: f64,
    /// Achieved GFLOP/s, counting 2 FLOPs per multiply-add of the model's passes.
    pub gflops: f64,
    /// Fraction of the FLOP peak, where one was given (CPU backends).
    pub peak_fraction: Option<f64>,
}

/// The machine's single-precision FLOP peak in GFLOP/s and how it was counted.
pub fn cpu_peak_gflops() -> (f64, String) {
    CpuInfo::read().peak_gflops()
}

/// Seconds per call of `f`, after one warm-up call. The device is synchronised before the
/// clock starts and before it stops: reading a result back does not prove that a GPU backend
/// has finished the work (on an H100 through wgpu, timings without this came out faster than
/// the kernels' own durations allow).
fn time_it(device: &Device, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up
    let _ = device.sync();
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    let _ = device.sync();
    Ok(t.elapsed().as_secs_f64() / reps as f64)
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
    /// The device's FLOP peak in GFLOP/s, to express rates as a fraction of it (the CPU's,
    /// from [`cpu_peak_gflops`], on CPU backends; none on a GPU).
    pub peak_gflops: Option<f64>,
}

/// Measures each batch size of `settings` on `data` of `dataset` (cycled to fill large
/// batches); the model must fit the data set.
pub fn bench(
    model: &LoadedModel,
    dataset: DatasetName,
    data: &Dataset,
    settings: &BenchSettings,
    device: &Device,
) -> Result<Vec<BenchRow>> {
    model.check_fits(dataset)?;
    if data.is_empty() || settings.batches.contains(&0) {
        return Err(Error::Invalid(
            "bench needs images and batch sizes of at least 1".into(),
        ));
    }
    for &b in &settings.batches {
        crate::machine::check_batch_fits(
            "--batch-sizes",
            b,
            data.image_len(),
            crate::machine::ATTACK_COPIES,
            None,
        )?;
    }
    let (steps, reps) = (settings.steps.max(1), settings.reps.max(1));
    let macs = model.forward_macs() as f64;
    let prepared = AttackedModel::new(&model.model, device);
    let plain = model.model.valid().to_device(&device.clone().inner());
    let ad = device.clone().autodiff();
    let mut rows = Vec::new();
    for &b in &settings.batches {
        let idx: Vec<usize> = (0..b).map(|i| i % data.len()).collect();
        let batch = data.select(&idx);
        let (x_plain, _) = batch.batch(0, b, &device.clone().inner());
        let (x, y) = batch.batch(0, b, &ad);
        let mut row = |what: Measured, seconds_per_iter: f64| {
            let ips = b as f64 / seconds_per_iter;
            let gflops = ips * what.flops_per_mac() * macs / 1e9;
            rows.push(BenchRow {
                what,
                batch: b,
                images_per_second: ips,
                gflops,
                peak_fraction: settings.peak_gflops.map(|peak| gflops / peak),
            });
        };
        // Every timed closure reads its result back, and `time_it` synchronises the device.
        let fwd = time_it(device, reps, || {
            let _ = plain.forward(x_plain.clone())?.into_data();
            Ok(())
        })?;
        row(Measured::Forward, fwd);
        let fb = time_it(device, reps, || {
            let leaf = x.clone().detach().require_grad();
            let loss = cross_entropy(prepared.classifier().forward(leaf.clone())?, y.clone());
            let g = leaf.grad(&loss.backward()).expect("tracked");
            let _ = g.into_data();
            Ok(())
        })?;
        row(Measured::ForwardInputGrad, fb);
        if settings.pass_chunk > 0 && settings.pass_chunk < b {
            let label_index = y.clone().inner().reshape([b, 1]);
            let x_inner = x.clone().inner();
            let chunked = time_it(device, reps, || {
                let (logits, grad, _) = logits_and_input_gradient(
                    &prepared,
                    &x_inner,
                    &label_index,
                    false,
                    Objective::CrossEntropy,
                    settings.pass_chunk,
                )?;
                let _ = (logits.into_data(), grad.into_data());
                Ok(())
            })?;
            row(Measured::ForwardInputGradChunked, chunked);
        }
        // DDN and ANU runs alternate and each keeps its fastest run, so that a burst of
        // other work on the machine cannot land on one rule only: their ratio is ANU's overhead.
        let specs = AttackKind::PAPER
            .iter()
            .map(|&a| paper_spec(a, dataset, false, steps))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let goal = Goal::Untargeted(y.clone());
        let mut fastest = vec![f64::INFINITY; specs.len()];
        for _ in 0..reps.div_ceil(steps).max(2) {
            for (spec, best) in specs.iter().zip(fastest.iter_mut()) {
                let _ = device.sync();
                let t = Instant::now();
                let _ = run(&prepared, x.clone(), &goal, spec, settings.pass_chunk, &mut NoObserver)?;
                let _ = device.sync();
                *best = best.min(t.elapsed().as_secs_f64());
            }
        }
        for (spec, per_run) in specs.iter().zip(fastest) {
            row(Measured::Iteration(spec.kind()), per_run / steps as f64);
        }
    }
    Ok(rows)
}
