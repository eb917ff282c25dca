//! A direct stride-1 convolution on `f32` slices, as an implicit matrix product.
//!
//! A convolution of an input `[B, C_in, H, W]` with a filter `[C_out, C_in, KH, KW]` is the
//! product of the filter, seen as a `C_out x K` matrix (`K = C_in KH KW`), with the "im2col"
//! matrix `K x P` whose column for output pixel `p` lists the input values under the filter
//! at `p`. With stride 1 and an input already padded, that column is the input read at
//! `base(p) + offset(k)`: `base(p)` is the input position of the pixel's top-left tap and
//! `offset(k) = c H W + r W + s` the position of tap `k = (r, c, s)` (filter row, input
//! channel, filter column) relative to it. So the column never has to be written out: the
//! kernel reads it from the input as it goes.
//!
//! The product is tiled as a matrix multiplication's micro-kernel is: a tile of [`TILE_CHANNELS`]
//! output channels by [`TILE_PIXELS`] output pixels is accumulated in registers over all `K` taps.
//! At each tap, the tile's `TILE_CHANNELS` filter values are loaded as vectors (the filter is
//! packed so that they are contiguous) and each pixel's input value is broadcast and multiplied
//! into them, one fused multiply-add per vector. With AVX2 the tile is 16 channels (two 8-wide
//! vectors) by 6 pixels: 12 accumulators, 12 multiply-adds for 2 vector loads and 6 broadcasts per
//! tap, which keeps the two FMA units of a core busy. The pixels of a tile are any 6 consecutive
//! output pixels of one image in row-major order (they may wrap to the next row), so odd widths
//! cost nothing; a last tile of fewer pixels repeats its last pixel and drops the copies, and a
//! last block of fewer channels reads zero filter rows and drops them.
//!
//! Work is split over images and channel blocks on rayon's pool. Each image is zero-padded
//! into a buffer of its own just before its convolution, so that it is read back from the
//! cache; with the taps ordered by filter row, a tile whose pixels see only padding under some
//! filter rows skips those rows' taps.
//!
//! The input gradient of a stride-1 convolution is itself such a convolution: of the output
//! gradient padded by `KH - 1 - pad` (and `KW - 1 - pad`), with the filter flipped in both
//! spatial axes and its input and output channels swapped ([`PackedFilter::input_gradient`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::written_by;

/// Output channels per register tile.
pub const TILE_CHANNELS: usize = 16;
/// Output pixels per register tile.
pub const TILE_PIXELS: usize = 6;

/// Alignment, in floats, of each packed filter block (one cache line).
const ALIGN: usize = 16;

/// A filter packed for [`conv2d`]: for each block of [`TILE_CHANNELS`] output channels, for each
/// tap `(r, c, s)` (filter row, input channel, filter column) in that order, the `TILE_CHANNELS`
/// filter values of the block's channels (zero past the last channel). Blocks start on cache lines.
// Not `Clone`: a copy would lose the alignment of `start`.
#[derive(Debug)]
pub struct PackedFilter {
    data: Vec<f32>,
    start: usize,
    out_channels: usize,
    in_channels: usize,
    kernel: [usize; 2],
}

impl PackedFilter {
    /// Packs a filter `[C_out, C_in, KH, KW]` (row-major) for the convolution it describes.
    ///
    /// # Panics
    /// When `weight` does not hold `C_out C_in KH KW` values.
    pub fn forward(weight: &[f32], shape: [usize; 4]) -> Self {
        let [c_out, c_in, kh, kw] = shape;
        assert_eq!(weight.len(), c_out * c_in * kh * kw, "filter size");
        Self::build(c_out, c_in, [kh, kw], |o, i, r, s| {
            weight[((o * c_in + i) * kh + r) * kw + s]
        })
    }

