//! A customer's row and what is read from it: its assignments and attribute values
//! as the denormalised snapshot (`classification`, `attributes`) holds them, and the
//! statement that rewrites that snapshot. Every other store module builds on this
//! one; it builds on none of them.

use std::collections::BTreeMap;

use diesel::prelude::*;

use crate::db::schema::customers;
use crate::db::{now, DbConnection};
use crate::domain::customer::CustomerStatus;
use crate::error::{AppError, ErrorCode};

use crate::db::sql::{Bind, Fragment};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = customers)]
pub struct CustomerRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub short_name: Option<String>,
    pub tax_id: Option<String>,
    pub contact_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    #[diesel(deserialize_as = String)]
    pub status: CustomerStatus,
    pub note: Option<String>,
    /// The current assignments as JSON; see `refresh_snapshot`.
    pub classification: String,
    /// The current attribute values as JSON; see `refresh_snapshot`.
    pub attributes: Option<String>,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    /// The pending changes by scheme as JSON; see `classification::pending::refresh`.
    pub pending: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AssignmentView {
    pub scheme: String,
    pub category: String,
    pub locked: bool,
    pub assigned_at: chrono::NaiveDateTime,
}

/// One element of `customers.classification`, as the SQL below writes it.
#[derive(serde::Deserialize)]
struct SnapshotEntry {
    scheme: String,
    category: String,
    /// 0/1 from both backends' JSON functions.
    locked: serde_json::Value,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC.
    assigned_at: String,
}

/// A customer's current assignments, from its snapshot.
pub fn assignments_of(row: &CustomerRow) -> Result<Vec<AssignmentView>, AppError> {
    let corrupt = || AppError::corrupt(format!("customer {} has a corrupt classification snapshot", row.code));
    let entries: Vec<SnapshotEntry> = serde_json::from_str(&row.classification).map_err(|_| corrupt())?;
    let mut assignments = entries
        .into_iter()
        .map(|entry| {
            let assigned_at = chrono::NaiveDateTime::parse_from_str(&entry.assigned_at, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|_| corrupt())?;
            let locked = entry.locked.as_bool().unwrap_or_else(|| entry.locked.as_i64() == Some(1));
            Ok(AssignmentView { scheme: entry.scheme, category: entry.category, locked, assigned_at })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    assignments.sort_by(|a, b| a.scheme.cmp(&b.scheme));
    Ok(assignments)
}

/// `{"key": [value, from_default], …}` as `refresh_snapshot` writes it.
pub(crate) fn decode_attributes(row: &CustomerRow) -> Result<BTreeMap<String, AttributeView>, AppError> {
    let Some(text) = &row.attributes else { return Ok(BTreeMap::new()) };
    let entries: BTreeMap<String, (serde_json::Value, serde_json::Value)> = serde_json::from_str(text)
        .map_err(|_| AppError::corrupt(format!("customer {} has a corrupt attribute snapshot", row.code)))?;
    Ok(entries
        .into_iter()
        .map(|(key, (value, from_default))| {
            let from_default = from_default.as_bool().unwrap_or_else(|| from_default.as_i64() == Some(1));
            (key, AttributeView { value, from_default })
        })
        .collect())
}

/// The snapshots of a customer created with these categories, `(scheme, category)`, none
/// pinned, all assigned `at`, and these values, `(key, value, from default)`: what
/// `refresh_snapshot` would write, for a writer that inserts customers whole.
pub fn new_snapshots<'a>(
    categories: impl IntoIterator<Item = (&'a str, &'a str)>,
    at: chrono::NaiveDateTime,
    values: impl IntoIterator<Item = (&'a str, serde_json::Value, bool)>,
) -> (String, Option<String>) {
    let assigned_at = at.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let classification: Vec<serde_json::Value> = categories
        .into_iter()
        .map(|(scheme, category)| serde_json::json!({"scheme": scheme, "category": category, "locked": 0, "assigned_at": assigned_at}))
        .collect();
    let values: serde_json::Map<String, serde_json::Value> = values
        .into_iter()
        .map(|(key, value, from_default)| (key.to_string(), serde_json::json!([value, from_default])))
        .collect();
    (
        serde_json::Value::Array(classification).to_string(),
        (!values.is_empty()).then(|| serde_json::Value::Object(values).to_string()),
    )
}

fn view_of(row: CustomerRow) -> Result<CustomerView, AppError> {
    Ok(CustomerView {
        assignments: assignments_of(&row)?,
        attributes: decode_attributes(&row)?,
        pending: decode_pending(&row)?,
        row,
    })
}

#[derive(Debug, Clone)]
pub struct AttributeView {
    pub value: serde_json::Value,
    pub from_default: bool,
}

#[derive(Debug, Clone)]
pub struct CustomerView {
    pub row: CustomerRow,
    /// Ordered by scheme code.
    pub assignments: Vec<AssignmentView>,
    pub attributes: BTreeMap<String, AttributeView>,
    /// By scheme code.
    pub pending: BTreeMap<String, PendingView>,
}

/// A change of the customer's category in a scheme that takes effect later.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PendingView {
    pub id: i64,
    pub category: String,
    #[serde(deserialize_with = "snapshot_moment")]
    pub effective_at: chrono::NaiveDateTime,
    pub actor: String,
    pub reason: Option<String>,
}

fn snapshot_moment<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<chrono::NaiveDateTime, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f").map_err(serde::de::Error::custom)
}

