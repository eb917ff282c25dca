//! Loader tests on made-up files (no data folder): clear errors naming the file on truncated,
//! corrupt or inconsistent input.

use std::io::Write;

use anu::data::{DataError, Dataset, Split, cifar10, mnist};

fn idx_images(n: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        bytes.extend(v.to_be_bytes());
    }
    bytes.extend(std::iter::repeat_n(128u8, body));
    bytes
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_wrong_magic_and_bad_labels_are_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = idx_images(2, 2, 2, 8);
    let (pixels, rows, cols) = mnist::parse_images(&dir.path().join("x"), &good).unwrap();
    assert_eq!((pixels.len(), rows, cols), (8, 2, 2));
    assert_eq!(pixels[0], 128);

    let truncated = &good[..good.len() - 3];
    let err = mnist::parse_images(&dir.path().join("imgs"), truncated)
        .unwrap_err()
        .to_string();
    assert!(err.contains("imgs") && err.contains("truncated"), "{err}");

    let mut wrong = good.clone();
    wrong[3] = 1;
    let err = mnist::parse_images(&dir.path().join("imgs"), &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("magic"), "{err}");

    let err = mnist::parse_images(&dir.path().join("imgs"), &good[..5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("too short"), "{err}");

    let labels = [0, 0, 8, 1, 0, 0, 0, 2, 3, 11];
    let err = mnist::parse_labels(&dir.path().join("lbl"), &labels)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lbl") && err.contains("11"), "{err}");
}

#[test]
fn corrupt_gzip_and_missing_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // A gzip stream cut in half.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&idx_images(10, 28, 28, 7840)).unwrap();
    let gz = enc.finish().unwrap();
    write(dir.path(), "t10k-images-idx3-ubyte.gz", &gz[..gz.len() / 2]);
    write(
        dir.path(),
        "t10k-labels-idx1-ubyte",
        &[0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
    );
    let err = mnist::load(dir.path(), Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
    assert!(err.to_string().contains("t10k-images-idx3-ubyte.gz"), "{err}");

    let err = mnist::load(&dir.path().join("nowhere"), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn images_and_labels_must_agree_in_count() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t10k-images-idx3-ubyte", &idx_images(3, 28, 28, 3 * 784));
    write(dir.path(), "t10k-labels-idx1-ubyte", &[0, 0, 8, 1, 0, 0, 0, 2, 1, 2]);
    let err = mnist::load(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(err.contains("2 labels but 3 images"), "{err}");
}

#[test]
fn cifar_records_parse_and_reject_bad_sizes_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![3u8];
    bytes.extend((0..3072).map(|i| (i % 256) as u8));
    let (pixels, labels) = cifar10::parse_records(&dir.path().join("b"), &bytes).unwrap();
    assert_eq!(labels, vec![3]);
    assert_eq!(pixels.len(), 3072);
    assert_eq!(pixels[255], 255);
    let err = cifar10::parse_records(&dir.path().join("b"), &bytes[..3000])
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    bytes[0] = 12;
    let err = cifar10::parse_records(&dir.path().join("b"), &bytes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 12"), "{err}");
}

#[test]
fn a_data_set_checks_its_parts_agree() {
    assert!(Dataset::new(vec![0; 8], vec![1, 2], [1, 2, 2], 10).is_ok());
    let err = Dataset::new(vec![0; 7], vec![1, 2], [1, 2, 2], 10).unwrap_err();
    assert!(matches!(err, DataError::Invalid(_)), "{err}");
    let err = Dataset::new(vec![0; 8], vec![1, 10], [1, 2, 2], 10).unwrap_err();
    assert!(err.to_string().contains("label 10"), "{err}");
    // Labels are wide enough for ImageNet's 1000 classes.
    let wide = Dataset::new(vec![0; 8], vec![1, 999], [1, 2, 2], 1000).unwrap();
    assert_eq!(wide.labels[1], 999);
}
