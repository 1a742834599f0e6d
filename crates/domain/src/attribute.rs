//! Category attributes (分类属性): keys, types, definitions and typed values.
//! A definition checks a JSON value and turns it into a value that compares in SQL
//! by its type: numbers as numbers, dates as ISO dates, text as text.

use std::fmt;

use chrono::NaiveDate;
use serde_json::Value as Json;

use super::FieldError;

/// `^[a-z][a-z0-9_]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeKey(String);

impl AttributeKey {
    /// What an attribute key looks like, as a regular expression without anchors.
    pub const PATTERN: &str = "[a-z][a-z0-9_]{0,63}";

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let mut chars = raw.chars();
        let valid = raw.len() <= 64
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(FieldError::new(field, "must match ^[a-z][a-z0-9_]{0,63}$ (a lower-case letter, then up to 63 lower-case letters, digits or _)"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttributeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Integer,
    Decimal,
    Boolean,
    Date,
    Enum,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Decimal => "decimal",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Enum => "enum",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ValueType::String,
            ValueType::Integer,
            ValueType::Decimal,
            ValueType::Boolean,
            ValueType::Date,
            ValueType::Enum,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }

    /// Whether values compare in `value_number` (else in `value_text`).
    pub fn is_numeric(self) -> bool {
        matches!(self, ValueType::Integer | ValueType::Decimal | ValueType::Boolean)
    }

    fn is_ordered(self) -> bool {
        matches!(self, ValueType::Integer | ValueType::Decimal | ValueType::Date | ValueType::String)
    }
}

/// Integers beyond this lose precision in the comparison column (a double).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
/// Longest string value, in characters.
pub const STRING_MAX: usize = 500;
const OPTION_MAX: usize = 100;
const OPTIONS_MAX: usize = 200;

/// A value that satisfies its definition's type.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Text(String),
    Integer(i64),
    Decimal(f64),
    Boolean(bool),
    Date(NaiveDate),
}

impl AttributeValue {
    /// Reads `json` as a value of `value_type`, without range or option checks.
    pub fn from_json(value_type: ValueType, json: &Json) -> Result<Self, String> {
        match (value_type, json) {
            (ValueType::String | ValueType::Enum, Json::String(text)) => Ok(AttributeValue::Text(text.clone())),
            (ValueType::Integer, Json::Number(number)) => match super::whole_number(number) {
                Some(n) if n.abs() <= MAX_SAFE_INTEGER => Ok(AttributeValue::Integer(n)),
                Some(_) => Err(format!("must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}")),
                None => Err("must be a whole number".into()),
            },
            (ValueType::Decimal, Json::Number(number)) => number
                .as_f64()
                .filter(|n| n.is_finite())
                .map(AttributeValue::Decimal)
                .ok_or_else(|| "must be a finite number".into()),
            (ValueType::Boolean, Json::Bool(flag)) => Ok(AttributeValue::Boolean(*flag)),
            (ValueType::Date, Json::String(text)) => parse_date(text).map(AttributeValue::Date),
            (value_type, _) => Err(format!("must be {}", type_phrase(value_type))),
        }
    }

    /// Reads query-string text (`attr=` filters) as a value of `value_type`.
    pub fn from_text(value_type: ValueType, text: &str) -> Result<Self, String> {
        match value_type {
            ValueType::String | ValueType::Enum => Ok(AttributeValue::Text(text.to_string())),
            ValueType::Integer => match text.trim().parse::<i64>() {
                Ok(n) if n.abs() <= MAX_SAFE_INTEGER => Ok(AttributeValue::Integer(n)),
                _ => Err(format!("{text:?} is not an integer")),
            },
            ValueType::Decimal => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(AttributeValue::Decimal)
                .ok_or_else(|| format!("{text:?} is not a number")),
            ValueType::Boolean => match text.trim() {
                "true" => Ok(AttributeValue::Boolean(true)),
                "false" => Ok(AttributeValue::Boolean(false)),
                _ => Err(format!("{text:?} is not true or false")),
            },
            ValueType::Date => parse_date(text.trim()).map(AttributeValue::Date),
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            AttributeValue::Text(text) => Json::String(text.clone()),
            AttributeValue::Integer(n) => Json::from(*n),
            AttributeValue::Decimal(n) => number_json(*n),
            AttributeValue::Boolean(flag) => Json::Bool(*flag),
            AttributeValue::Date(date) => Json::String(date.format("%Y-%m-%d").to_string()),
        }
    }

