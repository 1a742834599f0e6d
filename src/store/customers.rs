//! The customer archive: rows, their assignments, and the filtered, keyset-paged list.

use std::collections::BTreeMap;

use diesel::prelude::*;

use crate::db::schema::{attribute_definitions, categories, category_members, customer_attributes, customer_categories, customers, schemes};
use crate::db::{now, transaction, DbBackend, DbConnection};
use crate::domain::attribute::{parse_operand, AttributeValue, FilterOp, Operand, ValueType, LIKE_ESCAPE};
use crate::domain::category::{CategoryCode, ClassificationVector};
use crate::domain::customer::{CustomerCode, CustomerStatus, TaxId};
use crate::domain::FieldError;
use crate::error::AppError;

use super::assignments::{self, AttributeCheck, Provenance};
use super::attributes::{self, EditMode};
use super::history::Source;
use super::schemes::{self as scheme_store, SchemeRow};
use super::{lock_current, prefix_upper_bound, LockableTable};

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
    pub status: String,
    pub note: Option<String>,
    /// The current assignments as JSON; see `refresh_snapshot`.
    pub classification: String,
    /// The current attribute values as JSON; see `refresh_snapshot`.
    pub attributes: Option<String>,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
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

fn decode_classification(row: &CustomerRow) -> Result<Vec<AssignmentView>, AppError> {
    let corrupt = || AppError::corrupt(format!("customer {} has a corrupt classification snapshot", row.code));
    let entries: Vec<SnapshotEntry> = serde_json::from_str(&row.classification).map_err(|_| corrupt())?;
    let mut assignments = entries
        .into_iter()
        .map(|entry| {
            let assigned_at = chrono::NaiveDateTime::parse_from_str(&entry.assigned_at, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| corrupt())?;
            let locked = entry.locked.as_bool().unwrap_or_else(|| entry.locked.as_i64() == Some(1));
            Ok(AssignmentView { scheme: entry.scheme, category: entry.category, locked, assigned_at })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    assignments.sort_by(|a, b| a.scheme.cmp(&b.scheme));
    Ok(assignments)
}

/// `{"key": [value, from_default], …}` as `refresh_snapshot` writes it.
fn decode_attributes(row: &CustomerRow) -> Result<BTreeMap<String, AttributeView>, AppError> {
    let Some(text) = &row.attributes else { return Ok(BTreeMap::new()) };
    let entries: BTreeMap<String, (serde_json::Value, serde_json::Value)> =
        serde_json::from_str(text).map_err(|_| AppError::corrupt(format!("customer {} has a corrupt attribute snapshot", row.code)))?;
    Ok(entries
        .into_iter()
        .map(|(key, (value, from_default))| {
            let from_default = from_default.as_bool().unwrap_or_else(|| from_default.as_i64() == Some(1));
            (key, AttributeView { value, from_default })
        })
        .collect())
}

fn view_of(row: CustomerRow) -> Result<CustomerView, AppError> {
    Ok(CustomerView { assignments: decode_classification(&row)?, attributes: decode_attributes(&row)?, row })
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
}

/// Every field of a new customer, validated.
#[derive(Debug, Clone)]
pub struct CustomerFields {
    pub name: String,
    pub short_name: Option<String>,
    pub tax_id: Option<TaxId>,
    pub contact_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub status: CustomerStatus,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub code: CustomerCode,
    pub fields: CustomerFields,
    /// Scheme code → category, assigned in the same transaction.
    pub categories: Vec<(String, CategoryCode)>,
    /// Attribute values, checked against the categories the customer ends up in.
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub reason: Option<String>,
}

/// A partial update; `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    pub name: Option<String>,
    pub short_name: Option<Option<String>>,
    pub tax_id: Option<Option<TaxId>>,
    pub contact_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub address: Option<Option<String>>,
    pub status: Option<CustomerStatus>,
    pub note: Option<Option<String>>,
    /// Merged into the current values; `null` removes one.
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
}

pub fn customer_not_found(code: &str) -> AppError {
    AppError::not_found("customer_not_found", format!("customer {code} does not exist"))
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
    let row: Option<CustomerRow> =
        crate::native!(conn, |native| customers::table.filter(customers::code.eq(code)).select(CustomerRow::as_select()).first(native).optional())?;
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
    let bump = if bump_version { ", version = version + 1, updated_at = ?" } else { "" };
    let columns = match target {
        SnapshotTarget::Ids(_) => format!("classification = {classification}, attributes = {attributes}"),
        SnapshotTarget::Reassigned(_) => format!("classification = {classification}"),
        SnapshotTarget::Members { .. } => format!("attributes = {attributes}"),
    };
    let update = format!("UPDATE customers SET {columns}{bump} WHERE ");
    let run = |conn: &mut DbConnection, sql: String, members: Option<(i64, &str)>| -> Result<(), AppError> {
        use diesel::sql_types::{BigInt, Text, Timestamp};
        match (bump_version, members) {
            (true, Some((scheme_id, category))) => {
                diesel::sql_query(sql).bind::<Timestamp, _>(now()).bind::<BigInt, _>(scheme_id).bind::<Text, _>(category).execute(conn)?
            }
            (false, Some((scheme_id, category))) => diesel::sql_query(sql).bind::<BigInt, _>(scheme_id).bind::<Text, _>(category).execute(conn)?,
            (true, None) => diesel::sql_query(sql).bind::<Timestamp, _>(now()).execute(conn)?,
            (false, None) => diesel::sql_query(sql).execute(conn)?,
        };
        Ok(())
    };
    match target {
        SnapshotTarget::Ids(ids) | SnapshotTarget::Reassigned(ids) => {
            for chunk in ids.chunks(1000) {
                let list = super::id_list(chunk);
                run(conn, format!("{update}id IN ({list})"), None)?;
            }
        }
        SnapshotTarget::Members { scheme_id, category } => {
            run(conn, format!("{update}id IN (SELECT customer_id FROM category_members WHERE scheme_id = ? AND category_code = ?)"), Some((scheme_id, category)))?;
        }
    }
    Ok(())
}

fn duplicate_code(code: &str) -> AppError {
    AppError::conflict("duplicate_code", format!("customer {code} already exists"))
}

fn duplicate_tax_id(tax_id: &str) -> AppError {
    AppError::conflict("duplicate_tax_id", format!("another customer already has tax id {tax_id}"))
}

fn ensure_tax_id_free(conn: &mut DbConnection, tax_id: &TaxId, except: Option<i64>) -> Result<(), AppError> {
    let holder: Option<i64> = customers::table
        .filter(customers::tax_id.eq(tax_id.as_str()))
        .filter(customers::id.ne(except.unwrap_or(-1)))
        .select(customers::id)
        .first(conn)
        .optional()?;
    holder.map_or(Ok(()), |_| Err(duplicate_tax_id(tax_id.as_str())))
}

/// Unique indexes catch what a race let through; their names tell which rule broke.
fn unique_violation(error: diesel::result::Error, code: &str, tax_id: Option<&str>) -> AppError {
    match &error {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info) if info.message().contains("tax_id") => {
            duplicate_tax_id(tax_id.unwrap_or_default())
        }
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => duplicate_code(code),
        _ => error.into(),
    }
}

