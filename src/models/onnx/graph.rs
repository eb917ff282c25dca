//! The operations of an ONNX graph that `anu` runs, compiled from `onnx-ir`'s typed nodes into
//! a list of steps over numbered value slots. Weights are not kept here: each step names them
//! by their index in the model's parameter lists (see [`Weights`]).
//!
//! Work that does not depend on the images is done here, once: batch norms that follow a
//! convolution are folded into its kernel and bias, constants are transposed, scaled and given
//! the rank of the values they combine with, and each step knows which values it reads for the
//! last time (so that it gets them without another reference and burn can reuse their memory).

use std::collections::{HashMap, HashSet};

use burn::tensor::TensorData;
use onnx_ir::node::padding::{AutoPad, PaddingConfig2d};
use onnx_ir::{ArgType, Argument, Node, OnnxGraph};

/// The highest rank of a value (scalars are held as vectors of one element).
pub const MAX_RANK: usize = 6;

/// Where an operand comes from: a value computed at run time, or a constant of the graph.
#[derive(Clone, Copy, Debug)]
pub enum Operand {
    /// A value slot.
    Slot(usize),
    /// A constant: index into the model's constant list.
    Const(usize),
}

/// An element-wise function of one value.
#[derive(Clone, Copy, Debug)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Neg,
    HardSigmoid { alpha: f64, beta: f64 },
    HardSwish,
    LeakyRelu { alpha: f64 },
    Clip { min: Option<f64>, max: Option<f64> },
}

/// An element-wise function of two values, with ONNX broadcasting.
#[derive(Clone, Copy, Debug)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// Padding of a convolution or a pool.
#[derive(Clone, Copy, Debug)]
pub enum Padding {
    /// `(begin, end)` per spatial dimension.
    Explicit([(usize, usize); 2]),
    /// ONNX `SAME_UPPER` (`upper: true`) or `SAME_LOWER`: computed from the input size.
    Same { upper: bool },
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
    /// `x * scale + shift` with per-channel constants `[1, C, 1, ...]` (a batch norm that
    /// could not be folded into a convolution).
    Affine {
        x: usize,
        scale: Operand,
        shift: Operand,
    },
    Unary {
        x: usize,
        f: Unary,
    },
    Binary {
        a: Operand,
        b: Operand,
        f: Binary,
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
    /// Mean over `axes` (all when empty).
    ReduceMean {
        x: usize,
        axes: Vec<usize>,
        keepdims: bool,
    },
    Flatten {
        x: usize,
        axis: usize,
    },
    Reshape {
        x: usize,
        shape: Vec<i64>,
        allow_zero: bool,
    },
    Transpose {
        x: usize,
        perm: Vec<usize>,
    },
    Concat {
        inputs: Vec<Operand>,
        axis: usize,
    },
    /// Padding of every dimension, `(begin, end)` pairs in ONNX order.
    Pad {
        x: usize,
        pads: Vec<(usize, usize)>,
        mode: PadKind,
    },
    Softmax {
        x: usize,
        axis: usize,
    },
}

/// How [`Op::Pad`] fills.
#[derive(Clone, Copy, Debug)]
pub enum PadKind {
    Constant(f32),
    Reflect,
    Edge,
}

impl Op {
    /// The slots the operation reads, in order (a slot read twice is listed twice).
    pub fn reads(&self) -> Vec<usize> {
        let slot = |o: &Operand| match o {
            Operand::Slot(s) => Some(*s),
            Operand::Const(_) => None,
        };
        match self {
            Op::Conv { x, .. }
            | Op::Linear { x, .. }
            | Op::Affine { x, .. }
            | Op::Unary { x, .. }
            | Op::MaxPool { x, .. }
            | Op::AvgPool { x, .. }
            | Op::GlobalAvgPool { x }
            | Op::ReduceMean { x, .. }
            | Op::Flatten { x, .. }
            | Op::Reshape { x, .. }
            | Op::Transpose { x, .. }
            | Op::Pad { x, .. }
            | Op::Softmax { x, .. } => vec![*x],
            Op::Gemm { a, b, c, .. } => [Some(a), Some(b), c.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(slot)
                .collect(),
            Op::MatMul { a, b } | Op::Binary { a, b, .. } => [a, b].into_iter().filter_map(slot).collect(),
            Op::Concat { inputs, .. } => inputs.iter().filter_map(slot).collect(),
        }
    }
}

/// One operation with the slot it writes and the node it came from.
#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub out: usize,
    /// The ONNX node's name (for error messages).
    pub node: String,
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
}

/// The constants a compiled graph needs, as host data, by kind.
#[derive(Default)]
pub struct Weights {
    /// Convolution kernels `[out, in/groups, kh, kw]`.
    pub kernels: Vec<TensorData>,
    /// Linear weights `[in, out]`.
    pub matrices: Vec<TensorData>,
    /// Biases `[out]`.
    pub biases: Vec<TensorData>,
    /// Other constants with their shape (of rank 1 to [`MAX_RANK`]: given the rank of the
    /// values they combine with).
    pub consts: Vec<(Vec<f32>, Vec<usize>)>,
}

/// Why a graph cannot be compiled.
#[derive(Debug)]
pub enum CompileError {
    /// Operators `anu` does not run: `(operator, first node, count)`.
    Unsupported(Vec<(String, String, usize)>),
    /// Anything else, already phrased.
    Invalid(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Unsupported(ops) => {
                let list: Vec<String> = ops
                    .iter()
                    .map(|(op, node, n)| match n {
                        1 => format!("{op} (node `{node}`)"),
                        _ => format!("{op} (node `{node}` and {} more)", n - 1),
                    })
                    .collect();
                write!(
                    f,
                    "the graph uses operators anu cannot run: {}; supported are {SUPPORTED}",
                    list.join(", ")
                )
            }
            CompileError::Invalid(why) => f.write_str(why),
        }
    }
}

