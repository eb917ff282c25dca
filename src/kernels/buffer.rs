//! The one way the kernels make an output buffer without zero-filling it first.

use std::mem::MaybeUninit;

/// A vector of `len` values written by `fill`, which gets them as uninitialised memory: a
/// kernel that writes every output value once saves the pass that zeroing would cost.
///
/// # Safety
/// `fill` must write every one of the `len` values before it returns (and must not read one
/// it has not written).
pub(crate) unsafe fn written_by(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the caller promises that `fill` wrote all `len` values.
    unsafe { out.set_len(len) };
    out
}
