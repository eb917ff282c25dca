//! ONNX files that ask for more than they justify: a tiny graph declaring a huge input, a Pad of
//! 100 000, external data far larger than any weight file, a graph of more nodes than the
//! parser handles in reasonable time. Each is refused with an error that names the file and
//! says why, before the memory or the time is spent (a test process that tried would abort or
//! run for minutes). A graph whose shapes hold a fixed batch size loads (it runs on the two
//! images of the load-time check) and then fails with an error, not a panic, on other batches.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anu::models::weights;
use burn::prelude::*;
use onnx_ir::{GraphProto, Message, ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto};

/// A float tensor value `name` of shape `dims`.
fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut ty = TypeProto::new();
    let tensor = ty.mut_tensor_type();
    tensor.elem_type = 1;
    let shape = tensor.shape.mut_or_insert_default();
    for &d in dims {
        shape.dim.push(Default::default());
        shape.dim.last_mut().unwrap().set_dim_value(d);
    }
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(ty).into();
    v
}

/// A node `op` from `inputs` to `output`.
fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{output}");
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output.push(output.into());
    n
}

/// An int64 initialiser.
fn int64s(name: &str, values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 7;
    t.dims = vec![values.len() as i64];
    t.int64_data = values.to_vec();
    t
}

/// Writes a model of `graph` (opset 17) to `dir/name`.
fn write(dir: &Path, name: &str, graph: GraphProto) -> PathBuf {
    let mut model = ModelProto::new();
    model.ir_version = 8;
    model.opset_import.push(Default::default());
    model.opset_import[0].version = 17;
    model.graph = Some(graph).into();
    let path = dir.join(name);
    std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
    path
}

/// A graph `x [1, c, h, w] -> nodes -> Flatten -> logits`.
fn graph(input: &[i64], nodes: Vec<NodeProto>, last: &str, initializers: Vec<TensorProto>) -> GraphProto {
    let mut g = GraphProto::new();
    g.name = "g".into();
    g.input.push(value("x", input));
    g.node = nodes;
    g.node.push(node("Flatten", &[last], "logits"));
    g.output.push(value("logits", &[]));
    g.initializer = initializers;
    g
}

/// The error of loading `path`, and how long it took.
fn load_error(path: &Path) -> (String, f64) {
    let start = Instant::now();
    let err = weights::load_as(path, None, &Device::flex())
        .map(|_| ())
        .expect_err("the file was accepted")
        .to_string();
    (err, start.elapsed().as_secs_f64())
}

#[test]
fn a_tiny_graph_that_declares_huge_images_is_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let g = graph(&[1, 3, 100_000, 100_000], vec![node("Relu", &["x"], "y")], "y", vec![]);
    let path = write(dir.path(), "huge-input.onnx", g);
    assert!(std::fs::metadata(&path).unwrap().len() < 1024);
    let (err, _) = load_error(&path);
    assert!(
        err.contains("huge-input.onnx") && err.contains("3x100000x100000"),
        "{err}"
    );
    assert!(err.contains("values per image"), "{err}");
}

#[test]
fn a_pad_beyond_any_image_is_refused_before_it_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let pads = int64s("pads", &[0, 0, 100_000, 100_000, 0, 0, 100_000, 100_000]);
    let g = graph(&[1, 1, 28, 28], vec![node("Pad", &["x", "pads"], "y")], "y", vec![pads]);
    let path = write(dir.path(), "pad.onnx", g);
    let (err, _) = load_error(&path);
    assert!(err.contains("pad.onnx") && err.contains("values anu allows"), "{err}");
}

#[test]
fn external_data_beyond_the_weight_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    // A sparse side file of 4 GiB for an initialiser the graph never uses.
    std::fs::File::create(dir.path().join("side.bin"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let mut unused = TensorProto::new();
    unused.name = "unused".into();
    unused.data_type = 1;
    unused.dims = vec![1 << 30];
    unused.data_location = protobuf::EnumOrUnknown::from_i32(1);
    unused.external_data.push(Default::default());
    unused.external_data[0].key = "location".into();
    unused.external_data[0].value = "side.bin".into();
    let g = graph(&[1, 1, 28, 28], vec![node("Relu", &["x"], "y")], "y", vec![unused]);
    let path = write(dir.path(), "external.onnx", g);
    let (err, seconds) = load_error(&path);
    assert!(err.contains("external.onnx") && err.contains("side.bin"), "{err}");
    assert!(seconds < 10.0, "{seconds} s: the side file was read");
}

#[test]
fn a_graph_of_too_many_nodes_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = anu::models::onnx::precheck::MAX_NODES + 1;
    let nodes: Vec<NodeProto> = (0..n)
        .map(|i| {
            let input = if i == 0 { "x".to_string() } else { format!("v{i}") };
            node("Relu", &[&input], &format!("v{}", i + 1))
        })
        .collect();
    let g = graph(&[1, 1, 28, 28], nodes, &format!("v{n}"), vec![]);
    let path = write(dir.path(), "deep.onnx", g);
    let (err, seconds) = load_error(&path);
    assert!(
        err.contains("deep.onnx") && err.contains("100002 nodes") && err.contains("more than the 100000"),
        "{err}"
    );
    assert!(seconds < 10.0, "{seconds} s");
}

#[test]
fn a_graph_exported_for_a_fixed_batch_fails_with_an_error_on_other_batches() {
    use anu::attack::{AttackSpec, AttackedModel, Ddn, Goal, NoObserver, NormUpdate};
    let dir = tempfile::tempdir().unwrap();
    // Reshape to [2, 16]: right for the two images of the load-time check, and for no other
    // batch size.
    let shape = int64s("shape", &[2, 16]);
    let g = graph(
        &[1, 1, 4, 4],
        vec![node("Reshape", &["x", "shape"], "y")],
        "y",
        vec![shape],
    );
    let path = write(dir.path(), "fixed-batch.onnx", g);
    let loaded = weights::load_as(&path, None, &Device::flex()).unwrap();
    let two = loaded.model.forward(Tensor::zeros([2, 1, 4, 4], &Device::flex()));
    assert_eq!(two.unwrap().dims(), [2, 16]);
    let err = loaded
        .model
        .forward(Tensor::zeros([3, 1, 4, 4], &Device::flex()))
        .expect_err("a batch of 3 was classified")
        .to_string();
    assert!(err.contains("batch of 3") && err.contains("Reshape"), "{err}");

    // The attack loop hands the same error back instead of stopping the process.
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let attacked = AttackedModel::new(&loaded.model, &device);
    let spec = AttackSpec::new(3, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let images = Tensor::<4>::full([3, 1, 4, 4], 0.5, &ad);
    let labels = anu::data::labels_tensor(&[0, 1, 2], &ad);
    let result = anu::attack::run(&attacked, images, &Goal::Untargeted(labels), &spec, 0, &mut NoObserver);
    let err = match result {
        Ok(_) => panic!("the attack ran on a graph that cannot take 3 images"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("batch of 3"), "{err}");
}
