//! Sales facts: exact money and the external ids that make ingestion idempotent.

use std::fmt;

use super::FieldError;

/// An amount of money in cents. Parsed from decimal text, never through floating
/// point; negative amounts are refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// ±10^15 yuan: far beyond any order, far inside `i64` cents even when summed.
const MAX_UNITS: i64 = 1_000_000_000_000_000;

impl Money {
    pub fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// `123`, `-123.4`, `0.05`: at most two decimal places.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not an amount with at most two decimal places");
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (units, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty()
            || !all_digits(units)
            || !all_digits(fraction)
            || fraction.len() > 2
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(invalid());
        }
        let units: i64 = units.parse().map_err(|_| invalid())?;
        if units >= MAX_UNITS {
            return Err(format!("{text:?} is too large"));
        }
        let cents = units * 100 + format!("{fraction:0<2}").parse::<i64>().map_err(|_| invalid())?;
        Ok(Money(if negative { -cents } else { cents }))
    }

    /// A JSON amount: a number or a string, read from its exact text.
    pub fn from_json_text(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(inner) => Self::parse(inner.trim()),
            None if raw.contains(['e', 'E']) => Err(format!("{raw} is not an amount with at most two decimal places")),
            None => Self::parse(raw),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let cents = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", cents / 100, cents % 100)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// The sender's id of a transaction: 1–100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let length = raw.chars().count();
        if length == 0 || length > 100 || raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err(FieldError::new(
                field,
                "must have 1 to 100 characters, without control characters or surrounding blanks",
            ));
        }
        Ok(ExternalId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The 12-month window ends at `as_of` and starts (exclusively) 12 calendar months before.
pub fn window_start(as_of: chrono::NaiveDateTime) -> chrono::NaiveDateTime {
    as_of.checked_sub_months(chrono::Months::new(12)).unwrap_or(chrono::NaiveDateTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(Money::parse("123").unwrap().cents(), 12300);
        assert_eq!(Money::parse("0.1").unwrap().cents(), 10);
        assert_eq!(Money::parse("0.05").unwrap().cents(), 5);
        assert_eq!(Money::parse("-12.34").unwrap().cents(), -1234);
        assert_eq!(Money::from_json_text("\"1000000.01\"").unwrap().cents(), 100_000_001);
        assert_eq!(Money::from_json_text("19.99").unwrap().to_string(), "19.99");
        assert_eq!(Money::from_cents(-5).to_string(), "-0.05");
        for bad in ["", "1.234", "1.", ".5", "abc", "1,5", "+1", "--1", "1e3", "1000000000000000"] {
            assert!(Money::from_json_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_ids_are_bounded() {
        assert!(ExternalId::parse("id", "SO-2026-000001").is_ok());
        assert!(ExternalId::parse("id", "").is_err());
        assert!(ExternalId::parse("id", " x").is_err());
        assert!(ExternalId::parse("id", &"x".repeat(101)).is_err());
    }
}
