//! Tensors held in host memory: a graph's constants, and the integer values (shapes, indices)
//! that graphs compute from the shapes of their tensors. The operations here run on them when
//! a graph is compiled (a node whose inputs are all constants becomes a constant) and, for
//! integer values computed from run-time shapes, each time the graph runs. Float results that
//! an attack differentiates never come from here: they are burn tensors ([`super::eval`]).
//!
//! Index rules (negative axes and indices, Slice's clamping) are shared with the tensor path
//! through [`norm_axis`] and [`slice_ranges`].

/// The element types a Cast can produce, as far as the graph's values tell them apart (booleans
/// are held as 0 / 1 integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CastTo {
    Float,
    Int,
    Bool,
}

impl CastTo {
    /// Float where `float`, else integer: the common type of values being combined.
    pub fn float_if(float: bool) -> Self {
        if float { CastTo::Float } else { CastTo::Int }
    }
}

/// The values of a host tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// Float types, as 32-bit floats.
    F32(Vec<f32>),
    /// Integer and boolean types, as 64-bit integers.
    I64(Vec<i64>),
}

impl HostData {
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor in host memory (a scalar has no dimensions).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dims: Vec<usize>,
    pub data: HostData,
}

/// `$e` with `$v` bound to the values, of either type, rebuilt as the same type.
macro_rules! map_values {
    ($data:expr, $v:ident => $e:expr) => {
        match $data {
            HostData::F32($v) => HostData::F32($e),
            HostData::I64($v) => HostData::I64($e),
        }
    };
}

/// A negative axis counted from the end, checked against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    match a >= 0 && (a as usize) < rank {
        true => Ok(a as usize),
        false => Err(format!("axis {axis} of a value of rank {rank}")),
    }
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The broadcast shape of two shapes (numpy rules).
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
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

/// For each element of a tensor of shape `out`, the index of the element of a tensor of
/// shape `dims` (broadcast to `out`) it reads.
fn broadcast_index(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let pad = out.len() - dims.len();
    let src = strides(dims);
    let dst = strides(out);
    (0..total)
        .map(|flat| {
            let mut idx = 0;
            for (i, &d) in dims.iter().enumerate() {
                let coord = (flat / dst[i + pad]) % out[i + pad];
                if d != 1 {
                    idx += coord * src[i];
                }
            }
            idx
        })
        .collect()
}

/// `(start, end, step)` per axis of `dims` for ONNX Slice, with negative and out-of-range
/// starts and ends clamped as the operator says. Axes not named keep their whole range.
pub fn slice_ranges(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, i64)>, String> {
    let rank = dims.len();
    let mut out: Vec<(i64, i64, i64)> = dims.iter().map(|&d| (0, d as i64, 1)).collect();
    if starts.len() != ends.len() {
        return Err(format!("{} starts and {} ends", starts.len(), ends.len()));
    }
    for i in 0..starts.len() {
        let axis = match axes {
            Some(a) => norm_axis(*a.get(i).ok_or("fewer axes than starts")?, rank)?,
            None => i,
        };
        if axis >= rank {
            return Err(format!("a slice of {} axes of a value of rank {rank}", starts.len()));
        }
        let step = steps.map_or(Ok(1), |s| s.get(i).copied().ok_or("fewer steps than starts"))?;
        if step == 0 {
            return Err("a slice step of 0".into());
        }
        let d = dims[axis] as i64;
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (start, end) = (norm(starts[i]), norm(ends[i]));
        out[axis] = if step > 0 {
            (start.clamp(0, d), end.clamp(0, d), step)
        } else {
            (start.clamp(0, d - 1), end.clamp(-1, d - 1), step)
        };
    }
    Ok(out)
}

/// The number of elements a `(start, end, step)` range takes.
pub fn range_len((start, end, step): (i64, i64, i64)) -> usize {
    if step > 0 {
        if end > start {
            ((end - start + step - 1) / step) as usize
        } else {
            0
        }
    } else if start > end {
        ((start - end - step - 1) / -step) as usize
    } else {
        0
    }
}

impl HostTensor {
    pub fn ints(dims: Vec<usize>, v: Vec<i64>) -> HostTensor {
        HostTensor {
            dims,
            data: HostData::I64(v),
        }
    }

