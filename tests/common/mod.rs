//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use anu::data::{self, Dataset, DatasetName, Split};

/// The data folder: $ANU_DATA, else `../shared/data` beside the repository.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("ANU_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

/// The first `n` MNIST test images.
pub fn mnist_test(n: usize) -> Dataset {
    data::load(DatasetName::Mnist, &data_dir(), Split::Test)
        .expect("MNIST test set")
        .take(n)
}

/// The committed MNIST base model (or the file named by $ANU_TEST_MNIST_MODEL).
pub fn mnist_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ANU_TEST_MNIST_MODEL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/mnist-cnn.safetensors")
}
