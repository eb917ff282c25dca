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

use burn::tensor::{Int, Slice};

use super::graph::{Binary, Compare, MAX_RANK, Op, Operand, PadKind, Padding, Program, Step, Unary};
use super::host::{CastTo, HostData, HostTensor, Reduce, broadcast, norm_axis, range_len, slice_ranges};
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

/// A value at run time: a tensor (on the model's device, differentiated by burn) or host
/// values computed from shapes.
// Tensors, the common case, are held unboxed: a graph step moves them and boxing would
// allocate at every step.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Value {
    Tensor(Val),
    Host(HostTensor),
}

/// A host tensor as a float tensor on `device` (a scalar as a vector of one element).
fn upload(h: &HostTensor, device: &Device) -> Result<Val, String> {
    let dims = if h.dims.is_empty() { vec![1] } else { h.dims.clone() };
    Ok(Constant::new(h.to_f32(), &dims, device)?.val())
}

/// A tensor's values in host memory (for the rare graph that reads a computed tensor as a
/// shape or index).
fn download(v: Val) -> Result<HostTensor, String> {
    let dims = v.dims();
    let data = with_tensor!(v, t => t.into_data());
    let values = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    Ok(HostTensor::floats(dims, values))
}

/// The values computed so far and the tensors of the model.
struct Env<'a> {
    slots: Vec<Option<Value>>,
    tensors: &'a Tensors<'a>,
    hosts: &'a [HostTensor],
    device: Device,
}

impl Env<'_> {
    /// The value in `slot`, moved out when `step` is its last reader.
    fn get(&mut self, slot: usize, step: &Step) -> Result<Value, String> {
        let held = if step.take.contains(&slot) {
            self.slots[slot].take()
        } else {
            self.slots[slot].clone()
        };
        held.ok_or_else(|| "reads a value that was never computed".into())
    }

    fn value(&mut self, o: Operand, step: &Step) -> Result<Value, String> {
        match o {
            Operand::Slot(s) => self.get(s, step),
            Operand::Const(i) => Ok(Value::Tensor(self.tensors.consts[i].val())),
            Operand::Host(i) => Ok(Value::Host(self.hosts[i].clone())),
        }
    }

    /// An operand as a tensor.
    fn operand(&mut self, o: Operand, step: &Step) -> Result<Val, String> {
        match self.value(o, step)? {
            Value::Tensor(v) => Ok(v),
            Value::Host(h) => upload(&h, &self.device),
        }
    }

    /// An operand as host values.
    fn host(&mut self, o: Operand, step: &Step) -> Result<HostTensor, String> {
        match self.value(o, step)? {
            Value::Host(h) => Ok(h),
            Value::Tensor(v) => download(v),
        }
    }

    /// An operand read as integers.
    fn ints(&mut self, o: Operand, step: &Step) -> Result<Vec<i64>, String> {
        Ok(self.host(o, step)?.to_i64())
    }

    fn opt_ints(&mut self, o: Option<Operand>, step: &Step) -> Result<Option<Vec<i64>>, String> {
        o.map(|o| self.ints(o, step)).transpose()
    }
}

/// Runs `program` on `input` (`[N, C, H, W]`). Returns the output value and the
/// multiply-adds of the convolutions and matrix products per image.
pub fn run(program: &Program, tensors: &Tensors, input: Tensor<4>) -> Result<(Val, u64), EvalError> {
    let batch = input.dims()[0];
    let mut env = Env {
        slots: vec![None; program.slots],
        tensors,
        hosts: &program.hosts,
        device: input.device(),
    };
    env.slots[0] = Some(Value::Tensor(Val::R4(input)));
    let mut macs = 0u64;
    for step in &program.steps {
        let result = match step.host {
            true => host_op(&step.op, &mut |o| env.host(o, step)).map(Value::Host),
            false => apply(program, step, &mut env, batch, &mut macs),
        };
        let out = result.map_err(|reason| EvalError {
            node: step.node.clone(),
            reason,
        })?;
        for &s in &step.release {
            env.slots[s] = None;
        }
        env.slots[step.out] = Some(out);
    }
    let out = match env.slots[program.output].take() {
        Some(Value::Tensor(v)) => v,
        _ => {
            return Err(EvalError {
                node: "output".into(),
                reason: "the output is not a tensor computed from the images".into(),
            });
        }
    };
    Ok((out, macs / batch.max(1) as u64))
}

