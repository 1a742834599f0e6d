//! Rule conditions (自动分类): JSON trees of `all`/`any`/`not` and leaves
//! `{"field", "op", "value"}`, parsed into a typed tree that cannot be malformed.
//! Every error names the bad node with a JSON pointer.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value as Json;

use super::attribute::{AttributeValue, ValueType};
use super::sales::Money;
use super::FieldError;

/// The metrics of a customer, computed from its transactions as of a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Spend12m,
    Orders12m,
    LifetimeSpend,
    LastOrderAt,
    DaysSinceLastOrder,
}

impl Metric {
    /// The metric's name in conditions and responses.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Spend12m => "spend_12m",
            Metric::Orders12m => "orders_12m",
            Metric::LifetimeSpend => "lifetime_spend",
            Metric::LastOrderAt => "last_order_at",
            Metric::DaysSinceLastOrder => "days_since_last_order",
        }
    }
}

/// Customer fields a rule may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerField {
    Code,
    Name,
    ShortName,
    Status,
    CreatedAt,
    TaxId,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Metric(Metric),
    Customer(CustomerField),
    Attribute {
        key: String,
        value_type: ValueType,
    },
    /// The customer's category in a scheme.
    Category {
        scheme: String,
    },
    /// Where the customer's value of a numeric field stands among the rule's
    /// population: `percentile(spend_12m)`, `cumulative_share(spend_12m)`.
    Ranked {
        ranking: Ranking,
        of: Box<Field>,
    },
    /// An RFM quintile score, 1–5: `rfm_r`, `rfm_f`, `rfm_m`.
    RfmScore(RfmPart),
    /// The three scores as one string, `"545"`.
    Rfm,
}

/// How a value stands among the population's values of the same field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// 0–100: the share of the rest of the population with a smaller value
    /// (`PERCENT_RANK`); equal values stand equal.
    Percentile,
    /// 0–100: the share of the population's total held by customers with this value
    /// or more (ABC analysis); a negative value (net refunds) holds nothing.
    CumulativeShare,
}

impl Ranking {
    pub fn name(self) -> &'static str {
        match self {
            Ranking::Percentile => "percentile",
            Ranking::CumulativeShare => "cumulative_share",
        }
    }
}

/// The three parts of an RFM score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RfmPart {
    Recency,
    Frequency,
    Monetary,
}

impl RfmPart {
    /// In the order of the `rfm` string.
    pub const ALL: [RfmPart; 3] = [RfmPart::Recency, RfmPart::Frequency, RfmPart::Monetary];

    /// The metric the part scores.
    pub fn metric(self) -> Metric {
        match self {
            RfmPart::Recency => Metric::DaysSinceLastOrder,
            RfmPart::Frequency => Metric::Orders12m,
            RfmPart::Monetary => Metric::Spend12m,
        }
    }

    /// Recency scores fewer days since the last order higher.
    pub fn fewer_is_better(self) -> bool {
        self == RfmPart::Recency
    }

    pub fn name(self) -> &'static str {
        match self {
            RfmPart::Recency => "rfm_r",
            RfmPart::Frequency => "rfm_f",
            RfmPart::Monetary => "rfm_m",
        }
    }
}

/// The score of each RFM part: its quintile by rank among the population's customers
/// with orders, `1 + ⌊5 × customers ranked below / customers⌋`, so that equal values
/// score equal; customers without orders score 1.
pub const RFM_SCORES: i64 = 5;

/// Whom a rule's relative fields rank against: every active customer, or the active
/// customers of a category's subtree (`REGION:01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    pub scheme: String,
    pub category: String,
}

impl Population {
    /// `SCHEME:CODE`, naming an existing category.
    pub fn parse(text: &str, catalog: &dyn Catalog) -> Result<Self, String> {
        let Some((scheme, category)) = text.split_once(':') else {
            return Err(format!("{text:?} is not SCHEME:CATEGORY, such as REGION:01"));
        };
        match catalog.category_exists(scheme, category) {
            None => Err(format!("no scheme {scheme}")),
            Some(false) => Err(format!("no category {category} in scheme {scheme}")),
            Some(true) if category.is_empty() => Err(format!("{text:?} names no category")),
            Some(true) => Ok(Population { scheme: scheme.to_string(), category: category.to_string() }),
        }
    }