    pub fn floats(dims: Vec<usize>, v: Vec<f32>) -> HostTensor {
        HostTensor {
            dims,
            data: HostData::F32(v),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values as integers (floats are truncated, as a Cast does).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            HostData::I64(v) => v.clone(),
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// The values as floats.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The same values cast to `to` (floats truncated towards zero for an integer type; any
    /// non-zero value, NaN included, is true for a boolean).
    pub fn cast(&self, to: CastTo) -> HostTensor {
        let data = match to {
            CastTo::Float => HostData::F32(self.to_f32()),
            CastTo::Int => HostData::I64(self.to_i64()),
            CastTo::Bool => HostData::I64(match &self.data {
                HostData::I64(v) => v.iter().map(|&x| (x != 0) as i64).collect(),
                HostData::F32(v) => v.iter().map(|&x| (x != 0.0) as i64).collect(),
            }),
        };
        HostTensor {
            dims: self.dims.clone(),
            data,
        }
    }

    /// The same values with dimensions `dims` (of as many elements).
    pub fn reshape(self, dims: Vec<usize>) -> Result<HostTensor, String> {
        if dims.iter().product::<usize>() != self.len() {
            return Err(format!("cannot reshape {:?} to {dims:?}", self.dims));
        }
        Ok(HostTensor { dims, data: self.data })
    }

    /// The elements at `index` (one per output element), in a tensor of shape `dims`.
    fn pick(&self, index: &[usize], dims: Vec<usize>) -> HostTensor {
        let data = map_values!(&self.data, v => index.iter().map(|&i| v[i]).collect());
        HostTensor { dims, data }
    }

    pub fn transpose(&self, perm: &[usize]) -> Result<HostTensor, String> {
        let rank = self.dims.len();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..rank).collect::<Vec<_>>() {
            return Err(format!("a permutation {perm:?} of a value of rank {rank}"));
        }
        let out: Vec<usize> = perm.iter().map(|&p| self.dims[p]).collect();
        let src = strides(&self.dims);
        let dst = strides(&out);
        let total = self.len();
        let index: Vec<usize> = (0..total)
            .map(|flat| (0..rank).map(|i| ((flat / dst[i]) % out[i]) * src[perm[i]]).sum())
            .collect();
        Ok(self.pick(&index, out))
    }

    /// ONNX Gather: the slices at `indices` along `axis`.
    pub fn gather(&self, axis: usize, indices: &HostTensor) -> Result<HostTensor, String> {
        let d = self.dims[axis] as i64;
        let idx: Vec<usize> = indices
            .to_i64()
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + d } else { i };
                match (0..d).contains(&j) {
                    true => Ok(j as usize),
                    false => Err(format!("index {i} on an axis of {d}")),
                }
            })
            .collect::<Result<_, _>>()?;
        let outer: usize = self.dims[..axis].iter().product();
        let inner: usize = self.dims[axis + 1..].iter().product();
        let mut index = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in &idx {
                let base = (o * self.dims[axis] + i) * inner;
                index.extend(base..base + inner);
            }
        }
        let mut dims = self.dims[..axis].to_vec();
        dims.extend(&indices.dims);
        dims.extend(&self.dims[axis + 1..]);
        Ok(self.pick(&index, dims))
    }

    /// ONNX Slice on the ranges of [`slice_ranges`].
    pub fn slice(&self, ranges: &[(i64, i64, i64)]) -> HostTensor {
        let dims: Vec<usize> = ranges.iter().map(|&r| range_len(r)).collect();
        let src = strides(&self.dims);
        let dst = strides(&dims);
        let total: usize = dims.iter().product();
        let index: Vec<usize> = (0..total)
            .map(|flat| {
                (0..dims.len())
                    .map(|i| {
                        let (start, _, step) = ranges[i];
                        let c = ((flat / dst[i]) % dims[i]) as i64;
                        (start + c * step) as usize * src[i]
                    })
                    .sum()
            })
            .collect();
        self.pick(&index, dims)
    }

    /// Concatenation of `parts` (all of one type) on `axis`.
    pub fn concat(parts: &[HostTensor], axis: usize) -> Result<HostTensor, String> {
        let first = parts.first().ok_or("a concatenation of nothing")?;
        let rank = first.dims.len();
        for p in parts {
            let fits = p.dims.len() == rank
                && (0..rank).all(|i| i == axis || p.dims[i] == first.dims[i])
                && matches!(
                    (&p.data, &first.data),
                    (HostData::F32(_), HostData::F32(_)) | (HostData::I64(_), HostData::I64(_))
                );
            if !fits {
                return Err(format!(
                    "concatenation of shapes {:?} and {:?} on axis {axis}",
                    first.dims, p.dims
                ));
            }
        }
        let outer: usize = first.dims[..axis].iter().product();
        let mut dims = first.dims.clone();
        dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
        let chunk = |p: &HostTensor| p.dims[axis..].iter().product::<usize>();
        let data = match &first.data {
            HostData::F32(_) => {
                let mut out = Vec::new();
                for o in 0..outer {
                    for p in parts {
                        let HostData::F32(v) = &p.data else {
                            unreachable!("types checked")
                        };
                        out.extend_from_slice(&v[o * chunk(p)..(o + 1) * chunk(p)]);
                    }
                }
                HostData::F32(out)
            }
            HostData::I64(_) => {
                let mut out = Vec::new();
                for o in 0..outer {
                    for p in parts {
                        let HostData::I64(v) = &p.data else {
                            unreachable!("types checked")
                        };
                        out.extend_from_slice(&v[o * chunk(p)..(o + 1) * chunk(p)]);
                    }
                }
                HostData::I64(out)
            }
        };
        Ok(HostTensor { dims, data })
    }

    /// The tensor broadcast to `dims`.
    pub fn expand(&self, dims: &[usize]) -> Result<HostTensor, String> {
        let out = broadcast(&self.dims, dims)?;
        Ok(self.pick(&broadcast_index(&self.dims, &out), out))
    }

    /// An element-wise function of two tensors with broadcasting; integers stay integers
    /// when both are.
    pub fn zip(
        a: &HostTensor,
        b: &HostTensor,
        int: impl Fn(i64, i64) -> Result<i64, String>,
        float: impl Fn(f32, f32) -> f32,
    ) -> Result<HostTensor, String> {
        let out = broadcast(&a.dims, &b.dims)?;
        let (ia, ib) = (broadcast_index(&a.dims, &out), broadcast_index(&b.dims, &out));
        let data = match (&a.data, &b.data) {
            (HostData::I64(x), HostData::I64(y)) => HostData::I64(
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| int(x[i], y[j]))
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                let (x, y) = (a.to_f32(), b.to_f32());
                HostData::F32(ia.iter().zip(&ib).map(|(&i, &j)| float(x[i], y[j])).collect())
            }
        };
        Ok(HostTensor { dims: out, data })
    }

    /// A comparison with broadcasting, as integers 0 and 1.
    pub fn compare(a: &HostTensor, b: &HostTensor, f: impl Fn(f64, f64) -> bool) -> Result<HostTensor, String> {
        let out = broadcast(&a.dims, &b.dims)?;
        let (ia, ib) = (broadcast_index(&a.dims, &out), broadcast_index(&b.dims, &out));
        let value = |t: &HostTensor, i: usize| match &t.data {
            HostData::F32(v) => v[i] as f64,
            HostData::I64(v) => v[i] as f64,
        };
        let v = ia
            .iter()
            .zip(&ib)
            .map(|(&i, &j)| f(value(a, i), value(b, j)) as i64)
            .collect();
        Ok(HostTensor::ints(out, v))
    }

    /// ONNX Where: `a` where `cond` is non-zero, else `b`.
    pub fn select(cond: &HostTensor, a: &HostTensor, b: &HostTensor) -> Result<HostTensor, String> {
        let out = broadcast(&broadcast(&cond.dims, &a.dims)?, &b.dims)?;
        let c = cond.to_i64();
        let ic = broadcast_index(&cond.dims, &out);
        let (ia, ib) = (broadcast_index(&a.dims, &out), broadcast_index(&b.dims, &out));
        let data = match (&a.data, &b.data) {
            (HostData::I64(x), HostData::I64(y)) => HostData::I64(
                (0..ic.len())
                    .map(|k| if c[ic[k]] != 0 { x[ia[k]] } else { y[ib[k]] })
                    .collect(),
            ),
            _ => {
                let (x, y) = (a.to_f32(), b.to_f32());
                HostData::F32(
                    (0..ic.len())
                        .map(|k| if c[ic[k]] != 0 { x[ia[k]] } else { y[ib[k]] })
                        .collect(),
                )
            }
        };
        Ok(HostTensor { dims: out, data })
    }

    /// ONNX ScatterND without reduction: the slices of `self` that `indices` (`[..., k]`)
    /// address replaced by `updates` (`indices.dims[..-1] + self.dims[k..]`).
    pub fn scatter_nd(&self, indices: &HostTensor, updates: &HostTensor) -> Result<HostTensor, String> {
        let k = *indices.dims.last().ok_or("ScatterND with scalar indices")?;
        if k == 0 || k > self.dims.len() {
            return Err(format!(
                "ScatterND with indices of depth {k} into a value of rank {}",
                self.dims.len()
            ));
        }
        let slice: usize = self.dims[k..].iter().product();
        let count = indices.len() / k;
        let mut expected = indices.dims[..indices.dims.len() - 1].to_vec();
        expected.extend(&self.dims[k..]);
        if updates.dims != expected {
            return Err(format!(
                "ScatterND updates of shape {:?}, expected {expected:?}",
                updates.dims
            ));
        }
        let strides = strides(&self.dims);
        let idx = indices.to_i64();
        let mut offsets = Vec::with_capacity(count);
        for c in 0..count {
            let mut off = 0;
            for j in 0..k {
                let d = self.dims[j] as i64;
                let i = idx[c * k + j];
                let i = if i < 0 { i + d } else { i };
                if !(0..d).contains(&i) {
                    return Err(format!("ScatterND index {} on an axis of {d}", idx[c * k + j]));
                }
                off += i as usize * strides[j];
            }
            offsets.push(off);
        }
        let float = matches!(self.data, HostData::F32(_)) || matches!(updates.data, HostData::F32(_));
        let to = CastTo::float_if(float);
        let (base, upd) = (self.cast(to), updates.cast(to));
        let data = match (base.data, upd.data) {
            (HostData::F32(mut v), HostData::F32(u)) => {
                for (c, &off) in offsets.iter().enumerate() {
                    v[off..off + slice].copy_from_slice(&u[c * slice..(c + 1) * slice]);
                }
                HostData::F32(v)
            }
            (HostData::I64(mut v), HostData::I64(u)) => {
                for (c, &off) in offsets.iter().enumerate() {
                    v[off..off + slice].copy_from_slice(&u[c * slice..(c + 1) * slice]);
                }
                HostData::I64(v)
            }
            _ => unreachable!("cast to one type"),
        };
        Ok(HostTensor {
            dims: self.dims.clone(),
            data,
        })
    }

    /// An element-wise function of the values as floats.
    pub fn map_f32(&self, f: impl Fn(f32) -> f32) -> HostTensor {
        HostTensor::floats(self.dims.clone(), self.to_f32().into_iter().map(f).collect())
    }

    /// Negation, keeping integers integers.
    pub fn neg(&self) -> HostTensor {
        let data = map_values!(&self.data, v => v.iter().map(|&x| -x).collect());
        HostTensor {
            dims: self.dims.clone(),
            data,
        }
    }

    /// A reduction over `axes` (kept as size 1 when `keep`).
    pub fn reduce(&self, axes: &[usize], keep: bool, f: Reduce) -> HostTensor {
        let mut out = self.dims.clone();
        for &a in axes {
            out[a] = 1;
        }
        let dst = strides(&out);
        let src = strides(&self.dims);
        let total: usize = out.iter().product();
        let x = self.to_f32();
        let mut acc: Vec<Vec<f32>> = vec![Vec::new(); total];
        for (flat, &v) in x.iter().enumerate() {
            let o: usize = (0..self.dims.len())
                .map(|i| {
                    if out[i] == 1 {
                        0
                    } else {
                        ((flat / src[i]) % self.dims[i]) * dst[i]
                    }
                })
                .sum();
            acc[o].push(v);
        }
        let values = acc
            .iter()
            .map(|a| match f {
                Reduce::Sum => a.iter().sum(),
                Reduce::Mean => a.iter().sum::<f32>() / a.len().max(1) as f32,
                Reduce::Max => a.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                Reduce::Min => a.iter().copied().fold(f32::INFINITY, f32::min),
                Reduce::Prod => a.iter().product(),
            })
            .collect();
        let dims = match keep {
            true => out,
            false => (0..self.dims.len())
                .filter(|i| !axes.contains(i))
                .map(|i| self.dims[i])
                .collect(),
        };
        let t = HostTensor::floats(dims, values);
        match self.data {
            HostData::I64(_) => t.cast(CastTo::Int),
            HostData::F32(_) => t,
        }
    }
}