/// The value of `op`, all of whose operands are host constants (indices into `hosts`), on the
/// host: how a graph's constant parts are computed when it is compiled.
pub fn host_apply(op: &Op, hosts: &[HostTensor]) -> Result<HostTensor, String> {
    host_op(op, &mut |o| match o {
        Operand::Host(i) => Ok(hosts[i].clone()),
        _ => Err("an operand that is not a constant".into()),
    })
}

/// The dimensions kept by Squeeze with `axes` (all of size 1 when absent).
fn squeeze_dims(dims: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let axes: Vec<usize> = match axes {
        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        Some(a) => a.iter().map(|&a| norm_axis(a, dims.len())).collect::<Result<_, _>>()?,
    };
    if let Some(&a) = axes.iter().find(|&&a| dims[a] != 1) {
        return Err(format!("a squeeze of axis {a} of shape {dims:?}"));
    }
    Ok((0..dims.len()).filter(|i| !axes.contains(i)).map(|i| dims[i]).collect())
}

/// The dimensions given by Unsqueeze with `axes` (positions in the output).
fn unsqueeze_dims(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let rank = dims.len() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    if axes.len() + dims.len() != rank {
        return Err(format!("repeated unsqueeze axes for shape {dims:?}"));
    }
    let mut rest = dims.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *rest.next().expect("counted")
            }
        })
        .collect())
}

/// The sizes of the parts of Split on an axis of `d`.
fn split_sizes(d: usize, parts: usize, split: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let sizes: Vec<usize> = match split {
        Some(s) => s
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| format!("split sizes {s:?}")))
            .collect::<Result<_, _>>()?,
        None => {
            let each = d.div_ceil(parts.max(1));
            (0..parts).map(|i| each.min(d.saturating_sub(i * each))).collect()
        }
    };
    if sizes.len() != parts || sizes.iter().sum::<usize>() != d {
        return Err(format!("a split of an axis of {d} into {sizes:?} ({parts} outputs)"));
    }
    Ok(sizes)
}

/// The axes a reduction runs over; `None` when it is the identity.
fn reduce_axes(rank: usize, axes: Option<&[i64]>, noop_empty: bool) -> Result<Option<Vec<usize>>, String> {
    match axes {
        Some(a) if !a.is_empty() => {
            let mut v: Vec<usize> = a.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?;
            v.sort_unstable();
            v.dedup();
            Ok(Some(v))
        }
        _ if noop_empty => Ok(None),
        _ => Ok(Some((0..rank).collect())),
    }
}

/// The dimensions of Shape from `start` to `end`.
fn shape_range(dims: &[usize], start: i64, end: Option<i64>) -> Vec<i64> {
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    dims[s..e.max(s)].iter().map(|&d| d as i64).collect()
}

/// The padding pairs of every dimension of a value of `rank` from ONNX `pads` (begins, then
/// ends, of `axes` or of all dimensions).
fn pad_pairs(rank: usize, pads: &[i64], axes: Option<&[i64]>) -> Result<Vec<(usize, usize)>, String> {
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} dimensions", pads.len(), axes.len()));
    }
    if pads.iter().any(|&p| p < 0) {
        return Err(format!("negative pads {pads:?} (cropping is not supported)"));
    }
    let mut pairs = vec![(0, 0); rank];
    for (i, &a) in axes.iter().enumerate() {
        pairs[a] = (pads[i] as usize, pads[i + axes.len()] as usize);
    }
    Ok(pairs)
}

/// The dimensions of Flatten at `axis`.
fn flatten_dims(dims: &[usize], axis: i64) -> Result<[usize; 2], String> {
    let r = dims.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&a) {
        return Err(format!("a flatten at axis {axis} of a value of rank {r}"));
    }
    let a = a as usize;
    Ok([dims[..a].iter().product(), dims[a..].iter().product()])
}

/// The dimensions of ONNX Range.
fn range_values(start: &HostTensor, limit: &HostTensor, delta: &HostTensor) -> Result<HostTensor, String> {
    let count = |s: f64, l: f64, d: f64| -> Result<usize, String> {
        if d == 0.0 {
            return Err("a range with step 0".into());
        }
        let n = ((l - s) / d).ceil().max(0.0);
        match n <= MAX_VALUES_PER_IMAGE as f64 {
            true => Ok(n as usize),
            false => Err(format!("a range of {n} values")),
        }
    };
    Ok(match (&start.data, &limit.data, &delta.data) {
        (HostData::I64(s), HostData::I64(l), HostData::I64(d)) => {
            let (s, l, d) = (s[0], l[0], d[0]);
            let n = count(s as f64, l as f64, d as f64)?;
            HostTensor::ints(vec![n], (0..n as i64).map(|i| s + i * d).collect())
        }
        _ => {
            let (s, l, d) = (start.to_f32()[0], limit.to_f32()[0], delta.to_f32()[0]);
            let n = count(s as f64, l as f64, d as f64)?;
            HostTensor::floats(vec![n], (0..n).map(|i| s + i as f32 * d).collect())
        }
    })
}

