//! Runs a compiled [`Program`] with burn tensor operations, so that whatever device the
//! tensors are on computes it and burn's autodiff differentiates it. Shapes are checked before
//! each operation: a graph that does not fit its input gives an error naming the node, never a
//! panic inside burn.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};

use super::graph::{Binary, MAX_RANK, Op, Operand, PadKind, Padding, Program, Unary};

/// A value of the graph: a tensor of rank [`MAX_RANK`] whose last `rank` dimensions are the
/// ONNX value's (the leading ones are of size 1).
#[derive(Clone, Debug)]
pub struct Val {
    t: Tensor<MAX_RANK>,
    rank: usize,
}

impl Val {
    /// The ONNX dimensions.
    pub fn dims(&self) -> Vec<usize> {
        self.t.dims()[MAX_RANK - self.rank..].to_vec()
    }

    /// Holds `t` as a value of rank `D`.
    pub fn lift<const D: usize>(t: Tensor<D>) -> Val {
        let dims = t.dims();
        Val {
            t: t.reshape(padded(&dims)),
            rank: D,
        }
    }

    /// A constant held padded, as a value of rank `rank`.
    pub fn of_const(t: Tensor<MAX_RANK>, rank: usize) -> Val {
        Val { t, rank }
    }

    /// The value as a tensor of rank `D` (which must be its rank).
    fn to<const D: usize>(&self) -> Tensor<D> {
        let dims: [usize; D] = self.dims().try_into().expect("rank checked by the caller");
        self.t.clone().reshape(dims)
    }

    /// The same data with ONNX dimensions `dims`.
    fn reshaped(&self, dims: &[usize]) -> Val {
        Val {
            t: self.t.clone().reshape(padded(dims)),
            rank: dims.len(),
        }
    }

    /// Offset of ONNX axis 0 in the held tensor.
    fn offset(&self) -> usize {
        MAX_RANK - self.rank
    }
}

/// `dims` with leading 1s up to [`MAX_RANK`].
pub fn padded(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut out = [1; MAX_RANK];
    out[MAX_RANK - dims.len()..].copy_from_slice(dims);
    out
}

/// The tensors a program reads, as held by the model.
pub struct Tensors<'a> {
    pub kernels: &'a [Param<Tensor<4>>],
    pub matrices: &'a [Param<Tensor<2>>],
    pub biases: &'a [Param<Tensor<1>>],
    pub consts: &'a [Param<Tensor<MAX_RANK>>],
}

/// An error while running node `node`.
#[derive(Debug)]
pub struct EvalError {
    pub node: String,
    pub reason: String,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node `{}`: {}", self.node, self.reason)
    }
}

