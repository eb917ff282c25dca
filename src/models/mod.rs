//! Classifiers that the attacks and the trainer work with, and their weight files.

pub mod small_cnn;
pub mod weights;
pub mod wide_resnet;

use burn::prelude::*;

use crate::data::DatasetName;
pub use small_cnn::{SmallCnn, SmallCnnShape};
pub use wide_resnet::WideResNet;

/// The architectures `anu` can build, by the name recorded in weight files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Architecture {
    /// The small C&W/DDN CNN for MNIST (1x28x28).
    #[value(name = "mnist-cnn")]
    #[serde(rename = "mnist-cnn")]
    MnistCnn,
    /// The small C&W/DDN CNN for CIFAR-10 (3x32x32).
    #[value(name = "cifar-cnn")]
    #[serde(rename = "cifar-cnn")]
    CifarCnn,
    /// WRN-28-10 (dropout 0.3), the CIFAR-10 defence model of DDN and ANU (a GPU job to train).
    #[value(name = "wrn-28-10")]
    #[serde(rename = "wrn-28-10")]
    Wrn28x10,
    /// WRN-16-2, a small Wide ResNet that trains on a CPU.
    #[value(name = "wrn-16-2")]
    #[serde(rename = "wrn-16-2")]
    Wrn16x2,
}

/// Every architecture, in the order listed by the CLI.
pub const ARCHITECTURES: [Architecture; 4] = [
    Architecture::MnistCnn,
    Architecture::CifarCnn,
    Architecture::Wrn28x10,
    Architecture::Wrn16x2,
];

impl Architecture {
    /// The name stored in weight files and accepted by `--model`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::MnistCnn => "mnist-cnn",
            Architecture::CifarCnn => "cifar-cnn",
            Architecture::Wrn28x10 => "wrn-28-10",
            Architecture::Wrn16x2 => "wrn-16-2",
        }
    }

    /// Parses a name written by [`Architecture::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        ARCHITECTURES.into_iter().find(|a| a.name() == name)
    }

    /// The data set the architecture takes.
    pub fn dataset(self) -> DatasetName {
        match self {
            Architecture::MnistCnn => DatasetName::Mnist,
            Architecture::CifarCnn | Architecture::Wrn28x10 | Architecture::Wrn16x2 => DatasetName::Cifar10,
        }
    }

    /// The default architecture for a data set.
    pub fn default_for(dataset: DatasetName) -> Self {
        match dataset {
            DatasetName::Mnist => Architecture::MnistCnn,
            DatasetName::Cifar10 => Architecture::CifarCnn,
        }
    }

    /// Multiply-adds of one forward pass on one image.
    pub fn forward_macs(self) -> u64 {
        match self {
            Architecture::MnistCnn => SmallCnnShape::MNIST.forward_macs(),
            Architecture::CifarCnn => SmallCnnShape::CIFAR10.forward_macs(),
            Architecture::Wrn28x10 => wide_resnet::wrn_forward_macs(28, 10),
            Architecture::Wrn16x2 => wide_resnet::wrn_forward_macs(16, 2),
        }
    }
}

/// A classifier of images in [0,1] to logits; what the attacks and the trainer take.
// A process holds one or a few models, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier {
    /// One of the small C&W/DDN CNNs.
    SmallCnn(SmallCnn),
    /// A Wide ResNet.
    WideResNet(WideResNet),
    /// An affine classifier of the flattened image, `W x + b`: its minimal adversarial
    /// distances are known in closed form, which makes it the attacks' test oracle.
    Linear(burn::nn::Linear),
}

impl Classifier {
    /// A freshly initialised classifier of the given architecture.
    pub fn new(arch: Architecture, device: &Device) -> Self {
        match arch {
            Architecture::MnistCnn => Classifier::SmallCnn(SmallCnn::new(SmallCnnShape::MNIST, device)),
            Architecture::CifarCnn => Classifier::SmallCnn(SmallCnn::new(SmallCnnShape::CIFAR10, device)),
            Architecture::Wrn28x10 => Classifier::WideResNet(WideResNet::new(28, 10, 0.3, device)),
            Architecture::Wrn16x2 => Classifier::WideResNet(WideResNet::new(16, 2, 0.3, device)),
        }
    }

    /// Logits `[B, classes]` of images `[B, C, H, W]` in [0,1].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::SmallCnn(m) => m.forward(images),
            Classifier::WideResNet(m) => m.forward(images),
            Classifier::Linear(m) => m.forward(images.flatten(1, 3)),
        }
    }
}

/// A classifier together with the architecture it was built as.
#[derive(Debug)]
pub struct NamedClassifier {
    /// The architecture.
    pub arch: Architecture,
    /// The model.
    pub model: Classifier,
}