/// An integer function of ONNX's integer arithmetic.
fn int_binary(f: Binary) -> impl Fn(i64, i64) -> Result<i64, String> {
    move |x: i64, y: i64| {
        let r = match f {
            Binary::Add => x.checked_add(y),
            Binary::Sub => x.checked_sub(y),
            Binary::Mul => x.checked_mul(y),
            Binary::Div => x.checked_div(y),
            Binary::Pow => u32::try_from(y).ok().and_then(|e| x.checked_pow(e)),
            Binary::Mod => x
                .checked_rem(y)
                .map(|r| if r != 0 && (r < 0) != (y < 0) { r + y } else { r }),
        };
        r.ok_or_else(|| format!("integer overflow or division by zero in {x} {f:?} {y}"))
    }
}

fn float_binary(f: Binary) -> impl Fn(f32, f32) -> f32 {
    move |x: f32, y: f32| match f {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        Binary::Pow => x.powf(y),
        Binary::Mod => x - y * (x / y).floor(),
    }
}

fn compare_fn(f: Compare) -> impl Fn(f64, f64) -> bool {
    move |x: f64, y: f64| match f {
        Compare::Equal => x == y,
        Compare::Less => x < y,
        Compare::Greater => x > y,
        Compare::LessOrEqual => x <= y,
        Compare::GreaterOrEqual => x >= y,
    }
}