    pub fn text(&self) -> String {
        format!("{}:{}", self.scheme, self.category)
    }
}

/// How a field's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Money,
    Integer,
    Decimal,
    Boolean,
    Moment,
    Date,
    Text,
    Category,
}

impl Field {
    pub fn kind(&self) -> Kind {
        match self {
            Field::Metric(Metric::Spend12m | Metric::LifetimeSpend) => Kind::Money,
            Field::Metric(Metric::Orders12m | Metric::DaysSinceLastOrder) => Kind::Integer,
            Field::Metric(Metric::LastOrderAt) | Field::Customer(CustomerField::CreatedAt) => Kind::Moment,
            Field::Customer(_) => Kind::Text,
            Field::Attribute { value_type, .. } => match value_type {
                ValueType::Integer => Kind::Integer,
                ValueType::Decimal => Kind::Decimal,
                ValueType::Boolean => Kind::Boolean,
                ValueType::Date => Kind::Date,
                ValueType::String | ValueType::Enum => Kind::Text,
            },
            Field::Category { .. } => Kind::Category,
            Field::Ranked { .. } => Kind::Decimal,
            Field::RfmScore(_) => Kind::Integer,
            Field::Rfm => Kind::Text,
        }
    }

    /// Whether the field's value depends on the rest of the population.
    pub fn is_relative(&self) -> bool {
        matches!(self, Field::Ranked { .. } | Field::RfmScore(_) | Field::Rfm)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    Between,
    IsNull,
    Under,
    /// `contains`, `starts_with`, `ends_with`: the text holds the value there
    /// (case-insensitive for Latin letters).
    Match(TextMatch),
}

impl Op {
    /// Every operator with its name in conditions, as the parser takes them; the
    /// OpenAPI enum of `Condition.op` is this table.
    pub const NAMED: [(&'static str, Op); 14] = [
        ("=", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        (">=", Op::Gte),
        ("<", Op::Lt),
        ("<=", Op::Lte),
        ("in", Op::In),
        ("not_in", Op::NotIn),
        ("between", Op::Between),
        ("is_null", Op::IsNull),
        ("under", Op::Under),
        ("contains", Op::Match(TextMatch::Anywhere)),
        ("starts_with", Op::Match(TextMatch::Start)),
        ("ends_with", Op::Match(TextMatch::End)),
    ];

    fn parse(text: &str) -> Option<Self> {
        Op::NAMED.iter().find(|(name, _)| *name == text).map(|(_, op)| *op)
    }

    /// The operators' names, separated by spaces, for messages.
    fn names() -> String {
        Op::NAMED.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(" ")
    }

    /// The SQL operator of a comparison (the others are written by the compiler).
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::Between => "BETWEEN",
            Op::IsNull => "IS NULL",
            Op::Under => "under",
            Op::Match(_) => "LIKE",
        }
    }

    fn allowed_for(self, field: &Field) -> bool {
        let kind = field.kind();
        match self {
            Op::Eq | Op::Ne | Op::IsNull => true,
            Op::In | Op::NotIn => kind != Kind::Boolean,
            Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Between => {
                matches!(kind, Kind::Money | Kind::Integer | Kind::Decimal | Kind::Moment | Kind::Date)
            }
            Op::Under => kind == Kind::Category,
            // The text of a customer or of a string attribute; an enum's values are
            // compared whole, and the RFM string is a score.
            Op::Match(_) => matches!(
                field,
                Field::Customer(
                    CustomerField::Code | CustomerField::Name | CustomerField::ShortName | CustomerField::TaxId
                ) | Field::Attribute { value_type: ValueType::String, .. }
            ),
        }
    }
}

/// Where the value of `contains`, `starts_with` or `ends_with` stands in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMatch {
    Anywhere,
    Start,
    End,
}

impl TextMatch {
    /// The lower-case `LIKE` pattern that finds `text` here, its `%`, `_` and `escape`
    /// escaped so that they match themselves. Compared with `LOWER(column)`, it is
    /// case-insensitive for Latin letters; Chinese has no case and matches exactly.
    pub fn like_pattern(self, text: &str, escape: char) -> String {
        let mut pattern = String::new();
        if self != TextMatch::Start {
            pattern.push('%');
        }
        for c in text.to_lowercase().chars() {
            if c == escape || c == '%' || c == '_' {
                pattern.push(escape);
            }
            pattern.push(c);
        }
        if self != TextMatch::End {
            pattern.push('%');
        }
        pattern
    }
}

