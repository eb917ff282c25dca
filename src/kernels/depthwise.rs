//! Depthwise convolution (one filter per channel, `groups = channels`) with any filter size,
//! stride 1 or 2 and zero padding that may differ before and after (as TensorFlow's "same"
//! padding does for stride 2), forward and input gradient.
//!
//! Each `[H, W]` plane of the batch is one task. It is copied, zero-padded, into `stride^2`
//! phase planes (the padded pixels whose row and column have each residue modulo the stride),
//! each stored with rows of `ceil(padded width / stride)` values. In that layout, filter tap
//! `(ky, kx)` reads, for the output laid out with the same row length, one contiguous run of
//! its phase plane: the whole plane's convolution is one long multiply-add per tap
//! (`out[i] += w[ky, kx] * phase[offset + i]`), vectorised with AVX2 and FMA where the CPU has
//! them; blocks of 64 outputs stay in registers over all taps and are stored once. The few
//! output columns past the true width are computed and dropped. The input gradient is the
//! same walk with the roles swapped: each tap adds `w * grad[i]` into its phase plane, which
//! each plane gathers the same way from the output gradient (with zeros around it), before the
//! planes are read back into the input's layout.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::written_by;

use super::elementwise::{self, Activation};

/// What is applied to each output value as a plane is written: `+ bias[channel]` if given,
/// then the activation.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// One value per channel.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Activation,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Self {
            bias: None,
            activation: Activation::Identity,
        }
    }
}

/// Geometry of one depthwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Input plane `[H, W]`.
    pub input: [usize; 2],
    /// Filter `[KH, KW]`.
    pub kernel: [usize; 2],
    /// Stride, 1 or 2, the same on both axes.
    pub stride: usize,
    /// Zero padding `[(top, bottom), (left, right)]`.
    pub padding: [(usize, usize); 2],
}

impl Geometry {
    /// The padded plane `[HP, WP]`.
    fn padded(&self) -> [usize; 2] {
        [
            self.input[0] + self.padding[0].0 + self.padding[0].1,
            self.input[1] + self.padding[1].0 + self.padding[1].1,
        ]
    }

    /// Output plane `[OH, OW]`.
    pub fn output(&self) -> [usize; 2] {
        let [hp, wp] = self.padded();
        [
            (hp - self.kernel[0]) / self.stride + 1,
            (wp - self.kernel[1]) / self.stride + 1,
        ]
    }

    /// Whether the kernels take this geometry: stride 1 or 2, a filter that fits the padded
    /// input, and padding smaller than the filter on every side.
    pub fn supported(&self) -> bool {
        let [hp, wp] = self.padded();
        (self.stride == 1 || self.stride == 2)
            && self.kernel[0] >= 1
            && self.kernel[1] >= 1
            && hp >= self.kernel[0]
            && wp >= self.kernel[1]
            && self.padding[0].0.max(self.padding[0].1) < self.kernel[0]
            && self.padding[1].0.max(self.padding[1].1) < self.kernel[1]
    }
}

/// Where a plane's pixels and taps live in the phase-split layout (see the module docs).
struct Layout {
    geometry: Geometry,
    /// Row length of the phase planes and of the output as computed.
    row: usize,
    /// Values in one phase plane (its rows, plus room for the last taps' runs).
    phase_len: usize,
    /// Values of the output as computed (`OH` rows of `row`).
    out_len: usize,
    /// Start of each tap's run, `[KH * KW]`.
    tap_starts: Vec<usize>,
    /// For the input gradient, per phase plane: its taps in order, and where in the output
    /// gradient preceded by `lead` zeros each tap's run for that plane starts.
    phase_taps: Vec<(Vec<usize>, Vec<usize>)>,
    /// Zeros before the output gradient, so that every tap's run starts inside the buffer.
    lead: usize,
}

