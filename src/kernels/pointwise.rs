//! 1x1 convolution (stride 1, no padding, one group), forward and input gradient, as one matrix
//! product per image written straight into the output.
//!
//! In the `[B, C, H, W]` layout an image is a `[C, H*W]` matrix, so the forward pass of a 1x1
//! convolution by `W` (`[C_out, C_in]`) is `out[b] = W x[b]` and its input gradient is
//! `dx[b] = W^T g[b]`, `W^T` read through strides rather than copied. `burn`'s own 1x1 forward
//! pass also runs one product per image but zero-fills its output first; its input gradient
//! (a transposed convolution) multiplies into a zero-filled column buffer and then adds that
//! buffer into a zero-filled output value by value. Here the product writes the output once
//! and reads the input once, which removes those passes over memory.
//!
//! The products are [`thin_product`]'s on CPUs with AVX2 and FMA (the bias and the activation
//! applied in registers as the output is written), `gemm`'s (the crate `flex` uses) elsewhere
//! (the bias and activation applied to each image's output just after its product); the sums
//! are the same as `burn`'s up to the order of addition. The activation's gradient is applied
//! to each image's output gradient just before its product, while the image is in cache.
//! Images are spread over the threads when there are at least as many as threads; otherwise
//! each product is itself split across them.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::elementwise::{self, Activation};
use super::thin_product::{self, ThinProduct};

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

/// One product per image, `dst (m x n) = activation(lhs (m x k) rhs (k x n) + bias)`, both
/// `rhs` and `dst` row-major with rows of `n` values, `bias` one value per row.
struct Product<'a> {
    m: usize,
    k: usize,
    n: usize,
    engine: Engine<'a>,
}

/// Which implementation computes the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EngineKind {
    Thin,
    Gemm,
}

impl EngineKind {
    /// The thin product where the CPU runs it, `gemm` elsewhere.
    fn best() -> Self {
        if thin_product::available() {
            EngineKind::Thin
        } else {
            EngineKind::Gemm
        }
    }
}

/// What computes the products of one call.
enum Engine<'a> {
    /// anu's own (AVX2 and FMA), the filter packed once for all images.
    Thin(ThinProduct),
    /// `gemm`'s, `lhs` read with the given row and column strides, then the bias and
    /// activation.
    Gemm {
        lhs: &'a [f32],
        lhs_strides: [usize; 2],
        bias: Option<&'a [f32]>,
        activation: Activation,
    },
}

impl<'a> Product<'a> {
    /// The product by `lhs`, whose element `(row, i)` is at `row * strides[0] + i * strides[1]`.
    fn new(
        kind: EngineKind,
        [m, k, n]: [usize; 3],
        lhs: &'a [f32],
        strides: [usize; 2],
        bias: Option<&'a [f32]>,
        activation: Activation,
    ) -> Self {
        let engine = match kind {
            EngineKind::Thin => Engine::Thin(ThinProduct::new(lhs, [m, k], strides, bias, activation)),
            EngineKind::Gemm => Engine::Gemm {
                lhs,
                lhs_strides: strides,
                bias,
                activation,
            },
        };
        Self { m, k, n, engine }
    }

