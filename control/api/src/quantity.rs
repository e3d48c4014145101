//! Kubernetes resource quantities (`250m`, `128Mi`, `1.5Gi`, `1e3`).
//!
//! A [`Quantity`] keeps the user's spelling verbatim so that an object round-trips byte for byte
//! through admission; it is only interpreted when a consumer asks for [`Quantity::millis`] or
//! [`Quantity::value`]. Parsing is exact integer arithmetic (no floats), so `0.1` CPU is exactly
//! 100 millicores and huge values fail with an overflow error instead of silently losing precision.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A resource quantity as written by the user, e.g. `"500m"` or `"2Gi"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(pub String);

/// Why a quantity could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error(
        "quantity {0:?} is not a number with an optional suffix (e.g. \"250m\", \"128Mi\", \"1.5\")"
    )]
    Syntax(String),
    #[error(
        "quantity {0:?} has an unknown suffix {1:?} (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei)"
    )]
    Suffix(String, String),
    #[error("quantity {0:?} is too large")]
    Overflow(String),
    #[error("quantity {0:?} must not be negative")]
    Negative(String),
}

/// A parsed quantity: `mantissa * 10^exp10 * 2^exp2`, with the sign kept separately.
///
/// Keeping the decimal and binary scales apart lets `1.5Gi` be computed exactly
/// (`15 * 10^-1 * 2^30`) and rounding happens only once, at the very end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedQuantity {
    pub negative: bool,
    pub mantissa: u128,
    pub exp10: i32,
    pub exp2: u32,
}

impl ParsedQuantity {
    /// The value multiplied by `10^scale`, rounded up (away from zero) to an integer.
    ///
    /// Rounding up matches Kubernetes: a request of `0.0001` CPU still reserves one millicore,
    /// never zero.
    pub fn scaled(&self, scale: i32, original: &str) -> Result<i64, QuantityError> {
        let overflow = || QuantityError::Overflow(original.to_string());
        let mut n = self
            .mantissa
            .checked_mul(1u128.checked_shl(self.exp2).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
        let e = self.exp10 + scale;
        if e >= 0 {
            let factor = 10u128.checked_pow(e as u32).ok_or_else(overflow)?;
            n = n.checked_mul(factor).ok_or_else(overflow)?;
        } else {
            match 10u128.checked_pow(e.unsigned_abs()) {
                // The divisor exceeds any u128, so a non-zero value rounds up to 1.
                None => n = u128::from(n != 0),
                Some(div) => n = n.div_ceil(div),
            }
        }
        let n = i64::try_from(n).map_err(|_| overflow())?;
        Ok(if self.negative { -n } else { n })
    }

    /// Whether the quantity is strictly below zero (`-0` is not).
    pub fn is_negative(&self) -> bool {
        self.negative && self.mantissa != 0
    }
}

impl Quantity {
    /// Wraps a string without checking it; use [`Quantity::parse`] to validate.
    pub fn new(s: impl Into<String>) -> Self {
        Quantity(s.into())
    }