impl Layout {
    fn new(geometry: Geometry) -> Self {
        let s = geometry.stride;
        let [hp, wp] = geometry.padded();
        let [kh, kw] = geometry.kernel;
        let [oh, _] = geometry.output();
        let row = wp.div_ceil(s);
        let phase_rows = hp.div_ceil(s) + 1;
        let phase_len = phase_rows * row;
        let tap_starts = (0..kh * kw)
            .map(|t| {
                let (ky, kx) = (t / kw, t % kw);
                ((ky % s) * s + kx % s) * phase_len + (ky / s) * row + kx / s
            })
            .collect::<Vec<usize>>();
        // A tap's run within its phase plane starts `offset` values in; the output gradient
        // value `i` adds into position `offset + i`, i.e. position `j` takes value `j - offset`.
        let offsets: Vec<usize> = tap_starts.iter().map(|&start| start % phase_len).collect();
        let lead = offsets.iter().copied().max().unwrap_or(0);
        let phase_taps = (0..s * s)
            .map(|phase| {
                let taps: Vec<usize> = (0..kh * kw).filter(|&t| tap_starts[t] / phase_len == phase).collect();
                let starts = taps.iter().map(|&t| lead - offsets[t]).collect();
                (taps, starts)
            })
            .collect();
        Self {
            geometry,
            row,
            phase_len,
            out_len: oh * row,
            tap_starts,
            phase_taps,
            lead,
        }
    }

    fn scratch_len(&self) -> usize {
        self.geometry.stride * self.geometry.stride * self.phase_len
    }

    /// Position in the phase planes of padded pixel (`py`, `px`).
    fn position(&self, py: usize, px: usize) -> usize {
        let s = self.geometry.stride;
        ((py % s) * s + px % s) * self.phase_len + (py / s) * self.row + px / s
    }

    /// For each residue `first` of the input columns modulo the stride, the phase-plane
    /// position of input pixel (`iy`, `first`): the columns `first, first + stride, ...` of that
    /// row follow it one by one.
    fn runs(&self, iy: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let g = &self.geometry;
        (0..g.stride.min(g.input[1]))
            .map(move |first| (first, self.position(iy + g.padding[0].0, first + g.padding[1].0)))
    }

    /// Copies an input plane into the phase planes (the padding left as it is).
    fn store(&self, scratch: &mut [f32], plane: &[f32]) {
        let (w, s) = (self.geometry.input[1], self.geometry.stride);
        for (iy, row) in plane.chunks_exact(w).enumerate() {
            if s == 1 {
                let start = self.position(iy + self.geometry.padding[0].0, self.geometry.padding[1].0);
                scratch[start..][..w].copy_from_slice(row);
                continue;
            }
            for (first, start) in self.runs(iy) {
                for (d, &v) in scratch[start..].iter_mut().zip(row[first..].iter().step_by(s)) {
                    *d = v;
                }
            }
        }
    }

    /// Copies the phase planes back into an input plane, writing every value of it.
    fn load(&self, plane: &mut [MaybeUninit<f32>], scratch: &[f32]) {
        let (w, s) = (self.geometry.input[1], self.geometry.stride);
        for (iy, row) in plane.chunks_exact_mut(w).enumerate() {
            if s == 1 {
                let start = self.position(iy + self.geometry.padding[0].0, self.geometry.padding[1].0);
                row.write_copy_of_slice(&scratch[start..][..w]);
                continue;
            }
            // The runs of the `min(s, w)` residues cover every column.
            for (first, start) in self.runs(iy) {
                for (d, &v) in row[first..].iter_mut().step_by(s).zip(&scratch[start..]) {
                    d.write(v);
                }
            }
        }
    }
}

