//! The columns of an archive file (客户档案 as a spreadsheet): what an export writes and
//! an import reads. A customer's fields, then `category:SCHEME` with the category code
//! it holds there, then `attr:KEY` with a value of the attribute's type.

/// Prefix of a column holding a customer's category code in a scheme.
pub const CATEGORY_PREFIX: &str = "category:";

/// Prefix of a column holding a customer's value of an attribute.
pub const ATTRIBUTE_PREFIX: &str = "attr:";

/// A customer field as a column, in the order an export writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Code,
    Name,
    ShortName,
    TaxId,
    ContactName,
    Phone,
    Email,
    Address,
    Status,
    Note,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::Code,
        Field::Name,
        Field::ShortName,
        Field::TaxId,
        Field::ContactName,
        Field::Phone,
        Field::Email,
        Field::Address,
        Field::Status,
        Field::Note,
    ];

    /// The column's header: the field's name in the JSON of a customer.
    pub fn header(self) -> &'static str {
        match self {
            Field::Code => "code",
            Field::Name => "name",
            Field::ShortName => "short_name",
            Field::TaxId => "tax_id",
            Field::ContactName => "contact_name",
            Field::Phone => "phone",
            Field::Email => "email",
            Field::Address => "address",
            Field::Status => "status",
            Field::Note => "note",
        }
    }
}

/// A value in an archive file, typed so that a workbook and NDJSON keep numbers and
/// flags as such; CSV writes each as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(serde_json::Number),
    Boolean(bool),
}

impl Value {
    /// An attribute value as its snapshot holds it (text, number, flag, or a date as text).
    pub fn of_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::String(text) => Value::Text(text.clone()),
            serde_json::Value::Number(number) => Value::Number(number.clone()),
            serde_json::Value::Bool(flag) => Value::Boolean(*flag),
            other => Value::Text(other.to_string()),
        }
    }

    /// As a CSV cell writes it.
    pub fn text(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Boolean(flag) => flag.to_string(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(text) => serde_json::Value::String(text.clone()),
            Value::Number(number) => serde_json::Value::Number(number.clone()),
            Value::Boolean(flag) => serde_json::Value::Bool(*flag),
        }
    }
}

/// The columns of an export: every field, every scheme's category, every attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Scheme codes, in order.
    pub schemes: Vec<String>,
    /// Attribute keys, in order.
    pub attributes: Vec<String>,
}

impl Layout {
    pub fn header(&self) -> Vec<String> {
        Field::ALL
            .iter()
            .map(|field| field.header().to_string())
            .chain(self.schemes.iter().map(|scheme| format!("{CATEGORY_PREFIX}{scheme}")))
            .chain(self.attributes.iter().map(|key| format!("{ATTRIBUTE_PREFIX}{key}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_fields_then_categories_then_attributes() {
        let layout = Layout { schemes: vec!["REGION".into(), "TIER".into()], attributes: vec!["credit_limit".into()] };
        assert_eq!(
            layout.header(),
            [
                "code",
                "name",
                "short_name",
                "tax_id",
                "contact_name",
                "phone",
                "email",
                "address",
                "status",
                "note",
                "category:REGION",
                "category:TIER",
                "attr:credit_limit"
            ]
        );
    }

    #[test]
    fn values_keep_their_type_and_write_as_text() {
        let number = Value::of_json(&serde_json::json!(0.15));
        assert_eq!((number.text(), number.json()), ("0.15".to_string(), serde_json::json!(0.15)));
        assert_eq!(Value::of_json(&serde_json::json!(true)).text(), "true");
        assert_eq!(Value::of_json(&serde_json::json!("2026-01-31")), Value::Text("2026-01-31".into()));
    }
}
