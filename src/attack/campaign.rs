//! Attacks over a whole data set in batches: the unit that `anu attack`, `anu reproduce`
//! and `anu robustness` run.

use std::time::Instant;

use burn::prelude::*;

use super::{AttackConfig, Goal, Trace, prepare_model, run};
use crate::data::{Dataset, labels_tensor};
use crate::models::Classifier;

/// Images to attack and, for a targeted attack, one target label per image.
#[derive(Clone, Debug)]
pub struct AttackSet {
    /// The images and their true labels.
    pub data: Dataset,
    /// Target labels (targeted attacks only), one per image.
    pub targets: Option<Vec<u8>>,
}

impl AttackSet {
    /// Untargeted attacks on every image.
    pub fn untargeted(data: Dataset) -> Self {
        Self { data, targets: None }
    }

    /// Every image paired with each of the other classes in turn (9 attacks per image on a
    /// 10-class set), image by image, as the paper's Table 2.
    pub fn all_other_targets(data: &Dataset) -> Self {
        let classes = data.num_classes as u8;
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

    /// Number of attacks.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there is nothing to attack.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Results of a campaign, one entry per attack.
#[derive(Clone, Debug)]
pub struct CampaignResult {
    /// ||x' - x||_2 per attack (0 for already misclassified, infinity for failures).
    pub norms: Vec<f32>,
    /// Whether each attack succeeded.
    pub success: Vec<bool>,
    /// Adversarial images, flattened like [`Dataset::pixels`], when kept.
    pub adversarials: Option<Vec<f32>>,
    /// Per-iteration trace over all attacks (`[iteration][attack]`), when asked for.
    pub trace: Option<Trace>,
    /// Wall time of the attack loop alone, in seconds (after the device has synchronised).
    pub seconds: f64,
}

/// Attacks `set` in batches of `batch_size` on `device`; `on_step` is called after every
/// iteration of every batch. Keeps the adversarial images when `keep_adversarials` is set.
pub fn attack_all(
    model: &Classifier,
    set: &AttackSet,
    config: &AttackConfig,
    batch_size: usize,
    device: &Device,
    keep_adversarials: bool,
    mut on_step: impl FnMut(),
) -> CampaignResult {
    let prepared = prepare_model(model, device);
    let ad_device = device.clone().autodiff();
    let batch_size = batch_size.max(1);
    let mut norms = Vec::with_capacity(set.len());
    let mut success = Vec::with_capacity(set.len());
    let mut adversarials = keep_adversarials.then(Vec::new);
    let mut trace = config.record_trace.then(Trace::default);
    let mut seconds = 0.0;
    let mut start = 0;
    while start < set.len() {
        let end = (start + batch_size).min(set.len());
        let (images, labels) = set.data.batch(start, end, &ad_device);
        let goal = match &set.targets {
            Some(t) => Goal::Targeted(labels_tensor(&t[start..end], &ad_device)),
            None => Goal::Untargeted(labels),
        };
        let _ = device.sync();
        let t0 = Instant::now();
        let result = run(&prepared, images, &goal, config, |_| on_step());
        let _ = device.sync();
        seconds += t0.elapsed().as_secs_f64();
        norms.extend(result.norms);
        success.extend(result.success);
        if let Some(all) = adversarials.as_mut() {
            all.extend(result.adversarials.into_data().iter::<f32>());
        }
        if let (Some(all), Some(part)) = (trace.as_mut(), result.trace) {
            merge_trace(all, part);
        }
        start = end;
    }
    CampaignResult {
        norms,
        success,
        adversarials,
        trace,
        seconds,
    }
}

/// Appends a later batch's samples to each iteration's row.
fn merge_trace(all: &mut Trace, part: Trace) {
    if all.best_norm.is_empty() {
        *all = part;
        return;
    }
    for (rows, more) in [
        (&mut all.best_norm, part.best_norm),
        (&mut all.norm, part.norm),
        (&mut all.eps, part.eps),
        (&mut all.gamma, part.gamma),
    ] {
        for (row, extra) in rows.iter_mut().zip(more) {
            row.extend(extra);
        }
    }
}
