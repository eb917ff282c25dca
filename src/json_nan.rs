//! JSON has no NaN or infinity: such a number (a mean of nothing, an accuracy of no images) is
//! written as null and read back as NaN. For `#[serde(with = "crate::json_nan")]` on an
//! `f64`, and `crate::json_nan::each` on a `Vec<f64>`.

use serde::{Deserialize, Deserializer, Serializer};

/// Writes a finite `value` as a number, any other as null.
pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        s.serialize_f64(*value)
    } else {
        s.serialize_none()
    }
}

/// Reads a number, or null as NaN.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The same for each number of a list.
pub mod each {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes each finite value as a number, any other as null.
    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(values.len()))?;
        for v in values {
            seq.serialize_element(&v.is_finite().then_some(*v))?;
        }
        seq.end()
    }

    /// Reads numbers, each null as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let values = Vec::<Option<f64>>::deserialize(d)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Both {
        #[serde(with = "super")]
        one: f64,
        #[serde(with = "super::each")]
        many: Vec<f64>,
    }

    #[test]
    fn non_finite_numbers_are_null_and_null_reads_as_nan() {
        let text = serde_json::to_string(&Both {
            one: f64::NAN,
            many: vec![0.5, f64::NAN, f64::INFINITY],
        })
        .unwrap();
        assert_eq!(text, r#"{"one":null,"many":[0.5,null,null]}"#);
        let back: Both = serde_json::from_str(&text).unwrap();
        assert!(back.one.is_nan() && back.many[0] == 0.5 && back.many[1].is_nan());
    }
}
