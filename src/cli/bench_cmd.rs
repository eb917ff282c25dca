//! `anu bench`: attack-iteration throughput table.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use anu::attack::AttackKind;
use anu::bench::pytorch::{Comparison, PytorchFigures, compare};
use anu::bench::{BenchSettings, Measured, bench, cpu_peak_gflops};
use anu::data::Split;

use super::Common;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Weight file (speed does not depend on the weights, but a trained model gives real gradients).
    #[arg(long, default_value = "models/mnist-cnn.safetensors")]
    model_file: PathBuf,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    batch_sizes: Vec<usize>,
    /// Attack iterations per timed run.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Timed repetitions of the model passes; the DDN and ANU runs alternate
    /// max(2, reps / steps) times and each keeps its fastest.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Images per forward/backward pass inside an attack batch (default: 64 on CPU, 0 = whole batch).
    #[arg(long)]
    pass_chunk: Option<usize>,
    /// PyTorch's figures for the same model on this machine, as `scripts/baselines/torch_baseline.py
    /// --json FILE` writes them: printed beside anu's, with the ratios.
    #[arg(long, value_name = "FILE")]
    pytorch: Option<PathBuf>,
    /// Also write the rows (and the run's manifest) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn ratio(anu: Option<f64>, pytorch: f64) -> String {
    anu.map_or("-".into(), |a| format!("{:.2}", a / pytorch))
}

fn print_comparison(pytorch: &PytorchFigures, comparisons: &[Comparison], anu_on_cpu: bool) {
    println!(
        "PyTorch {} on {} ({} threads), from {}: forward + input gradient, fastest chunking",
        pytorch.torch,
        pytorch.device,
        pytorch.threads,
        pytorch.path.display()
    );
    println!(
        "{:>6} {:>14} {:>6} {:>14} {:>7} {:>14} {:>7}",
        "batch", "PyTorch", "chunk", "anu passes", "ratio", "anu DDN iter", "ratio"
    );
    for c in comparisons {
        let p = c.pytorch_forward_input_grad;
        println!(
            "{:>6} {:>14.1} {:>6} {:>14} {:>7} {:>14} {:>7}",
            c.batch,
            p,
            c.pytorch_chunk,
            c.anu_forward_input_grad.map_or("-".into(), |a| format!("{a:.1}")),
            ratio(c.anu_forward_input_grad, p),
            c.anu_ddn_iteration.map_or("-".into(), |a| format!("{a:.1}")),
            ratio(c.anu_ddn_iteration, p),
        );
    }
    if comparisons.is_empty() {
        println!("(PyTorch timed none of these batch sizes)");
    }
    if anu_on_cpu != (pytorch.device == "cpu") {
        println!("note: PyTorch ran on {}, anu on another kind of device", pytorch.device);
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(path) = &args.json {
        anu::fsutil::check_output_file(path)?;
    }
    let pytorch = args.pytorch.as_deref().map(PytorchFigures::read).transpose()?;
    if let Some(p) = &pytorch
        && p.dataset != args.common.dataset.to_string()
    {
        anyhow::bail!(
            "{}: PyTorch's figures are for {}, this bench runs {}",
            p.path.display(),
            p.dataset,
            args.common.dataset
        );
    }
    let device = args.common.device()?;
    let loaded = args.common.load_model(&args.model_file, &device)?;
    let data = args.common.load(Split::Test)?.take(1000);
    let exec = anu::attack::Execution::for_device(args.common.device.backend(), 1)?;
    let chunk = args.pass_chunk.unwrap_or(exec.pass_chunk());
    let on_cpu = args.common.device.backend().is_cpu();
    let (peak, how) = cpu_peak_gflops();
    let settings = BenchSettings {
        batches: args.batch_sizes.clone(),
        steps: args.steps,
        reps: args.reps,
        pass_chunk: chunk,
        peak_gflops: on_cpu.then_some(peak),
    };
    let rows = bench(&loaded, args.common.dataset, &data, &settings, &device)?;
    println!(
        "device {}; attack iterations pass {} at a time",
        args.common.device_name(),
        if chunk == 0 {
            "the whole batch".to_string()
        } else {
            format!("{chunk} images")
        }
    );
    let peak_line = if on_cpu {
        format!("CPU peak {peak:.0} GFLOP/s = {how}")
    } else {
        format!(
            "no FLOP peak for this device; the CPU is {}",
            anu::machine::CpuInfo::read().describe()
        )
    };
    println!(
        "model {} ({} MMAC forward per image); {peak_line}",
        loaded.name(),
        loaded.forward_macs() as f64 / 1e6
    );
    println!(
        "{:<26} {:>6} {:>14} {:>9} {:>7}",
        "what", "batch", "img x iter/s", "GFLOP/s", "% peak"
    );
    for r in &rows {
        println!(
            "{:<26} {:>6} {:>14.1} {:>9.1} {:>7}",
            r.what.to_string(),
            r.batch,
            r.images_per_second,
            r.gflops,
            r.peak_fraction
                .map_or("-".to_string(), |f| format!("{:.1}%", 100.0 * f))
        );
    }
    for &b in &args.batch_sizes {
        let speed = |what: Measured| {
            rows.iter()
                .find(|r| r.batch == b && r.what == what)
                .map(|r| r.images_per_second)
        };
        if let (Some(ddn), Some(anu)) = (
            speed(Measured::Iteration(AttackKind::Ddn)),
            speed(Measured::Iteration(AttackKind::Anu)),
        ) {
            println!(
                "batch {b}: ANU iteration takes {:.3}x the time of a DDN iteration",
                ddn / anu
            );
        }
    }
    let comparisons = pytorch
        .as_ref()
        .map(|p| compare(&rows, p, &args.batch_sizes))
        .unwrap_or_default();
    if let Some(p) = &pytorch {
        print_comparison(p, &comparisons, on_cpu);
    }
    if let Some(path) = &args.json {
        let out = serde_json::json!({
            "rows": rows,
            "pytorch": pytorch,
            "pytorch_comparison": comparisons,
            "manifest": args.common.manifest(&[&loaded]),
        });
        anu::fsutil::write_json(path, &out)?;
    }
    Ok(())
}