/// Runs `program` on `input` (`[N, C, H, W]`). Returns the output value and the
/// multiply-adds of the convolutions and matrix products per image.
pub fn run(program: &Program, tensors: &Tensors, input: Tensor<4>) -> Result<(Val, u64), EvalError> {
    let batch = input.dims()[0];
    let declared_batch = program.input_shape.first().copied().flatten();
    let mut slots: Vec<Option<Val>> = vec![None; program.slots];
    slots[0] = Some(Val::lift(input));
    let mut macs = 0u64;
    for step in &program.steps {
        let fail = |reason: String| EvalError {
            node: step.node.clone(),
            reason,
        };
        let get = |slot: usize| -> Result<Val, EvalError> {
            slots[slot]
                .clone()
                .ok_or_else(|| fail("reads a value that was never computed".into()))
        };
        let operand = |o: Operand| -> Result<Val, EvalError> {
            match o {
                Operand::Slot(s) => get(s),
                Operand::Const(i, rank) => Ok(Val::of_const(tensors.consts[i].val(), rank)),
            }
        };
        let out = match &step.op {
            Op::Conv {
                x,
                weight,
                bias,
                stride,
                padding,
                dilation,
                groups,
            } => {
                let x = get(*x)?;
                let [n, c, h, w] = rank4(&x).map_err(fail)?;
                let kernel = tensors.kernels[*weight].val();
                let [o, cg, kh, kw] = kernel.dims();
                if c != cg * groups || !o.is_multiple_of(*groups) {
                    return Err(fail(format!(
                        "a convolution of {cg}x{groups} input channels (kernel {o}x{cg}x{kh}x{kw}, {groups} groups) applied to {c} channels"
                    )));
                }
                let pads = resolve(*padding, [h, w], [kh, kw], *stride, *dilation);
                let [oh, ow] = out_size([h, w], [kh, kw], *stride, *dilation, pads, false).map_err(fail)?;
                macs += (oh * ow * o * cg * kh * kw) as u64 * n as u64;
                let options = ConvOptions::new_with_padding(*stride, pads, *dilation, *groups);
                let bias = bias.map(|b| tensors.biases[b].val());
                Val::lift(conv2d(x.to::<4>(), kernel, bias, options))
            }
            Op::Linear { x, weight, bias } => {
                let x = get(*x)?;
                let w = tensors.matrices[*weight].val();
                let [inp, outp] = w.dims();
                let dims = x.dims();
                if dims.last() != Some(&inp) {
                    return Err(fail(format!(
                        "a linear layer of {inp} inputs applied to a value of shape {dims:?}"
                    )));
                }
                let rows: usize = dims[..dims.len() - 1].iter().product();
                macs += (rows * inp * outp) as u64;
                let y = linear(
                    x.reshaped(&[rows, inp]).to::<2>(),
                    w,
                    bias.map(|b| tensors.biases[b].val()),
                );
                let mut out_dims = dims.clone();
                *out_dims.last_mut().expect("rank at least 1") = outp;
                Val::lift(y).reshaped(&out_dims)
            }
            Op::Gemm {
                a,
                b,
                c,
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let (a, b) = (operand(*a)?, operand(*b)?);
                if a.rank != 2 || b.rank != 2 {
                    return Err(fail("Gemm of values that are not matrices".into()));
                }
                let a = if *trans_a { a.to::<2>().transpose() } else { a.to::<2>() };
                let b = if *trans_b { b.to::<2>().transpose() } else { b.to::<2>() };
                let ([m, k], [k2, nn]) = (a.dims(), b.dims());
                if k != k2 {
                    return Err(fail(format!("Gemm of [{m}, {k}] by [{k2}, {nn}]")));
                }
                macs += (m * k * nn) as u64;
                let mut y = Val::lift(a.matmul(b).mul_scalar(*alpha));
                if let Some(c) = c {
                    let c = operand(*c)?;
                    broadcast(&y.dims(), &c.dims()).map_err(fail)?;
                    y = Val {
                        t: y.t + c.t.mul_scalar(*beta),
                        rank: 2,
                    };
                }
                y
            }
            Op::MatMul { a, b } => {
                let (a, b) = (operand(*a)?, operand(*b)?);
                let (da, db) = (a.t.dims(), b.t.dims());
                let r = MAX_RANK;
                if da[r - 1] != db[r - 2] {
                    return Err(fail(format!("MatMul of {:?} by {:?}", a.dims(), b.dims())));
                }
                let batch_dims = broadcast(&da[..r - 2], &db[..r - 2]).map_err(fail)?;
                let mut sa = [0; MAX_RANK];
                let mut sb = [0; MAX_RANK];
                sa[..r - 2].copy_from_slice(&batch_dims);
                sb[..r - 2].copy_from_slice(&batch_dims);
                sa[r - 2..].copy_from_slice(&da[r - 2..]);
                sb[r - 2..].copy_from_slice(&db[r - 2..]);
                let rows: usize = sa[..r - 1].iter().product();
                macs += (rows * da[r - 1] * db[r - 1]) as u64;
                Val {
                    t: a.t.expand(sa).matmul(b.t.expand(sb)),
                    rank: a.rank.max(b.rank),
                }
            }
            Op::Affine { x, scale, shift } => {
                let x = get(*x)?;
                let scale = tensors.consts[*scale].val();
                let channels = scale.dims().iter().product::<usize>();
                if x.dims().get(1) != Some(&channels) {
                    return Err(fail(format!(
                        "a batch norm of {channels} channels applied to a value of shape {:?}",
                        x.dims()
                    )));
                }
                Val {
                    t: x.t * scale + tensors.consts[*shift].val(),
                    rank: x.rank,
                }
            }
            Op::Unary { x, f } => {
                let x = get(*x)?;
                let t = match *f {
                    Unary::Relu => activation::relu(x.t),
                    Unary::Sigmoid => activation::sigmoid(x.t),
                    Unary::Tanh => activation::tanh(x.t),
                    Unary::Neg => x.t.neg(),
                    Unary::HardSigmoid { alpha, beta } => activation::hard_sigmoid(x.t, alpha, beta),
                    Unary::HardSwish => activation::hard_swish(x.t),
                    Unary::LeakyRelu { alpha } => activation::leaky_relu(x.t, alpha),
                    Unary::Clip { min, max } => match (min, max) {
                        (Some(lo), Some(hi)) => x.t.clamp(lo, hi),
                        (Some(lo), None) => x.t.clamp_min(lo),
                        (None, Some(hi)) => x.t.clamp_max(hi),
                        (None, None) => x.t,
                    },
                };
                Val { t, rank: x.rank }
            }
            Op::Binary { a, b, f } => {
                let (a, b) = (operand(*a)?, operand(*b)?);
                broadcast(&a.dims(), &b.dims()).map_err(fail)?;
                let rank = a.rank.max(b.rank);
                let t = match f {
                    Binary::Add => a.t + b.t,
                    Binary::Sub => a.t - b.t,
                    Binary::Mul => a.t * b.t,
                    Binary::Div => a.t / b.t,
                };
                Val { t, rank }
            }
            Op::MaxPool {
                x,
                kernel,
                stride,
                padding,
                dilation,
                ceil,
            } => {
                let x = get(*x)?;
                let [_, _, h, w] = rank4(&x).map_err(fail)?;
                let pads = resolve(*padding, [h, w], *kernel, *stride, *dilation);
                out_size([h, w], *kernel, *stride, *dilation, pads, *ceil).map_err(fail)?;
                let options = MaxPoolOptions::new(*kernel)
                    .with_stride(*stride)
                    .with_padding_pairs(pads)
                    .with_dilation(*dilation)
                    .with_ceil_mode(*ceil);
                Val::lift(max_pool2d(x.to::<4>(), options))
            }
            Op::AvgPool {
                x,
                kernel,
                stride,
                padding,
                count_include_pad,
                ceil,
            } => {
                let x = get(*x)?;
                let [_, _, h, w] = rank4(&x).map_err(fail)?;
                let pads = resolve(*padding, [h, w], *kernel, *stride, [1, 1]);
                out_size([h, w], *kernel, *stride, [1, 1], pads, *ceil).map_err(fail)?;
                let options = AvgPoolOptions::new(*kernel)
                    .with_stride(*stride)
                    .with_padding_pairs(pads)
                    .with_count_include_pad(*count_include_pad)
                    .with_ceil_mode(*ceil);
                Val::lift(avg_pool2d(x.to::<4>(), options))
            }
            Op::GlobalAvgPool { x } => {
                let x = get(*x)?;
                if x.rank < 3 {
                    return Err(fail(format!("global pooling of a value of shape {:?}", x.dims())));
                }
                let axes: Vec<usize> = (x.offset() + 2..MAX_RANK).collect();
                Val {
                    t: x.t.mean_dims(&axes),
                    rank: x.rank,
                }
            }
            Op::ReduceMean { x, axes, keepdims } => {
                let x = get(*x)?;
                let dims = x.dims();
                let axes: Vec<usize> = if axes.is_empty() {
                    (0..x.rank).collect()
                } else {
                    axes.clone()
                };
                if axes.iter().any(|&a| a >= x.rank) {
                    return Err(fail(format!("a mean over axes {axes:?} of a value of shape {dims:?}")));
                }
                let held: Vec<usize> = axes.iter().map(|a| a + x.offset()).collect();
                let y = Val {
                    t: x.t.mean_dims(&held),
                    rank: x.rank,
                };
                if *keepdims {
                    y
                } else {
                    let kept: Vec<usize> = (0..dims.len()).filter(|i| !axes.contains(i)).map(|i| dims[i]).collect();
                    y.reshaped(&kept)
                }
            }
            Op::Flatten { x, axis } => {
                let x = get(*x)?;
                let dims = x.dims();
                let axis = (*axis).min(dims.len());
                let outer: usize = dims[..axis].iter().product();
                let inner: usize = dims[axis..].iter().product();
                x.reshaped(&[outer, inner])
            }
            Op::Reshape { x, shape, allow_zero } => {
                let x = get(*x)?;
                let dims = x.dims();
                let mut target = shape.clone();
                // A graph exported for a fixed batch size: its batch dimension follows the images.
                if let Some(fixed) = declared_batch
                    && fixed != batch
                    && target.first() == Some(&(fixed as i64))
                    && dims.first() == Some(&batch)
                {
                    target[0] = batch as i64;
                }
                let out = reshape_dims(&dims, &target, *allow_zero).map_err(fail)?;
                x.reshaped(&out)
            }
            Op::Transpose { x, perm } => {
                let x = get(*x)?;
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..x.rank).collect::<Vec<_>>() {
                    return Err(fail(format!("a permutation {perm:?} of a value of rank {}", x.rank)));
                }
                let off = x.offset();
                let mut full: [usize; MAX_RANK] = std::array::from_fn(|i| i);
                for (i, p) in perm.iter().enumerate() {
                    full[off + i] = off + p;
                }
                Val {
                    t: x.t.permute(full),
                    rank: x.rank,
                }
            }
            Op::Concat { inputs, axis } => {
                let vals = inputs.iter().map(|o| operand(*o)).collect::<Result<Vec<_>, _>>()?;
                let rank = vals[0].rank;
                let first = vals[0].dims();
                for v in &vals {
                    let d = v.dims();
                    let fits = v.rank == rank
                        && *axis < rank
                        && d.iter().zip(&first).enumerate().all(|(i, (a, b))| i == *axis || a == b);
                    if !fits {
                        return Err(fail(format!(
                            "concatenation of shapes {first:?} and {d:?} on axis {axis}"
                        )));
                    }
                }
                let off = MAX_RANK - rank;
                Val {
                    t: Tensor::cat(vals.into_iter().map(|v| v.t).collect(), off + axis),
                    rank,
                }
            }
            Op::Pad { x, pads, mode } => {
                let x = get(*x)?;
                if pads.len() != x.rank {
                    return Err(fail(format!(
                        "{} padding pairs for a value of rank {}",
                        pads.len(),
                        x.rank
                    )));
                }
                let mode = match mode {
                    PadKind::Constant(v) => PadMode::Constant(*v),
                    PadKind::Reflect => PadMode::Reflect,
                    PadKind::Edge => PadMode::Edge,
                };
                Val {
                    t: x.t.pad(pads.clone(), mode),
                    rank: x.rank,
                }
            }
            Op::Softmax { x, axis } => {
                let x = get(*x)?;
                if *axis >= x.rank {
                    return Err(fail(format!("a softmax on axis {axis} of a value of rank {}", x.rank)));
                }
                let dim = x.offset() + axis;
                Val {
                    t: activation::softmax(x.t, dim),
                    rank: x.rank,
                }
            }
        };
        slots[step.out] = Some(out);
    }
    let out = slots[program.output].clone().ok_or_else(|| EvalError {
        node: "output".into(),
        reason: "the output was never computed".into(),
    })?;
    Ok((out, macs / batch.max(1) as u64))
}

