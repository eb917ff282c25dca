//! The direct convolution kernels against burn's reference `conv2d` and its gradients.

use std::time::Instant;

use super::Activation;
use super::conv::{Epilogue, Input, PackedFilter, conv2d as direct_conv2d, conv2d_portable};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::ConvOptions;

fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "{what}: relative error {worst}");
}

/// Raw kernel, with the AVX2 or the portable register tiles: forward and input gradient on
/// `[b, c_in, h, w]` with a `k x k` filter.
fn check_kernel(b: usize, c_in: usize, c_out: usize, h: usize, w: usize, k: usize, padding: usize) {
    for portable in [false, true] {
        let conv = if portable { conv2d_portable } else { direct_conv2d };
        check_kernel_with(conv, b, c_in, c_out, h, w, k, padding);
    }
}

type Conv = fn(Input<'_>, &PackedFilter, Epilogue<'_>) -> Vec<f32>;

#[allow(clippy::too_many_arguments)]
fn check_kernel_with(conv: Conv, b: usize, c_in: usize, c_out: usize, h: usize, w: usize, k: usize, padding: usize) {
    let device = Device::flex();
    let x = random([b, c_in, h, w], &device);
    let weight = random([c_out, c_in, k, k], &device);
    let bias = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
    let options = ConvOptions::new([1, 1], [padding, padding], [1, 1], 1);
    let want = conv2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone());
    let [_, _, oh, ow] = want.dims();
    let xs = values(x.clone());
    let ws = values(weight.clone());
    let bs = bias.into_data().try_to_vec::<f32>().unwrap();
    let filter = PackedFilter::forward(&ws, [c_out, c_in, k, k]);
    let input = Input {
        values: &xs,
        shape: [b, c_in, h, w],
        padding: [padding, padding],
        relu_mask: None,
    };
    let epilogue = Epilogue {
        bias: Some(&bs),
        relu: false,
    };
    let label = format!("forward b{b} {c_in}->{c_out} {h}x{w} k{k} p{padding}");
    assert_close(&conv(input, &filter, epilogue), &values(want.clone()), &label);
    // With ReLU after the bias.
    let relu = Epilogue { relu: true, ..epilogue };
    let want_relu = values(burn::tensor::activation::relu(want.clone()));
    assert_close(&conv(input, &filter, relu), &want_relu, &format!("{label} with ReLU"));

    // Input gradient of sum(relu?(conv(x)) * g) is conv_transpose(g, masked): compare with
    // autodiff, without and with the ReLU.
    let g = random([b, c_out, oh, ow], &device);
    let gs = values(g.clone());
    let ad = device.clone().autodiff();
    let filter = PackedFilter::input_gradient(&ws, [c_out, c_in, k, k]);
    let q = k - 1 - padding;
    for with_relu in [false, true] {
        let x_ad = Tensor::<4>::from_data(x.clone().into_data(), &ad).require_grad();
        let w_ad = Tensor::<4>::from_data(weight.clone().into_data(), &ad);
        let y = conv2d(x_ad.clone(), w_ad, None, options.clone());
        let y = if with_relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
        let mask = values(y.clone().inner());
        let loss = (y * Tensor::from_data(g.clone().into_data(), &ad)).sum();
        let want = values(x_ad.grad(&loss.backward()).unwrap().inner());
        let input = Input {
            values: &gs,
            shape: [b, c_out, oh, ow],
            padding: [q, q],
            relu_mask: with_relu.then_some(&mask[..]),
        };
        let got = conv(input, &filter, Epilogue::default());
        assert_close(&got, &want, &format!("input gradient of {label}, ReLU {with_relu}"));
    }
}

#[test]
fn kernel_matches_reference() {
    check_kernel(1, 1, 1, 5, 5, 3, 0);
    check_kernel(2, 3, 5, 7, 9, 3, 1);
    check_kernel(3, 17, 19, 11, 6, 3, 0);
    check_kernel(1, 32, 32, 26, 26, 3, 0);
    check_kernel(2, 8, 33, 10, 13, 3, 2);
    check_kernel(2, 5, 7, 9, 8, 5, 1);
    check_kernel(4, 64, 16, 3, 3, 3, 0);
    check_kernel(1, 2, 3, 1, 1, 1, 0);
}

