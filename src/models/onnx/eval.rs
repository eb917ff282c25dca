//! Runs a compiled [`Program`] with burn tensor operations, so that whatever device the
//! tensors are on computes it and burn's autodiff differentiates it. Values are held at their
//! ONNX rank ([`Val`]), so each ONNX operator is one burn operation with no reshapes around
//! it, and convolutions and max pooling go through [`crate::kernels`] as in the built-in models.
//! Shapes
//! are checked before each operation: a graph that does not fit its input gives an
//! error naming the node, never a panic inside burn.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, linear};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, PadMode};

use super::graph::{Binary, MAX_RANK, Op, Operand, PadKind, Padding, Program, Step, Unary};
use crate::kernels::{conv2d, max_pool2d_layer};

/// A value of the graph, held at its ONNX rank (a scalar as a vector of one element).
#[derive(Clone, Debug)]
pub enum Val {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R3(Tensor<3>),
    R4(Tensor<4>),
    R5(Tensor<5>),
    R6(Tensor<6>),
}

/// `$e` with `$t` bound to the tensor of a value, whatever its rank.
macro_rules! with_tensor {
    ($v:expr, $t:ident => $e:expr) => {
        match $v {
            Val::R1($t) => $e,
            Val::R2($t) => $e,
            Val::R3($t) => $e,
            Val::R4($t) => $e,
            Val::R5($t) => $e,
            Val::R6($t) => $e,
        }
    };
}

/// The value of the same rank whose tensor is `$e`, with `$t` bound to the tensor of `$v`.
macro_rules! map_tensor {
    ($v:expr, $t:ident => $e:expr) => {
        match $v {
            Val::R1($t) => Val::R1($e),
            Val::R2($t) => Val::R2($e),
            Val::R3($t) => Val::R3($e),
            Val::R4($t) => Val::R4($e),
            Val::R5($t) => Val::R5($e),
            Val::R6($t) => Val::R6($e),
        }
    };
}

/// `Some` value of the common rank whose tensor is `$e`, with `$x` and `$y` bound to the
/// tensors of `$a` and `$b`; `None` when their ranks differ.
macro_rules! zip_tensors {
    ($a:expr, $b:expr, $x:ident, $y:ident => $e:expr) => {
        match ($a, $b) {
            (Val::R1($x), Val::R1($y)) => Some(Val::R1($e)),
            (Val::R2($x), Val::R2($y)) => Some(Val::R2($e)),
            (Val::R3($x), Val::R3($y)) => Some(Val::R3($e)),
            (Val::R4($x), Val::R4($y)) => Some(Val::R4($e)),
            (Val::R5($x), Val::R5($y)) => Some(Val::R5($e)),
            (Val::R6($x), Val::R6($y)) => Some(Val::R6($e)),
            _ => None,
        }
    };
}

/// Tensors of a rank a value can have.
pub trait Ranked: Sized {
    /// The tensor as a value.
    fn into_val(self) -> Val;
    /// The tensor of a value of this rank.
    fn from_val(v: Val) -> Option<Self>;
}

macro_rules! ranked {
    ($($d:literal => $variant:ident),*) => {
        $(impl Ranked for Tensor<$d> {
            fn into_val(self) -> Val {
                Val::$variant(self)
            }
            fn from_val(v: Val) -> Option<Self> {
                match v {
                    Val::$variant(t) => Some(t),
                    _ => None,
                }
            }
        })*
    };
}

ranked!(1 => R1, 2 => R2, 3 => R3, 4 => R4, 5 => R5, 6 => R6);

impl Val {
    /// The ONNX dimensions.
    pub fn dims(&self) -> Vec<usize> {
        with_tensor!(self, t => t.dims().to_vec())
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        match self {
            Val::R1(_) => 1,
            Val::R2(_) => 2,
            Val::R3(_) => 3,
            Val::R4(_) => 4,
            Val::R5(_) => 5,
            Val::R6(_) => 6,
        }
    }

    /// The same data with dimensions `dims` (of the same number of elements); itself when it
    /// has them already.
    fn reshape(self, dims: &[usize]) -> Result<Val, String> {
        if dims == self.dims().as_slice() {
            return Ok(self);
        }
        with_tensor!(self, t => reshaped(t, dims))
    }

