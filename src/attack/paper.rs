//! The papers' hyperparameters (section 5 of Liu & Cao; DDN's from Rony et al.) in one table.
//! The paper's ImageNet model is Inception-v3; its settings are used for any ImageNet model.

use super::{AttackKind, AttackSpec, NormUpdate, SpecError};
use crate::data::DatasetName;

/// DDN's fixed gamma in both papers, on every data set.
pub const DDN_GAMMA: f32 = 0.05;
/// FMN's gamma annealing, from its paper (Pintor et al. 2021), on every data set.
pub const FMN_GAMMA: (f32, f32) = (0.05, 0.001);

/// ANU's (gamma_0, alpha_gamma) per data set and goal.
struct AnuRow {
    dataset: DatasetName,
    targeted: bool,
    gamma0: f32,
    alpha_gamma0: f32,
}

const ANU_TABLE: [AnuRow; 6] = [
    AnuRow {
        dataset: DatasetName::Mnist,
        targeted: false,
        gamma0: 0.4,
        alpha_gamma0: 0.15,
    },
    AnuRow {
        dataset: DatasetName::Cifar10,
        targeted: false,
        gamma0: 0.2,
        alpha_gamma0: 0.1,
    },
    AnuRow {
        dataset: DatasetName::Mnist,
        targeted: true,
        gamma0: 0.05,
        alpha_gamma0: 0.05,
    },
    AnuRow {
        dataset: DatasetName::Cifar10,
        targeted: true,
        gamma0: 0.15,
        alpha_gamma0: 0.06,
    },
    AnuRow {
        dataset: DatasetName::ImagenetSample,
        targeted: false,
        gamma0: 0.1,
        alpha_gamma0: 0.08,
    },
    AnuRow {
        dataset: DatasetName::ImagenetSample,
        targeted: true,
        gamma0: 0.05,
        alpha_gamma0: 0.05,
    },
];

/// The papers' norm-update rule for `attack` on `dataset`.
pub fn paper_rule(attack: AttackKind, dataset: DatasetName, targeted: bool) -> NormUpdate {
    match attack {
        AttackKind::Ddn => NormUpdate::Ddn { gamma: DDN_GAMMA },
        AttackKind::Fmn => NormUpdate::Fmn {
            gamma0: FMN_GAMMA.0,
            gamma_final: FMN_GAMMA.1,
        },
        AttackKind::Anu => {
            let row = ANU_TABLE
                .iter()
                .find(|r| r.dataset == dataset && r.targeted == targeted)
                .expect("the table covers every data set and goal");
            NormUpdate::Anu {
                gamma0: row.gamma0,
                alpha_gamma0: row.alpha_gamma0,
                gamma_min: 0.0,
            }
        }
    }
}

/// The papers' settings for `steps` iterations of `attack` on `dataset`.
///
/// ```
/// use anu::attack::{AttackKind, NormUpdate, paper_spec};
/// use anu::data::DatasetName;
///
/// let spec = paper_spec(AttackKind::Anu, DatasetName::Cifar10, false, 70).unwrap();
/// let rule = NormUpdate::Anu { gamma0: 0.2, alpha_gamma0: 0.1, gamma_min: 0.0 };
/// assert_eq!((spec.steps(), spec.norm_update()), (70, rule));
/// assert!(paper_spec(AttackKind::Ddn, DatasetName::Mnist, true, 0).is_err());
/// ```
pub fn paper_spec(
    attack: AttackKind,
    dataset: DatasetName,
    targeted: bool,
    steps: usize,
) -> Result<AttackSpec, SpecError> {
    AttackSpec::new(steps, paper_rule(attack, dataset, targeted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_the_papers_values() {
        let anu = |d, t| paper_rule(AttackKind::Anu, d, t);
        let rule = |g, a| NormUpdate::Anu {
            gamma0: g,
            alpha_gamma0: a,
            gamma_min: 0.0,
        };
        assert_eq!(anu(DatasetName::Mnist, false), rule(0.4, 0.15));
        assert_eq!(anu(DatasetName::Cifar10, false), rule(0.2, 0.1));
        assert_eq!(anu(DatasetName::Mnist, true), rule(0.05, 0.05));
        assert_eq!(anu(DatasetName::Cifar10, true), rule(0.15, 0.06));
        assert_eq!(anu(DatasetName::ImagenetSample, false), rule(0.1, 0.08));
        assert_eq!(anu(DatasetName::ImagenetSample, true), rule(0.05, 0.05));
        for d in [DatasetName::Mnist, DatasetName::Cifar10, DatasetName::ImagenetSample] {
            for t in [false, true] {
                assert_eq!(paper_rule(AttackKind::Ddn, d, t), NormUpdate::Ddn { gamma: 0.05 });
                let spec = paper_spec(AttackKind::Anu, d, t, 100).unwrap();
                assert_eq!(
                    (spec.steps(), spec.init_eps(), spec.alpha_max(), spec.alpha_min()),
                    (100, 1.0, 1.0, 0.01)
                );
            }
        }
    }
}