/// A reduction over axes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: &[usize], v: &[i64]) -> HostTensor {
        HostTensor::ints(dims.to_vec(), v.to_vec())
    }

    #[test]
    fn casts_truncate_to_integers_and_test_non_zero_for_booleans() {
        let x = HostTensor::floats(vec![5], vec![0.5, -1.7, 0.0, -0.0, f32::NAN]);
        assert_eq!(x.cast(CastTo::Int), t(&[5], &[0, -1, 0, 0, 0]));
        assert_eq!(x.cast(CastTo::Bool), t(&[5], &[1, 1, 0, 0, 1]));
        assert_eq!(t(&[3], &[0, 2, -3]).cast(CastTo::Bool), t(&[3], &[0, 1, 1]));
        assert_eq!(t(&[2], &[0, 2]).cast(CastTo::Float).to_f32(), vec![0.0, 2.0]);
    }

    #[test]
    fn gather_slice_concat_and_transpose_follow_numpy() {
        let x = t(&[2, 3], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(x.gather(1, &t(&[], &[-1])).unwrap(), t(&[2], &[2, 5]));
        assert_eq!(x.gather(0, &t(&[1], &[1])).unwrap(), t(&[1, 3], &[3, 4, 5]));
        let r = slice_ranges(&x.dims, &[1], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(x.slice(&r), t(&[2, 2], &[1, 2, 4, 5]));
        let r = slice_ranges(&x.dims, &[-1], &[i64::MIN], Some(&[1]), Some(&[-1])).unwrap();
        assert_eq!(x.slice(&r), t(&[2, 3], &[2, 1, 0, 5, 4, 3]));
        let r = slice_ranges(&x.dims, &[0], &[3], Some(&[-1]), Some(&[2])).unwrap();
        assert_eq!(x.slice(&r), t(&[2, 2], &[0, 2, 3, 5]));
        assert_eq!(x.transpose(&[1, 0]).unwrap(), t(&[3, 2], &[0, 3, 1, 4, 2, 5]));
        let c = HostTensor::concat(&[x.clone(), t(&[2, 1], &[9, 8])], 1).unwrap();
        assert_eq!(c, t(&[2, 4], &[0, 1, 2, 9, 3, 4, 5, 8]));
        assert!(HostTensor::concat(&[x.clone(), t(&[1, 1], &[9])], 1).is_err());
        let s = x.scatter_nd(&t(&[2, 2], &[1, 0, 0, -1]), &t(&[2], &[7, 8])).unwrap();
        assert_eq!(s, t(&[2, 3], &[0, 1, 8, 7, 4, 5]));
        let rows = x.scatter_nd(&t(&[1, 1], &[0]), &t(&[1, 3], &[9, 9, 9])).unwrap();
        assert_eq!(rows, t(&[2, 3], &[9, 9, 9, 3, 4, 5]));
        assert!(x.scatter_nd(&t(&[1, 1], &[2]), &t(&[1, 3], &[9, 9, 9])).is_err());
    }

    #[test]
    fn element_wise_operations_broadcast() {
        let a = t(&[2, 1], &[1, 2]);
        let b = t(&[3], &[10, 20, 30]);
        let s = HostTensor::zip(&a, &b, |x, y| Ok(x + y), |x, y| x + y).unwrap();
        assert_eq!(s, t(&[2, 3], &[11, 21, 31, 12, 22, 32]));
        let e = HostTensor::compare(&b, &t(&[], &[20]), |x, y| x == y).unwrap();
        assert_eq!(e, t(&[3], &[0, 1, 0]));
        let w = HostTensor::select(&e, &t(&[], &[-1]), &b).unwrap();
        assert_eq!(w, t(&[3], &[10, -1, 30]));
        assert_eq!(t(&[1], &[2]).expand(&[2, 2]).unwrap(), t(&[2, 2], &[2, 2, 2, 2]));
        let x = HostTensor::floats(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            x.reduce(&[1], false, Reduce::Sum),
            HostTensor::floats(vec![2], vec![3.0, 7.0])
        );
        assert_eq!(
            x.reduce(&[0], true, Reduce::Max),
            HostTensor::floats(vec![1, 2], vec![3.0, 4.0])
        );
    }
}
