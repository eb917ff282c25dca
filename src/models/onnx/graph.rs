//! The operations of an ONNX graph that `anu` runs, compiled from the file's nodes
//! ([`super::proto`]) into a list of steps over numbered value slots. Weights are not kept
//! here: each step names them by their index in the model's parameter lists (see [`Weights`]).
//!
//! Work that does not depend on the images is done here, once:
//! - a node whose inputs are all constants is computed now ([`super::eval::host_apply`]) and
//!   becomes a constant (so a Transpose of a weight, a shape built from constants or a Pad
//!   whose sizes are constants need no step);
//! - batch norms that follow a convolution are folded into its kernel and bias, and constant
//!   Gemm and MatMul operands become linear layers;
//! - each step knows which values it reads for the last time (so that it gets them without
//!   another reference and burn can reuse their memory).
//!
//! Values computed from the shapes of tensors (Shape, then Gather, Concat, ... on it) are
//! integers held in host memory ("host" slots); steps on them run on the host each time the
//! graph runs, so a graph whose shapes follow its batch size runs on any batch.
//!
//! Every problem of a graph (operators `anu` does not run, nodes it cannot compile) is
//! collected and reported together, with nodes named as the file names them.

use std::collections::{HashMap, HashSet};

use burn::tensor::TensorData;

use super::host::{CastTo, HostData, HostTensor, Reduce};
use super::proto::{GraphDef, NodeDef};

/// The highest rank of a value (scalars are held as vectors of one element).
pub const MAX_RANK: usize = 6;

/// Where an operand comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// A value slot.
    Slot(usize),
    /// A float constant held as a model parameter: index into the model's constant list.
    Const(usize),
    /// A constant in host memory: index into [`Program::hosts`].
    Host(usize),
}

/// An element-wise function of one value.
#[derive(Clone, Copy, Debug)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Neg,
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    HardSwish,
    LeakyRelu {
        alpha: f64,
    },
    Clip {
        min: Option<f64>,
        max: Option<f64>,
    },
    Sqrt,
    Exp,
    Log,
    Erf,
    Reciprocal,
    Abs,
    /// GELU, exact or with the tanh approximation.
    Gelu {
        tanh: bool,
    },
    Softplus,
    /// Logical not of a 0/1 value.
    Not,
}

/// An element-wise function of two values, with ONNX broadcasting.
#[derive(Clone, Copy, Debug)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// Integer remainder with the divisor's sign (ONNX Mod with fmod = 0).
    Mod,
}

/// A comparison, giving 0 or 1.
#[derive(Clone, Copy, Debug)]
pub enum Compare {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

/// Padding of a convolution or a pool.
#[derive(Clone, Copy, Debug)]
pub enum Padding {
    /// `(begin, end)` per spatial dimension.
    Explicit([(usize, usize); 2]),
    /// ONNX `SAME_UPPER` (`upper: true`) or `SAME_LOWER`: computed from the input size.
    Same { upper: bool },
}

/// How [`Op::Pad`] fills.
#[derive(Clone, Copy, Debug)]
pub enum PadKind {
    Constant,
    Reflect,
    Edge,
}

/// One operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// 2-D convolution; `weight` indexes the 4-D kernels, `bias` the 1-D biases.
    Conv {
        x: usize,
        weight: usize,
        bias: Option<usize>,
        stride: [usize; 2],
        padding: Padding,
        dilation: [usize; 2],
        groups: usize,
    },
    /// `x W + b` over the last dimension; `weight` indexes the `[in, out]` matrices.
    Linear {
        x: usize,
        weight: usize,
        bias: Option<usize>,
    },
    /// ONNX Gemm in general form: `alpha op(A) op(B) + beta C`.
    Gemm {
        a: Operand,
        b: Operand,
        c: Option<Operand>,
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// Matrix product with batch broadcasting (both operands of rank 2 or more).
    MatMul {
        a: Operand,
        b: Operand,
    },
    /// `x * scale + shift` with per-channel constants `[C]` (a batch norm that could not be
    /// folded into a convolution), applied on axis 1.
    Affine {
        x: usize,
        scale: Operand,
        shift: Operand,
    },
    Unary {
        x: Operand,
        f: Unary,
    },
    Binary {
        a: Operand,
        b: Operand,
        f: Binary,
    },
    Compare {
        a: Operand,
        b: Operand,
        f: Compare,
    },
    /// `a` where `cond` is non-zero, else `b`.
    Where {
        cond: Operand,
        a: Operand,
        b: Operand,
    },
    MaxPool {
        x: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        dilation: [usize; 2],
        ceil: bool,
    },
    AvgPool {
        x: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        count_include_pad: bool,
        ceil: bool,
    },
    /// Mean over all dimensions after the first two, kept as size 1.
    GlobalAvgPool {
        x: usize,
    },
    /// A reduction over `axes` (all when absent or empty, unless `noop_empty`).
    Reduce {
        x: Operand,
        axes: Option<Operand>,
        keepdims: bool,
        noop_empty: bool,
        f: Reduce,
    },
    Flatten {
        x: Operand,
        axis: i64,
    },
    Reshape {
        x: Operand,
        shape: Operand,
        allow_zero: bool,
    },
    /// A permutation of the axes (reversed when absent).
    Transpose {
        x: Operand,
        perm: Option<Vec<usize>>,
    },
    Concat {
        inputs: Vec<Operand>,
        axis: i64,
    },
    /// Padding: `pads` in ONNX order (all begins, then all ends; of the `axes` when given).
    Pad {
        x: Operand,
        pads: Operand,
        value: Option<Operand>,
        axes: Option<Operand>,
        mode: PadKind,
    },
    Softmax {
        x: Operand,
        axis: i64,
        coerce_2d: bool,
    },
    LogSoftmax {
        x: Operand,
        axis: i64,
    },
    /// The dimensions of `x` from `start` to `end`, as integers.
    Shape {
        x: Operand,
        start: i64,
        end: Option<i64>,
    },
    /// The number of elements of `x`.
    Size {
        x: Operand,
    },
    Gather {
        x: Operand,
        indices: Operand,
        axis: i64,
    },
    Slice {
        x: Operand,
        starts: Operand,
        ends: Operand,
        axes: Option<Operand>,
        steps: Option<Operand>,
    },
    /// Part `index` of `parts` of ONNX Split (sizes from `split`, else equal parts).
    Split {
        x: Operand,
        axis: i64,
        split: Option<Operand>,
        parts: usize,
        index: usize,
    },
    Squeeze {
        x: Operand,
        axes: Option<Operand>,
    },
    Unsqueeze {
        x: Operand,
        axes: Operand,
    },
    Expand {
        x: Operand,
        shape: Operand,
    },
    Tile {
        x: Operand,
        repeats: Operand,
    },
    /// ONNX ScatterND without reduction: `x` with the slices at `indices` replaced by
    /// `updates` (on host values: the masks graphs build from shapes).
    ScatterNd {
        x: Operand,
        indices: Operand,
        updates: Operand,
    },
    /// A cast to float, an integer type or bool.
    Cast {
        x: Operand,
        to: CastTo,
    },
    ConstantOfShape {
        shape: Operand,
        value: HostTensor,
    },
    Range {
        start: Operand,
        limit: Operand,
        delta: Operand,
    },
    /// Layer normalisation over the axes from `axis` on.
    LayerNorm {
        x: Operand,
        scale: Operand,
        bias: Option<Operand>,
        axis: i64,
        eps: f32,
    },
}

impl Op {
    /// The operands, in order (with the slots of the first-input fields).
    pub fn operands(&self) -> Vec<Operand> {
        use Operand::Slot;
        let mut v = Vec::new();
        let opt = |o: &Option<Operand>, v: &mut Vec<Operand>| v.extend(o.iter().copied());
        match self {
            Op::Conv { x, .. }
            | Op::Linear { x, .. }
            | Op::MaxPool { x, .. }
            | Op::AvgPool { x, .. }
            | Op::GlobalAvgPool { x } => v.push(Slot(*x)),
            Op::Affine { x, scale, shift } => v.extend([Slot(*x), *scale, *shift]),
            Op::Gemm { a, b, c, .. } => {
                v.extend([*a, *b]);
                opt(c, &mut v);
            }
            Op::MatMul { a, b } | Op::Binary { a, b, .. } | Op::Compare { a, b, .. } => v.extend([*a, *b]),
            Op::Where { cond, a, b } => v.extend([*cond, *a, *b]),
            Op::Unary { x, .. }
            | Op::Flatten { x, .. }
            | Op::Transpose { x, .. }
            | Op::Softmax { x, .. }
            | Op::LogSoftmax { x, .. }
            | Op::Shape { x, .. }
            | Op::Size { x }
            | Op::Cast { x, .. } => v.push(*x),
            Op::Reduce { x, axes, .. } | Op::Squeeze { x, axes } => {
                v.push(*x);
                opt(axes, &mut v);
            }
            Op::Split { x, split, .. } => {
                v.push(*x);
                opt(split, &mut v);
            }
            Op::Reshape { x, shape, .. } | Op::Expand { x, shape } => v.extend([*x, *shape]),
            Op::Unsqueeze { x, axes } => v.extend([*x, *axes]),
            Op::Tile { x, repeats } => v.extend([*x, *repeats]),
            Op::ScatterNd { x, indices, updates } => v.extend([*x, *indices, *updates]),
            Op::Concat { inputs, .. } => v.extend(inputs),
            Op::Pad {
                x, pads, value, axes, ..
            } => {
                v.extend([*x, *pads]);
                opt(value, &mut v);
                opt(axes, &mut v);
            }
            Op::Gather { x, indices, .. } => v.extend([*x, *indices]),
            Op::Slice {
                x,
                starts,
                ends,
                axes,
                steps,
            } => {
                v.extend([*x, *starts, *ends]);
                opt(axes, &mut v);
                opt(steps, &mut v);
            }
            Op::ConstantOfShape { shape, .. } => v.push(*shape),
            Op::Range { start, limit, delta } => v.extend([*start, *limit, *delta]),
            Op::LayerNorm { x, scale, bias, .. } => {
                v.extend([*x, *scale]);
                opt(bias, &mut v);
            }
        }
        v
    }

