//! The layer functions the models call: convolutions (plain, with ReLU or ReLU6, of a burn
//! `Conv2d`), ReLU6 and 2x2 max pooling, each through [`KernelBackend`] where the backend has a
//! kernel for it and through burn's own operation otherwise.

use super::*;

/// The convolution `burn::tensor::module::conv2d(x, weight, bias, options)`, through the direct
/// or the depthwise kernel where the backend has one for it (see the module docs).
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    conv2d_activated(x, weight, bias, options, Activation::Identity)
}

/// `relu(conv2d(x, weight, bias, options))`, in one pass through the direct kernel where the
/// backend has one for it: the ReLU is applied as the output is written, and its gradient as
/// the output gradient is padded for the input gradient.
pub fn conv2d_relu(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    conv2d_activated(x, weight, bias, options, Activation::Relu)
}

/// `relu6(conv2d(x, weight, bias, options))`, with ReLU6 applied as a kernel writes the
/// output (and its gradient, taken from that output, as the kernel reads the output gradient)
/// where the backend has a kernel for the convolution.
pub fn conv2d_relu6(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    conv2d_activated(x, weight, bias, options, Activation::Relu6)
}

/// `activation(conv2d(x, weight, bias, options))`: one backend operation with the activation
/// inside where the backend has a kernel for the convolution, burn's operations otherwise.
fn conv2d_activated(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
    activation: Activation,
) -> Tensor<4> {
    let [c_out, _, kh, kw] = weight.dims();
    let kind = match depthwise_geometry(&x, &weight, &options) {
        Some(geometry) => Some(ConvKind::Depthwise(geometry)),
        None => direct_padding(&x, [kh, kw], &options).map(ConvKind::Direct),
    };
    let Some(kind) = kind else {
        let out = burn::tensor::module::conv2d(x, weight, bias, options);
        return match activation {
            Activation::Identity => out,
            Activation::Relu => burn::tensor::activation::relu(out),
            Activation::Relu6 => relu6(out),
        };
    };
    // A zero bias adds nothing (and no gradient flows to it: it is not tracked).
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c_out], &x.device()));
    let (x, weight, bias) = (x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch());
    type Kernels = burn::backend::Dispatch;
    Tensor::from_dispatch(match kind {
        ConvKind::Direct(padding) => <Kernels as KernelBackend>::direct_conv2d(x, weight, bias, padding, activation),
        ConvKind::Depthwise(geometry) => {
            <Kernels as KernelBackend>::depthwise_conv2d(x, weight, bias, geometry, activation)
        }
    })
}

/// The convolution options of `layer` on an input of `[height, width]`, as its `forward` computes
/// them.
fn layer_options(layer: &Conv2d, [h, w]: [usize; 2]) -> ConvOptions<2> {
    let [kh, kw] = layer.kernel_size;
    let same = |k: usize, stride: usize, size: usize| {
        let out = size.div_ceil(stride);
        let total = if out > 0 {
            ((out - 1) * stride + k).saturating_sub(size)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    let ((top, bottom), (left, right)) = match layer.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same(kh, layer.stride[0], h), same(kw, layer.stride[1], w)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
    };
    ConvOptions::new_with_padding(
        layer.stride,
        [(top, bottom), (left, right)],
        layer.dilation,
        layer.groups,
    )
}

/// `layer.forward(x)`, through [`conv2d`].
pub fn conv2d_layer(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let options = layer_options(layer, [h, w]);
    conv2d(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()), options)
}

/// `relu(layer.forward(x))`, through [`conv2d_relu`].
pub fn conv2d_relu_layer(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let options = layer_options(layer, [h, w]);
    conv2d_relu(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()), options)
}

/// `min(max(x, 0), 6)` (EfficientNet's activation), in one pass through the kernel of
/// [`elementwise`] on `flex` (forward and gradient), burn's `relu6` elsewhere.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 && is_flex(&x.device()) {
        Tensor::from_dispatch(<burn::backend::Dispatch as KernelBackend>::relu6(x.into_dispatch()))
    } else {
        burn::tensor::activation::relu6(x)
    }
}

/// `layer.forward(x)`, through the 2x2 pooling kernel where the backend has one for it (see the
/// module docs).
pub fn max_pool2d_layer(layer: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let no_padding = match layer.padding {
        PaddingConfig2d::Valid => true,
        PaddingConfig2d::Explicit(top, left, bottom, right) => top + left + bottom + right == 0,
        PaddingConfig2d::Same => false,
    };
    let direct = layer.kernel_size == [2, 2]
        && layer.stride == [2, 2]
        && layer.dilation == [1, 1]
        && no_padding
        && (!layer.ceil_mode || (h % 2 == 0 && w % 2 == 0))
        && x.dtype() == DType::F32
        && is_flex(&x.device());
    if !direct {
        return layer.forward(x);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as KernelBackend>::max_pool2x2(
        x.into_dispatch(),
    ))
}
