//! Adversarial examples for training (paper section 4): attack each minibatch with the model
//! in evaluation mode, then cap every perturbation at a maximum L2 norm.

use burn::prelude::*;

use crate::attack::{AttackConfig, Goal, prepare_model, run};
use crate::models::Classifier;

/// The attack used inside adversarial training.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adversary {
    /// DDN or ANU settings (steps, norm-update rule).
    pub attack: AttackConfig,
    /// Maximum L2 norm of a training perturbation (2.4 on MNIST, 1.0 on CIFAR-10).
    pub max_norm: f32,
    /// Weight beta of the clean loss (Eq. 6); 0 gives Eq. 7, the paper's choice.
    pub clean_weight: f64,
}

impl Adversary {
    /// Adversarial versions of `images` (on the autodiff device of `model`), each perturbation
    /// scaled down to norm `max_norm` if larger, and the mean norm of the perturbations.
    pub fn perturb(
        &self,
        model: &Classifier,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        device: &Device,
    ) -> (Tensor<4>, f64) {
        let attacked = prepare_model(model, device);
        let x = images.clone().inner();
        let result = run(
            &attacked,
            images.clone(),
            &Goal::Untargeted(labels),
            &self.attack,
            |_| {},
        );
        let (perturbed, norms) = cap_norm(x.clone(), result.adversarials, self.max_norm);
        let mean = norms.iter().map(|&n| n as f64).sum::<f64>() / norms.len().max(1) as f64;
        (Tensor::from_inner(perturbed).to_device(&images.device()), mean)
    }
}

/// Scales each `adv - x` down to L2 norm `max_norm` where it is larger; returns the capped
/// images and their perturbation norms.
pub fn cap_norm(x: Tensor<4>, adv: Tensor<4>, max_norm: f32) -> (Tensor<4>, Vec<f32>) {
    let b = x.dims()[0];
    let delta = adv.sub(x.clone());
    let norm = delta.clone().square().sum_dims(&[1, 2, 3]).sqrt();
    let factor = norm
        .clone()
        .clamp_min(1e-12)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    let capped = x.add(delta.mul(factor.clone())).clamp(0.0, 1.0);
    let norms: Vec<f32> = norm.mul(factor).reshape([b]).into_data().iter::<f32>().collect();
    (capped, norms)
}