    /// The value with leading dimensions of size 1 up to rank `rank`.
    fn lift(self, rank: usize) -> Result<Val, String> {
        if self.rank() >= rank {
            return Ok(self);
        }
        let mut dims = vec![1; rank - self.rank()];
        dims.extend(self.dims());
        self.reshape(&dims)
    }

    /// The tensor of a value of rank `D`.
    fn tensor<const D: usize>(self) -> Result<Tensor<D>, String>
    where
        Tensor<D>: Ranked,
    {
        let dims = self.dims();
        Tensor::<D>::from_val(self).ok_or_else(|| format!("expects a value of rank {D}, got shape {dims:?}"))
    }

    /// The tensor of an image batch `[N, C, H, W]`.
    fn images(self) -> Result<Tensor<4>, String> {
        let dims = self.dims();
        Tensor::<4>::from_val(self).ok_or_else(|| format!("expects a 4-D value [N, C, H, W], got shape {dims:?}"))
    }
}

/// `t` reshaped to `dims` (of the same number of elements; `[]` is held as `[1]`).
fn reshaped<const D: usize>(t: Tensor<D>, dims: &[usize]) -> Result<Val, String> {
    Ok(match *dims {
        [] => Val::R1(t.reshape([1])),
        [a] => Val::R1(t.reshape([a])),
        [a, b] => Val::R2(t.reshape([a, b])),
        [a, b, c] => Val::R3(t.reshape([a, b, c])),
        [a, b, c, d] => Val::R4(t.reshape([a, b, c, d])),
        [a, b, c, d, e] => Val::R5(t.reshape([a, b, c, d, e])),
        [a, b, c, d, e, f] => Val::R6(t.reshape([a, b, c, d, e, f])),
        _ => return Err(format!("a value of shape {dims:?} (rank at most {MAX_RANK})")),
    })
}

/// The first `D` entries of `v` (which has at least `D`).
fn array<const D: usize>(v: &[usize]) -> [usize; D] {
    std::array::from_fn(|i| v[i])
}

/// A constant of the graph at its rank, a parameter of the model.
#[derive(Module, Debug)]
pub enum Constant {
    R1(Param<Tensor<1>>),
    R2(Param<Tensor<2>>),
    R3(Param<Tensor<3>>),
    R4(Param<Tensor<4>>),
    R5(Param<Tensor<5>>),
    R6(Param<Tensor<6>>),
}

impl Constant {
    /// The constant of shape `shape` (rank 1 to [`MAX_RANK`]) holding `values`, on `device`.
    pub fn new(values: Vec<f32>, shape: &[usize], device: &Device) -> Result<Constant, String> {
        let data = TensorData::new(values, shape.to_vec());
        Ok(match shape.len() {
            1 => Constant::R1(Param::from_data(data, device)),
            2 => Constant::R2(Param::from_data(data, device)),
            3 => Constant::R3(Param::from_data(data, device)),
            4 => Constant::R4(Param::from_data(data, device)),
            5 => Constant::R5(Param::from_data(data, device)),
            6 => Constant::R6(Param::from_data(data, device)),
            _ => return Err(format!("a constant of shape {shape:?} (rank 1 to {MAX_RANK})")),
        })
    }

    /// The constant as a value.
    pub fn val(&self) -> Val {
        match self {
            Constant::R1(p) => Val::R1(p.val()),
            Constant::R2(p) => Val::R2(p.val()),
            Constant::R3(p) => Val::R3(p.val()),
            Constant::R4(p) => Val::R4(p.val()),
            Constant::R5(p) => Val::R5(p.val()),
            Constant::R6(p) => Val::R6(p.val()),
        }
    }
}

/// The tensors a program reads, as held by the model.
pub struct Tensors<'a> {
    pub kernels: &'a [Param<Tensor<4>>],
    pub matrices: &'a [Param<Tensor<2>>],
    pub biases: &'a [Param<Tensor<1>>],
    pub consts: &'a [Constant],
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

/// The values computed so far and the tensors of the model.
struct Env<'a> {
    slots: Vec<Option<Val>>,
    tensors: &'a Tensors<'a>,
}