    /// The comparison column `value_number`.
    pub fn number(&self) -> Option<f64> {
        match self {
            AttributeValue::Integer(n) => Some(*n as f64),
            AttributeValue::Decimal(n) => Some(*n),
            AttributeValue::Boolean(flag) => Some(if *flag { 1.0 } else { 0.0 }),
            AttributeValue::Text(_) | AttributeValue::Date(_) => None,
        }
    }

    /// The comparison column `value_text`: ISO dates order as dates do.
    pub fn text(&self) -> Option<String> {
        match self {
            AttributeValue::Text(text) => Some(text.clone()),
            AttributeValue::Date(date) => Some(date.format("%Y-%m-%d").to_string()),
            _ => None,
        }
    }
}

/// A number as JSON, whole numbers without a fraction (`0`, not `0.0`), as they were given.
fn number_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER as f64 {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| format!("{text:?} is not a date (YYYY-MM-DD)"))
}

fn type_phrase(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String => "a string",
        ValueType::Integer => "an integer",
        ValueType::Decimal => "a number",
        ValueType::Boolean => "true or false",
        ValueType::Date => "a date string (YYYY-MM-DD)",
        ValueType::Enum => "one of the options (a string)",
    }
}

/// `min`/`max`: a number, a date, or for strings a length in characters.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    Number(f64),
    Date(NaiveDate),
    Length(u64),
}

impl Limit {
    fn from_json(value_type: ValueType, json: &Json) -> Result<Self, String> {
        match value_type {
            ValueType::Integer | ValueType::Decimal => {
                json.as_f64().filter(|n| n.is_finite()).map(Limit::Number).ok_or_else(|| "must be a number".into())
            }
            ValueType::Date => json
                .as_str()
                .ok_or_else(|| "must be a date string (YYYY-MM-DD)".to_string())
                .and_then(parse_date)
                .map(Limit::Date),
            ValueType::String => match json.as_number().and_then(super::whole_number) {
                Some(n) if (0..=STRING_MAX as i64).contains(&n) => Ok(Limit::Length(n as u64)),
                _ => Err(format!("must be a length from 0 to {STRING_MAX}")),
            },
            ValueType::Boolean | ValueType::Enum => {
                Err(format!("{} attributes take no min or max", value_type.as_str()))
            }
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Limit::Number(n) => number_json(*n),
            Limit::Date(date) => Json::String(date.format("%Y-%m-%d").to_string()),
            Limit::Length(n) => Json::from(*n),
        }
    }

