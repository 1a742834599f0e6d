//! The customer archive (客户档案): codes, the unified social credit code, contacts.

use std::fmt;
use std::str::FromStr;

use super::{clean_optional_text, FieldError};

/// The longest text of each free-text field, in characters.
pub const NAME_MAX: usize = 200;
pub const SHORT_NAME_MAX: usize = 100;
pub const CONTACT_MAX: usize = 100;
pub const ADDRESS_MAX: usize = 500;
pub const NOTE_MAX: usize = 2000;

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$`, unique, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerCode(String);

impl CustomerCode {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let bytes = text.as_bytes();
        let valid = (1..=40).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(text.to_string()))
        } else {
            Err(FieldError::new(field, "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 31 characters of a unified social credit code (统一社会信用代码): digits and
/// capitals without I, O, S, V and Z.
const CREDIT_CODE_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights 3^(i) mod 31 of the first 17 positions, per GB 32100-2015.
const CREDIT_CODE_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// An 18-character unified social credit code whose check character is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxId(String);

impl TaxId {
    /// Accepts lower-case letters and surrounding blanks, stores the canonical upper-case form.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let code = text.trim().to_ascii_uppercase();
        if code.len() != 18 || !code.is_ascii() {
            return Err(FieldError::new(field, "must be an 18-character unified social credit code"));
        }
        let values: Option<Vec<u32>> =
            code.bytes().map(|b| CREDIT_CODE_CHARSET.iter().position(|&c| c == b).map(|p| p as u32)).collect();
        let Some(values) = values else {
            return Err(FieldError::new(field, "may contain only 0-9 and A-Y without I, O, S, V, Z"));
        };
        let expected = Self::check_value(&values[..17]);
        if values[17] != expected {
            return Err(FieldError::new(
                field,
                format!("check character should be {} (GB 32100-2015)", CREDIT_CODE_CHARSET[expected as usize] as char),
            ));
        }
        Ok(Self(code))
    }

    fn check_value(first17: &[u32]) -> u32 {
        let sum: u32 = first17.iter().zip(CREDIT_CODE_WEIGHTS).map(|(v, w)| v * w).sum();
        (31 - sum % 31) % 31
    }

    /// Completes 17 valid characters with their check character (for demo data).
    pub fn with_check_character(first17: &str) -> Option<Self> {
        let values: Option<Vec<u32>> =
            first17.bytes().map(|b| CREDIT_CODE_CHARSET.iter().position(|&c| c == b).map(|p| p as u32)).collect();
        let values = values.filter(|v| v.len() == 17)?;
        let check = CREDIT_CODE_CHARSET[Self::check_value(&values) as usize] as char;
        Some(Self(format!("{first17}{check}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

labelled_enum! {
    pub enum CustomerStatus {
        Active = "active",
        Inactive = "inactive",
    }
}

impl FromStr for CustomerStatus {
    type Err = FieldError;

    fn from_str(text: &str) -> Result<Self, FieldError> {
        Self::from_label(text).ok_or_else(|| FieldError::new("status", "must be active or inactive"))
    }
}

/// A plausible e-mail address: one `@`, a dotted domain, no blanks; at most 254 characters.
pub fn parse_email(field: &str, text: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(email) = clean_optional_text(field, text, 254)? else { return Ok(None) };
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(Some(email))
    } else {
        Err(FieldError::new(field, "must be an e-mail address such as name@example.com"))
    }
}

/// A phone number as people write them: `13800138000`, `010-6275 1234`,
/// `+86 (21) 5081-2345 ext. 8`: digits with `+ - ( ) .`, blanks and an extension;
/// 5 to 20 digits, at most 40 characters.
pub fn parse_phone(field: &str, text: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(phone) = clean_optional_text(field, text, 40)? else { return Ok(None) };
    let (number, extension) = match phone.to_ascii_lowercase().split_once("ext") {
        Some((number, extension)) => (number.to_string(), Some(extension.trim_start_matches('.').trim().to_string())),
        None => (phone.clone(), None),
    };
    let number_ok = number.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && !number.trim_start().get(1..).unwrap_or("").contains('+');
    let extension_ok = extension.as_deref().is_none_or(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()));
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if number_ok && extension_ok && (5..=20).contains(&digits) {
        Ok(Some(phone))
    } else {
        Err(FieldError::new(
            field,
            "must be a phone number: 5 to 20 digits with + - ( ) . or blanks, and an optional ext",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_codes() {
        for ok in ["C0001", "a", "ACME-01.cn_x", &"A".repeat(40)] {
            assert!(CustomerCode::parse("code", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-C1", ".C1", "C 1", "客户1", &"A".repeat(41)] {
            assert!(CustomerCode::parse("code", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn real_credit_codes_pass_and_one_changed_character_fails() {
        // Published codes of well-known companies.
        for real in ["91350100M000100Y43", "911100001000009992", "91110000802100433B", "91440300708461136T"] {
            assert_eq!(TaxId::parse("tax_id", real).unwrap().as_str(), real, "{real}");
        }
        assert_eq!(TaxId::parse("tax_id", " 91350100m000100y43 ").unwrap().as_str(), "91350100M000100Y43");
        let error = TaxId::parse("tax_id", "91350100M000100Y44").unwrap_err();
        assert!(error.message.contains("check character should be 3"), "{}", error.message);
        assert!(TaxId::parse("tax_id", "91350100M000200Y43").is_err(), "a changed body character breaks the check");
        assert!(TaxId::parse("tax_id", "91350100M00010OY43").is_err(), "O is not in the alphabet");
        assert!(TaxId::parse("tax_id", "91350100M000100Y4").is_err());
    }

    #[test]
    fn check_character_can_be_completed() {
        let made = TaxId::with_check_character("91350100M000100Y4").unwrap();
        assert_eq!(made.as_str(), "91350100M000100Y43");
        assert!(TaxId::with_check_character("short").is_none());
    }

    #[test]
    fn emails() {
        assert_eq!(parse_email("email", Some(" li@example.com ")).unwrap().as_deref(), Some("li@example.com"));
        assert_eq!(parse_email("email", Some("")).unwrap(), None);
        for bad in ["li", "li@", "@example.com", "li@example", "li@@example.com", "li @example.com", "li@example.com."]
        {
            assert!(parse_email("email", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        for ok in ["13800138000", "010-6275 1234", "+86 (21) 5081-2345 ext. 8", "+86 138 0013 8000"] {
            assert!(parse_phone("phone", Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["1234", "phone", "138-0013-800a", "+86+138", "12345 ext"] {
            assert!(parse_phone("phone", Some(bad)).is_err(), "{bad}");
        }
    }
}