/// Creates a customer with the categories it names, then gives every active scheme's
/// default to schemes it does not name. A required scheme left without a category
/// refuses the whole create.
pub fn create(conn: &mut DbConnection, new: &NewCustomer, actor: &str) -> Result<CustomerView, AppError> {
    transaction(conn, |conn| {
        let code = new.code.as_str();
        if find(conn, code)?.is_some() {
            return Err(duplicate_code(code));
        }
        if let Some(tax_id) = &new.fields.tax_id {
            ensure_tax_id_free(conn, tax_id, None)?;
        }
        let at = now();
        let fields = &new.fields;
        diesel::insert_into(customers::table)
            .values((
                customers::code.eq(code),
                customers::name.eq(&fields.name),
                customers::short_name.eq(&fields.short_name),
                customers::tax_id.eq(fields.tax_id.as_ref().map(TaxId::as_str)),
                customers::contact_name.eq(&fields.contact_name),
                customers::phone.eq(&fields.phone),
                customers::email.eq(&fields.email),
                customers::address.eq(&fields.address),
                customers::status.eq(fields.status.as_str()),
                customers::note.eq(&fields.note),
                customers::classification.eq("[]"),
                customers::version.eq(1),
                customers::created_at.eq(at),
                customers::updated_at.eq(at),
            ))
            .execute(conn)
            .map_err(|e| unique_violation(e, code, fields.tax_id.as_ref().map(TaxId::as_str)))?;
        let customer = get_row(conn, code)?;

        let mut errors = Vec::new();
        let named = Provenance::new(actor, Source::Manual, new.reason.clone());
        for (scheme_code, category) in &new.categories {
            let field = format!("categories.{scheme_code}");
            let Some(scheme) = scheme_store::find(conn, scheme_code)? else {
                errors.push(FieldError::new(field, format!("no scheme {scheme_code}")));
                continue;
            };
            match assignments::assignable_category(conn, &scheme, category.as_str(), &field) {
                Ok(target) => {
                    assignments::set(conn, &customer, &scheme, &target, None, &named, AttributeCheck::Deferred)?;
                }
                Err(error) => errors.extend(error.errors),
            }
        }
        if !errors.is_empty() {
            return Err(AppError::validation("invalid_categories", "some categories cannot be assigned; nothing was created", errors));
        }

        let by_default = Provenance::new(actor, Source::Default, Some("default category of the scheme".into()));
        let all_schemes: Vec<SchemeRow> = schemes::table.filter(schemes::active.eq(true)).order(schemes::code).select(SchemeRow::as_select()).load(conn)?;
        let mut missing_required = Vec::new();
        for scheme in all_schemes.iter().filter(|s| !new.categories.iter().any(|(code, _)| *code == s.code)) {
            match &scheme.default_category {
                Some(default) => {
                    let target = assignments::assignable_category(conn, scheme, default, &format!("categories.{}", scheme.code))?;
                    assignments::set(conn, &customer, scheme, &target, None, &by_default, AttributeCheck::Deferred)?;
                }
                None if scheme.required => {
                    missing_required.push(FieldError::new(format!("categories.{}", scheme.code), format!("scheme {} is required and has no default category", scheme.code)));
                }
                None => {}
            }
        }
        if !missing_required.is_empty() {
            return Err(AppError::validation("category_required", "every required scheme needs a category", missing_required));
        }
        attributes::edit_values(conn, &customer, &new.attributes, EditMode::Replace)?;
        refresh_snapshot(conn, SnapshotTarget::Ids(&[customer.id]), false)?;
        view_by_id(conn, customer.id)
    })
}

