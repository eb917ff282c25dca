//! Fast CPU kernels for the layers of the built-in models, chosen by the backend.
//!
//! The models call [`conv2d_layer`] / [`conv2d_relu_layer`] (or [`conv2d`] / [`conv2d_relu`] /
//! [`conv2d_relu6`]) for every convolution, [`max_pool2d_layer`] for every max pooling and
//! [`relu6`] for a ReLU6 on its own. On the `flex` CPU backend, with `float32` tensors:
//! - a convolution with stride 1, no dilation, one group, a filter larger than 1x1 of at most
//!   [`MAX_TAPS`] taps (input channels times filter size) and padding below the filter size runs
//!   the direct kernel of [`conv`]; a 1x1 convolution with stride 1 and no padding (any number
//!   of channels) runs the matrix products of [`pointwise`], through the same backend
//!   operation;
//! - a depthwise convolution (one filter per channel) with stride 1 or 2 and padding below the
//!   filter size (possibly more after than before) runs the kernel of [`depthwise`];
//! - both apply the bias and the [`Activation`] (ReLU, ReLU6) as they write the output, and take
//!   the activation's gradient from that output as they read the output gradient;
//! - a 2x2 max pooling with stride 2 runs the kernel of [`pool`], and ReLU6 the one of
//!   [`elementwise`].
//!
//! All go through the backend extension [`KernelBackend`], forward and gradient alike. Every
//! other layer, and every layer on another backend (wgpu, CUDA...), is burn's own operation.
//! Both compute the same function: which one ran changes a result by float rounding only
//! (pooling and ReLU6 not at all), except that a ReLU6 inside a convolution passes no gradient
//! where its input is exactly 0 or 6 (burn's passes it there; see [`Activation::passes`]).
//!
//! Under autodiff, the convolution's backward pass computes the input gradient with the direct
//! kernel (a convolution of the padded output gradient by the flipped, transposed filter; the
//! ReLU's gradient is applied while padding) and the filter and bias gradients with burn's own
//! backward operations, so training is unaffected; the depthwise convolution likewise (one
//! autodiff step serves both). Pooling recomputes each window's argmax from its input instead
//! of storing indices.
//!
//! The first direct convolution also sets glibc's allocator to keep freed memory
//! ([`crate::allocator::retain_freed_memory`]).
//!
//! The CPU's vector instructions and cache sizes are found out once, in [`cpu`]. Every register
//! tile is named by what it spans: `TILE_CHANNELS` output channels by `TILE_PIXELS` output
//! pixels (16 x 6 in [`conv`], 6 x 16 in [`thin_product`]). An output buffer that a kernel
//! writes whole is made by one helper, `buffer::written_by`, without zero-filling. This module
//! is the only one of the library allowed `unsafe` code for speed (the crate denies
//! `unsafe_code` elsewhere); each `unsafe` block says why it is sound.

pub(crate) mod conv;
pub(crate) mod cpu;
pub(crate) mod depthwise;
pub(crate) mod elementwise;
pub(crate) mod pointwise;
pub(crate) mod pool;
pub(crate) mod thin_product;

mod autodiff;
mod buffer;
mod flex;
mod layers;
mod select;
#[cfg(test)]
mod tests;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::get_or_init_device_settings;
use burn::backend::ops::{BoolTensorOps, FloatTensorOps, ModuleOps};
use burn::backend::{Autodiff, Backend, TensorMetadata, backend_extension, tensor::FloatTensor};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, IntDType, TensorData};

use conv::{Epilogue, PackedFilter};
pub use depthwise::Geometry;
pub use elementwise::Activation;
pub use layers::{conv2d, conv2d_layer, conv2d_relu, conv2d_relu_layer, conv2d_relu6, max_pool2d_layer, relu6};
pub use select::MAX_TAPS;
use select::{depthwise_geometry, direct_padding, is_flex};

