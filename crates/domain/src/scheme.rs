//! Classification schemes (分类体系).

use std::fmt;

use super::FieldError;

/// `^[A-Z][A-Z0-9_]{0,31}$`, such as `INDUSTRY` or `REGION`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemeCode(String);

impl SchemeCode {
    /// What a scheme code looks like, as a regular expression without anchors.
    pub const PATTERN: &str = "[A-Z][A-Z0-9_]{0,31}";

    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let bytes = text.as_bytes();
        let valid = (1..=32).contains(&bytes.len())
            && bytes[0].is_ascii_uppercase()
            && bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
        if valid {
            Ok(Self(text.to_string()))
        } else {
            Err(FieldError::new(field, "must match ^[A-Z][A-Z0-9_]{0,31}$ (upper-case letter, then up to 31 upper-case letters, digits or '_')"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_codes() {
        assert!(SchemeCode::parse("code", "INDUSTRY").is_ok());
        assert!(SchemeCode::parse("code", "R2_D2").is_ok());
        assert!(SchemeCode::parse("code", &format!("A{}", "B".repeat(31))).is_ok());
        assert!(SchemeCode::parse("code", &format!("A{}", "B".repeat(32))).is_err());
        assert!(SchemeCode::parse("code", "industry").is_err());
        assert!(SchemeCode::parse("code", "1ABC").is_err());
        assert!(SchemeCode::parse("code", "").is_err());
        assert!(SchemeCode::parse("code", "AB-C").is_err());
    }
}
