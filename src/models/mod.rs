//! Classifiers that the attacks and the trainer work with. What an attack needs of one is
//! [`Classifier::forward`] on [0,1] images and its [`InputSpec`]; reading and writing weight
//! files is the separate concern of [`weights`].

pub mod efficientnet;
pub mod format;
pub mod onnx;
pub mod small_cnn;
pub mod weights;
pub mod wide_resnet;

use std::path::PathBuf;

use burn::prelude::*;

use crate::data::DatasetName;
pub use efficientnet::EfficientNetLite;
pub use onnx::{Normalization, OnnxModel};
pub use small_cnn::{SmallCnn, SmallCnnShape};
pub use weights::LoadedModel;
pub use wide_resnet::WideResNet;

/// A failure to read, write or use a model file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read or written.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable weight file.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The graph could not classify a batch of images.
    #[error("the model cannot classify a batch of {batch} images: {source}")]
    Forward {
        /// Images in the batch.
        batch: usize,
        /// Why, naming the node.
        #[source]
        source: onnx::OnnxError,
    },
    /// The model does not take the data set's images or classes.
    #[error("{path}: the model ({model}) takes {expects}, but {dataset} has {has}")]
    WrongDataset {
        /// The weight file.
        path: PathBuf,
        /// The architecture.
        model: String,
        /// The data set.
        dataset: DatasetName,
        /// What the model takes.
        expects: String,
        /// What the data set has.
        has: String,
    },
}

impl From<crate::fsutil::FileError> for ModelError {
    fn from(e: crate::fsutil::FileError) -> Self {
        ModelError::Io {
            path: e.path,
            action: e.action,
            source: e.source,
        }
    }
}

/// What a classifier takes and gives: images of one shape, logits over some classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// `[channels, height, width]` of one image.
    pub image_shape: [usize; 3],
    /// Number of classes (logits per image).
    pub num_classes: usize,
}

impl std::fmt::Display for InputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [c, h, w] = self.image_shape;
        write!(f, "{c}x{h}x{w} images in {} classes", self.num_classes)
    }
}

impl InputSpec {
    /// The spec of a data set's images.
    pub fn of_dataset(dataset: DatasetName) -> Self {
        let info = dataset.info();
        Self {
            image_shape: info.image_shape,
            num_classes: info.num_classes,
        }
    }
}

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
    /// EfficientNet-Lite0 for ImageNet (3x224x224, 1000 classes), the layout of the PyPI
    /// package `efficientnet-lite-pytorch` 0.1.0, so its PyTorch checkpoints load.
    #[value(name = "efficientnet-lite0")]
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

/// Every architecture, in the order listed by the CLI.
pub const ARCHITECTURES: [Architecture; 5] = [
    Architecture::MnistCnn,
    Architecture::CifarCnn,
    Architecture::Wrn28x10,
    Architecture::Wrn16x2,
    Architecture::EfficientNetLite0,
];

impl Architecture {
    /// The name stored in weight files and accepted by `--model`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::MnistCnn => "mnist-cnn",
            Architecture::CifarCnn => "cifar-cnn",
            Architecture::Wrn28x10 => "wrn-28-10",
            Architecture::Wrn16x2 => "wrn-16-2",
            Architecture::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    /// Parses a name written by [`Architecture::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        ARCHITECTURES.into_iter().find(|a| a.name() == name)
    }

    /// The images and classes the architecture takes.
    pub fn input_spec(self) -> InputSpec {
        match self {
            Architecture::MnistCnn => SmallCnnShape::MNIST.input_spec(),
            Architecture::CifarCnn => SmallCnnShape::CIFAR10.input_spec(),
            Architecture::Wrn28x10 | Architecture::Wrn16x2 => InputSpec {
                image_shape: [3, 32, 32],
                num_classes: 10,
            },
            Architecture::EfficientNetLite0 => InputSpec {
                image_shape: [3, efficientnet::IMAGE_SIZE, efficientnet::IMAGE_SIZE],
                num_classes: 1000,
            },
        }
    }

    /// The default architecture for a data set.
    pub fn default_for(dataset: DatasetName) -> Self {
        match dataset {
            DatasetName::Mnist => Architecture::MnistCnn,
            DatasetName::Cifar10 => Architecture::CifarCnn,
            DatasetName::ImagenetSample => Architecture::EfficientNetLite0,
        }
    }

    /// Multiply-adds of one forward pass on one image.
    pub fn forward_macs(self) -> u64 {
        match self {
            Architecture::MnistCnn => SmallCnnShape::MNIST.forward_macs(),
            Architecture::CifarCnn => SmallCnnShape::CIFAR10.forward_macs(),
            Architecture::Wrn28x10 => wide_resnet::wrn_forward_macs(28, 10),
            Architecture::Wrn16x2 => wide_resnet::wrn_forward_macs(16, 2),
            Architecture::EfficientNetLite0 => efficientnet::lite0_forward_macs(efficientnet::IMAGE_SIZE, 1000),
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
    /// EfficientNet-Lite.
    EfficientNet(EfficientNetLite),
    /// An affine classifier of the flattened image, `W x + b`: its minimal adversarial
    /// distances are known in closed form, which makes it the attacks' test oracle.
    Linear(burn::nn::Linear),
    /// A graph read from an ONNX file.
    Onnx(OnnxModel),
}

impl Classifier {
    /// A freshly initialised classifier of the given architecture (ONNX graphs are read from
    /// their files by [`onnx::load`] instead).
    pub fn new(arch: Architecture, device: &Device) -> Self {
        match arch {
            Architecture::MnistCnn => Classifier::SmallCnn(SmallCnn::new(SmallCnnShape::MNIST, device)),
            Architecture::CifarCnn => Classifier::SmallCnn(SmallCnn::new(SmallCnnShape::CIFAR10, device)),
            Architecture::Wrn28x10 => Classifier::WideResNet(WideResNet::new(28, 10, 0.3, device)),
            Architecture::Wrn16x2 => Classifier::WideResNet(WideResNet::new(16, 2, 0.3, device)),
            Architecture::EfficientNetLite0 => Classifier::EfficientNet(EfficientNetLite::lite0(1000, device)),
        }
    }

    /// Logits `[B, classes]` of images `[B, C, H, W]` in [0,1]. The built-in networks always
    /// give them; an ONNX graph whose shapes depend on the batch size may not
    /// ([`ModelError::Forward`]).
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, ModelError> {
        let batch = images.dims()[0];
        Ok(match self {
            Classifier::SmallCnn(m) => m.forward(images),
            Classifier::WideResNet(m) => m.forward(images),
            Classifier::EfficientNet(m) => m.forward(images),
            Classifier::Linear(m) => m.forward(images.flatten(1, 3)),
            Classifier::Onnx(m) => m
                .try_forward(images)
                .map_err(|source| ModelError::Forward { batch, source })?,
        })
    }
}

/// Checks that a model taking `spec` can classify `dataset`'s images; `path` names the model
/// file in the error.
pub fn check_fits(
    spec: InputSpec,
    model_name: &str,
    path: &std::path::Path,
    dataset: DatasetName,
) -> Result<(), ModelError> {
    let wanted = InputSpec::of_dataset(dataset);
    if spec == wanted {
        return Ok(());
    }
    Err(ModelError::WrongDataset {
        path: path.to_path_buf(),
        model: model_name.to_string(),
        dataset,
        expects: spec.to_string(),
        has: wanted.to_string(),
    })
}