    fn ordering(&self, other: &Limit) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Limit::Number(a), Limit::Number(b)) => a.partial_cmp(b),
            (Limit::Date(a), Limit::Date(b)) => Some(a.cmp(b)),
            (Limit::Length(a), Limit::Length(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// A definition whose parts agree with each other: options only on enums, limits
/// only where they mean something, `min ≤ max`, and a default that passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub key: AttributeKey,
    pub label: String,
    pub value_type: ValueType,
    pub required: bool,
    pub default: Option<AttributeValue>,
    pub options: Vec<String>,
    pub min: Option<Limit>,
    pub max: Option<Limit>,
}

/// A definition as given, before its parts are checked against each other.
#[derive(Debug, Clone)]
pub struct DefinitionDraft {
    pub key: AttributeKey,
    pub label: String,
    pub value_type: ValueType,
    pub required: bool,
    pub default: Option<Json>,
    pub options: Option<Vec<String>>,
    pub min: Option<Json>,
    pub max: Option<Json>,
}

impl DefinitionDraft {
    pub fn check(self) -> Result<Definition, Vec<FieldError>> {
        let mut errors = Vec::new();
        let value_type = self.value_type;
        let options = match (value_type, self.options) {
            (ValueType::Enum, None) => {
                errors.push(FieldError::new("options", "an enum needs its options"));
                Vec::new()
            }
            (ValueType::Enum, Some(options)) => {
                if options.is_empty() {
                    errors.push(FieldError::new("options", "must not be empty"));
                }
                if options.len() > OPTIONS_MAX {
                    errors.push(FieldError::new("options", format!("at most {OPTIONS_MAX} options")));
                }
                let mut seen = std::collections::HashSet::new();
                for (i, option) in options.iter().enumerate() {
                    let length = option.chars().count();
                    if option.trim().is_empty() || length > OPTION_MAX {
                        errors.push(FieldError::new(
                            format!("options[{i}]"),
                            format!("must have 1 to {OPTION_MAX} characters"),
                        ));
                    } else if !seen.insert(option.as_str()) {
                        errors.push(FieldError::new(format!("options[{i}]"), format!("{option:?} is listed twice")));
                    }
                }
                options
            }
            (_, Some(_)) => {
                errors.push(FieldError::new("options", "only enum attributes have options"));
                Vec::new()
            }
            (_, None) => Vec::new(),
        };
        let mut limit = |field: &str, json: Option<Json>| match json {
            None | Some(Json::Null) => None,
            Some(json) => {
                Limit::from_json(value_type, &json).map_err(|message| errors.push(FieldError::new(field, message))).ok()
            }
        };
        let min = limit("min", self.min);
        let max = limit("max", self.max);
        if let (Some(low), Some(high)) = (&min, &max) {
            if low.ordering(high) == Some(std::cmp::Ordering::Greater) {
                errors.push(FieldError::new("max", "must not be below min"));
            }
        }
        let mut definition = Definition {
            key: self.key,
            label: self.label,
            value_type,
            required: self.required,
            default: None,
            options,
            min,
            max,
        };
        if errors.is_empty() {
            match self.default {
                None | Some(Json::Null) => {}
                Some(json) => match definition.check(&json) {
                    Ok(value) => definition.default = Some(value),
                    Err(message) => errors.push(FieldError::new(
                        "default",
                        format!("the default does not satisfy the definition: {message}"),
                    )),
                },
            }
        }
        if errors.is_empty() {
            Ok(definition)
        } else {
            Err(errors)
        }
    }
}

impl Definition {
    /// Checks a value against type, options and limits.
    pub fn check(&self, json: &Json) -> Result<AttributeValue, String> {
        let value = AttributeValue::from_json(self.value_type, json)?;
        self.check_value(&value)?;
        Ok(value)
    }

    /// Checks a value of the right type against options and limits.
    pub fn check_value(&self, value: &AttributeValue) -> Result<(), String> {
        let below = |limit: &Limit| match (limit, value) {
            (Limit::Number(n), v) => v.number().is_some_and(|v| v < *n),
            (Limit::Date(d), AttributeValue::Date(v)) => v < d,
            (Limit::Length(n), AttributeValue::Text(v)) => (v.chars().count() as u64) < *n,
            _ => false,
        };
        let above = |limit: &Limit| match (limit, value) {
            (Limit::Number(n), v) => v.number().is_some_and(|v| v > *n),
            (Limit::Date(d), AttributeValue::Date(v)) => v > d,
            (Limit::Length(n), AttributeValue::Text(v)) => (v.chars().count() as u64) > *n,
            _ => false,
        };
        if let AttributeValue::Text(text) = value {
            if self.value_type == ValueType::Enum && !self.options.contains(text) {
                return Err(format!("{text:?} is not one of the options {:?}", self.options));
            }
            if text.chars().count() > STRING_MAX {
                return Err(format!("must have at most {STRING_MAX} characters"));
            }
        }
        if let Some(min) = self.min.as_ref().filter(|min| below(min)) {
            return Err(match min {
                Limit::Length(n) => format!("must have at least {n} characters"),
                _ => format!("must be at least {}", min.to_json()),
            });
        }
        if let Some(max) = self.max.as_ref().filter(|max| above(max)) {
            return Err(match max {
                Limit::Length(n) => format!("must have at most {n} characters"),
                _ => format!("must be at most {}", max.to_json()),
            });
        }
        Ok(())
    }
}

/// Comparison of an `attr=KEY:OP:VALUE` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Like,
}

