//! 1x1 convolution (stride 1, no padding, one group), forward and input gradient, as one matrix
//! product per image written straight into the output.
//!
//! In the `[B, C, H, W]` layout an image is a `[C, H*W]` matrix, so the forward pass of a 1x1
//! convolution by `W` (`[C_out, C_in]`) is `out[b] = W x[b]` and its input gradient is
//! `dx[b] = W^T g[b]`, `W^T` read through strides rather than copied. `burn`'s own 1x1 forward
//! pass also runs one product per image but zero-fills its output first; its input gradient
//! (a transposed convolution) multiplies into a zero-filled column buffer and then adds that
//! buffer into a zero-filled output value by value. Here the product writes the output once
//! (on top of the bias, when there is one), which removes those passes over memory.
//!
//! Images are spread over the threads when there are at least as many as threads; otherwise
//! each product is itself split across them. The products are `gemm`'s (the crate `flex`
//! uses), so the sums are the same as `burn`'s forward pass up to the order of addition.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

/// Sizes of one 1x1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Pixels per channel (`H * W`).
    pub pixels: usize,
}

/// One product `dst (m x n) = lhs (m x k) rhs (k x n)`, both `rhs` and `dst` row-major with
/// rows of `n` values, `lhs` read with the given row and column strides; `dst` is added to when
/// `accumulate`, overwritten otherwise.
struct Product<'a> {
    m: usize,
    k: usize,
    n: usize,
    lhs: &'a [f32],
    lhs_strides: [isize; 2],
    accumulate: bool,
}