impl Env<'_> {
    /// The value in `slot`, moved out when `step` is its last reader.
    fn get(&mut self, slot: usize, step: &Step) -> Result<Val, String> {
        let held = if step.take.contains(&slot) {
            self.slots[slot].take()
        } else {
            self.slots[slot].clone()
        };
        held.ok_or_else(|| "reads a value that was never computed".into())
    }

    fn operand(&mut self, o: Operand, step: &Step) -> Result<Val, String> {
        match o {
            Operand::Slot(s) => self.get(s, step),
            Operand::Const(i) => Ok(self.tensors.consts[i].val()),
        }
    }
}

/// Runs `program` on `input` (`[N, C, H, W]`). Returns the output value and the
/// multiply-adds of the convolutions and matrix products per image.
pub fn run(program: &Program, tensors: &Tensors, input: Tensor<4>) -> Result<(Val, u64), EvalError> {
    let batch = input.dims()[0];
    let mut env = Env {
        slots: vec![None; program.slots],
        tensors,
    };
    env.slots[0] = Some(Val::R4(input));
    let mut macs = 0u64;
    for step in &program.steps {
        let out = apply(program, step, &mut env, batch, &mut macs).map_err(|reason| EvalError {
            node: step.node.clone(),
            reason,
        })?;
        for &s in &step.release {
            env.slots[s] = None;
        }
        env.slots[step.out] = Some(out);
    }
    let out = env.slots[program.output].take().ok_or_else(|| EvalError {
        node: "output".into(),
        reason: "the output was never computed".into(),
    })?;
    Ok((out, macs / batch.max(1) as u64))
}