/// The model-facing helpers on flex under autodiff against burn's operations: outputs and the
/// gradients of the input, the filter and the bias.
#[allow(clippy::too_many_arguments)]
fn check_layer(
    b: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    padding: usize,
    bias: bool,
    activation: Activation,
) {
    let device = Device::flex().autodiff();
    let plain = Device::flex();
    let x = random([b, c_in, h, w], &plain);
    let weight = random([c_out, c_in, k, k], &plain);
    let bias_t = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &plain);
    let options = ConvOptions::new([1, 1], [padding, padding], [1, 1], 1);
    let (oh, ow) = (h + 2 * padding + 1 - k, w + 2 * padding + 1 - k);
    let g = random([b, c_out, oh, ow], &plain);
    let run = |fast: bool| {
        let xl = Tensor::<4>::from_data(x.clone().into_data(), &device).require_grad();
        let wl = Tensor::<4>::from_data(weight.clone().into_data(), &device).require_grad();
        let bl = Tensor::<1>::from_data(bias_t.clone().into_data(), &device).require_grad();
        let bias = bias.then(|| bl.clone());
        let (xl2, wl2, options) = (xl.clone(), wl.clone(), options.clone());
        let y = match (fast, activation) {
            (true, Activation::Identity) => super::conv2d(xl2, wl2, bias, options),
            (true, Activation::Relu) => super::conv2d_relu(xl2, wl2, bias, options),
            (true, Activation::Relu6) => super::conv2d_relu6(xl2, wl2, bias, options),
            (false, _) => reference_activation(conv2d(xl2, wl2, bias, options), activation),
        };
        let grads = (y.clone() * Tensor::from_data(g.clone().into_data(), &device))
            .sum()
            .backward();
        let gb = bl.grad(&grads).map(|t| t.into_data().try_to_vec::<f32>().unwrap());
        (
            values(y.inner()),
            values(xl.grad(&grads).unwrap()),
            values(wl.grad(&grads).unwrap()),
            gb,
        )
    };
    let (fast, reference) = (run(true), run(false));
    let label = format!("layer b{b} {c_in}->{c_out} {h}x{w} k{k} p{padding} bias {bias} {activation:?}");
    assert_close(&fast.0, &reference.0, &format!("output of {label}"));
    assert_close(&fast.1, &reference.1, &format!("input gradient of {label}"));
    assert_close(&fast.2, &reference.2, &format!("filter gradient of {label}"));
    if bias {
        assert_close(
            &fast.3.unwrap(),
            &reference.3.unwrap(),
            &format!("bias gradient of {label}"),
        );
    }
}

/// burn's own activation after burn's convolution.
fn reference_activation(y: Tensor<4>, activation: Activation) -> Tensor<4> {
    match activation {
        Activation::Identity => y,
        Activation::Relu => burn::tensor::activation::relu(y),
        Activation::Relu6 => burn::tensor::activation::relu6(y),
    }
}

#[test]
fn layer_matches_reference_with_gradients() {
    for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        check_layer(1, 1, 32, 28, 28, 3, 0, true, activation);
        check_layer(3, 3, 5, 9, 7, 3, 1, false, activation);
        check_layer(2, 16, 24, 10, 10, 3, 1, true, activation);
        check_layer(2, 12, 3, 8, 11, 3, 0, true, activation);
        check_layer(1, 4, 17, 6, 6, 5, 2, false, activation);
        check_layer(2, 32, 64, 12, 12, 3, 0, true, activation);
        // 1x1 filters (the matrix-product path): batch 1 splits the product across threads,
        // larger batches split the images; channel counts off the SIMD width, and more taps
        // than the direct kernel takes.
        check_layer(1, 5, 3, 4, 4, 1, 0, false, activation);
        check_layer(3, 24, 144, 7, 9, 1, 0, true, activation);
        check_layer(4, 4100, 9, 3, 2, 1, 0, true, activation);
    }
}

#[test]
fn unsupported_convolutions_fall_back_to_burn() {
    let device = Device::flex();
    let x = random([2, 4, 9, 9], &device);
    let weight = random([6, 2, 3, 3], &device);
    // Stride 2, and two groups: burn's conv2d computes both.
    for options in [
        ConvOptions::new([2, 2], [1, 1], [1, 1], 1),
        ConvOptions::new([1, 1], [1, 1], [1, 1], 2),
    ] {
        let w = if options.groups == 1 {
            random([6, 4, 3, 3], &device)
        } else {
            weight.clone()
        };
        let got = super::conv2d(x.clone(), w.clone(), None, options.clone());
        let want = conv2d(x.clone(), w, None, options);
        assert_close(&values(got), &values(want), "fallback");
    }
}

