//! Schemas of the OpenAPI document written by hand, where a type's own derivation
//! would say less than the service accepts or answers (values typed by their
//! definition, rule conditions, files and streams, the error codes).

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::openapi::{Ref, RefOr};

/// An attribute value as JSON of its definition's type: a string (string, enum,
/// and dates as `YYYY-MM-DD`), a number (integer, decimal) or a boolean. Used
/// through `#[schema(value_type = AttributeValue)]`, for values, defaults and bounds.
pub struct AttributeValue;

fn attribute_value_schema(nullable: bool) -> RefOr<Schema> {
    let kind = |t: Type, description: &str| ObjectBuilder::new().schema_type(t).description(Some(description)).build();
    let value = OneOfBuilder::new()
        .item(kind(Type::String, "string or enum option; a date as YYYY-MM-DD"))
        .item(kind(Type::Number, "integer or decimal"))
        .item(kind(Type::Boolean, "boolean"));
    match nullable {
        false => value.description(Some("A value of the attribute's type")).into(),
        true => value
            .item(kind(Type::Null, "removes the value"))
            .description(Some("A value of the attribute's type, or null to remove it"))
            .into(),
    }
}

impl utoipa::PartialSchema for AttributeValue {
    fn schema() -> RefOr<Schema> {
        attribute_value_schema(false)
    }
}

/// [`AttributeValue`] or `null`, in changes where `null` removes a value.
pub struct AttributeValueOrNull;

impl utoipa::PartialSchema for AttributeValueOrNull {
    fn schema() -> RefOr<Schema> {
        attribute_value_schema(true)
    }
}

/// A rule condition: a group (`all`, `any`, `not`) or a leaf comparison; see
/// `domain::rule` for its limits, which the schema states too.
pub struct Condition;

impl utoipa::PartialSchema for Condition {
    fn schema() -> RefOr<Schema> {
        use crate::domain::rule::{MAX_DEPTH, MAX_LIST, MAX_NODES};
        let itself = || Ref::from_schema_name("Condition");
        let group = |name: &str, description: &str| {
            ObjectBuilder::new()
                .property(name, ArrayBuilder::new().items(itself()).min_items(Some(1)))
                .required(name)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .description(Some(description))
                .build()
        };
        let operators = crate::domain::rule::Op::NAMED.map(|(name, _)| name);
        let leaf = ObjectBuilder::new()
            .property(
                "field",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(crate::domain::rule::field_pattern()))
                    .description(Some("A metric, a customer field, an RFM score (`rfm_r`, `rfm_f`, `rfm_m`, `rfm`), `attr.<key>`, `category.<SCHEME>`, or `percentile(<numeric field>)` / `cumulative_share(<numeric field>)`")),
            )
            .required("field")
            .property("op", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(operators)))
            .required("op")
            .property(
                "value",
                ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some(format!(
                    "Of the field's type: a scalar; an array of 1–{MAX_LIST} for in/not_in; [low, high] for between; true or false for is_null; for contains/starts_with/ends_with (on code, name, short_name, tax_id and string attributes) the text to look for, case-insensitive for Latin letters, `%` and `_` meaning themselves"
                ))),
            )
            .required("value")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some("A comparison"))
            .build();
        let not = ObjectBuilder::new()
            .property("not", itself())
            .required("not")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build();
        OneOfBuilder::new()
            .item(group("all", "Every condition holds"))
            .item(group("any", "At least one condition holds"))
            .item(not)
            .item(leaf)
            .description(Some(format!(
                "At most {MAX_NODES} groups and leaves, nested at most {MAX_DEPTH} deep, 1,000 values and 32 KiB of JSON; a malformed or larger one is refused with 422 `invalid_condition` and a JSON pointer"
            )))
            .into()
    }
}

/// A moment as a query or body takes it: an RFC 3339 time, or a date (its midnight
/// UTC), in the years 1971–2037 (see `domain::moment_in_range`).
pub struct Moment;

impl utoipa::PartialSchema for Moment {
    fn schema() -> RefOr<Schema> {
        // The pattern states the years taken (1971–2037), which a format cannot.
        let string = |format: KnownFormat, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
                .pattern(Some(r"^(197[1-9]|19[89][0-9]|20[0-2][0-9]|203[0-7])-"))
                .description(Some(description))
                .build()
        };
        OneOfBuilder::new()
            .item(string(KnownFormat::DateTime, "RFC 3339 time, e.g. 2026-11-20T10:30:00+08:00"))
            .item(string(KnownFormat::Date, "a date, e.g. 2026-11-20: its midnight UTC"))
            .into()
    }
}

