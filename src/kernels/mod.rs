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
//! ([`retain_freed_memory`]).

pub mod conv;
pub mod depthwise;
pub mod elementwise;
pub mod pointwise;
pub mod pool;
pub mod thin_product;

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
use depthwise::Geometry;
pub use elementwise::Activation;

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

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let shape = t.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

fn flex_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Keeps freed memory in the process instead of returning it to the operating system, on Linux
/// with glibc: allocations up to 32 MiB come from the heap (not from fresh mappings) and the
/// heap is not trimmed below 1 GiB of free memory at its top. Every tensor of an attack
/// iteration is a new buffer of a few megabytes; by default glibc maps and unmaps most of them,
/// and the kernel then zeroes every page on its first touch, which costs a fifth of an
/// iteration on the small CNNs. With these settings the buffers are recycled. The process's
/// memory footprint stays at its peak instead of shrinking between iterations. Runs once.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: `mallopt` only changes allocator parameters; it is called before the
        // allocations it is meant for and is thread-safe in glibc.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        });
    }
}

fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// Input gradient of the convolution by `weight`: the direct kernel on the output gradient,
/// padded (and masked by the gradient of the activation whose outputs are `output`, if given),
/// or the matrix products of [`pointwise`] for a 1x1 filter.
fn flex_x_backward(
    weight: FlexTensor,
    output: Option<(FlexTensor, Activation)>,
    output_grad: FlexTensor,
    padding: [usize; 2],
) -> FlexTensor {
    let (weight, mut grad) = (weight.to_contiguous(), output_grad.to_contiguous());
    let output = output
        .filter(|(_, activation)| *activation != Activation::Identity)
        .map(|(o, activation)| (o.to_contiguous(), activation));
    let w_shape = dims4(&weight);
    let [_, c_in, kh, kw] = w_shape;
    let [b, c_out, oh, ow] = dims4(&grad);
    if [kh, kw] == [1, 1] {
        let shape = pointwise::Shape {
            batch: b,
            c_in,
            c_out,
            pixels: oh * ow,
        };
        let mask = output.as_ref().map(|(o, activation)| (o.storage::<f32>(), *activation));
        let dx = pointwise::input_gradient(grad.storage::<f32>(), weight.storage::<f32>(), mask, shape);
        return flex_tensor(dx, [b, c_in, oh, ow]);
    }
    // The direct kernel masks ReLU's gradient as it pads; another activation's is masked first.
    let mut relu_output = None;
    match output {
        Some((o, Activation::Relu)) => relu_output = Some(o),
        Some((o, activation)) => {
            let masked = elementwise::mask_gradient(grad.storage::<f32>(), o.storage::<f32>(), activation);
            grad = flex_tensor(masked, [b, c_out, oh, ow]);
        }
        None => {}
    }
    let q = [kh - 1 - padding[0], kw - 1 - padding[1]];
    let filter = PackedFilter::input_gradient(weight.storage::<f32>(), w_shape);
    let input = conv::Input {
        values: grad.storage::<f32>(),
        shape: [b, c_out, oh, ow],
        padding: q,
        relu_mask: relu_output.as_ref().map(|o| o.storage::<f32>()),
    };
    let out = conv::conv2d(input, &filter, Epilogue::default());
    flex_tensor(out, [b, c_in, oh + 2 * q[0] + 1 - kh, ow + 2 * q[1] + 1 - kw])
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

impl KernelBackend for Flex {
    fn direct_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: [usize; 2],
        activation: Activation,
    ) -> FlexTensor {
        retain_freed_memory();
        if !all_f32(&[&x, &weight, &bias]) {
            let out = Flex::conv2d(x, weight, Some(bias), stride1_options(padding));
            return activate::<Flex>(out, activation);
        }
        let (x, weight, bias) = (x.to_contiguous(), weight.to_contiguous(), bias.to_contiguous());
        let [b, c_in, h, w] = dims4(&x);
        let w_shape = dims4(&weight);
        if w_shape[2..] == [1, 1] {
            let shape = pointwise::Shape {
                batch: b,
                c_in,
                c_out: w_shape[0],
                pixels: h * w,
            };
            let out = pointwise::forward(
                x.storage::<f32>(),
                weight.storage::<f32>(),
                Some(bias.storage::<f32>()),
                shape,
                activation,
            );
            return flex_tensor(out, [b, w_shape[0], h, w]);
        }
        let filter = PackedFilter::forward(weight.storage::<f32>(), w_shape);
        // The kernel applies ReLU as it writes; another activation takes a pass after.
        let epilogue = Epilogue {
            bias: Some(bias.storage::<f32>()),
            relu: activation == Activation::Relu,
        };
        let input = conv::Input {
            values: x.storage::<f32>(),
            shape: [b, c_in, h, w],
            padding,
            relu_mask: None,
        };
        let mut out = conv::conv2d(input, &filter, epilogue);
        if activation == Activation::Relu6 {
            elementwise::activate(&mut out, 0.0, activation);
        }
        let [kh, kw] = filter.kernel();
        let (hp, wp) = (h + 2 * padding[0], w + 2 * padding[1]);
        flex_tensor(out, [b, w_shape[0], hp + 1 - kh, wp + 1 - kw])
    }

    fn direct_conv2d_x_backward(weight: FlexTensor, output_grad: FlexTensor, padding: [usize; 2]) -> FlexTensor {
        if !all_f32(&[&weight, &output_grad]) {
            return Flex::conv_transpose2d(output_grad, weight, None, transposed_options(padding));
        }
        flex_x_backward(weight, None, output_grad, padding)
    }

    fn direct_conv2d_activated_x_backward(
        weight: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        padding: [usize; 2],
        activation: Activation,
    ) -> FlexTensor {
        if !all_f32(&[&weight, &output, &output_grad]) {
            let grad = activation_backward::<Flex>(output, output_grad, activation);
            return Flex::conv_transpose2d(grad, weight, None, transposed_options(padding));
        }
        flex_x_backward(weight, Some((output, activation)), output_grad, padding)
    }

    fn max_pool2x2(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Flex::max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        let x = x.to_contiguous();
        let [b, c, h, w] = dims4(&x);
        let out = pool::max_pool2x2(x.storage::<f32>(), b * c, [h, w]);
        flex_tensor(out, [b, c, h / 2, w / 2])
    }

    fn max_pool2x2_backward(x: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        assert!(
            x.dtype() == DType::F32 && output_grad.dtype() == DType::F32,
            "the 2x2 max pooling kernel runs on float32 only"
        );
        let (x, grad) = (x.to_contiguous(), output_grad.to_contiguous());
        let [b, c, h, w] = dims4(&x);
        let out = pool::max_pool2x2_backward(x.storage::<f32>(), grad.storage::<f32>(), b * c, [h, w]);
        flex_tensor(out, [b, c, h, w])
    }

    fn depthwise_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: Geometry,
        activation: Activation,
    ) -> FlexTensor {
        let [b, c, ..] = dims4(&x);
        if !all_f32(&[&x, &weight, &bias]) {
            let out = Flex::conv2d(x, weight, Some(bias), depthwise_options(geometry, c));
            return activate::<Flex>(out, activation);
        }
        let (x, weight, bias) = (x.to_contiguous(), weight.to_contiguous(), bias.to_contiguous());
        let epilogue = depthwise::Epilogue {
            bias: Some(bias.storage::<f32>()),
            activation,
        };
        let out = depthwise::forward(x.storage::<f32>(), weight.storage::<f32>(), c, geometry, epilogue);
        let [oh, ow] = geometry.output();
        flex_tensor(out, [b, c, oh, ow])
    }

    fn depthwise_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        geometry: Geometry,
        activation: Activation,
    ) -> FlexTensor {
        let [b, c, h, w] = dims4(&x);
        if !all_f32(&[&x, &weight, &output, &output_grad]) {
            let grad = activation_backward::<Flex>(output, output_grad, activation);
            return Flex::conv2d_x_backward(x, weight, grad, depthwise_options(geometry, c));
        }
        let (weight, output, grad) = (
            weight.to_contiguous(),
            output.to_contiguous(),
            output_grad.to_contiguous(),
        );
        let mask = (activation != Activation::Identity).then(|| (output.storage::<f32>(), activation));
        let dx = depthwise::input_gradient(grad.storage::<f32>(), weight.storage::<f32>(), mask, c, geometry);
        flex_tensor(dx, [b, c, h, w])
    }

    fn relu6(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Flex::float_clamp(x, 0.0.into(), 6.0.into());
        }
        let x = x.to_contiguous();
        let out = elementwise::relu6(x.storage::<f32>());
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }

    fn relu6_backward(x: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        assert!(
            x.dtype() == DType::F32 && output_grad.dtype() == DType::F32,
            "the ReLU6 kernel runs on float32 only"
        );
        let (x, grad) = (x.to_contiguous(), output_grad.to_contiguous());
        let out = elementwise::relu6_backward(x.storage::<f32>(), grad.storage::<f32>());
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }
}