    /// Packs the filter of the input gradient of the convolution by `weight` (`[C_out, C_in, KH,
    /// KW]`): `C_out` input channels, `C_in` output channels, taps flipped in both axes.
    ///
    /// # Panics
    /// When `weight` does not hold `C_out C_in KH KW` values.
    pub fn input_gradient(weight: &[f32], shape: [usize; 4]) -> Self {
        let [c_out, c_in, kh, kw] = shape;
        assert_eq!(weight.len(), c_out * c_in * kh * kw, "filter size");
        Self::build(c_in, c_out, [kh, kw], |o, i, r, s| {
            weight[((i * c_in + o) * kh + (kh - 1 - r)) * kw + (kw - 1 - s)]
        })
    }

    fn build(
        out_channels: usize,
        in_channels: usize,
        kernel: [usize; 2],
        value: impl Fn(usize, usize, usize, usize) -> f32,
    ) -> Self {
        let [kh, kw] = kernel;
        let taps = in_channels * kh * kw;
        let blocks = out_channels.div_ceil(TILE_CHANNELS);
        let mut data = vec![0.0f32; blocks * taps * TILE_CHANNELS + ALIGN];
        let start = data.as_ptr().align_offset(ALIGN * 4).min(ALIGN);
        for block in 0..blocks {
            let dst = &mut data[start + block * taps * TILE_CHANNELS..start + (block + 1) * taps * TILE_CHANNELS];
            for lane in 0..TILE_CHANNELS.min(out_channels - block * TILE_CHANNELS) {
                let o = block * TILE_CHANNELS + lane;
                let mut k = 0;
                for r in 0..kh {
                    for i in 0..in_channels {
                        for s in 0..kw {
                            dst[k * TILE_CHANNELS + lane] = value(o, i, r, s);
                            k += 1;
                        }
                    }
                }
            }
        }
        Self {
            data,
            start,
            out_channels,
            in_channels,
            kernel,
        }
    }

    /// `[KH, KW]`.
    pub fn kernel(&self) -> [usize; 2] {
        self.kernel
    }

    fn taps(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    fn block(&self, block: usize) -> &[f32] {
        let len = self.taps() * TILE_CHANNELS;
        &self.data[self.start + block * len..self.start + (block + 1) * len]
    }
}

/// Zero values after each padded image, so that [`conv_rows`] may read whole vectors past the
/// last pixel.
const SLACK: usize = 128;

/// An input `[B, C, H, W]` (row-major) as the convolution reads it: zero-padded by `padding`
/// rows and columns on each side and, for the input gradient through a ReLU, masked by the
/// ReLU's output (the gradient kept where the output is positive or NaN, zeroed elsewhere, as
/// burn's ReLU backward pass computes it).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The values.
    pub values: &'a [f32],
    /// `[B, C, H, W]`.
    pub shape: [usize; 4],
    /// `[rows, columns]` of zeros on each side.
    pub padding: [usize; 2],
    /// The ReLU output `[B, C, H, W]` that masks `values`, if any.
    pub relu_mask: Option<&'a [f32]>,
}

impl Input<'_> {
    /// `[H + 2 pad_h, W + 2 pad_w]`.
    fn padded_size(&self) -> [usize; 2] {
        let [_, _, h, w] = self.shape;
        [h + 2 * self.padding[0], w + 2 * self.padding[1]]
    }

    /// Image `image` padded and masked, followed by [`SLACK`] zeros.
    fn padded_image(&self, image: usize) -> Vec<f32> {
        let [_, c, h, w] = self.shape;
        let [ph, pw] = self.padding;
        let [hp, wp] = self.padded_size();
        let len = c * hp * wp;
        let src = &self.values[image * c * h * w..(image + 1) * c * h * w];
        let mask = self.relu_mask.map(|m| &m[image * c * h * w..(image + 1) * c * h * w]);
        // Every value is written once: borders with zeros, the interior from `src`.
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let base = out.as_mut_ptr().cast::<f32>();
            // SAFETY: all writes below are inside the `len + SLACK` values reserved; zero bits are
            // 0.0f32.
            unsafe {
                base.add(len).write_bytes(0, SLACK);
                for plane in 0..c {
                    let dst = base.add(plane * hp * wp);
                    dst.write_bytes(0, ph * wp + pw);
                    for row in 0..h {
                        let at = (plane * h + row) * w;
                        let d = dst.add((row + ph) * wp + pw);
                        match mask {
                            None => std::ptr::copy_nonoverlapping(src.as_ptr().add(at), d, w),
                            Some(mask) => {
                                let (g, o) = (&src[at..at + w], &mask[at..at + w]);
                                for (i, (&g, &o)) in g.iter().zip(o).enumerate() {
                                    d.add(i).write(if o.is_nan() || o > 0.0 { g } else { 0.0 });
                                }
                            }
                        }
                        // The right border of this row and the left border of the next.
                        let gap = if row + 1 < h { 2 * pw } else { pw + ph * wp };
                        d.add(w).write_bytes(0, gap);
                    }
                    if h == 0 {
                        dst.add(ph * wp + pw).write_bytes(0, hp * wp - ph * wp - pw);
                    }
                }
            }
        };
        // SAFETY: `fill` writes every value up to `len + SLACK`.
        unsafe { written_by(len + SLACK, fill) }
    }
}

