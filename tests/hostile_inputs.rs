//! Loaders facing hostile files (no data folder): small valid MNIST, CIFAR-10 and safetensors
//! files are made in temporary folders, then truncated, bit-flipped, given edited headers or
//! trailing data, from seeded generators. Loading must return a result (a data set or an error
//! naming the file), never panic, never hang, and never hold more memory than the declared
//! content justifies: headers declaring huge sizes, gzip bombs, `/dev/zero` and FIFOs are
//! refused at once. Memory is measured by a counting allocator, per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anu::data::{self, DatasetName, Split, cifar10, mnist};
use anu::models::{Architecture, Classifier, weights};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---- Memory accounting ----

/// The system allocator, counting the bytes each thread holds and the most it has held.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn allocated(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn freed(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            allocated(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            allocated(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        freed(layout.size());
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            // Both blocks may exist for a moment while the contents are copied.
            allocated(new_size);
            freed(layout.size());
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most memory this thread held meanwhile, beyond
/// what it held before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let result = f();
    (result, PEAK.with(Cell::get).saturating_sub(start))
}

const MIB: usize = 1 << 20;

// ---- Files ----

/// An IDX3 image file: the header, then `pixels`.
fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        bytes.extend(v.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    bytes
}

/// An IDX1 label file: the header, then `labels`.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend((labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

/// `bytes` as one gzip member.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A gzip member holding `head` then `zeros` zero bytes, compressed piece by piece (the zeros
/// are never held whole).
fn gzip_with_zeros(head: &[u8], zeros: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(head).unwrap();
    let chunk = vec![0u8; MIB];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        enc.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    enc.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// `n` MNIST-shaped test images with their labels, from `seed`.
fn mnist_parts(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let pixels = (0..n * 784).map(|_| rng.random()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..10)).collect();
    (pixels, labels)
}

const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Writes the MNIST test split into `dir` (gzip-compressed when `gz`).
fn write_mnist(dir: &Path, images: &[u8], labels: &[u8], gz: bool) {
    for name in [TEST_IMAGES, TEST_LABELS] {
        let _ = std::fs::remove_file(dir.join(name));
        let _ = std::fs::remove_file(dir.join(format!("{name}.gz")));
    }
    if gz {
        write(&dir.join(format!("{TEST_IMAGES}.gz")), &gzip(images));
        write(&dir.join(format!("{TEST_LABELS}.gz")), &gzip(labels));
    } else {
        write(&dir.join(TEST_IMAGES), images);
        write(&dir.join(TEST_LABELS), labels);
    }
}

/// A CIFAR-10 batch of `records` records, from `seed`.
fn cifar_batch(records: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bytes = Vec::with_capacity(records * cifar10::RECORD_BYTES);
    for i in 0..records {
        bytes.push((i % 10) as u8);
        let shade: u8 = rng.random();
        bytes.extend((0..3072).map(|j| shade.wrapping_add((j / 97) as u8)));
    }
    bytes
}

/// Makes a FIFO at `path`; false where `mkfifo` is not available.
fn mkfifo(path: &Path) -> bool {
    match std::process::Command::new("mkfifo").arg(path).status() {
        Ok(status) if status.success() => true,
        other => {
            eprintln!("skipped: mkfifo is not available here ({other:?})");
            false
        }
    }
}

/// Runs `f` on another thread and returns its result, failing the test if it takes longer
/// than `secs` (a loader that blocks on a FIFO would never return).
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("no answer within {secs} s: the loader hangs"))
}

// ---- Mutations ----

/// Header fields worth trying: zero, small, off by one, the real limits, and huge values.
const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    27,
    28,
    29,
    10_000,
    10_001,
    60_001,
    32_768,
    0x7fff_ffff,
    u32::MAX,
];