/// Parent: the input of a one-input kernel whose input gradient is computed from that input and
/// the output gradient (ReLU6, 2x2 max pooling); the state holds the checkpointed input and the
/// backend operation that computes the gradient.
#[derive(Debug)]
struct FromInputBackward;

/// `(input, output gradient) -> input gradient`.
type InputGradient<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

impl<B: Backend + KernelBackend> Backward<B, 1> for FromInputBackward {
    type State = (NodeId, InputGradient<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, input_gradient) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, input_gradient(x, grad));
        }
    }
}

/// Applies the one-input kernel `forward` on the autodiff backend, recording `input_gradient`
/// (computed from the checkpointed input) as its backward step.
fn from_input_op<B: Backend + KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    input_gradient: InputGradient<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match FromInputBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), input_gradient);
            prep.finish(state, forward(x.into_primitive()))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive())),
    }
}

/// Which convolution a [`ConvBackward`] step differentiates.
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

/// Parents: the input, the filter and the bias.
#[derive(Debug)]
struct ConvBackward;

/// What the convolution's backward pass needs: the checkpointed input, filter and bias, the
/// output if an activation other than the identity was applied, the convolution and the
/// activation.
type ConvState<B> = (NodeId, NodeId, NodeId, Option<FloatTensor<B>>, ConvKind, Activation);