/// The value of an operation of [`Op::runs_on_host`] on host values, with `get` giving its
/// operands.
fn host_op(op: &Op, get: &mut dyn FnMut(Operand) -> Result<HostTensor, String>) -> Result<HostTensor, String> {
    let ints = |o: Operand, get: &mut dyn FnMut(Operand) -> Result<HostTensor, String>| get(o).map(|t| t.to_i64());
    Ok(match op {
        Op::Unary { x, f } => {
            let x = get(*x)?;
            let int = matches!(x.data, HostData::I64(_));
            match f {
                Unary::Neg => x.neg(),
                Unary::Not => HostTensor::ints(x.dims.clone(), x.to_i64().iter().map(|&v| (v == 0) as i64).collect()),
                Unary::Abs if int => HostTensor::ints(x.dims.clone(), x.to_i64().iter().map(|v| v.abs()).collect()),
                Unary::Relu if int => HostTensor::ints(x.dims.clone(), x.to_i64().iter().map(|&v| v.max(0)).collect()),
                Unary::Abs => x.map_f32(f32::abs),
                Unary::Relu => x.map_f32(|v| v.max(0.0)),
                Unary::Sqrt => x.map_f32(f32::sqrt),
                Unary::Exp => x.map_f32(f32::exp),
                Unary::Log => x.map_f32(f32::ln),
                Unary::Reciprocal => x.map_f32(|v| 1.0 / v),
                other => return Err(format!("{other:?} on host values")),
            }
        }
        Op::Binary { a, b, f } => HostTensor::zip(&get(*a)?, &get(*b)?, int_binary(*f), float_binary(*f))?,
        Op::Compare { a, b, f } => HostTensor::compare(&get(*a)?, &get(*b)?, compare_fn(*f))?,
        Op::Where { cond, a, b } => HostTensor::select(&get(*cond)?, &get(*a)?, &get(*b)?)?,
        Op::Reduce {
            x,
            axes,
            keepdims,
            noop_empty,
            f,
        } => {
            let x = get(*x)?;
            let axes = axes.map(|a| ints(a, get)).transpose()?;
            match reduce_axes(x.dims.len(), axes.as_deref(), *noop_empty)? {
                None => x,
                Some(axes) => x.reduce(&axes, *keepdims, *f),
            }
        }
        Op::Flatten { x, axis } => {
            let x = get(*x)?;
            let dims = flatten_dims(&x.dims, *axis)?;
            x.reshape(dims.to_vec())?
        }
        Op::Reshape { x, shape, allow_zero } => {
            let x = get(*x)?;
            let target = ints(*shape, get)?;
            let dims = reshape_dims(&x.dims, &target, *allow_zero)?;
            x.reshape(dims)?
        }
        Op::Transpose { x, perm } => {
            let x = get(*x)?;
            let perm = perm.clone().unwrap_or_else(|| (0..x.dims.len()).rev().collect());
            x.transpose(&perm)?
        }
        Op::Concat { inputs, axis } => {
            let parts = inputs.iter().map(|o| get(*o)).collect::<Result<Vec<_>, _>>()?;
            let rank = parts.first().ok_or("a concatenation of nothing")?.dims.len();
            let float = parts.iter().any(|p| matches!(p.data, HostData::F32(_)));
            let parts: Vec<HostTensor> = parts.into_iter().map(|p| p.cast(CastTo::float_if(float))).collect();
            HostTensor::concat(&parts, norm_axis(*axis, rank)?)?
        }
        Op::Shape { x, start, end } => {
            let dims = get(*x)?.dims;
            let v = shape_range(&dims, *start, *end);
            HostTensor::ints(vec![v.len()], v)
        }
        Op::Size { x } => HostTensor::ints(vec![], vec![get(*x)?.len() as i64]),
        Op::Gather { x, indices, axis } => {
            let x = get(*x)?;
            let axis = norm_axis(*axis, x.dims.len())?;
            x.gather(axis, &get(*indices)?)?
        }
        Op::Slice {
            x,
            starts,
            ends,
            axes,
            steps,
        } => {
            let x = get(*x)?;
            let (starts, ends) = (ints(*starts, get)?, ints(*ends, get)?);
            let axes = axes.map(|a| ints(a, get)).transpose()?;
            let steps = steps.map(|s| ints(s, get)).transpose()?;
            let ranges = slice_ranges(&x.dims, &starts, &ends, axes.as_deref(), steps.as_deref())?;
            x.slice(&ranges)
        }
        Op::Split {
            x,
            axis,
            split,
            parts,
            index,
        } => {
            let x = get(*x)?;
            let axis_n = norm_axis(*axis, x.dims.len())?;
            let split = split.map(|s| ints(s, get)).transpose()?;
            let sizes = split_sizes(x.dims[axis_n], *parts, split.as_deref())?;
            let start: usize = sizes[..*index].iter().sum();
            let mut ranges: Vec<(i64, i64, i64)> = x.dims.iter().map(|&d| (0, d as i64, 1)).collect();
            ranges[axis_n] = (start as i64, (start + sizes[*index]) as i64, 1);
            x.slice(&ranges)
        }
        Op::Squeeze { x, axes } => {
            let x = get(*x)?;
            let axes = axes.map(|a| ints(a, get)).transpose()?;
            let dims = squeeze_dims(&x.dims, axes.as_deref())?;
            x.reshape(dims)?
        }
        Op::Unsqueeze { x, axes } => {
            let x = get(*x)?;
            let dims = unsqueeze_dims(&x.dims, &ints(*axes, get)?)?;
            x.reshape(dims)?
        }
        Op::Expand { x, shape } => {
            let x = get(*x)?;
            let shape = dims_of(&ints(*shape, get)?)?;
            x.expand(&shape)?
        }
        Op::Tile { x, repeats } => {
            let x = get(*x)?;
            let repeats = dims_of(&ints(*repeats, get)?)?;
            if repeats.len() != x.dims.len() {
                return Err(format!(
                    "{} repeats for a value of rank {}",
                    repeats.len(),
                    x.dims.len()
                ));
            }
            let mut t = x;
            for (axis, &n) in repeats.iter().enumerate() {
                if n != 1 {
                    let parts = vec![t; n];
                    t = HostTensor::concat(&parts, axis)?;
                }
            }
            t
        }
        Op::Cast { x, to } => get(*x)?.cast(*to),
        Op::ScatterNd { x, indices, updates } => get(*x)?.scatter_nd(&get(*indices)?, &get(*updates)?)?,
        Op::ConstantOfShape { shape, value } => {
            let dims = dims_of(&ints(*shape, get)?)?;
            let total = dims
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .unwrap_or(usize::MAX);
            if total > MAX_VALUES_PER_IMAGE {
                return Err(format!("a constant of shape {dims:?}"));
            }
            HostTensor {
                data: match &value.data {
                    HostData::F32(v) => HostData::F32(vec![v.first().copied().unwrap_or(0.0); total]),
                    HostData::I64(v) => HostData::I64(vec![v.first().copied().unwrap_or(0); total]),
                },
                dims,
            }
        }
        Op::Range { start, limit, delta } => range_values(&get(*start)?, &get(*limit)?, &get(*delta)?)?,
        other => return Err(format!("{other:?} does not run on host values")),
    })
}