/// Output `[B, C_out, H + 2 pad_h - KH + 1, W + 2 pad_w - KW + 1]` of the stride-1
/// convolution of `input` (padded and masked as it says) by `filter`, then `epilogue` (bias,
/// ReLU).
///
/// Each image is padded (and masked) into a buffer of its own just before its convolution, so
/// that it is read back from the cache. The taps of filter rows that fall only on padding rows
/// are skipped: for the input gradient, whose output gradient is padded by `KH - 1` rows, that
/// is a third to a fifth of the work on small images.
///
/// Filters of fewer than [`FEW_CHANNELS`] output channels (the input gradient of a network's
/// first layer, whose input has 1 or 3 channels) would leave most of a channel tile idle; they
/// are computed with vectors along the image rows instead (the row kernel below).
///
/// # Panics
/// When `input` does not hold `B C_in H W` values (and mask values), the filter is larger than
/// the padded input or has other input channels, or the bias does not have `C_out` values.
pub fn conv2d(input: Input<'_>, filter: &PackedFilter, epilogue: Epilogue<'_>) -> Vec<f32> {
    conv2d_with(input, filter, epilogue, Microkernel::detect())
}

/// [`conv2d`] with the portable register tiles, whatever the CPU (to test them on any machine).
#[cfg(test)]
pub fn conv2d_portable(input: Input<'_>, filter: &PackedFilter, epilogue: Epilogue<'_>) -> Vec<f32> {
    conv2d_with(input, filter, epilogue, Microkernel::Portable)
}

