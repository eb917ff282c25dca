//! Matrix products `dst (m x n) = lhs (m x k) rhs (k x n)` with `rhs` and `dst` row-major, as
//! a 1x1 convolution has them (`k` input channels, `n` pixels per channel), for AVX2 and FMA.
//!
//! `lhs` (the filter, small) is packed once per call into panels of [`TILE_CHANNELS`] rows, each
//! stored column by column. The columns of `rhs` are walked in blocks small enough that a block of
//! all `k` rows stays in the core's L2 cache; each block is first copied into tiles of 16 columns,
//! each tile's `k` rows one after the other (zero-padded past the last column), so that the
//! register tiles read it in one stream. That copy can also mask `rhs` by an activation's gradient
//! (the input gradient of a convolution followed by ReLU6). A register tile of [`TILE_CHANNELS`]
//! rows by 16 columns keeps 12 accumulators and, for each of the `k` inner indices, loads two
//! vectors of the copied block and broadcasts [`TILE_CHANNELS`] filter values. The bias and the
//! activation are applied in registers before a tile is stored, so each output value is written
//! once.
//!
//! Every output value is the sum over the inner index in increasing order, started from zero,
//! whatever the blocking or the number of threads: results do not depend on either.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::written_by;
use super::elementwise::Activation;

/// Output channels (rows of `lhs` and `dst`) per panel and register tile.
pub const TILE_CHANNELS: usize = 6;
/// Output pixels (columns of `rhs` and `dst`) per register tile: two vectors of 8.
const TILE_PIXELS: usize = 16;

/// Bytes of `rhs` a column block may span over all inner indices: half of a core's L2.
fn block_bytes() -> usize {
    super::cpu::l2_cache_bytes() / 2
}

/// Whether this CPU runs [`ThinProduct`] (AVX2 and FMA).
pub fn available() -> bool {
    super::cpu::features().avx2_fma
}

/// A product's filter packed into panels, with the bias and activation of its output.
pub struct ThinProduct {
    m: usize,
    k: usize,
    /// `ceil(m / TILE_CHANNELS)` panels of `k * TILE_CHANNELS` values: panel `p` holds
    /// `lhs[p TILE_CHANNELS + r][i]` at `i TILE_CHANNELS + r`, zero for rows past `m`.
    panels: Vec<f32>,
    /// Bias of each row, `TILE_CHANNELS` per panel, zero past `m` (or everywhere without a bias).
    bias: Vec<f32>,
    activation: Activation,
}

