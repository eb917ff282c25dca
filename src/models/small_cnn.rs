//! The small CNN of Carlini & Wagner used by DDN and ANU for MNIST and CIFAR-10.
//!
//! conv3x3(c->a) ReLU, conv3x3(a->a) ReLU, maxpool2, conv3x3(a->b) ReLU, conv3x3(b->b) ReLU,
//! maxpool2, fc(flat->f) ReLU, dropout 0.5, fc(f->f) ReLU, fc(f->10). Valid padding throughout.
//! The input is the raw image in [0,1]; no normalisation happens outside the model.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::kernels;

/// Layer widths of a [`SmallCnn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmallCnnShape {
    /// Input channels (1 for MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    /// Input height and width (28 for MNIST, 32 for CIFAR-10).
    pub in_size: usize,
    /// Channels of the first two convolutions.
    pub conv_a: usize,
    /// Channels of the last two convolutions.
    pub conv_b: usize,
    /// Width of the two hidden fully connected layers.
    pub hidden: usize,
    /// Number of classes.
    pub classes: usize,
}

impl SmallCnnShape {
    /// The MNIST model: 32/32/64/64 channels, fc 1024 -> 200 -> 200 -> 10.
    pub const MNIST: SmallCnnShape = SmallCnnShape {
        in_channels: 1,
        in_size: 28,
        conv_a: 32,
        conv_b: 64,
        hidden: 200,
        classes: 10,
    };
    /// The CIFAR-10 model: 64/64/128/128 channels, fc 3200 -> 256 -> 256 -> 10.
    pub const CIFAR10: SmallCnnShape = SmallCnnShape {
        in_channels: 3,
        in_size: 32,
        conv_a: 64,
        conv_b: 128,
        hidden: 256,
        classes: 10,
    };

    /// The images and classes the model takes.
    pub fn input_spec(&self) -> super::InputSpec {
        super::InputSpec {
            image_shape: [self.in_channels, self.in_size, self.in_size],
            num_classes: self.classes,
        }
    }

    /// Spatial size after the convolutions and pools.
    pub fn final_size(&self) -> usize {
        ((self.in_size - 4) / 2 - 4) / 2
    }

    /// Input width of the first fully connected layer.
    pub fn flat(&self) -> usize {
        self.conv_b * self.final_size() * self.final_size()
    }

    /// Multiply-adds of one forward pass on one image.
    pub fn forward_macs(&self) -> u64 {
        let conv = |cin: usize, cout: usize, out: usize| (cin * cout * 9 * out * out) as u64;
        let s1 = self.in_size - 2;
        let s2 = s1 - 2;
        let s3 = s2 / 2 - 2;
        let s4 = s3 - 2;
        conv(self.in_channels, self.conv_a, s1)
            + conv(self.conv_a, self.conv_a, s2)
            + conv(self.conv_a, self.conv_b, s3)
            + conv(self.conv_b, self.conv_b, s4)
            + (self.flat() * self.hidden + self.hidden * self.hidden + self.hidden * self.classes) as u64
    }
}

/// The small CNN (see the module docs).
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
    fc3: Linear,
}

impl SmallCnn {
    /// A freshly initialised model: Kaiming-normal convolutions, zero biases, last layer zero.
    pub fn new(shape: SmallCnnShape, device: &Device) -> Self {
        let kaiming = Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        };
        let conv = |cin: usize, cout: usize| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_initializer(kaiming.clone())
                .init(device)
        };
        Self {
            conv1: conv(shape.in_channels, shape.conv_a),
            conv2: conv(shape.conv_a, shape.conv_a),
            conv3: conv(shape.conv_a, shape.conv_b),
            conv4: conv(shape.conv_b, shape.conv_b),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(shape.flat(), shape.hidden).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            fc2: LinearConfig::new(shape.hidden, shape.hidden).init(device),
            fc3: LinearConfig::new(shape.hidden, shape.classes)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
        .zero_conv_biases()
    }

    fn zero_conv_biases(mut self) -> Self {
        for conv in [&mut self.conv1, &mut self.conv2, &mut self.conv3, &mut self.conv4] {
            if let Some(bias) = conv.bias.take() {
                conv.bias = Some(bias.map(|b| b.zeros_like()).set_require_grad(true));
            }
        }
        self
    }

    /// Logits `[B, classes]` of images `[B, C, H, W]` in [0,1].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = kernels::conv2d_relu_layer(&self.conv1, images);
        let x = kernels::conv2d_relu_layer(&self.conv2, x);
        let x = kernels::max_pool2d_layer(&self.pool, x);
        let x = kernels::conv2d_relu_layer(&self.conv3, x);
        let x = kernels::conv2d_relu_layer(&self.conv4, x);
        let x = kernels::max_pool2d_layer(&self.pool, x);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.dropout.forward(relu(self.fc1.forward(x)));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