fn conv2d_with(input: Input<'_>, filter: &PackedFilter, epilogue: Epilogue<'_>, kernel: Microkernel) -> Vec<f32> {
    let bias = epilogue.bias;
    let [batch, c_in, h0, w0] = input.shape;
    let [h, w] = input.padded_size();
    let [kh, kw] = filter.kernel;
    assert_eq!(c_in, filter.in_channels, "input channels");
    assert_eq!(input.values.len(), batch * c_in * h0 * w0, "input size");
    if let Some(mask) = input.relu_mask {
        assert_eq!(mask.len(), input.values.len(), "ReLU output size");
    }
    assert!(kh <= h && kw <= w, "filter larger than the input");
    let c_out = filter.out_channels;
    if let Some(bias) = bias {
        assert_eq!(bias.len(), c_out, "bias size");
    }
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let pixels = oh * ow;
    let total = batch * c_out * pixels;
    if total == 0 {
        return Vec::new();
    }
    let mut offsets = Vec::with_capacity(filter.taps());
    for r in 0..kh {
        for i in 0..c_in {
            for s in 0..kw {
                offsets.push(i * h * w + r * w + s);
            }
        }
    }
    let geometry = Geometry {
        out_width: ow,
        out_height: oh,
        in_width: w,
        in_height: h,
        zero_rows: input.padding[0],
        taps_per_row: c_in * kw,
        kernel_height: kh,
        relu: epilogue.relu,
        pixels,
    };
    let image_len = c_in * h0 * w0;
    let rows = c_out < FEW_CHANNELS;
    // Unpadded, unmasked images are read in place, except by the row kernel, which reads past
    // the image.
    let in_place = input.padding == [0, 0] && input.relu_mask.is_none() && !rows;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let spare = &mut out.spare_capacity_mut()[..total];
    spare
        .par_chunks_mut(c_out * pixels)
        .enumerate()
        .for_each(|(image, out_image)| {
            let padded;
            let x_image = if in_place {
                &input.values[image * image_len..(image + 1) * image_len]
            } else {
                padded = input.padded_image(image);
                &padded[..]
            };
            if rows {
                conv_rows(kernel, x_image, &offsets, filter.block(0), bias, &geometry, out_image);
                return;
            }
            out_image
                .par_chunks_mut(TILE_CHANNELS * pixels)
                .enumerate()
                .for_each(|(block, out_block)| {
                    let channels = out_block.len() / pixels;
                    let bias = bias.map(|b| &b[block * TILE_CHANNELS..block * TILE_CHANNELS + channels]);
                    conv_block(
                        kernel,
                        x_image,
                        &offsets,
                        filter.block(block),
                        bias,
                        &geometry,
                        out_block,
                    );
                });
        });
    // SAFETY: `conv_block` and `conv_rows` wrote every output value.
    unsafe { out.set_len(total) };
    out
}

/// Below this many output channels, [`conv2d`] vectorises along image rows.
pub const FEW_CHANNELS: usize = 8;

/// What is applied to each output value: `+ bias[c]` if given, then ReLU (`max(v, 0)`, NaN
/// kept) if asked.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Per output channel.
    pub bias: Option<&'a [f32]>,
    /// Whether to apply ReLU.
    pub relu: bool,
}

/// ReLU as burn computes it: NaN stays NaN.
#[inline(always)]
pub fn relu(v: f32) -> f32 {
    if v.is_nan() || v > 0.0 { v } else { 0.0 }
}

/// Sizes a block of output channels needs.
struct Geometry {
    out_width: usize,
    out_height: usize,
    in_width: usize,
    in_height: usize,
    zero_rows: usize,
    taps_per_row: usize,
    kernel_height: usize,
    relu: bool,
    pixels: usize,
}

impl Geometry {
    /// The taps (a range of the `(r, c, s)` order) that can touch a non-zero input for output
    /// rows `first..=last`: those of the filter rows `r` with `first + r` or `last + r` in the
    /// non-zero band of the input.
    fn taps(&self, first: usize, last: usize) -> std::ops::Range<usize> {
        let z = self.zero_rows;
        let r_lo = z.saturating_sub(last);
        let r_hi = self.kernel_height.min((self.in_height - z).saturating_sub(first));
        let r_hi = r_hi.max(r_lo);
        r_lo * self.taps_per_row..r_hi * self.taps_per_row
    }
}

/// The register tile implementation, chosen once per call from the CPU's features.
#[derive(Clone, Copy)]
enum Microkernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Microkernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::cpu::features().avx2_fma {
            return Microkernel::Avx2;
        }
        Microkernel::Portable
    }
}

