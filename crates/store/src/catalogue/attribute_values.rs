//! Customers' typed attribute values: stored typed (`customer_attributes`), defaults
//! included, so that search in SQL sees exactly what a read shows; edited as the
//! single-customer API asks; and carried along, or refused, when a customer moves to a
//! category whose definitions differ. `customers.attributes` keeps the same values as
//! JSON for single-row reads (see `customer_rows::refresh_snapshot`).

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use serde_json::Value as Json;

use crate::db::schema::{attribute_definitions, customer_attributes, customer_categories, schemes};
use crate::db::DbConnection;
use crate::domain::attribute::AttributeValue;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::archive::customer_rows::CustomerRow;
use crate::catalogue::attributes::{along_path, by_key, Effective};
use crate::catalogue::schemes::SchemeRow;
use crate::{lock_rows, LockMode, LockableTable};

/// A value row as stored: JSON as given, and whether the default supplied it.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    json: String,
    from_default: bool,
}

fn stored_values(
    conn: &mut DbConnection,
    customer_ids: &[i64],
    keys: Option<&[String]>,
) -> Result<HashMap<i64, BTreeMap<String, Stored>>, AppError> {
    let mut values: HashMap<i64, BTreeMap<String, Stored>> = HashMap::new();
    for chunk in customer_ids.chunks(1000) {
        let mut query = customer_attributes::table
            .filter(customer_attributes::customer_id.eq_any(chunk))
            .select((
                customer_attributes::customer_id,
                customer_attributes::attr_key,
                customer_attributes::value_json,
                customer_attributes::from_default,
            ))
            .into_boxed();
        if let Some(keys) = keys {
            query = query.filter(customer_attributes::attr_key.eq_any(keys.to_vec()));
        }
        for (id, key, json, from_default) in query.load::<(i64, String, String, bool)>(conn)? {
            values.entry(id).or_default().insert(key, Stored { json, from_default });
        }
    }
    Ok(values)
}

/// What a customer's values should be: the key's value and whether it is the default.
pub type Desired = BTreeMap<String, (AttributeValue, bool)>;

