//! Pure domain types: parsing turns untrusted text into values that cannot be wrong.
//! Nothing here does I/O.

/// An enum written as fixed lowercase labels in JSON, in OpenAPI (as an enum) and in
/// text columns. Rows read it with `#[diesel(deserialize_as = String)]`: a label
/// that is not one of these makes the row unreadable (corrupt), never a default.
macro_rules! labelled_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        // utoipa does not see a `rename` whose value comes from a macro argument, so the
        // labels must be the variants in snake_case (a test holds them to it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            pub const LABELS: &'static [&'static str] = &[$($label),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }

            pub fn from_label(text: &str) -> Option<Self> {
                match text {
                    $($label => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                Self::from_label(&text).ok_or_else(|| format!("{text:?} is not a {} (one of {})", stringify!($name), Self::LABELS.join(", ")))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.as_str().to_string()
            }
        }
    };
}

pub mod api_key;
pub mod archive;
pub mod attribute;
pub mod category;
pub mod code_rule;
pub mod customer;
pub mod duplicates;
pub mod event;
pub mod explanation;
pub mod formula;
pub mod history;
pub mod import;
pub mod pending;
pub mod ranking;
pub mod report;
pub mod restriction;
pub mod rule;
pub mod run;
pub mod sales;
pub mod sales_report;
pub mod schedule;
pub mod scheme;
pub mod tier_policy;
pub mod webhook;

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

/// Moments the service takes (as-of times, sales, rule values): the years 1971 to
/// 2037. MySQL's client protocol, as Diesel binds a timestamp, carries only the
/// TIMESTAMP range (1970 to 2038-01-19) and turns anything else into NULL; a
/// year's margin keeps the 12-month window of an as-of time inside it too.
pub fn moment_in_range(at: chrono::NaiveDateTime) -> bool {
    (1971..=2037).contains(&chrono::Datelike::year(&at))
}

/// How [`moment_in_range`] is put in messages.
pub const MOMENT_RANGE: &str = "between 1971-01-01 and 2037-12-31";

/// A JSON number as a whole number: `5` and `5.0` alike, as JSON Schema counts
/// both as integers and many clients send the second. `5.5` and numbers beyond
/// ±2^53 (where a float no longer tells whole numbers apart) are not.
pub fn whole_number(number: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    number.as_i64().or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT).map(|f| f as i64))
}

/// Serde's reading of an integer field through [`whole_number`]; for
/// `#[serde(deserialize_with = …)]` on `i32`/`i64` request fields.
pub fn deserialize_whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::Deserialize;
    whole_of::<T, D::Error>(serde_json::Number::deserialize(deserializer)?)
}

/// [`deserialize_whole`] for an optional field (`null` is `None`).
pub fn deserialize_optional_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::Deserialize;
    Option::<serde_json::Number>::deserialize(deserializer)?.map(whole_of::<T, D::Error>).transpose()
}

fn whole_of<T: TryFrom<i64>, E: serde::de::Error>(number: serde_json::Number) -> Result<T, E> {
    whole_number(&number)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| E::custom(format!("expected a whole number in range, found {number}")))
}

/// Trims and length-checks a free-text value counted in characters (not bytes),
/// rejecting control characters that would corrupt CSV exports and logs.
pub fn clean_text(field: &str, raw: &str, min: usize, max: usize) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(FieldError::new(
            field,
            if min == 1 { "must not be empty".to_string() } else { format!("must have at least {min} characters") },
        ));
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

    fn labels_are_what_serde_writes<
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
    >(
        labels: &[&str],
        from_label: fn(&str) -> Option<T>,
    ) {
        for label in labels {
            let value = from_label(label).expect("every label parses");
            assert_eq!(serde_json::to_value(&value).unwrap(), serde_json::json!(label));
            assert_eq!(serde_json::from_value::<T>(serde_json::json!(label)).unwrap(), value);
        }
        assert!(from_label("Unknown").is_none());
    }

    #[test]
    fn labelled_enums_write_their_labels() {
        labels_are_what_serde_writes(customer::CustomerStatus::LABELS, customer::CustomerStatus::from_label);
        labels_are_what_serde_writes(history::Source::LABELS, history::Source::from_label);
        labels_are_what_serde_writes(history::Direction::LABELS, history::Direction::from_label);
        labels_are_what_serde_writes(sales_report::SalesBasis::LABELS, sales_report::SalesBasis::from_label);
        labels_are_what_serde_writes(sales_report::Interval::LABELS, sales_report::Interval::from_label);
        labels_are_what_serde_writes(run::RunStatus::LABELS, run::RunStatus::from_label);
        labels_are_what_serde_writes(run::Trigger::LABELS, run::Trigger::from_label);
        labels_are_what_serde_writes(run::ChangeOutcome::LABELS, run::ChangeOutcome::from_label);
        labels_are_what_serde_writes(webhook::DeliveryOutcome::LABELS, webhook::DeliveryOutcome::from_label);
        labels_are_what_serde_writes(pending::PendingStatus::LABELS, pending::PendingStatus::from_label);
        assert_eq!(
            run::RunStatus::try_from("done".to_string()).unwrap_err(),
            "\"done\" is not a RunStatus (one of running, completed, failed, abandoned, cancelled, interrupted)"
        );
    }

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

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(whole_number(&number("5")), Some(5));
        assert_eq!(whole_number(&number("5.0")), Some(5));
        assert_eq!(whole_number(&number("-3.0")), Some(-3));
        assert_eq!(whole_number(&number("1e3")), Some(1000));
        assert_eq!(whole_number(&number("5.5")), None);
        assert_eq!(whole_number(&number("1e300")), None);
    }
}
