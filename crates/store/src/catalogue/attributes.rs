//! Attribute definitions on categories, and customers' typed values.
//!
//! A key belongs to one scheme and appears at most once along any root-to-leaf
//! path, so a customer, holding one category per scheme, has at most one definition
//! per key. Values are stored typed (`customer_attributes`), defaults included, so
//! that search in SQL sees exactly what a read shows; `customers.attributes` keeps
//! the same values as JSON for single-row reads (see `customers::refresh_snapshot`).

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use serde_json::Value as Json;

use crate::db::schema::{attribute_definitions, category_members, customer_attributes, customer_categories, schemes};
use crate::db::{now, transaction, DbConnection};
use crate::domain::attribute::{AttributeKey, AttributeValue, Definition, DefinitionDraft, ValueType};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::archive::customer_rows::{self as customer_store, CustomerRow, SnapshotTarget};
use crate::catalogue::categories as category_store;
use crate::catalogue::category_rows::{self, CategoryRow};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::{check_version, lock_rows, LockMode, LockableTable};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = attribute_definitions)]
pub struct DefinitionRow {
    pub id: i64,
    pub scheme_id: i64,
    pub category_id: i64,
    pub category_code: String,
    pub attr_key: String,
    pub label: String,
    pub value_type: String,
    pub required: bool,
    pub default_value: Option<String>,
    pub options: Option<String>,
    pub min_value: Option<String>,
    pub max_value: Option<String>,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

impl DefinitionRow {
    pub fn definition(&self) -> Result<Definition, AppError> {
        self.draft()?.check().map_err(|_| self.corrupt())
    }

    /// The stored definition as a draft, for a change to start from.
    pub fn draft(&self) -> Result<DefinitionDraft, AppError> {
        let json = |text: &Option<String>| {
            text.as_deref().map(serde_json::from_str::<Json>).transpose().map_err(|_| self.corrupt())
        };
        Ok(DefinitionDraft {
            key: AttributeKey::parse("key", &self.attr_key).map_err(|_| self.corrupt())?,
            label: self.label.clone(),
            value_type: ValueType::parse(&self.value_type).ok_or_else(|| self.corrupt())?,
            required: self.required,
            default: json(&self.default_value)?,
            options: self
                .options
                .as_deref()
                .map(serde_json::from_str::<Vec<String>>)
                .transpose()
                .map_err(|_| self.corrupt())?,
            min: json(&self.min_value)?,
            max: json(&self.max_value)?,
        })
    }

    fn corrupt(&self) -> AppError {
        AppError::corrupt(format!(
            "attribute {} of category {} has a corrupt definition",
            self.attr_key, self.category_code
        ))
    }
}

/// A definition in force for some customers, with the row it comes from.
#[derive(Debug, Clone)]
pub struct Effective {
    pub row: DefinitionRow,
    pub definition: Definition,
}

/// A definition with the scheme code it belongs to, for responses.
pub struct DefinitionView {
    pub scheme: String,
    pub row: DefinitionRow,
    pub definition: Definition,
}

fn view(scheme: &SchemeRow, row: DefinitionRow) -> Result<DefinitionView, AppError> {
    Ok(DefinitionView { scheme: scheme.code.clone(), definition: row.definition()?, row })
}

pub fn attribute_not_found(category: &str, key: &str) -> AppError {
    AppError::new(ErrorCode::AttributeNotFound, format!("category {category} defines no attribute {key}"))
}

/// The definitions along the path from the root down to `code`, root first.
pub fn along_path(conn: &mut DbConnection, scheme: &SchemeRow, code: &str) -> Result<Vec<Effective>, AppError> {
    let path = category_store::path_codes(scheme, code)?;
    let rows: Vec<DefinitionRow> = attribute_definitions::table
        .filter(attribute_definitions::scheme_id.eq(scheme.id))
        .filter(attribute_definitions::category_code.eq_any(&path))
        .order((attribute_definitions::category_code, attribute_definitions::attr_key))
        .select(DefinitionRow::as_select())
        .load(conn)?;
    rows.into_iter().map(|row| Ok(Effective { definition: row.definition()?, row })).collect()
}

fn by_key(effective: Vec<Effective>) -> BTreeMap<String, Effective> {
    effective.into_iter().map(|e| (e.row.attr_key.clone(), e)).collect()
}

fn target(
    conn: &mut DbConnection,
    scheme_code: &str,
    category_code: &str,
) -> Result<(SchemeRow, CategoryRow), AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let category = category_rows::find_row(conn, scheme.id, category_code)?
        .ok_or_else(|| category_store::category_not_found(scheme_code, category_code))?;
    Ok((scheme, category))
}

