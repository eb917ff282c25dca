//! The kernels on the `flex` CPU backend: [`KernelBackend`] for `Flex`, each operation on the
//! direct, pointwise, depthwise, pooling or elementwise kernel, with the helpers that convert
//! between burn's tensors and the kernels' buffers.

use super::*;

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let shape = t.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

fn flex_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
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

impl KernelBackend for Flex {
    fn direct_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: [usize; 2],
        activation: Activation,
    ) -> FlexTensor {
        crate::allocator::retain_freed_memory();
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