/// A report or an export as an .xlsx workbook.
pub struct Workbook;

impl utoipa::PartialSchema for Workbook {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("An .xlsx workbook: the header row frozen and bold, numbers as number cells (an export of more than 1,048,575 customers goes on to further sheets)"))
            .into()
    }
}

/// A report or an export as CSV.
pub struct CsvTable;

impl utoipa::PartialSchema for CsvTable {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("UTF-8 with a byte-order mark, a header row of the JSON field names, RFC 4180 quoting and CRLF line ends"))
            .into()
    }
}

/// An export as NDJSON.
pub struct NdjsonLines;

impl utoipa::PartialSchema for NdjsonLines {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("One JSON object a line, keyed by the column names (`code`, …, `category:TIER`, `attr:credit_limit`); empty cells are left out"))
            .into()
    }
}

/// A file sent to an import.
pub struct UploadedFile;

impl utoipa::PartialSchema for UploadedFile {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some(
                "The file as it is: CSV in UTF-8 (with or without a byte-order mark) or GB18030 (`charset=gb18030`, or found when the bytes are not UTF-8), \
                 NDJSON (one object a line, keyed by column), or an .xlsx workbook (its first sheet)",
            ))
            .into()
    }
}

/// A file sent from a browser's form: `multipart/form-data` with one part, `file`.
pub struct MultipartUpload;

impl utoipa::PartialSchema for MultipartUpload {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "file",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                    .description(Some("The file, read as its name's extension says (.csv, .xlsx, .ndjson or .jsonl), else as the part's content type says, else by its first bytes (a zip is a workbook, `{` starts NDJSON, anything else is CSV)")),
            )
            .required("file")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some("A browser's file input (`FormData` with one field, `file`); any other part is refused with `invalid_multipart`"))
            .into()
    }
}

/// Components whose schema is written by hand (`PartialSchema` above) are named after their type.
/// A rule's condition evaluated for one customer (`GET …/explanation`): the condition
/// as written, each node with `holds`, each leaf with the customer's value and its
/// distance from flipping.
pub struct ConditionVerdict;

impl utoipa::PartialSchema for ConditionVerdict {
    fn schema() -> RefOr<Schema> {
        let itself = || Ref::from_schema_name("ConditionVerdict");
        let any = |description: &str| {
            ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some(description)).build()
        };
        let text =
            |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description)).build();
        let ranks = ObjectBuilder::new()
            .property("field", text("The field the relative leaf ranks"))
            .property("from", any("The lowest value that holds today (null: none does)"))
            .property("to", any("The highest value that holds today"))
            .description(Some(
                "A relative leaf (`percentile(…)`, `cumulative_share(…)`, `rfm_*`) resolved at today's ranks",
            ));
        let rule_id = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("In `distance`: the rule the leaf belongs to"));
        ObjectBuilder::new()
            .property(
                "holds",
                ObjectBuilder::new().schema_type(Type::Boolean).description(Some("Whether the node holds for the customer now")),
            )
            .required("holds")
            .property("all", ArrayBuilder::new().items(itself()).description(Some("A group: every condition holds")))
            .property("any", ArrayBuilder::new().items(itself()).description(Some("A group: at least one condition holds")))
            .property("not", itself())
            .property("field", text("A leaf's field, as written"))
            .property("op", text("A leaf's operator, as written"))
            .property("value", any("A leaf's operand, as written"))
            .property("actual", any("The customer's value of the field (of the field it ranks, for a relative one): money as an exact decimal string; null for none"))
            .property("missing", any("A numeric leaf that fails: how far the value must move for it to hold (money as a decimal string)"))
            .property("to_spare", any("A numeric leaf that holds: how far the value may move and it still holds"))
            .property("at_todays_ranks", ranks)
            .property("rule_id", rule_id)
            .description(Some("A group (`all`, `any`, `not`) or a leaf, with whether it holds"))
            .into()
    }
}

macro_rules! named_after_type {
    ($($schema:ident),+) => {$(
        impl utoipa::ToSchema for $schema {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($schema))
            }
        }
    )+};
}

named_after_type!(
    AttributeValue,
    AttributeValueOrNull,
    Condition,
    ConditionVerdict,
    Moment,
    Workbook,
    CsvTable,
    NdjsonLines,
    UploadedFile,
    MultipartUpload
);
