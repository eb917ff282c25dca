//! Elementwise activations of EfficientNet, in one pass over memory each.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// `min(max(x, 0), 6)` of every element, as burn's `clamp(0, 6)` computes it (NaN stays NaN).
pub fn relu6(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(out, x)| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.clamp(0.0, 6.0);
        }
    });
    out
}

/// The gradient of [`relu6`] at `x` given the gradient `grad` of its output: `grad` where
/// `0 <= x <= 6` (or x is NaN), 0 elsewhere, as burn's clamp passes it.
pub fn relu6_backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(out, (x, grad))| {
            for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
                // Not `!(0.0..=6.0).contains(&v)`: a NaN passes its gradient, as in burn.
                #[allow(clippy::manual_range_contains)]
                let outside = v < 0.0 || v > 6.0;
                *o = if outside { 0.0 } else { g };
            }
        });
    out
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
    }
}
