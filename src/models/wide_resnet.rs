//! Wide ResNet (Zagoruyko & Komodakis 2016) for CIFAR-10, as used by DDN and ANU for the
//! CIFAR-10 defence (WRN-28-10, dropout 0.3), behind a normalisation layer so that it takes
//! raw images in [0,1].
//!
//! conv3x3(3->16), three groups of n = (depth - 4) / 6 pre-activation basic blocks with
//! 16k, 32k, 64k channels (strides 1, 2, 2), BN-ReLU, global average pool, fc(64k->10).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::kernels;

/// CIFAR-10 channel means used by the DDN authors' normalisation layer.
pub const CIFAR_MEAN: [f32; 3] = [0.491, 0.482, 0.447];
/// CIFAR-10 channel standard deviations of the same layer.
pub const CIFAR_STD: [f32; 3] = [0.247, 0.243, 0.262];

fn conv(cin: usize, cout: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(if kernel == 3 {
            PaddingConfig2d::Explicit(1, 1, 1, 1)
        } else {
            PaddingConfig2d::Valid
        })
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// A pre-activation basic block.
#[derive(Module, Debug)]
pub struct Block {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    dropout: Dropout,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, dropout: f64, device: &Device) -> Self {
        Self {
            bn1: BatchNormConfig::new(cin).init(device),
            conv1: conv(cin, cout, 3, stride, device),
            bn2: BatchNormConfig::new(cout).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            conv2: conv(cout, cout, 3, 1, device),
            shortcut: (cin != cout || stride != 1).then(|| conv(cin, cout, 1, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = relu(self.bn1.forward(x.clone()));
        let skip = match &self.shortcut {
            Some(s) => kernels::conv2d_layer(s, pre.clone()),
            None => x,
        };
        let y = kernels::conv2d_layer(&self.conv1, pre);
        let y = self.dropout.forward(relu(self.bn2.forward(y)));
        kernels::conv2d_layer(&self.conv2, y).add(skip)
    }
}

/// Wide ResNet of a given depth and widening factor.
#[derive(Module, Debug)]
pub struct WideResNet {
    stem: Conv2d,
    blocks: Vec<Block>,
    bn: BatchNorm,
    fc: Linear,
}

impl WideResNet {
    /// WRN-`depth`-`width` (depth = 6n + 4) with the given dropout inside blocks.
    pub fn new(depth: usize, width: usize, dropout: f64, device: &Device) -> Self {
        assert!(depth >= 10 && (depth - 4).is_multiple_of(6), "WRN depth must be 6n + 4");
        let n = (depth - 4) / 6;
        let widths = [16 * width, 32 * width, 64 * width];
        let mut blocks = Vec::new();
        let mut cin = 16;
        for (g, &cout) in widths.iter().enumerate() {
            for i in 0..n {
                let stride = if i == 0 && g > 0 { 2 } else { 1 };
                blocks.push(Block::new(cin, cout, stride, dropout, device));
                cin = cout;
            }
        }
        Self {
            stem: conv(3, 16, 3, 1, device),
            blocks,
            bn: BatchNormConfig::new(cin).init(device),
            fc: LinearConfig::new(cin, 10)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// Logits `[B, 10]` of images `[B, 3, 32, 32]` in [0,1].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let device = images.device();
        let mean = Tensor::<1>::from_floats(CIFAR_MEAN, &device).reshape([1, 3, 1, 1]);
        let std = Tensor::<1>::from_floats(CIFAR_STD, &device).reshape([1, 3, 1, 1]);
        let mut x = kernels::conv2d_layer(&self.stem, images.sub(mean).div(std));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = relu(self.bn.forward(x));
        let x: Tensor<2> = x.mean_dims(&[2, 3]).flatten(1, 3);
        self.fc.forward(x)
    }
}

/// Multiply-adds of one forward pass of WRN-`depth`-`width` on a 32x32 image.
pub fn wrn_forward_macs(depth: usize, width: usize) -> u64 {
    let n = (depth - 4) / 6;
    let mut macs = (3 * 16 * 9 * 32 * 32) as u64;
    let mut cin = 16;
    let mut size = 32;
    for (g, cout) in [16 * width, 32 * width, 64 * width].into_iter().enumerate() {
        for i in 0..n {
            if i == 0 && g > 0 {
                size /= 2;
            }
            macs += (cin * cout * 9 * size * size + cout * cout * 9 * size * size) as u64;
            if cin != cout || (i == 0 && g > 0) {
                macs += (cin * cout * size * size) as u64;
            }
            cin = cout;
        }
    }
    macs + (cin * 10) as u64
}