pub fn update(conn: &mut DbConnection, code: &str, changes: &CustomerChanges, expected: Option<i64>) -> Result<CustomerView, AppError> {
    transaction(conn, |conn| {
        let current = lock_current(conn, LockableTable::Customers, expected, |conn| get_row(conn, code))?;
        if let Some(Some(tax_id)) = &changes.tax_id {
            ensure_tax_id_free(conn, tax_id, Some(current.id))?;
        }
        let pick = |change: &Option<Option<String>>, old: &Option<String>| change.clone().unwrap_or_else(|| old.clone());
        let tax_id = match &changes.tax_id {
            Some(new) => new.as_ref().map(|t| t.as_str().to_string()),
            None => current.tax_id.clone(),
        };
        let updated = diesel::update(customers::table.filter(customers::id.eq(current.id)).filter(customers::version.eq(current.version)))
            .set((
                customers::name.eq(changes.name.as_ref().unwrap_or(&current.name)),
                customers::short_name.eq(pick(&changes.short_name, &current.short_name)),
                customers::tax_id.eq(&tax_id),
                customers::contact_name.eq(pick(&changes.contact_name, &current.contact_name)),
                customers::phone.eq(pick(&changes.phone, &current.phone)),
                customers::email.eq(pick(&changes.email, &current.email)),
                customers::address.eq(pick(&changes.address, &current.address)),
                customers::status.eq(changes.status.map(CustomerStatus::as_str).unwrap_or(&current.status)),
                customers::note.eq(pick(&changes.note, &current.note)),
                customers::version.eq(current.version + 1),
                customers::updated_at.eq(now()),
            ))
            .execute(conn)
            .map_err(|e| unique_violation(e, code, tax_id.as_deref()))?;
        if updated == 0 {
            return Err(AppError::concurrent_update());
        }
        if let Some(values) = &changes.attributes {
            if attributes::edit_values(conn, &current, values, EditMode::Merge)? {
                refresh_snapshot(conn, SnapshotTarget::Ids(&[current.id]), false)?;
            }
        }
        view_by_id(conn, current.id)
    })
}

/// `PUT /customers/{code}/attributes`: the given values replace all explicit ones.
pub fn replace_attributes(conn: &mut DbConnection, code: &str, values: &BTreeMap<String, serde_json::Value>, expected: Option<i64>) -> Result<CustomerView, AppError> {
    transaction(conn, |conn| {
        let current = lock_current(conn, LockableTable::Customers, expected, |conn| get_row(conn, code))?;
        if attributes::edit_values(conn, &current, values, EditMode::Replace)? {
            refresh_snapshot(conn, SnapshotTarget::Ids(&[current.id]), true)?;
        }
        view_by_id(conn, current.id)
    })
}