/// One typed operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Money(Money),
    Integer(i64),
    Decimal(f64),
    Boolean(bool),
    Moment(NaiveDateTime),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    One(Scalar),
    List(Vec<Scalar>),
    Range(Scalar, Scalar),
    /// `is_null`: true tests for no value, false for a value.
    Null(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Leaf { field: Field, op: Op, value: Operand },
}

/// What a condition may refer to, as known when it is saved.
pub trait Catalog {
    /// The type of an attribute key, if some category defines it.
    fn attribute_type(&self, key: &str) -> Option<ValueType>;
    /// `None` when the scheme does not exist, else whether the category does.
    fn category_exists(&self, scheme: &str, code: &str) -> Option<bool>;
}

/// Size limits of one condition. They keep every saved condition runnable on both
/// backends: SQLite refuses expressions nested more than 1,000 deep (an `any` of n
/// terms nests n deep) and MySQL's TEXT column holds 65,535 bytes.
pub const MAX_DEPTH: usize = 16;
/// Groups and leaves together.
pub const MAX_NODES: usize = 200;
/// Values of one `in`/`not_in` list.
pub const MAX_LIST: usize = 1000;
/// Operand values in the whole condition.
pub const MAX_VALUES: usize = 1000;
/// The condition as compact JSON.
pub const MAX_BYTES: usize = 32 * 1024;
/// Bound parameters of a scheme's enabled rules together: a run evaluates them in
/// one statement, and SQLite takes at most 32,766 parameters (MySQL 65,535).
pub const MAX_SCHEME_PARAMETERS: usize = 20_000;

/// Parses a condition; `pointer` is where it sits in the request (e.g. `/condition`).
pub fn parse(json: &Json, pointer: &str, catalog: &dyn Catalog) -> Result<Condition, Vec<FieldError>> {
    let bytes = json.to_string().len();
    if bytes > MAX_BYTES {
        return Err(vec![FieldError::new(
            pointer,
            format!("the condition is {bytes} bytes as JSON; the most is {MAX_BYTES}"),
        )]);
    }
    let mut errors = Vec::new();
    let condition = parse_node(json, pointer, catalog, 0, &mut errors);
    match condition {
        Some(condition) if errors.is_empty() => {
            let (nodes, values) = condition.size();
            if nodes > MAX_NODES {
                return Err(vec![FieldError::new(
                    pointer,
                    format!("the condition has {nodes} groups and leaves; the most is {MAX_NODES}"),
                )]);
            }
            if values > MAX_VALUES {
                return Err(vec![FieldError::new(
                    pointer,
                    format!("the condition compares with {values} values; the most is {MAX_VALUES}"),
                )]);
            }
            Ok(condition)
        }
        _ => Err(errors),
    }
}

impl Condition {
    /// Groups and leaves, and operand values.
    fn size(&self) -> (usize, usize) {
        match self {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().map(Condition::size).fold((1, 0), |(n, v), (a, b)| (n + a, v + b))
            }
            Condition::Not(inner) => {
                let (nodes, values) = inner.size();
                (nodes + 1, values)
            }
            Condition::Leaf { value, .. } => (
                1,
                match value {
                    Operand::One(_) => 1,
                    Operand::List(items) => items.len(),
                    Operand::Range(..) => 2,
                    Operand::Null(_) => 0,
                },
            ),
        }
    }

    /// An upper bound of the parameters the condition binds when compiled: its
    /// values, and two a leaf's field may bind (an attribute key, the moment of
    /// `days_since_last_order`, written twice by `under`). A relative leaf is compiled
    /// resolved (see [`super::ranking`]): each of its values becomes a range on the
    /// field it ranks (two bounds and the field's own), an `rfm` value three of them,
    /// and the population's subtree adds two.
    pub fn parameters(&self) -> usize {
        match self {
            Condition::All(items) | Condition::Any(items) => items.iter().map(Condition::parameters).sum(),
            Condition::Not(inner) => inner.parameters(),
            Condition::Leaf { field, value, .. } => {
                let values = match value {
                    Operand::One(_) => 1,
                    Operand::List(items) => items.len(),
                    Operand::Range(..) => 2,
                    Operand::Null(_) => 0,
                };
                match field {
                    Field::Ranked { .. } | Field::RfmScore(_) => 4 * values.max(1) + 4,
                    Field::Rfm => 12 * values.max(1) + 4,
                    _ => values + 2,
                }
            }
        }
    }
}

