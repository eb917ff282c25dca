//! MNIST in the IDX format (gzip-compressed or not), pixels kept as bytes.
//!
//! [`load`] reads each file's header first and checks it against MNIST (28x28 images, at most
//! 60000 training or 10000 test images, as many labels as images) before reading exactly the
//! pixels and labels the header declares, so a hostile file cannot make it read or hold more.

use std::path::Path;

use super::{DataError, DataFile, Dataset, Label, Split, find_file};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Side of an MNIST image, in pixels.
pub const SIDE: usize = 28;

/// File stem of one split's images and labels.
fn stems(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

/// Number of images in the full split: a file may hold fewer, never more.
pub fn max_images(split: Split) -> usize {
    match split {
        Split::Train => 60_000,
        Split::Test => 10_000,
    }
}

fn candidates(stem: &str) -> Vec<String> {
    vec![format!("{stem}.gz"), stem.to_string()]
}

/// Loads one split from `dir` (which holds the four standard files, `.gz` or not).
pub fn load(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let (images_stem, labels_stem) = stems(split);
    let mut images = DataFile::open(&find_file(dir, &candidates(images_stem))?)?;
    let mut labels = DataFile::open(&find_file(dir, &candidates(labels_stem))?)?;
    let header = images.header::<16>("an IDX image header")?;
    let (n, rows, cols) = image_header(images.path(), &header)?;
    check_images(images.path(), split, n, rows, cols)?;
    let header = labels.header::<8>("an IDX label header")?;
    let n_labels = label_header(labels.path(), &header)?;
    if n_labels != n {
        return Err(DataError::format(
            labels.path(),
            format!("{n_labels} labels but {n} images in {}", images.path().display()),
        ));
    }
    let pixels = images.payload(n * rows * cols, &format!("{n} images of {rows}x{cols}"))?;
    let body = labels.payload(n, &format!("{n} labels"))?;
    let labels_path = labels.path();
    let labels = check_digits(labels_path, &body)?;
    Dataset::new(pixels, labels, [1, rows, cols], 10).map_err(|e| DataError::format(labels_path, e.to_string()))
}

/// Refuses an image header that does not describe (part of) an MNIST split.
fn check_images(path: &Path, split: Split, n: usize, rows: usize, cols: usize) -> Result<(), DataError> {
    if (rows, cols) != (SIDE, SIDE) {
        return Err(DataError::format(
            path,
            format!("the header says the images are {rows}x{cols}; MNIST images are {SIDE}x{SIDE}"),
        ));
    }
    let max = max_images(split);
    if n == 0 || n > max {
        return Err(DataError::format(
            path,
            format!("the header says {n} images; this MNIST split holds from 1 to {max}"),
        ));
    }
    Ok(())
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the magic number of an IDX header.
fn check_magic(path: &Path, header: &[u8], expected: u32, what: &str) -> Result<(), DataError> {
    let magic = be_u32(header, 0);
    if magic != expected {
        return Err(DataError::format(
            path,
            format!("wrong magic number {magic:#010x}, expected {expected:#010x} (IDX unsigned-byte {what})"),
        ));
    }
    Ok(())
}

/// The image count, rows and columns an IDX3 image header declares.
fn image_header(path: &Path, header: &[u8; 16]) -> Result<(usize, usize, usize), DataError> {
    check_magic(path, header, IMAGES_MAGIC, "images")?;
    Ok((
        be_u32(header, 4) as usize,
        be_u32(header, 8) as usize,
        be_u32(header, 12) as usize,
    ))
}

/// The label count an IDX1 label header declares.
fn label_header(path: &Path, header: &[u8; 8]) -> Result<usize, DataError> {
    check_magic(path, header, LABELS_MAGIC, "labels")?;
    Ok(be_u32(header, 4) as usize)
}

/// Labels from their bytes, each of which must be a digit 0-9.
fn check_digits(path: &Path, body: &[u8]) -> Result<Vec<Label>, DataError> {
    if let Some((i, l)) = body.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(DataError::format(
            path,
            format!("label {l} at index {i} is not a digit 0-9"),
        ));
    }
    Ok(body.iter().map(|&l| l as Label).collect())
}

/// Parses an IDX3 image file held in memory: magic, count, rows, cols, then
/// `count*rows*cols` bytes (of any image size; [`load`] also checks MNIST's).
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, usize, usize), DataError> {
    let Some((header, body)) = bytes.split_first_chunk::<16>() else {
        return Err(DataError::format(
            path,
            format!("file too short for an IDX image header ({} bytes)", bytes.len()),
        ));
    };
    let (n, rows, cols) = image_header(path, header)?;
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| DataError::format(path, "header dimensions overflow"))?;
    if body.len() != expected {
        return Err(DataError::format(
            path,
            format!(
                "header says {n} images of {rows}x{cols} ({expected} bytes) but the file holds {} bytes of pixels (truncated or corrupt)",
                body.len()
            ),
        ));
    }
    Ok((body.to_vec(), rows, cols))
}

/// Parses an IDX1 label file held in memory: magic, count, then `count` bytes each below 10.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<Label>, DataError> {
    let Some((header, body)) = bytes.split_first_chunk::<8>() else {
        return Err(DataError::format(
            path,
            format!("file too short for an IDX label header ({} bytes)", bytes.len()),
        ));
    };
    let n = label_header(path, header)?;
    if body.len() != n {
        return Err(DataError::format(
            path,
            format!(
                "header says {n} labels but the file holds {} (truncated or corrupt)",
                body.len()
            ),
        ));
    }
    check_digits(path, body)
}
