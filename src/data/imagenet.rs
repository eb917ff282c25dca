//! A folder of labelled ImageNet JPEGs (`images.tsv`: file, class index, ...; the images in
//! `images/`), decoded, resized and centre-cropped as EfficientNet-Lite0's reference evaluation
//! does (torchvision `Resize(224, bicubic)` then `CenterCrop(224)`): shorter side to 224
//! pixels, centre 224x224 crop, RGB. Greyscale images are expanded to RGB.

use std::path::Path;

use image::imageops::FilterType;

use super::{DataError, Dataset, Label, Split};

/// Side of the square crop.
pub const CROP: usize = 224;
/// Length of the shorter side after resizing, before the crop.
pub const RESIZE: usize = 224;
/// Number of ImageNet classes.
pub const CLASSES: usize = 1000;
/// Most images an index may list (the ImageNet validation set has 50000).
pub const MAX_IMAGES: usize = 50_000;
/// Largest `images.tsv` read (a line per image; 50000 lines take about 4 MB).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// One line of `images.tsv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// File name below `images/`.
    pub file: String,
    /// Class index.
    pub label: Label,
    /// Line of `images.tsv` (1-based) that lists the image.
    pub line: usize,
}

/// Parses `images.tsv`: a header line, then `file<TAB>class index[<TAB>...]` per image.
pub fn parse_index(path: &Path, text: &str) -> Result<Vec<Entry>, DataError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let columns: Vec<&str> = header.split('\t').collect();
    if columns.len() < 2 || columns[0] != "file" || columns[1] != "index" {
        return Err(DataError::format(
            path,
            format!("the first line must name the columns `file<TAB>index...`, got `{header}`"),
        ));
    }
    let mut entries = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (file, index) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
        let label: usize = index
            .trim()
            .parse()
            .map_err(|_| DataError::format(path, format!("line {}: class index `{index}` is not a number", i + 2)))?;
        if label >= CLASSES {
            return Err(DataError::format(
                path,
                format!("line {}: class index {label} is not below {CLASSES}", i + 2),
            ));
        }
        if file.is_empty() || file.contains('/') || file.contains('\\') {
            return Err(DataError::format(
                path,
                format!("line {}: `{file}` is not a file name", i + 2),
            ));
        }
        if entries.len() == MAX_IMAGES {
            return Err(DataError::format(
                path,
                format!("line {}: more than {MAX_IMAGES} images are listed", i + 2),
            ));
        }
        entries.push(Entry {
            file: file.to_string(),
            label: label as Label,
            line: i + 2,
        });
    }
    if entries.is_empty() {
        return Err(DataError::format(path, "lists no images"));
    }
    Ok(entries)
}

/// Most by which an image's longer side may exceed its shorter one: resizing the shorter side
/// to [`RESIZE`] makes the longer one at most this many times [`RESIZE`] pixels.
pub const MAX_ASPECT: u32 = 16;

/// Decodes one image (a regular file) and returns its RESIZE/CROP-preprocessed pixels,
/// channel-major RGB. A JPEG that does not end in its end-of-image marker (cut short: the
/// decoder would fill the missing part with grey and say nothing) and an image whose sides
/// differ more than [`MAX_ASPECT`]-fold (its resized longer side would be unbounded) are
/// refused.
pub fn load_image(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut file, len) = crate::fsutil::open_regular(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let is_jpeg = file.read_exact(&mut magic).is_ok() && magic == [0xff, 0xd8];
    if is_jpeg {
        let tail_len = len.min(4096);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| DataError::io(path, e))?;
        if !ends_with_end_of_image(&tail) {
            return Err(DataError::format(
                path,
                "the JPEG does not end with its end-of-image marker: the file is cut short (truncated?)",
            ));
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| DataError::io(path, e))?;
    let reader = image::ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let decoded = reader
        .decode()
        .map_err(|e| DataError::format(path, format!("cannot decode the image: {e}")))?;
    let (w, h) = (decoded.width(), decoded.height());
    if w.max(h) > w.min(h).saturating_mul(MAX_ASPECT) {
        return Err(DataError::format(
            path,
            format!(
                "the image is {w}x{h} pixels: its sides differ more than {MAX_ASPECT}-fold, too far from the square crop of {CROP}x{CROP} taken from it"
            ),
        ));
    }
    Ok(preprocess(&decoded.to_rgb8()))
}

/// Whether the last bytes of a JPEG file end with the end-of-image marker `FF D9` (trailing
/// zero bytes, which some writers pad with, allowed).
fn ends_with_end_of_image(tail: &[u8]) -> bool {
    let end = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    tail[..end].ends_with(&[0xff, 0xd9])
}

