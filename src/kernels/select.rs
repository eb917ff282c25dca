//! Which convolutions a backend's own kernels take (see the module docs of [`super`]): the
//! padding and geometry conditions, and whether the device is `flex`.

use super::*;

/// Whether `device` computes with the `flex` backend (with or without autodiff).
pub(super) fn is_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Most taps (input channels x filter size) the direct kernel takes: 16 output channels of
/// packed filter are then 256 KiB.
pub const MAX_TAPS: usize = 4096;

/// The padding of `options` if the direct kernel computes the convolution of `x` by a filter of
/// `kernel` size with them on its backend (see the module docs).
pub(super) fn direct_padding(x: &Tensor<4>, kernel: [usize; 2], options: &ConvOptions<2>) -> Option<[usize; 2]> {
    let padding = options.padding_begin();
    // 1x1 filters are a plain matrix product per image ([`pointwise`]). Past `MAX_TAPS` taps
    // of a larger filter a block of packed filter no longer stays in a core's L2 cache while
    // the tiles of an image stream through it, and burn's blocked matrix product wins.
    let taps = x.dims()[1] * kernel[0] * kernel[1];
    let direct = (kernel == [1, 1] || taps <= MAX_TAPS)
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && options.groups == 1
        && padding == options.padding_end()
        && padding[0] < kernel[0]
        && padding[1] < kernel[1]
        && x.dtype() == DType::F32
        && is_flex(&x.device());
    direct.then_some(padding)
}

/// The geometry of the convolution of `x` by `weight` with `options` if it is a depthwise
/// convolution (as many groups as channels, one filter per channel) that the depthwise kernel
/// computes on the backend of `x`.
pub(super) fn depthwise_geometry(x: &Tensor<4>, weight: &Tensor<4>, options: &ConvOptions<2>) -> Option<Geometry> {
    let [_, channels, h, w] = x.dims();
    let [c_out, per_group, kh, kw] = weight.dims();
    let (begin, end) = (options.padding_begin(), options.padding_end());
    let geometry = Geometry {
        input: [h, w],
        kernel: [kh, kw],
        stride: options.stride[0],
        padding: [(begin[0], end[0]), (begin[1], end[1])],
    };
    let depthwise = options.groups == channels
        && c_out == channels
        && per_group == 1
        && options.stride[0] == options.stride[1]
        && options.dilation == [1, 1]
        && geometry.supported()
        && x.dtype() == DType::F32
        && is_flex(&x.device());
    depthwise.then_some(geometry)
}