/// A depthwise convolution through `super::conv2d` (the depthwise kernel on flex) against
/// burn's grouped `conv2d`: output, input, filter and bias gradients.
fn check_depthwise(
    b: usize,
    c: usize,
    [h, w]: [usize; 2],
    k: usize,
    stride: usize,
    padding: [(usize, usize); 2],
    activation: Activation,
) {
    let device = Device::flex().autodiff();
    let plain = Device::flex();
    let x = random([b, c, h, w], &plain);
    let weight = random([c, 1, k, k], &plain);
    let bias_t = Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), &plain);
    let options = ConvOptions::new_with_padding([stride, stride], padding, [1, 1], c);
    let oh = (h + padding[0].0 + padding[0].1 - k) / stride + 1;
    let ow = (w + padding[1].0 + padding[1].1 - k) / stride + 1;
    let g = random([b, c, oh, ow], &plain);
    let run = |fast: bool| {
        let xl = Tensor::<4>::from_data(x.clone().into_data(), &device).require_grad();
        let wl = Tensor::<4>::from_data(weight.clone().into_data(), &device).require_grad();
        let bl = Tensor::<1>::from_data(bias_t.clone().into_data(), &device).require_grad();
        let (xl2, wl2, bl2, options) = (xl.clone(), wl.clone(), Some(bl.clone()), options.clone());
        let y = match (fast, activation) {
            (true, Activation::Identity) => super::conv2d(xl2, wl2, bl2, options),
            (true, Activation::Relu) => super::conv2d_relu(xl2, wl2, bl2, options),
            (true, Activation::Relu6) => super::conv2d_relu6(xl2, wl2, bl2, options),
            (false, _) => reference_activation(conv2d(xl2, wl2, bl2, options), activation),
        };
        let grads = (y.clone() * Tensor::from_data(g.clone().into_data(), &device))
            .sum()
            .backward();
        (
            values(y.inner()),
            values(xl.grad(&grads).unwrap()),
            values(wl.grad(&grads).unwrap()),
            bl.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap(),
        )
    };
    let (fast, reference) = (run(true), run(false));
    let label = format!("depthwise b{b} c{c} {h}x{w} k{k} s{stride} p{padding:?} {activation:?}");
    assert_close(&fast.0, &reference.0, &format!("output of {label}"));
    assert_close(&fast.1, &reference.1, &format!("input gradient of {label}"));
    assert_close(&fast.2, &reference.2, &format!("filter gradient of {label}"));
    assert_close(&fast.3, &reference.3, &format!("bias gradient of {label}"));
}

#[test]
fn depthwise_layer_matches_reference_with_gradients() {
    // EfficientNet's cases (3x3 and 5x5, stride 1 with symmetric "same" padding, stride 2 with
    // the extra pixel after), odd sizes, batch 1, channel counts that are not a SIMD width.
    // With ReLU6 fused, outputs fall on both sides of [0, 6] (filters of 9 or 25 taps of
    // standard normal values on standard normal inputs).
    for activation in [Activation::Identity, Activation::Relu6] {
        check_depthwise(2, 3, [9, 7], 3, 1, [(1, 1), (1, 1)], activation);
        check_depthwise(1, 5, [8, 8], 3, 2, [(0, 1), (0, 1)], activation);
        check_depthwise(2, 4, [14, 14], 5, 2, [(1, 2), (1, 2)], activation);
        check_depthwise(3, 2, [7, 7], 5, 1, [(2, 2), (2, 2)], activation);
        check_depthwise(1, 6, [11, 10], 3, 2, [(1, 1), (0, 1)], activation);
        check_depthwise(2, 3, [6, 5], 3, 1, [(0, 0), (0, 0)], activation);
    }
}

#[test]
fn relu6_matches_burn_with_gradient() {
    let device = Device::flex().autodiff();
    let plain = Device::flex();
    // Values around both ends, exact 0 and 6 included.
    let x = random([2, 3, 5, 7], &plain).mul_scalar(5.0).add_scalar(3.0);
    let x = Tensor::cat(
        vec![
            x,
            Tensor::zeros([1, 3, 5, 7], &plain),
            Tensor::full([1, 3, 5, 7], 6.0, &plain),
        ],
        0,
    );
    let g = random(x.dims(), &plain);
    let run = |fast: bool| {
        let xl = Tensor::<4>::from_data(x.clone().into_data(), &device).require_grad();
        let y = if fast {
            super::relu6(xl.clone())
        } else {
            burn::tensor::activation::relu6(xl.clone())
        };
        let grads = (y.clone() * Tensor::from_data(g.clone().into_data(), &device))
            .sum()
            .backward();
        (values(y.inner()), values(xl.grad(&grads).unwrap()))
    };
    let (fast, reference) = (run(true), run(false));
    assert_eq!(fast.0, reference.0, "relu6 output");
    assert_eq!(fast.1, reference.1, "relu6 gradient");
}