fn parse_node(
    json: &Json,
    pointer: &str,
    catalog: &dyn Catalog,
    depth: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Condition> {
    let error = |errors: &mut Vec<FieldError>, at: String, message: String| {
        errors.push(FieldError::new(at, message));
        None
    };
    if depth > MAX_DEPTH {
        return error(errors, pointer.to_string(), format!("conditions nest at most {MAX_DEPTH} deep"));
    }
    let Some(object) = json.as_object() else {
        return error(
            errors,
            pointer.to_string(),
            "must be an object: {\"all\":[…]}, {\"any\":[…]}, {\"not\":{…}} or {\"field\",\"op\",\"value\"}".into(),
        );
    };
    let group = |name: &str, errors: &mut Vec<FieldError>| -> Option<Vec<Condition>> {
        let at = format!("{pointer}/{name}");
        let Some(items) = object[name].as_array() else {
            errors.push(FieldError::new(at, "must be an array of conditions"));
            return None;
        };
        if items.is_empty() {
            errors.push(FieldError::new(at, "must hold at least one condition"));
            return None;
        }
        let parsed: Vec<Option<Condition>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_node(item, &format!("{at}/{i}"), catalog, depth + 1, errors))
            .collect();
        parsed.into_iter().collect()
    };
    if object.contains_key("all") || object.contains_key("any") || object.contains_key("not") {
        if object.len() != 1 {
            return error(
                errors,
                pointer.to_string(),
                "a group has exactly one of all, any or not, and nothing else".into(),
            );
        }
        if object.contains_key("all") {
            return group("all", errors).map(Condition::All);
        }
        if object.contains_key("any") {
            return group("any", errors).map(Condition::Any);
        }
        return parse_node(&object["not"], &format!("{pointer}/not"), catalog, depth + 1, errors)
            .map(|c| Condition::Not(Box::new(c)));
    }
    if let Some(extra) = object.keys().find(|k| !matches!(k.as_str(), "field" | "op" | "value")) {
        return error(errors, format!("{pointer}/{extra}"), "unknown member; a leaf has field, op and value".into());
    }
    let Some(field_name) = object.get("field").and_then(Json::as_str) else {
        return error(errors, format!("{pointer}/field"), "must be a field name".into());
    };
    let field = match parse_field(field_name, catalog) {
        Ok(field) => field,
        Err(message) => return error(errors, format!("{pointer}/field"), message),
    };
    let Some(op_name) = object.get("op").and_then(Json::as_str) else {
        return error(errors, format!("{pointer}/op"), format!("must be one of {}", Op::names()));
    };
    let Some(op) = Op::parse(op_name) else {
        return error(errors, format!("{pointer}/op"), format!("unknown op {op_name:?}; use {}", Op::names()));
    };
    if !op.allowed_for(&field) {
        return error(errors, format!("{pointer}/op"), format!("{op_name} does not apply to {field_name}"));
    }
    let value_pointer = format!("{pointer}/value");
    let Some(value) = object.get("value") else {
        return error(errors, value_pointer, "is missing".into());
    };
    match parse_operand(&field, op, value, catalog) {
        Ok(value) => Some(Condition::Leaf { field, op, value }),
        Err((suffix, message)) => error(errors, format!("{value_pointer}{suffix}"), message),
    }
}

/// The fields a condition names by a word of their own, as the parser takes them; the
/// OpenAPI pattern of `Condition.field` is built from the same table ([`field_pattern`]).
pub const NAMED_FIELDS: [(&str, Field); 15] = [
    ("spend_12m", Field::Metric(Metric::Spend12m)),
    ("orders_12m", Field::Metric(Metric::Orders12m)),
    ("lifetime_spend", Field::Metric(Metric::LifetimeSpend)),
    ("last_order_at", Field::Metric(Metric::LastOrderAt)),
    ("days_since_last_order", Field::Metric(Metric::DaysSinceLastOrder)),
    ("code", Field::Customer(CustomerField::Code)),
    ("name", Field::Customer(CustomerField::Name)),
    ("short_name", Field::Customer(CustomerField::ShortName)),
    ("status", Field::Customer(CustomerField::Status)),
    ("created_at", Field::Customer(CustomerField::CreatedAt)),
    ("tax_id", Field::Customer(CustomerField::TaxId)),
    ("rfm_r", Field::RfmScore(RfmPart::Recency)),
    ("rfm_f", Field::RfmScore(RfmPart::Frequency)),
    ("rfm_m", Field::RfmScore(RfmPart::Monetary)),
    ("rfm", Field::Rfm),
];