/// Deletes a customer. Its assignments end with a history entry each, so the history,
/// which outlives the customer, shows where it stood to the last.
pub fn delete(conn: &mut DbConnection, code: &str, expected: Option<i64>, actor: &str) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let current = lock_current(conn, LockableTable::Customers, expected, |conn| get_row(conn, code))?;
        let held: Vec<SchemeRow> = customer_categories::table
            .inner_join(schemes::table)
            .filter(customer_categories::customer_id.eq(current.id))
            .select(SchemeRow::as_select())
            .load(conn)?;
        let provenance = Provenance::new(actor, Source::Manual, Some("customer deleted".into()));
        for scheme in &held {
            assignments::clear(conn, &current, scheme, &provenance)?;
        }
        diesel::delete(customers::table.filter(customers::id.eq(current.id))).execute(conn)?;
        Ok(())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Code,
    Name,
    CreatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// The last row of a page, in the terms of the sort; the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Code(String),
    Name(String, i64),
    CreatedAt(chrono::NaiveDateTime, i64),
}

impl After {
    fn of(row: &CustomerRow, key: SortKey) -> Self {
        match key {
            SortKey::Code => After::Code(row.code.clone()),
            SortKey::Name => After::Name(row.name.clone(), row.id),
            SortKey::CreatedAt => After::CreatedAt(row.created_at, row.id),
        }
    }
}

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

#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Every filter must hold (AND); each includes the category's subtree.
    pub categories: Vec<CategoryFilter>,
    /// Every filter must hold (AND), compared by the attribute's type.
    pub attributes: Vec<AttributeFilter>,
    /// Customers with no category in these schemes.
    pub unclassified: Vec<String>,
    /// Substring of code, name or short name, case-insensitive for ASCII.
    pub text: Option<String>,
    pub status: Option<CustomerStatus>,
    pub sort: Sort,
    pub after: Option<After>,
    pub limit: i64,
}

pub struct ListPage {
    pub items: Vec<CustomerView>,
    pub next: Option<After>,
}