    /// Runs the product for one image, split across the threads when `parallel`, `rhs` masked
    /// by the gradient of the activation whose outputs are `mask.0`.
    ///
    /// # Panics
    /// If `rhs` (or the mask's outputs) holds fewer than `k * n` values or `dst` fewer than
    /// `m * n`.
    fn run(
        &self,
        dst: &mut [MaybeUninit<f32>],
        rhs: &[f32],
        mask: Option<(&[f32], Activation)>,
        scratch: &mut Vec<f32>,
        parallel: bool,
    ) {
        let (m, k, n) = (self.m, self.k, self.n);
        assert!(
            rhs.len() >= k * n && dst.len() >= m * n,
            "1x1 convolution product sizes"
        );
        match &self.engine {
            Engine::Thin(product) => product.run(rhs, n, mask, dst, parallel),
            Engine::Gemm {
                lhs,
                lhs_strides: [lhs_rs, lhs_cs],
                bias,
                activation,
            } => {
                let rhs = match mask {
                    Some((outputs, activation)) => {
                        scratch.resize(k * n, 0.0);
                        // SAFETY: a `[f32]` is a valid `[MaybeUninit<f32>]`, and only `f32`s
                        // are written.
                        let uninit = unsafe { &mut *(scratch.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>]) };
                        elementwise::mask_into(&rhs[..k * n], &outputs[..k * n], activation, uninit);
                        &scratch[..]
                    }
                    None => rhs,
                };
                let parallelism = if parallel {
                    Parallelism::Rayon(rayon::current_num_threads())
                } else {
                    Parallelism::None
                };
                // SAFETY: the sizes and strides describe `lhs` (checked by the callers' shapes),
                // `rhs` and `dst` (asserted above); with `read_dst` false `gemm` does not read
                // `dst`, and it writes all of its `m * n` values.
                let dst = unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr().cast::<f32>(),
                        1,
                        n as isize,
                        false,
                        lhs.as_ptr(),
                        *lhs_cs as isize,
                        *lhs_rs as isize,
                        rhs.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                    &mut *(&mut dst[..m * n] as *mut [MaybeUninit<f32>] as *mut [f32])
                };
                for (row, values) in dst.chunks_mut(n.max(1)).enumerate() {
                    elementwise::activate(values, bias.map_or(0.0, |b| b[row]), *activation);
                }
            }
        }
    }
}

/// `out[b] = product(rhs[b])` for every image `b`: a new vector of `batch * m * n` values, each
/// written once. With `mask`, the product reads `rhs[b]` masked by the gradient of the
/// activation whose outputs are `mask.0` (masked as it is copied for the product, or, with
/// `gemm`, in a copy per image made just before and still in cache).
fn per_image(product: &Product, rhs: &[f32], batch: usize, mask: Option<(&[f32], Activation)>) -> Vec<f32> {
    let (in_len, out_len) = (product.k * product.n, product.m * product.n);
    assert!(rhs.len() >= batch * in_len);
    if let Some((outputs, _)) = mask {
        assert_eq!(outputs.len(), batch * in_len, "1x1 convolution output size");
    }
    let total = batch * out_len;
    let mut values = Vec::<f32>::with_capacity(total);
    if out_len == 0 {
        return values;
    }
    let out = &mut values.spare_capacity_mut()[..total];
    let threads = rayon::current_num_threads();
    let run = |image: usize, dst: &mut [MaybeUninit<f32>], scratch: &mut Vec<f32>, parallel: bool| {
        let src = &rhs[image * in_len..][..in_len];
        let mask = mask.map(|(outputs, activation)| (&outputs[image * in_len..][..in_len], activation));
        product.run(dst, src, mask, scratch, parallel);
    };
    if batch >= threads {
        out.par_chunks_mut(out_len)
            .take(batch)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (image, dst)| run(image, dst, scratch, false));
    } else {
        let mut scratch = Vec::new();
        for (image, dst) in out.chunks_mut(out_len).take(batch).enumerate() {
            run(image, dst, &mut scratch, true);
        }
    }
    // SAFETY: every image's `m * n` values were written above.
    unsafe { values.set_len(total) };
    values
}

/// `[B, C_out, H*W]`: the 1x1 convolution of `x` (`[B, C_in, H*W]`) by `weight`
/// (`[C_out, C_in]`), plus `bias` (`[C_out]`) on every output channel, then `activation`.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: Shape, activation: Activation) -> Vec<f32> {
    forward_on(EngineKind::best(), x, weight, bias, shape, activation)
}

fn forward_on(
    kind: EngineKind,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    activation: Activation,
) -> Vec<f32> {
    let Shape {
        batch,
        c_in,
        c_out,
        pixels,
    } = shape;
    assert_eq!(x.len(), batch * c_in * pixels, "1x1 convolution input size");
    assert_eq!(weight.len(), c_out * c_in, "1x1 convolution filter size");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), c_out, "1x1 convolution bias size");
    }
    if c_in == 0 {
        // No input channel: the product is empty, each output its activated bias.
        let mut out = vec![0.0; batch * c_out * pixels];
        for (i, row) in out.chunks_mut(pixels.max(1)).enumerate() {
            elementwise::activate(row, bias.map_or(0.0, |b| b[i % c_out]), activation);
        }
        return out;
    }
    let product = Product::new(kind, [c_out, c_in, pixels], weight, [c_in, 1], bias, activation);
    per_image(&product, x, batch, None)
}