/// `out[i] = sum over taps t of filter[t] * x[starts[t] + i]` for every `i` of `out`, the taps
/// added in order from 0 (the same multiply-adds, in the same order, as adding each tap's run
/// into `out` in turn), with each block of outputs kept in registers over all taps and stored
/// once.
fn sum_taps(out: &mut [f32], filter: &[f32], starts: &[usize], x: &[f32]) {
    assert_eq!(filter.len(), starts.len());
    assert!(
        starts.iter().all(|&s| s + out.len() <= x.len()),
        "tap runs past the plane"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if super::cpu::features().avx2_fma {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { sum_taps_avx2(out, filter, starts, x) };
        }
    }
    sum_taps_with(out, filter, starts, x, |w, v, a| a + w * v);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sum_taps_avx2(out: &mut [f32], filter: &[f32], starts: &[usize], x: &[f32]) {
    sum_taps_with(out, filter, starts, x, |w, v, a| w.mul_add(v, a));
}

/// Outputs per block of [`sum_taps`]: eight AVX registers of accumulators, enough independent
/// multiply-adds to keep both FMA units busy.
const TAP_BLOCK: usize = 64;

/// [`sum_taps`] with `madd(w, v, a)` as the multiply-add `a + w * v`.
#[inline(always)]
fn sum_taps_with(out: &mut [f32], filter: &[f32], starts: &[usize], x: &[f32], madd: impl Fn(f32, f32, f32) -> f32) {
    let mut blocks = out.chunks_exact_mut(TAP_BLOCK);
    let mut at = 0;
    for block in &mut blocks {
        let mut acc = [0.0f32; TAP_BLOCK];
        for (&w, &start) in filter.iter().zip(starts) {
            let src: &[f32; TAP_BLOCK] = x[start + at..][..TAP_BLOCK].try_into().unwrap();
            for (a, &v) in acc.iter_mut().zip(src) {
                *a = madd(w, v, *a);
            }
        }
        block.copy_from_slice(&acc);
        at += TAP_BLOCK;
    }
    let rest = blocks.into_remainder();
    rest.fill(0.0);
    for (&w, &start) in filter.iter().zip(starts) {
        for (a, &v) in rest.iter_mut().zip(&x[start + at..]) {
            *a = madd(w, v, *a);
        }
    }
}

/// `[B * C, OH, OW]`: the depthwise convolution of `x` (`[B * C, H, W]`, channel `c` of plane
/// `p` is `p % channels`) by `weight` (`[C, KH, KW]`), then `epilogue`.
pub fn forward(x: &[f32], weight: &[f32], channels: usize, g: Geometry, epilogue: Epilogue) -> Vec<f32> {
    let [h, w] = g.input;
    let taps = g.kernel[0] * g.kernel[1];
    let [oh, ow] = g.output();
    let layout = Layout::new(g);
    let planes = x.len() / (h * w);
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), channels, "depthwise convolution bias size");
    }
    let total = planes * oh * ow;
    // SAFETY: every plane's `OH` rows of `OW` values are written.
    unsafe {
        written_by(total, |out| {
            out.par_chunks_mut(oh * ow)
                .zip(x.par_chunks(h * w))
                .enumerate()
                .for_each_init(
                    // Every plane stores its pixels at the same places of `scratch`, so the padding
                    // around them stays as made here: zero.
                    || (vec![0.0f32; layout.scratch_len()], vec![0.0f32; layout.out_len]),
                    |(scratch, full), (p, (out, x))| {
                        let filter = &weight[(p % channels) * taps..][..taps];
                        layout.store(scratch, x);
                        sum_taps(full, filter, &layout.tap_starts, scratch);
                        let bias = epilogue.bias.map_or(0.0, |b| b[p % channels]);
                        elementwise::activate(full, bias, epilogue.activation);
                        for (out_row, full_row) in out.chunks_exact_mut(ow).zip(full.chunks_exact(layout.row)) {
                            out_row.write_copy_of_slice(&full_row[..ow]);
                        }
                    },
                );
        })
    }
}