impl ThinProduct {
    /// Packs `lhs`, whose element `(row, i)` is at `row * strides[0] + i * strides[1]`.
    ///
    /// # Panics
    /// If an element of the `m x k` matrix lies outside `lhs`, or `bias` is not `m` long.
    pub fn new(
        lhs: &[f32],
        [m, k]: [usize; 2],
        strides: [usize; 2],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Self {
        if m > 0 && k > 0 {
            assert!((m - 1) * strides[0] + (k - 1) * strides[1] < lhs.len(), "filter size");
        }
        let panels_n = m.div_ceil(TILE_CHANNELS);
        let len = panels_n * k * TILE_CHANNELS;
        // On the threads (the filters of a network's 1x1 layers are megabytes, packed on every
        // pass), each panel written in order; the `TILE_CHANNELS` values read for one inner
        // index are close together whether `lhs` is stored row by row or transposed.
        // SAFETY: each panel's `k` runs of `TILE_CHANNELS` values are all written.
        let panels = unsafe {
            written_by(len, |spare| {
                spare
                    .par_chunks_mut((k * TILE_CHANNELS).max(1))
                    .enumerate()
                    .for_each(|(panel, dst)| {
                        for (i, values) in dst.chunks_exact_mut(TILE_CHANNELS).enumerate() {
                            for (r, value) in values.iter_mut().enumerate() {
                                let row = panel * TILE_CHANNELS + r;
                                value.write(if row < m {
                                    lhs[row * strides[0] + i * strides[1]]
                                } else {
                                    0.0
                                });
                            }
                        }
                    })
            })
        };
        let mut padded_bias = vec![0.0; panels_n * TILE_CHANNELS];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), m, "bias size");
            padded_bias[..m].copy_from_slice(bias);
        }
        Self {
            m,
            k,
            panels,
            bias: padded_bias,
            activation,
        }
    }

    /// `dst = activation(lhs rhs + bias)`, `rhs` being `k` rows of `n` values and `dst` `m`
    /// rows of `n` values (every one written), spreading the column blocks over the threads
    /// when `parallel`. With `mask`, `rhs` is taken as 0 wherever the gradient does not pass
    /// the activation whose outputs are `mask.0` (`k * n` values, laid out as `rhs`).
    ///
    /// # Panics
    /// If `rhs`, `dst` or the mask's outputs are too short, or the CPU lacks AVX2 or FMA
    /// ([`available`]).
    pub fn run(
        &self,
        rhs: &[f32],
        n: usize,
        mask: Option<(&[f32], Activation)>,
        dst: &mut [MaybeUninit<f32>],
        parallel: bool,
    ) {
        assert!(available(), "the thin product needs AVX2 and FMA");
        assert!(
            rhs.len() >= self.k * n && dst.len() >= self.m * n,
            "product operand sizes"
        );
        if let Some((outputs, _)) = mask {
            assert!(outputs.len() >= self.k * n, "activation output size");
        }
        if self.m == 0 || n == 0 {
            return;
        }
        let by_cache = (block_bytes() / (4 * self.k.max(1))) / TILE_PIXELS * TILE_PIXELS;
        let by_threads = if parallel {
            n.div_ceil(rayon::current_num_threads()).next_multiple_of(TILE_PIXELS)
        } else {
            n
        };
        let block = by_cache.clamp(TILE_PIXELS, by_threads.max(TILE_PIXELS));
        let out = SharedOut(dst.as_mut_ptr().cast::<f32>());
        let run_block = |index: usize| {
            let start = index * block;
            let width = block.min(n - start);
            // SAFETY: the block's columns `start..start + width` of `rhs` and `dst` exist
            // (asserted above); blocks cover disjoint columns, so no two threads write the
            // same value.
            unsafe { self.block(rhs, n, mask, out, start, width) };
        };
        let blocks = n.div_ceil(block);
        if parallel {
            (0..blocks).into_par_iter().for_each(run_block);
        } else {
            (0..blocks).for_each(run_block);
        }
    }

    /// Columns `start..start + width` of every row of `dst`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `rhs` (and the mask's outputs) hold `k` rows of `n`
    /// values, `out` points to `m` rows of `n` writable values, and `start + width <= n`;
    /// nothing else writes those columns meanwhile.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn block(
        &self,
        rhs: &[f32],
        n: usize,
        mask: Option<(&[f32], Activation)>,
        out: SharedOut,
        start: usize,
        width: usize,
    ) {
        let k = self.k;
        let mut packed = PACKED.take();
        let packed_len = width.div_ceil(TILE_PIXELS) * k * TILE_PIXELS;
        if packed.len() < packed_len {
            packed.resize(packed_len, 0.0);
        }
        let packed_block = &mut packed[..packed_len];
        let geometry = (n, start, width, k);
        // One loop per activation, each without a branch.
        match mask {
            None | Some((_, Activation::Identity)) => pack(rhs, rhs, geometry, packed_block, |g, _| g),
            Some((outputs, Activation::Relu)) => pack(rhs, outputs, geometry, packed_block, |g, y| {
                if Activation::Relu.passes(y) { g } else { 0.0 }
            }),
            Some((outputs, Activation::Relu6)) => pack(rhs, outputs, geometry, packed_block, |g, y| {
                if Activation::Relu6.passes(y) { g } else { 0.0 }
            }),
        }
        for (panel, filter) in self.panels.chunks_exact(k * TILE_CHANNELS).enumerate() {
            let first_row = panel * TILE_CHANNELS;
            let rows = TILE_CHANNELS.min(self.m - first_row);
            let bias = &self.bias[first_row..][..TILE_CHANNELS];
            for (t, tile) in packed_block.chunks_exact(k * TILE_PIXELS).enumerate() {
                let col = t * TILE_PIXELS;
                let dst = Dst {
                    // SAFETY: row `first_row`, column `start + col` is in `dst`.
                    ptr: unsafe { out.0.add(first_row * n + start + col) },
                    stride: n,
                    rows,
                    cols: TILE_PIXELS.min(width - col),
                };
                // SAFETY: `tile` is `k` rows of 16 values, and `dst` is `rows` rows of `cols`
                // values of this block's own columns.
                unsafe { tile_avx2(filter, tile, k, bias, self.activation, dst) };
            }
        }
        PACKED.set(packed);
    }
}

