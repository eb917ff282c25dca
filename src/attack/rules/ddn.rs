//! DDN (Rony et al. 2019; the paper's Alg. 1): a fixed factor gamma, so eps shrinks by
//! (1 - gamma) after an adversarial iterate and grows by (1 + gamma) otherwise (steps 6-10),
//! on the cross-entropy, projected onto the eps-sphere.

use super::{NormUpdate, Rule, check_factor};
use crate::attack::{AttackKind, SpecError, SpecOverrides};
use crate::data::DatasetName;

/// DDN's fixed gamma in both papers, on every data set.
pub const DDN_GAMMA: f32 = 0.05;

/// DDN's settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ddn {
    /// The fixed factor (0.05 in the papers).
    pub gamma: f32,
}

/// The papers' DDN: gamma 0.05 on every data set and goal.
pub fn paper(_dataset: DatasetName, _targeted: bool) -> NormUpdate {
    NormUpdate::Ddn(Ddn { gamma: DDN_GAMMA })
}

impl Rule for Ddn {
    fn kind(&self) -> AttackKind {
        AttackKind::Ddn
    }

    fn validate(&self) -> Result<(), SpecError> {
        check_factor("gamma", self.gamma, true)
    }

    /// `--gamma` sets gamma; ANU's options are refused.
    fn with_overrides(&self, o: &SpecOverrides) -> Result<NormUpdate, SpecError> {
        o.refuse_anu_options(AttackKind::Ddn)?;
        Ok(NormUpdate::Ddn(Ddn {
            gamma: o.gamma0.unwrap_or(self.gamma),
        }))
    }

    fn gamma0(&self) -> f32 {
        self.gamma
    }
}
