//! 2x2 max pooling with stride 2 on `f32` slices, and its gradient.
//!
//! Each output value is the largest of its 2x2 window (a last odd row or column of the input
//! is dropped). The gradient sends each output gradient to one input of its window: the first
//! in row-major order among those that hold the maximum (a NaN counts as the maximum), which is
//! the element burn's `max_pool2d` records as the argmax, so both give the same gradient bit
//! for bit. The gradient is recomputed from the input rather than from stored indices.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::written_by;

/// The element of the window `a b / c d` that burn's max pooling picks, and its index in
/// `0..4` (row-major): the first maximum, or the last NaN.
#[inline(always)]
fn pick(a: f32, b: f32, c: f32, d: f32) -> (f32, u32) {
    let (mut m, mut i) = (a, 0);
    if b > m || b.is_nan() {
        (m, i) = (b, 1);
    }
    if c > m || c.is_nan() {
        (m, i) = (c, 2);
    }
    if d > m || d.is_nan() {
        (m, i) = (d, 3);
    }
    (m, i)
}

/// `[P, H / 2, W / 2]` maxima of the 2x2 windows of the `P` planes `[H, W]` of `x`.
pub fn max_pool2x2(x: &[f32], planes: usize, [h, w]: [usize; 2]) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "input size");
    let (oh, ow) = (h / 2, w / 2);
    let total = planes * oh * ow;
    if total == 0 {
        return Vec::new();
    }
    // SAFETY: every output value is written, by the vector loop or the scalar one after it.
    unsafe {
        written_by(total, |out| {
            out.par_chunks_mut(oh * ow)
                .zip(x.par_chunks(h * w))
                .for_each(|(dst, src)| {
                    for (i, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                        let (top, bottom) = (&src[2 * i * w..], &src[(2 * i + 1) * w..]);
                        let done = simd::forward_row(top, bottom, dst_row);
                        for (j, d) in dst_row.iter_mut().enumerate().skip(done) {
                            d.write(pick(top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]).0);
                        }
                    }
                })
        })
    }
}

/// Gradient `[P, H, W]` with respect to `x` of [`max_pool2x2`] given the output gradient `grad`
/// (`[P, H / 2, W / 2]`).
pub fn max_pool2x2_backward(x: &[f32], grad: &[f32], planes: usize, [h, w]: [usize; 2]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), planes * h * w, "input size");
    assert_eq!(grad.len(), planes * oh * ow, "gradient size");
    let total = planes * h * w;
    if oh * ow == 0 {
        return vec![0.0; total];
    }
    // SAFETY: `backward_plane` writes every value of its plane.
    unsafe {
        written_by(total, |out| {
            out.par_chunks_mut(h * w)
                .zip(x.par_chunks(h * w))
                .zip(grad.par_chunks(oh * ow))
                .for_each(|((dst, src), g)| backward_plane(dst, src, g, [h, w]))
        })
    }
}

fn backward_plane(dst: &mut [MaybeUninit<f32>], src: &[f32], grad: &[f32], [h, w]: [usize; 2]) {
    let (oh, ow) = (h / 2, w / 2);
    for i in 0..h {
        // Rows and columns outside every window get no gradient.
        if i >= 2 * oh {
            for d in &mut dst[i * w..(i + 1) * w] {
                d.write(0.0);
            }
        } else if w > 2 * ow {
            dst[i * w + w - 1].write(0.0);
        }
    }
    for i in 0..oh {
        let (top, rest) = dst[2 * i * w..].split_at_mut(w);
        let bottom = &mut rest[..w];
        let (src_top, src_bottom) = (&src[2 * i * w..(2 * i + 1) * w], &src[(2 * i + 1) * w..(2 * i + 2) * w]);
        let grad_row = &grad[i * ow..(i + 1) * ow];
        let done = simd::backward_row(src_top, src_bottom, grad_row, top, bottom);
        let windows = top
            .chunks_exact_mut(2)
            .zip(bottom.chunks_exact_mut(2))
            .zip(src_top.chunks_exact(2).zip(src_bottom.chunks_exact(2)));
        for (((t, b), (st, sb)), &g) in windows.zip(grad_row).skip(done) {
            let (_, k) = pick(st[0], st[1], sb[0], sb[1]);
            t[0].write(if k == 0 { g } else { 0.0 });
            t[1].write(if k == 1 { g } else { 0.0 });
            b[0].write(if k == 2 { g } else { 0.0 });
            b[1].write(if k == 3 { g } else { 0.0 });
        }
    }
}

/// The same rules on 8 windows at a time with AVX2, where the CPU has it.
mod simd {
    use std::mem::MaybeUninit;

