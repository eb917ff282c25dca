//! Real architectures exported to ONNX by `scripts/zoo/export_zoo.py` (torchvision's and
//! RobustBench's, both exporters), each against PyTorch: does it load, how far are the logits
//! and the input gradients from PyTorch's, and does DDN find adversarials for its two images
//! wherever PyTorch's DDN with the same settings and budget does (the budget is the file's
//! `ddn_steps`, 20 for files without it). The gradient is compared only where PyTorch's own
//! float32 gradient agrees with its float64 one (`grads_f64_cosine` >= 0.999): where max-pooling
//! windows hold ties, no float32 gradient is a reference, and the row says so.
//! Ignored by default (the files are hundreds of MB and not committed):
//!
//! ```text
//! ANU_ZOO_DIR=target/zoo cargo test --release --test onnx_zoo -- --ignored --nocapture
//! ```
//!
//! It prints one table row per file, writes the table to `$ANU_ZOO_DIR/results.md`, and fails
//! when any row is not "yes".

use std::fmt::Write as _;
use std::path::PathBuf;

use anu::attack::{AttackSet, AttackSpec, AttackedModel, Ddn, Execution, NoObserver, NormUpdate, attack_all};
use anu::data::{Dataset, Label};
use anu::models::weights;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
        .collect()
}

/// Largest absolute difference over the largest absolute reference value.
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = ours.iter().zip(theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// One file's row: loads, logits error, gradient cosine, DDN successes.
fn check(json_path: &PathBuf) -> (String, bool) {
    let stem = json_path.file_stem().unwrap().to_string_lossy().to_string();
    let onnx = json_path.with_extension("onnx");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let device = Device::flex();
    let start = std::time::Instant::now();
    let loaded = match weights::load_as(&onnx, None, &device) {
        Ok(m) => m,
        Err(e) => {
            let why = e.to_string().replace('|', "/");
            return (format!("| {stem} | no: {} | | | |", &why[..why.len().min(400)]), false);
        }
    };
    let load_s = start.elapsed().as_secs_f64();
    let shape: Vec<usize> = json["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let [c, h, w] = shape[..] else {
        panic!("{stem}: input shape {shape:?}")
    };
    let inputs = floats(&json["inputs"]);
    let labels: Vec<i64> = json["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let n = labels.len();
    let prepared = AttackedModel::new(&loaded.model, &device);
    let ad = device.clone().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(inputs.clone(), [n, c, h, w]), &ad).require_grad();
    let logits = prepared.classifier().forward(x.clone()).unwrap();
    let target = Tensor::<2, Int>::from_data(TensorData::new(labels.clone(), [n, 1]), &ad);
    let grads = log_softmax(logits.clone(), 1).gather(1, target).neg().sum().backward();
    let g: Vec<f32> = x.grad(&grads).unwrap().into_data().iter::<f32>().collect();
    let logits: Vec<f32> = logits.into_data().iter::<f32>().collect();
    let el = relative_error(&logits, &floats(&json["logits"]));
    let cg = cosine(&g, &floats(&json["grads"]));
    // DDN on the two images (their labels are PyTorch's predictions).
    let pixels: Vec<u8> = inputs.iter().map(|v| (v * 255.0).round() as u8).collect();
    let num_classes = loaded.input_spec().num_classes;
    let data = Dataset::new(
        pixels,
        labels.iter().map(|&l| l as Label).collect(),
        [c, h, w],
        num_classes,
    )
    .unwrap();
    let steps = json["ddn_steps"].as_u64().unwrap_or(20) as usize;
    let torch_norms: Option<Vec<Option<f64>>> = json["ddn_norms"]
        .as_array()
        .map(|a| a.iter().map(serde_json::Value::as_f64).collect());
    let spec = AttackSpec::new(steps, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let exec = Execution::new(n, 0).unwrap();
    let started = std::time::Instant::now();
    let result = attack_all(
        &loaded.model,
        &AttackSet::untargeted(data),
        &spec,
        &exec,
        &device,
        false,
        &mut NoObserver,
    )
    .unwrap();
    let attack_s = started.elapsed().as_secs_f64();
    let found = result.success.iter().filter(|&&s| s).count();
    // PyTorch's DDN on the same images: anu must succeed at least where it does.
    let torch_found = torch_norms.as_ref().map_or(n, |t| t.iter().flatten().count());
    let attack_ok = found >= torch_found;
    let conditioning = json["grads_f64_cosine"].as_f64().unwrap_or(1.0);
    let grad = match conditioning >= 0.999 {
        true => format!("{cg:.6} {}", if cg > 0.999 { "yes" } else { "NO" }),
        false => format!("{cg:.6} n/a (PyTorch's own f32 vs f64 gradients: cosine {conditioning:.3})"),
    };
    let grad_ok = conditioning < 0.999 || cg > 0.999;
    let ok = el < 1e-4 && grad_ok && attack_ok;
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let torch = match &torch_norms {
        Some(t) => format!("{t:.4?}"),
        None => "-".into(),
    };
    let row = format!(
        "| {stem} | yes ({load_s:.1} s) | {el:.1e} {} | {grad} | DDN-{steps} {found}/{n}, PyTorch {torch_found}/{n}: {} ({attack_s:.1} s) | {:.4?} | {torch} |",
        yes(el < 1e-4),
        yes(attack_ok),
        result.norms
    );
    (row, ok)
}

#[test]
#[ignore = "needs the exports of scripts/zoo/export_zoo.py in $ANU_ZOO_DIR (default target/zoo)"]
fn every_exported_architecture_loads_matches_pytorch_and_is_attacked() {
    let dir = std::env::var_os("ANU_ZOO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/zoo"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.with_extension("onnx").exists())
        .collect();
    files.sort();
    if let Ok(only) = std::env::var("ANU_ZOO_ONLY") {
        files.retain(|p| {
            only.split(',')
                .any(|o| p.file_stem().unwrap().to_string_lossy().starts_with(o))
        });
    }
    assert!(!files.is_empty(), "no exports in {}", dir.display());
    let mut table = String::from(
        "| export | loads | logits rel. error | gradient cosine | DDN success (anu) | anu norms | PyTorch DDN norms |\n|---|---|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    for f in &files {
        let (row, ok) = check(f);
        eprintln!("{row}");
        writeln!(table, "{row}").unwrap();
        if !ok {
            failures.push(f.file_stem().unwrap().to_string_lossy().to_string());
        }
    }
    std::fs::write(dir.join("results.md"), &table).unwrap();
    assert!(failures.is_empty(), "not all yes: {failures:?}\n{table}");
}
