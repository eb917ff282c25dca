//! Helpers shared by the integration tests. Tests in files named `data_*.rs` need the data
//! folder ($ANU_DATA, else `../shared/data`); the others make their own data and models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anu::data::{self, Dataset, DatasetName, Label, Split};
use anu::models::{Architecture, Classifier, LoadedModel, weights};
use anu::train::adversarial::Adversary;
use anu::train::augment::Augmentation;
use anu::train::{LrSchedule, OptimizerKind, TrainConfig};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use rand::{Rng, SeedableRng};

/// Names of the entries in `dir` (hidden ones included), sorted; empty when `dir` does not
/// exist.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

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

/// Sets every weight from a local generator (uniform in +-sqrt(6 / fan-in)) and every bias to
/// zero, so a model depends only on its seed, not on the device's shared generator (which
/// concurrently running tests also draw from).
struct SeededInit(rand::rngs::StdRng);

impl ModuleMapper for SeededInit {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let rng = &mut self.0;
        param.map(|t| {
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let fan_in = match D {
                4 => dims[1] * dims[2] * dims[3],
                2 => dims[0],
                _ => 0,
            };
            let values: Vec<f32> = if fan_in == 0 {
                vec![0.0; n]
            } else {
                let bound = (6.0 / fan_in as f32).sqrt();
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            };
            Tensor::<1>::from_data(TensorData::new(values, [n]), &t.device()).reshape(dims)
        })
    }
}

/// A model of `arch` with weights drawn from `seed` alone.
pub fn random_model(arch: Architecture, seed: u64) -> Classifier {
    let device = Device::flex();
    Classifier::new(arch, &device).map(&mut SeededInit(rand::rngs::StdRng::seed_from_u64(seed)))
}

/// [`random_model`] saved to `dir/name` and loaded back, as the commands load models.
pub fn saved_random_model(dir: &Path, name: &str, arch: Architecture, seed: u64) -> LoadedModel {
    let path = dir.join(name);
    weights::save(&random_model(arch, seed), arch, &path).unwrap();
    weights::load(&path, &Device::flex()).unwrap()
}

/// `n` random images of `dataset`'s shape, labelled with `model`'s predictions, so that an
/// untargeted attack has work to do on every one.
pub fn synthetic(dataset: DatasetName, n: usize, model: &Classifier, seed: u64) -> Dataset {
    let info = dataset.info();
    let len: usize = info.image_shape.iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pixels: Vec<u8> = (0..n * len).map(|_| rng.random()).collect();
    let unlabelled = Dataset::new(pixels, vec![0; n], info.image_shape, info.num_classes).unwrap();
    let (images, _) = unlabelled.batch(0, n, &Device::flex());
    let labels: Vec<Label> = anu::eval::predictions(model, images)
        .unwrap()
        .into_iter()
        .map(|p| p as Label)
        .collect();
    Dataset { labels, ..unlabelled }
}

/// A small MNIST training run: Adam 1e-3, cosine, batch 32, seed 7.
pub fn train_config(epochs: usize, adversary: Option<Adversary>) -> TrainConfig {
    TrainConfig {
        arch: Architecture::MnistCnn,
        epochs,
        batch_size: 32,
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
        schedule: LrSchedule::Cosine,
        lr_step: 30,
        weight_decay: 0.0,
        seed: 7,
        augmentation: Augmentation::None,
        adversary,
        train_subset: None,
        init_from: None,
    }
}

/// The synthetic image k of `tests/fixtures/efficientnet-lite0-logits.json` (made by
/// `scripts/baselines/efficientnet_lite0_reference.py`), [3, 224, 224] in [0,1].
pub fn efficientnet_reference_image(k: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * 224 * 224);
    for c in 0..3 {
        for y in 0..224 {
            for x in 0..224 {
                v.push(((k * 97 + c * 53 + y * 7 + x * 13 + (x * y) % 31) % 256) as f32 / 255.0);
            }
        }
    }
    v
}