/// The value `step` computes (on a batch of `batch` images), its multiply-adds added to `macs`.
fn apply(program: &Program, step: &Step, env: &mut Env, batch: usize, macs: &mut u64) -> Result<Val, String> {
    let tensors = env.tensors;
    Ok(match &step.op {
        Op::Conv {
            x,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
        } => {
            let x = env.get(*x, step)?.images()?;
            let [n, c, h, w] = x.dims();
            let kernel = tensors.kernels[*weight].val();
            let [o, cg, kh, kw] = kernel.dims();
            if c != cg * groups || !o.is_multiple_of(*groups) {
                return Err(format!(
                    "a convolution of {cg}x{groups} input channels (kernel {o}x{cg}x{kh}x{kw}, {groups} groups) applied to {c} channels"
                ));
            }
            let pads = resolve(*padding, [h, w], [kh, kw], *stride, *dilation);
            check_per_image(
                &[c, h + pads[0].0 + pads[0].1, w + pads[1].0 + pads[1].1],
                "a padded convolution input",
            )?;
            let [oh, ow] = out_size([h, w], [kh, kw], *stride, *dilation, pads, false)?;
            check_per_image(&[o, oh, ow], "a convolution output")?;
            *macs += (oh * ow * o * cg * kh * kw) as u64 * n as u64;
            let options = ConvOptions::new_with_padding(*stride, pads, *dilation, *groups);
            let bias = bias.map(|b| tensors.biases[b].val());
            Val::R4(conv2d(x, kernel, bias, options))
        }
        Op::Linear { x, weight, bias } => {
            let x = env.get(*x, step)?;
            let w = tensors.matrices[*weight].val();
            let [inp, outp] = w.dims();
            let dims = x.dims();
            if dims.last() != Some(&inp) {
                return Err(format!(
                    "a linear layer of {inp} inputs applied to a value of shape {dims:?}"
                ));
            }
            let rows: usize = dims[..dims.len() - 1].iter().product();
            *macs += (rows * inp * outp) as u64;
            let y = linear(
                x.reshape(&[rows, inp])?.tensor::<2>()?,
                w,
                bias.map(|b| tensors.biases[b].val()),
            );
            let mut out_dims = dims;
            *out_dims.last_mut().expect("rank at least 1") = outp;
            Val::R2(y).reshape(&out_dims)?
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
            let matrix = |v: Val| {
                v.tensor::<2>()
                    .map_err(|_| "Gemm of values that are not matrices".to_string())
            };
            let a = matrix(env.operand(*a, step)?)?;
            let b = matrix(env.operand(*b, step)?)?;
            let a = if *trans_a { a.transpose() } else { a };
            let b = if *trans_b { b.transpose() } else { b };
            let ([m, k], [k2, nn]) = (a.dims(), b.dims());
            if k != k2 {
                return Err(format!("Gemm of [{m}, {k}] by [{k2}, {nn}]"));
            }
            *macs += (m * k * nn) as u64;
            let mut y = a.matmul(b);
            if *alpha != 1.0 {
                y = y.mul_scalar(*alpha);
            }
            if let Some(c) = c {
                let c = env.operand(*c, step)?;
                if c.rank() > 2 || broadcast(&[m, nn], &c.dims())? != [m, nn] {
                    return Err(format!("Gemm of shape [{m}, {nn}] plus shape {:?}", c.dims()));
                }
                let c = c.lift(2)?.tensor::<2>()?;
                y = y + if *beta != 1.0 { c.mul_scalar(*beta) } else { c };
            }
            Val::R2(y)
        }
        Op::MatMul { a, b } => {
            let (a, b) = (env.operand(*a, step)?, env.operand(*b, step)?);
            let r = a.rank().max(b.rank());
            let (a, b) = (a.lift(r)?, b.lift(r)?);
            let (da, db) = (a.dims(), b.dims());
            if r < 2 || da[r - 1] != db[r - 2] {
                return Err(format!("MatMul of {da:?} by {db:?}"));
            }
            let mut sa = broadcast(&da[..r - 2], &db[..r - 2])?;
            let mut sb = sa.clone();
            sa.extend(&da[r - 2..]);
            sb.extend(&db[r - 2..]);
            let rows: usize = sa[..r - 1].iter().product();
            *macs += (rows * da[r - 1] * db[r - 1]) as u64;
            zip_tensors!(a, b, x, y => expand_to(x, &sa).matmul(expand_to(y, &sb)))
                .ok_or("MatMul of values of different ranks")?
        }
        Op::Affine { x, scale, shift } => {
            let x = env.get(*x, step)?;
            let (scale, shift) = (env.operand(*scale, step)?, env.operand(*shift, step)?);
            let channels = scale.dims().iter().product::<usize>();
            if x.dims().get(1) != Some(&channels) {
                return Err(format!(
                    "a batch norm of {channels} channels applied to a value of shape {:?}",
                    x.dims()
                ));
            }
            binary(binary(x, scale, Binary::Mul)?, shift, Binary::Add)?
        }
        Op::Unary { x, f } => map_tensor!(env.get(*x, step)?, t => unary(t, *f)),
        Op::Binary { a, b, f } => {
            let (a, b) = (env.operand(*a, step)?, env.operand(*b, step)?);
            binary(a, b, *f)?
        }
        Op::MaxPool {
            x,
            kernel,
            stride,
            padding,
            dilation,
            ceil,
        } => {
            let x = env.get(*x, step)?.images()?;
            let [_, _, h, w] = x.dims();
            let pads = resolve(*padding, [h, w], *kernel, *stride, *dilation);
            out_size([h, w], *kernel, *stride, *dilation, pads, *ceil)?;
            let [(top, bottom), (left, right)] = pads;
            let layer = MaxPool2d {
                stride: *stride,
                kernel_size: *kernel,
                padding: PaddingConfig2d::Explicit(top, left, bottom, right),
                dilation: *dilation,
                ceil_mode: *ceil,
            };
            Val::R4(max_pool2d_layer(&layer, x))
        }
        Op::AvgPool {
            x,
            kernel,
            stride,
            padding,
            count_include_pad,
            ceil,
        } => {
            let x = env.get(*x, step)?.images()?;
            let [_, _, h, w] = x.dims();
            let pads = resolve(*padding, [h, w], *kernel, *stride, [1, 1]);
            out_size([h, w], *kernel, *stride, [1, 1], pads, *ceil)?;
            let options = AvgPoolOptions::new(*kernel)
                .with_stride(*stride)
                .with_padding_pairs(pads)
                .with_count_include_pad(*count_include_pad)
                .with_ceil_mode(*ceil);
            Val::R4(avg_pool2d(x, options))
        }
        Op::GlobalAvgPool { x } => {
            let x = env.get(*x, step)?;
            if x.rank() < 3 {
                return Err(format!("global pooling of a value of shape {:?}", x.dims()));
            }
            let axes: Vec<usize> = (2..x.rank()).collect();
            map_tensor!(x, t => t.mean_dims(&axes))
        }
        Op::ReduceMean { x, axes, keepdims } => {
            let x = env.get(*x, step)?;
            let (dims, rank) = (x.dims(), x.rank());
            let axes: Vec<usize> = if axes.is_empty() {
                (0..rank).collect()
            } else {
                axes.clone()
            };
            if axes.iter().any(|&a| a >= rank) {
                return Err(format!("a mean over axes {axes:?} of a value of shape {dims:?}"));
            }
            let y = map_tensor!(x, t => t.mean_dims(&axes));
            if *keepdims {
                y
            } else {
                let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).map(|i| dims[i]).collect();
                y.reshape(&kept)?
            }
        }
        Op::Flatten { x, axis } => {
            let x = env.get(*x, step)?;
            let dims = x.dims();
            let axis = (*axis).min(dims.len());
            let outer: usize = dims[..axis].iter().product();
            let inner: usize = dims[axis..].iter().product();
            x.reshape(&[outer, inner])?
        }
        Op::Reshape { x, shape, allow_zero } => {
            let x = env.get(*x, step)?;
            let dims = x.dims();
            let mut target = shape.clone();
            // A graph exported for a fixed batch size: its batch dimension follows the images.
            if let Some(fixed) = program.input_shape.first().copied().flatten()
                && fixed != batch
                && target.first() == Some(&(fixed as i64))
                && dims.first() == Some(&batch)
            {
                target[0] = batch as i64;
            }
            let out = reshape_dims(&dims, &target, *allow_zero)?;
            x.reshape(&out)?
        }
        Op::Transpose { x, perm } => {
            let x = env.get(*x, step)?;
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..x.rank()).collect::<Vec<_>>() {
                return Err(format!("a permutation {perm:?} of a value of rank {}", x.rank()));
            }
            map_tensor!(x, t => t.permute(array(perm)))
        }
        Op::Concat { inputs, axis } => {
            let vals = inputs
                .iter()
                .map(|o| env.operand(*o, step))
                .collect::<Result<Vec<_>, _>>()?;
            let first = vals.first().ok_or("a concatenation of nothing")?.dims();
            for v in &vals {
                let d = v.dims();
                let fits = d.len() == first.len()
                    && *axis < d.len()
                    && d.iter().zip(&first).enumerate().all(|(i, (a, b))| i == *axis || a == b);
                if !fits {
                    return Err(format!("concatenation of shapes {first:?} and {d:?} on axis {axis}"));
                }
            }
            match first.len() {
                1 => concat::<1>(vals, *axis),
                2 => concat::<2>(vals, *axis),
                3 => concat::<3>(vals, *axis),
                4 => concat::<4>(vals, *axis),
                5 => concat::<5>(vals, *axis),
                _ => concat::<6>(vals, *axis),
            }
            .ok_or("concatenation of values of different ranks")?
        }
        Op::Pad { x, pads, mode } => {
            let x = env.get(*x, step)?;
            let dims = x.dims();
            if pads.len() != dims.len() {
                return Err(format!(
                    "{} padding pairs for a value of rank {}",
                    pads.len(),
                    dims.len()
                ));
            }
            let fits = |&(&(a, b), &d): &(&(usize, usize), &usize)| match mode {
                PadKind::Constant(_) => true,
                PadKind::Reflect => a < d && b < d,
                PadKind::Edge => d > 0 || (a == 0 && b == 0),
            };
            if !pads.iter().zip(&dims).all(|p| fits(&p)) {
                return Err(format!("padding {pads:?} ({mode:?}) of a value of shape {dims:?}"));
            }
            let padded: Vec<usize> = dims
                .iter()
                .zip(pads)
                .map(|(&d, &(a, b))| d.saturating_add(a).saturating_add(b))
                .collect();
            check_per_image(&padded[1..], "a padded value")?;
            let mode = match mode {
                PadKind::Constant(v) => PadMode::Constant(*v),
                PadKind::Reflect => PadMode::Reflect,
                PadKind::Edge => PadMode::Edge,
            };
            map_tensor!(x, t => t.pad(pads.clone(), mode))
        }
        Op::Softmax { x, axis } => {
            let x = env.get(*x, step)?;
            if *axis >= x.rank() {
                return Err(format!("a softmax on axis {axis} of a value of rank {}", x.rank()));
            }
            map_tensor!(x, t => activation::softmax(t, *axis))
        }
    })
}

