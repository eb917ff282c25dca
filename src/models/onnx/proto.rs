//! An ONNX file read into plain Rust values: its nodes as the file names and orders them, their
//! attributes, its initialisers and constants as host tensors, and the declared shape of its
//! input. Nothing is renamed, fused or inferred here; [`super::graph`] compiles the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use onnx_ir::{AttributeProto, AttributeType, GraphProto, Message, ModelProto, TensorProto, ValueInfoProto};

use super::host::{HostData, HostTensor};

/// An attribute of a node.
#[derive(Clone, Debug)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Str(String),
    Tensor(HostTensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    /// A kind `anu` does not read (graphs, sparse tensors, lists of strings or tensors).
    Other,
}

/// A node of the graph.
#[derive(Clone, Debug)]
pub struct NodeDef {
    /// The name the file gives it, else `OpType #i` (its position among the nodes).
    pub name: String,
    /// The operator, prefixed with its domain when that is not the standard one.
    pub op: String,
    /// Input value names; `""` for an optional input left out.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

/// A graph input that is not an initialiser.
#[derive(Clone, Debug)]
pub struct InputDef {
    pub name: String,
    /// The declared dimensions (`None` for a named or missing one); `None` with no shape.
    pub dims: Option<Vec<Option<usize>>>,
    /// The ONNX element type number (1 = float).
    pub elem_type: i32,
}

/// The main graph of a file.
#[derive(Clone, Debug)]
pub struct GraphDef {
    pub nodes: Vec<NodeDef>,
    /// Initialisers by name.
    pub initializers: HashMap<String, HostTensor>,
    pub inputs: Vec<InputDef>,
    pub outputs: Vec<String>,
    /// The opset of the standard domain.
    pub opset: i64,
}

impl NodeDef {
    /// Attribute `key` as an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attrs.get(key) {
            Some(Attr::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// Attribute `key` as a float (an integer attribute is read as one too).
    pub fn float(&self, key: &str) -> Option<f32> {
        match self.attrs.get(key) {
            Some(Attr::Float(f)) => Some(*f),
            Some(Attr::Int(i)) => Some(*i as f32),
            _ => None,
        }
    }

    /// Attribute `key` as a list of integers.
    pub fn ints(&self, key: &str) -> Option<&[i64]> {
        match self.attrs.get(key) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }

    /// Attribute `key` as a string.
    pub fn string(&self, key: &str) -> Option<&str> {
        match self.attrs.get(key) {
            Some(Attr::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The `i`-th input's name, `None` when absent or left out.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
}

/// Decodes `bytes`, the file at `path` (whose folder holds any external data files), after the
/// checks of [`super::precheck`]. Errors are reasons, without the file name.
pub fn read(path: &Path, bytes: &[u8]) -> Result<GraphDef, String> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| format!("not a readable ONNX model: {e}"))?;
    super::precheck::check_model(path, &model)?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1);
    let graph: &GraphProto = model
        .graph
        .as_ref()
        .ok_or("the file holds no graph (not an ONNX model?)")?;
    let base = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut initializers = HashMap::new();
    for t in &graph.initializer {
        let value = tensor(t, &base).map_err(|e| format!("initialiser `{}`: {e}", t.name))?;
        initializers.insert(t.name.clone(), value);
    }
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(&i.name))
        .map(input_def)
        .collect();
    let mut nodes = Vec::with_capacity(graph.node.len());
    for (i, n) in graph.node.iter().enumerate() {
        let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}::{}", n.domain, n.op_type)
        };
        let name = if n.name.is_empty() {
            format!("{} #{i}", n.op_type)
        } else {
            n.name.clone()
        };
        let mut attrs = HashMap::new();
        for a in &n.attribute {
            let value = attribute(a, &base).map_err(|e| format!("node `{name}`: attribute `{}`: {e}", a.name))?;
            attrs.insert(a.name.clone(), value);
        }
        nodes.push(NodeDef {
            name,
            op,
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attrs,
        });
    }
    Ok(GraphDef {
        nodes,
        initializers,
        inputs,
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        opset,
    })
}

fn input_def(v: &ValueInfoProto) -> InputDef {
    let (dims, elem_type) = match v.type_.as_ref() {
        Some(t) if t.has_tensor_type() => {
            let tt = t.tensor_type();
            let dims = tt.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.has_dim_value() && d.dim_value() > 0 {
                        true => Some(d.dim_value() as usize),
                        false => None,
                    })
                    .collect()
            });
            (dims, tt.elem_type)
        }
        _ => (None, 0),
    };
    InputDef {
        name: v.name.clone(),
        dims,
        elem_type,
    }
}

fn attribute(a: &AttributeProto, base: &Path) -> Result<Attr, String> {
    Ok(match a.type_.enum_value() {
        Ok(AttributeType::FLOAT) => Attr::Float(a.f),
        Ok(AttributeType::INT) => Attr::Int(a.i),
        Ok(AttributeType::STRING) => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
        Ok(AttributeType::TENSOR) => match a.t.as_ref() {
            Some(t) => Attr::Tensor(tensor(t, base)?),
            None => return Err("a tensor attribute without its tensor".into()),
        },
        Ok(AttributeType::FLOATS) => Attr::Floats(a.floats.clone()),
        Ok(AttributeType::INTS) => Attr::Ints(a.ints.clone()),
        _ => Attr::Other,
    })
}