impl FilterOp {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "eq" => FilterOp::Eq,
            "ne" => FilterOp::Ne,
            "gt" => FilterOp::Gt,
            "gte" => FilterOp::Gte,
            "lt" => FilterOp::Lt,
            "lte" => FilterOp::Lte,
            "in" => FilterOp::In,
            "like" => FilterOp::Like,
            _ => return None,
        })
    }

    /// The SQL comparison operator; `In` and `Like` are written by the caller.
    pub fn sql(self) -> &'static str {
        match self {
            FilterOp::Eq | FilterOp::In => "=",
            FilterOp::Ne => "<>",
            FilterOp::Gt => ">",
            FilterOp::Gte => ">=",
            FilterOp::Lt => "<",
            FilterOp::Lte => "<=",
            FilterOp::Like => "LIKE",
        }
    }
}

/// What an attribute filter compares with, already typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    One(AttributeValue),
    Many(Vec<AttributeValue>),
    /// A lower-case `LIKE` pattern with `!` escaping (`LIKE_ESCAPE`); `*` in the filter is the wildcard.
    Pattern(String),
}

/// The escape character of `Operand::Pattern`: a backslash would need quoting
/// differently on MySQL and SQLite.
pub const LIKE_ESCAPE: char = '!';

/// `KEY:OP:VALUE` split into its parts (the value may itself contain `:`).
pub fn split_filter(text: &str) -> Option<(&str, &str, &str)> {
    let (key, rest) = text.split_once(':')?;
    let (op, value) = rest.split_once(':')?;
    Some((key, op, value))
}

