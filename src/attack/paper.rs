//! The papers' hyperparameters (section 5 of Liu & Cao; DDN's from Rony et al.; FMN's from
//! Pintor et al.), as the rules' table ([`super::rules::RULES`]) gives them. The paper's
//! ImageNet model is Inception-v3; its settings are used for any ImageNet model.

#[cfg(test)]
use super::rules::{Anu, Ddn};
use super::{AttackKind, AttackSpec, NormUpdate, SpecError};
use crate::data::DatasetName;

/// The papers' norm-update rule for `attack` on `dataset` (each rule's file has its values).
pub fn paper_rule(attack: AttackKind, dataset: DatasetName, targeted: bool) -> NormUpdate {
    NormUpdate::paper(attack, dataset, targeted)
}

/// The papers' settings for `steps` iterations of `attack` on `dataset`.
///
/// ```
/// use anu::attack::{Anu, AttackKind, NormUpdate, paper_spec};
/// use anu::data::DatasetName;
///
/// let spec = paper_spec(AttackKind::Anu, DatasetName::Cifar10, false, 70).unwrap();
/// let rule = NormUpdate::Anu(Anu { gamma0: 0.2, alpha_gamma0: 0.1, gamma_min: 0.0 });
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
        let rule = |g, a| {
            NormUpdate::Anu(Anu {
                gamma0: g,
                alpha_gamma0: a,
                gamma_min: 0.0,
            })
        };
        assert_eq!(anu(DatasetName::Mnist, false), rule(0.4, 0.15));
        assert_eq!(anu(DatasetName::Cifar10, false), rule(0.2, 0.1));
        assert_eq!(anu(DatasetName::Mnist, true), rule(0.05, 0.05));
        assert_eq!(anu(DatasetName::Cifar10, true), rule(0.15, 0.06));
        assert_eq!(anu(DatasetName::ImagenetSample, false), rule(0.1, 0.08));
        assert_eq!(anu(DatasetName::ImagenetSample, true), rule(0.05, 0.05));
        for d in [DatasetName::Mnist, DatasetName::Cifar10, DatasetName::ImagenetSample] {
            for t in [false, true] {
                assert_eq!(paper_rule(AttackKind::Ddn, d, t), NormUpdate::Ddn(Ddn { gamma: 0.05 }));
                let spec = paper_spec(AttackKind::Anu, d, t, 100).unwrap();
                assert_eq!(
                    (spec.steps(), spec.init_eps(), spec.alpha_max(), spec.alpha_min()),
                    (100, 1.0, 1.0, 0.01)
                );
            }
        }
    }
}