    /// The slots the operation reads, in order (a slot read twice is listed twice).
    pub fn reads(&self) -> Vec<usize> {
        self.operands()
            .into_iter()
            .filter_map(|o| match o {
                Operand::Slot(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Whether [`super::eval::host_apply`] computes it on host tensors.
    pub fn runs_on_host(&self) -> bool {
        matches!(
            self,
            Op::Unary {
                f: Unary::Neg
                    | Unary::Sqrt
                    | Unary::Exp
                    | Unary::Log
                    | Unary::Reciprocal
                    | Unary::Abs
                    | Unary::Not
                    | Unary::Relu,
                ..
            } | Op::Binary { .. }
                | Op::Compare { .. }
                | Op::Where { .. }
                | Op::Reduce { .. }
                | Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Transpose { .. }
                | Op::Concat { .. }
                | Op::Shape { .. }
                | Op::Size { .. }
                | Op::Gather { .. }
                | Op::Slice { .. }
                | Op::Split { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::Expand { .. }
                | Op::Tile { .. }
                | Op::ScatterNd { .. }
                | Op::Cast { .. }
                | Op::ConstantOfShape { .. }
                | Op::Range { .. }
        )
    }
}

/// One operation with the slot it writes and the node it came from.
#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub out: usize,
    /// The ONNX node's name (for error messages).
    pub node: String,
    /// Whether the step runs on host values (integers computed from shapes).
    pub host: bool,
    /// Slots read once here and never again: the step moves their value out.
    pub take: Vec<usize>,
    /// Slots read more than once here and never again: emptied after the step.
    pub release: Vec<usize>,
}

/// The compiled graph: steps in order, the input and output slots.
#[derive(Clone, Debug)]
pub struct Program {
    pub steps: Vec<Step>,
    /// Number of value slots (slot 0 is the image input).
    pub slots: usize,
    /// Slot of the logits.
    pub output: usize,
    /// The input's declared shape (`None` for a dimension named rather than sized).
    pub input_shape: Vec<Option<usize>>,
    /// Whether a final Softmax was left out.
    pub stripped_softmax: bool,
    /// Constants in host memory (integers, and floats read as shapes or indices).
    pub hosts: Vec<HostTensor>,
    /// The ONNX opset of the file.
    pub opset: i64,
}

/// The constants a compiled graph needs as model parameters, as host data, by kind.
#[derive(Default)]
pub struct Weights {
    /// Convolution kernels `[out, in/groups, kh, kw]`.
    pub kernels: Vec<TensorData>,
    /// Linear weights `[in, out]`.
    pub matrices: Vec<TensorData>,
    /// Biases `[out]`.
    pub biases: Vec<TensorData>,
    /// Other float constants with their shape (rank 1 to [`MAX_RANK`]; a scalar as `[1]`).
    pub consts: Vec<(Vec<f32>, Vec<usize>)>,
}

/// Why a graph cannot be run.
#[derive(Debug)]
pub enum OnnxError {
    /// The file is not a graph `anu` can read (phrased).
    Read(String),
    /// Problems found while compiling: operators `anu` does not run
    /// (`(operator, first node, count)`) and nodes it cannot compile (phrased, with the node).
    Graph {
        unsupported: Vec<(String, String, usize)>,
        problems: Vec<String>,
    },
    /// The graph's inputs or outputs are not those of a classifier (phrased).
    Interface(String),
    /// The graph does not run on the images it declares (node and reason).
    Run { node: String, reason: String },
}

impl std::fmt::Display for OnnxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnnxError::Read(why) | OnnxError::Interface(why) => f.write_str(why),
            OnnxError::Run { node, reason } => write!(f, "node `{node}`: {reason}"),
            OnnxError::Graph { unsupported, problems } => {
                let mut parts = Vec::new();
                if !unsupported.is_empty() {
                    let list: Vec<String> = unsupported
                        .iter()
                        .map(|(op, node, n)| match n {
                            1 => format!("{op} (node `{node}`)"),
                            _ => format!("{op} (node `{node}` and {} more)", n - 1),
                        })
                        .collect();
                    parts.push(format!(
                        "the graph uses operators anu cannot run: {}; supported are {SUPPORTED}",
                        list.join(", ")
                    ));
                }
                if !problems.is_empty() {
                    const SHOWN: usize = 10;
                    let mut list: Vec<String> = problems.iter().take(SHOWN).cloned().collect();
                    if problems.len() > SHOWN {
                        list.push(format!("and {} more", problems.len() - SHOWN));
                    }
                    parts.push(format!(
                        "{} node(s) cannot be compiled: {}",
                        problems.len(),
                        list.join("; ")
                    ));
                }
                f.write_str(&parts.join(". "))
            }
        }
    }
}

impl std::error::Error for OnnxError {}

/// The operators [`Compiler::compile`] accepts, for error messages.
pub const SUPPORTED: &str = "Conv, Gemm, MatMul, BatchNormalization, LayerNormalization, Relu, Clip, \
Sigmoid, Tanh, Neg, HardSigmoid, HardSwish, LeakyRelu, Erf, Gelu, Sqrt, Exp, Log, Pow, Reciprocal, Abs, \
Softplus, Not, MaxPool, AveragePool, GlobalAveragePool, ReduceMean, ReduceSum, ReduceMax, ReduceMin, \
ReduceProd, Add, Sub, Mul, Div, Mod, Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Where, Flatten, \
Reshape, Transpose, Concat, Pad, Shape, Size, Gather, Slice, Split, Squeeze, Unsqueeze, Expand, Tile, \
ScatterND (on constants and shapes), \
ConstantOfShape, Range, Constant, Identity, Cast, Dropout, Softmax, LogSoftmax";

/// What a value name stands for while compiling.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// A slot; `host` when it holds host values.
    Slot { slot: usize, host: bool },
    /// A constant: index into the compiler's host tensors.
    Const(usize),
}

/// Where a node's operands are to come from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// All inputs are constants: computed now.
    Fold,
    /// All run-time inputs are host values: a host step.
    Host,
    /// A tensor step: float constants become model parameters.
    Tensor,
}