/// The pooling helper against burn's `MaxPool2d`, bit for bit (NaN included): with `ties`, many
/// windows hold several zeros (as after a ReLU); with `nans`, some values are NaN.
fn check_pool(b: usize, c: usize, h: usize, w: usize, ties: bool, nans: bool) {
    let device = Device::flex().autodiff();
    let plain = Device::flex();
    let x = random([b, c, h, w], &plain);
    let x = if ties { x.clamp_min(0.0) } else { x };
    let x = if nans {
        x.clone().mask_fill(x.greater_elem(1.5), f32::NAN)
    } else {
        x
    };
    let layer = burn::nn::pool::MaxPool2dConfig::new([2, 2]).init();
    let g = random([b, c, h / 2, w / 2], &plain);
    let run = |fast: bool| {
        let xl = Tensor::<4>::from_data(x.clone().into_data(), &device).require_grad();
        let y = if fast {
            super::max_pool2d_layer(&layer, xl.clone())
        } else {
            layer.forward(xl.clone())
        };
        let grads = (y.clone() * Tensor::from_data(g.clone().into_data(), &device))
            .sum()
            .backward();
        let bits = |t: Tensor<4>| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        (bits(y.inner()), bits(xl.grad(&grads).unwrap()))
    };
    let (fast, reference) = (run(true), run(false));
    assert_eq!(fast.0, reference.0, "pool output {b}x{c}x{h}x{w}");
    assert_eq!(fast.1, reference.1, "pool gradient {b}x{c}x{h}x{w}");
}

#[test]
fn pool_matches_reference_bit_for_bit() {
    check_pool(2, 3, 8, 8, false, false);
    check_pool(1, 5, 7, 9, true, false);
    check_pool(3, 2, 24, 24, true, false);
    check_pool(1, 1, 1, 5, false, false);
    check_pool(2, 3, 34, 37, true, false);
    check_pool(2, 3, 34, 37, false, true);
    check_pool(1, 4, 20, 48, true, true);
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// Times the kernel against burn's conv2d on the small CNNs' layer shapes (no padding, chunks of
/// 64 images) and Wide ResNet's (padding 1, 8 images); run with `--ignored --nocapture`.
#[test]
#[ignore]
fn kernel_speed() {
    let device = Device::flex();
    let small = [
        (1, 32, 28),
        (32, 32, 26),
        (32, 64, 12),
        (64, 64, 10),
        (3, 64, 32),
        (64, 64, 30),
        (64, 128, 14),
        (128, 128, 12),
    ];
    let wide = [
        (16, 32, 32),
        (64, 64, 16),
        (128, 128, 8),
        (160, 160, 32),
        (320, 320, 16),
        (640, 640, 8),
    ];
    let layers = small.iter().map(|&l| (l, 64, 0)).chain(wide.iter().map(|&l| (l, 8, 1)));
    for ((c_in, c_out, hw), b, p) in layers {
        let x = random([b, c_in, hw, hw], &device);
        let weight = random([c_out, c_in, 3, 3], &device);
        let options = ConvOptions::new([1, 1], [p, p], [1, 1], 1);
        let burn_t = time(5, || {
            let _ = conv2d(x.clone(), weight.clone(), None, options.clone()).into_data();
        });
        let xs = values(x.clone());
        let ws = values(weight.clone());
        let ours = time(5, || {
            let f = PackedFilter::forward(&ws, [c_out, c_in, 3, 3]);
            let input = Input {
                values: &xs,
                shape: [b, c_in, hw, hw],
                padding: [p, p],
                relu_mask: None,
            };
            let _ = direct_conv2d(input, &f, Epilogue::default());
        });
        let o = hw + 2 * p - 2;
        let macs = (b * c_in * c_out * 9 * o * o) as f64;
        // Input gradient: burn's transposed convolution, as its autodiff computes it.
        let g = random([b, c_out, o, o], &device);
        let transposed = burn::tensor::ops::ConvTransposeOptions::new([1, 1], [p, p], [0, 0], [1, 1], 1);
        let burn_bt = time(5, || {
            let _ = conv_transpose2d(g.clone(), weight.clone(), None, transposed.clone()).into_data();
        });
        let gs = values(g.clone());
        let ours_b = time(5, || {
            let f = PackedFilter::input_gradient(&ws, [c_out, c_in, 3, 3]);
            let input = Input {
                values: &gs,
                shape: [b, c_out, o, o],
                padding: [2 - p, 2 - p],
                relu_mask: None,
            };
            let _ = direct_conv2d(input, &f, Epilogue::default());
        });
        let rate = |t: f64| 2.0 * macs / t / 1e9;
        println!(
            "b{b} {c_in:>3}->{c_out:<3} {hw}x{hw} p{p}: fwd burn {:7.2} ms ({:5.1} GFLOP/s) ours {:7.2} ms ({:5.1}) | x-grad burn {:7.2} ms ({:5.1}) ours {:7.2} ms ({:5.1})",
            burn_t * 1e3,
            rate(burn_t),
            ours * 1e3,
            rate(ours),
            burn_bt * 1e3,
            rate(burn_bt),
            ours_b * 1e3,
            rate(ours_b),
        );
    }
}