/// The operators [`compile`] accepts, for error messages.
pub const SUPPORTED: &str = "Conv, Gemm, MatMul, BatchNormalization, Relu, Clip, Sigmoid, Tanh, Neg, \
HardSigmoid, HardSwish, LeakyRelu, MaxPool, AveragePool, GlobalAveragePool, ReduceMean, Add, Sub, Mul, \
Div, Flatten, Reshape, Transpose, Concat, Pad, Constant, Identity, Cast (to float), Dropout, Softmax";

fn invalid(node: &str, why: impl std::fmt::Display) -> CompileError {
    CompileError::Invalid(format!("node `{node}`: {why}"))
}

/// The host values of a constant argument as 32-bit floats, with its shape.
fn const_values(arg: &Argument) -> Option<(Vec<f32>, Vec<usize>)> {
    let data = arg.value()?;
    let shape = data.shape().to_vec();
    let values = data.convert::<f32>().try_into_vec::<f32>().ok()?;
    Some((values, shape))
}

/// Turns an `onnx-ir` graph into a [`Program`] and its [`Weights`].
pub struct Compiler {
    slots: HashMap<String, usize>,
    next_slot: usize,
    steps: Vec<Step>,
    weights: Weights,
    unsupported: Vec<(String, String, usize)>,
    /// How many node inputs (and graph outputs) read each value, by name.
    readers: HashMap<String, usize>,
    /// The name of the value the last step writes.
    last_output: Option<String>,
}