    /// Parses a quantity string: `[+-]digits[.digits][(e|E)[+-]digits][suffix]`.
    pub fn parse(s: &str) -> Result<ParsedQuantity, QuantityError> {
        let syntax = || QuantityError::Syntax(s.to_string());
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if bytes[0] == b'+' || bytes[0] == b'-' {
            negative = bytes[0] == b'-';
            i = 1;
        }
        let mut mantissa: u128 = 0;
        let mut exp10: i64 = 0;
        let mut digits = 0usize;
        let push = |d: u8, mantissa: &mut u128| -> Result<(), QuantityError> {
            *mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(d - b'0')))
                .ok_or_else(|| QuantityError::Overflow(s.to_string()))?;
            Ok(())
        };
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            push(bytes[i], &mut mantissa)?;
            digits += 1;
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                push(bytes[i], &mut mantissa)?;
                exp10 -= 1;
                digits += 1;
                i += 1;
            }
        }
        if digits == 0 {
            return Err(syntax());
        }
        // `E` alone is the exa suffix; it is an exponent only when digits follow.
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            let mut j = i + 1;
            let mut exp_negative = false;
            if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                exp_negative = bytes[j] == b'-';
                j += 1;
            }
            if j < bytes.len() && bytes[j].is_ascii_digit() {
                let mut exp: i64 = 0;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    exp = exp * 10 + i64::from(bytes[j] - b'0');
                    if exp > 1000 {
                        return Err(QuantityError::Overflow(s.to_string()));
                    }
                    j += 1;
                }
                if j != bytes.len() {
                    // Kubernetes does not allow a suffix after an exponent.
                    return Err(syntax());
                }
                exp10 += if exp_negative { -exp } else { exp };
                return Ok(ParsedQuantity {
                    negative,
                    mantissa,
                    exp10: exp10 as i32,
                    exp2: 0,
                });
            }
        }
        let suffix = &s[i..];
        let (e10, e2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other if other.chars().all(|c| c.is_ascii_alphabetic()) => {
                return Err(QuantityError::Suffix(s.to_string(), other.to_string()));
            }
            _ => return Err(syntax()),
        };
        Ok(ParsedQuantity {
            negative,
            mantissa,
            exp10: (exp10 + e10) as i32,
            exp2: e2,
        })
    }

    /// The quantity in thousandths, rounded up: CPU `"250m"` → 250, `"1.5"` → 1500.
    pub fn millis(&self) -> Result<i64, QuantityError> {
        Self::parse(&self.0)?.scaled(3, &self.0)
    }

    /// The quantity in whole units, rounded up: memory `"128Mi"` → 134217728, `"1G"` → 10^9.
    pub fn value(&self) -> Result<i64, QuantityError> {
        Self::parse(&self.0)?.scaled(0, &self.0)
    }

    /// Parses and rejects negative values, as every resource request and limit must be.
    pub fn check_non_negative(&self) -> Result<ParsedQuantity, QuantityError> {
        let parsed = Self::parse(&self.0)?;
        if parsed.is_negative() {
            return Err(QuantityError::Negative(self.0.clone()));
        }
        // Reject values no consumer could represent, so an admitted object never fails later.
        parsed.scaled(3, &self.0)?;
        Ok(parsed)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_string())
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Kubernetes accepts `cpu: 1` and `memory: 1e9` as bare numbers; normalize them to
        // their string spelling so every stored quantity is a string.
        struct QuantityVisitor;
        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity string or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::custom("quantity must be a finite number"));
                }
                Ok(Quantity(v.to_string()))
            }
        }
        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::new(s)
    }

    #[test]
    fn millicores_are_read_as_thousandths() {
        assert_eq!(q("250m").millis(), Ok(250));
        assert_eq!(q("1").millis(), Ok(1000));
        assert_eq!(q("1.5").millis(), Ok(1500));
        assert_eq!(q("0.1").millis(), Ok(100));
    }

    #[test]
    fn fractions_of_a_millicore_round_up() {
        assert_eq!(q("0.0001").millis(), Ok(1));
        assert_eq!(q("1500u").millis(), Ok(2));
        assert_eq!(q("1n").millis(), Ok(1));
    }

    #[test]
    fn binary_and_decimal_suffixes_give_bytes() {
        assert_eq!(q("128Mi").value(), Ok(134_217_728));
        assert_eq!(q("1.5Gi").value(), Ok(1_610_612_736));
        assert_eq!(q("1G").value(), Ok(1_000_000_000));
        assert_eq!(q("1Ki").value(), Ok(1024));
        assert_eq!(q("2k").value(), Ok(2000));
        assert_eq!(q("1E").value(), Ok(1_000_000_000_000_000_000));
    }

    #[test]
    fn exponents_are_supported_and_e_alone_is_exa() {
        assert_eq!(q("1e3").value(), Ok(1000));
        assert_eq!(q("1E3").value(), Ok(1000));
        assert_eq!(q("5e-1").millis(), Ok(500));
        assert_eq!(q("1.5e+2").value(), Ok(150));
    }

    #[test]
    fn whole_units_round_up() {
        assert_eq!(q("100m").value(), Ok(1));
        assert_eq!(q("0.5").value(), Ok(1));
    }

    #[test]
    fn garbage_is_rejected_with_a_clear_message() {
        for s in ["", "abc", "1.2.3", "Mi", "1 Mi", ".", "1e", "1e3Mi", "--1"] {
            assert!(Quantity::parse(s).is_err(), "{s:?} should be rejected");
        }
        let err = q("12Xi").value().unwrap_err().to_string();
        assert!(err.contains("unknown suffix \"Xi\""), "{err}");
    }

    #[test]
    fn negative_quantities_parse_but_fail_the_resource_check() {
        assert_eq!(q("-1").millis(), Ok(-1000));
        let err = q("-100m").check_non_negative().unwrap_err();
        assert_eq!(err.to_string(), "quantity \"-100m\" must not be negative");
        assert!(q("-0").check_non_negative().is_ok());
    }

    #[test]
    fn overflow_is_an_error_not_a_wraparound() {
        assert!(matches!(
            q("100Ei").value(),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            q("1e400").value(),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            q("99999999999999999999999999999999999999999").value(),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn numbers_deserialize_into_their_string_form() {
        let v: Quantity = serde_json::from_str("1").unwrap();
        assert_eq!(v, q("1"));
        let v: Quantity = serde_json::from_str("0.5").unwrap();
        assert_eq!(v, q("0.5"));
        let v: Quantity = serde_json::from_str("\"2Gi\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"2Gi\"");
    }
}