/// The values of a tensor as 32-bit floats (float types) or 64-bit integers (integer and
/// boolean types).
pub fn tensor(t: &TensorProto, base: &Path) -> Result<HostTensor, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("a negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("a shape whose size overflows")?;
    let external;
    let raw: &[u8] = if !t.external_data.is_empty() {
        external = read_external(t, base)?;
        &external
    } else {
        &t.raw_data
    };
    let width = match t.data_type {
        1 | 6 | 12 => 4,
        7 | 11 | 13 => 8,
        2 | 3 | 9 => 1,
        4 | 5 | 10 | 16 => 2,
        other => return Err(format!("element type {other} (anu reads float and integer tensors)")),
    };
    let data = if !raw.is_empty() || count == 0 {
        if raw.len() != count * width {
            return Err(format!(
                "{} bytes of data for {count} values of {width} bytes (truncated?)",
                raw.len()
            ));
        }
        from_raw(t.data_type, raw)
    } else {
        let typed = match t.data_type {
            1 => HostData::F32(t.float_data.clone()),
            11 => HostData::F32(t.double_data.iter().map(|&v| v as f32).collect()),
            10 => HostData::F32(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect()),
            16 => HostData::F32(t.int32_data.iter().map(|&v| f32::from_bits((v as u32) << 16)).collect()),
            7 => HostData::I64(t.int64_data.clone()),
            12 | 13 => HostData::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
            _ => HostData::I64(t.int32_data.iter().map(|&v| v as i64).collect()),
        };
        if typed.len() != count {
            return Err(format!("{} values for shape {dims:?} (truncated?)", typed.len()));
        }
        typed
    };
    Ok(HostTensor { dims, data })
}

fn from_raw(data_type: i32, raw: &[u8]) -> HostData {
    fn le<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        raw.chunks_exact(N).map(|c| c.try_into().expect("chunk of N bytes"))
    }
    match data_type {
        1 => HostData::F32(le::<4>(raw).map(f32::from_le_bytes).collect()),
        11 => HostData::F32(le::<8>(raw).map(|b| f64::from_le_bytes(b) as f32).collect()),
        10 => HostData::F32(le::<2>(raw).map(|b| f16_to_f32(u16::from_le_bytes(b))).collect()),
        16 => HostData::F32(
            le::<2>(raw)
                .map(|b| f32::from_bits((u16::from_le_bytes(b) as u32) << 16))
                .collect(),
        ),
        6 => HostData::I64(le::<4>(raw).map(|b| i32::from_le_bytes(b) as i64).collect()),
        12 => HostData::I64(le::<4>(raw).map(|b| u32::from_le_bytes(b) as i64).collect()),
        7 | 13 => HostData::I64(le::<8>(raw).map(i64::from_le_bytes).collect()),
        5 => HostData::I64(le::<2>(raw).map(|b| i16::from_le_bytes(b) as i64).collect()),
        4 => HostData::I64(le::<2>(raw).map(|b| u16::from_le_bytes(b) as i64).collect()),
        3 => HostData::I64(raw.iter().map(|&b| b as i8 as i64).collect()),
        _ => HostData::I64(raw.iter().map(|&b| b as i64).collect()),
    }
}

/// An IEEE half-precision number as a float.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let magnitude = match (exp, frac) {
        (0, 0) => 0,
        (0, f) => {
            let v = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => 0x7f80_0000 | (f << 13),
        (e, f) => ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// The bytes of a tensor kept in an external data file beside the model (its location was
/// checked by [`super::precheck`]).
fn read_external(t: &TensorProto, base: &Path) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let value = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let location = value("location").ok_or("external data without a location")?;
    let number = |key: &str| -> Result<Option<u64>, String> {
        value(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {key} `{v}` is not a byte count"))
            })
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let file = base.join(location);
    let mut f = std::fs::File::open(&file).map_err(|e| format!("external data file `{}`: {e}", file.display()))?;
    let size = f.metadata().map_err(|e| format!("`{}`: {e}", file.display()))?.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    if offset.saturating_add(length) > size {
        return Err(format!(
            "external data file `{}` holds {size} bytes, fewer than offset {offset} + length {length} (truncated?)",
            file.display()
        ));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("`{}`: {e}", file.display()))?;
    let mut bytes = vec![0u8; length as usize];
    f.read_exact(&mut bytes)
        .map_err(|e| format!("`{}`: {e}", file.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_convert_exactly() {
        for (bits, value) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x0001, 2f32.powi(-24)),
            (0x7bff, 65504.0),
            (0x0000, 0.0),
        ] {
            assert_eq!(f16_to_f32(bits), value, "{bits:#x}");
        }
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
    }
}
