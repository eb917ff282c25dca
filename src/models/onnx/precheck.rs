//! What an ONNX file asks for, checked before its tensors are read and its graph compiled: the
//! file is decoded once as a plain protobuf (time linear in its size) and refused when its
//! graph has more nodes than [`MAX_NODES`] or when the tensors it keeps in external data files
//! would read more than the weight-file limit (such files are outside the `.onnx` file and its
//! own size limit).

use std::path::{Component, Path, PathBuf};

use onnx_ir::{GraphProto, Message, ModelProto, TensorProto};

use crate::models::weights::MAX_WEIGHT_FILE_BYTES;

/// Most nodes and initialisers of a graph that is loaded. ResNet-50 has about 500 and
/// ViT-B/16 about 2000; ten times the largest of the usual architectures' counts.
pub const MAX_NODES: usize = 100_000;

/// What a decoded file holds that matters before it is built.
#[derive(Debug, Default, PartialEq)]
pub struct Census {
    /// Nodes and initialisers, subgraphs included.
    pub nodes: usize,
    /// Bytes that would be read from external data files, by file (relative to the model).
    pub external: Vec<(PathBuf, u64)>,
}

/// Decodes `bytes` (the `.onnx` file at `path`) and checks it against the limits above.
/// Errors are reasons, without the file name.
pub fn check(path: &Path, bytes: &[u8]) -> Result<Census, String> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| format!("not a readable ONNX model: {e}"))?;
    check_model(path, &model)
}

/// Checks a decoded file (see [`check`]).
pub fn check_model(path: &Path, model: &ModelProto) -> Result<Census, String> {
    let mut census = Census::default();
    let base = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut external_bytes = 0u64;
    walk(&model.graph, &mut census, base, &mut external_bytes)?;
    if census.nodes > MAX_NODES {
        return Err(format!(
            "the graph has {} nodes and initialisers, more than the {MAX_NODES} anu loads",
            census.nodes
        ));
    }
    if external_bytes > MAX_WEIGHT_FILE_BYTES {
        let files: Vec<String> = census
            .external
            .iter()
            .map(|(f, n)| format!("{} ({n} bytes)", f.display()))
            .collect();
        return Err(format!(
            "its tensors in external data files would read {external_bytes} bytes, above the {MAX_WEIGHT_FILE_BYTES} accepted for a model's weights: {}",
            files.join(", ")
        ));
    }
    Ok(census)
}

/// Counts the nodes of `graph` and its subgraphs and adds up the external data they read.
fn walk(graph: &GraphProto, census: &mut Census, base: &Path, external_bytes: &mut u64) -> Result<(), String> {
    census.nodes += graph.node.len() + graph.initializer.len();
    for tensor in &graph.initializer {
        if let Some((file, len)) = external_read(tensor, base)? {
            *external_bytes = external_bytes.saturating_add(len);
            match census.external.iter_mut().find(|(f, _)| *f == file) {
                Some((_, total)) => *total = total.saturating_add(len),
                None => census.external.push((file, len)),
            }
        }
    }
    for node in &graph.node {
        for attribute in &node.attribute {
            if let Some(sub) = attribute.g.as_ref() {
                walk(sub, census, base, external_bytes)?;
            }
            for sub in &attribute.graphs {
                walk(sub, census, base, external_bytes)?;
            }
        }
    }
    Ok(())
}

/// The external data file of `tensor` (relative to the model's folder) and the bytes the
/// parser reads from it: `length` when the file says, else the rest of the file after
/// `offset`. `None` for a tensor held in the `.onnx` file itself.
fn external_read(tensor: &TensorProto, base: &Path) -> Result<Option<(PathBuf, u64)>, String> {
    if tensor.external_data.is_empty() {
        return Ok(None);
    }
    let value = |key: &str| {
        tensor
            .external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>, String> {
        value(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    format!(
                        "tensor `{}`: external data {key} `{v}` is not a byte count",
                        tensor.name
                    )
                })
            })
            .transpose()
    };
    let location =
        value("location").ok_or_else(|| format!("tensor `{}` is in external data without a location", tensor.name))?;
    let file = PathBuf::from(location);
    if file.is_absolute() || file.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "tensor `{}`: external data location `{location}` is not a file name beside the model",
            tensor.name
        ));
    }
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let len = match length {
        Some(n) => n,
        None => {
            let size = std::fs::metadata(base.join(&file))
                .map_err(|e| format!("tensor `{}`: external data file `{location}`: {e}", tensor.name))?
                .len();
            size.saturating_sub(offset)
        }
    };
    Ok(Some((file, len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_ir::{NodeProto, ValueInfoProto};

    /// A graph of `n` Relu nodes in a chain and the given initialisers.
    fn chain(n: usize, initializers: Vec<TensorProto>) -> Vec<u8> {
        let mut graph = GraphProto::new();
        for i in 0..n {
            let mut node = NodeProto::new();
            node.op_type = "Relu".into();
            node.input.push(format!("v{i}"));
            node.output.push(format!("v{}", i + 1));
            graph.node.push(node);
        }
        let mut input = ValueInfoProto::new();
        input.name = "v0".into();
        graph.input.push(input);
        graph.initializer = initializers;
        let mut model = ModelProto::new();
        model.graph = Some(graph).into();
        model.write_to_bytes().unwrap()
    }

    /// A tensor kept in `location` with the given external-data entries.
    fn external(name: &str, entries: &[(&str, &str)]) -> TensorProto {
        let mut t = TensorProto::new();
        t.name = name.into();
        for (k, v) in entries {
            t.external_data.push(Default::default());
            let e = t.external_data.last_mut().unwrap();
            e.key = (*k).into();
            e.value = (*v).into();
        }
        t
    }

    #[test]
    fn graphs_beyond_the_node_limit_are_refused_at_once() {
        let path = Path::new("m.onnx");
        assert_eq!(check(path, &chain(100, vec![])).unwrap().nodes, 100);
        let start = std::time::Instant::now();
        let err = check(path, &chain(MAX_NODES + 1, vec![])).unwrap_err();
        assert!(err.contains("100001 nodes") && err.contains("100000"), "{err}");
        // A plain decode: no graph is built.
        assert!(start.elapsed().as_secs_f64() < 5.0);
    }

    #[test]
    fn external_data_counts_against_the_weight_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let side = std::fs::File::create(dir.path().join("w.bin")).unwrap();
        // A sparse file of 4 GiB: nothing is written, only its size is declared.
        side.set_len(4 << 30).unwrap();
        let whole = external("unused", &[("location", "w.bin")]);
        let err = check(&path, &chain(2, vec![whole])).unwrap_err();
        assert!(err.contains("w.bin") && err.contains("4294967296"), "{err}");
        let small = external("w", &[("location", "w.bin"), ("offset", "0"), ("length", "4096")]);
        let census = check(&path, &chain(2, vec![small])).unwrap();
        assert_eq!(census.external, [(PathBuf::from("w.bin"), 4096)]);
        let declared = external("w", &[("location", "w.bin"), ("length", "99999999999")]);
        assert!(check(&path, &chain(2, vec![declared])).is_err());
        for location in ["../w.bin", "/etc/passwd"] {
            let t = external("w", &[("location", location), ("length", "4")]);
            let err = check(&path, &chain(2, vec![t])).unwrap_err();
            assert!(err.contains("not a file name beside the model"), "{err}");
        }
    }
}
