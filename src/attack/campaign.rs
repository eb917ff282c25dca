//! Attacks over a whole data set in batches: the unit that `anu attack`, `anu reproduce`
//! and `anu robustness` run.

use std::time::Instant;

use burn::prelude::*;

use super::{AttackSpec, AttackedModel, Execution, Goal, Observer, Recheck, run};
use crate::data::{Dataset, Label, labels_tensor};
use crate::error::{Error, Result};
use crate::models::Classifier;

/// Images to attack and, for a targeted attack, one target label per image.
#[derive(Clone, Debug)]
pub struct AttackSet {
    /// The images and their true labels.
    pub data: Dataset,
    /// Target labels (targeted attacks only), one per image.
    pub targets: Option<Vec<Label>>,
}

impl AttackSet {
    /// Untargeted attacks on every image.
    pub fn untargeted(data: Dataset) -> Self {
        Self { data, targets: None }
    }

    /// Every image paired with each of the other classes in turn (9 attacks per image on a
    /// 10-class set), image by image, as the paper's Table 2.
    pub fn all_other_targets(data: &Dataset) -> Self {
        let classes = data.num_classes as Label;
        let mut indices = Vec::new();
        let mut targets = Vec::new();
        for (i, &y) in data.labels.iter().enumerate() {
            for t in (0..classes).filter(|&t| t != y) {
                indices.push(i);
                targets.push(t);
            }
        }
        Self {
            data: data.select(&indices),
            targets: Some(targets),
        }
    }

    /// `per_image` distinct random classes other than the true one for every image, drawn from
    /// `seed` (the paper's ImageNet protocol: 20), image by image.
    pub fn random_targets(data: &Dataset, per_image: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        use rand::seq::IndexedRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut indices = Vec::new();
        let mut targets = Vec::new();
        for (i, &y) in data.labels.iter().enumerate() {
            let others: Vec<Label> = (0..data.num_classes as Label).filter(|&t| t != y).collect();
            for &t in others.choose_multiple(&mut rng, per_image.min(others.len())) {
                indices.push(i);
                targets.push(t);
            }
        }
        Self {
            data: data.select(&indices),
            targets: Some(targets),
        }
    }

    /// The targeted attacks of a data set's protocol (Table 2).
    pub fn targeted(data: &Dataset, protocol: crate::data::TargetProtocol) -> Self {
        match protocol {
            crate::data::TargetProtocol::AllOthers => Self::all_other_targets(data),
            crate::data::TargetProtocol::Random { per_image, seed } => Self::random_targets(data, per_image, seed),
        }
    }

    /// Whether the attacks are targeted.
    pub fn is_targeted(&self) -> bool {
        self.targets.is_some()
    }

    /// Number of attacks.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there is nothing to attack.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The attacks `range` of this set, in order (one shard of it).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        let indices: Vec<usize> = range.clone().collect();
        Self {
            data: self.data.select(&indices),
            targets: self.targets.as_ref().map(|t| t[range].to_vec()),
        }
    }

    /// SHA-256 of what the set attacks, in one fixed byte layout (files written by earlier
    /// builds stay valid): image shape, number of classes and of attacks as little-endian u64,
    /// the pixels, then the labels and the targets as little-endian u16. The pixels are hashed
    /// where they lie (a targeted ImageNet set holds 600 MB of them), not copied.
    pub fn sha256(&self) -> String {
        use std::io::Read;
        let data = &self.data;
        let shape: Vec<u8> = data
            .image_shape
            .iter()
            .chain([&data.num_classes, &self.len()])
            .flat_map(|d| (*d as u64).to_le_bytes())
            .collect();
        let labels: Vec<u8> = data
            .labels
            .iter()
            .chain(self.targets.iter().flatten())
            .flat_map(|l| l.to_le_bytes())
            .collect();
        let bytes = shape.as_slice().chain(data.pixels.as_slice()).chain(labels.as_slice());
        crate::fsutil::sha256_hex_of(bytes).expect("reading from memory cannot fail")
    }
}

/// Results of a campaign, one entry per attack.
#[derive(Clone, Debug)]
pub struct CampaignResult {
    /// ||x' - x||_2 per attack (0 for already misclassified, infinity for failures).
    pub norms: Vec<f32>,
    /// Whether each attack succeeded.
    pub success: Vec<bool>,
    /// Adversarial images as [0,1] values, flattened image after image, when kept.
    pub adversarials: Option<Vec<f32>>,
    /// Wall time of the attack loops alone, in seconds (after the device has synchronised),
    /// without the time of observers that read results back.
    pub seconds: f64,
    /// The full-f32 check of the successes, when the passes ran in a reduced precision.
    pub recheck: Recheck,
}

impl CampaignResult {
    /// Fraction of successful attacks.
    pub fn success_rate(&self) -> f64 {
        self.success.iter().filter(|&&s| s).count() as f64 / self.success.len().max(1) as f64
    }
}

