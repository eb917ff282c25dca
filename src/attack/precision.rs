//! The arithmetic precision of an attack's passes, and the full-f32 check of what they find.
//!
//! Tensor cores multiply in TF32 (a 10-bit mantissa) or bf16 (7 bits) and accumulate in f32;
//! a decision taken in such a pass ("this iterate is adversarial", "this image is already
//! misclassified") may not hold in f32. So when the attack runs in a reduced precision, every
//! sample it counts as a success is classified once more by the model in full f32 after the
//! loop ([`confirm_in_f32`]); a sample whose adversarial fails that check is reported as a
//! failure, and [`Recheck`] says how many were checked and how many failed.
//!
//! In this version the reduced precision is emulated: the model's weights and every iterate
//! are rounded to the format (round to nearest, ties to even) before an f32 pass. That rounds
//! the operands of the first layer as tensor cores would, though not those of later layers,
//! and it is not faster (on any device): it shows the effect of the format on an attack and
//! exercises the check. `f32`, the default, rounds nothing and needs no check.

use std::fmt;
use std::str::FromStr;

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::{Classifier, ModelError};

/// Arithmetic of the attack's forward and backward passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE single precision throughout (23-bit mantissa).
    #[default]
    F32,
    /// NVIDIA's TensorFloat-32 operands: f32's exponent with a 10-bit mantissa.
    Tf32,
    /// bfloat16 operands: f32's exponent with a 7-bit mantissa.
    Bf16,
}

impl Precision {
    /// The precisions, in the order `--help` lists them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Tf32, Precision::Bf16];

    /// The name `--precision` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Mantissa bits kept (f32 has 23).
    pub fn mantissa_bits(self) -> u32 {
        match self {
            Precision::F32 => 23,
            Precision::Tf32 => 10,
            Precision::Bf16 => 7,
        }
    }

    /// Whether results need the full-f32 check.
    pub fn is_reduced(self) -> bool {
        self != Precision::F32
    }

    /// `v` rounded to this precision's mantissa, to nearest with ties to even; infinities and
    /// NaN pass unchanged, and a value that rounds past the largest finite one becomes infinite
    /// (as the hardware's conversion does).
    pub fn round(self, v: f32) -> f32 {
        let drop = 23 - self.mantissa_bits();
        if drop == 0 || !v.is_finite() {
            return v;
        }
        let bits = v.to_bits();
        let half = 1u32 << (drop - 1);
        let lowest_kept = (bits >> drop) & 1;
        let rounded = bits.wrapping_add(half - 1 + lowest_kept) & !((1u32 << drop) - 1);
        f32::from_bits(rounded)
    }

    /// `t` with every value rounded by [`Precision::round`] (read back and written again: an
    /// emulation, see the module docs).
    pub fn round_tensor<const D: usize>(self, t: Tensor<D>) -> Tensor<D> {
        if !self.is_reduced() {
            return t;
        }
        let device = t.device();
        let shape = t.shape();
        let values: Vec<f32> = t.into_data().iter::<f32>().map(|v| self.round(v)).collect();
        Tensor::from_data(TensorData::new(values, shape), &device)
    }

    /// `model` with every float parameter rounded to this precision.
    pub fn round_weights(self, model: Classifier) -> Classifier {
        struct Rounder(Precision);
        impl ModuleMapper for Rounder {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let precision = self.0;
                param.map(|t| precision.round_tensor(t))
            }
        }
        if !self.is_reduced() {
            return model;
        }
        model.map(&mut Rounder(self))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
            Error::Invalid(format!("unknown precision `{s}`: one of {}", names.join(", ")))
        })
    }
}

/// How many reported successes the full-f32 check saw, and how many it rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recheck {
    /// Successes classified again in f32 (those of reduced-precision runs only).
    pub checked: usize,
    /// Of those, the ones whose adversarial is not adversarial in f32 (now failures).
    pub failed: usize,
}

/// The counts of two parts of a campaign together.
impl std::ops::Add for Recheck {
    type Output = Recheck;

    fn add(self, other: Recheck) -> Recheck {
        Recheck {
            checked: self.checked + other.checked,
            failed: self.failed + other.failed,
        }
    }
}

/// Classifies each successful adversarial in `adversarials` (`[B, C, H, W]`) with `exact`, the
/// model in full f32 on the same device, and turns each one that does not reach its goal there
/// (any label but `labels`, or exactly `labels` when `targeted`) into a failure: its `success`
/// becomes false, its norm infinite and its adversarial the original image from `images`.
/// Images already misclassified (norm 0, adversarial = image) are checked the same way.
pub fn confirm_in_f32(
    exact: &Classifier,
    images: &Tensor<4>,
    labels: &Tensor<1, Int>,
    targeted: bool,
    adversarials: Tensor<4>,
    norms: &mut [f32],
    success: &mut [bool],
) -> std::result::Result<(Tensor<4>, Recheck), ModelError> {
    let checked = success.iter().filter(|&&s| s).count();
    if checked == 0 {
        return Ok((adversarials, Recheck::default()));
    }
    let dims = adversarials.dims();
    let predicted = exact.forward(adversarials.clone())?.argmax(1).reshape([dims[0]]);
    let labels = labels.clone();
    let reached = if targeted {
        predicted.equal(labels)
    } else {
        predicted.not_equal(labels)
    };
    let reached: Vec<bool> = reached.into_data().iter::<bool>().collect();
    let mut rejected = vec![false; dims[0]];
    let mut failed = 0;
    for i in 0..dims[0] {
        if success[i] && !reached[i] {
            success[i] = false;
            norms[i] = f32::INFINITY;
            rejected[i] = true;
            failed += 1;
        }
    }
    let adversarials = if failed == 0 {
        adversarials
    } else {
        let device = adversarials.device();
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(rejected, [dims[0]]), &device)
            .reshape([dims[0], 1, 1, 1])
            .expand(dims);
        adversarials.mask_where(mask, images.clone())
    };
    Ok((adversarials, Recheck { checked, failed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_the_format_s_mantissa_to_nearest_even() {
        let p = Precision::Tf32;
        // 1 + 2^-10 is a TF32 number; 1 + 2^-11 lies halfway and goes to the even 1.0;
        // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 and 1 + 2^-9 and goes to the even latter.
        assert_eq!(p.round(1.0 + 2f32.powi(-10)), 1.0 + 2f32.powi(-10));
        assert_eq!(p.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(p.round(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2f32.powi(-9));
        assert_eq!(p.round(1.0 + 2f32.powi(-11) + 2f32.powi(-20)), 1.0 + 2f32.powi(-10));
        assert_eq!(p.round(-0.1), -p.round(0.1));
        assert_eq!(
            Precision::Bf16.round(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(Precision::Bf16.round(f32::MAX), f32::INFINITY);
        assert!(Precision::Tf32.round(f32::NAN).is_nan());
        assert_eq!(Precision::F32.round(0.1), 0.1);
        // Every rounded value keeps only the format's bits.
        for v in [0.1f32, 3.7, -123.456, 1e-30, 6.5e4] {
            assert_eq!(p.round(v).to_bits() & 0x1fff, 0, "{v}");
            assert!((p.round(v) - v).abs() <= v.abs() * 2f32.powi(-11), "{v}");
        }
    }

    #[test]
    fn precision_names_parse_back_and_unknown_ones_are_refused() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        let err = "fp8".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("fp8") && err.contains("tf32"), "{err}");
    }
}
