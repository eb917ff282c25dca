//! An attack's settings ([`AttackSpec`]): its norm-update rule and the schedule every rule
//! shares, checked when built. How a run is executed (batch size, pass chunking) and observed
//! (trace, progress) is kept apart, in [`super::Execution`] and [`super::Observer`].

use super::{AttackKind, NormUpdate, SpecError, SpecOverrides};

/// The settings of one DDN, ANU or FMN run: everything that determines its result, nothing about how
/// it is executed. Built only through [`AttackSpec::new`] and the `with_*` methods, which
/// validate, so an `AttackSpec` in hand is always usable.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SpecFields", into = "SpecFields")]
pub struct AttackSpec {
    fields: SpecFields,
}

/// The fields of an [`AttackSpec`] as stored in files.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SpecFields {
    steps: usize,
    norm_update: NormUpdate,
    init_eps: f32,
    alpha_max: f32,
    alpha_min: f32,
    quantize: bool,
}

impl TryFrom<SpecFields> for AttackSpec {
    type Error = SpecError;
    fn try_from(fields: SpecFields) -> Result<Self, SpecError> {
        validate(&fields)?;
        Ok(Self { fields })
    }
}

impl From<AttackSpec> for SpecFields {
    fn from(spec: AttackSpec) -> Self {
        spec.fields
    }
}

fn validate(f: &SpecFields) -> Result<(), SpecError> {
    if f.steps == 0 {
        return Err(SpecError::NoSteps);
    }
    if !(f.init_eps.is_finite() && f.init_eps > 0.0) {
        return Err(SpecError::OutOfRange {
            name: "initial eps",
            value: f.init_eps,
            range: "(0, inf)",
        });
    }
    if !(f.alpha_min.is_finite() && f.alpha_max.is_finite() && 0.0 < f.alpha_min && f.alpha_min <= f.alpha_max) {
        return Err(SpecError::Schedule {
            alpha_min: f.alpha_min,
            alpha_max: f.alpha_max,
        });
    }
    f.norm_update.validate()
}

impl AttackSpec {
    /// `steps` iterations of `norm_update` with the papers' schedule: eps_0 = 1, step size
    /// cosine-annealed from 1 to 0.01, no quantisation.
    pub fn new(steps: usize, norm_update: NormUpdate) -> Result<Self, SpecError> {
        SpecFields {
            steps,
            norm_update,
            init_eps: 1.0,
            alpha_max: 1.0,
            alpha_min: 0.01,
            quantize: false,
        }
        .try_into()
    }

    /// The same settings with another schedule: initial radius eps_0 and step sizes.
    pub fn with_schedule(&self, init_eps: f32, alpha_max: f32, alpha_min: f32) -> Result<Self, SpecError> {
        SpecFields {
            init_eps,
            alpha_max,
            alpha_min,
            ..self.fields.clone()
        }
        .try_into()
    }

    /// The same settings, with every iterate rounded to 256 levels (as the original DDN code).
    pub fn with_quantize(&self, quantize: bool) -> Self {
        let mut spec = self.clone();
        spec.fields.quantize = quantize;
        spec
    }

    /// The same settings with another number of iterations.
    pub fn with_steps(&self, steps: usize) -> Result<Self, SpecError> {
        SpecFields {
            steps,
            ..self.fields.clone()
        }
        .try_into()
    }

    /// The same settings with another norm-update rule.
    pub fn with_norm_update(&self, norm_update: NormUpdate) -> Result<Self, SpecError> {
        SpecFields {
            norm_update,
            ..self.fields.clone()
        }
        .try_into()
    }

    /// Applies command-line overrides (each rule takes those it has; an option of another
    /// rule is an error).
    pub fn with_overrides(&self, o: &SpecOverrides) -> Result<Self, SpecError> {
        let rule = self.fields.norm_update.with_overrides(o)?;
        Ok(self
            .with_norm_update(rule)?
            .with_quantize(o.quantize || self.fields.quantize))
    }

    /// Which attack these settings make.
    pub fn kind(&self) -> AttackKind {
        self.fields.norm_update.kind()
    }

    /// Number of iterations K (gradient computations).
    pub fn steps(&self) -> usize {
        self.fields.steps
    }

    /// The norm-update rule: DDN, ANU or FMN.
    pub fn norm_update(&self) -> NormUpdate {
        self.fields.norm_update
    }

