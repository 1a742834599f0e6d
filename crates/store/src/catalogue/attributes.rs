//! Attribute definitions on categories (customers' typed values are `attribute_values`).
//!
//! A key belongs to one scheme and appears at most once along any root-to-leaf
//! path, so a customer, holding one category per scheme, has at most one definition
//! per key. A definition's change that would leave stored values invalid is refused
//! with the number of customers concerned, or fills defaults when forced.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use serde_json::Value as Json;

use crate::db::schema::{attribute_definitions, category_members, customer_attributes, schemes};
use crate::db::{now, transaction, DbConnection};
use crate::domain::attribute::{AttributeKey, AttributeValue, Definition, DefinitionDraft, ValueType};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::archive::customer_rows::{self as customer_store, SnapshotTarget};
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

pub(crate) fn by_key(effective: Vec<Effective>) -> BTreeMap<String, Effective> {
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
