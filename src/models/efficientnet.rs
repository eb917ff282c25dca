//! EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile use) as defined by the
//! PyPI package `efficientnet-lite-pytorch` 0.1.0, so that its pretrained ImageNet weights load
//! unchanged: no squeeze-and-excitation, ReLU6, batch norm with eps 1e-3, TensorFlow-style
//! "same" padding (asymmetric for stride 2), stem and head not scaled.
//!
//! stem conv3x3/2 (3->32), 16 MBConv blocks in 7 groups (expand ratio, kernel, stride, out):
//! (1,3,1,16)x1, (6,3,2,24)x2, (6,5,2,40)x2, (6,3,2,80)x3, (6,5,1,112)x3, (6,5,2,192)x4,
//! (6,3,1,320)x1; head conv1x1 (320->1280), global average pool, dropout 0.2, fc(1280->1000).
//! The model takes [0,1] images; the normalisation the weights were trained with happens
//! inside: TensorFlow's EfficientNet-Lite input scaling (byte - 127) / 128, i.e. mean 127/255
//! and standard deviation 128/255 on every channel (not the ImageNet mean/std of other models).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use crate::kernels::{self, Activation, relu6};

/// Mean of the input scaling, in [0,1] units (127 of 255), the same for R, G and B.
pub const LITE_MEAN: f32 = 127.0 / 255.0;
/// Standard deviation of the input scaling, in [0,1] units (128 of 255).
pub const LITE_STD: f32 = 128.0 / 255.0;
/// Input resolution.
pub const IMAGE_SIZE: usize = 224;
/// Batch-norm epsilon of the TensorFlow original.
const BN_EPS: f64 = 1e-3;

/// One group of MBConv blocks: (expand ratio, kernel, stride of the first block, output
/// channels, repeats).
const GROUPS: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// A convolution without bias whose input is zero-padded as TensorFlow's "same" does: the
/// output has ceil(size / stride) pixels, and an odd total padding puts the extra pixel at the
/// bottom and right.
fn same_conv(cin: usize, cout: usize, kernel: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Valid)
        .with_bias(false)
        .init(device)
}

/// (before, after) padding of one axis of `size` pixels for TensorFlow's "same" convolution.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// `activation(bn(conv(x)))`, `conv` applied with TensorFlow's "same" padding passed to the
/// convolution itself (no padded copy of the input), through [`crate::kernels`] (a depthwise or
/// 1x1 kernel on the CPU, with the bias and the activation applied as the output is written).
/// When the batch norm normalises with its running statistics (evaluation, or a frozen layer:
/// every attack), it is an affine map per channel, folded into the convolution: filter `w * s`
/// and bias `beta - mean * s` with `s = gamma / sqrt(var + eps)`, so that no pass over the
/// activations is spent on it. In training the three run one after the other.
fn conv_bn(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let (k, s) = (conv.kernel_size[0], conv.stride[0]);
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [same_padding(h, k, s), same_padding(w, k, s)],
        conv.dilation,
        conv.groups,
    );
    let bias = conv.bias.as_ref().map(|b| b.val());
    if x.device().is_autodiff() && bn.training.is_enabled() {
        let y = bn.forward(kernels::conv2d(x, conv.weight.val(), bias, options));
        return match activation {
            Activation::Identity => y,
            Activation::Relu => burn::tensor::activation::relu(y),
            Activation::Relu6 => relu6(y),
        };
    }
    let device = conv.weight.device();
    let mean = bn.running_mean.value().to_device(&device);
    let var = bn.running_var.value().to_device(&device);
    let scale = bn.gamma.val().div(var.add_scalar(bn.epsilon).sqrt());
    let [c_out, ..] = conv.weight.dims();
    let weight = conv.weight.val().mul(scale.clone().reshape([c_out, 1, 1, 1]));
    let shift = bn.beta.val().sub(mean.mul(scale.clone()));
    let bias = match bias {
        Some(bias) => bias.mul(scale).add(shift),
        None => shift,
    };
    match activation {
        Activation::Identity => kernels::conv2d(x, weight, Some(bias), options),
        Activation::Relu => kernels::conv2d_relu(x, weight, Some(bias), options),
        Activation::Relu6 => kernels::conv2d_relu6(x, weight, Some(bias), options),
    }
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(BN_EPS).init(device)
}