impl<B: Backend + KernelBackend> Backward<B, 3> for ConvBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, bias_state, output, kind, activation) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let bias = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(bias_state);
        let [node_x, node_weight, node_bias] = ops.parents;
        if let Some(node) = node_x {
            let (w, g) = (weight.clone(), grad.clone());
            let dx = match (kind, &output) {
                (ConvKind::Direct(padding), Some(output)) => {
                    B::direct_conv2d_activated_x_backward(w, output.clone(), g, padding, activation)
                }
                (ConvKind::Direct(padding), None) => B::direct_conv2d_x_backward(w, g, padding),
                (ConvKind::Depthwise(geometry), _) => {
                    // Without an activation the output is not looked at: the gradient stands in.
                    let output = output.clone().unwrap_or_else(|| grad.clone());
                    B::depthwise_conv2d_x_backward(x.clone(), w, output, g, geometry, activation)
                }
            };
            grads.register::<B>(node.id, dx);
        }
        if node_weight.is_none() && node_bias.is_none() {
            return;
        }
        // The filter and bias gradients (training only) by burn's own operations.
        let grad = match output {
            Some(output) => activation_backward::<B>(output, grad, activation),
            None => grad,
        };
        if let Some(node) = node_weight {
            let options = kind.options(x.shape()[1]);
            let dw = B::conv2d_weight_backward(x.clone(), weight, grad.clone(), options);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, B::conv2d_bias_backward(x, bias, grad));
        }
    }
}