/// An element-wise function of a tensor.
fn unary<const D: usize>(t: Tensor<D>, f: Unary) -> Tensor<D> {
    match f {
        Unary::Relu => activation::relu(t),
        Unary::Sigmoid => activation::sigmoid(t),
        Unary::Tanh => activation::tanh(t),
        Unary::Neg => t.neg(),
        Unary::HardSigmoid { alpha, beta } => activation::hard_sigmoid(t, alpha, beta),
        Unary::HardSwish => activation::hard_swish(t),
        Unary::LeakyRelu { alpha } => activation::leaky_relu(t, alpha),
        Unary::Clip { min, max } => match (min, max) {
            (Some(lo), Some(hi)) => t.clamp(lo, hi),
            (Some(lo), None) => t.clamp_min(lo),
            (None, Some(hi)) => t.clamp_max(hi),
            (None, None) => t,
        },
    }
}

/// An element-wise function of two values, with ONNX broadcasting.
fn binary(a: Val, b: Val, f: Binary) -> Result<Val, String> {
    broadcast(&a.dims(), &b.dims())?;
    let rank = a.rank().max(b.rank());
    let (a, b) = (a.lift(rank)?, b.lift(rank)?);
    let out = zip_tensors!(a, b, x, y => match f {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
    });
    out.ok_or_else(|| "an element-wise operation on values of different ranks".into())
}

