//! Elementwise activations: ReLU6 in one pass over memory each way, and the [`Activation`]
//! that a convolution kernel applies as it writes its output (its gradient then taken from
//! that output).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::written_by;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// `min(max(x, 0), 6)` of every element, as burn's `clamp(0, 6)` computes it (NaN stays NaN).
pub fn relu6(x: &[f32]) -> Vec<f32> {
    map_chunks(x.len(), |start, out| relu6_chunk(&x[start..][..out.len()], out))
}

/// The gradient of [`relu6`] at `x` given the gradient `grad` of its output: `grad` where
/// `0 <= x <= 6` (or x is NaN), 0 elsewhere, as burn's clamp passes it.
pub fn relu6_backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), grad.len(), "ReLU6 gradient size");
    map_chunks(x.len(), |start, out| {
        let n = out.len();
        relu6_backward_chunk(&x[start..][..n], &grad[start..][..n], out)
    })
}

/// A new vector of `len` values, each chunk written by `fill(start, chunk)` on the threads
/// (no zero-filling first: `fill` writes every value of its chunk).
fn map_chunks(len: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    // SAFETY: `fill` writes every value of each chunk, and the chunks cover all `len` values.
    unsafe {
        written_by(len, |out| {
            out.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(i, chunk)| fill(i * CHUNK, chunk))
        })
    }
}

/// Runs `portable` compiled for AVX2 where the CPU has it (the loops are branch-free selects,
/// which the compiler vectorises), as is otherwise.
macro_rules! with_avx2 {
    ($name:ident, $avx2:ident, $portable:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if $crate::kernels::cpu::features().avx2 {
                    // SAFETY: the CPU has the feature the function is compiled for.
                    return unsafe { $avx2($($arg),*) };
                }
            }
            $portable($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2($($arg: $ty),*) {
            $portable($($arg),*)
        }
    };
}

with_avx2!(relu6_chunk, relu6_chunk_avx2, relu6_portable, (x: &[f32], out: &mut [MaybeUninit<f32>]));
with_avx2!(
    activate_chunk,
    activate_chunk_avx2,
    activate_portable,
    (values: &mut [f32], bias: f32, activation: Activation)
);
with_avx2!(
    mask_chunk,
    mask_chunk_avx2,
    mask_portable,
    (grad: &[f32], output: &[f32], activation: Activation, out: &mut [MaybeUninit<f32>])
);
with_avx2!(
    relu6_backward_chunk,
    relu6_backward_chunk_avx2,
    relu6_backward_portable,
    (x: &[f32], grad: &[f32], out: &mut [MaybeUninit<f32>])
);

/// An activation applied to a convolution's output as it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None.
    Identity,
    /// `max(v, 0)`, NaN kept.
    Relu,
    /// `min(max(v, 0), 6)`, NaN kept.
    Relu6,
}

impl Activation {
    /// The activation of `v`.
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => super::conv::relu(v),
            Activation::Relu6 => relu6_value(v),
        }
    }

    /// Whether the gradient passes where the activated output is `y`: ReLU where `y > 0`,
    /// ReLU6 where `0 < y < 6`, and wherever `y` is NaN. burn's ReLU passes it where its output
    /// is positive, and its ReLU6 (a clamp) where its input `x` is in the closed interval
    /// [0, 6]: the two differ only where `x` is exactly 0 or 6.
    #[inline(always)]
    pub fn passes(self, y: f32) -> bool {
        match self {
            Activation::Identity => true,
            Activation::Relu => y.is_nan() || y > 0.0,
            // One comparison each, no short-circuit, so that loops over it have no branch.
            #[allow(clippy::nonminimal_bool)]
            Activation::Relu6 => !((y <= 0.0) | (y >= 6.0)),
        }
    }
}

/// `activation(v + bias)` for every `v`, in place (a row or plane just computed, still in cache).
pub fn activate(values: &mut [f32], bias: f32, activation: Activation) {
    if bias != 0.0 || activation != Activation::Identity {
        activate_chunk(values, bias, activation);
    }
}