/// All pixels of one image for `out.len() / pixels` (at most [`TILE_CHANNELS`]) output channels.
fn conv_block(
    kernel: Microkernel,
    x: &[f32],
    offsets: &[usize],
    filter: &[f32],
    bias: Option<&[f32]>,
    geometry: &Geometry,
    out: &mut [MaybeUninit<f32>],
) {
    let pixels = geometry.pixels;
    let channels = out.len() / pixels;
    let mut bias_lanes = [0.0f32; TILE_CHANNELS];
    if let Some(bias) = bias {
        bias_lanes[..channels].copy_from_slice(bias);
    }
    let mut tile = [[0.0f32; TILE_CHANNELS]; TILE_PIXELS];
    // Row and column of the tile's first pixel.
    let (mut row, mut col) = (0, 0);
    let mut first = 0;
    while first < pixels {
        let count = TILE_PIXELS.min(pixels - first);
        let first_row = row;
        // Each base is a valid pixel's (a short tile repeats its last), so the taps stay in `x`.
        let mut bases = [0usize; TILE_PIXELS];
        for j in 0..TILE_PIXELS {
            if j < count {
                bases[j] = row * geometry.in_width + col;
                col += 1;
                if col == geometry.out_width {
                    (row, col) = (row + 1, 0);
                }
            } else {
                bases[j] = bases[count - 1];
            }
        }
        let last_row = (first + count - 1) / geometry.out_width;
        let taps = geometry.taps(first_row, last_row);
        let (offsets, filter) = (
            &offsets[taps.clone()],
            &filter[taps.start * TILE_CHANNELS..taps.end * TILE_CHANNELS],
        );
        let out = &mut out[first..];
        let full = count == TILE_PIXELS && channels == TILE_CHANNELS;
        match kernel {
            Microkernel::Portable => tile_portable(x, &bases, offsets, filter, &mut tile),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` saw AVX2 and FMA; `tile_avx2` reads `x` at `base + offset`, each
            // below `x.len()` since the bases are of output pixels and the offsets of taps, and a
            // full tile writes `out[c pixels + j]` for `c < TILE_CHANNELS`, `j < TILE_PIXELS`,
            // inside `out`.
            Microkernel::Avx2 if full => unsafe {
                let sink = Sink::Output {
                    out: out.as_mut_ptr() as *mut f32,
                    pixels,
                    bias: &bias_lanes,
                    relu: geometry.relu,
                };
                tile_avx2(x, &bases, offsets, filter, sink);
                first += count;
                continue;
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, writing only `tile`.
            Microkernel::Avx2 => unsafe { tile_avx2(x, &bases, offsets, filter, Sink::Tile(&mut tile)) },
        }
        if geometry.relu {
            store(&tile, &bias_lanes, channels, count, pixels, out, relu);
        } else {
            store(&tile, &bias_lanes, channels, count, pixels, out, |v| v);
        }
        first += count;
    }
}

/// Writes `f(tile[j][c] + bias[c])` to `out[c pixels + j]` for the tile's `count` pixels and
/// `channels` channels.
#[inline(always)]
fn store(
    tile: &[[f32; TILE_CHANNELS]; TILE_PIXELS],
    bias: &[f32; TILE_CHANNELS],
    channels: usize,
    count: usize,
    pixels: usize,
    out: &mut [MaybeUninit<f32>],
    f: impl Fn(f32) -> f32,
) {
    if count == TILE_PIXELS && channels == TILE_CHANNELS {
        for (c, &b) in bias.iter().enumerate() {
            let dst = &mut out[c * pixels..c * pixels + TILE_PIXELS];
            for (d, t) in dst.iter_mut().zip(tile) {
                d.write(f(t[c] + b));
            }
        }
    } else {
        for (c, &b) in bias.iter().enumerate().take(channels) {
            let dst = &mut out[c * pixels..c * pixels + count];
            for (d, t) in dst.iter_mut().zip(tile) {
                d.write(f(t[c] + b));
            }
        }
    }
}

/// Most pixels per row tile of [`conv_rows`]: 12 vectors of 8.
const ROW_TILE: usize = 96;

/// All output channels (fewer than [`FEW_CHANNELS`]) of one image, with vectors along rows.
///
/// The image is read as one long row: output position `p = oh W + ow` (`W` the input width)
/// reads the input at `p + offset(k)` for every tap, so runs of consecutive positions are
/// contiguous vectors of the input. Positions with `ow` past the output width wrap into the
/// next row; they are computed and dropped, which costs `(KW - 1) / W` of the work. `x` must
/// hold [`SLACK`] values past the image, read by the last positions. Channels are taken up to 4
/// at a time, each tap's input vectors serving all of them: 12 accumulators in all.
fn conv_rows(
    kernel: Microkernel,
    x: &[f32],
    offsets: &[usize],
    filter: &[f32],
    bias: Option<&[f32]>,
    geometry: &Geometry,
    out: &mut [MaybeUninit<f32>],
) {
    let channels = out.len() / geometry.pixels;
    let mut first = 0;
    while first < channels {
        let group = (channels - first).min(4);
        let args = (kernel, x, offsets, filter, bias, geometry, &mut *out, first);
        match group {
            1 => conv_rows_group::<1, 12>(args),
            2 => conv_rows_group::<2, 6>(args),
            3 => conv_rows_group::<3, 4>(args),
            _ => conv_rows_group::<4, 3>(args),
        }
        first += group;
    }
}

type RowsArgs<'a> = (
    Microkernel,
    &'a [f32],
    &'a [usize],
    &'a [f32],
    Option<&'a [f32]>,
    &'a Geometry,
    &'a mut [MaybeUninit<f32>],
    usize,
);

/// Channels `first..first + C` of [`conv_rows`], `8 V` positions at a time.
fn conv_rows_group<const C: usize, const V: usize>(
    (kernel, x, offsets, filter, bias, geometry, out, first): RowsArgs<'_>,
) {
    let (w, ow, oh) = (geometry.in_width, geometry.out_width, geometry.out_height);
    let pixels = geometry.pixels;
    let long_row = (oh - 1) * w + ow;
    let step = 8 * V;
    let mut tile = [[0.0f32; ROW_TILE]; C];
    let mut start = 0;
    while start < long_row {
        match kernel {
            Microkernel::Portable => row_tile_portable::<C>(&x[start..], offsets, filter, first, step, &mut tile),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA were detected; the tile reads `x[start + offset + i]` for
            // `i < 8 V`, below the image plus its `SLACK`.
            Microkernel::Avx2 => unsafe { row_tile_avx2::<C, V>(&x[start..], offsets, filter, first, &mut tile) },
        }
        let end = (start + step).min(long_row);
        for (g, tile_row) in tile.iter().enumerate() {
            let c = first + g;
            let b = bias.map_or(0.0, |b| b[c]);
            let out = &mut out[c * pixels..(c + 1) * pixels];
            let (mut row, mut col) = (start / w, start % w);
            for &v in &tile_row[..end - start] {
                if col < ow {
                    let v = v + b;
                    out[row * ow + col].write(if geometry.relu { relu(v) } else { v });
                }
                col += 1;
                if col == w {
                    (row, col) = (row + 1, 0);
                }
            }
        }
        start = end;
    }
}

/// `tile[g][i] = sum_k filter[k TILE_CHANNELS + first + g] x[offsets[k] + i]` for `i < len`.
fn row_tile_portable<const C: usize>(
    x: &[f32],
    offsets: &[usize],
    filter: &[f32],
    first: usize,
    len: usize,
    tile: &mut [[f32; ROW_TILE]; C],
) {
    *tile = [[0.0; ROW_TILE]; C];
    for (&offset, f) in offsets.iter().zip(filter.chunks_exact(TILE_CHANNELS)) {
        let src = &x[offset..offset + len];
        for (g, row) in tile.iter_mut().enumerate() {
            let f = f[first + g];
            for (acc, &v) in row.iter_mut().zip(src) {
                *acc = f.mul_add(v, *acc);
            }
        }
    }
}

/// [`row_tile_portable`] with AVX2 for `len = 8 V`: `C V` accumulators of 8 lanes.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `x` must hold `offsets[k] + 8 V` values for every `k`,
/// `filter` `offsets.len() * TILE_CHANNELS` values, and `first + C <= TILE_CHANNELS`, `V <= 12`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_tile_avx2<const C: usize, const V: usize>(
    x: &[f32],
    offsets: &[usize],
    filter: &[f32],
    first: usize,
    tile: &mut [[f32; ROW_TILE]; C],
) {
    use std::arch::x86_64::*;
    debug_assert!(offsets.iter().all(|&o| o + 8 * V <= x.len()));
    debug_assert!(filter.len() >= offsets.len() * TILE_CHANNELS && first + C <= TILE_CHANNELS && V <= 12);
    // SAFETY: the caller guarantees the bounds above.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); V]; C];
        let mut f = filter.as_ptr().add(first);
        for &o in offsets {
            let src = x.as_ptr().add(o);
            let weights: [__m256; C] = std::array::from_fn(|g| _mm256_broadcast_ss(&*f.add(g)));
            f = f.add(TILE_CHANNELS);
            // Position-major, so that each input vector is loaded once for all channels.
            #[allow(clippy::needless_range_loop)]
            for v in 0..V {
                let input = _mm256_loadu_ps(src.add(8 * v));
                for g in 0..C {
                    acc[g][v] = _mm256_fmadd_ps(weights[g], input, acc[g][v]);
                }
            }
        }
        for (row, acc_row) in tile.iter_mut().zip(acc) {
            for (v, a) in acc_row.into_iter().enumerate() {
                _mm256_storeu_ps(row.as_mut_ptr().add(8 * v), a);
            }
        }
    }
}

/// One register tile without SIMD intrinsics: `tile[j][c] = sum_k filter[k][c] x[bases[j] +
/// offsets[k]]`.
fn tile_portable(
    x: &[f32],
    bases: &[usize; TILE_PIXELS],
    offsets: &[usize],
    filter: &[f32],
    tile: &mut [[f32; TILE_CHANNELS]; TILE_PIXELS],
) {
    *tile = [[0.0; TILE_CHANNELS]; TILE_PIXELS];
    for (&offset, f) in offsets.iter().zip(filter.chunks_exact(TILE_CHANNELS)) {
        for (row, &base) in tile.iter_mut().zip(bases) {
            let v = x[base + offset];
            for (acc, &fc) in row.iter_mut().zip(f) {
                *acc = fc.mul_add(v, *acc);
            }
        }
    }
}

/// [`tile_portable`] with AVX2: 12 accumulators of 8 lanes.
///
/// # Safety
/// The CPU must support AVX2 and FMA, every `bases[j] + offsets[k]` must be below `x.len()`,
/// and `filter` must hold `offsets.len() * TILE_CHANNELS` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(x: &[f32], bases: &[usize; TILE_PIXELS], offsets: &[usize], filter: &[f32], sink: Sink<'_>) {
    use std::arch::x86_64::*;
    debug_assert!(filter.len() >= offsets.len() * TILE_CHANNELS);
    debug_assert!(bases.iter().all(|&b| offsets.iter().all(|&o| b + o < x.len())));
    // SAFETY: the caller guarantees the bounds above.
    unsafe {
        let p = x.as_ptr();
        let [x0, x1, x2, x3, x4, x5] = bases.map(|b| p.add(b));
        let mut f = filter.as_ptr();
        let z = _mm256_setzero_ps();
        let (mut a00, mut a01, mut a10, mut a11, mut a20, mut a21) = (z, z, z, z, z, z);
        let (mut a30, mut a31, mut a40, mut a41, mut a50, mut a51) = (z, z, z, z, z, z);
        for &o in offsets {
            let f0 = _mm256_load_ps(f);
            let f1 = _mm256_load_ps(f.add(8));
            f = f.add(TILE_CHANNELS);
            let v = _mm256_broadcast_ss(&*x0.add(o));
            a00 = _mm256_fmadd_ps(f0, v, a00);
            a01 = _mm256_fmadd_ps(f1, v, a01);
            let v = _mm256_broadcast_ss(&*x1.add(o));
            a10 = _mm256_fmadd_ps(f0, v, a10);
            a11 = _mm256_fmadd_ps(f1, v, a11);
            let v = _mm256_broadcast_ss(&*x2.add(o));
            a20 = _mm256_fmadd_ps(f0, v, a20);
            a21 = _mm256_fmadd_ps(f1, v, a21);
            let v = _mm256_broadcast_ss(&*x3.add(o));
            a30 = _mm256_fmadd_ps(f0, v, a30);
            a31 = _mm256_fmadd_ps(f1, v, a31);
            let v = _mm256_broadcast_ss(&*x4.add(o));
            a40 = _mm256_fmadd_ps(f0, v, a40);
            a41 = _mm256_fmadd_ps(f1, v, a41);
            let v = _mm256_broadcast_ss(&*x5.add(o));
            a50 = _mm256_fmadd_ps(f0, v, a50);
            a51 = _mm256_fmadd_ps(f1, v, a51);
        }
        match sink {
            Sink::Tile(tile) => {
                let t = tile.as_mut_ptr() as *mut f32;
                for (j, (lo, hi)) in [(a00, a01), (a10, a11), (a20, a21), (a30, a31), (a40, a41), (a50, a51)]
                    .into_iter()
                    .enumerate()
                {
                    _mm256_storeu_ps(t.add(j * TILE_CHANNELS), lo);
                    _mm256_storeu_ps(t.add(j * TILE_CHANNELS + 8), hi);
                }
            }
            Sink::Output {
                out,
                pixels,
                bias,
                relu,
            } => {
                let (b0, b1) = (_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8)));
                let finish = |v: __m256, b: __m256| {
                    let v = _mm256_add_ps(v, b);
                    // ReLU keeping NaN: "not less or equal, unordered" holds for v > 0 and NaN.
                    if relu {
                        _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_NLE_UQ>(v, _mm256_setzero_ps()))
                    } else {
                        v
                    }
                };
                let low = [a00, a10, a20, a30, a40, a50].map(|v| finish(v, b0));
                let high = [a01, a11, a21, a31, a41, a51].map(|v| finish(v, b1));
                store_transposed_avx2(low, out, pixels);
                store_transposed_avx2(high, out.add(8 * pixels), pixels);
            }
        }
    }
}

