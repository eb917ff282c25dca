//! The norm-update rules: the only difference between DDN (Alg. 1) and ANU (Alg. 2), and what
//! makes FMN (Pintor et al. 2021, L2) of the same loop. One file per rule ([`ddn`], [`anu`],
//! [`fmn`]), each owning its settings, their validation and overrides, the papers' values,
//! and its part of the iteration: the objective, gamma_k, eps_k and the projection.
//!
//! DDN and ANU hand the shared loop a per-sample factor gamma_k; eps then shrinks by
//! (1 - gamma_k) after an adversarial iterate and grows by (1 + gamma_k) otherwise (Alg. 1
//! steps 6-10, Alg. 2 steps 16-20, `sphere_eps`), and the iterate is projected onto the
//! eps-sphere. A new rule is a file here with a `Rule` implementation, a variant of
//! [`NormUpdate`] and a row of [`RULES`].

pub mod anu;
pub mod ddn;
pub mod fmn;

use burn::prelude::*;

pub use anu::{Anu, GAMMA_MAX};
pub use ddn::Ddn;
pub use fmn::Fmn;

use super::{AttackKind, SpecError, SpecOverrides};
use crate::data::DatasetName;

/// A rule's settings, as written in spec and result files (`{"rule": "anu", ...}`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum NormUpdate {
    /// DDN (Alg. 1).
    Ddn(Ddn),
    /// ANU (Alg. 2).
    Anu(Anu),
    /// FMN-L2.
    Fmn(Fmn),
}

/// Every rule, one row each, in table order (the baseline first): the attack it makes and the
/// papers' settings for a data set and goal.
pub const RULES: [RuleRow; 3] = [
    RuleRow {
        kind: AttackKind::Ddn,
        paper: ddn::paper,
    },
    RuleRow {
        kind: AttackKind::Anu,
        paper: anu::paper,
    },
    RuleRow {
        kind: AttackKind::Fmn,
        paper: fmn::paper,
    },
];

/// One row of [`RULES`].
pub struct RuleRow {
    /// The attack.
    pub kind: AttackKind,
    /// The papers' settings of the rule on a data set, untargeted or targeted.
    pub paper: fn(DatasetName, bool) -> NormUpdate,
}

/// What one rule decides in the shared loop. Defaults are DDN's and ANU's: cross-entropy,
/// a fixed gamma, the eps update of [`sphere_eps`] and a projection onto the sphere.
pub(crate) trait Rule {
    /// The attack this rule makes.
    fn kind(&self) -> AttackKind;

    /// Checks the settings, naming the one that is unusable.
    fn validate(&self) -> Result<(), SpecError>;

    /// The settings with the command-line overrides applied; options the rule does not have
    /// are refused.
    fn with_overrides(&self, o: &SpecOverrides) -> Result<NormUpdate, SpecError>;

    /// gamma before the first iteration.
    fn gamma0(&self) -> f32;

    /// What the loop differentiates.
    fn objective(&self) -> Objective {
        Objective::CrossEntropy
    }

    /// Whether iterates are projected onto the eps-sphere rather than into the eps-ball.
    fn projects_onto_sphere(&self) -> bool {
        true
    }

    /// Updates `state.gamma` to gamma_k for iteration `k` (0-based) of `steps`, given whether
    /// x'_{k-1} is adversarial; a fixed gamma leaves it.
    fn update_gamma(&self, _state: &mut RuleState, _adversarial: &Tensor<1, Bool>, _k: usize, _steps: usize) {}

    /// eps_k, before the cap at the worst-case norm.
    fn next_eps(&self, i: EpsInputs<'_>) -> Tensor<1> {
        sphere_eps(i)
    }
}

/// What the loop differentiates: the quantity to increase towards the goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Objective {
    /// Cross-entropy of the true label (untargeted, ascended) or of the target (descended).
    CrossEntropy,
    /// Logit margin: best other logit minus the true label's (untargeted), target's logit
    /// minus the best other (targeted).
    LogitMargin,
}

/// What the eps update of one iteration sees, per sample (`[B]` each).
pub(crate) struct EpsInputs<'a> {
    /// The current radius eps_{k-1}.
    pub eps: Tensor<1>,
    /// gamma_k from [`NormUpdate::gamma`].
    pub gamma: &'a Tensor<1>,
    /// Whether the evaluated iterate is adversarial.
    pub adversarial: Tensor<1, Bool>,
    /// Whether an adversarial has been stored, this iteration included.
    pub found: &'a Tensor<1, Bool>,
    /// Norm of the best stored adversarial.
    pub best_norm: &'a Tensor<1>,
    /// Norm of the evaluated iterate.
    pub norm: &'a Tensor<1>,
    /// The objective at the evaluated iterate (a margin for FMN).
    pub objective: &'a Tensor<1>,
    /// Norm of the objective's input gradient.
    pub grad_norm: &'a Tensor<1>,
    /// Largest norm a point of the box can have.
    pub worst_norm: &'a Tensor<1>,
}

impl EpsInputs<'_> {
    /// eps_{k-1} (1 - gamma_k) and eps_{k-1} (1 + gamma_k).
    pub(crate) fn shrunk_and_grown(&self) -> (Tensor<1>, Tensor<1>) {
        let shrink = self.eps.clone().mul(self.gamma.clone().neg().add_scalar(1.0));
        let grow = self.eps.clone().mul(self.gamma.clone().add_scalar(1.0));
        (shrink, grow)
    }
}