diesel::define_sql_function! {
    /// SQL `lower()`, for case-insensitive search on both backends.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

diesel::define_sql_function! {
    #[sql_name = "lower"]
    fn lower_nullable(text: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// `LIKE` pattern for a substring, with `\` escaping the wildcards in it.
fn contains_pattern(text: &str) -> String {
    let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

fn filter_scheme(conn: &mut DbConnection, code: &str, field: &str) -> Result<SchemeRow, AppError> {
    scheme_store::find(conn, code)?
        .ok_or_else(|| AppError::validation("scheme_not_found", format!("scheme {code} does not exist"), vec![FieldError::new(field, format!("no scheme {code}"))]))
}

type CustomerQuery<'a> = customers::BoxedQuery<'a, DbBackend>;

/// A category filter resolved to its scheme.
struct Membership {
    scheme_id: i64,
    code: String,
}

impl Membership {
    /// What `classification_vector` holds for every customer in the subtree.
    fn needle(&self) -> String {
        ClassificationVector::subtree_needle(self.scheme_id, &self.code)
    }
}

diesel::define_sql_function! {
    /// SQL `instr()`: the 1-based position of `needle` in `haystack`, 0 if absent.
    fn instr(haystack: diesel::sql_types::Text, needle: diesel::sql_types::Text) -> diesel::sql_types::Integer;
}

fn resolve(conn: &mut DbConnection, filter: &CategoryFilter) -> Result<Membership, AppError> {
    let scheme_id: Option<i64> = categories::table
        .inner_join(schemes::table)
        .filter(schemes::code.eq(&filter.scheme))
        .filter(categories::code.eq(filter.code.as_str()))
        .select(schemes::id)
        .first(conn)
        .optional()?;
    match scheme_id {
        Some(scheme_id) => Ok(Membership { scheme_id, code: filter.code.as_str().to_string() }),
        None => {
            filter_scheme(conn, &filter.scheme, "category")?;
            Err(AppError::validation(
                "category_not_found",
                format!("category {} does not exist in scheme {}", filter.code, filter.scheme),
                vec![FieldError::new("category", format!("no category {} in scheme {}", filter.code, filter.scheme))],
            ))
        }
    }
}

/// An attribute filter with its operand typed by the key's definition.
#[derive(Debug)]
struct AttributeProbe {
    key: String,
    op: FilterOp,
    numeric: bool,
    /// `LIKE` with one pattern, or a comparison with one operand, or `IN` with several.
    pattern: bool,
    operands: Vec<BoundValue>,
}

#[derive(Debug)]
enum BoundValue {
    Number(f64),
    Text(String),
}

impl BoundValue {
    fn of(value: &AttributeValue) -> Self {
        match (value.number(), value.text()) {
            (Some(number), _) => BoundValue::Number(number),
            (None, text) => BoundValue::Text(text.unwrap_or_default()),
        }
    }
}

fn resolve_attribute(conn: &mut DbConnection, filter: &AttributeFilter) -> Result<AttributeProbe, AppError> {
    let field = |message: String| vec![FieldError::new("attr", message)];
    let value_type: Option<String> = attribute_definitions::table
        .filter(attribute_definitions::attr_key.eq(&filter.key))
        .select(attribute_definitions::value_type)
        .first(conn)
        .optional()?;
    let value_type = value_type.and_then(|t| ValueType::parse(&t)).ok_or_else(|| {
        AppError::validation("attribute_not_found", format!("no category defines attribute {}", filter.key), field(format!("unknown attribute {}", filter.key)))
    })?;
    let operand = parse_operand(value_type, filter.op, &filter.value)
        .map_err(|message| AppError::validation("invalid_filter", format!("attr {}: {message}", filter.key), field(message)))?;
    let (pattern, operands) = match operand {
        Operand::Pattern(pattern) => (true, vec![BoundValue::Text(pattern)]),
        Operand::One(value) => (false, vec![BoundValue::of(&value)]),
        Operand::Many(values) => (false, values.iter().map(BoundValue::of).collect()),
    };
    Ok(AttributeProbe { key: filter.key.clone(), op: filter.op, numeric: value_type.is_numeric(), pattern, operands })
}

/// An attribute filter as SQL. With `id_column`, `EXISTS` a value of that customer
/// that passes (a primary-key lookup); without, the test of the `customer_attributes`
/// row a page is driven by. Values are compared in the column of the attribute's
/// type. Only the operator comes from code; the key and every operand are bound.
#[derive(Debug, Clone)]
struct AttributeCondition {
    id_column: Option<&'static str>,
    probe: std::sync::Arc<AttributeProbe>,
}

impl diesel::expression::Expression for AttributeCondition {
    type SqlType = diesel::sql_types::Bool;
}

impl<QS> diesel::expression::AppearsOnTable<QS> for AttributeCondition {}

impl<QS> diesel::expression::SelectableExpression<QS> for AttributeCondition {}

impl diesel::expression::ValidGrouping<()> for AttributeCondition {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl diesel::query_builder::QueryId for AttributeCondition {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<DbBackend> for AttributeCondition {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DbBackend>) -> QueryResult<()> {
        use diesel::sql_types::{Double, Text};
        let probe = &*self.probe;
        let value = if probe.numeric { "value_number" } else { "value_text" };
        let column = match self.id_column {
            Some(id_column) => {
                out.push_sql("EXISTS (SELECT 1 FROM customer_attributes a WHERE a.customer_id = ");
                out.push_sql(id_column);
                out.push_sql(" AND a.attr_key = ");
                out.push_bind_param::<Text, _>(&probe.key)?;
                out.push_sql(" AND ");
                format!("a.{value}")
            }
            // Wrapped so that no index on the value is usable: the page is driven
            // in customer-code order by `(attr_key, customer_code, …)`, the value
            // tested on its entries.
            None => format!("COALESCE(customer_attributes.{value}, {})", if probe.numeric { "0" } else { "''" }),
        };
        if probe.pattern {
            out.push_sql(&format!("LOWER({column}) LIKE "));
        } else if probe.op == FilterOp::In {
            out.push_sql(&format!("{column} IN "));
        } else {
            out.push_sql(&format!("{column} {} ", probe.op.sql()));
        }
        out.push_sql("(");
        for (i, operand) in probe.operands.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            match operand {
                BoundValue::Number(number) => out.push_bind_param::<Double, _>(number)?,
                BoundValue::Text(text) => out.push_bind_param::<Text, _>(text)?,
            }
        }
        out.push_sql(")");
        if probe.pattern {
            out.push_sql(&format!(" ESCAPE '{LIKE_ESCAPE}'"));
        }
        if self.id_column.is_some() {
            out.push_sql(")");
        }
        Ok(())
    }
}

/// Members sampled per category to tell which of several filters is sparsest.
const SAMPLE: i64 = 64;
/// Above every customer code (`[A-Za-z0-9_.-]`): where a descending page starts.
const ABOVE_ALL_CODES: &str = "~";

/// A filter whose matches an index yields in customer-code order: a category's
/// members, or the customers whose value of an attribute passes a test.
enum Stream {
    Category(Membership),
    Attribute(std::sync::Arc<AttributeProbe>),
}

impl AttributeProbe {
    /// Equality with one operand: `(attr_key, value, customer_code)` yields its
    /// matches in code order. Any other test streams through
    /// `(attr_key, customer_code, value_number, value_text)`, tested on the entries.
    fn is_equality(&self) -> bool {
        self.op == FilterOp::Eq && !self.pattern && self.operands.len() == 1
    }
}

/// The `customer_attributes` rows of an attribute filter, as a boxed query of `$table`.
macro_rules! attribute_rows {
    ($sql:expr, $probe:expr) => {{
        let probe: &std::sync::Arc<AttributeProbe> = $probe;
        let sql = $sql.filter(customer_attributes::attr_key.eq(probe.key.clone()));
        match (probe.is_equality(), &probe.operands[0]) {
            (true, BoundValue::Number(number)) => sql.filter(customer_attributes::value_number.eq(*number)),
            (true, BoundValue::Text(text)) => sql.filter(customer_attributes::value_text.eq(text.clone())),
            (false, _) => sql.filter(AttributeCondition { id_column: None, probe: probe.clone() }),
        }
    }};
}

/// Where the `SAMPLE`-th match of a stream lies after `after` in page order, or
/// `None` when fewer remain: the further it lies, the sparser the stream is there.
fn sample_reach(conn: &mut DbConnection, stream: &Stream, after: &str, descending: bool) -> Result<Option<String>, AppError> {
    let codes: Vec<String> = match stream {
        Stream::Category(membership) => crate::native!(conn, |native| {
            let base = category_members::table
                .filter(category_members::scheme_id.eq(membership.scheme_id))
                .filter(category_members::category_code.eq(&membership.code))
                .select(category_members::customer_code);
            if descending {
                base.filter(category_members::customer_code.lt(after)).order(category_members::customer_code.desc()).limit(SAMPLE).load(native)
            } else {
                base.filter(category_members::customer_code.gt(after)).order(category_members::customer_code.asc()).limit(SAMPLE).load(native)
            }
        })?,
        Stream::Attribute(probe) => {
            let sql = attribute_rows!(customer_attributes::table.select(customer_attributes::customer_code).into_boxed(), probe);
            let sql = if descending {
                sql.filter(customer_attributes::customer_code.lt(after.to_string())).order(customer_attributes::customer_code.desc())
            } else {
                sql.filter(customer_attributes::customer_code.gt(after.to_string())).order(customer_attributes::customer_code.asc())
            };
            sql.limit(SAMPLE).load(conn)?
        }
    };
    Ok(if (codes.len() as i64) < SAMPLE { None } else { codes.last().cloned() })
}

/// The index of the sparsest stream: it drives the page, the other filters are probes.
fn sparsest(conn: &mut DbConnection, streams: &[Stream], after: &str, descending: bool) -> Result<usize, AppError> {
    if streams.len() < 2 {
        return Ok(0);
    }
    let mut best: Option<(usize, Option<String>)> = None;
    for (index, stream) in streams.iter().enumerate() {
        let reach = sample_reach(conn, stream, after, descending)?;
        let further = match (&best, &reach) {
            (None, _) => true,
            (Some((_, None)), _) => false,
            (Some((_, Some(_))), None) => true,
            (Some((_, Some(current))), Some(candidate)) => (candidate > current) != descending,
        };
        if further {
            best = Some((index, reach));
        }
        if matches!(best, Some((_, None))) {
            break;
        }
    }
    Ok(best.map_or(0, |(index, _)| index))
}

/// The filters every list applies, for either query shape below. `$id` is the
/// customer id of the driving index, so that probes run before a customer row is read.
macro_rules! filter_customers {
    ($sql:ident, $id:expr, $id_sql:expr, $memberships:expr, $unclassified:expr, $attributes:expr, $query:expr) => {{
        for probe in $attributes {
            $sql = $sql.filter(AttributeCondition { id_column: Some($id_sql), probe: probe.clone() });
        }
        for membership in $memberships {
            let upper = prefix_upper_bound(&membership.code);
            $sql = $sql.filter(diesel::dsl::exists(
                customer_categories::table
                    .filter(customer_categories::customer_id.eq($id))
                    .filter(customer_categories::scheme_id.eq(membership.scheme_id))
                    .filter(customer_categories::category_code.ge(membership.code))
                    .filter(customer_categories::category_code.lt(upper)),
            ));
        }
        for scheme_id in $unclassified {
            $sql = $sql.filter(diesel::dsl::not(diesel::dsl::exists(
                customer_categories::table
                    .filter(customer_categories::customer_id.eq($id))
                    .filter(customer_categories::scheme_id.eq(scheme_id)),
            )));
        }
        if let Some(text) = &$query.text {
            let pattern = contains_pattern(text);
            $sql = $sql.filter(
                lower(customers::code)
                    .like(pattern.clone())
                    .escape('\\')
                    .or(lower(customers::name).like(pattern.clone()).escape('\\'))
                    .or(lower_nullable(customers::short_name).like(pattern).escape('\\').assume_not_null()),
            );
        }
        if let Some(status) = $query.status {
            $sql = $sql.filter(customers::status.eq(status.as_str()));
        }
    }};
}

/// One page of customers. Sorted by code, the sparsest stream (by a small sample of
/// each) drives the page: a category through `category_members`, where a subtree is
/// one equality whose index is ordered by customer code and carries the customer's
/// classification vector, on which the other categories are tested; or an attribute
/// equality through its value index. Otherwise the sort's index drives. Remaining
/// filters are primary-key probes (the customer's assignment in a scheme, its value
/// of an attribute). Either way a page is a keyset range, so page 10,000 costs what
/// page 1 costs.
pub fn list(conn: &mut DbConnection, query: &ListQuery) -> Result<ListPage, AppError> {
    let mut memberships = query.categories.iter().map(|filter| resolve(conn, filter)).collect::<Result<Vec<_>, _>>()?;
    let mut unclassified = Vec::new();
    for scheme_code in &query.unclassified {
        unclassified.push(filter_scheme(conn, scheme_code, "unclassified")?.id);
    }
    let probes = query.attributes.iter().map(|filter| resolve_attribute(conn, filter).map(std::sync::Arc::new)).collect::<Result<Vec<_>, _>>()?;
    let only_categories = query.text.is_none() && query.status.is_none() && unclassified.is_empty() && probes.is_empty();
    let streaming = !memberships.is_empty() || !probes.is_empty();
    let mut rows: Vec<CustomerRow> = if query.sort.key == SortKey::Code && streaming {
        let descending = query.sort.descending;
        let after = match &query.after {
            Some(After::Code(code)) => code.clone(),
            _ if descending => ABOVE_ALL_CODES.to_string(),
            _ => String::new(),
        };
        // Categories and attribute equalities compete to drive the page. Another
        // attribute test drives only without a category: its stream has to test
        // every entry it passes, where a category's members are all matches.
        let with_categories = !memberships.is_empty();
        let mut streams: Vec<Stream> = memberships.drain(..).map(Stream::Category).collect();
        streams.extend(probes.iter().filter(|probe| probe.is_equality() || !with_categories).cloned().map(Stream::Attribute));
        let driver = streams.remove(sparsest(conn, &streams, &after, descending)?);
        let mut probes = probes;
        for stream in streams {
            match stream {
                Stream::Category(membership) => memberships.push(membership),
                Stream::Attribute(_) => {}
            }
        }
        match driver {
            Stream::Category(driver) if only_categories && memberships.len() <= 1 => {
                // The commonest shapes get a statement that stays prepared.
                let probe = memberships.pop().unwrap_or(Membership { scheme_id: driver.scheme_id, code: driver.code.clone() });
                page_of_two(conn, &driver, &probe, &after, descending, query.limit + 1)?
            }
            Stream::Category(driver) => {
                let mut sql = category_members::table
                    .inner_join(customers::table)
                    .filter(category_members::scheme_id.eq(driver.scheme_id))
                    .filter(category_members::category_code.eq(driver.code))
                    .into_boxed();
                // The other categories are tested on the driver's index entries.
                for membership in &memberships {
                    sql = sql.filter(instr(category_members::classification_vector, membership.needle()).gt(0));
                }
                filter_customers!(sql, category_members::customer_id, "category_members.customer_id", Vec::<Membership>::new(), unclassified, &probes, query);
                let sql = if descending {
                    sql.filter(category_members::customer_code.lt(after)).order(category_members::customer_code.desc())
                } else {
                    sql.filter(category_members::customer_code.gt(after)).order(category_members::customer_code.asc())
                };
                sql.select(CustomerRow::as_select()).limit(query.limit + 1).load(conn)?
            }
            Stream::Attribute(driver) => {
                probes.retain(|probe| !std::sync::Arc::ptr_eq(probe, &driver));
                let mut sql = attribute_rows!(customer_attributes::table.inner_join(customers::table).into_boxed(), &driver);
                filter_customers!(sql, customer_attributes::customer_id, "customer_attributes.customer_id", memberships, unclassified, &probes, query);
                let sql = if descending {
                    sql.filter(customer_attributes::customer_code.lt(after)).order(customer_attributes::customer_code.desc())
                } else {
                    sql.filter(customer_attributes::customer_code.gt(after)).order(customer_attributes::customer_code.asc())
                };
                sql.select(CustomerRow::as_select()).limit(query.limit + 1).load(conn)?
            }
        }
    } else if query.sort.key == SortKey::Code && only_categories {
        let descending = query.sort.descending;
        let after = match &query.after {
            Some(After::Code(code)) => code.clone(),
            _ if descending => ABOVE_ALL_CODES.to_string(),
            _ => String::new(),
        };
        crate::native!(conn, |native| {
            let base = customers::table.select(CustomerRow::as_select()).limit(query.limit + 1);
            if descending {
                base.filter(customers::code.lt(&after)).order(customers::code.desc()).load(native)
            } else {
                base.filter(customers::code.gt(&after)).order(customers::code.asc()).load(native)
            }
        })?
    } else {
        let mut sql: CustomerQuery = customers::table.into_boxed();
        filter_customers!(sql, customers::id, "customers.id", memberships, unclassified, &probes, query);
        // Ids first: the sort's index holds the id, so customers the probes turn
        // down are never read; then only the page's rows.
        let ids: Vec<i64> = keyset(sql, query.sort, query.after.clone()).select(customers::id).limit(query.limit + 1).load(conn)?;
        rows_in_order(conn, &ids)?
    };
    let next = if rows.len() as i64 > query.limit {
        rows.truncate(query.limit as usize);
        rows.last().map(|row| After::of(row, query.sort.key))
    } else {
        None
    };
    Ok(ListPage { items: views(rows)?, next })
}

/// Customers of `driver` that are also in `probe`, a page after `after`, as one
/// unboxed statement (so it stays prepared): the driver's members index gives the
/// order, and its entries carry the classification vector the probe is tested on.
fn page_of_two(conn: &mut DbConnection, driver: &Membership, probe: &Membership, after: &str, descending: bool, limit: i64) -> Result<Vec<CustomerRow>, AppError> {
    let needle = probe.needle();
    Ok(crate::native!(conn, |native| {
        let base = category_members::table
            .inner_join(customers::table)
            .filter(category_members::scheme_id.eq(driver.scheme_id))
            .filter(category_members::category_code.eq(&driver.code))
            .filter(instr(category_members::classification_vector, &needle).gt(0))
            .select(CustomerRow::as_select())
            .limit(limit);
        if descending {
            base.filter(category_members::customer_code.lt(after)).order(category_members::customer_code.desc()).load(native)
        } else {
            base.filter(category_members::customer_code.gt(after)).order(category_members::customer_code.asc()).load(native)
        }
    })?)
}

/// The customers with these ids, in the order of `ids`.
fn rows_in_order(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<CustomerRow>, AppError> {
    let mut rows: Vec<CustomerRow> = customers::table.filter(customers::id.eq_any(ids)).select(CustomerRow::as_select()).load(conn)?;
    let position: std::collections::HashMap<i64, usize> = ids.iter().enumerate().map(|(index, id)| (*id, index)).collect();
    rows.sort_by_key(|row| position.get(&row.id).copied().unwrap_or(usize::MAX));
    Ok(rows)
}

fn keyset(sql: CustomerQuery<'static>, sort: Sort, after: Option<After>) -> CustomerQuery<'static> {
    use customers::{code, created_at, id, name};
    match (sort.key, sort.descending) {
        (SortKey::Code, false) => {
            let sql = sql.order(code.asc());
            match after {
                Some(After::Code(last)) => sql.filter(code.gt(last)),
                _ => sql,
            }
        }
        (SortKey::Code, true) => {
            let sql = sql.order(code.desc());
            match after {
                Some(After::Code(last)) => sql.filter(code.lt(last)),
                _ => sql,
            }
        }
        (SortKey::Name, false) => {
            let sql = sql.order((name.asc(), id.asc()));
            match after {
                Some(After::Name(last, last_id)) => sql.filter(name.gt(last.clone()).or(name.eq(last).and(id.gt(last_id)))),
                _ => sql,
            }
        }
        (SortKey::Name, true) => {
            let sql = sql.order((name.desc(), id.desc()));
            match after {
                Some(After::Name(last, last_id)) => sql.filter(name.lt(last.clone()).or(name.eq(last).and(id.lt(last_id)))),
                _ => sql,
            }
        }
        (SortKey::CreatedAt, false) => {
            let sql = sql.order((created_at.asc(), id.asc()));
            match after {
                Some(After::CreatedAt(last, last_id)) => sql.filter(created_at.gt(last).or(created_at.eq(last).and(id.gt(last_id)))),
                _ => sql,
            }
        }
        (SortKey::CreatedAt, true) => {
            let sql = sql.order((created_at.desc(), id.desc()));
            match after {
                Some(After::CreatedAt(last, last_id)) => sql.filter(created_at.lt(last).or(created_at.eq(last).and(id.lt(last_id)))),
                _ => sql,
            }
        }
    }
}
