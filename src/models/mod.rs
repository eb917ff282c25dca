//! Classifiers that the attacks and the trainer work with, and their weight files.

pub mod small_cnn;
pub mod weights;

use burn::prelude::*;

use crate::data::DatasetName;
pub use small_cnn::{SmallCnn, SmallCnnShape};

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
}

impl Architecture {
    /// The name stored in weight files and accepted by `--model`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::MnistCnn => "mnist-cnn",
            Architecture::CifarCnn => "cifar-cnn",
        }
    }

    /// Parses a name written by [`Architecture::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Architecture::MnistCnn, Architecture::CifarCnn]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// The data set the architecture takes.
    pub fn dataset(self) -> DatasetName {
        match self {
            Architecture::MnistCnn => DatasetName::Mnist,
            Architecture::CifarCnn => DatasetName::Cifar10,
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
        self.small_cnn_shape().forward_macs()
    }

    fn small_cnn_shape(self) -> SmallCnnShape {
        match self {
            Architecture::MnistCnn => SmallCnnShape::MNIST,
            Architecture::CifarCnn => SmallCnnShape::CIFAR10,
        }
    }
}

/// A classifier of images in [0,1] to logits; what the attacks and the trainer take.
#[derive(Module, Debug)]
pub enum Classifier {
    /// One of the small C&W/DDN CNNs.
    SmallCnn(SmallCnn),
}

impl Classifier {
    /// A freshly initialised classifier of the given architecture.
    pub fn new(arch: Architecture, device: &Device) -> Self {
        match arch {
            Architecture::MnistCnn | Architecture::CifarCnn => {
                Classifier::SmallCnn(SmallCnn::new(arch.small_cnn_shape(), device))
            }
        }
    }

    /// Logits `[B, classes]` of images `[B, C, H, W]` in [0,1].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::SmallCnn(m) => m.forward(images),
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