/// DDN's and ANU's eps update (Alg. 1 steps 6-10, Alg. 2 steps 16-20): shrink by (1 - gamma_k)
/// after an adversarial iterate, grow by (1 + gamma_k) otherwise.
pub(crate) fn sphere_eps(i: EpsInputs<'_>) -> Tensor<1> {
    let (shrink, grow) = i.shrunk_and_grown();
    grow.mask_where(i.adversarial, shrink)
}

/// Per-sample state of a rule during one batch.
pub(crate) struct RuleState {
    /// gamma_k.
    pub gamma: Tensor<1>,
    /// Whether the previous iterate was adversarial (ANU's A_{-1}).
    pub last_adversarial: Tensor<1, Bool>,
}

impl NormUpdate {
    /// The rule behind these settings: the one place that lists the variants.
    fn rule(&self) -> &dyn Rule {
        match self {
            NormUpdate::Ddn(r) => r,
            NormUpdate::Anu(r) => r,
            NormUpdate::Fmn(r) => r,
        }
    }

    /// The papers' settings of `attack` on `dataset`.
    pub fn paper(attack: AttackKind, dataset: DatasetName, targeted: bool) -> Self {
        let row = RULES.iter().find(|r| r.kind == attack).expect("every attack has a row");
        (row.paper)(dataset, targeted)
    }

    /// The attack this rule makes.
    pub fn kind(&self) -> AttackKind {
        self.rule().kind()
    }

    /// Checks the parameters, naming the one that is unusable.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.rule().validate()
    }

    /// The settings with the command-line overrides applied (see [`SpecOverrides`]).
    pub fn with_overrides(&self, o: &SpecOverrides) -> Result<Self, SpecError> {
        self.rule().with_overrides(o)
    }

    /// What the loop differentiates under this rule.
    pub(crate) fn objective(&self) -> Objective {
        self.rule().objective()
    }

    /// Whether iterates are projected onto the eps-sphere (DDN, ANU) rather than into the
    /// eps-ball (FMN, which only shrinks perturbations longer than eps).
    pub(crate) fn projects_onto_sphere(&self) -> bool {
        self.rule().projects_onto_sphere()
    }

    /// eps_k from the iteration's state, capped at the worst-case norm.
    pub(crate) fn next_eps(&self, i: EpsInputs<'_>) -> Tensor<1> {
        let worst = i.worst_norm.clone();
        self.rule().next_eps(i).min_pair(worst)
    }

    /// The rule's per-batch state before the first iteration.
    pub(crate) fn start(&self, batch: usize, device: &Device) -> RuleState {
        RuleState {
            gamma: Tensor::full([batch], self.rule().gamma0(), device),
            // Alg. 2 step 2: A_{-1} <- 0.
            last_adversarial: Tensor::<1>::zeros([batch], device).bool(),
        }
    }

    /// gamma_k for iteration `k` (0-based) of `steps`, given whether x'_{k-1} is adversarial.
    pub(crate) fn gamma(
        &self,
        state: &mut RuleState,
        adversarial: &Tensor<1, Bool>,
        k: usize,
        steps: usize,
    ) -> Tensor<1> {
        self.rule().update_gamma(state, adversarial, k, steps);
        state.gamma.clone()
    }
}

/// Checks that `value` of setting `name` lies in [0, 1) (`below_one`) or [0, [`GAMMA_MAX`]).
pub(crate) fn check_factor(name: &'static str, value: f32, below_one: bool) -> Result<(), SpecError> {
    let hi = if below_one { 1.0 } else { GAMMA_MAX };
    if value.is_finite() && (0.0..hi).contains(&value) {
        Ok(())
    } else {
        let range = if below_one { "[0, 1)" } else { "[0, 0.9)" };
        Err(SpecError::OutOfRange { name, value, range })
    }
}

/// Cosine annealing from `start` (k = 0) towards `end` (k = steps), as DDN's step size:
/// `end + (start - end) * (1 + cos(pi k / steps)) / 2`.
pub fn cosine_annealed(start: f32, end: f32, k: usize, steps: usize) -> f32 {
    let phase = std::f64::consts::PI * k as f64 / steps.max(1) as f64;
    (end as f64 + (start as f64 - end as f64) * (1.0 + phase.cos()) / 2.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_for_every_attack_in_order() {
        let kinds: Vec<AttackKind> = RULES.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, AttackKind::ALL);
        for row in &RULES {
            for dataset in [DatasetName::Mnist, DatasetName::Cifar10, DatasetName::ImagenetSample] {
                for targeted in [false, true] {
                    let rule = (row.paper)(dataset, targeted);
                    assert_eq!(rule.kind(), row.kind);
                    rule.validate().unwrap();
                }
            }
        }
    }

    #[test]
    fn settings_are_written_as_before() {
        let anu = NormUpdate::Anu(Anu {
            gamma0: 0.4,
            alpha_gamma0: 0.15,
            gamma_min: 0.0,
        });
        let json = serde_json::to_string(&anu).unwrap();
        assert_eq!(
            json,
            r#"{"rule":"anu","gamma0":0.4,"alpha_gamma0":0.15,"gamma_min":0.0}"#
        );
        let old: NormUpdate = serde_json::from_str(r#"{"rule":"anu","gamma0":0.4,"alpha_gamma0":0.15}"#).unwrap();
        assert_eq!(old, anu, "files written before gamma_min existed still read");
        let ddn: NormUpdate = serde_json::from_str(r#"{"rule":"ddn","gamma":0.05}"#).unwrap();
        assert_eq!(ddn, NormUpdate::Ddn(Ddn { gamma: 0.05 }));
    }
}
