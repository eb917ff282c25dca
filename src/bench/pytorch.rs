//! PyTorch's figures for the same model passes, as `scripts/baselines/torch_baseline.py` writes them
//! (`--json FILE`), to print beside `anu bench`'s rows: anu never runs Python itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{BenchRow, Measured};
use crate::attack::AttackKind;
use crate::error::{Error, Result};

/// What PyTorch timed, per batch size and chunk size, in images (x iterations) per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PytorchFigures {
    /// The file they were read from.
    pub path: PathBuf,
    /// PyTorch's version.
    pub torch: String,
    /// The device PyTorch ran on (`cpu`, or the GPU's name).
    pub device: String,
    /// CPU threads PyTorch used.
    pub threads: u64,
    /// The data set of the model.
    pub dataset: String,
    /// Forward rates by (batch, chunk); the file keeps them all.
    #[serde(skip)]
    forward: BTreeMap<(usize, usize), f64>,
    /// Forward + input-gradient rates by (batch, chunk).
    #[serde(skip)]
    forward_input_grad: BTreeMap<(usize, usize), f64>,
}

/// The fastest of PyTorch's chunkings at one batch size.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BestRate {
    /// Images (x iterations) per second.
    pub images_per_second: f64,
    /// Images per pass that gave it.
    pub chunk: usize,
}

impl PytorchFigures {
    /// Reads the JSON that `scripts/baselines/torch_baseline.py --json FILE` writes. A file that is not
    /// such a JSON is refused with its path and what is wrong.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the JSON text of [`PytorchFigures::read`] (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |reason: String| Error::Json {
            path: path.to_path_buf(),
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not PyTorch figures from scripts/baselines/torch_baseline.py: {e}"
            ))
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("not PyTorch figures: not a JSON object".into()))?;
        let text_field = |name: &str| {
            object
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("no \"{name}\" (a string)")))
        };
        let mut figures = Self {
            path: path.to_path_buf(),
            torch: text_field("torch")?,
            device: text_field("device").unwrap_or_else(|_| "cpu".into()),
            threads: object.get("threads").and_then(|v| v.as_u64()).unwrap_or(0),
            dataset: text_field("dataset")?,
            forward: BTreeMap::new(),
            forward_input_grad: BTreeMap::new(),
        };
        for (key, value) in object {
            let Some((batch, what, chunk)) = parse_rate_key(key) else {
                continue;
            };
            let rate = value
                .as_f64()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| bad(format!("\"{key}\" is not a positive number")))?;
            let table = match what {
                Pass::Forward => &mut figures.forward,
                Pass::ForwardInputGrad => &mut figures.forward_input_grad,
            };
            table.insert((batch, chunk), rate);
        }
        if figures.forward_input_grad.is_empty() {
            return Err(bad(
                "no \"batch<B>_forward_input_grad_img_per_s_chunk<C>\" figures".into()
            ));
        }
        Ok(figures)
    }

    /// PyTorch's fastest forward pass at batch size `batch`, over the chunkings it timed.
    pub fn forward(&self, batch: usize) -> Option<BestRate> {
        best(&self.forward, batch)
    }

    /// PyTorch's fastest forward pass with input gradient at batch size `batch`: the model
    /// passes of one attack iteration.
    pub fn forward_input_grad(&self, batch: usize) -> Option<BestRate> {
        best(&self.forward_input_grad, batch)
    }
}

enum Pass {
    Forward,
    ForwardInputGrad,
}

/// `batch<B>_forward[_input_grad]_img_per_s_chunk<C>` -> (B, pass, C).
fn parse_rate_key(key: &str) -> Option<(usize, Pass, usize)> {
    let rest = key.strip_prefix("batch")?;
    let (batch, rest) = rest.split_once('_')?;
    let (what, chunk) = rest.rsplit_once("_img_per_s_chunk")?;
    let pass = match what {
        "forward" => Pass::Forward,
        "forward_input_grad" => Pass::ForwardInputGrad,
        _ => return None,
    };
    Some((batch.parse().ok()?, pass, chunk.parse().ok()?))
}

fn best(table: &BTreeMap<(usize, usize), f64>, batch: usize) -> Option<BestRate> {
    table
        .iter()
        .filter(|((b, _), _)| *b == batch)
        .map(|((_, chunk), &rate)| BestRate {
            images_per_second: rate,
            chunk: *chunk,
        })
        .max_by(|a, b| a.images_per_second.total_cmp(&b.images_per_second))
}

