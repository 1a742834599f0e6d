//! The filters of `GET /customers`, which the reports, the exports, the duplicate
//! search and the data-quality report read the same way.

use crate::api::FieldErrors;
use crate::domain::attribute::{split_filter, FilterOp};
use crate::domain::category::CategoryCode;
use crate::domain::customer::CustomerStatus;
use crate::domain::FieldError;
use crate::store::archive::customer_filters::{AttributeFilter, CategoryFilter, Filters, Missing};

/// Ten years: the longest `dormant_days`.
const MAX_DORMANT_DAYS: i64 = 3650;

/// `dormant_days`: 1 to 3650 days without an order.
pub fn parse_dormant_days(text: &str) -> Result<i64, FieldError> {
    text.parse::<i64>().ok().filter(|days| (1..=MAX_DORMANT_DAYS).contains(days)).ok_or_else(|| {
        FieldError::new("dormant_days", format!("must be a whole number of days from 1 to {MAX_DORMANT_DAYS}"))
    })
}

/// The query parameters `parse_filter` reads: what a report's `ReportFilters` documents.
pub const FILTER_KEYS: [&str; 8] =
    ["category", "unclassified", "status", "q", "attr", "missing", "dormant_days", "classified"];

/// Reads one of the filters of `GET /customers` (which the reports, the exports and
/// the duplicate search share); false when `key` is not one of them.
pub fn parse_filter(key: &str, value: &str, filters: &mut Filters, errors: &mut FieldErrors) -> bool {
    match key {
        "category" => match value.split_once(':') {
            Some((scheme, code)) => {
                if let Some(code) = errors.check(CategoryCode::parse("category", code)) {
                    filters.categories.push(CategoryFilter { scheme: scheme.to_string(), code });
                }
            }
            None => errors
                .check::<()>(Err(FieldError::new("category", "must be SCHEME:CODE, e.g. REGION:01")))
                .unwrap_or(()),
        },
        "attr" => match split_filter(value) {
            Some((key, op, operand)) => match FilterOp::parse(op) {
                Some(op) => {
                    filters.attributes.push(AttributeFilter { key: key.to_string(), op, value: operand.to_string() })
                }
                None => errors
                    .check::<()>(Err(FieldError::new(
                        "attr",
                        format!("unknown operator {op:?}; use eq, ne, gt, gte, lt, lte, in or like"),
                    )))
                    .unwrap_or(()),
            },
            None => errors
                .check::<()>(Err(FieldError::new("attr", "must be KEY:OP:VALUE, e.g. discount_rate:gte:0.15")))
                .unwrap_or(()),
        },
        "unclassified" => filters.unclassified.push(value.to_string()),
        "q" => filters.text = Some(value.trim().to_string()).filter(|v| !v.is_empty()),
        "status" => filters.status = errors.check(value.parse::<CustomerStatus>()),
        "missing" => {
            if let Some(missing) = errors.check(Missing::parse(value)) {
                filters.missing.push(missing);
            }
        }
        "dormant_days" => filters.dormant_days = errors.check(parse_dormant_days(value)),
        "classified" => {
            let flag = match value {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            filters.classified =
                errors.check(flag.ok_or_else(|| FieldError::new("classified", "must be true or false")));
        }
        _ => return false,
    }
    true
}
