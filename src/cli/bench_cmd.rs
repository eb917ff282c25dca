//! `anu bench`: attack-iteration throughput table.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use anu::attack::AttackKind;
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
    /// Also write the rows (and the run's manifest) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(path) = &args.json {
        anu::fsutil::check_output_file(path)?;
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
        loaded.arch.name(),
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
    if let Some(path) = &args.json {
        let out = serde_json::json!({"rows": rows, "manifest": args.common.manifest(&[&loaded])});
        anu::fsutil::write_json(path, &out)?;
    }
    Ok(())
}