/// Non-negative integers as dimensions.
fn dims_of(v: &[i64]) -> Result<Vec<usize>, String> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("a shape {v:?} with a negative dimension")))
        .collect()
}

/// The value `step` computes (on a batch of `batch` images), its multiply-adds added to `macs`.
fn apply(program: &Program, step: &Step, env: &mut Env, batch: usize, macs: &mut u64) -> Result<Value, String> {
    let tensors = env.tensors;
    let images = |v: Value| match v {
        Value::Tensor(v) => v.images(),
        Value::Host(_) => Err("expects an image batch computed from the graph's input".to_string()),
    };
    Ok(Value::Tensor(match &step.op {
        Op::Conv {
            x,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
        } => {
            let x = images(env.get(*x, step)?)?;
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
            let x = env.operand(Operand::Slot(*x), step)?;
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
            if a.rank() < 2 || b.rank() < 2 {
                return Err(format!(
                    "MatMul of {:?} by {:?} (vectors are not supported)",
                    a.dims(),
                    b.dims()
                ));
            }
            let (a, b) = (a.lift(r)?, b.lift(r)?);
            let (da, db) = (a.dims(), b.dims());
            if da[r - 1] != db[r - 2] {
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
            let x = env.operand(Operand::Slot(*x), step)?;
            let (scale, shift) = (env.operand(*scale, step)?, env.operand(*shift, step)?);
            let channels = scale.dims().iter().product::<usize>();
            let dims = x.dims();
            if dims.len() < 2 || dims[1] != channels {
                return Err(format!(
                    "a batch norm of {channels} channels applied to a value of shape {dims:?}"
                ));
            }
            // [C] as [1, C, 1, ...]: broadcasts over [N, C, ...].
            let mut per_channel = vec![1; dims.len()];
            per_channel[1] = channels;
            let (scale, shift) = (scale.reshape(&per_channel)?, shift.reshape(&per_channel)?);
            binary(binary(x, scale, Binary::Mul)?, shift, Binary::Add)?
        }
        Op::Unary { x, f } => {
            let x = env.operand(*x, step)?;
            map_tensor!(x, t => unary(t, *f))
        }
        Op::Binary { a, b, f } => {
            let (a, b) = (env.operand(*a, step)?, env.operand(*b, step)?);
            binary(a, b, *f)?
        }
        Op::Compare { a, b, f } => {
            let (a, b) = (env.operand(*a, step)?, env.operand(*b, step)?);
            let (a, b) = broadcast_pair(a, b)?;
            zip_tensors!(a, b, x, y => match f {
                Compare::Equal => x.equal(y),
                Compare::Less => x.lower(y),
                Compare::Greater => x.greater(y),
                Compare::LessOrEqual => x.lower_equal(y),
                Compare::GreaterOrEqual => x.greater_equal(y),
            }.float())
            .ok_or("a comparison of values of different ranks")?
        }
        Op::Where { cond, a, b } => {
            let (cond, a, b) = (
                env.operand(*cond, step)?,
                env.operand(*a, step)?,
                env.operand(*b, step)?,
            );
            let out = broadcast(&broadcast(&cond.dims(), &a.dims())?, &b.dims())?;
            let r = out.len();
            let (cond, a, b) = (cond.lift(r)?, a.lift(r)?, b.lift(r)?);
            match (cond, a, b) {
                (Val::R1(c), Val::R1(a), Val::R1(b)) => Val::R1(select(c, a, b, &out)),
                (Val::R2(c), Val::R2(a), Val::R2(b)) => Val::R2(select(c, a, b, &out)),
                (Val::R3(c), Val::R3(a), Val::R3(b)) => Val::R3(select(c, a, b, &out)),
                (Val::R4(c), Val::R4(a), Val::R4(b)) => Val::R4(select(c, a, b, &out)),
                (Val::R5(c), Val::R5(a), Val::R5(b)) => Val::R5(select(c, a, b, &out)),
                (Val::R6(c), Val::R6(a), Val::R6(b)) => Val::R6(select(c, a, b, &out)),
                _ => return Err("Where of values of different ranks".into()),
            }
        }
        Op::MaxPool {
            x,
            kernel,
            stride,
            padding,
            dilation,
            ceil,
        } => {
            let x = images(env.get(*x, step)?)?;
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
            let x = images(env.get(*x, step)?)?;
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
            let x = env.operand(Operand::Slot(*x), step)?;
            if x.rank() < 3 {
                return Err(format!("global pooling of a value of shape {:?}", x.dims()));
            }
            let axes: Vec<usize> = (2..x.rank()).collect();
            map_tensor!(x, t => t.mean_dims(&axes))
        }
        Op::Reduce {
            x,
            axes,
            keepdims,
            noop_empty,
            f,
        } => {
            let x = env.operand(*x, step)?;
            let axes = env.opt_ints(*axes, step)?;
            let (dims, rank) = (x.dims(), x.rank());
            let Some(axes) = reduce_axes(rank, axes.as_deref(), *noop_empty)? else {
                return Ok(Value::Tensor(x));
            };
            let y = map_tensor!(x, t => match f {
                Reduce::Mean => t.mean_dims(&axes),
                Reduce::Sum => t.sum_dims(&axes),
                Reduce::Max => t.max_dims(&axes),
                Reduce::Min => t.min_dims(&axes),
                Reduce::Prod => t.prod_dims(&axes),
            });
            if *keepdims {
                y
            } else {
                let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).map(|i| dims[i]).collect();
                y.reshape(&kept)?
            }
        }
        Op::Flatten { x, axis } => {
            let x = env.operand(*x, step)?;
            let dims = flatten_dims(&x.dims(), *axis)?;
            x.reshape(&dims)?
        }
        Op::Reshape { x, shape, allow_zero } => {
            let x = env.operand(*x, step)?;
            let dims = x.dims();
            let mut target = env.ints(*shape, step)?;
            // A graph exported for a fixed batch size: its batch dimension follows the images.
            if let Operand::Host(_) = shape
                && let Some(fixed) = program.input_shape.first().copied().flatten()
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
            let x = env.operand(*x, step)?;
            let perm = perm.clone().unwrap_or_else(|| (0..x.rank()).rev().collect());
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..x.rank()).collect::<Vec<_>>() {
                return Err(format!("a permutation {perm:?} of a value of rank {}", x.rank()));
            }
            map_tensor!(x, t => t.permute(array(&perm)))
        }
        Op::Concat { inputs, axis } => {
            let vals = inputs
                .iter()
                .map(|o| env.operand(*o, step))
                .collect::<Result<Vec<_>, _>>()?;
            let first = vals.first().ok_or("a concatenation of nothing")?.dims();
            let axis = norm_axis(*axis, first.len())?;
            for v in &vals {
                let d = v.dims();
                let fits =
                    d.len() == first.len() && d.iter().zip(&first).enumerate().all(|(i, (a, b))| i == axis || a == b);
                if !fits {
                    return Err(format!("concatenation of shapes {first:?} and {d:?} on axis {axis}"));
                }
            }
            match first.len() {
                1 => concat::<1>(vals, axis),
                2 => concat::<2>(vals, axis),
                3 => concat::<3>(vals, axis),
                4 => concat::<4>(vals, axis),
                5 => concat::<5>(vals, axis),
                _ => concat::<6>(vals, axis),
            }
            .ok_or("concatenation of values of different ranks")?
        }
        Op::Pad {
            x,
            pads,
            value,
            axes,
            mode,
        } => {
            let x = env.operand(*x, step)?;
            let dims = x.dims();
            let pads = env.ints(*pads, step)?;
            let axes = env.opt_ints(*axes, step)?;
            let pairs = pad_pairs(dims.len(), &pads, axes.as_deref())?;
            let fill = match value {
                Some(v) => env.host(*v, step)?.to_f32().first().copied().unwrap_or(0.0),
                None => 0.0,
            };
            let fits = |(&(a, b), &d): (&(usize, usize), &usize)| match mode {
                PadKind::Constant => true,
                PadKind::Reflect => a < d && b < d,
                PadKind::Edge => d > 0 || (a == 0 && b == 0),
            };
            if !pairs.iter().zip(&dims).all(fits) {
                return Err(format!("padding {pairs:?} ({mode:?}) of a value of shape {dims:?}"));
            }
            let padded: Vec<usize> = dims
                .iter()
                .zip(&pairs)
                .map(|(&d, &(a, b))| d.saturating_add(a).saturating_add(b))
                .collect();
            check_per_image(&padded[1..], "a padded value")?;
            let mode = match mode {
                PadKind::Constant => PadMode::Constant(fill),
                PadKind::Reflect => PadMode::Reflect,
                PadKind::Edge => PadMode::Edge,
            };
            map_tensor!(x, t => t.pad(pairs.clone(), mode))
        }
        Op::Softmax { x, axis, coerce_2d } => {
            let x = env.operand(*x, step)?;
            let dims = x.dims();
            let axis = norm_axis(*axis, x.rank())?;
            if *coerce_2d && axis + 1 != dims.len() {
                // Before opset 13: the softmax of the value flattened to 2-D at `axis`.
                let [outer, inner] = flatten_dims(&dims, axis as i64)?;
                let flat = x.reshape(&[outer, inner])?.tensor::<2>()?;
                Val::R2(activation::softmax(flat, 1)).reshape(&dims)?
            } else {
                map_tensor!(x, t => activation::softmax(t, axis))
            }
        }
        Op::LogSoftmax { x, axis } => {
            let x = env.operand(*x, step)?;
            let axis = norm_axis(*axis, x.rank())?;
            map_tensor!(x, t => activation::log_softmax(t, axis))
        }
        Op::Shape { x, start, end } => {
            let dims = match env.value(*x, step)? {
                Value::Tensor(v) => v.dims(),
                Value::Host(h) => h.dims,
            };
            let v = shape_range(&dims, *start, *end);
            return Ok(Value::Host(HostTensor::ints(vec![v.len()], v)));
        }
        Op::Size { x } => {
            let n = match env.value(*x, step)? {
                Value::Tensor(v) => v.dims().iter().product::<usize>(),
                Value::Host(h) => h.len(),
            };
            return Ok(Value::Host(HostTensor::ints(vec![], vec![n as i64])));
        }
        Op::Gather { x, indices, axis } => {
            let x = env.operand(*x, step)?;
            let indices = env.host(*indices, step)?;
            let dims = x.dims();
            let axis = norm_axis(*axis, dims.len())?;
            let d = dims[axis] as i64;
            let idx: Vec<i64> = indices
                .to_i64()
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + d } else { i };
                    match (0..d).contains(&j) {
                        true => Ok(j),
                        false => Err(format!("index {i} on an axis of {d}")),
                    }
                })
                .collect::<Result<_, _>>()?;
            let n = idx.len();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &env.device);
            let mut out = dims[..axis].to_vec();
            out.extend(&indices.dims);
            out.extend(&dims[axis + 1..]);
            map_tensor!(x, t => t.select(axis, idx)).reshape(&out)?
        }
        Op::Slice {
            x,
            starts,
            ends,
            axes,
            steps,
        } => {
            let x = env.operand(*x, step)?;
            let (starts, ends) = (env.ints(*starts, step)?, env.ints(*ends, step)?);
            let axes = env.opt_ints(*axes, step)?;
            let steps = env.opt_ints(*steps, step)?;
            let ranges = slice_ranges(&x.dims(), &starts, &ends, axes.as_deref(), steps.as_deref())?;
            slice_val(x, &ranges)?
        }
        Op::Split {
            x,
            axis,
            split,
            parts,
            index,
        } => {
            let x = env.operand(*x, step)?;
            let dims = x.dims();
            let axis = norm_axis(*axis, dims.len())?;
            let split = env.opt_ints(*split, step)?;
            let sizes = split_sizes(dims[axis], *parts, split.as_deref())?;
            let start: usize = sizes[..*index].iter().sum();
            if sizes[*index] == 0 {
                return Err("an empty part of a split".into());
            }
            map_tensor!(x, t => t.narrow(axis, start, sizes[*index]))
        }
        Op::Squeeze { x, axes } => {
            let x = env.operand(*x, step)?;
            let axes = env.opt_ints(*axes, step)?;
            let dims = squeeze_dims(&x.dims(), axes.as_deref())?;
            x.reshape(&dims)?
        }
        Op::Unsqueeze { x, axes } => {
            let x = env.operand(*x, step)?;
            let axes = env.ints(*axes, step)?;
            let dims = unsqueeze_dims(&x.dims(), &axes)?;
            x.reshape(&dims)?
        }
        Op::Expand { x, shape } => {
            let x = env.operand(*x, step)?;
            let shape = dims_of(&env.ints(*shape, step)?)?;
            let out = broadcast(&x.dims(), &shape)?;
            check_per_image(out.get(1..).unwrap_or(&[]), "an expanded value")?;
            let x = x.lift(out.len())?;
            map_tensor!(x, t => expand_to(t, &out))
        }
        Op::Tile { x, repeats } => {
            let x = env.operand(*x, step)?;
            let repeats = dims_of(&env.ints(*repeats, step)?)?;
            if repeats.len() != x.rank() {
                return Err(format!("{} repeats for a value of rank {}", repeats.len(), x.rank()));
            }
            map_tensor!(x, t => t.repeat(&repeats))
        }
        Op::Cast { x, to } => match env.value(*x, step)? {
            Value::Tensor(v) if *to == CastTo::Float => v,
            Value::Tensor(v) => return Ok(Value::Host(download(v)?.cast(*to))),
            Value::Host(h) => return Ok(Value::Host(h.cast(*to))),
        },
        Op::LayerNorm {
            x,
            scale,
            bias,
            axis,
            eps,
        } => {
            let x = env.operand(*x, step)?;
            let axis = norm_axis(*axis, x.rank())?;
            let axes: Vec<usize> = (axis..x.rank()).collect();
            let normed = map_tensor!(x, t => {
                let centred = t.clone() - t.mean_dims(&axes);
                let var = (centred.clone() * centred.clone()).mean_dims(&axes);
                centred / (var + *eps).sqrt()
            });
            let scale = env.operand(*scale, step)?;
            let y = binary(normed, scale, Binary::Mul)?;
            match bias {
                Some(b) => binary(y, env.operand(*b, step)?, Binary::Add)?,
                None => y,
            }
        }
        // Integers computed from tensors (rare): on the host.
        Op::ConstantOfShape { .. } | Op::Range { .. } => {
            return host_op(&step.op, &mut |o| env.host(o, step)).map(Value::Host);
        }
        Op::ScatterNd { .. } => {
            return Err("ScatterND of a tensor computed from the images (anu runs it on constants and shapes)".into());
        }
    }))
}