/// `[B, C_in, H*W]`: the gradient with respect to `x` of [`forward`], given the gradient
/// `output_grad` (`[B, C_out, H*W]`) of its output and, for an activation other than the
/// identity, its `output` (after the activation).
pub fn input_gradient(
    output_grad: &[f32],
    weight: &[f32],
    output: Option<(&[f32], Activation)>,
    shape: Shape,
) -> Vec<f32> {
    input_gradient_on(EngineKind::best(), output_grad, weight, output, shape)
}

fn input_gradient_on(
    kind: EngineKind,
    output_grad: &[f32],
    weight: &[f32],
    output: Option<(&[f32], Activation)>,
    shape: Shape,
) -> Vec<f32> {
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
    if c_out == 0 {
        return vec![0.0; batch * c_in * pixels];
    }
    // W^T: its rows are W's columns.
    let product = Product::new(
        kind,
        [c_in, c_out, pixels],
        weight,
        [1, c_in],
        None,
        Activation::Identity,
    );
    let mask = output.filter(|(_, activation)| *activation != Activation::Identity);
    per_image(&product, output_grad, batch, mask)
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
    fn forward_and_gradient_match_the_definition_with_either_engine() {
        for s in [
            Shape {
                batch: 4,
                c_in: 6,
                c_out: 7,
                pixels: 30,
            },
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
            for kind in [EngineKind::Gemm, EngineKind::best()] {
                let x = values(s.batch * s.c_in * s.pixels, 1);
                let w = values(s.c_out * s.c_in, 2);
                let bias = values(s.c_out, 3);
                let out = forward_on(kind, &x, &w, Some(&bias), s, Activation::Identity);
                let expected = naive_forward(&x, &w, &bias, s);
                for (a, e) in out.iter().zip(&expected) {
                    assert!((a - e).abs() < 1e-5, "{a} vs {e} for {s:?}");
                }
                let no_bias = forward_on(kind, &x, &w, None, s, Activation::Relu);
                let expected = naive_forward(&x, &w, &vec![0.0; s.c_out], s);
                for (a, e) in no_bias.iter().zip(&expected) {
                    assert!((a - e.max(0.0)).abs() < 1e-5, "{a} vs {e} for {s:?}");
                }
                // <W x, g> = <x, W^T g> for every x and g: the gradient is the transpose.
                let g = values(s.batch * s.c_out * s.pixels, 4);
                let dx = input_gradient_on(kind, &g, &w, None, s);
                let wx = forward_on(kind, &x, &w, None, s, Activation::Identity);
                let lhs: f64 = wx.iter().zip(&g).map(|(a, b)| (a * b) as f64).sum();
                let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
                assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "{lhs} vs {rhs}");
                // With ReLU6 after the bias: outputs clamped, and the gradient masked where the
                // output is not strictly inside (0, 6).
                let y = forward_on(kind, &x, &w, Some(&bias), s, Activation::Relu6);
                let expected = naive_forward(&x, &w, &bias, s);
                for (a, e) in y.iter().zip(&expected) {
                    assert!((a - e.clamp(0.0, 6.0)).abs() < 1e-5);
                }
                let scaled: Vec<f32> = g.iter().map(|v| v * 8.0).collect();
                let masked_dx = input_gradient_on(kind, &scaled, &w, Some((&y, Activation::Relu6)), s);
                let masked: Vec<f32> = scaled
                    .iter()
                    .zip(&y)
                    .map(|(g, y)| if *y > 0.0 && *y < 6.0 { *g } else { 0.0 })
                    .collect();
                let want = input_gradient_on(kind, &masked, &w, None, s);
                assert_eq!(masked_dx, want, "{kind:?}");
            }
        }
    }
}