/// `grad` where the gradient passes the activation whose outputs are `output`, 0 elsewhere,
/// written into `out`.
pub fn mask_into(grad: &[f32], output: &[f32], activation: Activation, out: &mut [MaybeUninit<f32>]) {
    assert!(
        grad.len() == output.len() && out.len() == grad.len(),
        "activation gradient size"
    );
    mask_chunk(grad, output, activation, out);
}

/// `grad` where the gradient passes the activation whose outputs are `output`, 0 elsewhere.
pub fn mask_gradient(grad: &[f32], output: &[f32], activation: Activation) -> Vec<f32> {
    assert_eq!(grad.len(), output.len(), "activation gradient size");
    map_chunks(grad.len(), |start, out| {
        let n = out.len();
        mask_chunk(&grad[start..][..n], &output[start..][..n], activation, out)
    })
}

#[inline(always)]
fn relu6_value(v: f32) -> f32 {
    // NaN fails both comparisons and stays.
    let low = if v < 0.0 { 0.0 } else { v };
    if low > 6.0 { 6.0 } else { low }
}

#[inline(always)]
fn activate_portable(values: &mut [f32], bias: f32, activation: Activation) {
    // One loop per activation, each without a branch.
    match activation {
        Activation::Identity => values.iter_mut().for_each(|v| *v += bias),
        Activation::Relu => values.iter_mut().for_each(|v| *v = Activation::Relu.apply(*v + bias)),
        Activation::Relu6 => values.iter_mut().for_each(|v| *v = Activation::Relu6.apply(*v + bias)),
    }
}

#[inline(always)]
fn mask_portable(grad: &[f32], output: &[f32], activation: Activation, out: &mut [MaybeUninit<f32>]) {
    #[inline(always)]
    fn run(grad: &[f32], output: &[f32], out: &mut [MaybeUninit<f32>], passes: impl Fn(f32) -> bool) {
        for ((o, &g), &y) in out.iter_mut().zip(grad).zip(output) {
            o.write(if passes(y) { g } else { 0.0 });
        }
    }
    // One loop per activation, each without a branch.
    match activation {
        Activation::Identity => run(grad, output, out, |y| Activation::Identity.passes(y)),
        Activation::Relu => run(grad, output, out, |y| Activation::Relu.passes(y)),
        Activation::Relu6 => run(grad, output, out, |y| Activation::Relu6.passes(y)),
    }
}

#[inline(always)]
fn relu6_portable(x: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(relu6_value(v));
    }
}

#[inline(always)]
fn relu6_backward_portable(x: &[f32], grad: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        // Both comparisons, not a short-circuit, so that the loop has no branch; a NaN
        // fails both and passes its gradient, as in burn (`contains` would drop it).
        #[allow(clippy::manual_range_contains)]
        let outside = (v < 0.0) | (v > 6.0);
        o.write(if outside { 0.0 } else { g });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu6_clamps_and_passes_the_gradient_inside_the_closed_interval() {
        let x = [-1.0, 0.0, 3.0, 6.0, 7.5, f32::NAN];
        let y = relu6(&x);
        assert_eq!(&y[..5], &[0.0, 0.0, 3.0, 6.0, 6.0]);
        assert!(y[5].is_nan());
        let g = relu6_backward(&x, &[1.0; 6]);
        assert_eq!(g, vec![0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
        // Several chunks and a partial one, against the definition.
        let x: Vec<f32> = (0..3 * CHUNK + 7).map(|i| (i % 17) as f32 - 4.5).collect();
        let grad: Vec<f32> = (0..x.len()).map(|i| i as f32).collect();
        let y = relu6(&x);
        let g = relu6_backward(&x, &grad);
        for i in 0..x.len() {
            assert_eq!(y[i], x[i].clamp(0.0, 6.0));
            assert_eq!(g[i], if (0.0..=6.0).contains(&x[i]) { grad[i] } else { 0.0 });
        }
    }
}