/// `bytes` changed in one of several hostile ways, chosen by `rng`: cut short, bits flipped, a
/// 4-byte header field replaced (for `header_fields` offsets), or data appended.
fn mutate(bytes: &[u8], header_fields: &[usize], rng: &mut StdRng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.random_range(0..4) {
        0 => out.truncate(rng.random_range(0..bytes.len())),
        1 => {
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
        }
        2 => {
            let at = header_fields[rng.random_range(0..header_fields.len())];
            let value = match rng.random_bool(0.7) {
                true => INTERESTING[rng.random_range(0..INTERESTING.len())],
                false => rng.random(),
            };
            out[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        _ => out.extend((0..rng.random_range(1..5000)).map(|_| rng.random::<u8>())),
    }
    out
}

// ---- MNIST ----

#[test]
fn valid_mnist_files_load_plain_gzipped_and_as_several_gzip_members() {
    let dir = tempfile::tempdir().unwrap();
    let (pixels, labels) = mnist_parts(20, 1);
    let (images, label_file) = (idx_images(20, 28, 28, &pixels), idx_labels(&labels));
    write_mnist(dir.path(), &images, &label_file, false);
    let plain = mnist::load(dir.path(), Split::Test).unwrap();
    assert_eq!((plain.len(), plain.image_shape), (20, [1, 28, 28]));
    assert_eq!(plain.pixels, pixels);

    write_mnist(dir.path(), &images, &label_file, true);
    assert_eq!(mnist::load(dir.path(), Split::Test).unwrap().pixels, pixels);

    // `cat a.gz b.gz`, cut inside the header and inside the pixels.
    for cut in [7, 5000] {
        let mut members = gzip(&images[..cut]);
        members.extend(gzip(&images[cut..]));
        write(&dir.path().join(format!("{TEST_IMAGES}.gz")), &members);
        let loaded = mnist::load(dir.path(), Split::Test).unwrap();
        assert_eq!((loaded.pixels.as_slice(), loaded.labels.len()), (pixels.as_slice(), 20));
    }
}

#[test]
fn a_header_declaring_huge_images_fails_at_once_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // A header consistent with four 32768x32768 images, then 16 MiB of zeros that would
    // inflate without end: only the header may be read.
    write(
        &dir.path().join(format!("{TEST_IMAGES}.gz")),
        &gzip_with_zeros(&idx_images(4, 32768, 32768, &[]), 16 * MIB),
    );
    write(
        &dir.path().join(format!("{TEST_LABELS}.gz")),
        &gzip(&idx_labels(&[1; 4])),
    );
    let start = Instant::now();
    let (result, peak) = peak_during(|| mnist::load(dir.path(), Split::Test));
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(TEST_IMAGES) && err.contains("32768x32768") && err.contains("28x28"),
        "{err}"
    );
    assert!(peak < MIB, "{peak} bytes held to refuse a header");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());

    // More images than the split holds, and more labels than images.
    for (n, n_labels, why) in [
        (10_001, 10_001, "from 1 to 10000"),
        (0, 0, "from 1 to 10000"),
        (3, 5, "5 labels but 3 images"),
    ] {
        write(
            &dir.path().join(format!("{TEST_IMAGES}.gz")),
            &gzip(&idx_images(n, 28, 28, &[])),
        );
        write(
            &dir.path().join(format!("{TEST_LABELS}.gz")),
            &gzip(&idx_labels(&vec![1; n_labels])),
        );
        let (result, peak) = peak_during(|| mnist::load(dir.path(), Split::Test));
        let err = result.unwrap_err().to_string();
        assert!(err.contains(why), "{n} images, {n_labels} labels: {err}");
        assert!(peak < MIB, "{peak} bytes held to refuse a header");
    }
}

#[test]
fn a_gzip_bomb_is_inflated_no_further_than_its_header_declares() {
    let dir = tempfile::tempdir().unwrap();
    let (pixels, labels) = mnist_parts(100, 2);
    // 100 valid images followed by 256 MiB of zeros (a file of about 250 KiB).
    let bomb = gzip_with_zeros(&idx_images(100, 28, 28, &pixels), 256 * MIB);
    write(&dir.path().join(format!("{TEST_IMAGES}.gz")), &bomb);
    write(
        &dir.path().join(format!("{TEST_LABELS}.gz")),
        &gzip(&idx_labels(&labels)),
    );
    let start = Instant::now();
    let (result, peak) = peak_during(|| mnist::load(dir.path(), Split::Test));
    let err = result.unwrap_err().to_string();
    assert!(err.contains(TEST_IMAGES) && err.contains("trailing data"), "{err}");
    assert!(peak < 2 * MIB, "{peak} bytes held for 78400 bytes of pixels");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
}

