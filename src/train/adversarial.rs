//! Adversarial examples for training (paper section 4): attack each minibatch with the model
//! in evaluation mode, then cap every perturbation at a maximum L2 norm; and the training
//! loss of Eq. 6-7.

use burn::prelude::*;

use crate::attack::{AttackSpec, AttackedModel, Goal, NoObserver, run};
use crate::error::{Error, Result};
use crate::models::Classifier;

/// The attack used inside adversarial training.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adversary {
    /// Attack settings (DDN, ANU or FMN: steps, norm-update rule).
    pub attack: AttackSpec,
    /// Maximum L2 norm of a training perturbation (2.4 on MNIST, 1.0 on CIFAR-10).
    pub max_norm: f32,
    /// Weight beta of the clean loss (Eq. 6); 0 gives Eq. 7, the paper's choice.
    pub clean_weight: f64,
}

impl Adversary {
    /// An adversary, after checking `max_norm > 0` and `0 <= clean_weight < 1`.
    pub fn new(attack: AttackSpec, max_norm: f32, clean_weight: f64) -> Result<Self> {
        let adversary = Self {
            attack,
            max_norm,
            clean_weight,
        };
        adversary.validate()?;
        Ok(adversary)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.max_norm.is_finite() && self.max_norm > 0.0) {
            return Err(Error::Invalid(format!(
                "the maximum perturbation norm must be positive, got {}",
                self.max_norm
            )));
        }
        if !(0.0..1.0).contains(&self.clean_weight) {
            return Err(Error::Invalid(format!(
                "the clean-loss weight must be in [0, 1), got {}",
                self.clean_weight
            )));
        }
        Ok(())
    }

    /// Adversarial versions of `images` (on the autodiff device of `model`), each perturbation
    /// scaled down to norm `max_norm` if larger, and the mean norm of the perturbations.
    /// The attack passes `pass_chunk` images at a time through the model.
    pub fn perturb(
        &self,
        model: &Classifier,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        device: &Device,
        pass_chunk: usize,
    ) -> Result<(Tensor<4>, f64)> {
        let attacked = AttackedModel::new(model, device);
        let x = images.clone().inner();
        let result = run(
            &attacked,
            images.clone(),
            &Goal::Untargeted(labels),
            &self.attack,
            pass_chunk,
            &mut NoObserver,
        )?;
        let (perturbed, norms) = cap_norm(x, result.adversarials, self.max_norm);
        let mean = norms.iter().map(|&n| n as f64).sum::<f64>() / norms.len().max(1) as f64;
        Ok((Tensor::from_inner(perturbed).to_device(&images.device()), mean))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::training_loss;

    #[test]
    fn eq6_weighs_the_clean_and_adversarial_losses() {
        let device = Device::flex();
        let clean = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, 1.0, 1.0], [2, 2]), &device);
        let adv = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 2.0, 0.0, 3.0], [2, 2]), &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 0], [2]), &device);
        let value = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        // Cross-entropies by hand: log(1 + e^(z_other - z_label)), averaged over the batch.
        let ce = |d: [f64; 2]| d.iter().map(|v| (1.0 + v.exp()).ln()).sum::<f64>() / 2.0;
        let (j_clean, j_adv) = (ce([-2.0, 0.0]), ce([2.0, 3.0]));
        let eq7 = value(training_loss(Some(clean.clone()), adv.clone(), labels.clone(), 0.0));
        assert!((eq7 - j_adv).abs() < 1e-5, "{eq7} vs {j_adv}");
        let eq6 = value(training_loss(Some(clean), adv, labels, 0.3));
        let expected = 0.3 * j_clean + 0.7 * j_adv;
        assert!((eq6 - expected).abs() < 1e-5, "{eq6} vs {expected}");
    }

    #[test]
    fn adversary_settings_are_checked() {
        let spec = crate::attack::paper_spec(
            crate::attack::AttackKind::Anu,
            crate::data::DatasetName::Mnist,
            false,
            10,
        )
        .unwrap();
        assert!(Adversary::new(spec.clone(), 2.4, 0.0).is_ok());
        assert!(Adversary::new(spec.clone(), 0.0, 0.0).is_err());
        assert!(Adversary::new(spec.clone(), f32::NAN, 0.0).is_err());
        assert!(Adversary::new(spec, 2.4, 1.0).is_err());
    }
}
