//! The kernels under autodiff: [`KernelBackend`] for `Autodiff<B>`, with the backward steps
//! that give the convolutions their input gradients from the direct kernel and their filter and
//! bias gradients from burn's own operations.

use super::*;

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
