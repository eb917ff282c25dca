//! Data sets as in-memory tensors of pixels in [0,1] and integer labels.
//!
//! Every loader reports a bad file as a [`DataError`] naming the file and the reason.

pub mod cifar10;
pub mod mnist;

use std::fmt;
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Which data set to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    /// MNIST handwritten digits, 1x28x28 grey images, 10 classes.
    Mnist,
    /// CIFAR-10 natural images, 3x32x32 colour images, 10 classes.
    Cifar10,
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
        })
    }
}

/// Training or test part of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out test images.
    Test,
}

/// A failure to read a data file, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but its content is not what the format requires.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory does not hold the expected files.
    #[error("{0}")]
    Missing(String),
}

impl DataError {
    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Images (N x C x H x W, row-major, values in [0,1]) and their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Pixel values, `len() == n * channels * height * width`.
    pub pixels: Vec<f32>,
    /// One label per image, each below `num_classes`.
    pub labels: Vec<u8>,
    /// Shape of one image: `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
}

impl Dataset {
    /// Builds a data set, checking that pixels, labels and shape agree.
    pub fn new(pixels: Vec<f32>, labels: Vec<u8>, image_shape: [usize; 3], num_classes: usize) -> Result<Self, String> {
        let per_image: usize = image_shape.iter().product();
        if per_image == 0 || pixels.len() != labels.len() * per_image {
            return Err(format!(
                "{} pixel values do not make {} images of shape {:?}",
                pixels.len(),
                labels.len(),
                image_shape
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= num_classes) {
            return Err(format!("label {bad} is not below the {num_classes} classes"));
        }
        if let Some(bad) = pixels.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(format!("pixel value {bad} is outside [0,1]"));
        }
        Ok(Self {
            pixels,
            labels,
            image_shape,
            num_classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values in one image.
    pub fn image_len(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// The first `n` images (all of them when `n` exceeds the size).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            pixels: self.pixels[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            image_shape: self.image_shape,
            num_classes: self.num_classes,
        }
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let len = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * len..(i + 1) * len]);
        }
        Dataset {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            image_shape: self.image_shape,
            num_classes: self.num_classes,
        }
    }

    /// Images `start..end` as a `[B, C, H, W]` tensor and labels as a `[B]` tensor.
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let len = self.image_len();
        let [c, h, w] = self.image_shape;
        let b = end - start;
        let images = Tensor::<1>::from_data(
            TensorData::new(self.pixels[start * len..end * len].to_vec(), [b * len]),
            device,
        )
        .reshape([b, c, h, w]);
        let labels = labels_tensor(&self.labels[start..end], device);
        (images, labels)
    }
}

/// Labels as an integer tensor.
pub fn labels_tensor(labels: &[u8], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(values, [labels.len()]), device)
}

/// The data directory: the flag if given, else `$ANU_DATA`, else `./data`.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    match std::env::var_os("ANU_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("data"),
    }
}

/// Loads one split of a data set from `data_dir/<dataset>/`.
pub fn load(name: DatasetName, data_dir: &Path, split: Split) -> Result<Dataset, DataError> {
    match name {
        DatasetName::Mnist => mnist::load(&data_dir.join("mnist"), split),
        DatasetName::Cifar10 => cifar10::load(&data_dir.join("cifar10"), split),
    }
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The first of `names` that exists in `dir`, else an error listing them all.
pub(crate) fn find_file(dir: &Path, names: &[String]) -> Result<PathBuf, DataError> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        DataError::Missing(format!(
            "none of {} found in {} (set --data-dir or ANU_DATA to the folder that holds the data sets)",
            names.join(", "),
            dir.display()
        ))
    })
}

/// Names of the classes: digits for MNIST; for CIFAR-10 the lines of
/// `cifar10/batches.meta.txt` when present, else the standard names.
pub fn class_names(name: DatasetName, data_dir: &Path) -> Vec<String> {
    match name {
        DatasetName::Mnist => (0..10).map(|d| d.to_string()).collect(),
        DatasetName::Cifar10 => {
            let standard = [
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ];
            let from_file: Vec<String> = std::fs::read_to_string(data_dir.join("cifar10/batches.meta.txt"))
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if from_file.len() == 10 {
                from_file
            } else {
                standard.iter().map(|s| s.to_string()).collect()
            }
        }
    }
}