/// anu's rates next to PyTorch's at one batch size (ratios above 1: anu is faster).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Batch size.
    pub batch: usize,
    /// PyTorch's fastest forward + input gradient.
    pub pytorch_forward_input_grad: f64,
    /// The chunk size that gave it.
    pub pytorch_chunk: usize,
    /// anu's fastest forward + input gradient (whole batch or chunked).
    pub anu_forward_input_grad: Option<f64>,
    /// anu's whole DDN iteration.
    pub anu_ddn_iteration: Option<f64>,
    /// anu's whole ANU iteration.
    pub anu_anu_iteration: Option<f64>,
}

/// The comparison rows for every batch size PyTorch timed too.
pub fn compare(rows: &[BenchRow], pytorch: &PytorchFigures, batches: &[usize]) -> Vec<Comparison> {
    batches
        .iter()
        .filter_map(|&b| {
            let best = pytorch.forward_input_grad(b)?;
            let speed = |what: Measured| {
                rows.iter()
                    .filter(|r| r.batch == b && r.what == what)
                    .map(|r| r.images_per_second)
                    .reduce(f64::max)
            };
            let passes = [Measured::ForwardInputGrad, Measured::ForwardInputGradChunked]
                .into_iter()
                .filter_map(speed)
                .reduce(f64::max);
            Some(Comparison {
                batch: b,
                pytorch_forward_input_grad: best.images_per_second,
                pytorch_chunk: best.chunk,
                anu_forward_input_grad: passes,
                anu_ddn_iteration: speed(Measured::Iteration(AttackKind::Ddn)),
                anu_anu_iteration: speed(Measured::Iteration(AttackKind::Anu)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "torch": "2.9.0+cpu", "threads": 2, "device": "cpu", "dataset": "mnist", "n": 1000,
        "clean_accuracy": 0.99,
        "batch100_forward_img_per_s_chunk100": 1500.0,
        "batch100_forward_input_grad_img_per_s_chunk100": 700.0,
        "batch100_forward_img_per_s_chunk64": 1400.0,
        "batch100_forward_input_grad_img_per_s_chunk64": 800.0,
        "batch1000_forward_input_grad_img_per_s_chunk1000": 600.0
    }"#;

    #[test]
    fn the_fastest_chunking_is_taken_per_batch() {
        let f = PytorchFigures::parse(Path::new("t.json"), SAMPLE).unwrap();
        assert_eq!(
            (f.torch.as_str(), f.threads, f.dataset.as_str()),
            ("2.9.0+cpu", 2, "mnist")
        );
        let best = f.forward_input_grad(100).unwrap();
        assert_eq!((best.images_per_second, best.chunk), (800.0, 64));
        assert_eq!(f.forward(100).unwrap().chunk, 100);
        assert_eq!(f.forward_input_grad(1000).unwrap().images_per_second, 600.0);
        assert!(f.forward(1000).is_none());
        assert!(f.forward_input_grad(10).is_none());
    }

    #[test]
    fn comparisons_take_anu_s_fastest_passes_and_each_rule_at_the_batches_pytorch_timed() {
        let f = PytorchFigures::parse(Path::new("t.json"), SAMPLE).unwrap();
        let row = |what, batch, images_per_second| BenchRow {
            what,
            batch,
            images_per_second,
            gflops: 0.0,
            peak_fraction: None,
        };
        let rows = [
            row(Measured::ForwardInputGrad, 100, 900.0),
            row(Measured::ForwardInputGradChunked, 100, 1200.0),
            row(Measured::Iteration(AttackKind::Ddn), 100, 1000.0),
            row(Measured::Iteration(AttackKind::Anu), 100, 950.0),
            row(Measured::ForwardInputGrad, 50, 500.0),
        ];
        let c = compare(&rows, &f, &[50, 100]);
        assert_eq!(c.len(), 1, "PyTorch did not time batch 50");
        assert_eq!(c[0].batch, 100);
        assert_eq!((c[0].pytorch_forward_input_grad, c[0].pytorch_chunk), (800.0, 64));
        assert_eq!(c[0].anu_forward_input_grad, Some(1200.0));
        assert_eq!(
            (c[0].anu_ddn_iteration, c[0].anu_anu_iteration),
            (Some(1000.0), Some(950.0))
        );
    }

    #[test]
    fn files_that_are_not_pytorch_figures_are_refused_with_the_reason() {
        let err = |text: &str| {
            PytorchFigures::parse(Path::new("p.json"), text)
                .unwrap_err()
                .to_string()
        };
        assert!(err("{").starts_with("p.json: not PyTorch figures"), "{}", err("{"));
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err(r#"{"torch": "2.9", "dataset": "mnist"}"#).contains("no \"batch<B>_forward_input_grad"));
        assert!(err(r#"{"dataset": "mnist"}"#).contains("no \"torch\""));
        let negative = r#"{"torch": "2.9", "dataset": "mnist", "batch10_forward_input_grad_img_per_s_chunk10": -1}"#;
        assert!(err(negative).contains("is not a positive number"));
    }
}
