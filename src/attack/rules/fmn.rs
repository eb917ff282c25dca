//! FMN-L2 (Pintor et al. 2021) in the same loop: it differentiates the logit margin instead of
//! the cross-entropy, sets eps before its first adversarial from the margin's linear estimate
//! of the distance, afterwards shrinks it to min(eps (1 - gamma_k), best norm) or grows it by
//! (1 + gamma_k), with gamma_k cosine-annealed, and projects into the eps-ball (shrinking only).

use burn::prelude::*;

use super::{EpsInputs, NormUpdate, Objective, Rule, RuleState, check_factor, cosine_annealed};
use crate::attack::{AttackKind, SpecError, SpecOverrides};
use crate::data::DatasetName;

/// FMN's gamma annealing, from its paper, on every data set.
pub const FMN_GAMMA: (f32, f32) = (0.05, 0.001);

/// FMN's settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fmn {
    /// gamma at the first iteration (0.05 in its paper).
    pub gamma0: f32,
    /// gamma the annealing approaches at the last iteration (0.001).
    pub gamma_final: f32,
}

/// FMN's paper settings, on every data set and goal.
pub fn paper(_dataset: DatasetName, _targeted: bool) -> NormUpdate {
    NormUpdate::Fmn(Fmn {
        gamma0: FMN_GAMMA.0,
        gamma_final: FMN_GAMMA.1,
    })
}

impl Rule for Fmn {
    fn kind(&self) -> AttackKind {
        AttackKind::Fmn
    }

    fn validate(&self) -> Result<(), SpecError> {
        check_factor("gamma_0", self.gamma0, true)?;
        check_factor("gamma_final", self.gamma_final, true)?;
        if self.gamma_final > self.gamma0 {
            return Err(SpecError::OutOfRange {
                name: "gamma_final",
                value: self.gamma_final,
                range: "[0, gamma_0]",
            });
        }
        Ok(())
    }

    /// `--gamma` sets gamma_0 (gamma_final kept at or below it); ANU's options are refused.
    fn with_overrides(&self, o: &SpecOverrides) -> Result<NormUpdate, SpecError> {
        o.refuse_anu_options(AttackKind::Fmn)?;
        let gamma0 = o.gamma0.unwrap_or(self.gamma0);
        Ok(NormUpdate::Fmn(Fmn {
            gamma0,
            gamma_final: self.gamma_final.min(gamma0),
        }))
    }

    fn gamma0(&self) -> f32 {
        self.gamma0
    }

    fn objective(&self) -> Objective {
        Objective::LogitMargin
    }

    fn projects_onto_sphere(&self) -> bool {
        false
    }

    fn update_gamma(&self, state: &mut RuleState, _adversarial: &Tensor<1, Bool>, k: usize, steps: usize) {
        let [b] = state.gamma.dims();
        state.gamma = Tensor::full(
            [b],
            cosine_annealed(self.gamma0, self.gamma_final, k, steps),
            &state.gamma.device(),
        );
    }

    fn next_eps(&self, i: EpsInputs<'_>) -> Tensor<1> {
        let (shrink, grow) = i.shrunk_and_grown();
        // Before the first adversarial: ||delta|| + |margin| / ||grad||, the distance to the
        // boundary of the margin's linearisation.
        let estimate = i
            .norm
            .clone()
            .add(i.objective.clone().abs().div(i.grad_norm.clone().clamp_min(1e-12)));
        estimate
            .mask_where(i.found.clone(), grow)
            .mask_where(i.adversarial, shrink.min_pair(i.best_norm.clone()))
    }
}