impl Product<'_> {
    /// Runs the product for one image.
    ///
    /// # Safety
    /// `rhs` holds `k * n` values and `dst` `m * n` writable values; unless `accumulate`,
    /// `dst` may be uninitialised: every value is written.
    unsafe fn run(&self, dst: *mut f32, rhs: *const f32, parallelism: Parallelism) {
        let [lhs_rs, lhs_cs] = self.lhs_strides;
        // SAFETY: the sizes and strides describe `lhs` (checked by the callers' shapes), `rhs`
        // and `dst` as the caller guarantees; with `read_dst` false `gemm` does not read `dst`.
        unsafe {
            gemm::gemm(
                self.m,
                self.n,
                self.k,
                dst,
                1,
                self.n as isize,
                self.accumulate,
                self.lhs.as_ptr(),
                lhs_cs,
                lhs_rs,
                rhs,
                1,
                self.n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// `out[b] = product(rhs[b])` for every image `b`, into `out` (`batch * m * n` values, filled
/// with the bias first when the product accumulates).
fn per_image(product: &Product, rhs: &[f32], batch: usize, out: &mut [MaybeUninit<f32>]) {
    let (in_len, out_len) = (product.k * product.n, product.m * product.n);
    assert!(rhs.len() >= batch * in_len && out.len() >= batch * out_len);
    if out_len == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let run = |image: usize, dst: &mut [MaybeUninit<f32>], parallelism: Parallelism| {
        // SAFETY: `dst` is this image's `m * n` output values and `rhs` holds its `k * n`
        // input values (asserted above).
        unsafe { product.run(dst.as_mut_ptr().cast(), rhs[image * in_len..].as_ptr(), parallelism) }
    };
    if batch >= threads {
        out.par_chunks_mut(out_len)
            .take(batch)
            .enumerate()
            .for_each(|(image, dst)| run(image, dst, Parallelism::None));
    } else {
        for (image, dst) in out.chunks_mut(out_len).take(batch).enumerate() {
            run(image, dst, Parallelism::Rayon(threads));
        }
    }
}

/// `[B, C_out, H*W]`: the 1x1 convolution of `x` (`[B, C_in, H*W]`) by `weight`
/// (`[C_out, C_in]`), plus `bias` (`[C_out]`) on every output channel, then ReLU if `relu`.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: Shape, relu: bool) -> Vec<f32> {
    let Shape {
        batch,
        c_in,
        c_out,
        pixels,
    } = shape;
    assert_eq!(x.len(), batch * c_in * pixels, "1x1 convolution input size");
    assert_eq!(weight.len(), c_out * c_in, "1x1 convolution filter size");
    let total = batch * c_out * pixels;
    let mut out = Vec::<f32>::with_capacity(total);
    let spare = &mut out.spare_capacity_mut()[..total];
    // With no input channel the product is empty and writes nothing: start from zero.
    let accumulate = bias.is_some() || c_in == 0;
    if accumulate {
        let zeros = vec![0.0; c_out];
        let bias = bias.unwrap_or(&zeros);
        assert_eq!(bias.len(), c_out, "1x1 convolution bias size");
        for (row, value) in spare.chunks_mut(pixels.max(1)).zip(bias.iter().cycle()) {
            row.fill(MaybeUninit::new(*value));
        }
    }
    let product = Product {
        m: c_out,
        k: c_in,
        n: pixels,
        lhs: weight,
        lhs_strides: [c_in as isize, 1],
        accumulate,
    };
    per_image(&product, x, batch, spare);
    // SAFETY: `per_image` wrote (or added to the bias in) all `total` values.
    unsafe { out.set_len(total) };
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    out
}

/// `[B, C_in, H*W]`: the gradient with respect to `x` of [`forward`] without ReLU, given the
/// gradient `output_grad` (`[B, C_out, H*W]`) of its output; with `relu_output` (the forward
/// pass's output after ReLU), the gradient of the ReLU is applied first.
pub fn input_gradient(output_grad: &[f32], weight: &[f32], relu_output: Option<&[f32]>, shape: Shape) -> Vec<f32> {
    let Shape {
        batch,
        c_in,
        c_out,
        pixels,
    } = shape;
    assert_eq!(
        output_grad.len(),
        batch * c_out * pixels,
        "1x1 convolution output gradient size"
    );
    assert_eq!(weight.len(), c_out * c_in, "1x1 convolution filter size");
    let masked;
    let grad = match relu_output {
        Some(output) => {
            assert_eq!(output.len(), output_grad.len(), "1x1 convolution output size");
            masked = output_grad
                .iter()
                .zip(output)
                .map(|(g, o)| if *o > 0.0 { *g } else { 0.0 })
                .collect::<Vec<_>>();
            &masked
        }
        None => output_grad,
    };
    let total = batch * c_in * pixels;
    if c_out == 0 {
        return vec![0.0; total];
    }
    let mut dx = Vec::<f32>::with_capacity(total);
    let product = Product {
        m: c_in,
        k: c_out,
        n: pixels,
        lhs: weight,
        // W^T: its rows are W's columns.
        lhs_strides: [1, c_in as isize],
        accumulate: false,
    };
    per_image(&product, grad, batch, &mut dx.spare_capacity_mut()[..total]);
    // SAFETY: `per_image` wrote all `total` values.
    unsafe { dx.set_len(total) };
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_forward(x: &[f32], w: &[f32], bias: &[f32], s: Shape) -> Vec<f32> {
        let mut out = vec![0.0f32; s.batch * s.c_out * s.pixels];
        for b in 0..s.batch {
            for o in 0..s.c_out {
                for p in 0..s.pixels {
                    let mut acc = bias[o] as f64;
                    for i in 0..s.c_in {
                        acc += (w[o * s.c_in + i] * x[(b * s.c_in + i) * s.pixels + p]) as f64;
                    }
                    out[(b * s.c_out + o) * s.pixels + p] = acc as f32;
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn forward_and_gradient_match_the_definition() {
        for s in [
            Shape {
                batch: 1,
                c_in: 3,
                c_out: 5,
                pixels: 7,
            },
            Shape {
                batch: 5,
                c_in: 17,
                c_out: 9,
                pixels: 13,
            },
            Shape {
                batch: 3,
                c_in: 0,
                c_out: 4,
                pixels: 6,
            },
        ] {
            let x = values(s.batch * s.c_in * s.pixels, 1);
            let w = values(s.c_out * s.c_in, 2);
            let bias = values(s.c_out, 3);
            let out = forward(&x, &w, Some(&bias), s, false);
            let expected = naive_forward(&x, &w, &bias, s);
            for (a, e) in out.iter().zip(&expected) {
                assert!((a - e).abs() < 1e-5, "{a} vs {e} for {s:?}");
            }
            let no_bias = forward(&x, &w, None, s, true);
            let expected = naive_forward(&x, &w, &vec![0.0; s.c_out], s);
            for (a, e) in no_bias.iter().zip(&expected) {
                assert!((a - e.max(0.0)).abs() < 1e-5, "{a} vs {e} for {s:?}");
            }
            // <W x, g> = <x, W^T g> for every x and g: the gradient is the transpose.
            let g = values(s.batch * s.c_out * s.pixels, 4);
            let dx = input_gradient(&g, &w, None, s);
            let wx = forward(&x, &w, None, s, false);
            let lhs: f64 = wx.iter().zip(&g).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "{lhs} vs {rhs}");
        }
    }
}