fn find(conn: &mut DbConnection, scheme: &SchemeRow, category: &str, key: &str) -> Result<DefinitionRow, AppError> {
    attribute_definitions::table
        .filter(attribute_definitions::scheme_id.eq(scheme.id))
        .filter(attribute_definitions::category_code.eq(category))
        .filter(attribute_definitions::attr_key.eq(key))
        .select(DefinitionRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| attribute_not_found(category, key))
}

/// The category's own definitions, or with `effective` also those it inherits.
pub fn list(
    conn: &mut DbConnection,
    scheme_code: &str,
    category_code: &str,
    effective: bool,
) -> Result<Vec<DefinitionView>, AppError> {
    let (scheme, category) = target(conn, scheme_code, category_code)?;
    let rows: Vec<DefinitionRow> = if effective {
        along_path(conn, &scheme, &category.code)?.into_iter().map(|e| e.row).collect()
    } else {
        attribute_definitions::table
            .filter(attribute_definitions::scheme_id.eq(scheme.id))
            .filter(attribute_definitions::category_code.eq(&category.code))
            .order(attribute_definitions::attr_key)
            .select(DefinitionRow::as_select())
            .load(conn)?
    };
    rows.into_iter().map(|row| view(&scheme, row)).collect()
}

pub fn get(
    conn: &mut DbConnection,
    scheme_code: &str,
    category_code: &str,
    key: &str,
) -> Result<DefinitionView, AppError> {
    let (scheme, category) = target(conn, scheme_code, category_code)?;
    let row = find(conn, &scheme, &category.code, key)?;
    view(&scheme, row)
}

/// A key belongs to one scheme, appears once along a path, and has one type.
fn ensure_key_free(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    category: &str,
    definition: &Definition,
) -> Result<(), AppError> {
    let key = definition.key.as_str();
    let holders: Vec<(String, String, String)> = attribute_definitions::table
        .inner_join(schemes::table)
        .filter(attribute_definitions::attr_key.eq(key))
        .select((schemes::code, attribute_definitions::category_code, attribute_definitions::value_type))
        .load(conn)?;
    for (scheme_code, code, value_type) in holders {
        if scheme_code != scheme.code {
            return Err(AppError::new(
                ErrorCode::DuplicateAttribute,
                format!("attribute {key} is defined in scheme {scheme_code}; an attribute key belongs to one scheme, since a customer holds a category of every scheme"),
            ));
        }
        if category.starts_with(&code) || code.starts_with(category) {
            return Err(AppError::new(
                ErrorCode::DuplicateAttribute,
                format!("attribute {key} is already defined on category {code}, on the same path from the root as category {category}"),
            ));
        }
        if value_type != definition.value_type.as_str() {
            return Err(AppError::new(
                ErrorCode::AttributeTypeConflict,
                format!("attribute {key} is a {value_type} on category {code}; one key has one type in a scheme, so that search compares it one way"),
            ));
        }
    }
    Ok(())
}

fn json_text(value: &Option<impl serde::Serialize>) -> Option<String> {
    value.as_ref().map(|v| serde_json::to_string(v).expect("JSON values serialise"))
}

/// The stored forms of a definition's parts.
struct StoredParts {
    default_value: Option<String>,
    options: Option<String>,
    min_value: Option<String>,
    max_value: Option<String>,
}

fn stored_parts(definition: &Definition) -> StoredParts {
    StoredParts {
        default_value: json_text(&definition.default.as_ref().map(AttributeValue::to_json)),
        options: (definition.value_type == ValueType::Enum)
            .then(|| serde_json::to_string(&definition.options).expect("strings serialise")),
        min_value: json_text(&definition.min.as_ref().map(|l| l.to_json())),
        max_value: json_text(&definition.max.as_ref().map(|l| l.to_json())),
    }
}

fn member_count(conn: &mut DbConnection, scheme_id: i64, category: &str) -> Result<i64, AppError> {
    Ok(category_members::table
        .filter(category_members::scheme_id.eq(scheme_id))
        .filter(category_members::category_code.eq(category))
        .count()
        .get_result(conn)?)
}

fn violations(count: i64, what: String) -> AppError {
    AppError {
        violations: Some(count),
        ..AppError::new(
            ErrorCode::AttributeViolations,
            format!("{count} customers would violate {what}; send force=true with a default to give them the default"),
        )
    }
}

fn force_needs_default() -> AppError {
    AppError::validation(
        ErrorCode::ForceNeedsDefault,
        "force=true gives violating customers the default, so the definition needs a default",
        vec![FieldError::new("default", "required with force=true")],
    )
}

