//! The customer archive: creating, changing and deleting customers, with the
//! assignments and values they come with.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde_json::json;

use crate::db::schema::{customer_categories, customers, deleted_customers, schemes};
use crate::db::{now, transaction, DbConnection};
use crate::domain::category::CategoryCode;
use crate::domain::customer::{CustomerCode, CustomerStatus, TaxId};
use crate::domain::event::EventType;
use crate::domain::history::Source;
use crate::domain::restriction::Restriction;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::access::visibility;
use crate::archive::customer_rows::{
    find, get_row, refresh_snapshot, view_by_id, CustomerRow, CustomerView, SnapshotTarget,
};
use crate::archive::duplicates;
use crate::catalogue::attribute_values::{self, EditMode};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::classification::assignments;
use crate::classification::{AttributeCheck, ClassificationWrite, Provenance, Setting};
use crate::feed::events;
use crate::reporting::counts;

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

impl CustomerChanges {
    /// Whether it changes anything.
    pub fn any(&self) -> bool {
        self.name.is_some()
            || self.short_name.is_some()
            || self.tax_id.is_some()
            || self.contact_name.is_some()
            || self.phone.is_some()
            || self.email.is_some()
            || self.address.is_some()
            || self.status.is_some()
            || self.note.is_some()
            || self.attributes.is_some()
    }
}

fn duplicate_code(code: &str) -> AppError {
    AppError::new(ErrorCode::DuplicateCode, format!("customer {code} already exists"))
}

fn duplicate_tax_id(tax_id: &str) -> AppError {
    AppError::new(ErrorCode::DuplicateTaxId, format!("another customer already has tax id {tax_id}"))
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
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info)
            if info.message().contains("tax_id") =>
        {
            duplicate_tax_id(tax_id.unwrap_or_default())
        }
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
            duplicate_code(code)
        }
        _ => error.into(),
    }
}

/// Creates a customer with the categories it names, then gives every active scheme's
/// default to schemes it does not name. A required scheme left without a category
/// refuses the whole create.
/// With a `restriction`, the customer must end up inside it (403 `outside_restriction`).
pub fn create(
    conn: &mut DbConnection,
    new: &NewCustomer,
    actor: &str,
    restriction: Option<&Restriction>,
) -> Result<CustomerView, AppError> {
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
        events::record_one(conn, EventType::CustomerCreated, json!({"customer": code}))?;
        counts::customer_added(conn, customer.id, 1)?;
        duplicates::write_keys(conn, customer.id, &fields.name, fields.phone.as_deref(), fields.email.as_deref())?;

        let mut errors = Vec::new();
        let mut write = ClassificationWrite::default();
        let named = Provenance::new(actor, Source::Manual, new.reason.clone());
        for (scheme_code, category) in &new.categories {
            let field = format!("categories.{scheme_code}");
            let Some(scheme) = scheme_store::find(conn, scheme_code)? else {
                errors.push(FieldError::new(field, format!("no scheme {scheme_code}")));
                continue;
            };
            match assignments::assignable_category(conn, &scheme, category.as_str(), &field) {
                Ok(target) => {
                    let setting = Setting {
                        scheme: &scheme,
                        category: &target,
                        locked: None,
                        provenance: &named,
                        check: AttributeCheck::Deferred,
                    };
                    write.set(conn, &customer, setting)?;
                }
                Err(error) => errors.extend(error.errors),
            }
        }
        if !errors.is_empty() {
            return Err(AppError::validation(
                ErrorCode::InvalidCategories,
                "some categories cannot be assigned; nothing was created",
                errors,
            ));
        }

        let by_default = Provenance::new(actor, Source::Default, Some("default category of the scheme".into()));
        let all_schemes: Vec<SchemeRow> = schemes::table
            .filter(schemes::active.eq(true))
            .order(schemes::code)
            .select(SchemeRow::as_select())
            .load(conn)?;
        let mut missing_required = Vec::new();
        for scheme in all_schemes.iter().filter(|s| !new.categories.iter().any(|(code, _)| *code == s.code)) {
            match &scheme.default_category {
                Some(default) => {
                    let target = assignments::assignable_category(
                        conn,
                        scheme,
                        default,
                        &format!("categories.{}", scheme.code),
                    )?;
                    let setting = Setting {
                        scheme,
                        category: &target,
                        locked: None,
                        provenance: &by_default,
                        check: AttributeCheck::Deferred,
                    };
                    write.set(conn, &customer, setting)?;
                }
                None if scheme.required => {
                    missing_required.push(FieldError::new(
                        format!("categories.{}", scheme.code),
                        format!("scheme {} is required and has no default category", scheme.code),
                    ));
                }
                None => {}
            }
        }
        if !missing_required.is_empty() {
            return Err(AppError::validation(
                ErrorCode::CategoryRequiredInRequest,
                "every required scheme needs a category",
                missing_required,
            ));
        }
        attribute_values::edit_values(conn, &customer, &new.attributes, EditMode::Replace)?;
        write.values_changed(customer.id);
        write.finish(conn, false)?;
        let view = view_by_id(conn, customer.id)?;
        visibility::ensure_still_inside(restriction, &view)?;
        Ok(view)
    })
}