#[test]
fn data_after_the_declared_content_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (pixels, labels) = mnist_parts(5, 3);
    let images = idx_images(5, 28, 28, &pixels);
    let mut longer = images.clone();
    longer.push(0);
    write_mnist(dir.path(), &longer, &idx_labels(&labels), false);
    let err = mnist::load(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(err.contains(TEST_IMAGES) && err.contains("trailing data"), "{err}");

    // Garbage (not a gzip member) after a valid gzip stream.
    let mut gz = gzip(&images);
    gz.extend_from_slice(b"garbage after the stream");
    write_mnist(dir.path(), &images, &idx_labels(&labels), true);
    write(&dir.path().join(format!("{TEST_IMAGES}.gz")), &gz);
    let err = mnist::load(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(err.contains(&format!("{TEST_IMAGES}.gz")), "{err}");

    // A second, valid member that holds more data than the header declares.
    let mut gz = gzip(&images);
    gz.extend(gzip(&[7; 10]));
    write(&dir.path().join(format!("{TEST_IMAGES}.gz")), &gz);
    let err = mnist::load(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(err.contains(TEST_IMAGES) && err.contains("trailing data"), "{err}");
}

#[test]
fn random_damage_to_mnist_files_gives_results_or_errors_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (pixels, labels) = mnist_parts(20, 4);
    let (images, label_file) = (idx_images(20, 28, 28, &pixels), idx_labels(&labels));
    let mut rng = StdRng::seed_from_u64(2024);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..400 {
        let damage_images = rng.random_bool(0.6);
        let gz = rng.random_bool(0.5);
        // Damage the file's content (then compress it), or the compressed bytes themselves.
        let damage_compressed = gz && rng.random_bool(0.4);
        let (mut img, mut lbl) = (images.clone(), label_file.clone());
        if !damage_compressed {
            match damage_images {
                true => img = mutate(&img, &[0, 4, 8, 12], &mut rng),
                false => lbl = mutate(&lbl, &[0, 4], &mut rng),
            }
        }
        write_mnist(dir.path(), &img, &lbl, gz);
        if damage_compressed {
            let name = format!("{}.gz", if damage_images { TEST_IMAGES } else { TEST_LABELS });
            let compressed = std::fs::read(dir.path().join(&name)).unwrap();
            write(&dir.path().join(&name), &mutate(&compressed, &[0, 4], &mut rng));
        }
        let (result, peak) = peak_during(|| mnist::load(dir.path(), Split::Test));
        // At most the 10000 images a test split may declare, and a little besides.
        assert!(peak < 16 * MIB, "round {round}: {peak} bytes held");
        match result {
            Ok(set) => {
                assert!(set.len() <= 10_000 && set.image_shape == [1, 28, 28], "round {round}");
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("t10k-"), "round {round}: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 200 && ok > 0, "{ok} loaded, {refused} refused");
}

// ---- CIFAR-10 ----

#[test]
fn a_cifar_batch_must_hold_exactly_10000_records() {
    let dir = tempfile::tempdir().unwrap();
    let full = cifar_batch(10_000, 5);
    let root = dir.path();
    let folder = root.join(DatasetName::Cifar10.info().folder);
    std::fs::create_dir_all(&folder).unwrap();
    let batch = folder.join("test_batch.bin");
    write(&batch, &full);
    let set = data::load(DatasetName::Cifar10, root, Split::Test).unwrap();
    assert_eq!((set.len(), set.labels[13]), (10_000, 3));

    for records in [5000, 9999, 10_001] {
        let bytes = cifar_batch(records, 6);
        write(&batch, &bytes);
        let err = data::load(DatasetName::Cifar10, root, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("10000 records"),
            "{records}: {err}"
        );
        // Compressed, as one member or as two.
        std::fs::remove_file(&batch).unwrap();
        let mut two = gzip(&bytes[..1000]);
        two.extend(gzip(&bytes[1000..]));
        for gz in [gzip(&bytes), two] {
            write(&folder.join("test_batch.bin.gz"), &gz);
            let err = data::load(DatasetName::Cifar10, root, Split::Test)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("test_batch.bin.gz") && err.contains("10000 records"),
                "{records}: {err}"
            );
        }
        std::fs::remove_file(folder.join("test_batch.bin.gz")).unwrap();
    }
}

#[test]
fn random_damage_to_a_cifar_batch_gives_results_or_errors_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(DatasetName::Cifar10.info().folder);
    std::fs::create_dir_all(&folder).unwrap();
    let full = cifar_batch(10_000, 7);
    let compressed = gzip(&full);
    let mut rng = StdRng::seed_from_u64(99);
    let mut refused = 0;
    for round in 0..24 {
        let gz = round % 2 == 0;
        let _ = std::fs::remove_file(folder.join("test_batch.bin"));
        let _ = std::fs::remove_file(folder.join("test_batch.bin.gz"));
        match gz {
            true => write(
                &folder.join("test_batch.bin.gz"),
                &mutate(&compressed, &[0, 4], &mut rng),
            ),
            false => write(&folder.join("test_batch.bin"), &mutate(&full, &[0, 4], &mut rng)),
        }
        let (result, peak) = peak_during(|| data::load(DatasetName::Cifar10, dir.path(), Split::Test));
        // The batch's bytes, its pixels and labels, and the data set: about three batches.
        assert!(peak < 3 * full.len() + 4 * MIB, "round {round}: {peak} bytes held");
        match result {
            Ok(set) => assert_eq!(set.len(), 10_000, "round {round}"),
            Err(e) => {
                assert!(e.to_string().contains("test_batch.bin"), "round {round}: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 10, "{refused} refused");
}

// ---- Weights ----

/// A freshly initialised MNIST model saved in `dir`; returns its path and bytes.
fn saved_model(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("m.safetensors");
    weights::save(
        &Classifier::new(Architecture::MnistCnn, &Device::flex()),
        Architecture::MnistCnn,
        &path,
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// `bytes` (a safetensors file) with one number of its JSON header replaced by `value`.
fn edit_header_number(bytes: &[u8], rng: &mut StdRng, value: u64) -> Vec<u8> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    let digits: Vec<(usize, usize)> = header
        .char_indices()
        .filter(|(i, c)| c.is_ascii_digit() && (*i == 0 || !header.as_bytes()[i - 1].is_ascii_digit()))
        .map(|(i, _)| (i, header[i..].find(|c: char| !c.is_ascii_digit()).unwrap_or(0) + i))
        .collect();
    let (from, to) = digits[rng.random_range(0..digits.len())];
    let new_header = format!("{}{value}{}", &header[..from], &header[to..]);
    let mut out = (new_header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new_header.as_bytes());
    out.extend_from_slice(&bytes[8 + header_len..]);
    out
}

#[test]
fn weight_headers_declaring_huge_sizes_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved_model(dir.path());
    let device = Device::flex();
    let path = dir.path().join("bad.safetensors");
    let mut huge_length = bytes.clone();
    huge_length[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let header = format!(
        "{{\"__metadata__\":{{\"anu.architecture\":\"mnist-cnn\"}},\"w\":{{\"dtype\":\"F32\",\"shape\":[250000000000],\"data_offsets\":[0,{}]}}}}",
        1_000_000_000_000u64
    );
    let mut huge_tensor = (header.len() as u64).to_le_bytes().to_vec();
    huge_tensor.extend_from_slice(header.as_bytes());
    huge_tensor.extend_from_slice(&[0; 64]);
    for (bytes, why) in [(huge_length, "header length"), (huge_tensor, "1000000000000 bytes")] {
        write(&path, &bytes);
        let (result, peak) = peak_during(|| weights::load(&path, &device));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("bad.safetensors") && err.contains(why), "{err}");
        assert!(peak < MIB, "{peak} bytes held");
    }

    // A sparse file larger than any weight file is refused by its size alone.
    let big = dir.path().join("big.safetensors");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(weights::MAX_WEIGHT_FILE_BYTES + 1).unwrap();
    let (result, peak) = peak_during(|| weights::load(&big, &device));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("big.safetensors") && err.contains("bytes"), "{err}");
    assert!(peak < MIB, "{peak} bytes held");
}

#[test]
fn random_damage_to_a_weight_file_gives_a_model_or_an_error_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved_model(dir.path());
    let device = Device::flex();
    let path = dir.path().join("damaged.safetensors");
    let mut rng = StdRng::seed_from_u64(7);
    let mut refused = 0;
    for round in 0..300 {
        let damaged = match rng.random_range(0..3) {
            0 => {
                let value = match rng.random_bool(0.5) {
                    true => rng.random_range(0..100_000),
                    false => rng.random(),
                };
                edit_header_number(&bytes, &mut rng, value)
            }
            1 => {
                let mut b = bytes.clone();
                b[..8].copy_from_slice(&rng.random::<u64>().to_le_bytes()[..8]);
                if rng.random_bool(0.5) {
                    b[..8].copy_from_slice(&(rng.random_range(0..bytes.len() as u64)).to_le_bytes());
                }
                b
            }
            _ => mutate(&bytes, &[0, 4], &mut rng),
        };
        write(&path, &damaged);
        let (result, peak) = peak_during(|| weights::load(&path, &device));
        // The file, the model and their copies while loading.
        assert!(peak < 6 * bytes.len() + 4 * MIB, "round {round}: {peak} bytes held");
        if let Err(e) = result {
            assert!(e.to_string().contains("damaged.safetensors"), "round {round}: {e}");
            refused += 1;
        }
    }
    assert!(refused > 150, "{refused} refused");
}

#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_as_weights_and_data() {
    let device = Device::flex();
    for arch in [None, Some(Architecture::MnistCnn)] {
        let err = weights::load_as(Path::new("/dev/zero"), arch, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/zero") && err.contains("not a regular file"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    // A link to a device, under names of both weight formats.
    for name in ["zero.safetensors", "zero.pth"] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = weights::load_as(&link, Some(Architecture::MnistCnn), &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains("not a regular file"), "{err}");
    }
    for name in ["fifo.safetensors", "fifo.pth"] {
        let fifo = dir.path().join(name);
        if !mkfifo(&fifo) {
            return;
        }
        let err = within(20, move || {
            weights::load_as(&fifo, Some(Architecture::MnistCnn), &Device::flex())
                .unwrap_err()
                .to_string()
        });
        assert!(err.contains(name) && err.contains("FIFO"), "{err}");
    }
    // A FIFO, or a link to a device, in place of a data file.
    let mnist_dir = dir.path().join("mnist");
    std::fs::create_dir(&mnist_dir).unwrap();
    let (pixels, labels) = mnist_parts(3, 8);
    write_mnist(&mnist_dir, &idx_images(3, 28, 28, &pixels), &idx_labels(&labels), false);
    std::fs::remove_file(mnist_dir.join(TEST_LABELS)).unwrap();
    assert!(mkfifo(&mnist_dir.join(TEST_LABELS)));
    let folder = mnist_dir.clone();
    let err = within(20, move || mnist::load(&folder, Split::Test).unwrap_err().to_string());
    assert!(err.contains(TEST_LABELS) && err.contains("FIFO"), "{err}");
    std::fs::remove_file(mnist_dir.join(TEST_IMAGES)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", mnist_dir.join(TEST_IMAGES)).unwrap();
    let err = within(20, move || {
        mnist::load(&mnist_dir, Split::Test).unwrap_err().to_string()
    });
    assert!(err.contains(TEST_IMAGES) && err.contains("not a regular file"), "{err}");
}

// ---- ImageNet sample ----

#[test]
fn imagenet_index_lines_with_bad_classes_missing_or_special_files_are_named() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join(DatasetName::ImagenetSample.info().folder);
    let images = folder.join("images");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .save(images.join("ok.png"))
        .unwrap();
    std::fs::create_dir(images.join("folder.png")).unwrap();
    let index = |lines: &str| write(&folder.join("images.tsv"), format!("file\tindex\n{lines}").as_bytes());
    let load = || data::load(DatasetName::ImagenetSample, root.path(), Split::Test);

    index("ok.png\t5\n");
    let set = load().unwrap();
    assert_eq!((set.len(), set.labels[0], set.image_shape), (1, 5, [3, 224, 224]));

    let mut cases = vec![
        ("ok.png\t5\nok.png\t1000\n", "line 3", "not below 1000"),
        ("ok.png\t5\n\nmissing.png\t2\n", "line 4", "missing.png"),
        ("ok.png\t5\nfolder.png\t2\n", "line 3", "not a regular file"),
    ];
    #[cfg(unix)]
    if mkfifo(&images.join("fifo.png")) {
        cases.push(("fifo.png\t1\n", "line 2", "not a regular file"));
    }
    for (lines, line, why) in cases {
        index(lines);
        let err = within(20, {
            let root = root.path().to_path_buf();
            move || {
                data::load(DatasetName::ImagenetSample, &root, Split::Test)
                    .unwrap_err()
                    .to_string()
            }
        });
        assert!(
            err.contains("images.tsv") && err.contains(line) && err.contains(why),
            "{lines:?}: {err}"
        );
    }

    // An image that cannot be decoded is named with its line.
    write(&images.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really");
    index("ok.png\t5\nbroken.png\t3\n");
    let err = load().unwrap_err().to_string();
    assert!(
        err.contains("images.tsv") && err.contains("line 3") && err.contains("broken.png"),
        "{err}"
    );
}

#[test]
fn a_truncated_jpeg_or_an_image_of_extreme_shape_is_named_not_decoded_into_garbage() {
    use anu::data::imagenet::load_image;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let noise = image::RgbImage::from_fn(96, 80, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]));
    let whole = dir.path().join("whole.jpg");
    noise.save_with_format(&whole, image::ImageFormat::Jpeg).unwrap();
    assert_eq!(load_image(&whole).unwrap().len(), 3 * 224 * 224);

    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.jpg") && err.contains("cut short"), "{err}");
    // Zero bytes after the end-of-image marker are padding, not damage.
    let padded = dir.path().join("padded.jpg");
    std::fs::write(&padded, [bytes.as_slice(), &[0; 10]].concat()).unwrap();
    load_image(&padded).unwrap();

    // 1 x 60000: resizing its shorter side to 224 would make the longer one 13 million pixels.
    let thin = dir.path().join("thin.png");
    image::GrayImage::new(1, 60_000)
        .save_with_format(&thin, image::ImageFormat::Png)
        .unwrap();
    let (result, peak) = peak_during(|| load_image(&thin));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("thin.png") && err.contains("1x60000"), "{err}");
    assert!(peak < 64 << 20, "{peak} bytes held");
}

#[test]
fn a_weight_file_that_lacks_a_tensor_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved_model(dir.path());
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let dropped = names.remove(0);
    let kept: Vec<(String, safetensors::tensor::TensorView)> =
        names.iter().map(|n| (n.clone(), file.tensor(n).unwrap())).collect();
    let path = dir.path().join("lacking.safetensors");
    std::fs::write(&path, safetensors::serialize(kept, meta.metadata().clone()).unwrap()).unwrap();
    let err = weights::load(&path, &Device::flex()).unwrap_err().to_string();
    assert!(
        err.contains("lacking.safetensors") && err.contains("lacks 1 tensor") && err.contains(&dropped),
        "{err}"
    );
    assert!(
        !err.contains("Tensor not found: \n") && !err.contains("allow_partial"),
        "{err}"
    );
}