/// The convolution `kind` with `activation` on the autodiff backend: `forward` on the inner
/// backend's tensors, recorded with a [`ConvBackward`] step.
fn conv_op<B: Backend + KernelBackend, C: CheckpointStrategy>(
    [x, weight, bias]: [FloatTensor<Autodiff<B, C>>; 3],
    kind: ConvKind,
    activation: Activation,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match ConvBackward
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (x_state, weight_state, bias_state) =
                (prep.checkpoint(&x), prep.checkpoint(&weight), prep.checkpoint(&bias));
            let out = forward(x.into_primitive(), weight.into_primitive(), bias.into_primitive());
            let output = (activation != Activation::Identity).then(|| out.clone());
            prep.finish((x_state, weight_state, bias_state, output, kind, activation), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        )),
    }
}

impl<B: Backend + KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn direct_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: [usize; 2],
        activation: Activation,
    ) -> FloatTensor<Self> {
        conv_op::<B, C>([x, weight, bias], ConvKind::Direct(padding), activation, |x, w, b| {
            B::direct_conv2d(x, w, b, padding, activation)
        })
    }

    // The backward operations are differentiable through burn's own operations (a second
    // derivative is never asked for by the attacks or the trainer).

    fn direct_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d(output_grad, weight, None, transposed_options(padding))
    }

    fn direct_conv2d_activated_x_backward(
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        padding: [usize; 2],
        activation: Activation,
    ) -> FloatTensor<Self> {
        let grad = activation_backward::<Self>(output, output_grad, activation);
        Self::conv_transpose2d(grad, weight, None, transposed_options(padding))
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        from_input_op::<B, C>(x, B::max_pool2x2, B::max_pool2x2_backward)
    }

    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
        activation: Activation,
    ) -> FloatTensor<Self> {
        conv_op::<B, C>(
            [x, weight, bias],
            ConvKind::Depthwise(geometry),
            activation,
            |x, w, b| B::depthwise_conv2d(x, w, b, geometry, activation),
        )
    }

    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: Geometry,
        activation: Activation,
    ) -> FloatTensor<Self> {
        let channels = x.shape()[1];
        let grad = activation_backward::<Self>(output, output_grad, activation);
        Self::conv2d_x_backward(x, weight, grad, depthwise_options(geometry, channels))
    }

    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        from_input_op::<B, C>(x, B::relu6, B::relu6_backward)
    }

    fn relu6_backward(x: FloatTensor<Self>, output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let bool_dtype = get_or_init_device_settings::<Self>(&x.device()).bool_dtype;
        let below = Self::float_lower_elem(x.clone(), 0.0.into(), bool_dtype);
        let above = Self::float_greater_elem(x, 6.0.into(), bool_dtype);
        Self::float_mask_fill(output_grad, Self::bool_or(below, above), 0.0.into())
    }

    fn max_pool2x2_backward(x: FloatTensor<Self>, output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // burn's pooling backward pass, from the indices of its forward pass.
        let (k, s, p, d) = ([2, 2], [2, 2], [0, 0], [1, 1]);
        let indices = Self::max_pool2d_with_indices(x.clone(), k, s, p, d, false, IntDType::I64).indices;
        Self::max_pool2d_with_indices_backward(x, k, s, p, d, false, output_grad, indices).x_grad
    }
}

/// Whether `device` computes with the `flex` backend (with or without autodiff).
fn is_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Most taps (input channels x filter size) the direct kernel takes: 16 output channels of
/// packed filter are then 256 KiB.
pub const MAX_TAPS: usize = 4096;

/// The padding of `options` if the direct kernel computes the convolution of `x` by a filter of
/// `kernel` size with them on its backend (see the module docs).
fn direct_padding(x: &Tensor<4>, kernel: [usize; 2], options: &ConvOptions<2>) -> Option<[usize; 2]> {
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
fn depthwise_geometry(x: &Tensor<4>, weight: &Tensor<4>, options: &ConvOptions<2>) -> Option<Geometry> {
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