pub fn update(
    conn: &mut DbConnection,
    code: &str,
    changes: &CustomerChanges,
    expected: Option<i64>,
    restriction: Option<&Restriction>,
) -> Result<CustomerView, AppError> {
    transaction(conn, |conn| {
        let current = visibility::locked_customer(conn, code, expected, restriction)?;
        if let Some(Some(tax_id)) = &changes.tax_id {
            ensure_tax_id_free(conn, tax_id, Some(current.id))?;
        }
        let pick =
            |change: &Option<Option<String>>, old: &Option<String>| change.clone().unwrap_or_else(|| old.clone());
        let tax_id = match &changes.tax_id {
            Some(new) => new.as_ref().map(|t| t.as_str().to_string()),
            None => current.tax_id.clone(),
        };
        let updated = diesel::update(
            customers::table.filter(customers::id.eq(current.id)).filter(customers::version.eq(current.version)),
        )
        .set((
            customers::name.eq(changes.name.as_ref().unwrap_or(&current.name)),
            customers::short_name.eq(pick(&changes.short_name, &current.short_name)),
            customers::tax_id.eq(&tax_id),
            customers::contact_name.eq(pick(&changes.contact_name, &current.contact_name)),
            customers::phone.eq(pick(&changes.phone, &current.phone)),
            customers::email.eq(pick(&changes.email, &current.email)),
            customers::address.eq(pick(&changes.address, &current.address)),
            customers::status.eq(changes.status.unwrap_or(current.status).as_str()),
            customers::note.eq(pick(&changes.note, &current.note)),
            customers::version.eq(current.version + 1),
            customers::updated_at.eq(now()),
        ))
        .execute(conn)
        .map_err(|e| unique_violation(e, code, tax_id.as_deref()))?;
        if updated == 0 {
            return Err(AppError::concurrent_update());
        }
        if changes.name.is_some() || changes.phone.is_some() || changes.email.is_some() {
            let (phone, email) = (pick(&changes.phone, &current.phone), pick(&changes.email, &current.email));
            duplicates::write_keys(
                conn,
                current.id,
                changes.name.as_ref().unwrap_or(&current.name),
                phone.as_deref(),
                email.as_deref(),
            )?;
        }
        if let Some(values) = &changes.attributes {
            if attribute_values::edit_values(conn, &current, values, EditMode::Merge)? {
                refresh_snapshot(conn, SnapshotTarget::Ids(&[current.id]), false)?;
            }
        }
        let view = view_by_id(conn, current.id)?;
        record_updated(conn, code, view.row.version)?;
        Ok(view)
    })
}

/// `PUT /customers/{code}/attributes`: the given values replace all explicit ones.
pub fn replace_attributes(
    conn: &mut DbConnection,
    code: &str,
    values: &BTreeMap<String, serde_json::Value>,
    expected: Option<i64>,
    restriction: Option<&Restriction>,
) -> Result<CustomerView, AppError> {
    transaction(conn, |conn| {
        let current = visibility::locked_customer(conn, code, expected, restriction)?;
        if attribute_values::edit_values(conn, &current, values, EditMode::Replace)? {
            refresh_snapshot(conn, SnapshotTarget::Ids(&[current.id]), true)?;
            record_updated(conn, code, current.version + 1)?;
        }
        view_by_id(conn, current.id)
    })
}

/// Deletes a customer. Its assignments end with a history entry each, so the history,
/// which outlives the customer, shows where it stood to the last.
pub fn delete(
    conn: &mut DbConnection,
    code: &str,
    expected: Option<i64>,
    actor: &str,
    restriction: Option<&Restriction>,
) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let current = visibility::locked_customer(conn, code, expected, restriction)?;
        let mut write = ClassificationWrite::default();
        remove(conn, &current, &Provenance::new(actor, Source::Manual, Some("customer deleted".into())), &mut write)?;
        write.finish(conn, false)?;
        events::record_one(conn, EventType::CustomerDeleted, json!({"customer": code}))
    })
}

/// `customer.updated`: the customer's code and its version after the change.
fn record_updated(conn: &mut DbConnection, code: &str, version: i64) -> Result<(), AppError> {
    events::record_one(conn, EventType::CustomerUpdated, json!({"customer": code, "version": version}))
}

/// Removes a customer the caller has locked: its categories end in history entries
/// of `provenance`, and it stays countable as of the days it existed.
pub(crate) fn remove(
    conn: &mut DbConnection,
    current: &CustomerRow,
    provenance: &Provenance,
    write: &mut ClassificationWrite,
) -> Result<(), AppError> {
    let held: Vec<SchemeRow> = customer_categories::table
        .inner_join(schemes::table)
        .filter(customer_categories::customer_id.eq(current.id))
        .select(SchemeRow::as_select())
        .load(conn)?;
    for scheme in &held {
        write.clear(conn, current, scheme, provenance)?;
    }
    diesel::delete(customers::table.filter(customers::id.eq(current.id))).execute(conn)?;
    counts::customer_added(conn, current.id, -1)?;
    diesel::insert_into(deleted_customers::table)
        .values((
            deleted_customers::customer_code.eq(&current.code),
            deleted_customers::created_at.eq(current.created_at),
            deleted_customers::deleted_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}