/// Attacks `set` with `spec` in batches on `device`; `observer` sees every iteration of every
/// batch. Keeps the adversarial images when `keep_adversarials` is set.
pub fn attack_all(
    model: &Classifier,
    set: &AttackSet,
    spec: &AttackSpec,
    execution: &Execution,
    device: &Device,
    keep_adversarials: bool,
    observer: &mut impl Observer,
) -> Result<CampaignResult> {
    let nothing_done = CampaignResult {
        norms: Vec::new(),
        success: Vec::new(),
        adversarials: keep_adversarials.then(Vec::new),
        seconds: 0.0,
        recheck: Recheck::default(),
    };
    let campaign = Campaign {
        model,
        set,
        spec,
        execution,
        device,
    };
    attack_remaining(&campaign, nothing_done, observer, &mut |_| {})
}

/// What a campaign attacks, with what and how: the model, the set, the attack, the batch
/// settings and the device.
#[derive(Clone, Copy)]
pub struct Campaign<'a> {
    /// The attacked model.
    pub model: &'a Classifier,
    /// The attacks.
    pub set: &'a AttackSet,
    /// The attack's settings.
    pub spec: &'a AttackSpec,
    /// Batch size, pass chunking and precision.
    pub execution: &'a Execution,
    /// Where the tensors live.
    pub device: &'a Device,
}

/// Continues the campaign of [`attack_all`] (described by `campaign`) whose first `done.norms.len()` attacks an earlier
/// run already made (their results in `done`; adversarial images are kept when
/// `done.adversarials` is there), and calls `after_batch` with the results so far after every
/// batch, e.g. to save them. Each batch is attacked as the uninterrupted run would: the
/// attacks are independent of each other. A batch in which the model gave a NaN or infinite
/// logit or gradient stops the campaign with [`Error::NonFinite`], before its results are
/// added or saved.
pub fn attack_remaining(
    campaign: &Campaign<'_>,
    done: CampaignResult,
    observer: &mut impl Observer,
    after_batch: &mut dyn FnMut(&CampaignResult),
) -> Result<CampaignResult> {
    let Campaign {
        model,
        set,
        spec,
        execution,
        device,
    } = *campaign;
    let prepared = AttackedModel::with_precision(model, device, execution.precision());
    let ad_device = device.clone().autodiff();
    let batch_size = execution.batch_size();
    let mut so_far = done;
    let mut start = so_far.norms.len();
    assert!(start <= set.len(), "more attacks done than the campaign has");
    while start < set.len() {
        let end = (start + batch_size).min(set.len());
        let (images, labels) = set.data.batch(start, end, &ad_device);
        let goal = match &set.targets {
            Some(t) => Goal::Targeted(labels_tensor(&t[start..end], &ad_device)),
            None => Goal::Untargeted(labels),
        };
        let _ = device.sync();
        let t0 = Instant::now();
        let result = run(&prepared, images, &goal, spec, execution.pass_chunk(), observer)?;
        let _ = device.sync();
        if result.non_finite > 0 {
            return Err(Error::NonFinite {
                what: "logits or input gradients",
                images: result.non_finite,
                of: end - start,
            });
        }
        so_far.seconds += t0.elapsed().as_secs_f64() - result.observer_seconds;
        so_far.norms.extend(result.norms);
        so_far.success.extend(result.success);
        so_far.recheck = so_far.recheck + result.recheck;
        if let Some(all) = so_far.adversarials.as_mut() {
            all.extend(result.adversarials.into_data().iter::<f32>());
        }
        after_batch(&so_far);
        start = end;
    }
    Ok(so_far)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(labels: Vec<Label>, classes: usize) -> Dataset {
        let n = labels.len();
        Dataset::new(vec![0; n * 4], labels, [1, 2, 2], classes).unwrap()
    }

    #[test]
    fn random_targets_are_distinct_other_classes_drawn_from_the_seed() {
        let d = data(vec![0, 5, 999], 1000);
        let set = AttackSet::random_targets(&d, 20, 0);
        assert_eq!(set.len(), 60);
        let targets = set.targets.as_ref().unwrap();
        for (i, &y) in d.labels.iter().enumerate() {
            let mine = &targets[i * 20..(i + 1) * 20];
            assert!(mine.iter().all(|&t| t != y && (t as usize) < 1000));
            let mut unique = mine.to_vec();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 20, "targets of image {i} repeat");
            assert!(set.data.labels[i * 20..(i + 1) * 20].iter().all(|&l| l == y));
        }
        assert_eq!(
            AttackSet::random_targets(&d, 20, 0).targets,
            set.targets,
            "same seed, same draw"
        );
        assert_ne!(AttackSet::random_targets(&d, 20, 1).targets, set.targets);
        // With fewer classes than asked for, every other class once.
        let small = AttackSet::random_targets(&data(vec![2], 10), 20, 0);
        assert_eq!(small.len(), 9);
    }

    #[test]
    fn all_other_targets_pair_each_image_with_every_other_class() {
        let set = AttackSet::all_other_targets(&data(vec![3, 0], 10));
        assert_eq!(set.len(), 18);
        assert_eq!(&set.targets.as_ref().unwrap()[..9], &[0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert!(set.is_targeted());
    }
}