/// Gives every member of `category`'s subtree without a value for the key the
/// default, in one statement.
fn fill_defaults(
    conn: &mut DbConnection,
    scheme_id: i64,
    category: &str,
    key: &str,
    default: &AttributeValue,
) -> Result<usize, AppError> {
    Ok(diesel::sql_query(
        "INSERT INTO customer_attributes (customer_id, attr_key, customer_code, value_json, value_text, value_number, from_default) \
         SELECT m.customer_id, ?, m.customer_code, ?, ?, ?, ? FROM category_members m \
         WHERE m.scheme_id = ? AND m.category_code = ? \
         AND NOT EXISTS (SELECT 1 FROM customer_attributes a WHERE a.customer_id = m.customer_id AND a.attr_key = ?)",
    )
    .bind::<Text, _>(key)
    .bind::<Text, _>(default.to_json().to_string())
    .bind::<Nullable<Text>, _>(default.text())
    .bind::<Nullable<Double>, _>(default.number())
    .bind::<Bool, _>(true)
    .bind::<BigInt, _>(scheme_id)
    .bind::<Text, _>(category)
    .bind::<Text, _>(key)
    .execute(conn)?)
}

/// Values of `key` held by members of `category`'s subtree, as `(customer id, JSON, from default)`.
fn subtree_values(
    conn: &mut DbConnection,
    scheme_id: i64,
    category: &str,
    key: &str,
) -> Result<Vec<(i64, String, bool)>, AppError> {
    let members = category_members::table
        .filter(category_members::scheme_id.eq(scheme_id))
        .filter(category_members::category_code.eq(category))
        .select(category_members::customer_id);
    Ok(customer_attributes::table
        .filter(customer_attributes::attr_key.eq(key))
        .filter(customer_attributes::customer_id.eq_any(members))
        .select((customer_attributes::customer_id, customer_attributes::value_json, customer_attributes::from_default))
        .load(conn)?)
}

/// The value rows of `$key` held by members of `$category`'s subtree, as a statement target.
macro_rules! subtree_rows {
    ($scheme_id:expr, $category:expr, $key:expr) => {
        customer_attributes::table.filter(customer_attributes::attr_key.eq($key)).filter(
            customer_attributes::customer_id.eq_any(
                category_members::table
                    .filter(category_members::scheme_id.eq($scheme_id))
                    .filter(category_members::category_code.eq($category))
                    .select(category_members::customer_id),
            ),
        )
    };
}

/// `POST …/attributes`. A required attribute without a default on a category that
/// holds customers would leave them all invalid: refused (with `force` it needs a default).
pub fn create(
    conn: &mut DbConnection,
    scheme_code: &str,
    category_code: &str,
    definition: Definition,
    force: bool,
) -> Result<DefinitionView, AppError> {
    transaction(conn, |conn| {
        let (scheme, category) = target(conn, scheme_code, category_code)?;
        lock_rows(conn, LockableTable::Schemes, &[scheme.id], LockMode::Exclusive)?;
        ensure_key_free(conn, &scheme, &category.code, &definition)?;
        let members = member_count(conn, scheme.id, &category.code)?;
        if definition.required && definition.default.is_none() && members > 0 {
            return Err(if force {
                force_needs_default()
            } else {
                violations(members, format!("the new required attribute {}", definition.key))
            });
        }
        let parts = stored_parts(&definition);
        let at = now();
        diesel::insert_into(attribute_definitions::table)
            .values((
                attribute_definitions::scheme_id.eq(scheme.id),
                attribute_definitions::category_id.eq(category.id),
                attribute_definitions::category_code.eq(&category.code),
                attribute_definitions::attr_key.eq(definition.key.as_str()),
                attribute_definitions::label.eq(&definition.label),
                attribute_definitions::value_type.eq(definition.value_type.as_str()),
                attribute_definitions::required.eq(definition.required),
                attribute_definitions::default_value.eq(&parts.default_value),
                attribute_definitions::options.eq(&parts.options),
                attribute_definitions::min_value.eq(&parts.min_value),
                attribute_definitions::max_value.eq(&parts.max_value),
                attribute_definitions::version.eq(1i64),
                attribute_definitions::created_at.eq(at),
                attribute_definitions::updated_at.eq(at),
            ))
            .execute(conn)?;
        if let Some(default) = &definition.default {
            if fill_defaults(conn, scheme.id, &category.code, definition.key.as_str(), default)? > 0 {
                customer_store::refresh_snapshot(
                    conn,
                    SnapshotTarget::Members { scheme_id: scheme.id, category: &category.code },
                    true,
                )?;
            }
        }
        view(&scheme, find(conn, &scheme, &category.code, definition.key.as_str())?)
    })
}

