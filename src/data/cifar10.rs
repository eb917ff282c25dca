//! CIFAR-10, binary version: records of one label byte then 3072 bytes (R, G, B planes).

use std::path::Path;

use super::{DataError, DataFile, Dataset, Label, Split, find_file};

/// Bytes of one record: the label and a 3x32x32 image.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;
/// Records in each batch file: every CIFAR-10 batch, training or test, holds exactly this many.
pub const RECORDS_PER_BATCH: usize = 10_000;

fn batch_names(split: Split) -> Vec<&'static str> {
    match split {
        Split::Train => vec![
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
        ],
        Split::Test => vec!["test_batch"],
    }
}

/// Loads one split from `dir` (`data_batch_{1..5}.bin[.gz]`, `test_batch.bin[.gz]`).
pub fn load(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut last = None;
    for name in batch_names(split) {
        let path = find_file(dir, &[format!("{name}.bin.gz"), format!("{name}.bin")])?;
        let (p, l) = parse_records(&path, &read_batch(&path)?)?;
        pixels.extend(p);
        labels.extend(l);
        last = Some(path);
    }
    Dataset::new(pixels, labels, [3, 32, 32], 10).map_err(|e| match last {
        Some(path) => DataError::format(&path, e.to_string()),
        None => e,
    })
}

/// Reads the bytes of one batch file, which must hold exactly [`RECORDS_PER_BATCH`] records
/// (no more is read, whatever the file holds).
pub fn read_batch(path: &Path) -> Result<Vec<u8>, DataError> {
    DataFile::open(path)?.payload(
        RECORDS_PER_BATCH * RECORD_BYTES,
        &format!("a CIFAR-10 batch ({RECORDS_PER_BATCH} records of {RECORD_BYTES} bytes)"),
    )
}

/// Parses concatenated CIFAR-10 binary records (any number of them; [`load`] also checks that
/// each batch file holds [`RECORDS_PER_BATCH`]).
pub fn parse_records(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<Label>), DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD_BYTES}-byte records (truncated or corrupt)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut pixels = Vec::with_capacity(n * (RECORD_BYTES - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if record[0] >= 10 {
            return Err(DataError::format(
                path,
                format!("record {i} has label {}, not a class 0-9", record[0]),
            ));
        }
        labels.push(record[0] as Label);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok((pixels, labels))
}