/// Mobile inverted bottleneck: expand 1x1 (unless the ratio is 1), depthwise kxk, project 1x1,
/// residual when shape is kept.
#[derive(Module, Debug)]
pub struct MbConv {
    expand_conv: Option<Conv2d>,
    bn0: Option<BatchNorm>,
    depthwise_conv: Conv2d,
    bn1: BatchNorm,
    project_conv: Conv2d,
    bn2: BatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(cin: usize, cout: usize, expand: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let mid = cin * expand;
        Self {
            expand_conv: (expand != 1).then(|| same_conv(cin, mid, 1, 1, 1, device)),
            bn0: (expand != 1).then(|| batch_norm(mid, device)),
            depthwise_conv: same_conv(mid, mid, kernel, stride, mid, device),
            bn1: batch_norm(mid, device),
            project_conv: same_conv(mid, cout, 1, 1, 1, device),
            bn2: batch_norm(cout, device),
            residual: stride == 1 && cin == cout,
        }
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.bn0) {
            x = conv_bn(conv, bn, x, Activation::Relu6);
        }
        x = conv_bn(&self.depthwise_conv, &self.bn1, x, Activation::Relu6);
        x = conv_bn(&self.project_conv, &self.bn2, x, Activation::Identity);
        if self.residual { x.add(input) } else { x }
    }
}

/// EfficientNet-Lite0 for 1000 ImageNet classes (see the module docs).
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    conv_stem: Conv2d,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    conv_head: Conv2d,
    bn1: BatchNorm,
    dropout: Dropout,
    fc: Linear,
}

impl EfficientNetLite {
    /// A freshly initialised EfficientNet-Lite0 with `classes` outputs.
    pub fn lite0(classes: usize, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut cin = STEM_CHANNELS;
        for (expand, kernel, stride, cout, repeats) in GROUPS {
            for r in 0..repeats {
                let s = if r == 0 { stride } else { 1 };
                blocks.push(MbConv::new(cin, cout, expand, kernel, s, device));
                cin = cout;
            }
        }
        Self {
            conv_stem: same_conv(3, STEM_CHANNELS, 3, 2, 1, device),
            bn0: batch_norm(STEM_CHANNELS, device),
            blocks,
            conv_head: same_conv(cin, HEAD_CHANNELS, 1, 1, 1, device),
            bn1: batch_norm(HEAD_CHANNELS, device),
            dropout: DropoutConfig::new(0.2).init(),
            fc: LinearConfig::new(HEAD_CHANNELS, classes).init(device),
        }
    }

    /// Logits `[B, classes]` of RGB images `[B, 3, H, W]` in [0,1].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = images.sub_scalar(LITE_MEAN).div_scalar(LITE_STD);
        let mut x = conv_bn(&self.conv_stem, &self.bn0, x, Activation::Relu6);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = conv_bn(&self.conv_head, &self.bn1, x, Activation::Relu6);
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dims(&[2, 3]).reshape([b, c]);
        self.fc.forward(self.dropout.forward(pooled))
    }
}

/// Multiply-adds of one forward pass of EfficientNet-Lite0 at `size` x `size`.
pub fn lite0_forward_macs(size: usize, classes: usize) -> u64 {
    let mut s = size.div_ceil(2);
    let mut macs = (3 * STEM_CHANNELS * 9 * s * s) as u64;
    let mut cin = STEM_CHANNELS;
    for (expand, kernel, stride, cout, repeats) in GROUPS {
        for r in 0..repeats {
            let st = if r == 0 { stride } else { 1 };
            let mid = cin * expand;
            if expand != 1 {
                macs += (cin * mid * s * s) as u64;
            }
            s = s.div_ceil(st);
            macs += (mid * kernel * kernel * s * s) as u64 + (mid * cout * s * s) as u64;
            cin = cout;
        }
    }
    macs + (cin * HEAD_CHANNELS * s * s) as u64 + (HEAD_CHANNELS * classes) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 1 keeps the size with symmetric padding; stride 2 on an even size puts the
        // extra pixel after.
        assert_eq!(same_padding(224, 3, 1), (1, 1));
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(112, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
        assert_eq!(same_padding(15, 3, 2), (1, 1));
    }

    #[test]
    fn lite0_has_16_blocks_and_about_400_million_multiply_adds() {
        let model = EfficientNetLite::lite0(1000, &Device::flex());
        assert_eq!(model.blocks.len(), 16);
        assert_eq!(model.blocks.iter().filter(|b| b.residual).count(), 9);
        let macs = lite0_forward_macs(224, 1000) as f64 / 1e6;
        // The EfficientNet-Lite0 paper figure is about 407 MFLOPs (multiply-adds).
        assert!((380.0..420.0).contains(&macs), "{macs}");
        let logits = model.forward(Tensor::zeros([1, 3, 64, 64], &Device::flex()));
        assert_eq!(logits.dims(), [1, 1000]);
    }
}
