//! Data sets held in memory as 8-bit pixels and integer labels, handed out in batches of
//! [0,1] tensors.
//!
//! Every loader reports a bad file as a [`DataError`] naming the file and the reason.
//! What is known about each data set (shape, classes, paper budgets, defaults) is in
//! [`info`].

pub mod cifar10;
pub mod fetch;
pub mod imagenet;
pub mod info;
pub mod mnist;

pub use info::{DatasetInfo, TargetProtocol};

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
    /// A folder of labelled ImageNet JPEGs (one per class for the first 200 classes in the
    /// shipped sample), resized and cropped to 3x224x224, 1000 classes.
    #[value(name = "imagenet-sample")]
    #[serde(rename = "imagenet-sample")]
    ImagenetSample,
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
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
    /// Pixels, labels and shape do not make a data set.
    #[error("invalid data set: {0}")]
    Invalid(String),
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

/// A class label. Wide enough for ImageNet's 1000 classes.
pub type Label = u16;

/// Images (N x C x H x W, row-major, 8-bit) and their labels. Pixels are kept as bytes (a
/// quarter of the memory of f32) and scaled to [0,1] per batch by [`Dataset::batch`].
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Pixel bytes, `len() == n * channels * height * width`; value v stands for v / 255.
    pub pixels: Vec<u8>,
    /// One label per image, each below `num_classes`.
    pub labels: Vec<Label>,
    /// Shape of one image: `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
}

/// The [0,1] value of a pixel byte.
pub fn pixel_value(byte: u8) -> f32 {
    byte as f32 / 255.0
}