impl Compiler {
    /// Compiles `graph`, whose single (non-constant) input is the image batch.
    pub fn compile(graph: &OnnxGraph) -> Result<(Program, Weights), CompileError> {
        let inputs: Vec<&Argument> = graph.inputs.iter().filter(|a| a.is_dynamic()).collect();
        let [input] = inputs.as_slice() else {
            let names: Vec<&str> = inputs.iter().map(|a| a.name.as_str()).collect();
            return Err(CompileError::Invalid(format!(
                "the graph must take one input (the images), but takes {} [{}]",
                inputs.len(),
                names.join(", ")
            )));
        };
        let input_shape = match &input.ty {
            ArgType::Tensor(t) if t.rank == 4 => t.static_shape.clone().unwrap_or_else(|| vec![None; 4]),
            other => {
                return Err(CompileError::Invalid(format!(
                    "the graph's input `{}` must be an image batch [N, C, H, W], but is {other}",
                    input.name
                )));
            }
        };
        let [output] = graph.outputs.as_slice() else {
            return Err(CompileError::Invalid(format!(
                "the graph must give one output (the logits), but gives {}",
                graph.outputs.len()
            )));
        };
        let mut readers: HashMap<String, usize> = HashMap::new();
        for arg in graph.nodes.iter().flat_map(|n| n.inputs()).chain(&graph.outputs) {
            *readers.entry(arg.name.clone()).or_default() += 1;
        }
        let mut c = Compiler {
            slots: HashMap::from([(input.name.clone(), 0)]),
            next_slot: 1,
            steps: Vec::new(),
            weights: Weights::default(),
            unsupported: Vec::new(),
            readers,
            last_output: None,
        };
        let mut stripped_softmax = false;
        for node in &graph.nodes {
            let final_softmax = matches!(node, Node::Softmax(_) | Node::LogSoftmax(_))
                && node.outputs().first().is_some_and(|o| o.name == output.name);
            if final_softmax {
                // Attacks need logits: the graph's output is taken before its Softmax.
                let x = c.slot(&node.inputs()[0], node.name())?;
                c.slots.insert(output.name.clone(), x);
                stripped_softmax = true;
                continue;
            }
            c.node(node)?;
        }
        if !c.unsupported.is_empty() {
            return Err(CompileError::Unsupported(c.unsupported));
        }
        let out = *c.slots.get(&output.name).ok_or_else(|| {
            CompileError::Invalid(format!(
                "the graph's output `{}` is not computed from its input",
                output.name
            ))
        })?;
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
        };
        Ok((program, c.weights))
    }

    /// Records an operator that cannot run; its outputs get slots of their own so that the
    /// rest of the graph is still checked and every such operator is reported at once.
    fn note_unsupported(&mut self, op: String, node: &Node) {
        for o in node.outputs() {
            self.slots.insert(o.name.clone(), self.next_slot);
            self.next_slot += 1;
        }
        let node = node.name();
        match self.unsupported.iter_mut().find(|(o, _, _)| *o == op) {
            Some(entry) => entry.2 += 1,
            None => self.unsupported.push((op, node.to_string(), 1)),
        }
    }

    /// The slot holding a run-time argument.
    fn slot(&self, arg: &Argument, node: &str) -> Result<usize, CompileError> {
        self.slots.get(&arg.name).copied().ok_or_else(|| {
            invalid(
                node,
                format!("input `{}` is not computed from the graph's input", arg.name),
            )
        })
    }

    /// The slot of a run-time argument, `None` for a constant.
    fn runtime(&self, arg: &Argument) -> Option<usize> {
        self.slots.get(&arg.name).copied().filter(|_| arg.is_dynamic())
    }

    /// The host values of a constant argument, with its shape.
    fn host(arg: &Argument, node: &str) -> Result<(Vec<f32>, Vec<usize>), CompileError> {
        const_values(arg).ok_or_else(|| invalid(node, format!("input `{}` has no value", arg.name)))
    }

    /// Adds a constant, its shape given leading 1s up to `rank` (the rank of the values it
    /// combines with, so that it broadcasts without a reshape at run time).
    fn push_const(
        &mut self,
        values: Vec<f32>,
        mut shape: Vec<usize>,
        rank: usize,
        node: &str,
    ) -> Result<Operand, CompileError> {
        let rank = rank.max(shape.len()).max(1);
        if rank > MAX_RANK {
            return Err(invalid(
                node,
                format!("a constant of shape {shape:?} used at rank {rank} (at most {MAX_RANK})"),
            ));
        }
        shape.splice(0..0, std::iter::repeat_n(1, rank - shape.len()));
        self.weights.consts.push((values, shape));
        Ok(Operand::Const(self.weights.consts.len() - 1))
    }

    /// A run-time value or a constant, given the rank `rank` (see [`Compiler::push_const`]).
    fn operand(&mut self, arg: &Argument, node: &str, rank: usize) -> Result<Operand, CompileError> {
        if let Some(slot) = self.runtime(arg) {
            return Ok(Operand::Slot(slot));
        }
        let (values, shape) = Self::host(arg, node)?;
        self.push_const(values, shape, rank, node)
    }

    /// An operand of Gemm: a run-time value, or a constant transposed (when `transpose`) and
    /// multiplied by `scale` here, which then become `false` and 1.
    fn gemm_operand(
        &mut self,
        arg: &Argument,
        node: &str,
        transpose: &mut bool,
        scale: &mut f32,
    ) -> Result<Operand, CompileError> {
        if let Some(slot) = self.runtime(arg) {
            return Ok(Operand::Slot(slot));
        }
        let (mut values, mut shape) = Self::host(arg, node)?;
        if *transpose {
            let [rows, cols] = shape[..] else {
                return Err(invalid(node, format!("Gemm of a constant of shape {shape:?}")));
            };
            values = transpose2(&values, rows, cols);
            shape = vec![cols, rows];
            *transpose = false;
        }
        if *scale != 1.0 {
            values.iter_mut().for_each(|v| *v *= *scale);
            *scale = 1.0;
        }
        self.push_const(values, shape, 2, node)
    }

    /// Folds `x * scale + shift` (per channel) into the convolution that the last step is,
    /// when it writes `input` and nothing else reads it. Returns whether it did.
    fn fold_into_conv(&mut self, input: &Argument, scale: &[f32], shift: &[f32]) -> bool {
        if self.readers.get(&input.name) != Some(&1) || self.last_output.as_deref() != Some(input.name.as_str()) {
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

    /// A constant as burn data, converted to f32.
    fn constant(arg: &Argument, node: &str, what: &str) -> Result<TensorData, CompileError> {
        let (values, shape) = const_values(arg).ok_or_else(|| {
            invalid(
                node,
                format!("the {what} `{}` must be a constant of the graph", arg.name),
            )
        })?;
        Ok(TensorData::new(values, shape))
    }

    fn push(&mut self, node: &Node, op: Op) {
        let out = self.next_slot;
        self.next_slot += 1;
        self.last_output = node.outputs().first().map(|o| o.name.clone());
        if let Some(o) = node.outputs().first() {
            self.slots.insert(o.name.clone(), out);
        }
        self.steps.push(Step {
            op,
            out,
            node: node.name().to_string(),
            take: Vec::new(),
            release: Vec::new(),
        });
    }

    /// Makes the node's output another name for its first input's slot.
    fn alias(&mut self, node: &Node) -> Result<(), CompileError> {
        let x = self.slot(&node.inputs()[0], node.name())?;
        if let Some(o) = node.outputs().first() {
            self.slots.insert(o.name.clone(), x);
        }
        Ok(())
    }

    fn rank_of(arg: &Argument) -> usize {
        arg.ty.rank()
    }

    fn node(&mut self, node: &Node) -> Result<(), CompileError> {
        let name = node.name();
        let ins = node.inputs();
        let first = ins.first().and_then(|a| self.slots.get(&a.name).copied());
        let x0 = || first.ok_or_else(|| invalid(name, "its input is not computed from the graph's input"));
        let op = match node {
            Node::Constant(_) => return Ok(()),
            Node::Identity(_) | Node::Dropout(_) => return self.alias(node),
            Node::Cast(n) if n.config.to.is_float() && ins[0].ty.elem_type().is_float() => {
                return self.alias(node);
            }
            Node::Conv2d(n) => {
                let cfg = &n.config;
                let kernel = Self::constant(&ins[1], name, "convolution kernel")?;
                self.weights.kernels.push(kernel);
                let weight = self.weights.kernels.len() - 1;
                let bias = match ins.get(2).filter(|a| !a.is_optional()) {
                    Some(b) => {
                        self.weights.biases.push(Self::constant(b, name, "bias")?);
                        Some(self.weights.biases.len() - 1)
                    }
                    None => None,
                };
                Op::Conv {
                    x: x0()?,
                    weight,
                    bias,
                    stride: cfg.stride,
                    padding: padding(&cfg.padding, &cfg.auto_pad),
                    dilation: cfg.dilation,
                    groups: cfg.groups,
                }
            }
            Node::Linear(n) => {
                let w = Self::constant(&ins[1], name, "weight")?;
                let dims = w.shape().to_vec();
                let w = match (n.config.transpose_weight, dims.as_slice()) {
                    (false, _) => w,
                    (true, &[rows, cols]) => {
                        let values = w.try_to_vec::<f32>().map_err(|e| invalid(name, format!("{e:?}")))?;
                        TensorData::new(transpose2(&values, rows, cols), [cols, rows])
                    }
                    (true, _) => return Err(invalid(name, format!("a linear weight of shape {dims:?}"))),
                };
                self.weights.matrices.push(w);
                let weight = self.weights.matrices.len() - 1;
                let bias = match ins.get(2).filter(|a| !a.is_optional()) {
                    Some(b) => {
                        self.weights.biases.push(Self::constant(b, name, "bias")?);
                        Some(self.weights.biases.len() - 1)
                    }
                    None => None,
                };
                Op::Linear { x: x0()?, weight, bias }
            }
            Node::Gemm(n) => {
                let (mut alpha, mut beta) = (n.config.alpha, n.config.beta);
                let (mut trans_a, mut trans_b) = (n.config.trans_a != 0, n.config.trans_b != 0);
                let a = self.gemm_operand(&ins[0], name, &mut trans_a, &mut 1.0)?;
                let b = self.gemm_operand(&ins[1], name, &mut trans_b, &mut alpha)?;
                let c = match ins.get(2).filter(|a| !a.is_optional()) {
                    Some(c) => Some(self.gemm_operand(c, name, &mut false, &mut beta)?),
                    None => None,
                };
                Op::Gemm {
                    a,
                    b,
                    c,
                    alpha,
                    beta,
                    trans_a,
                    trans_b,
                }
            }
            Node::MatMul(_) => {
                let rank = Self::rank_of(&ins[0]).max(Self::rank_of(&ins[1]));
                if Self::rank_of(&ins[0]) < 2 || Self::rank_of(&ins[1]) < 2 {
                    return Err(invalid(name, "MatMul of a vector is not supported"));
                }
                Op::MatMul {
                    a: self.operand(&ins[0], name, rank)?,
                    b: self.operand(&ins[1], name, rank)?,
                }
            }
            Node::BatchNormalization(n) => {
                let eps = match &n.config {
                    onnx_ir::node::batch_norm::BatchNormConfig::Static(c) => c.epsilon,
                    onnx_ir::node::batch_norm::BatchNormConfig::Runtime(c) => c.epsilon,
                };
                let get = |i: usize, what: &str| -> Result<Vec<f32>, CompileError> {
                    let arg = ins.get(i).ok_or_else(|| invalid(name, format!("no {what}")))?;
                    Ok(const_values(arg)
                        .ok_or_else(|| invalid(name, format!("the {what} must be a constant of the graph")))?
                        .0)
                };
                let (gamma, beta, mean, var) =
                    (get(1, "scale")?, get(2, "bias")?, get(3, "mean")?, get(4, "variance")?);
                let channels = gamma.len();
                if [beta.len(), mean.len(), var.len()].iter().any(|&l| l != channels) {
                    return Err(invalid(name, "batch norm statistics of different lengths"));
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
                let rank = Self::rank_of(&ins[0]);
                if rank < 2 {
                    return Err(invalid(name, "batch norm of a value of rank below 2"));
                }
                let x = x0()?;
                if self.fold_into_conv(&ins[0], &scale, &shift) {
                    return self.alias(node);
                }
                // [1, C, 1, ...]: broadcasts over [N, C, ...].
                let mut shape = vec![1; rank];
                shape[1] = channels;
                let scale = self.push_const(scale, shape.clone(), rank, name)?;
                let shift = self.push_const(shift, shape, rank, name)?;
                Op::Affine { x, scale, shift }
            }
            Node::Relu(_) => Op::Unary {
                x: x0()?,
                f: Unary::Relu,
            },
            Node::Sigmoid(_) => Op::Unary {
                x: x0()?,
                f: Unary::Sigmoid,
            },
            Node::Tanh(_) => Op::Unary {
                x: x0()?,
                f: Unary::Tanh,
            },
            Node::Neg(_) => Op::Unary {
                x: x0()?,
                f: Unary::Neg,
            },
            Node::HardSwish(_) => Op::Unary {
                x: x0()?,
                f: Unary::HardSwish,
            },
            Node::HardSigmoid(n) => Op::Unary {
                x: x0()?,
                f: Unary::HardSigmoid {
                    alpha: n.config.alpha,
                    beta: n.config.beta,
                },
            },
            Node::LeakyRelu(n) => Op::Unary {
                x: x0()?,
                f: Unary::LeakyRelu { alpha: n.config.alpha },
            },
            Node::Clip(n) => {
                use onnx_ir::node::clip::ClipInput;
                let bound = |b: &Option<ClipInput>| match b {
                    None => Ok(None),
                    Some(ClipInput::Static(v)) => Ok(Some(*v)),
                    Some(ClipInput::Runtime(_)) => Err(invalid(name, "Clip with bounds computed at run time")),
                };
                Op::Unary {
                    x: x0()?,
                    f: Unary::Clip {
                        min: bound(&n.config.min)?,
                        max: bound(&n.config.max)?,
                    },
                }
            }
            Node::Add(_) | Node::Sub(_) | Node::Mul(_) | Node::Div(_) => {
                let f = match node {
                    Node::Add(_) => Binary::Add,
                    Node::Sub(_) => Binary::Sub,
                    Node::Mul(_) => Binary::Mul,
                    _ => Binary::Div,
                };
                let rank = Self::rank_of(&ins[0]).max(Self::rank_of(&ins[1]));
                Op::Binary {
                    a: self.operand(&ins[0], name, rank)?,
                    b: self.operand(&ins[1], name, rank)?,
                    f,
                }
            }
            Node::MaxPool2d(n) => {
                let cfg = &n.config;
                Op::MaxPool {
                    x: x0()?,
                    kernel: cfg.kernel_size,
                    stride: cfg.strides,
                    padding: padding(&cfg.padding, &cfg.auto_pad),
                    dilation: cfg.dilation,
                    ceil: cfg.ceil_mode,
                }
            }
            Node::AveragePool2d(n) => {
                let cfg = &n.config;
                if cfg.dilation != [1, 1] {
                    return Err(invalid(name, "dilated average pooling is not supported"));
                }
                Op::AvgPool {
                    x: x0()?,
                    kernel: cfg.kernel_size,
                    stride: cfg.strides,
                    padding: padding(&cfg.padding, &cfg.auto_pad),
                    count_include_pad: cfg.count_include_pad,
                    ceil: cfg.ceil_mode,
                }
            }
            Node::GlobalAveragePool(_) => Op::GlobalAvgPool { x: x0()? },
            Node::ReduceMean(n) => match &n.config.axes {
                onnx_ir::node::reduce::ReduceAxes::Static(axes) => {
                    if axes.is_empty() && n.config.noop_with_empty_axes {
                        return self.alias(node);
                    }
                    Op::ReduceMean {
                        x: x0()?,
                        axes: axes.clone(),
                        keepdims: n.config.keepdims,
                    }
                }
                _ => return Err(invalid(name, "ReduceMean over axes computed at run time")),
            },
            Node::Flatten(n) => Op::Flatten {
                x: x0()?,
                axis: n.config.axis,
            },
            Node::Reshape(n) => match &n.config.shape {
                onnx_ir::node::reshape::ReshapeInput::Static(shape) => Op::Reshape {
                    x: x0()?,
                    shape: shape.clone(),
                    allow_zero: false,
                },
                _ => return Err(invalid(name, "Reshape to a shape computed at run time")),
            },
            Node::Transpose(n) => Op::Transpose {
                x: x0()?,
                perm: n.config.perm.iter().map(|&p| p as usize).collect(),
            },
            Node::Concat(n) => {
                let mut inputs = Vec::new();
                for arg in ins {
                    inputs.push(self.operand(arg, name, Self::rank_of(arg))?);
                }
                Op::Concat {
                    inputs,
                    axis: n.config.axis,
                }
            }
            Node::Pad(n) => {
                use onnx_ir::node::pad::{ConstantValueInput, PadInput, PadMode};
                let pads = match &n.config.pads {
                    PadInput::Static(p) => p.clone(),
                    _ => return Err(invalid(name, "Pad with pads computed at run time")),
                };
                let mode = match (&n.config.mode, &n.config.constant_value) {
                    (PadMode::Constant, ConstantValueInput::Static(v)) => PadKind::Constant(*v),
                    (PadMode::Constant, _) => return Err(invalid(name, "Pad with a value computed at run time")),
                    (PadMode::Reflect, _) => PadKind::Reflect,
                    (PadMode::Edge, _) => PadKind::Edge,
                };
                Op::Pad { x: x0()?, pads, mode }
            }
            Node::Softmax(n) => Op::Softmax {
                x: x0()?,
                axis: n.config.axis,
            },
            Node::Custom(n) => {
                let op = if n.domain.is_empty() {
                    n.op_type.clone()
                } else {
                    format!("{}::{}", n.domain, n.op_type)
                };
                self.note_unsupported(op, node);
                return Ok(());
            }
            other => {
                self.note_unsupported(other.node_type().to_string(), node);
                return Ok(());
            }
        };
        self.push(node, op);
        Ok(())
    }
}

/// The padding of a convolution or pool.
fn padding(explicit: &PaddingConfig2d, auto: &AutoPad) -> Padding {
    match auto {
        AutoPad::SameUpper => Padding::Same { upper: true },
        AutoPad::SameLower => Padding::Same { upper: false },
        _ => {
            let (top, left, bottom, right) = explicit.as_tuple();
            Padding::Explicit([(top, bottom), (left, right)])
        }
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
        let graph = onnx_ir::OnnxGraphBuilder::new().parse_file(&path).unwrap();
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