/// Resizes the shorter side to [`RESIZE`] (bicubic; the longer side to the truncated
/// proportional length, as torchvision), takes the centre [`CROP`] square (offsets rounded half
/// to even, as torchvision) and returns it channel-major (R plane, G plane, B plane).
pub fn preprocess(rgb: &image::RgbImage) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let (short, long) = (w.min(h) as u64, w.max(h) as u64);
    let long_resized = ((RESIZE as u64 * long / short) as u32).max(CROP as u32);
    let (nw, nh) = if w <= h {
        (RESIZE as u32, long_resized)
    } else {
        (long_resized, RESIZE as u32)
    };
    let resized = image::imageops::resize(rgb, nw, nh, FilterType::CatmullRom);
    let offset = |n: u32| ((n - CROP as u32) as f64 / 2.0).round_ties_even() as u32;
    let (x0, y0) = (offset(nw), offset(nh));
    let mut out = vec![0u8; 3 * CROP * CROP];
    for y in 0..CROP {
        for x in 0..CROP {
            let p = resized.get_pixel(x0 + x as u32, y0 + y as u32);
            for c in 0..3 {
                out[c * CROP * CROP + y * CROP + x] = p[c];
            }
        }
    }
    out
}

/// Loads the images listed in `dir/images.tsv` (the evaluation images; there is no training
/// split).
pub fn load(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    if split == Split::Train {
        return Err(DataError::Missing(format!(
            "{}: an ImageNet sample folder holds evaluation images only, no training split",
            dir.display()
        )));
    }
    let index = dir.join("images.tsv");
    if !index.is_file() {
        return Err(DataError::Missing(format!(
            "{} not found (set --data-dir or ANU_DATA to the folder that holds imagenet-sample/)",
            index.display()
        )));
    }
    let bytes = crate::fsutil::read_regular(&index, MAX_INDEX_BYTES).map_err(|e| DataError::io(&index, e))?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::format(&index, "is not UTF-8 text"))?;
    let entries = parse_index(&index, &text)?;
    // Every listed file is looked at before the slow decoding starts.
    for entry in &entries {
        check_listed_file(&index, dir, entry)?;
    }
    let mut pixels = Vec::with_capacity(entries.len() * 3 * CROP * CROP);
    for entry in &entries {
        let image = load_image(&dir.join("images").join(&entry.file)).map_err(|e| listed(&index, entry, e))?;
        pixels.extend(image);
    }
    let labels = entries.iter().map(|e| e.label).collect();
    Dataset::new(pixels, labels, [3, CROP, CROP], CLASSES).map_err(|e| DataError::format(&index, e.to_string()))
}

/// An error about the image listed by `entry`, naming the index file and the line.
fn listed(index: &Path, entry: &Entry, error: DataError) -> DataError {
    DataError::format(index, format!("line {}: {error}", entry.line))
}

/// Refuses a listed image that is missing or not a regular file, naming the index line.
fn check_listed_file(index: &Path, dir: &Path, entry: &Entry) -> Result<(), DataError> {
    let path = dir.join("images").join(&entry.file);
    let problem = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(_) => "not a regular file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
        Err(e) => format!("cannot read: {e}"),
    };
    Err(DataError::format(
        index,
        format!("line {}: {}: {problem}", entry.line, path.display()),
    ))
}

/// Class names from `dir/imagenet_classes.tsv` (`index<TAB>wnid<TAB>name`), when it is there
/// and names every class.
pub fn class_names(dir: &Path) -> Option<Vec<String>> {
    let text = super::read_optional_text(&dir.join("imagenet_classes.tsv"))?;
    let names: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(2))
        .map(|n| n.trim().to_string())
        .collect();
    (names.len() == CLASSES).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_checked_line_by_line() {
        let p = Path::new("images.tsv");
        let ok = parse_index(p, "file\tindex\twnid\na.JPEG\t3\tn1\nb.JPEG\t999\tn2\n").unwrap();
        assert_eq!(
            ok[1],
            Entry {
                file: "b.JPEG".into(),
                label: 999,
                line: 3,
            }
        );
        for (bad, why) in [
            ("name\tclass\na.JPEG\t1\n", "first line"),
            ("file\tindex\na.JPEG\tx\n", "line 2"),
            ("file\tindex\na.JPEG\t1000\n", "not below 1000"),
            ("file\tindex\n../a.JPEG\t1\n", "not a file name"),
            ("file\tindex\n", "no images"),
        ] {
            let err = parse_index(p, bad).unwrap_err().to_string();
            assert!(err.contains("images.tsv") && err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn preprocessing_resizes_the_shorter_side_and_crops_the_centre() {
        // 512x300: shorter side 300 -> 224, so 382x224, then the centre 224x224.
        let img = image::RgbImage::from_fn(512, 300, |x, y| image::Rgb([(x / 2) as u8, (y / 2) as u8, 7]));
        let out = preprocess(&img);
        assert_eq!(out.len(), 3 * CROP * CROP);
        assert!(
            out[2 * CROP * CROP..].iter().all(|&b| b == 7),
            "a constant channel stays constant"
        );
        // The red channel grows left to right, the green one top to bottom.
        assert!(out[CROP - 1] > out[0]);
        let green = &out[CROP * CROP..2 * CROP * CROP];
        assert!(green[(CROP - 1) * CROP] > green[0]);
        // The centre pixel of the crop is near the centre of the image: x = 256 -> red 128,
        // y = 150 -> green 75.
        let centre = (CROP / 2) * CROP + CROP / 2;
        assert!((out[centre] as i32 - 128).abs() <= 2, "{}", out[centre]);
        assert!((green[centre] as i32 - 75).abs() <= 2, "{}", green[centre]);
    }
}