/// The logits `[N, K]` of an output value (trailing dimensions of size 1 dropped).
pub fn logits(out: Val) -> Result<Tensor<2>, String> {
    let dims = out.dims();
    match dims.as_slice() {
        [_, _] => Ok(out.to::<2>()),
        [n, k, rest @ ..] if rest.iter().all(|&d| d == 1) => Ok(out.reshaped(&[*n, *k]).to::<2>()),
        _ => Err(format!("the graph's output has shape {dims:?}, not [batch, classes]")),
    }
}

/// The dimensions of a 4-D value.
fn rank4(x: &Val) -> Result<[usize; 4], String> {
    x.dims()
        .try_into()
        .map_err(|d: Vec<usize>| format!("expects a 4-D value [N, C, H, W], got shape {d:?}"))
}

/// The broadcast shape of two ONNX shapes (numpy rules).
fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// The `(begin, end)` padding of a 2-D window operation on an `[h, w]` input.
fn resolve(
    padding: Padding,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> [(usize, usize); 2] {
    match padding {
        Padding::Explicit(p) => p,
        Padding::Same { upper } => std::array::from_fn(|i| {
            let out = size[i].div_ceil(stride[i]);
            let needed = (out - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1;
            let total = needed.saturating_sub(size[i]);
            let small = total / 2;
            if upper {
                (small, total - small)
            } else {
                (total - small, small)
            }
        }),
    }
}

/// The output size of a 2-D window operation, or an error when the window does not fit.
fn out_size(
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: [(usize, usize); 2],
    ceil: bool,
) -> Result<[usize; 2], String> {
    let mut out = [0; 2];
    for i in 0..2 {
        let span = (kernel[i] - 1) * dilation[i] + 1;
        let padded = size[i] + pads[i].0 + pads[i].1;
        if padded < span {
            return Err(format!(
                "a window of {kernel:?} (dilation {dilation:?}) does not fit the {size:?} input"
            ));
        }
        let steps = padded - span;
        out[i] = if ceil {
            steps.div_ceil(stride[i])
        } else {
            steps / stride[i]
        } + 1;
    }
    Ok(out)
}

/// The dimensions ONNX Reshape gives `dims` for `target` (0 copies a dimension unless
/// `allow_zero`, -1 is inferred).
fn reshape_dims(dims: &[usize], target: &[i64], allow_zero: bool) -> Result<Vec<usize>, String> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(*dims.get(i).ok_or("a 0 in the shape past the input's rank")?),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {dims:?} to {target:?}"));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total || out.len() > MAX_RANK {
        return Err(format!("cannot reshape {dims:?} to {target:?}"));
    }
    Ok(out)
}
