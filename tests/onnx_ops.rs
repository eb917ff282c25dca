//! The operators of sliced, shape-computing and transformer graphs: the small graphs of
//! `scripts/fixtures/make_onnx_op_graphs.py` (onnxruntime's logits for three inputs) against
//! anu's logits, anu's input gradients (burn's autodiff) against central finite differences, on
//! batches other than the file's, and the message for a graph anu cannot run. Needs no data.

use std::path::PathBuf;

use anu::attack::AttackedModel;
use anu::models::weights;
use burn::prelude::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

struct Reference {
    shape: [usize; 3],
    inputs: Vec<f32>,
    logits: Vec<f32>,
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
            .collect()
    };
    let shape: Vec<usize> = json["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    Reference {
        shape: shape.try_into().unwrap(),
        inputs: floats(&json["inputs"]),
        logits: floats(&json["logits"]),
    }
}

/// The logits of `model` for `n` images, and the input gradient of `sum(logits * weights)`.
fn run(
    model: &anu::models::Classifier,
    shape: [usize; 3],
    inputs: &[f32],
    n: usize,
    weights: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex();
    let prepared = AttackedModel::new(model, &device);
    let ad = device.clone().autodiff();
    let [c, h, w] = shape;
    let x = Tensor::<4>::from_data(TensorData::new(inputs.to_vec(), [n, c, h, w]), &ad).require_grad();
    let logits = prepared.classifier().forward(x.clone()).unwrap();
    let k = logits.dims()[1];
    let wt = Tensor::<2>::from_data(TensorData::new(weights[..n * k].to_vec(), [n, k]), &ad);
    let grads = (logits.clone() * wt).sum().backward();
    let g = x.grad(&grads).unwrap();
    (
        logits.into_data().iter::<f32>().collect(),
        g.into_data().iter::<f32>().collect(),
    )
}

fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = ours.iter().zip(theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Loads `name`.onnx, checks its logits against onnxruntime's and its input gradient against
/// finite differences, then runs it on one image and on five (the file's batch is free).
fn check(name: &str) {
    let r = reference(&format!("{name}.json"));
    let loaded = weights::load_as(&fixture(&format!("{name}.onnx")), None, &Device::flex())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(loaded.input_spec().image_shape, r.shape);
    let k = r.logits.len() / 3;
    let weights: Vec<f32> = (0..5 * k).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
    let (logits, grad) = run(&loaded.model, r.shape, &r.inputs, 3, &weights);
    let el = relative_error(&logits, &r.logits);
    // Central differences of sum(logits * weights) in f32, on a spread of coordinates.
    let step = 3e-3f32;
    let loss = |inputs: &[f32]| -> f64 {
        let (l, _) = run(&loaded.model, r.shape, inputs, 3, &weights);
        l.iter().zip(&weights).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
    };
    let scale = grad.iter().fold(0f32, |m, g| m.max(g.abs()));
    let mut worst = 0f32;
    for i in (0..r.inputs.len()).step_by(r.inputs.len() / 23 + 1) {
        let (mut up, mut down) = (r.inputs.clone(), r.inputs.clone());
        up[i] += step;
        down[i] -= step;
        let fd = ((loss(&up) - loss(&down)) / (2.0 * step as f64)) as f32;
        worst = worst.max((fd - grad[i]).abs() / scale);
    }
    eprintln!("{name}: logits relative error {el:.2e} to onnxruntime; gradient vs finite differences {worst:.2e}");
    assert!(el < 1e-5, "{name}: logits differ from onnxruntime's ({el})");
    assert!(
        scale > 0.0 && worst < 2e-2,
        "{name}: gradient differs from finite differences ({worst})"
    );
    // Other batch sizes: the first image alone, and five images, give the same logits.
    let (one, _) = run(&loaded.model, r.shape, &r.inputs[..r.inputs.len() / 3], 1, &weights);
    assert!(relative_error(&one, &r.logits[..k]) < 1e-5, "{name}: one image");
    let mut five = r.inputs.clone();
    five.extend_from_slice(&r.inputs[..2 * r.inputs.len() / 3]);
    let (l5, _) = run(&loaded.model, r.shape, &five, 5, &weights);
    assert!(relative_error(&l5[..3 * k], &r.logits) < 1e-5, "{name}: five images");
}

#[test]
fn split_channel_shuffle_and_stepped_slices_match_onnxruntime() {
    check("ops-shuffle");
}

#[test]
fn a_vision_transformer_block_matches_onnxruntime() {
    check("ops-vit");
}

#[test]
fn computed_padding_masks_and_reductions_match_onnxruntime() {
    check("ops-swin");
}

#[test]
fn opset_20_gelu_and_inner_softmax_match_onnxruntime() {
    check("ops-gelu20");
}

#[test]
fn gelu_written_with_erf_matches_onnxruntime() {
    check("gelu");
}

#[test]
fn every_problem_of_a_graph_is_reported_at_once_with_the_files_node_names() {
    let path = fixture("ops-unsupported.onnx");
    let err = weights::load_as(&path, None, &Device::flex())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("Hardmax (node `/features/Hardmax` and 1 more)")
            && err.contains("NonZero (node `/features/NonZero`)"),
        "{err}"
    );
    assert!(
        err.contains("node `/features/Conv` (Conv): the convolution kernel `k0` must be a constant of the graph"),
        "{err}"
    );
}