const ATTRIBUTE_PREFIX: &str = "attr.";
const CATEGORY_PREFIX: &str = "category.";

/// The regular expression of every field name [`parse`] takes, for the OpenAPI
/// document: the named fields, `attr.<key>`, `category.<SCHEME>`, and a ranking of a
/// numeric one. Whether an attribute or scheme exists is for the parser to say.
pub fn field_pattern() -> String {
    let escape = |text: &str| text.replace('.', r"\.");
    let named: Vec<&str> = NAMED_FIELDS.iter().map(|(name, _)| *name).collect();
    let attribute = format!("{}{}", escape(ATTRIBUTE_PREFIX), super::attribute::AttributeKey::PATTERN);
    let category = format!("{}{}", escape(CATEGORY_PREFIX), super::scheme::SchemeCode::PATTERN);
    let numeric: Vec<&str> = NAMED_FIELDS
        .iter()
        .filter(|(_, field)| matches!(field, Field::Metric(metric) if *metric != Metric::LastOrderAt))
        .map(|(name, _)| *name)
        .collect();
    let rankings = [Ranking::Percentile, Ranking::CumulativeShare].map(Ranking::name).join("|");
    format!(r"^({}|{attribute}|{category}|({rankings})\(\s*({}|{attribute})\s*\))$", named.join("|"), numeric.join("|"))
}

fn parse_field(name: &str, catalog: &dyn Catalog) -> Result<Field, String> {
    let field = match NAMED_FIELDS.iter().find(|(named, _)| *named == name) {
        Some((_, field)) => field.clone(),
        None => {
            for ranking in [Ranking::Percentile, Ranking::CumulativeShare] {
                if let Some(inner) = name
                    .strip_prefix(ranking.name())
                    .and_then(|rest| rest.strip_prefix('('))
                    .and_then(|rest| rest.strip_suffix(')'))
                {
                    let of = parse_field(inner.trim(), catalog)?;
                    let numeric = match &of {
                        Field::Metric(metric) => *metric != Metric::LastOrderAt,
                        Field::Attribute { value_type, .. } => value_type.is_numeric(),
                        _ => false,
                    };
                    if !numeric {
                        return Err(format!(
                            "{} ranks a numeric field: spend_12m, orders_12m, lifetime_spend, days_since_last_order or a numeric attr.<key>; {inner} is not one",
                            ranking.name()
                        ));
                    }
                    return Ok(Field::Ranked { ranking, of: Box::new(of) });
                }
            }
            if let Some(key) = name.strip_prefix(ATTRIBUTE_PREFIX) {
                let value_type =
                    catalog.attribute_type(key).ok_or_else(|| format!("no category defines attribute {key}"))?;
                return Ok(Field::Attribute { key: key.to_string(), value_type });
            }
            if let Some(scheme) = name.strip_prefix(CATEGORY_PREFIX) {
                catalog.category_exists(scheme, "").ok_or_else(|| format!("no scheme {scheme}"))?;
                return Ok(Field::Category { scheme: scheme.to_string() });
            }
            return Err(format!(
                "unknown field {name:?}; use spend_12m, orders_12m, lifetime_spend, last_order_at, days_since_last_order, \
                 code, name, short_name, status, created_at, tax_id, attr.<key>, category.<SCHEME>, percentile(<field>), \
                 cumulative_share(<field>), rfm_r, rfm_f, rfm_m or rfm"
            ));
        }
    };
    Ok(field)
}