/// Types the operand of a filter on an attribute of `value_type`. `in` takes a
/// comma-separated list; `like` matches text, with `*` as the wildcard, or as a
/// substring when there is no `*`.
pub fn parse_operand(value_type: ValueType, op: FilterOp, text: &str) -> Result<Operand, String> {
    match op {
        FilterOp::Like => {
            if !matches!(value_type, ValueType::String | ValueType::Enum) {
                return Err(format!("like compares text; this attribute is {}", value_type.as_str()));
            }
            let escaped = text.to_lowercase().replace('!', "!!").replace('%', "!%").replace('_', "!_");
            Ok(Operand::Pattern(if escaped.contains('*') { escaped.replace('*', "%") } else { format!("%{escaped}%") }))
        }
        FilterOp::In => {
            let values = text
                .split(',')
                .map(|part| AttributeValue::from_text(value_type, part))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Operand::Many(values))
        }
        FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte if !value_type.is_ordered() => {
            Err(format!("{} attributes have no order; use eq, ne or in", value_type.as_str()))
        }
        _ => AttributeValue::from_text(value_type, text).map(Operand::One),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(value_type: ValueType) -> DefinitionDraft {
        DefinitionDraft {
            key: AttributeKey::parse("key", "discount_rate").unwrap(),
            label: "折扣率".into(),
            value_type,
            required: false,
            default: None,
            options: None,
            min: None,
            max: None,
        }
    }

    #[test]
    fn keys_follow_the_pattern() {
        assert!(AttributeKey::parse("key", "a").is_ok());
        assert!(AttributeKey::parse("key", &format!("a{}", "b".repeat(63))).is_ok());
        assert!(AttributeKey::parse("key", &format!("a{}", "b".repeat(64))).is_err());
        for bad in ["", "1a", "_a", "Ab", "a-b", "折扣"] {
            assert!(AttributeKey::parse("key", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_bounds_are_inclusive() {
        let definition = DefinitionDraft {
            min: Some(json!(0)),
            max: Some(json!(0.5)),
            default: Some(json!(0.1)),
            ..draft(ValueType::Decimal)
        }
        .check()
        .unwrap();
        assert_eq!(definition.default, Some(AttributeValue::Decimal(0.1)));
        assert!(definition.check(&json!(0)).is_ok());
        assert!(definition.check(&json!(0.5)).is_ok());
        assert!(definition.check(&json!(0.5000001)).is_err());
        assert!(definition.check(&json!(-0.01)).is_err());
        assert!(definition.check(&json!("0.2")).is_err());
    }

    #[test]
    fn a_default_must_pass_its_own_definition() {
        let errors = DefinitionDraft { max: Some(json!(0.5)), default: Some(json!(0.6)), ..draft(ValueType::Decimal) }
            .check()
            .unwrap_err();
        assert_eq!(errors[0].field, "default");
        let errors =
            DefinitionDraft { options: Some(vec!["A".into()]), default: Some(json!("B")), ..draft(ValueType::Enum) }
                .check()
                .unwrap_err();
        assert_eq!(errors[0].field, "default");
    }

    #[test]
    fn enum_options_are_non_empty_and_unique() {
        assert_eq!(draft(ValueType::Enum).check().unwrap_err()[0].field, "options");
        assert_eq!(
            DefinitionDraft { options: Some(vec![]), ..draft(ValueType::Enum) }.check().unwrap_err()[0].field,
            "options"
        );
        let errors =
            DefinitionDraft { options: Some(vec!["金".into(), "银".into(), "金".into()]), ..draft(ValueType::Enum) }
                .check()
                .unwrap_err();
        assert_eq!(errors[0].field, "options[2]");
        let errors =
            DefinitionDraft { options: Some(vec!["x".into()]), ..draft(ValueType::String) }.check().unwrap_err();
        assert_eq!(errors[0].field, "options");
    }

    #[test]
    fn integers_are_whole_and_safe() {
        let definition = draft(ValueType::Integer).check().unwrap();
        assert_eq!(definition.check(&json!(10)).unwrap(), AttributeValue::Integer(10));
        assert!(definition.check(&json!(10.5)).is_err());
        assert!(definition.check(&json!(MAX_SAFE_INTEGER + 1)).is_err());
        assert!(definition.check(&json!("10")).is_err());
    }

    #[test]
    fn string_limits_count_characters() {
        let definition =
            DefinitionDraft { min: Some(json!(2)), max: Some(json!(3)), ..draft(ValueType::String) }.check().unwrap();
        assert!(definition.check(&json!("张三")).is_ok());
        assert!(definition.check(&json!("欧阳娜娜")).is_err());
        assert!(definition.check(&json!("张")).is_err());
    }

    #[test]
    fn dates_are_iso_and_bounded() {
        let definition = DefinitionDraft { min: Some(json!("2020-01-01")), ..draft(ValueType::Date) }.check().unwrap();
        assert!(definition.check(&json!("2020-01-01")).is_ok());
        assert!(definition.check(&json!("2019-12-31")).is_err());
        assert!(definition.check(&json!("2020-1-1")).is_err());
        assert!(definition.check(&json!("2020-02-30")).is_err());
        assert!(DefinitionDraft {
            min: Some(json!("2021-01-01")),
            max: Some(json!("2020-01-01")),
            ..draft(ValueType::Date)
        }
        .check()
        .is_err());
    }

    #[test]
    fn filters_type_their_operands() {
        assert_eq!(split_filter("since:gte:2024-01-01T00:00"), Some(("since", "gte", "2024-01-01T00:00")));
        assert_eq!(
            parse_operand(ValueType::Integer, FilterOp::Gt, "9").unwrap(),
            Operand::One(AttributeValue::Integer(9))
        );
        assert!(parse_operand(ValueType::Integer, FilterOp::Gt, "nine").is_err());
        assert!(parse_operand(ValueType::Boolean, FilterOp::Gt, "true").is_err());
        assert!(parse_operand(ValueType::Decimal, FilterOp::Like, "1").is_err());
        assert_eq!(parse_operand(ValueType::String, FilterOp::Like, "张*").unwrap(), Operand::Pattern("张%".into()));
        assert_eq!(parse_operand(ValueType::String, FilterOp::Like, "50%").unwrap(), Operand::Pattern("%50!%%".into()));
        assert_eq!(
            parse_operand(ValueType::Enum, FilterOp::In, "金,银").unwrap(),
            Operand::Many(vec![AttributeValue::Text("金".into()), AttributeValue::Text("银".into())])
        );
    }
}