impl Dataset {
    /// Builds a data set, checking that pixels, labels and shape agree.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<Label>,
        image_shape: [usize; 3],
        num_classes: usize,
    ) -> Result<Self, DataError> {
        let per_image: usize = image_shape.iter().product();
        if per_image == 0 || pixels.len() != labels.len() * per_image {
            return Err(DataError::Invalid(format!(
                "{} pixel values do not make {} images of shape {:?}",
                pixels.len(),
                labels.len(),
                image_shape
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= num_classes) {
            return Err(DataError::Invalid(format!(
                "label {bad} is not below the {num_classes} classes"
            )));
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

    /// Image `i` as [0,1] values.
    pub fn image(&self, i: usize) -> Vec<f32> {
        let len = self.image_len();
        self.pixels[i * len..(i + 1) * len]
            .iter()
            .map(|&b| pixel_value(b))
            .collect()
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

    /// Images `start..end` as a `[B, C, H, W]` tensor of [0,1] values and labels as a `[B]`
    /// tensor.
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let len = self.image_len();
        let [c, h, w] = self.image_shape;
        let b = end - start;
        let values: Vec<f32> = self.pixels[start * len..end * len]
            .iter()
            .map(|&p| pixel_value(p))
            .collect();
        let images = Tensor::<1>::from_data(TensorData::new(values, [b * len]), device).reshape([b, c, h, w]);
        let labels = labels_tensor(&self.labels[start..end], device);
        (images, labels)
    }
}

/// Labels as an integer tensor.
pub fn labels_tensor(labels: &[Label], device: &Device) -> Tensor<1, Int> {
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

/// Loads one split of a data set from `data_dir/<dataset>/`. When files are missing, the error
/// says which command downloads them (see [`fetch`]).
pub fn load(name: DatasetName, data_dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let dir = data_dir.join(name.info().folder);
    let loaded = match name {
        DatasetName::Mnist => mnist::load(&dir, split),
        DatasetName::Cifar10 => cifar10::load(&dir, split),
        DatasetName::ImagenetSample => imagenet::load(&dir, split),
    };
    loaded.map_err(|e| fetch::with_fetch_hint(e, name, data_dir))
}

/// A data file opened for reading, gunzipped on the fly when its name ends in `.gz` (several
/// gzip members one after another, as `cat a.gz b.gz` makes, count as one stream). Loaders
/// read the header first, check it against the data set, then read exactly the bytes the
/// header implies: however large a file is, or whatever a small gzip file would inflate to,
/// no more than that is ever read or held.
pub(crate) struct DataFile {
    path: PathBuf,
    gzip: bool,
    reader: Box<dyn std::io::Read>,
}

impl DataFile {
    /// Opens `path`, which must be a regular file.
    pub(crate) fn open(path: &Path) -> Result<Self, DataError> {
        let (file, _) = crate::fsutil::open_regular(path).map_err(|e| DataError::io(path, e))?;
        let buffered = std::io::BufReader::new(file);
        let gzip = path.extension().is_some_and(|e| e == "gz");
        let reader: Box<dyn std::io::Read> = match gzip {
            true => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            false => Box::new(buffered),
        };
        Ok(Self {
            path: path.to_path_buf(),
            gzip,
            reader,
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the `N` bytes of a header; `what` names it in the error for a shorter file.
    pub(crate) fn header<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DataError> {
        let mut header = [0u8; N];
        let got = self.fill(&mut header)?;
        if got < N {
            return Err(DataError::format(
                &self.path,
                format!("file too short for {what} ({got} bytes)"),
            ));
        }
        Ok(header)
    }

    /// Reads the next `len` bytes, then checks the file ends there: a shorter file is
    /// truncated, a longer one holds data that `what` (the content the header describes) does
    /// not account for. At most `len + 1` bytes are read.
    pub(crate) fn payload(&mut self, len: usize, what: &str) -> Result<Vec<u8>, DataError> {
        use std::io::Read;
        let mut body = Vec::with_capacity(len);
        (&mut self.reader)
            .take(len as u64)
            .read_to_end(&mut body)
            .map_err(|e| self.read_error(e))?;
        if body.len() < len {
            return Err(DataError::format(
                &self.path,
                format!(
                    "the file ends after {} of the {len} bytes of {what} (truncated or corrupt)",
                    body.len()
                ),
            ));
        }
        if self.fill(&mut [0u8; 1])? > 0 {
            return Err(DataError::format(
                &self.path,
                format!("the file holds more than the {len} bytes of {what} (trailing data)"),
            ));
        }
        Ok(body)
    }

    /// Reads into `buf` until it is full or the file ends; returns the number of bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        use std::io::Read;
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        Ok(got)
    }

    /// A read failure: in a gzip file, corrupt compressed data (or something other than gzip
    /// data after its end); otherwise an I/O error.
    fn read_error(&self, e: std::io::Error) -> DataError {
        use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
        if self.gzip && matches!(e.kind(), InvalidData | InvalidInput | UnexpectedEof) {
            DataError::format(
                &self.path,
                format!("corrupt or truncated gzip data, or other data after it: {e}"),
            )
        } else {
            DataError::io(&self.path, e)
        }
    }
}

/// Largest optional text file read beside the data (class names).
const MAX_TEXT_BYTES: u64 = 4 << 20;

/// The text of a small optional file (such as a list of class names), when it is a regular
/// file of at most a few megabytes holding UTF-8 text.
pub(crate) fn read_optional_text(path: &Path) -> Option<String> {
    let bytes = crate::fsutil::read_regular(path, MAX_TEXT_BYTES).ok()?;
    String::from_utf8(bytes).ok()
}

/// The first of `names` that exists in `dir`, else an error listing them all. (What is found
/// is opened only if it is a regular file: see [`DataFile::open`].)
pub(crate) fn find_file(dir: &Path, names: &[String]) -> Result<PathBuf, DataError> {
    names.iter().map(|n| dir.join(n)).find(|p| p.exists()).ok_or_else(|| {
        DataError::Missing(format!(
            "none of {} found in {} (set --data-dir or ANU_DATA to the folder that holds the data sets)",
            names.join(", "),
            dir.display()
        ))
    })
}