/// Turns a decoded graph into a [`Program`] and its [`Weights`].
pub struct Compiler {
    values: HashMap<String, Source>,
    next_slot: usize,
    steps: Vec<Step>,
    weights: Weights,
    hosts: Vec<HostTensor>,
    /// Model parameter made of each host constant, when one was.
    params: HashMap<usize, usize>,
    unsupported: Vec<(String, String, usize)>,
    problems: Vec<String>,
    /// How many node inputs (and graph outputs) read each value, by name.
    readers: HashMap<String, usize>,
    /// The name of the value the last step writes.
    last_output: Option<String>,
    opset: i64,
}

impl Compiler {
    /// Compiles `graph`, whose single (non-constant) input is the image batch.
    pub fn compile(graph: &GraphDef) -> Result<(Program, Weights), OnnxError> {
        let [input] = graph.inputs.as_slice() else {
            let names: Vec<&str> = graph.inputs.iter().map(|a| a.name.as_str()).collect();
            return Err(OnnxError::Interface(format!(
                "the graph must take one input (the images), but takes {} [{}]",
                graph.inputs.len(),
                names.join(", ")
            )));
        };
        let input_shape = match &input.dims {
            Some(d) if d.len() == 4 => d.clone(),
            None => vec![None; 4],
            Some(d) => {
                return Err(OnnxError::Interface(format!(
                    "the graph's input `{}` must be an image batch [N, C, H, W], but has {} dimensions",
                    input.name,
                    d.len()
                )));
            }
        };
        if input.elem_type != 1 && input.elem_type != 0 {
            return Err(OnnxError::Interface(format!(
                "the graph's input `{}` must be a float tensor, but has ONNX element type {}",
                input.name, input.elem_type
            )));
        }
        let [output] = graph.outputs.as_slice() else {
            return Err(OnnxError::Interface(format!(
                "the graph must give one output (the logits), but gives {}",
                graph.outputs.len()
            )));
        };
        let mut readers: HashMap<String, usize> = HashMap::new();
        for name in graph.nodes.iter().flat_map(|n| &n.inputs).chain(&graph.outputs) {
            *readers.entry(name.clone()).or_default() += 1;
        }
        let mut c = Compiler {
            values: HashMap::from([(input.name.clone(), Source::Slot { slot: 0, host: false })]),
            next_slot: 1,
            steps: Vec::new(),
            weights: Weights::default(),
            hosts: Vec::new(),
            params: HashMap::new(),
            unsupported: Vec::new(),
            problems: Vec::new(),
            readers,
            last_output: None,
            opset: graph.opset,
        };
        for (name, t) in &graph.initializers {
            let i = c.push_host(t.clone());
            c.values.insert(name.clone(), Source::Const(i));
        }
        let mut stripped_softmax = false;
        let mut skip = HashSet::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let final_softmax =
                matches!(node.op.as_str(), "Softmax" | "LogSoftmax") && node.outputs.first() == Some(output);
            if final_softmax && let Some(Source::Slot { .. }) = node.input(0).and_then(|n| c.values.get(n)) {
                // Attacks need logits: the graph's output is taken before its Softmax.
                let x = c.values[node.input(0).expect("checked")];
                c.values.insert(output.clone(), x);
                stripped_softmax = true;
                continue;
            }
            let next = graph.nodes.get(i + 1);
            match c.node(node, next) {
                Ok(true) => {
                    skip.insert(i + 1);
                }
                Ok(false) => {}
                Err(why) => {
                    c.problems.push(format!("node `{}` ({}): {why}", node.name, node.op));
                    c.opaque(node);
                }
            }
        }
        if !c.unsupported.is_empty() || !c.problems.is_empty() {
            return Err(OnnxError::Graph {
                unsupported: c.unsupported,
                problems: c.problems,
            });
        }
        let out = match c.values.get(output) {
            Some(Source::Slot { slot, host: false }) => *slot,
            _ => {
                return Err(OnnxError::Interface(format!(
                    "the graph's output `{output}` is not computed from its input"
                )));
            }
        };
        // Each step moves out the values it is the last to read.
        let mut read_later = HashSet::from([out]);
        for step in c.steps.iter_mut().rev() {
            let reads = step.op.reads();
            for &s in &reads {
                if read_later.insert(s) {
                    if reads.iter().filter(|&&r| r == s).count() == 1 {
                        step.take.push(s);
                    } else {
                        step.release.push(s);
                    }
                }
            }
        }
        let program = Program {
            steps: c.steps,
            slots: c.next_slot,
            output: out,
            input_shape,
            stripped_softmax,
            hosts: c.hosts,
            opset: c.opset,
        };
        Ok((program, c.weights))
    }

    fn push_host(&mut self, t: HostTensor) -> usize {
        self.hosts.push(t);
        self.hosts.len() - 1
    }

    /// Gives the outputs of a node that cannot be compiled slots of their own, so that the
    /// rest of the graph is still checked and every problem is reported at once.
    fn opaque(&mut self, node: &NodeDef) {
        for o in &node.outputs {
            self.values.insert(
                o.clone(),
                Source::Slot {
                    slot: self.next_slot,
                    host: false,
                },
            );
            self.next_slot += 1;
        }
    }

    fn note_unsupported(&mut self, node: &NodeDef) {
        self.opaque(node);
        match self.unsupported.iter_mut().find(|(o, _, _)| *o == node.op) {
            Some(entry) => entry.2 += 1,
            None => self.unsupported.push((node.op.clone(), node.name.clone(), 1)),
        }
    }

    fn source(&self, name: &str) -> Result<Source, String> {
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| format!("its input `{name}` is neither computed before it nor a constant"))
    }

    /// The constant named `name`, if it is one.
    fn constant(&self, name: Option<&str>) -> Option<&HostTensor> {
        match self.values.get(name?)? {
            Source::Const(i) => Some(&self.hosts[*i]),
            _ => None,
        }
    }

    /// A required constant input.
    fn required_constant(&self, node: &NodeDef, i: usize, what: &str) -> Result<HostTensor, String> {
        let name = node.input(i).ok_or_else(|| format!("no {what}"))?;
        self.constant(Some(name))
            .cloned()
            .ok_or_else(|| format!("the {what} `{name}` must be a constant of the graph"))
    }

    /// A float constant as a model parameter (made once per constant).
    fn param(&mut self, host: usize) -> Operand {
        if let Some(&p) = self.params.get(&host) {
            return Operand::Const(p);
        }
        let t = &self.hosts[host];
        let shape = if t.dims.is_empty() { vec![1] } else { t.dims.clone() };
        self.weights.consts.push((t.to_f32(), shape));
        let p = self.weights.consts.len() - 1;
        self.params.insert(host, p);
        Operand::Const(p)
    }

    /// Operand `i` of `node` read as data: in a tensor step a float constant is a model
    /// parameter, elsewhere a host constant.
    fn data(&mut self, node: &NodeDef, i: usize, mode: Mode) -> Result<Operand, String> {
        let name = node.input(i).ok_or_else(|| format!("input {i} is missing"))?;
        Ok(match self.source(name)? {
            Source::Slot { slot, .. } => Operand::Slot(slot),
            Source::Const(h) => match (mode, &self.hosts[h].data) {
                (Mode::Tensor, HostData::F32(_)) => self.param(h),
                _ => Operand::Host(h),
            },
        })
    }

    /// Operand `i` read as integers (a shape, indices or axes): a host constant or a slot.
    fn ints(&mut self, node: &NodeDef, i: usize) -> Result<Operand, String> {
        let name = node.input(i).ok_or_else(|| format!("input {i} is missing"))?;
        Ok(match self.source(name)? {
            Source::Slot { slot, .. } => Operand::Slot(slot),
            Source::Const(h) => Operand::Host(h),
        })
    }

    /// Optional operand `i` read as integers.
    fn opt_ints(&mut self, node: &NodeDef, i: usize) -> Result<Option<Operand>, String> {
        match node.input(i) {
            Some(_) => self.ints(node, i).map(Some),
            None => Ok(None),
        }
    }

    /// An attribute list of integers as a host constant.
    fn attr_ints(&mut self, node: &NodeDef, key: &str) -> Option<Operand> {
        let v = node.ints(key)?.to_vec();
        Some(Operand::Host(self.push_host(HostTensor::ints(vec![v.len()], v))))
    }

    /// Axes given as an input from `since_opset` on, else as the `axes` attribute.
    fn axes(&mut self, node: &NodeDef, input: usize, since_opset: i64) -> Result<Option<Operand>, String> {
        match self.opset >= since_opset {
            true => self.opt_ints(node, input),
            false => Ok(self.attr_ints(node, "axes")),
        }
    }

    fn push(&mut self, node: &NodeDef, output: usize, op: Op, host: bool) {
        let out = self.next_slot;
        self.next_slot += 1;
        let out_host = host
            || matches!(
                op,
                Op::Shape { .. }
                    | Op::Size { .. }
                    | Op::Cast {
                        to: CastTo::Int | CastTo::Bool,
                        ..
                    }
            );
        if let Some(o) = node.outputs.get(output) {
            self.values.insert(
                o.clone(),
                Source::Slot {
                    slot: out,
                    host: out_host,
                },
            );
            self.last_output = Some(o.clone());
        }
        self.steps.push(Step {
            op,
            out,
            node: node.name.clone(),
            host,
            take: Vec::new(),
            release: Vec::new(),
        });
    }

    /// Makes output 0 of `node` another name for its input 0.
    fn alias(&mut self, node: &NodeDef) -> Result<(), String> {
        let src = self.source(node.input(0).ok_or("no input")?)?;
        if let Some(o) = node.outputs.first() {
            self.values.insert(o.clone(), src);
        }
        Ok(())
    }

    /// Folds `x * scale + shift` (per channel) into the convolution that the last step is,
    /// when it writes `input` and nothing else reads it. Returns whether it did.
    fn fold_into_conv(&mut self, input: &str, scale: &[f32], shift: &[f32]) -> bool {
        if self.readers.get(input) != Some(&1) || self.last_output.as_deref() != Some(input) {
            return false;
        }
        let Some(Step {
            op: Op::Conv { weight, bias, .. },
            ..
        }) = self.steps.last_mut()
        else {
            return false;
        };
        let kernel = &self.weights.kernels[*weight];
        let shape = kernel.shape().to_vec();
        let old_bias = match bias {
            Some(b) => self.weights.biases[*b].try_to_vec::<f32>().ok(),
            None => Some(vec![0.0; scale.len()]),
        };
        let (Ok(mut values), Some(old_bias)) = (kernel.try_to_vec::<f32>(), old_bias) else {
            return false;
        };
        if shape.first() != Some(&scale.len()) || old_bias.len() != scale.len() || values.is_empty() {
            return false;
        }
        let per_channel = values.len() / scale.len();
        for (chunk, s) in values.chunks_mut(per_channel).zip(scale) {
            chunk.iter_mut().for_each(|v| *v *= s);
        }
        self.weights.kernels[*weight] = TensorData::new(values, shape);
        let folded: Vec<f32> = old_bias
            .iter()
            .zip(scale)
            .zip(shift)
            .map(|((b, s), t)| b * s + t)
            .collect();
        let folded = TensorData::new(folded, [scale.len()]);
        match bias {
            Some(b) => self.weights.biases[*b] = folded,
            None => {
                self.weights.biases.push(folded);
                *bias = Some(self.weights.biases.len() - 1);
            }
        }
        true
    }

    /// The slot of input 0, which must be a tensor computed at run time.
    fn tensor_input(&self, node: &NodeDef) -> Result<usize, String> {
        let name = node.input(0).ok_or("no input")?;
        match self.source(name)? {
            Source::Slot { slot, host: false } => Ok(slot),
            _ => Err(format!(
                "its input `{name}` is a constant or a shape, not a tensor computed from the images"
            )),
        }
    }

    fn bias(&mut self, node: &NodeDef, i: usize) -> Result<Option<usize>, String> {
        match node.input(i) {
            Some(_) => {
                let b = self.required_constant(node, i, "bias")?;
                let n = b.len();
                self.weights.biases.push(TensorData::new(b.to_f32(), [n]));
                Ok(Some(self.weights.biases.len() - 1))
            }
            None => Ok(None),
        }
    }

    /// Compiles one node (`next` is the node after it). Returns whether `next` was fused into
    /// it (a MatMul's bias).
    fn node(&mut self, node: &NodeDef, next: Option<&NodeDef>) -> Result<bool, String> {
        let sources: Vec<Source> = node
            .inputs
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| self.source(n))
            .collect::<Result<_, _>>()?;
        let mode = if sources.iter().all(|s| matches!(s, Source::Const(_))) {
            Mode::Fold
        } else if sources.iter().all(|s| !matches!(s, Source::Slot { host: false, .. })) {
            Mode::Host
        } else {
            Mode::Tensor
        };
        match node.op.as_str() {
            "Constant" => {
                let value = constant_node(node)?;
                let i = self.push_host(value);
                if let Some(o) = node.outputs.first() {
                    self.values.insert(o.clone(), Source::Const(i));
                }
                return Ok(false);
            }
            "Identity" | "Dropout" => return self.alias(node).map(|_| false),
            "Conv" => return self.conv(node).map(|_| false),
            "BatchNormalization" => return self.batch_norm(node).map(|_| false),
            "MaxPool" | "AveragePool" => return self.pool(node).map(|_| false),
            "GlobalAveragePool" => {
                let x = self.tensor_input(node)?;
                self.push(node, 0, Op::GlobalAvgPool { x }, false);
                return Ok(false);
            }
            "Gemm" if mode == Mode::Tensor => return self.gemm(node).map(|_| false),
            "MatMul" if mode == Mode::Tensor => return self.matmul(node, next),
            "Split" => {
                let parts = node.outputs.len();
                for index in 0..parts {
                    let split = match self.opset >= 13 {
                        true => self.opt_ints(node, 1)?,
                        false => self.attr_ints(node, "split"),
                    };
                    let op = Op::Split {
                        x: self.data(node, 0, mode)?,
                        axis: node.int("axis").unwrap_or(0),
                        split,
                        parts,
                        index,
                    };
                    self.emit(node, index, op, mode)?;
                }
                return Ok(false);
            }
            _ => {}
        }
        let Some(op) = self.op(node, mode)? else {
            self.note_unsupported(node);
            return Ok(false);
        };
        self.emit(node, 0, op, mode)?;
        Ok(false)
    }

    /// Folds, or adds as a host or tensor step, the operation `op` that gives output `output`.
    fn emit(&mut self, node: &NodeDef, output: usize, op: Op, mode: Mode) -> Result<(), String> {
        match mode {
            Mode::Fold if op.runs_on_host() => {
                let value = super::eval::host_apply(&op, &self.hosts)?;
                let i = self.push_host(value);
                if let Some(o) = node.outputs.get(output) {
                    self.values.insert(o.clone(), Source::Const(i));
                }
            }
            Mode::Fold | Mode::Tensor => {
                // Float constants of a tensor step are model parameters.
                let op = match mode {
                    Mode::Fold => self.op(node, Mode::Tensor)?.unwrap_or(op),
                    _ => op,
                };
                self.push(node, output, op, false);
            }
            Mode::Host if op.runs_on_host() => self.push(node, output, op, true),
            Mode::Host => {
                let op = self.op(node, Mode::Tensor)?.unwrap_or(op);
                self.push(node, output, op, false);
            }
        }
        Ok(())
    }

    /// The operation of a node of the generic kinds, `None` for an operator `anu` does not run.
    fn op(&mut self, node: &NodeDef, mode: Mode) -> Result<Option<Op>, String> {
        let unary = |c: &mut Self, f: Unary| -> Result<Option<Op>, String> {
            Ok(Some(Op::Unary {
                x: c.data(node, 0, mode)?,
                f,
            }))
        };
        let binary = |c: &mut Self, f: Binary| -> Result<Option<Op>, String> {
            Ok(Some(Op::Binary {
                a: c.data(node, 0, mode)?,
                b: c.data(node, 1, mode)?,
                f,
            }))
        };
        let compare = |c: &mut Self, f: Compare| -> Result<Option<Op>, String> {
            Ok(Some(Op::Compare {
                a: c.data(node, 0, mode)?,
                b: c.data(node, 1, mode)?,
                f,
            }))
        };
        let reduce = |c: &mut Self, f: Reduce, axes_input_since: i64| -> Result<Option<Op>, String> {
            Ok(Some(Op::Reduce {
                x: c.data(node, 0, mode)?,
                axes: c.axes(node, 1, axes_input_since)?,
                keepdims: node.int("keepdims").unwrap_or(1) != 0,
                noop_empty: node.int("noop_with_empty_axes").unwrap_or(0) != 0,
                f,
            }))
        };
        Ok(Some(match node.op.as_str() {
            "Relu" => return unary(self, Unary::Relu),
            "Sigmoid" => return unary(self, Unary::Sigmoid),
            "Tanh" => return unary(self, Unary::Tanh),
            "Neg" => return unary(self, Unary::Neg),
            "HardSwish" => return unary(self, Unary::HardSwish),
            "HardSigmoid" => {
                let f = Unary::HardSigmoid {
                    alpha: node.float("alpha").unwrap_or(0.2) as f64,
                    beta: node.float("beta").unwrap_or(0.5) as f64,
                };
                return unary(self, f);
            }
            "LeakyRelu" => {
                let f = Unary::LeakyRelu {
                    alpha: node.float("alpha").unwrap_or(0.01) as f64,
                };
                return unary(self, f);
            }
            "Sqrt" => return unary(self, Unary::Sqrt),
            "Exp" => return unary(self, Unary::Exp),
            "Log" => return unary(self, Unary::Log),
            "Erf" => return unary(self, Unary::Erf),
            "Reciprocal" => return unary(self, Unary::Reciprocal),
            "Abs" => return unary(self, Unary::Abs),
            "Softplus" => return unary(self, Unary::Softplus),
            "Not" => return unary(self, Unary::Not),
            "Gelu" => {
                let tanh = match node.string("approximate").unwrap_or("none") {
                    "none" => false,
                    "tanh" => true,
                    other => return Err(format!("Gelu with approximate = `{other}`")),
                };
                return unary(self, Unary::Gelu { tanh });
            }
            "Clip" => {
                let bound = |c: &Self, i: usize, key: &str| -> Result<Option<f64>, String> {
                    if c.opset < 11 {
                        return Ok(node.float(key).map(|v| v as f64));
                    }
                    match node.input(i) {
                        None => Ok(None),
                        Some(name) => match c.constant(Some(name)) {
                            Some(t) if t.len() == 1 => Ok(Some(t.to_f32()[0] as f64)),
                            _ => Err("Clip with bounds computed at run time".to_string()),
                        },
                    }
                };
                let f = Unary::Clip {
                    min: bound(self, 1, "min")?,
                    max: bound(self, 2, "max")?,
                };
                return unary(self, f);
            }
            "Add" => return binary(self, Binary::Add),
            "Sub" => return binary(self, Binary::Sub),
            "Mul" => return binary(self, Binary::Mul),
            "Div" => return binary(self, Binary::Div),
            "Pow" => return binary(self, Binary::Pow),
            "Mod" => {
                if node.int("fmod").unwrap_or(0) != 0 {
                    return Ok(None);
                }
                return binary(self, Binary::Mod);
            }
            "Equal" => return compare(self, Compare::Equal),
            "Less" => return compare(self, Compare::Less),
            "Greater" => return compare(self, Compare::Greater),
            "LessOrEqual" => return compare(self, Compare::LessOrEqual),
            "GreaterOrEqual" => return compare(self, Compare::GreaterOrEqual),
            "Where" => Op::Where {
                cond: self.data(node, 0, mode)?,
                a: self.data(node, 1, mode)?,
                b: self.data(node, 2, mode)?,
            },
            "ReduceMean" => return reduce(self, Reduce::Mean, 18),
            "ReduceSum" => return reduce(self, Reduce::Sum, 13),
            "ReduceMax" => return reduce(self, Reduce::Max, 18),
            "ReduceMin" => return reduce(self, Reduce::Min, 18),
            "ReduceProd" => return reduce(self, Reduce::Prod, 18),
            "Flatten" => Op::Flatten {
                x: self.data(node, 0, mode)?,
                axis: node.int("axis").unwrap_or(1),
            },
            "Reshape" => {
                let shape = match self.opset >= 5 {
                    true => self.ints(node, 1)?,
                    false => self.attr_ints(node, "shape").ok_or("Reshape without a shape")?,
                };
                Op::Reshape {
                    x: self.data(node, 0, mode)?,
                    shape,
                    allow_zero: node.int("allowzero").unwrap_or(0) != 0,
                }
            }
            "Transpose" => Op::Transpose {
                x: self.data(node, 0, mode)?,
                perm: node
                    .ints("perm")
                    .map(|p| {
                        p.iter()
                            .map(|&v| usize::try_from(v).map_err(|_| format!("a permutation {p:?}")))
                            .collect()
                    })
                    .transpose()?,
            },
            "Concat" => Op::Concat {
                inputs: (0..node.inputs.len())
                    .filter(|&i| node.input(i).is_some())
                    .map(|i| self.data(node, i, mode))
                    .collect::<Result<_, _>>()?,
                axis: node.int("axis").ok_or("Concat without an axis")?,
            },
            "Pad" => {
                let mode_kind = match node.string("mode").unwrap_or("constant") {
                    "constant" => PadKind::Constant,
                    "reflect" => PadKind::Reflect,
                    "edge" => PadKind::Edge,
                    other => return Err(format!("Pad mode `{other}`")),
                };
                let (pads, value, axes) = if self.opset >= 11 {
                    (self.ints(node, 1)?, self.opt_ints(node, 2)?, self.opt_ints(node, 3)?)
                } else {
                    let pads = self
                        .attr_ints(node, "pads")
                        .or_else(|| self.attr_ints(node, "paddings"))
                        .ok_or("Pad without pads")?;
                    let v = node.float("value").unwrap_or(0.0);
                    let value = Operand::Host(self.push_host(HostTensor::floats(vec![], vec![v])));
                    (pads, Some(value), None)
                };
                Op::Pad {
                    x: self.data(node, 0, mode)?,
                    pads,
                    value,
                    axes,
                    mode: mode_kind,
                }
            }
            "Softmax" => Op::Softmax {
                x: self.data(node, 0, mode)?,
                axis: node.int("axis").unwrap_or(if self.opset >= 13 { -1 } else { 1 }),
                coerce_2d: self.opset < 13,
            },
            "LogSoftmax" if self.opset >= 13 || node.int("axis") == Some(-1) => Op::LogSoftmax {
                x: self.data(node, 0, mode)?,
                axis: node.int("axis").unwrap_or(-1),
            },
            "Shape" => Op::Shape {
                x: self.data(node, 0, Mode::Host)?,
                start: node.int("start").unwrap_or(0),
                end: node.int("end"),
            },
            "Size" => Op::Size {
                x: self.data(node, 0, Mode::Host)?,
            },
            "Gather" => Op::Gather {
                x: self.data(node, 0, mode)?,
                indices: self.ints(node, 1)?,
                axis: node.int("axis").unwrap_or(0),
            },
            "Slice" => {
                if self.opset >= 10 {
                    Op::Slice {
                        x: self.data(node, 0, mode)?,
                        starts: self.ints(node, 1)?,
                        ends: self.ints(node, 2)?,
                        axes: self.opt_ints(node, 3)?,
                        steps: self.opt_ints(node, 4)?,
                    }
                } else {
                    Op::Slice {
                        x: self.data(node, 0, mode)?,
                        starts: self.attr_ints(node, "starts").ok_or("Slice without starts")?,
                        ends: self.attr_ints(node, "ends").ok_or("Slice without ends")?,
                        axes: self.attr_ints(node, "axes"),
                        steps: None,
                    }
                }
            }
            "Squeeze" => Op::Squeeze {
                x: self.data(node, 0, mode)?,
                axes: self.axes(node, 1, 13)?,
            },
            "Unsqueeze" => Op::Unsqueeze {
                x: self.data(node, 0, mode)?,
                axes: self.axes(node, 1, 13)?.ok_or("Unsqueeze without axes")?,
            },
            "Expand" => Op::Expand {
                x: self.data(node, 0, mode)?,
                shape: self.ints(node, 1)?,
            },
            "ScatterND" if node.string("reduction").unwrap_or("none") == "none" => Op::ScatterNd {
                x: self.data(node, 0, mode)?,
                indices: self.ints(node, 1)?,
                updates: self.data(node, 2, mode)?,
            },
            "Tile" => Op::Tile {
                x: self.data(node, 0, mode)?,
                repeats: self.ints(node, 1)?,
            },
            "Cast" => {
                let to = node.int("to").ok_or("Cast without `to`")?;
                let to = match to {
                    1 | 10 | 11 | 16 => CastTo::Float,
                    9 => CastTo::Bool,
                    2..=7 | 12 | 13 => CastTo::Int,
                    other => return Err(format!("Cast to ONNX element type {other}")),
                };
                Op::Cast {
                    x: self.data(node, 0, mode)?,
                    to,
                }
            }
            "ConstantOfShape" => Op::ConstantOfShape {
                shape: self.ints(node, 0)?,
                value: match node.attrs.get("value") {
                    Some(super::proto::Attr::Tensor(t)) => t.clone(),
                    _ => HostTensor::floats(vec![1], vec![0.0]),
                },
            },
            "Range" => Op::Range {
                start: self.data(node, 0, Mode::Host)?,
                limit: self.data(node, 1, Mode::Host)?,
                delta: self.data(node, 2, Mode::Host)?,
            },
            "LayerNormalization" => Op::LayerNorm {
                x: self.data(node, 0, mode)?,
                scale: self.data(node, 1, mode)?,
                bias: match node.input(2) {
                    Some(_) => Some(self.data(node, 2, mode)?),
                    None => None,
                },
                axis: node.int("axis").unwrap_or(-1),
                eps: node.float("epsilon").unwrap_or(1e-5),
            },
            _ => return Ok(None),
        }))
    }

    fn conv(&mut self, node: &NodeDef) -> Result<(), String> {
        let kernel = self.required_constant(node, 1, "convolution kernel")?;
        if kernel.dims.len() != 4 {
            return Err(format!(
                "a convolution with a kernel of shape {:?} (anu runs 2-D convolutions)",
                kernel.dims
            ));
        }
        let x = self.tensor_input(node)?;
        let pair = |key: &str| -> Result<[usize; 2], String> {
            match node.ints(key) {
                None => Ok([1, 1]),
                Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
                Some(v) => Err(format!("{key} {v:?}")),
            }
        };
        let (stride, dilation) = (pair("strides")?, pair("dilations")?);
        let padding = padding(node)?;
        self.weights
            .kernels
            .push(TensorData::new(kernel.to_f32(), kernel.dims.clone()));
        let weight = self.weights.kernels.len() - 1;
        let bias = self.bias(node, 2)?;
        let groups = node.int("group").unwrap_or(1);
        if groups < 1 {
            return Err(format!("{groups} groups"));
        }
        let op = Op::Conv {
            x,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups: groups as usize,
        };
        self.push(node, 0, op, false);
        Ok(())
    }

    fn pool(&mut self, node: &NodeDef) -> Result<(), String> {
        let x = self.tensor_input(node)?;
        let pair = |key: &str, default: [usize; 2]| -> Result<[usize; 2], String> {
            match node.ints(key) {
                None => Ok(default),
                Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
                Some(v) => Err(format!("{key} {v:?} (anu runs 2-D pooling)")),
            }
        };
        let kernel = pair("kernel_shape", [0, 0])?;
        if kernel == [0, 0] {
            return Err("pooling without kernel_shape".into());
        }
        let (stride, dilation) = (pair("strides", [1, 1])?, pair("dilations", [1, 1])?);
        let padding = padding(node)?;
        let ceil = node.int("ceil_mode").unwrap_or(0) != 0;
        let op = if node.op == "MaxPool" {
            if node.outputs.len() > 1 {
                return Err("MaxPool with an indices output".into());
            }
            Op::MaxPool {
                x,
                kernel,
                stride,
                padding,
                dilation,
                ceil,
            }
        } else {
            if dilation != [1, 1] {
                return Err("dilated average pooling is not supported".into());
            }
            Op::AvgPool {
                x,
                kernel,
                stride,
                padding,
                count_include_pad: node.int("count_include_pad").unwrap_or(0) != 0,
                ceil,
            }
        };
        self.push(node, 0, op, false);
        Ok(())
    }

    fn batch_norm(&mut self, node: &NodeDef) -> Result<(), String> {
        let eps = node.float("epsilon").unwrap_or(1e-5) as f64;
        let get = |c: &Self, i: usize, what: &str| c.required_constant(node, i, what).map(|t| t.to_f32());
        let (gamma, beta, mean, var) = (
            get(self, 1, "scale")?,
            get(self, 2, "bias")?,
            get(self, 3, "mean")?,
            get(self, 4, "variance")?,
        );
        let channels = gamma.len();
        if [beta.len(), mean.len(), var.len()].iter().any(|&l| l != channels) {
            return Err("batch norm statistics of different lengths".into());
        }
        if node.outputs.len() > 1 {
            return Err("a batch norm in training mode (with running statistics outputs)".into());
        }
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| (*g as f64 / (*v as f64 + eps).sqrt()) as f32)
            .collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        let x = self.tensor_input(node)?;
        let input = node.input(0).expect("checked by tensor_input").to_string();
        if self.fold_into_conv(&input, &scale, &shift) {
            return self.alias(node);
        }
        let scale = self.push_host(HostTensor::floats(vec![channels], scale));
        let shift = self.push_host(HostTensor::floats(vec![channels], shift));
        let op = Op::Affine {
            x,
            scale: self.param(scale),
            shift: self.param(shift),
        };
        self.push(node, 0, op, false);
        Ok(())
    }

    /// A constant `[rows, cols]` matrix's values, transposed when `transpose`.
    fn matrix(t: &HostTensor, transpose: bool) -> Result<TensorData, String> {
        let [rows, cols] = t.dims[..] else {
            return Err(format!("a weight of shape {:?}", t.dims));
        };
        Ok(match transpose {
            true => TensorData::new(transpose2(&t.to_f32(), rows, cols), [cols, rows]),
            false => TensorData::new(t.to_f32(), [rows, cols]),
        })
    }

    fn gemm(&mut self, node: &NodeDef) -> Result<(), String> {
        let (alpha, beta) = (node.float("alpha").unwrap_or(1.0), node.float("beta").unwrap_or(1.0));
        let (trans_a, trans_b) = (
            node.int("transA").unwrap_or(0) != 0,
            node.int("transB").unwrap_or(0) != 0,
        );
        let a_slot = match node.input(0).map(|n| self.source(n)) {
            Some(Ok(Source::Slot { slot, host: false })) => Some(slot),
            _ => None,
        };
        let b = self.constant(node.input(1)).cloned();
        let c = self.constant(node.input(2)).cloned();
        // x B + c with a constant B and a vector (or no) c: a linear layer.
        if let (Some(x), Some(b), false, 1.0, 1.0) = (a_slot, &b, trans_a, alpha, beta)
            && b.dims.len() == 2
        {
            let out = if trans_b { b.dims[0] } else { b.dims[1] };
            let bias_fits = match (&c, node.input(2)) {
                (_, None) => true,
                (Some(c), _) => c.dims.len() == 1 && c.dims[0] == out,
                (None, Some(_)) => false,
            };
            if bias_fits {
                self.weights.matrices.push(Self::matrix(b, trans_b)?);
                let weight = self.weights.matrices.len() - 1;
                let bias = self.bias(node, 2)?;
                self.push(node, 0, Op::Linear { x, weight, bias }, false);
                return Ok(());
            }
        }
        // General form: constants are transposed and scaled here.
        let (mut trans_a, mut trans_b, mut alpha, mut beta) = (trans_a, trans_b, alpha, beta);
        let operand = |c: &mut Self, i: usize, transpose: &mut bool, scale: &mut f32| -> Result<Operand, String> {
            match c.constant(node.input(i)).cloned() {
                None => c.data(node, i, Mode::Tensor),
                Some(mut t) => {
                    if *transpose {
                        let [rows, cols] = t.dims[..] else {
                            return Err(format!("Gemm of a constant of shape {:?}", t.dims));
                        };
                        t = HostTensor::floats(vec![cols, rows], transpose2(&t.to_f32(), rows, cols));
                        *transpose = false;
                    }
                    if *scale != 1.0 {
                        let s = *scale;
                        t = t.map_f32(|v| v * s);
                        *scale = 1.0;
                    }
                    let h = c.push_host(t.cast(CastTo::Float));
                    Ok(c.param(h))
                }
            }
        };
        let a = operand(self, 0, &mut trans_a, &mut 1.0)?;
        let b = operand(self, 1, &mut trans_b, &mut alpha)?;
        let c = match node.input(2) {
            Some(_) => Some(operand(self, 2, &mut false, &mut beta)?),
            None => None,
        };
        let op = Op::Gemm {
            a,
            b,
            c,
            alpha,
            beta,
            trans_a,
            trans_b,
        };
        self.push(node, 0, op, false);
        Ok(())
    }

    /// MatMul; by a constant matrix, a linear layer that takes the bias of an Add right after
    /// it. Returns whether that Add (`next`) was fused.
    fn matmul(&mut self, node: &NodeDef, next: Option<&NodeDef>) -> Result<bool, String> {
        let a_slot = match node.input(0).map(|n| self.source(n)) {
            Some(Ok(Source::Slot { slot, host: false })) => Some(slot),
            _ => None,
        };
        let b = self.constant(node.input(1)).cloned();
        if let (Some(x), Some(b)) = (a_slot, &b)
            && b.dims.len() == 2
        {
            self.weights.matrices.push(Self::matrix(b, false)?);
            let weight = self.weights.matrices.len() - 1;
            let out = &node.outputs[0];
            let bias_add = next.filter(|n| {
                n.op == "Add" && n.inputs.len() == 2 && self.readers.get(out) == Some(&1) && n.inputs.contains(out)
            });
            let bias = bias_add.and_then(|n| {
                let other = n.inputs.iter().find(|i| *i != out)?;
                let c = self.constant(Some(other))?;
                (c.dims == [b.dims[1]]).then(|| c.to_f32())
            });
            let fused = match (bias_add, bias) {
                (Some(add), Some(values)) => {
                    let n = values.len();
                    self.weights.biases.push(TensorData::new(values, [n]));
                    let bias = Some(self.weights.biases.len() - 1);
                    self.push(add, 0, Op::Linear { x, weight, bias }, false);
                    true
                }
                _ => {
                    self.push(node, 0, Op::Linear { x, weight, bias: None }, false);
                    false
                }
            };
            return Ok(fused);
        }
        let op = Op::MatMul {
            a: self.data(node, 0, Mode::Tensor)?,
            b: self.data(node, 1, Mode::Tensor)?,
        };
        self.push(node, 0, op, false);
        Ok(false)
    }
}