/// The operand of `op` on `field`; an error names the part of `value` it is about.
fn parse_operand(field: &Field, op: Op, value: &Json, catalog: &dyn Catalog) -> Result<Operand, (String, String)> {
    let whole = |message: String| (String::new(), message);
    match op {
        Op::IsNull => value
            .as_bool()
            .map(Operand::Null)
            .ok_or_else(|| whole("is_null takes true (no value) or false (has a value)".into())),
        Op::In | Op::NotIn => {
            let items = value.as_array().ok_or_else(|| whole("must be an array".into()))?;
            if items.is_empty() || items.len() > MAX_LIST {
                return Err(whole(format!("must hold 1 to {MAX_LIST} values")));
            }
            let scalars = items
                .iter()
                .enumerate()
                .map(|(i, item)| scalar(field, item, catalog).map_err(|m| (format!("/{i}"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Operand::List(scalars))
        }
        Op::Between => match value.as_array().map(Vec::as_slice) {
            Some([low, high]) => {
                let low = scalar(field, low, catalog).map_err(|m| ("/0".to_string(), m))?;
                let high = scalar(field, high, catalog).map_err(|m| ("/1".to_string(), m))?;
                Ok(Operand::Range(low, high))
            }
            _ => Err(whole("between takes [low, high]".into())),
        },
        Op::Match(_) => match value.as_str() {
            Some(text) if !text.is_empty() && text.chars().count() <= MAX_MATCHED_TEXT => {
                Ok(Operand::One(Scalar::Text(text.to_string())))
            }
            _ => Err(whole(format!("must be a text of 1 to {MAX_MATCHED_TEXT} characters to look for"))),
        },
        _ => scalar(field, value, catalog).map(Operand::One).map_err(whole),
    }
}

/// The longest text `contains`, `starts_with` and `ends_with` look for (a customer's
/// name may be 200 characters).
const MAX_MATCHED_TEXT: usize = 200;

fn scalar(field: &Field, value: &Json, catalog: &dyn Catalog) -> Result<Scalar, String> {
    match field.kind() {
        Kind::Money => {
            let text = match value {
                Json::Number(n) => n.to_string(),
                Json::String(s) => s.clone(),
                _ => return Err("must be an amount (a number or a decimal string)".into()),
            };
            Money::parse(&text).map(Scalar::Money)
        }
        Kind::Integer => value
            .as_number()
            .and_then(super::whole_number)
            .map(Scalar::Integer)
            .ok_or_else(|| "must be an integer".into()),
        Kind::Decimal => value.as_f64().map(Scalar::Decimal).ok_or_else(|| "must be a number".into()),
        Kind::Boolean => value.as_bool().map(Scalar::Boolean).ok_or_else(|| "must be true or false".into()),
        Kind::Moment => value
            .as_str()
            .and_then(parse_moment)
            .map(Scalar::Moment)
            .ok_or_else(|| format!("must be an RFC 3339 time or a date (YYYY-MM-DD), {}", crate::MOMENT_RANGE)),
        Kind::Date => match value {
            Json::String(text) => AttributeValue::from_text(ValueType::Date, text).map(|_| Scalar::Text(text.clone())),
            _ => Err("must be a date (YYYY-MM-DD)".into()),
        },
        Kind::Text => match (field, value) {
            (Field::Customer(CustomerField::Status), Json::String(s)) if s != "active" && s != "inactive" => {
                Err("status is active or inactive".into())
            }
            (Field::Rfm, Json::String(s)) if s.len() == 3 && s.bytes().all(|b| (b'1'..=b'5').contains(&b)) => {
                Ok(Scalar::Text(s.clone()))
            }
            (Field::Rfm, _) => Err("must be three scores 1–5 in the order R, F, M, such as \"545\"".into()),
            (
                Field::Attribute { value_type: ValueType::String | ValueType::Enum, .. } | Field::Customer(_),
                Json::String(s),
            ) => Ok(Scalar::Text(s.clone())),
            _ => Err("must be a string".into()),
        },
        Kind::Category => {
            let Field::Category { scheme } = field else { return Err("must be a category code".into()) };
            let code = value.as_str().ok_or_else(|| "must be a category code".to_string())?;
            match catalog.category_exists(scheme, code) {
                Some(true) => Ok(Scalar::Text(code.to_string())),
                _ => Err(format!("no category {code} in scheme {scheme}")),
            }
        }
    }
}

/// RFC 3339, or a date meaning its midnight (UTC), within [`crate::moment_in_range`].
pub fn parse_moment(text: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.naive_utc())
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .filter(|at| crate::moment_in_range(*at))
}

#[cfg(test)]
mod tests;