    /// Writes the maxima of the leading windows of a row pair; returns how many (a multiple of
    /// 8, 0 without AVX2).
    pub fn forward_row(top: &[f32], bottom: &[f32], out: &mut [MaybeUninit<f32>]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if super::super::cpu::features().avx2 {
            let n = out.len() / 8 * 8;
            assert!(top.len() >= 2 * n && bottom.len() >= 2 * n);
            // SAFETY: AVX2 is there, and the reads (`2 n` of each row) and writes (`n`) are
            // in bounds.
            unsafe { forward_avx2(top.as_ptr(), bottom.as_ptr(), out.as_mut_ptr() as *mut f32, n) };
            return n;
        }
        let _ = (top, bottom, out);
        0
    }

    /// Writes the gradient of the leading windows of a row pair (`grad` per window) into the
    /// two rows; returns how many windows (a multiple of 8, 0 without AVX2).
    pub fn backward_row(
        top: &[f32],
        bottom: &[f32],
        grad: &[f32],
        out_top: &mut [MaybeUninit<f32>],
        out_bottom: &mut [MaybeUninit<f32>],
    ) -> usize {
        #[cfg(target_arch = "x86_64")]
        if super::super::cpu::features().avx2 {
            let n = grad.len() / 8 * 8;
            assert!(top.len() >= 2 * n && bottom.len() >= 2 * n);
            assert!(out_top.len() >= 2 * n && out_bottom.len() >= 2 * n);
            // SAFETY: AVX2 is there, and every read and write is in bounds.
            unsafe {
                backward_avx2(
                    [top.as_ptr(), bottom.as_ptr()],
                    grad.as_ptr(),
                    [out_top.as_mut_ptr() as *mut f32, out_bottom.as_mut_ptr() as *mut f32],
                    n,
                )
            };
            return n;
        }
        let _ = (top, bottom, grad, out_top, out_bottom);
        0
    }

    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// Even and odd elements of the 16 values at `p`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn split(p: *const f32) -> (__m256, __m256) {
        // SAFETY: the caller guarantees 16 readable values.
        unsafe {
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            // shuffle gives elements 0 2 8 10 | 4 6 12 14; the permute puts the quarters in order.
            let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                _mm256_shuffle_ps::<0x88>(a, b),
            )));
            let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                _mm256_shuffle_ps::<0xDD>(a, b),
            )));
            (even, odd)
        }
    }

    /// Lanes where `v` replaces the running maximum `m`: `v > m` or `v` is NaN.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn replaces(v: __m256, m: __m256) -> __m256 {
        _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, m), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
    }

    /// The running maximum after each step and the masks of the steps that replaced it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn windows(top: *const f32, bottom: *const f32) -> (__m256, [__m256; 3]) {
        // SAFETY: the caller guarantees 16 readable values in each row.
        unsafe {
            let ((a, b), (c, d)) = (split(top), split(bottom));
            let k1 = replaces(b, a);
            let m = _mm256_blendv_ps(a, b, k1);
            let k2 = replaces(c, m);
            let m = _mm256_blendv_ps(m, c, k2);
            let k3 = replaces(d, m);
            (_mm256_blendv_ps(m, d, k3), [k1, k2, k3])
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2(top: *const f32, bottom: *const f32, out: *mut f32, n: usize) {
        // SAFETY: the caller guarantees `2 n` values in each row and `n` writable outputs.
        unsafe {
            for j in (0..n).step_by(8) {
                let (m, _) = windows(top.add(2 * j), bottom.add(2 * j));
                _mm256_storeu_ps(out.add(j), m);
            }
        }
    }

    /// Interleaves `a` and `b` into the 16 values at `p`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn interleave(p: *mut f32, a: __m256, b: __m256) {
        // SAFETY: the caller guarantees 16 writable values.
        unsafe {
            let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(lo, hi));
            _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn backward_avx2(src: [*const f32; 2], grad: *const f32, out: [*mut f32; 2], n: usize) {
        // SAFETY: the caller guarantees `2 n` values in each row, `n` gradients and `2 n`
        // writable values in each output row.
        unsafe {
            for j in (0..n).step_by(8) {
                let (_, [k1, k2, k3]) = windows(src[0].add(2 * j), src[1].add(2 * j));
                // The last step that replaced the maximum picks the window's element.
                let later = _mm256_or_ps(k2, k3);
                let pick = [
                    _mm256_andnot_ps(_mm256_or_ps(k1, later), _mm256_castsi256_ps(_mm256_set1_epi32(-1))),
                    _mm256_andnot_ps(later, k1),
                    _mm256_andnot_ps(k3, k2),
                    k3,
                ];
                let g = _mm256_loadu_ps(grad.add(j));
                let [a, b, c, d] = pick.map(|k| _mm256_and_ps(g, k));
                interleave(out[0].add(2 * j), a, b);
                interleave(out[1].add(2 * j), c, d);
            }
        }
    }
}
