//! What can be wrong with an attack's settings ([`SpecError`]) and the command-line changes to
//! the papers' settings ([`SpecOverrides`]). A leaf below the rules and the spec.

use super::AttackKind;

/// Unusable attack settings, with the setting named.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The number of iterations is zero.
    #[error("the number of attack steps must be at least 1")]
    NoSteps,
    /// A parameter is outside its range.
    #[error("{name} must be in {range}, got {value}")]
    OutOfRange {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f32,
        /// The allowed range, written out.
        range: &'static str,
    },
    /// The step-size schedule is not `0 < alpha_min <= alpha_max`.
    #[error("need 0 < alpha_min <= alpha_max, got {alpha_min} and {alpha_max}")]
    Schedule {
        /// Final step size.
        alpha_min: f32,
        /// First step size.
        alpha_max: f32,
    },
    /// An option was given for an attack that has no such setting.
    #[error("{option} applies to {applies_to} only, not to {attack}")]
    NotApplicable {
        /// The option.
        option: &'static str,
        /// Which attacks have it.
        applies_to: &'static str,
        /// The attack it was given for.
        attack: AttackKind,
    },
}

/// Command-line changes to the paper's settings; `None` keeps the paper's value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecOverrides {
    /// DDN's gamma or ANU's gamma_0.
    pub gamma0: Option<f32>,
    /// ANU's initial alpha_gamma.
    pub alpha_gamma: Option<f32>,
    /// ANU's floor on gamma_k.
    pub gamma_min: Option<f32>,
    /// Round iterates to 256 levels.
    pub quantize: bool,
}

impl SpecOverrides {
    /// ANU's own options (`--alpha-gamma`, `--gamma-min`), refused for another attack.
    pub(crate) fn refuse_anu_options(&self, attack: AttackKind) -> Result<(), SpecError> {
        for (given, option) in [
            (self.alpha_gamma.is_some(), "--alpha-gamma"),
            (self.gamma_min.is_some(), "--gamma-min"),
        ] {
            if given {
                return Err(SpecError::NotApplicable {
                    option,
                    applies_to: "ANU",
                    attack,
                });
            }
        }
        Ok(())
    }
}
