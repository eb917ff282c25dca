//! Loader tests on the real data sets: shapes, value range, label counts.

mod common;

use anu::data::fetch::{self, FetchOptions};
use anu::data::{self, DatasetName, Split};

#[test]
fn mnist_test_set_has_known_shape_range_and_label_counts() {
    let test = data::load(DatasetName::Mnist, &common::data_dir(), Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.image_shape, [1, 28, 28]);
    assert_eq!(test.pixels.len(), 10_000 * 784);
    assert!(test.pixels.contains(&255) && test.pixels.contains(&0));
    // Batches come out as [0,1] values, byte / 255.
    let (images, labels) = test.batch(0, 2, &burn::prelude::Device::flex());
    let values: Vec<f32> = images.into_data().iter::<f32>().collect();
    assert!(values.iter().all(|p| (0.0..=1.0).contains(p)));
    assert_eq!(values[200], test.pixels[200] as f32 / 255.0);
    assert_eq!(labels.into_data().iter::<i64>().collect::<Vec<_>>(), vec![7, 2]);
    let mut counts = [0usize; 10];
    for &l in &test.labels {
        counts[l as usize] += 1;
    }
    // The well-known class counts of the MNIST test set.
    assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // The first test digits are 7, 2, 1, 0, 4.
    assert_eq!(&test.labels[..5], &[7, 2, 1, 0, 4]);
}

#[test]
fn mnist_train_set_has_60000_images() {
    let train = data::load(DatasetName::Mnist, &common::data_dir(), Split::Train).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.labels.iter().filter(|&&l| l == 1).count(), 6742);
}

#[test]
fn cifar10_test_set_has_known_shape_and_balanced_labels() {
    let test = data::load(DatasetName::Cifar10, &common::data_dir(), Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.image_shape, [3, 32, 32]);
    let mut counts = [0usize; 10];
    for &l in &test.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [1000; 10]);
    // The first test images are a cat, two ships and an airplane.
    assert_eq!(&test.labels[..4], &[3, 8, 8, 0]);
    let names = DatasetName::Cifar10.info().class_names(&common::data_dir());
    assert_eq!(names[3], "cat");
}

#[test]
fn the_download_checksums_are_those_of_the_data_folder() {
    // `anu data fetch` finds every file of the data folder intact and asks no server (the
    // address below refuses connections), which checks the SHA-256 constants it uses.
    let options = FetchOptions {
        attempts: 1,
        progress: false,
        ..FetchOptions::default()
    };
    let nowhere = ["http://127.0.0.1:9/".to_string()];
    for (dataset, files) in [(DatasetName::Mnist, 4), (DatasetName::Cifar10, 6)] {
        let report = fetch::fetch_dataset(dataset, &common::data_dir(), &nowhere, &options).unwrap();
        assert_eq!((report.present.len(), report.written.len()), (files, 0), "{dataset}");
        assert_eq!(report.bytes_downloaded, 0);
    }
}

#[test]
fn eval_counts_the_first_n_test_images_only() {
    let run = |n: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_anu"))
            .args(["eval", "--dataset", "mnist", "--json", "--n", n, "--data-dir"])
            .arg(common::data_dir())
            .arg("--model-file")
            .arg(common::mnist_model_path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, _) = run("37");
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(value["n"], 37);
    let correct = value["correct"].as_u64().unwrap();
    assert!((30..=37).contains(&correct), "{correct} of 37");
    let (ok, _, stderr) = run("0");
    assert!(!ok && stderr.contains("--n must be at least 1"), "{stderr}");
}