/// Rewrites the rows of `keys` for one customer so that they are `desired`.
fn write_values(
    conn: &mut DbConnection,
    customer: (i64, &str),
    keys: &[String],
    desired: &Desired,
) -> Result<(), AppError> {
    for chunk in keys.chunks(500) {
        diesel::delete(
            customer_attributes::table
                .filter(customer_attributes::customer_id.eq(customer.0))
                .filter(customer_attributes::attr_key.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    insert_values(conn, &[(customer.0, customer.1, desired)])
}

/// Writes the values of customers that hold none of these keys yet, a thousand rows
/// per statement.
pub fn insert_values(conn: &mut DbConnection, customers: &[(i64, &str, &Desired)]) -> Result<(), AppError> {
    let rows: Vec<_> = customers
        .iter()
        .flat_map(|&(id, code, desired)| {
            desired.iter().map(move |(key, (value, from_default))| {
                (
                    customer_attributes::customer_id.eq(id),
                    customer_attributes::attr_key.eq(key.clone()),
                    customer_attributes::customer_code.eq(code.to_string()),
                    customer_attributes::value_json.eq(value.to_json().to_string()),
                    customer_attributes::value_text.eq(value.text()),
                    customer_attributes::value_number.eq(value.number()),
                    customer_attributes::from_default.eq(*from_default),
                )
            })
        })
        .collect();
    crate::insert_many!(conn, customer_attributes::table, rows)?;
    Ok(())
}

fn unchanged(stored: Option<&BTreeMap<String, Stored>>, desired: &Desired) -> bool {
    let empty = BTreeMap::new();
    let stored = stored.unwrap_or(&empty);
    stored.len() == desired.len()
        && desired.iter().all(|(key, (value, from_default))| {
            stored.get(key).is_some_and(|s| s.from_default == *from_default && s.json == value.to_json())
        })
}

/// Every definition in force for a customer now, by key.
pub fn effective_for(conn: &mut DbConnection, customer_id: i64) -> Result<BTreeMap<String, Effective>, AppError> {
    let held: Vec<(SchemeRow, String)> = customer_categories::table
        .inner_join(schemes::table)
        .filter(customer_categories::customer_id.eq(customer_id))
        .select((SchemeRow::as_select(), customer_categories::category_code))
        .load(conn)?;
    let mut effective = BTreeMap::new();
    for (scheme, code) in held {
        effective.extend(by_key(along_path(conn, &scheme, &code)?));
    }
    Ok(effective)
}

/// How an edit treats the values it does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditMode {
    /// `PUT /customers/{code}/attributes`: values not given are removed.
    Replace,
    /// Create and `PATCH`: values not given stay; `null` removes one.
    Merge,
}

fn invalid_attributes(errors: Vec<FieldError>, missing: Vec<FieldError>) -> AppError {
    if errors.is_empty() {
        let detail = format!(
            "required attributes have no value and no default: {}",
            missing.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")
        );
        AppError::validation(ErrorCode::AttributeRequired, detail, missing)
    } else {
        let mut all = errors;
        all.extend(missing);
        let detail = all.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        AppError::validation(ErrorCode::InvalidAttributes, detail, all)
    }
}

fn required_message(effective: &Effective, scheme_code: Option<&str>) -> String {
    match scheme_code {
        Some(scheme) => {
            format!("required by category {} of scheme {scheme}, and it has no default", effective.row.category_code)
        }
        None => format!("required by category {}, and it has no default", effective.row.category_code),
    }
}

/// Applies an edit of one customer's values (customer locked by the caller) against
/// the definitions of every category it holds. True when a value changed.
pub fn edit_values(
    conn: &mut DbConnection,
    customer: &CustomerRow,
    edit: &BTreeMap<String, Json>,
    mode: EditMode,
) -> Result<bool, AppError> {
    let effective = effective_for(conn, customer.id)?;
    let stored = stored_values(conn, &[customer.id], None)?.remove(&customer.id).unwrap_or_default();
    let mut errors = Vec::new();
    let mut explicit: BTreeMap<String, AttributeValue> = BTreeMap::new();
    if mode == EditMode::Merge {
        for (key, value) in stored.iter().filter(|(_, s)| !s.from_default) {
            if let (Some(effective), Ok(json)) = (effective.get(key), serde_json::from_str::<Json>(&value.json)) {
                if let Ok(value) = AttributeValue::from_json(effective.definition.value_type, &json) {
                    explicit.insert(key.clone(), value);
                }
            }
        }
    }
    for (key, json) in edit {
        let field = format!("attributes.{key}");
        let Some(definition) = effective.get(key).map(|e| &e.definition) else {
            errors.push(FieldError::new(
                field,
                format!("no category of customer {} defines attribute {key}", customer.code),
            ));
            continue;
        };
        if json.is_null() {
            explicit.remove(key);
            continue;
        }
        match definition.check(json) {
            Ok(value) => {
                explicit.insert(key.clone(), value);
            }
            Err(message) => errors.push(FieldError::new(field, message)),
        }
    }
    let mut desired = Desired::new();
    let mut missing = Vec::new();
    for (key, effective) in &effective {
        match (explicit.remove(key), &effective.definition.default) {
            (Some(value), _) => {
                desired.insert(key.clone(), (value, false));
            }
            (None, Some(default)) => {
                desired.insert(key.clone(), (default.clone(), true));
            }
            (None, None) if effective.definition.required => {
                missing.push(FieldError::new(format!("attributes.{key}"), required_message(effective, None)))
            }
            (None, None) => {}
        }
    }
    if !errors.is_empty() || !missing.is_empty() {
        return Err(invalid_attributes(errors, missing));
    }
    if unchanged(Some(&stored), &desired) {
        return Ok(false);
    }
    let keys: Vec<String> = stored.keys().cloned().collect();
    write_values(conn, (customer.id, &customer.code), &keys, &desired)?;
    Ok(true)
}

/// Values a move dropped, by customer id: what history keeps of them.
pub type Dropped = HashMap<i64, BTreeMap<String, Json>>;

/// What moving some customers into a category does to their values of the scheme's
/// attributes, worked out before anything is written.
#[derive(Debug, Default)]
pub struct MovePlan {
    writes: Vec<(i64, String, Vec<String>, Desired)>,
    dropped: Dropped,
    /// Customers the move would leave with invalid or missing values.
    pub rejected: HashMap<i64, Rejection>,
}

/// Why one customer cannot move: values that do not fit, and required ones missing.
#[derive(Debug, Default)]
pub struct Rejection {
    pub invalid: Vec<FieldError>,
    pub missing: Vec<FieldError>,
}

impl Rejection {
    pub fn describe(&self) -> String {
        self.invalid
            .iter()
            .chain(&self.missing)
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl MovePlan {
    /// The writes of customers that are not rejected.
    fn accepted_writes(&self) -> impl Iterator<Item = &(i64, String, Vec<String>, Desired)> {
        self.writes.iter().filter(|(id, ..)| !self.rejected.contains_key(id))
    }

    /// The customers whose values `apply` rewrites.
    pub fn rewrites(&self) -> HashSet<i64> {
        self.accepted_writes().map(|(id, ..)| *id).collect()
    }

    /// Writes the values of every customer that is not rejected; returns what each dropped.
    pub fn apply(self, conn: &mut DbConnection) -> Result<Dropped, AppError> {
        for (id, code, keys, desired) in self.accepted_writes() {
            write_values(conn, (*id, code), keys, desired)?;
        }
        let rejected = self.rejected;
        Ok(self.dropped.into_iter().filter(|(id, _)| !rejected.contains_key(id)).collect())
    }

    /// The plan as one all-or-nothing answer: 422 listing every field of every customer.
    pub fn apply_all(self, conn: &mut DbConnection) -> Result<Dropped, AppError> {
        self.refusing_rejections()?.apply(conn)
    }

    /// The plan, if it rejects no customer; else 422 listing every field of every
    /// customer it rejects.
    pub fn refusing_rejections(self) -> Result<Self, AppError> {
        if self.rejected.is_empty() {
            return Ok(self);
        }
        let (mut invalid, mut missing) = (Vec::new(), Vec::new());
        for rejection in self.rejected.into_values() {
            invalid.extend(rejection.invalid);
            missing.extend(rejection.missing);
        }
        invalid.sort_by(|a, b| a.field.cmp(&b.field));
        missing.sort_by(|a, b| a.field.cmp(&b.field));
        Err(invalid_attributes(invalid, missing))
    }
}

/// Works out how `customers`, moving to `category` of `scheme` (`None`: out of the
/// scheme), keep their values of the scheme's attributes: values the new path does
/// not define are dropped (kept for history), values it defines are checked against
/// its definitions, its defaults fill in, and a value it requires that is neither
/// kept, `supplied` nor defaulted rejects the customer. Values `supplied` for keys
/// the new category does not define refuse the request outright.
pub fn plan_move(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    category: Option<&str>,
    customers: &[(i64, &str)],
    supplied: &BTreeMap<String, Json>,
) -> Result<MovePlan, AppError> {
    // A definition change holds this lock exclusively while it checks the customers it governs.
    lock_rows(conn, LockableTable::Schemes, &[scheme.id], LockMode::Shared)?;
    let scheme_keys: Vec<String> = attribute_definitions::table
        .filter(attribute_definitions::scheme_id.eq(scheme.id))
        .select(attribute_definitions::attr_key)
        .distinct()
        .load(conn)?;
    let mut errors = Vec::new();
    for key in supplied.keys().filter(|key| !scheme_keys.contains(key)) {
        errors.push(FieldError::new(
            format!("attributes.{key}"),
            format!("scheme {} defines no attribute {key}", scheme.code),
        ));
    }
    if scheme_keys.is_empty() {
        return if errors.is_empty() { Ok(MovePlan::default()) } else { Err(invalid_attributes(errors, Vec::new())) };
    }
    let definitions = match category {
        Some(code) => by_key(along_path(conn, scheme, code)?),
        None => BTreeMap::new(),
    };
    let mut given = BTreeMap::new();
    for (key, json) in supplied {
        let field = format!("attributes.{key}");
        match definitions.get(key) {
            None if scheme_keys.contains(key) => errors.push(FieldError::new(
                field,
                format!("category {} does not define attribute {key}", category.unwrap_or("(none)")),
            )),
            None => {}
            Some(_) if json.is_null() => {}
            Some(effective) => match effective.definition.check(json) {
                Ok(value) => {
                    given.insert(key.clone(), value);
                }
                Err(message) => errors.push(FieldError::new(field, message)),
            },
        }
    }
    if !errors.is_empty() {
        return Err(invalid_attributes(errors, Vec::new()));
    }

    let ids: Vec<i64> = customers.iter().map(|(id, _)| *id).collect();
    let mut stored = stored_values(conn, &ids, Some(&scheme_keys))?;
    let several = customers.len() > 1;
    let field =
        |code: &str, key: &str| if several { format!("{code}.attributes.{key}") } else { format!("attributes.{key}") };
    let mut plan = MovePlan::default();
    for &(id, code) in customers {
        let current = stored.remove(&id).unwrap_or_default();
        let mut desired = Desired::new();
        let mut problems = Rejection::default();
        for (key, value) in &current {
            let Some(effective) = definitions.get(key) else {
                if !value.from_default {
                    if let Ok(json) = serde_json::from_str(&value.json) {
                        plan.dropped.entry(id).or_default().insert(key.clone(), json);
                    }
                }
                continue;
            };
            if value.from_default || given.contains_key(key) {
                continue;
            }
            let json: Json = serde_json::from_str(&value.json).unwrap_or(Json::Null);
            match effective.definition.check(&json) {
                Ok(checked) => {
                    desired.insert(key.clone(), (checked, false));
                }
                Err(message) => problems.invalid.push(FieldError::new(
                    field(code, key),
                    format!("the value {json} does not fit category {}: {message}", effective.row.category_code),
                )),
            }
        }
        for (key, effective) in &definitions {
            if desired.contains_key(key) || problems.invalid.iter().any(|p| p.field == field(code, key)) {
                continue;
            }
            match (given.get(key), &effective.definition.default) {
                (Some(value), _) => {
                    desired.insert(key.clone(), (value.clone(), false));
                }
                (None, Some(default)) => {
                    desired.insert(key.clone(), (default.clone(), true));
                }
                (None, None) if effective.definition.required => problems
                    .missing
                    .push(FieldError::new(field(code, key), required_message(effective, Some(&scheme.code)))),
                (None, None) => {}
            }
        }
        if !problems.invalid.is_empty() || !problems.missing.is_empty() {
            plan.rejected.insert(id, problems);
        } else if !unchanged(Some(&current), &desired) {
            plan.writes.push((id, code.to_string(), current.keys().cloned().collect(), desired));
        }
    }
    Ok(plan)
}

/// `plan_move` and `MovePlan::apply_all`: all customers move with their values, or none does.
pub fn reconcile_move(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    category: Option<&str>,
    customers: &[(i64, &str)],
    supplied: &BTreeMap<String, Json>,
) -> Result<Dropped, AppError> {
    plan_move(conn, scheme, category, customers, supplied)?.apply_all(conn)
}
