//! Pure domain types: parsing turns untrusted text into values that cannot be wrong.
//! Nothing here does I/O.

pub mod api_key;
pub mod attribute;
pub mod category;
pub mod code_rule;
pub mod customer;
pub mod rule;
pub mod sales;
pub mod scheme;

use serde::Serialize;

/// One invalid input field, as listed in a problem's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Name (or JSON pointer) of the offending field.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Trims and length-checks a free-text value counted in characters (not bytes),
/// rejecting control characters that would corrupt CSV exports and logs.
pub fn clean_text(field: &str, raw: &str, min: usize, max: usize) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(FieldError::new(field, if min == 1 { "must not be empty".to_string() } else { format!("must have at least {min} characters") }));
    }
    if len > max {
        return Err(FieldError::new(field, format!("must have at most {max} characters")));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_string())
}

/// Optional free text: blank becomes `None`.
pub fn clean_optional_text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, FieldError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => clean_text(field, text, 1, max).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_counts_characters_not_bytes() {
        let name = "华北地区客户🚀";
        assert_eq!(clean_text("name", &format!("  {name} "), 1, 7).unwrap(), name);
        assert!(clean_text("name", name, 1, 6).is_err());
        assert!(clean_text("name", "   ", 1, 10).is_err());
        assert!(clean_text("name", "a\u{0}b", 1, 10).is_err());
    }

    #[test]
    fn optional_text_blank_is_none() {
        assert_eq!(clean_optional_text("d", Some("  "), 10).unwrap(), None);
        assert_eq!(clean_optional_text("d", None, 10).unwrap(), None);
        assert_eq!(clean_optional_text("d", Some(" x "), 10).unwrap(), Some("x".into()));
    }
}