/// The value of a Constant node.
fn constant_node(node: &NodeDef) -> Result<HostTensor, String> {
    use super::proto::Attr;
    match node.attrs.iter().next() {
        Some((_, Attr::Tensor(t))) => Ok(t.clone()),
        Some((k, Attr::Float(f))) if k == "value_float" => Ok(HostTensor::floats(vec![], vec![*f])),
        Some((k, Attr::Floats(v))) if k == "value_floats" => Ok(HostTensor::floats(vec![v.len()], v.clone())),
        Some((k, Attr::Int(i))) if k == "value_int" => Ok(HostTensor::ints(vec![], vec![*i])),
        Some((k, Attr::Ints(v))) if k == "value_ints" => Ok(HostTensor::ints(vec![v.len()], v.clone())),
        Some((k, _)) => Err(format!(
            "a Constant given as `{k}` (anu reads tensors, floats and integers)"
        )),
        None => Err("a Constant without a value".into()),
    }
}

/// The padding of a convolution or pool node.
fn padding(node: &NodeDef) -> Result<Padding, String> {
    match node.string("auto_pad").unwrap_or("NOTSET") {
        "SAME_UPPER" => return Ok(Padding::Same { upper: true }),
        "SAME_LOWER" => return Ok(Padding::Same { upper: false }),
        "VALID" => return Ok(Padding::Explicit([(0, 0); 2])),
        "NOTSET" | "" => {}
        other => return Err(format!("auto_pad `{other}`")),
    }
    match node.ints("pads") {
        None => Ok(Padding::Explicit([(0, 0); 2])),
        Some(&[t, l, b, r]) if [t, l, b, r].iter().all(|&p| p >= 0) => {
            Ok(Padding::Explicit([(t as usize, b as usize), (l as usize, r as usize)]))
        }
        Some(p) => Err(format!("pads {p:?}")),
    }
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix.
fn transpose2(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(fixture: &str) -> Program {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/onnx")
            .join(fixture);
        let bytes = std::fs::read(&path).unwrap();
        let graph = super::super::proto::read(&path, &bytes).unwrap();
        Compiler::compile(&graph).unwrap().0
    }

    fn batch_norms(program: &Program) -> usize {
        program
            .steps
            .iter()
            .filter(|s| matches!(s.op, Op::Affine { .. }))
            .count()
    }

    #[test]
    fn batch_norms_after_a_convolution_are_folded_into_it() {
        assert_eq!(batch_norms(&compile("resnet.onnx")), 0);
        // After a ReLU, on a value an Add reads too, on a vector: kept.
        assert_eq!(batch_norms(&compile("batch-norm.onnx")), 3);
    }

    #[test]
    fn each_value_is_moved_out_by_its_last_reader() {
        let program = compile("mnist-cnn.onnx");
        for step in &program.steps {
            assert_eq!(step.take, step.op.reads(), "{}", step.node);
            assert!(step.release.is_empty());
        }
        // In the residual network some values have several readers: each value read is let go
        // once, by its last reader.
        let program = compile("resnet.onnx");
        let mut freed: Vec<usize> = program
            .steps
            .iter()
            .flat_map(|s| s.take.iter().chain(&s.release))
            .copied()
            .collect();
        let mut reads: Vec<usize> = program.steps.iter().flat_map(|s| s.op.reads()).collect();
        assert!(freed.len() < reads.len());
        freed.sort_unstable();
        reads.sort_unstable();
        reads.dedup();
        reads.retain(|&s| s != program.output);
        assert_eq!(freed, reads);
    }
}