/// `a` where `cond` (broadcast to `out`) is non-zero, else `b`.
fn select<const D: usize>(cond: Tensor<D>, a: Tensor<D>, b: Tensor<D>, out: &[usize]) -> Tensor<D> {
    let mask = expand_to(cond, out).not_equal_elem(0.0);
    expand_to(b, out).mask_where(mask, expand_to(a, out))
}

/// Both values broadcast to their common shape.
fn broadcast_pair(a: Val, b: Val) -> Result<(Val, Val), String> {
    let out = broadcast(&a.dims(), &b.dims())?;
    let (a, b) = (a.lift(out.len())?, b.lift(out.len())?);
    Ok((
        map_tensor!(a, t => expand_to(t, &out)),
        map_tensor!(b, t => expand_to(t, &out)),
    ))
}

/// ONNX Slice of a tensor on the ranges of [`slice_ranges`].
fn slice_val(x: Val, ranges: &[(i64, i64, i64)]) -> Result<Val, String> {
    let mut slices = Vec::with_capacity(ranges.len());
    let mut flips = Vec::new();
    for (axis, &r) in ranges.iter().enumerate() {
        let n = range_len(r);
        if n == 0 {
            return Err(format!("an empty slice {r:?} on axis {axis}"));
        }
        let (start, _, step) = r;
        if step > 0 {
            slices.push(Slice::new(
                start as isize,
                Some((start + (n as i64 - 1) * step + 1) as isize),
                step as isize,
            ));
        } else {
            // The same elements in increasing order, then reversed.
            let first = start + (n as i64 - 1) * step;
            slices.push(Slice::new(first as isize, Some((start + 1) as isize), -step as isize));
            flips.push(axis);
        }
    }
    let y = map_tensor!(x, t => t.slice(slices.as_slice()));
    Ok(match flips.is_empty() {
        true => y,
        false => map_tensor!(y, t => flip_axes(t, &flips)),
    })
}

/// `t` reversed along `axes`.
fn flip_axes<const D: usize>(mut t: Tensor<D>, axes: &[usize]) -> Tensor<D> {
    for &a in axes {
        t = t.flip([a]);
    }
    t
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
        Unary::Sqrt => t.sqrt(),
        Unary::Exp => t.exp(),
        Unary::Log => t.log(),
        Unary::Erf => t.erf(),
        Unary::Reciprocal => t.recip(),
        Unary::Abs => t.abs(),
        Unary::Gelu { tanh: false } => activation::gelu(t),
        Unary::Gelu { tanh: true } => activation::gelu_approximate(t),
        Unary::Softplus => activation::softplus(t, 1.0),
        Unary::Not => t.neg().add_scalar(1.0),
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
        Binary::Pow => x.powf(y),
        Binary::Mod => x.clone() - (x / y.clone()).floor() * y,
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