thread_local! {
    /// Each thread's copy of the column block it works on (kept between calls: no allocation
    /// or zero-filling per block).
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Copies columns `start..start + width` of the `k` rows of `rhs` (rows `n` apart; `geometry`
/// is `(n, start, width, k)`) into `packed` as tiles of 16 columns, each tile's rows one after
/// the other and zero past `width`, each value `g` written as `value(g, y)` with `y` the value
/// at the same place in `outputs`.
#[inline(always)]
fn pack(
    rhs: &[f32],
    outputs: &[f32],
    (n, start, width, k): (usize, usize, usize, usize),
    packed: &mut [f32],
    value: impl Fn(f32, f32) -> f32,
) {
    for i in 0..k {
        let (row, ys) = (&rhs[i * n + start..][..width], &outputs[i * n + start..][..width]);
        let tiles = packed[i * TILE_PIXELS..].chunks_mut(k * TILE_PIXELS);
        for ((dst, src), ys) in tiles.zip(row.chunks(TILE_PIXELS)).zip(ys.chunks(TILE_PIXELS)) {
            if let (Ok(dst), Ok(src), Ok(ys)) = (
                <&mut [f32; TILE_PIXELS]>::try_from(&mut dst[..TILE_PIXELS]),
                <&[f32; TILE_PIXELS]>::try_from(src),
                <&[f32; TILE_PIXELS]>::try_from(ys),
            ) {
                // A whole tile row: a fixed size, so a few vector moves rather than a call.
                *dst = std::array::from_fn(|c| value(src[c], ys[c]));
            } else {
                let (values, padding) = dst[..TILE_PIXELS].split_at_mut(src.len());
                for ((d, &g), &y) in values.iter_mut().zip(src).zip(ys) {
                    *d = value(g, y);
                }
                padding.fill(0.0);
            }
        }
    }
}

/// The output pointer, shared by the threads that write disjoint columns of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each thread writes its own columns only (see `ThinProduct::block`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// Where a register tile goes: the first `rows` rows (`stride` apart) and `cols` columns of it.
struct Dst {
    ptr: *mut f32,
    stride: usize,
    rows: usize,
    cols: usize,
}

/// One register tile: `activation(sum_i filter[i][r] tile[i][c] + bias[r])` for the
/// [`TILE_CHANNELS`] rows `r` and 16 columns `c`, the inner sum in increasing `i` from zero.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `filter` must hold `k * TILE_CHANNELS` values, `tile`
/// `k * 16`, and `dst` `rows <= TILE_CHANNELS` rows of `cols <= 16` writable values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(filter: &[f32], tile: &[f32], k: usize, bias: &[f32], activation: Activation, dst: Dst) {
    use std::arch::x86_64::*;
    debug_assert!(filter.len() >= k * TILE_CHANNELS && tile.len() >= k * TILE_PIXELS && bias.len() >= TILE_CHANNELS);
    // SAFETY: the caller guarantees the bounds above.
    unsafe {
        let z = _mm256_setzero_ps();
        let mut acc = [[z; 2]; TILE_CHANNELS];
        let mut f = filter.as_ptr();
        let mut x = tile.as_ptr();
        for _ in 0..k {
            let lo = _mm256_loadu_ps(x);
            let hi = _mm256_loadu_ps(x.add(8));
            x = x.add(TILE_PIXELS);
            for (r, row) in acc.iter_mut().enumerate() {
                let w = _mm256_broadcast_ss(&*f.add(r));
                row[0] = _mm256_fmadd_ps(w, lo, row[0]);
                row[1] = _mm256_fmadd_ps(w, hi, row[1]);
            }
            f = f.add(TILE_CHANNELS);
        }
        let six = _mm256_set1_ps(6.0);
        for (row, &b) in acc.iter_mut().zip(bias) {
            let b = _mm256_set1_ps(b);
            for a in row.iter_mut() {
                let v = _mm256_add_ps(*a, b);
                // As `Activation::apply`, NaN kept: `max(0, v)` returns `v` when it is NaN, and
                // adding +0 turns ReLU's -0 into +0.
                *a = match activation {
                    Activation::Identity => v,
                    Activation::Relu => _mm256_add_ps(_mm256_max_ps(z, v), z),
                    Activation::Relu6 => _mm256_min_ps(six, _mm256_max_ps(z, v)),
                };
            }
        }
        if dst.rows == TILE_CHANNELS && dst.cols == TILE_PIXELS {
            for (r, row) in acc.iter().enumerate() {
                let out = dst.ptr.add(r * dst.stride);
                _mm256_storeu_ps(out, row[0]);
                _mm256_storeu_ps(out.add(8), row[1]);
            }
        } else {
            let mut tile = [[0.0f32; TILE_PIXELS]; TILE_CHANNELS];
            for (values, row) in tile.iter_mut().zip(&acc) {
                _mm256_storeu_ps(values.as_mut_ptr(), row[0]);
                _mm256_storeu_ps(values.as_mut_ptr().add(8), row[1]);
            }
            for (r, values) in tile.iter().enumerate().take(dst.rows) {
                std::ptr::copy_nonoverlapping(values.as_ptr(), dst.ptr.add(r * dst.stride), dst.cols);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_avx2(_: &[f32], _: &[f32], _: usize, _: &[f32], _: Activation, _: Dst) {
    unreachable!("`available` is false off x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 250.0 - 4.0)
            .collect()
    }

    /// The definition, summed in the same order (so the results are equal, not just close).
    fn reference(
        lhs: &[f32],
        [m, k]: [usize; 2],
        strides: [usize; 2],
        rhs: &[f32],
        n: usize,
        bias: &[f32],
        act: Activation,
    ) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for row in 0..m {
            for c in 0..n {
                let mut acc = 0.0f32;
                for i in 0..k {
                    acc = lhs[row * strides[0] + i * strides[1]].mul_add(rhs[i * n + c], acc);
                }
                out[row * n + c] = act.apply(acc + bias[row]);
            }
        }
        out
    }

    #[test]
    fn products_equal_the_definition_for_every_edge_and_blocking() {
        if !available() {
            return;
        }
        // Rows short of a panel, columns short of a tile, several blocks (k large), k = 1,
        // the filter read transposed, serial and parallel.
        for (m, k, n) in [
            (6, 16, 32),
            (7, 3, 17),
            (13, 40, 49),
            (1, 1, 5),
            (20, 5000, 40),
            (96, 16, 300),
        ] {
            for (strides, transposed) in [([k, 1], false), ([1, m], true)] {
                let lhs = values(m * k, 1 + transposed as u32);
                let rhs = values(k * n, 2);
                let bias = values(m, 3);
                for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
                    let want = reference(&lhs, [m, k], strides, &rhs, n, &bias, act);
                    let product = ThinProduct::new(&lhs, [m, k], strides, Some(&bias), act);
                    for parallel in [false, true] {
                        let mut out = vec![MaybeUninit::new(f32::NAN); m * n];
                        product.run(&rhs, n, None, &mut out, parallel);
                        let got: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "m {m} k {k} n {n} transposed {transposed} {act:?} parallel {parallel}"
                        );
                    }
                    // `rhs` masked by the gradient of an activation with outputs `y` (in [-8, 8]
                    // and exactly 0 or 6 here and there).
                    let y: Vec<f32> = values(k * n, 4)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match i % 7 {
                            1 => 0.0,
                            2 => 6.0,
                            _ => v * 2.0,
                        })
                        .collect();
                    let masked: Vec<f32> = rhs
                        .iter()
                        .zip(&y)
                        .map(|(g, y)| if act.passes(*y) { *g } else { 0.0 })
                        .collect();
                    let want = reference(&lhs, [m, k], strides, &masked, n, &bias, Activation::Identity);
                    let plain = ThinProduct::new(&lhs, [m, k], strides, Some(&bias), Activation::Identity);
                    let mut out = vec![MaybeUninit::new(f32::NAN); m * n];
                    plain.run(&rhs, n, Some((&y, act)), &mut out, false);
                    let got: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "masked by {act:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn activations_keep_nan_and_match_their_scalar_definition_at_the_edges() {
        if !available() {
            return;
        }
        // One row, k = 1, weight 1: the output is the input plus the bias.
        let inputs = [
            -1.0,
            -0.0,
            0.0,
            3.0,
            6.0,
            7.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
            let product = ThinProduct::new(&[1.0], [1, 1], [1, 1], None, act);
            let mut out = vec![MaybeUninit::new(0.0); inputs.len()];
            product.run(&inputs, inputs.len(), None, &mut out, false);
            for (v, o) in inputs.iter().zip(&out) {
                let (got, want) = (unsafe { o.assume_init() }, act.apply(v + 0.0));
                assert!(got.to_bits() == want.to_bits(), "{act:?}({v}) = {got}, want {want}");
            }
        }
    }
}