    /// Initial sphere radius eps_0 (1 in both papers).
    pub fn init_eps(&self) -> f32 {
        self.fields.init_eps
    }

    /// Step size at the first iteration (1).
    pub fn alpha_max(&self) -> f32 {
        self.fields.alpha_max
    }

    /// Step size the cosine annealing approaches at the last iteration (0.01).
    pub fn alpha_min(&self) -> f32 {
        self.fields.alpha_min
    }

    /// Whether every iterate is rounded to 256 levels.
    pub fn quantize(&self) -> bool {
        self.fields.quantize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::{Anu, Ddn, Fmn};

    const ANU: NormUpdate = NormUpdate::Anu(Anu {
        gamma0: 0.4,
        alpha_gamma0: 0.15,
        gamma_min: 0.0,
    });

    #[test]
    fn invalid_settings_are_refused_when_built() {
        assert_eq!(AttackSpec::new(0, ANU), Err(SpecError::NoSteps));
        let bad_gamma = AttackSpec::new(10, NormUpdate::Ddn(Ddn { gamma: 1.0 })).unwrap_err();
        assert!(bad_gamma.to_string().contains("gamma"), "{bad_gamma}");
        let spec = AttackSpec::new(10, ANU).unwrap();
        assert!(matches!(
            spec.with_schedule(1.0, 0.01, 1.0),
            Err(SpecError::Schedule { .. })
        ));
        assert!(matches!(
            spec.with_schedule(0.0, 1.0, 0.01),
            Err(SpecError::OutOfRange { .. })
        ));
        assert!(spec.with_schedule(f32::NAN, 1.0, 0.01).is_err());
        assert!(spec.with_steps(0).is_err());
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let spec = AttackSpec::new(70, ANU).unwrap();
        let same = spec.with_overrides(&SpecOverrides::default()).unwrap();
        assert_eq!(same, spec);
        let changed = spec
            .with_overrides(&SpecOverrides {
                gamma0: Some(0.2),
                alpha_gamma: Some(0.0),
                gamma_min: None,
                quantize: true,
            })
            .unwrap();
        assert_eq!(
            changed.norm_update(),
            NormUpdate::Anu(Anu {
                gamma0: 0.2,
                alpha_gamma0: 0.0,
                gamma_min: 0.0
            })
        );
        assert!(changed.quantize());
        assert_eq!(changed.steps(), 70);
        // Out-of-range overrides are refused, and ANU-only options are refused for DDN.
        let too_big = SpecOverrides {
            gamma0: Some(0.95),
            ..Default::default()
        };
        assert!(spec.with_overrides(&too_big).is_err());
        let ddn = AttackSpec::new(70, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
        let err = ddn
            .with_overrides(&SpecOverrides {
                gamma_min: Some(0.01),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("--gamma-min"), "{err}");
        let ddn_gamma = ddn
            .with_overrides(&SpecOverrides {
                gamma0: Some(0.1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ddn_gamma.norm_update(), NormUpdate::Ddn(Ddn { gamma: 0.1 }));
    }

    #[test]
    fn fmn_settings_are_checked_and_overridable() {
        let fmn = NormUpdate::Fmn(Fmn {
            gamma0: 0.05,
            gamma_final: 0.001,
        });
        let spec = AttackSpec::new(100, fmn).unwrap();
        assert_eq!(spec.kind(), AttackKind::Fmn);
        let bad = NormUpdate::Fmn(Fmn {
            gamma0: 0.01,
            gamma_final: 0.05,
        });
        assert!(AttackSpec::new(100, bad).is_err(), "gamma_final above gamma_0");
        let changed = spec
            .with_overrides(&SpecOverrides {
                gamma0: Some(0.1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            changed.norm_update(),
            NormUpdate::Fmn(Fmn {
                gamma0: 0.1,
                gamma_final: 0.001
            })
        );
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<AttackSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn specs_round_trip_through_json_and_invalid_json_is_refused() {
        let spec = AttackSpec::new(70, ANU).unwrap().with_quantize(true);
        let text = serde_json::to_string(&spec).unwrap();
        let back: AttackSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
        let broken = text.replace("\"steps\":70", "\"steps\":0");
        assert_ne!(broken, text);
        assert!(serde_json::from_str::<AttackSpec>(&broken).is_err());
    }
}