/// `{"SCHEME": {"id", "category", "effective_at", "actor", "reason"}}` as
/// `classification::pending::refresh` writes it.
pub(crate) fn decode_pending(row: &CustomerRow) -> Result<BTreeMap<String, PendingView>, AppError> {
    let Some(text) = &row.pending else { return Ok(BTreeMap::new()) };
    serde_json::from_str(text)
        .map_err(|_| AppError::corrupt(format!("customer {} has a corrupt snapshot of pending changes", row.code)))
}

pub fn customer_not_found(code: &str) -> AppError {
    AppError::new(ErrorCode::CustomerNotFound, format!("customer {code} does not exist"))
}

pub fn find(conn: &mut DbConnection, code: &str) -> Result<Option<CustomerRow>, AppError> {
    Ok(customers::table.filter(customers::code.eq(code)).select(CustomerRow::as_select()).first(conn).optional()?)
}

pub fn get_row(conn: &mut DbConnection, code: &str) -> Result<CustomerRow, AppError> {
    find(conn, code)?.ok_or_else(|| customer_not_found(code))
}

pub fn views(rows: Vec<CustomerRow>) -> Result<Vec<CustomerView>, AppError> {
    rows.into_iter().map(view_of).collect()
}

/// One customer with its assignments: a single-row lookup, the hot read path.
pub fn view(conn: &mut DbConnection, code: &str) -> Result<CustomerView, AppError> {
    let row: Option<CustomerRow> = crate::native!(conn, |native| customers::table
        .filter(customers::code.eq(code))
        .select(CustomerRow::as_select())
        .first(native)
        .optional())?;
    view_of(row.ok_or_else(|| customer_not_found(code))?)
}

pub fn view_by_id(conn: &mut DbConnection, id: i64) -> Result<CustomerView, AppError> {
    view_of(customers::table.find(id).select(CustomerRow::as_select()).first(conn)?)
}

/// Whose snapshots to rewrite, and which of the two changed.
#[derive(Debug, Clone, Copy)]
pub enum SnapshotTarget<'a> {
    /// Customers whose assignments or values changed.
    Ids(&'a [i64]),
    /// Customers whose assignments changed and whose values did not.
    Reassigned(&'a [i64]),
    /// Every customer in the subtree of a category, whose values changed (their
    /// assignments did not).
    Members { scheme_id: i64, category: &'a str },
}

/// Rewrites `classification` from `customer_categories` and `attributes` from
/// `customer_attributes` (each only where the target says it changed) in set-based
/// statements, a thousand customers each for ids; with `bump_version` gives them a
/// new version: their representation changed. Every change of assignments or values
/// ends with this call.
pub fn refresh_snapshot(conn: &mut DbConnection, target: SnapshotTarget, bump_version: bool) -> Result<(), AppError> {
    let (classification, attributes) = match conn {
        DbConnection::Mysql(_) => (
            "COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT('scheme', s.code, 'category', cc.category_code, 'locked', cc.locked, \
             'assigned_at', DATE_FORMAT(cc.assigned_at, '%Y-%m-%d %H:%i:%s.%f'))) \
             FROM customer_categories cc JOIN schemes s ON s.id = cc.scheme_id WHERE cc.customer_id = customers.id), '[]')",
            "(SELECT CONCAT('{', GROUP_CONCAT(CONCAT('\"', a.attr_key, '\":[', a.value_json, ',', IF(a.from_default, 'true', 'false'), ']') \
             ORDER BY a.attr_key SEPARATOR ','), '}') FROM customer_attributes a WHERE a.customer_id = customers.id)",
        ),
        DbConnection::Sqlite(_) => (
            "COALESCE((SELECT json_group_array(json_object('scheme', s.code, 'category', cc.category_code, 'locked', cc.locked, \
             'assigned_at', cc.assigned_at)) \
             FROM customer_categories cc JOIN schemes s ON s.id = cc.scheme_id WHERE cc.customer_id = customers.id), '[]')",
            "(SELECT '{' || group_concat('\"' || a.attr_key || '\":[' || a.value_json || ',' || CASE WHEN a.from_default THEN 'true' ELSE 'false' END || ']', ',') || '}' \
             FROM customer_attributes a WHERE a.customer_id = customers.id)",
        ),
    };
    let mut update = Fragment::new("UPDATE customers SET ");
    update.push(&match target {
        SnapshotTarget::Ids(_) => format!("classification = {classification}, attributes = {attributes}"),
        SnapshotTarget::Reassigned(_) => format!("classification = {classification}"),
        SnapshotTarget::Members { .. } => format!("attributes = {attributes}"),
    });
    if bump_version {
        update.push(", version = version + 1, updated_at = ").bind(Bind::Timestamp(now()));
    }
    update.push(" WHERE ");
    match target {
        SnapshotTarget::Ids(ids) | SnapshotTarget::Reassigned(ids) => {
            for chunk in ids.chunks(1000) {
                let mut statement = update.clone();
                statement.push(&format!("id IN ({})", crate::id_list(chunk)));
                statement.into_query().execute(conn)?;
            }
        }
        SnapshotTarget::Members { scheme_id, category } => {
            update
                .push("id IN (SELECT customer_id FROM category_members WHERE scheme_id = ")
                .bind(Bind::BigInt(scheme_id))
                .push(" AND category_code = ")
                .bind(Bind::Text(category.to_string()))
                .push(")");
            update.into_query().execute(conn)?;
        }
    }
    Ok(())
}
