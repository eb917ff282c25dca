//! MNIST in the IDX format (gzip-compressed or not), pixels kept as bytes.

use std::path::Path;

use super::{DataError, Dataset, Label, Split, find_file, read_maybe_gz};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// File stem of one split's images and labels.
fn stems(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

fn candidates(stem: &str) -> Vec<String> {
    vec![format!("{stem}.gz"), stem.to_string()]
}

/// Loads one split from `dir` (which holds the four standard files, `.gz` or not).
pub fn load(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let (images_stem, labels_stem) = stems(split);
    let images_path = find_file(dir, &candidates(images_stem))?;
    let labels_path = find_file(dir, &candidates(labels_stem))?;
    let (pixels, rows, cols) = parse_images(&images_path, &read_maybe_gz(&images_path)?)?;
    let labels = parse_labels(&labels_path, &read_maybe_gz(&labels_path)?)?;
    if pixels.len() != labels.len() * rows * cols {
        return Err(DataError::format(
            &labels_path,
            format!(
                "{} labels but {} images in {}",
                labels.len(),
                pixels.len() / (rows * cols),
                images_path.display()
            ),
        ));
    }
    Dataset::new(pixels, labels, [1, rows, cols], 10).map_err(|e| DataError::format(&labels_path, e.to_string()))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses an IDX3 image file: magic, count, rows, cols, then `count*rows*cols` bytes.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, usize, usize), DataError> {
    if bytes.len() < 16 {
        return Err(DataError::format(
            path,
            format!("file too short for an IDX image header ({} bytes)", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        return Err(DataError::format(
            path,
            format!("wrong magic number {magic:#010x}, expected {IMAGES_MAGIC:#010x} (IDX unsigned-byte images)"),
        ));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| DataError::format(path, "header dimensions overflow"))?;
    let body = &bytes[16..];
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

/// Parses an IDX1 label file: magic, count, then `count` bytes each below 10.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<Label>, DataError> {
    if bytes.len() < 8 {
        return Err(DataError::format(
            path,
            format!("file too short for an IDX label header ({} bytes)", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        return Err(DataError::format(
            path,
            format!("wrong magic number {magic:#010x}, expected {LABELS_MAGIC:#010x} (IDX unsigned-byte labels)"),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    let body = &bytes[8..];
    if body.len() != n {
        return Err(DataError::format(
            path,
            format!(
                "header says {n} labels but the file holds {} (truncated or corrupt)",
                body.len()
            ),
        ));
    }
    if let Some((i, l)) = body.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(DataError::format(
            path,
            format!("label {l} at index {i} is not a digit 0-9"),
        ));
    }
    Ok(body.iter().map(|&l| l as Label).collect())
}