/// `PATCH …/attributes/{key}`: the changed definition is checked against every value
/// it governs; violations refuse the change unless `force` gives them the default.
pub fn update(
    conn: &mut DbConnection,
    scheme_code: &str,
    category_code: &str,
    key: &str,
    change: impl Fn(DefinitionDraft) -> Result<Definition, AppError>,
    expected: Option<i64>,
    force: bool,
) -> Result<DefinitionView, AppError> {
    transaction(conn, |conn| {
        let (scheme, category) = target(conn, scheme_code, category_code)?;
        lock_rows(conn, LockableTable::Schemes, &[scheme.id], LockMode::Exclusive)?;
        let current = find(conn, &scheme, &category.code, key)?;
        check_version(expected, current.version)?;
        let old = current.definition()?;
        let definition = change(current.draft()?)?;

        let values = subtree_values(conn, scheme.id, &category.code, key)?;
        let invalid: Vec<i64> = values
            .iter()
            .filter(|(_, json, from_default)| !from_default && !passes(&definition, json))
            .map(|(id, _, _)| *id)
            .collect();
        let members = member_count(conn, scheme.id, &category.code)?;
        let explicit = values.iter().filter(|(_, _, from_default)| !from_default).count() as i64;
        let left_without = if definition.required && definition.default.is_none() { members - explicit } else { 0 };
        let violating = invalid.len() as i64 + left_without;
        if violating > 0 {
            if !force {
                return Err(violations(violating, format!("the changed attribute {key}")));
            }
            if definition.default.is_none() {
                return Err(force_needs_default());
            }
        }

        let parts = stored_parts(&definition);
        diesel::update(attribute_definitions::table.filter(attribute_definitions::id.eq(current.id)))
            .set((
                attribute_definitions::label.eq(&definition.label),
                attribute_definitions::required.eq(definition.required),
                attribute_definitions::default_value.eq(&parts.default_value),
                attribute_definitions::options.eq(&parts.options),
                attribute_definitions::min_value.eq(&parts.min_value),
                attribute_definitions::max_value.eq(&parts.max_value),
                attribute_definitions::version.eq(current.version + 1),
                attribute_definitions::updated_at.eq(now()),
            ))
            .execute(conn)?;

        if old.default != definition.default || !invalid.is_empty() {
            match &definition.default {
                Some(default) => {
                    let set_default = (
                        customer_attributes::value_json.eq(default.to_json().to_string()),
                        customer_attributes::value_text.eq(default.text()),
                        customer_attributes::value_number.eq(default.number()),
                        customer_attributes::from_default.eq(true),
                    );
                    diesel::update(
                        subtree_rows!(scheme.id, &category.code, key)
                            .filter(customer_attributes::from_default.eq(true)),
                    )
                    .set(set_default.clone())
                    .execute(conn)?;
                    for chunk in invalid.chunks(1000) {
                        diesel::update(
                            customer_attributes::table
                                .filter(customer_attributes::attr_key.eq(key))
                                .filter(customer_attributes::customer_id.eq_any(chunk)),
                        )
                        .set(set_default.clone())
                        .execute(conn)?;
                    }
                    fill_defaults(conn, scheme.id, &category.code, key, default)?;
                }
                None => {
                    diesel::delete(
                        subtree_rows!(scheme.id, &category.code, key)
                            .filter(customer_attributes::from_default.eq(true)),
                    )
                    .execute(conn)?;
                }
            }
            customer_store::refresh_snapshot(
                conn,
                SnapshotTarget::Members { scheme_id: scheme.id, category: &category.code },
                true,
            )?;
        }
        view(&scheme, find(conn, &scheme, &category.code, key)?)
    })
}

fn passes(definition: &Definition, stored_json: &str) -> bool {
    serde_json::from_str::<Json>(stored_json).ok().is_some_and(|json| definition.check(&json).is_ok())
}

/// `DELETE …/attributes/{key}`: the customers' values of it go too, which needs
/// `force` when some were entered rather than defaulted.
pub fn delete(
    conn: &mut DbConnection,
    scheme_code: &str,
    category_code: &str,
    key: &str,
    expected: Option<i64>,
    force: bool,
) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let (scheme, category) = target(conn, scheme_code, category_code)?;
        lock_rows(conn, LockableTable::Schemes, &[scheme.id], LockMode::Exclusive)?;
        let current = find(conn, &scheme, &category.code, key)?;
        check_version(expected, current.version)?;
        let values = subtree_values(conn, scheme.id, &category.code, key)?;
        let entered = values.iter().filter(|(_, _, from_default)| !from_default).count() as i64;
        if entered > 0 && !force {
            return Err(AppError {
                violations: Some(entered),
                ..AppError::new(ErrorCode::AttributeInUse, format!("{entered} customers have a value for {key}; send force=true to delete the definition with their values"))
            });
        }
        diesel::delete(subtree_rows!(scheme.id, &category.code, key)).execute(conn)?;
        diesel::delete(attribute_definitions::table.filter(attribute_definitions::id.eq(current.id))).execute(conn)?;
        if !values.is_empty() {
            customer_store::refresh_snapshot(
                conn,
                SnapshotTarget::Members { scheme_id: scheme.id, category: &category.code },
                true,
            )?;
        }
        Ok(())
    })
}

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