/// Where [`tile_avx2`] leaves its tile.
#[cfg(target_arch = "x86_64")]
enum Sink<'a> {
    /// As is, `[pixel][channel]`, without bias.
    Tile(&'a mut [[f32; TILE_CHANNELS]; TILE_PIXELS]),
    /// A full tile written out: `out[c pixels + j] = f(tile[j][c] + bias[c])` with `f` ReLU or
    /// the identity.
    Output {
        out: *mut f32,
        pixels: usize,
        bias: &'a [f32; TILE_CHANNELS],
        relu: bool,
    },
}

/// Writes 6 vectors of 8 channels (one per pixel) as 8 runs of 6 pixels, `pixels` apart: an 8x8
/// transpose (of which the last two rows would be padding, so they are not formed).
///
/// # Safety
/// AVX2; `out + c pixels + j` must be writable for `c < 8`, `j < 6`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_transposed_avx2(r: [std::arch::x86_64::__m256; TILE_PIXELS], out: *mut f32, pixels: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees the bounds.
    unsafe {
        // t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], and so on.
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        // Pixels 0-3 of channels (0 | 4), (1 | 5), (2 | 6), (3 | 7).
        let s = [
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        ];
        // Pixels 4-5 of channels (0, 1 | 4, 5) in t4 and (2, 3 | 6, 7) in t5.
        for (c, &sc) in s.iter().enumerate() {
            let tail = if c < 2 { t4 } else { t5 };
            for (half, channel) in [(0, c), (1, c + 4)] {
                let (head, tail) = if half == 0 {
                    (_mm256_castps256_ps128(sc), _mm256_castps256_ps128(tail))
                } else {
                    (_mm256_extractf128_ps::<1>(sc), _mm256_extractf128_ps::<1>(tail))
                };
                let dst = out.add(channel * pixels);
                _mm_storeu_ps(dst, head);
                let tail = _mm_castps_pd(tail);
                if c % 2 == 0 {
                    _mm_store_sd(dst.add(4) as *mut f64, tail);
                } else {
                    _mm_storeh_pd(dst.add(4) as *mut f64, tail);
                }
            }
        }
    }
}