/// Layers a backend may run with its own kernels.
#[backend_extension(Flex, Autodiff)]
pub trait KernelBackend: Backend {
    /// `[B, C_out, H + 2 p_h - KH + 1, W + 2 p_w - KW + 1]`: the convolution of `x`
    /// (`[B, C_in, H, W]`) by `weight` (`[C_out, C_in, KH, KW]`) with stride 1 and zero padding
    /// `padding = [p_h, p_w]` (each below the kernel size), plus `bias` (`[C_out]`) on every
    /// output channel, then `activation`.
    fn direct_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: [usize; 2],
        activation: Activation,
    ) -> FloatTensor<Self>;

    /// The gradient with respect to `x` of [`KernelBackend::direct_conv2d`] without activation
    /// given the gradient `output_grad` of its output: `[B, C_in, OH - 2 p_h + KH - 1, OW - 2 p_w + KW
    /// - 1]`.
    fn direct_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        padding: [usize; 2],
    ) -> FloatTensor<Self>;

    /// The same with `activation`, given also the `output` of the convolution (after the
    /// activation; see [`Activation::passes`]).
    fn direct_conv2d_activated_x_backward(
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        padding: [usize; 2],
        activation: Activation,
    ) -> FloatTensor<Self>;

    /// `[B, C, H / 2, W / 2]`: the maxima of the 2x2 windows of `x` (`[B, C, H, W]`) taken
    /// with stride 2.
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradient with respect to `x` of [`KernelBackend::max_pool2x2`] given the gradient
    /// `output_grad` of its output.
    fn max_pool2x2_backward(x: FloatTensor<Self>, output_grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `[B, C, OH, OW]`: the depthwise convolution (one filter per channel) of `x`
    /// (`[B, C, H, W]`) by `weight` (`[C, 1, KH, KW]`) with the stride and zero padding of
    /// `geometry` (see [`Geometry::supported`]), plus `bias` (`[C]`), then `activation`.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
        activation: Activation,
    ) -> FloatTensor<Self>;

    /// The gradient with respect to `x` of [`KernelBackend::depthwise_conv2d`] given the
    /// gradient `output_grad` of its output and that `output`: `[B, C, H, W]`.
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: Geometry,
        activation: Activation,
    ) -> FloatTensor<Self>;

    /// `min(max(x, 0), 6)` elementwise (NaN stays NaN).
    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradient with respect to `x` of [`KernelBackend::relu6`] given the gradient
    /// `output_grad` of its output: `output_grad` where `0 <= x <= 6` (burn's clamp passes the
    /// gradient at both ends), 0 elsewhere.
    fn relu6_backward(x: FloatTensor<Self>, output_grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// burn's convolution options of a depthwise convolution of `channels` channels.
fn depthwise_options(geometry: Geometry, channels: usize) -> ConvOptions<2> {
    ConvOptions::new_with_padding([geometry.stride; 2], geometry.padding, [1, 1], channels)
}

fn stride1_options(padding: [usize; 2]) -> ConvOptions<2> {
    ConvOptions::new([1, 1], padding, [1, 1], 1)
}

fn transposed_options(padding: [usize; 2]) -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([1, 1], padding, [0, 0], [1, 1], 1)
}

/// `activation(x)` by burn's operations on `B`.
fn activate<B: Backend>(x: FloatTensor<B>, activation: Activation) -> FloatTensor<B> {
    match activation {
        Activation::Identity => x,
        Activation::Relu => B::relu(x),
        Activation::Relu6 => B::float_clamp(x, 0.0.into(), 6.0.into()),
    }
}

/// `grad` masked by the gradient of `activation` whose outputs are `output` (see
/// [`Activation::passes`]), by burn's operations on `B`.
fn activation_backward<B: Backend>(
    output: FloatTensor<B>,
    grad: FloatTensor<B>,
    activation: Activation,
) -> FloatTensor<B> {
    match activation {
        Activation::Identity => grad,
        Activation::Relu => B::relu_backward(output, grad),
        Activation::Relu6 => {
            let bool_dtype = get_or_init_device_settings::<B>(&output.device()).bool_dtype;
            let low = B::float_lower_equal_elem(output.clone(), 0.0.into(), bool_dtype);
            let high = B::float_greater_equal_elem(output, 6.0.into(), bool_dtype);
            B::float_mask_fill(grad, B::bool_or(low, high), 0.0.into())
        }
    }
}

/// Which of the backend's convolutions runs (chosen in [`layers`]) and is differentiated (in
/// [`autodiff`]).
#[derive(Clone, Copy, Debug)]
enum ConvKind {
    /// [`KernelBackend::direct_conv2d`] with this padding.
    Direct([usize; 2]),
    /// [`KernelBackend::depthwise_conv2d`] with this geometry.
    Depthwise(Geometry),
}

impl ConvKind {
    /// burn's options for the same convolution of `channels` input channels.
    fn options(self, channels: usize) -> ConvOptions<2> {
        match self {
            ConvKind::Direct(padding) => stride1_options(padding),
            ConvKind::Depthwise(geometry) => depthwise_options(geometry, channels),
        }
    }
}
