//! Training-time data augmentation.

use rand::Rng;

use crate::data::{Dataset, DatasetName};

/// Augmentation applied to each training minibatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augmentation {
    /// None.
    None,
    /// Random crop with zero padding 4 and random horizontal flip (CIFAR-10 standard).
    CropFlip,
}

impl Augmentation {
    /// The augmentation of clean training on `dataset`: random crops and flips on CIFAR-10,
    /// none elsewhere.
    pub fn standard(dataset: DatasetName) -> Self {
        match dataset {
            DatasetName::Cifar10 => Augmentation::CropFlip,
            DatasetName::Mnist | DatasetName::ImagenetSample => Augmentation::None,
        }
    }

    /// The augmented batch (a copy).
    pub fn apply(&self, batch: &Dataset, rng: &mut impl Rng) -> Dataset {
        match self {
            Augmentation::None => batch.clone(),
            Augmentation::CropFlip => crop_flip(batch, 4, rng),
        }
    }
}

fn crop_flip(batch: &Dataset, pad: usize, rng: &mut impl Rng) -> Dataset {
    let [c, h, w] = batch.image_shape;
    let len = batch.image_len();
    let mut out = batch.clone();
    for i in 0..batch.len() {
        let dy = rng.random_range(0..=2 * pad) as isize - pad as isize;
        let dx = rng.random_range(0..=2 * pad) as isize - pad as isize;
        let flip = rng.random_bool(0.5);
        let src = &batch.pixels[i * len..(i + 1) * len];
        let dst = &mut out.pixels[i * len..(i + 1) * len];
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let sy = y as isize + dy;
                    let sx0 = x as isize + dx;
                    let sx = if flip { w as isize - 1 - sx0 } else { sx0 };
                    let v = if sy < 0 || sy >= h as isize || sx0 < 0 || sx0 >= w as isize {
                        0
                    } else {
                        src[ch * h * w + sy as usize * w + sx as usize]
                    };
                    dst[ch * h * w + y * w + x] = v;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crop_flip_keeps_shape_and_values() {
        let pixels: Vec<u8> = (0..2 * 3 * 8 * 8).map(|i| (i % 7) as u8 * 30 + 1).collect();
        let data = Dataset::new(pixels, vec![1, 2], [3, 8, 8], 10).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let out = Augmentation::CropFlip.apply(&data, &mut rng);
        assert_eq!(out.pixels.len(), data.pixels.len());
        assert_eq!(out.labels, data.labels);
        assert_ne!(out.pixels, data.pixels);
        // Every output pixel is an input pixel of the same image and channel, or zero padding.
        for i in 0..2 {
            for ch in 0..3 {
                let plane = |d: &Dataset| d.pixels[(i * 3 + ch) * 64..(i * 3 + ch + 1) * 64].to_vec();
                let source = plane(&data);
                assert!(plane(&out).iter().all(|p| *p == 0 || source.contains(p)));
            }
        }
    }
}