/// `t` broadcast to `dims` (its own when it has them).
fn expand_to<const D: usize>(t: Tensor<D>, dims: &[usize]) -> Tensor<D> {
    if t.dims()[..] == dims[..] {
        t
    } else {
        t.expand(array::<D>(dims))
    }
}

/// The concatenation on `axis` of values of rank `D`.
fn concat<const D: usize>(vals: Vec<Val>, axis: usize) -> Option<Val>
where
    Tensor<D>: Ranked,
{
    let tensors = vals
        .into_iter()
        .map(Tensor::<D>::from_val)
        .collect::<Option<Vec<_>>>()?;
    Some(Tensor::cat(tensors, axis).into_val())
}

/// The logits `[N, K]` of an output value (trailing dimensions of size 1 dropped).
pub fn logits(out: Val) -> Result<Tensor<2>, String> {
    let dims = out.dims();
    match dims.as_slice() {
        [_, _] => out.tensor::<2>(),
        [n, k, rest @ ..] if rest.iter().all(|&d| d == 1) => out.reshape(&[*n, *k])?.tensor::<2>(),
        _ => Err(format!("the graph's output has shape {dims:?}, not [batch, classes]")),
    }
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

/// Most values per image that one operation may make: 64M (256 MiB of f32), far above any
/// layer of the usual architectures (ResNet-50's largest holds 0.8M per image), so that sizes
/// written in a file (a Pad of 100 000, say) are refused before they are allocated.
pub const MAX_VALUES_PER_IMAGE: usize = 64 << 20;

/// Refuses `what`, of shape `per_image` for each image of the batch, when it would hold more
/// than [`MAX_VALUES_PER_IMAGE`] values.
fn check_per_image(per_image: &[usize], what: &str) -> Result<(), String> {
    let values = per_image.iter().fold(1usize, |n, &d| n.saturating_mul(d));
    match values > MAX_VALUES_PER_IMAGE {
        true => Err(format!(
            "{what} of {per_image:?} per image holds more than the {MAX_VALUES_PER_IMAGE} values anu allows"
        )),
        false => Ok(()),
    }
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
            let needed = (out.max(1) - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1;
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