/// `[B * C, H, W]`: the gradient with respect to `x` of [`forward`] given the gradient
/// `grad` (`[B * C, OH, OW]`) of its output and, with an activation, that `output` (after the
/// activation; the gradient passes where [`Activation::passes`]).
pub fn input_gradient(
    grad: &[f32],
    weight: &[f32],
    output: Option<(&[f32], Activation)>,
    channels: usize,
    g: Geometry,
) -> Vec<f32> {
    let [h, w] = g.input;
    let taps = g.kernel[0] * g.kernel[1];
    let [oh, ow] = g.output();
    let layout = Layout::new(g);
    let planes = grad.len() / (oh * ow);
    if let Some((output, _)) = output {
        assert_eq!(output.len(), grad.len(), "depthwise convolution output size");
    }
    let total = planes * h * w;
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        dx.par_chunks_mut(h * w)
            .zip(grad.par_chunks(oh * ow))
            .enumerate()
            .for_each_init(
                // `full` holds the output gradient in rows of the layout's length, after `lead`
                // zeros and before a phase plane's worth of zeros; the columns past the output's
                // width stay 0 too: they add nothing.
                || {
                    let full_len = layout.lead + layout.out_len + layout.phase_len;
                    (vec![0.0f32; layout.scratch_len()], vec![0.0f32; full_len], Vec::new())
                },
                |(scratch, full, weights), (p, (dx, grad))| {
                    let filter = &weight[(p % channels) * taps..][..taps];
                    let body = &mut full[layout.lead..][..layout.out_len];
                    let rows = body.chunks_exact_mut(layout.row).zip(grad.chunks_exact(ow));
                    match output {
                        None => rows.for_each(|(full_row, grad_row)| full_row[..ow].copy_from_slice(grad_row)),
                        Some((output, activation)) => {
                            let output = output[p * oh * ow..].chunks_exact(ow);
                            for ((full_row, grad_row), out_row) in rows.zip(output) {
                                // SAFETY: a `[f32]` is a valid `[MaybeUninit<f32>]`; only `f32`s are written.
                                let dst =
                                    unsafe { &mut *(&mut full_row[..ow] as *mut [f32] as *mut [MaybeUninit<f32>]) };
                                elementwise::mask_into(grad_row, out_row, activation, dst);
                            }
                        }
                    }
                    // Each phase plane gathers its taps' contributions (in tap order, as adding
                    // each tap's run into the planes in turn would).
                    let planes = scratch.chunks_exact_mut(layout.phase_len);
                    for (plane, (plane_taps, starts)) in planes.zip(&layout.phase_taps) {
                        weights.clear();
                        weights.extend(plane_taps.iter().map(|&t| filter[t]));
                        sum_taps(plane, weights, starts, full);
                    }
                    layout.load(dx, scratch);
                },
            );
    };
    // SAFETY: `fill` writes every plane's `H * W` values (by `load`).
    unsafe { written_by(total, fill) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time.
    fn reference(x: &[f32], weight: &[f32], channels: usize, g: Geometry) -> Vec<f32> {
        let [h, w] = g.input;
        let [kh, kw] = g.kernel;
        let [oh, ow] = g.output();
        let planes = x.len() / (h * w);
        let mut out = vec![0.0; planes * oh * ow];
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0f64;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * g.stride + ky) as isize - g.padding[0].0 as isize;
                            let ix = (ox * g.stride + kx) as isize - g.padding[1].0 as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let v = x[p * h * w + iy as usize * w + ix as usize];
                                sum += (v * weight[(p % channels) * kh * kw + ky * kw + kx]) as f64;
                            }
                        }
                    }
                    out[p * oh * ow + oy * ow + ox] = sum as f32;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn forward_and_input_gradient_match_the_definition() {
        let cases = [
            ([7, 9], [3, 3], 1, [(1, 1), (1, 1)]),
            ([8, 8], [3, 3], 2, [(0, 1), (0, 1)]),
            ([9, 7], [5, 5], 2, [(2, 2), (1, 2)]),
            ([6, 5], [5, 5], 1, [(2, 2), (2, 2)]),
            ([5, 6], [1, 1], 1, [(0, 0), (0, 0)]),
            ([4, 4], [3, 2], 2, [(0, 0), (1, 0)]),
        ];
        for (input, kernel, stride, padding) in cases {
            let g = Geometry {
                input,
                kernel,
                stride,
                padding,
            };
            assert!(g.supported(), "{g:?}");
            let channels = 3;
            let planes = 2 * channels;
            let x = values(planes * input[0] * input[1], 1);
            let weight = values(channels * kernel[0] * kernel[1], 2);
            let out = forward(&x, &weight, channels, g, Epilogue::default());
            let expected = reference(&x, &weight, channels, g);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "{g:?}: {a} vs {b}");
            }
            // <forward(x), r> = <x, input_gradient(r)> for every x and r: the input gradient is
            // the adjoint of the (linear) forward map.
            let r = values(out.len(), 3);
            let dx = input_gradient(&r, &weight, None, channels, g);
            assert_eq!(dx.len(), x.len());
            let lhs: f64 = out.iter().zip(&r).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{g:?}: {lhs} vs {rhs}");
            // And each entry of the gradient is the reference's derivative: perturb one input.
            let i = x.len() / 2 + 1;
            let mut bumped = x.clone();
            bumped[i] += 1.0;
            let moved: f64 = reference(&bumped, &weight, channels, g)
                .iter()
                .zip(&expected)
                .zip(&r)
                .map(|((a, b), r)| ((a - b) * r) as f64)
                .sum();
            assert!((moved - dx[i] as f64).abs() < 1e-4, "{g:?}: {moved} vs {}", dx[i]);
        }
    }

    #[test]
    fn geometry_refuses_what_the_kernels_do_not_handle() {
        let g = |kernel, stride, padding| Geometry {
            input: [8, 8],
            kernel,
            stride,
            padding,
        };
        assert!(!g([3, 3], 3, [(1, 1), (1, 1)]).supported());
        assert!(!g([3, 3], 1, [(3, 0), (1, 1)]).supported());
        assert!(
            !Geometry {
                input: [2, 2],
                kernel: [5, 5],
                stride: 1,
                padding: [(1, 1), (1, 1)]
            }
            .supported()
        );
        assert_eq!(g([3, 3], 2, [(0, 1), (0, 1)]).output(), [4, 4]);
    }
}
