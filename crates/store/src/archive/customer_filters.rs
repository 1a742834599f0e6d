//! The filters of the customer list (`GET /customers`), which reports, exports, the
//! duplicate search and the data-quality report take too; `customer_search` turns
//! them into SQL.

use crate::domain::attribute::FilterOp;
use crate::domain::category::CategoryCode;
use crate::domain::customer::CustomerStatus;
use crate::domain::FieldError;

#[derive(Debug, Clone)]
pub struct CategoryFilter {
    pub scheme: String,
    pub code: CategoryCode,
}

/// `attr=KEY:OP:VALUE` as given; typed once the key's definition is known.
#[derive(Debug, Clone)]
pub struct AttributeFilter {
    pub key: String,
    pub op: FilterOp,
    pub value: String,
}

/// The filters of `GET /customers`, which the reports take too.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Every filter must hold (AND); each includes the category's subtree.
    pub categories: Vec<CategoryFilter>,
    /// Every filter must hold (AND), compared by the attribute's type.
    pub attributes: Vec<AttributeFilter>,
    /// Customers with no category in these schemes.
    pub unclassified: Vec<String>,
    /// Substring of code, name or short name, case-insensitive for ASCII.
    pub text: Option<String>,
    pub status: Option<CustomerStatus>,
    /// Every one must be missing (AND): a field, or a value of the customer's own.
    pub missing: Vec<Missing>,
    /// Customers created before the last this many days with no order (a positive sale) in them.
    pub dormant_days: Option<i64>,
    /// Customers with (true) or without (false) a category in any scheme.
    pub classified: Option<bool>,
    /// Only the customers a restricted key may see (set from the caller, never from a query).
    pub restriction: Option<std::sync::Arc<crate::domain::restriction::Restriction>>,
}

impl Filters {
    /// Limits the customers to those a restricted key may see. A scheme restricted to
    /// one subtree becomes a category filter, which says the same and lets its members
    /// drive a list page as `category=` would; the restriction's own condition is
    /// needed only where a scheme has several subtrees.
    pub fn restrict_to(&mut self, restriction: Option<std::sync::Arc<crate::domain::restriction::Restriction>>) {
        let Some(restriction) = restriction else { return };
        let mut said_by_categories = true;
        for (scheme, roots) in restriction.schemes() {
            match roots {
                [root] if !self.categories.iter().any(|filter| filter.scheme == scheme && filter.code == *root) => {
                    self.categories.push(CategoryFilter { scheme: scheme.to_string(), code: root.clone() });
                }
                [_] => {}
                _ => said_by_categories = false,
            }
        }
        if !said_by_categories {
            self.restriction = Some(restriction);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
            && self.unclassified.is_empty()
            && self.text.is_none()
            && self.status.is_none()
            && self.attributes.is_empty()
            && self.missing.is_empty()
            && self.dormant_days.is_none()
            && self.classified.is_none()
            && self.restriction.is_none()
    }
}

/// What `missing=` asks to be absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// An optional field of the customer, by its column.
    Field(&'static str),
    /// A value of this attribute set on the customer (a default does not count).
    Attribute(String),
}

impl Missing {
    /// The optional fields `missing=` names.
    pub const FIELDS: [&'static str; 7] = ["short_name", "tax_id", "contact_name", "phone", "email", "address", "note"];

    /// `tax_id` or `attr:KEY`.
    pub fn parse(text: &str) -> Result<Missing, FieldError> {
        if let Some(key) = text.strip_prefix(crate::domain::archive::ATTRIBUTE_PREFIX) {
            return Ok(Missing::Attribute(key.to_string()));
        }
        Missing::FIELDS.iter().find(|field| **field == text).map(|field| Missing::Field(field)).ok_or_else(|| {
            FieldError::new("missing", format!("{text:?} is not one of {} or attr:KEY", Missing::FIELDS.join(", ")))
        })
    }
}
