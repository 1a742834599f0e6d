//! Merging duplicates into a survivor (合并重复客户), in one transaction: the
//! survivor's fields and values win and its empty ones are filled from the
//! duplicates; it takes their sales, and their categories in schemes where it has
//! none; the duplicates go, their codes answering `customer_merged` from then on.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde_json::json;
use serde_json::Value as Json;

use crate::db::schema::{customers, merged_customers, transactions};
use crate::db::{now, transaction_keeping, DbConnection};
use crate::domain::customer::CustomerCode;
use crate::domain::history::Source;
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorCode};

use crate::access::visibility;
use crate::archive::customer_rows::{get_row, view, view_by_id, CustomerRow, CustomerView};
use crate::archive::{duplicates, sales_totals};
use crate::catalogue::attribute_values::{self, EditMode};
use crate::catalogue::schemes as scheme_store;
use crate::classification::assignments;
use crate::classification::{AttributeCheck, ClassificationWrite, Provenance, Setting};
use crate::{lock_current, lock_rows, LockMode, LockableTable};

/// Duplicates one merge takes at most.
pub const MAX_DUPLICATES: usize = 100;

#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub survivor: String,
    pub duplicates: Vec<CustomerCode>,
    pub reason: Option<String>,
    pub dry_run: bool,
    pub actor: String,
    /// The survivor's `If-Match`.
    pub expected: Option<i64>,
}

/// A value of a duplicate that the survivor's own value kept out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// A field (`name`, `phone`, …), or `attributes.KEY`.
    pub field: String,
    pub kept: String,
    pub duplicate: String,
    pub dropped: String,
}

/// Something the survivor took from a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// A field, `attributes.KEY` or `categories.SCHEME`.
    pub field: String,
    pub value: String,
    pub duplicate: String,
}

#[derive(Debug, Clone)]
pub struct MergeOutcome {
    /// As it stands after the merge (a dry run: as it would).
    pub survivor: CustomerView,
    pub merged: Vec<String>,
    pub taken: Vec<Taken>,
    pub conflicts: Vec<Conflict>,
    pub transactions_moved: i64,
}

/// The code of the customer `code` was merged into, if it was.
pub fn merged_into(conn: &mut DbConnection, code: &str) -> Result<Option<String>, AppError> {
    Ok(merged_customers::table.find(code).select(merged_customers::merged_into).first(conn).optional()?)
}

/// `GET /customers/{code}` of a merged code: 404 `customer_merged` naming the survivor.
/// A restricted key learns nothing of customers outside it, merged ones included.
pub fn view_or_merged(
    conn: &mut DbConnection,
    code: &str,
    restriction: Option<&Restriction>,
) -> Result<CustomerView, AppError> {
    match view(conn, code) {
        Ok(found) => visibility::visible(restriction, found),
        Err(error) if error.code == ErrorCode::CustomerNotFound && restriction.is_none() => {
            match merged_into(conn, code)? {
                Some(survivor) => Err(AppError {
                    merged_into: Some(survivor.as_str().into()),
                    ..AppError::new(ErrorCode::CustomerMerged, format!("customer {code} was merged into {survivor}"))
                }),
                None => Err(error),
            }
        }
        other => other,
    }
}

pub fn merge(conn: &mut DbConnection, request: &MergeRequest) -> Result<MergeOutcome, AppError> {
    transaction_keeping(conn, |conn| merge_in(conn, request), |_| !request.dry_run)
}

/// The optional fields a survivor fills from its duplicates, with their values.
fn optional_fields(row: &CustomerRow) -> [(&'static str, Option<String>); 7] {
    [
        ("short_name", row.short_name.clone()),
        ("tax_id", row.tax_id.clone()),
        ("contact_name", row.contact_name.clone()),
        ("phone", row.phone.clone()),
        ("email", row.email.clone()),
        ("address", row.address.clone()),
        ("note", row.note.clone()),
    ]
}

fn merge_in(conn: &mut DbConnection, request: &MergeRequest) -> Result<MergeOutcome, AppError> {
    // Sales move: the anchor is held first, as every transaction that stores sales does.
    sales_totals::hold_anchor(conn)?;
    let survivor =
        lock_current(conn, LockableTable::Customers, request.expected, |conn| get_row(conn, &request.survivor))?;
    let ids = assignments::customer_ids(conn, &request.duplicates, None)?;
    let mut duplicate_ids: Vec<i64> = Vec::new();
    for code in &request.duplicates {
        let id = ids[code.as_str()];
        if !duplicate_ids.contains(&id) {
            duplicate_ids.push(id);
        }
    }
    let mut sorted = duplicate_ids.clone();
    sorted.sort_unstable();
    lock_rows(conn, LockableTable::Customers, &sorted, LockMode::Exclusive)?;
    let duplicates: Vec<CustomerView> =
        duplicate_ids.iter().map(|id| view_by_id(conn, *id)).collect::<Result<_, _>>()?;
    let survivor_view = view_by_id(conn, survivor.id)?;

    let mut taken = Vec::new();
    let mut conflicts = Vec::new();
    // Fields: the survivor's win; an empty one takes the first duplicate's value.
    let mut fields: BTreeMap<&'static str, Option<String>> = optional_fields(&survivor).into_iter().collect();
    for duplicate in &duplicates {
        let row = &duplicate.row;
        if row.name != survivor.name {
            conflicts.push(Conflict {
                field: "name".into(),
                kept: survivor.name.clone(),
                duplicate: row.code.clone(),
                dropped: row.name.clone(),
            });
        }
        for (field, value) in optional_fields(row) {
            let Some(value) = value else { continue };
            match fields.get(field).cloned().flatten() {
                None => {
                    taken.push(Taken { field: field.into(), value: value.clone(), duplicate: row.code.clone() });
                    fields.insert(field, Some(value));
                }
                Some(kept) if kept != value => {
                    conflicts.push(Conflict { field: field.into(), kept, duplicate: row.code.clone(), dropped: value })
                }
                Some(_) => {}
            }
        }
    }

    // Sales.
    let transactions_moved =
        diesel::update(transactions::table.filter(transactions::customer_id.eq_any(&duplicate_ids)))
            .set(transactions::customer_id.eq(survivor.id))
            .execute(conn)? as i64;
    sales_totals::move_totals(conn, &duplicate_ids, survivor.id)?;

    // The duplicates go first, so that a tax id the survivor takes is free.
    let merged: Vec<String> = duplicates.iter().map(|duplicate| duplicate.row.code.clone()).collect();
    let gone =
        Provenance::new(&request.actor, Source::Merge, Some(merge_reason(&survivor.code, request.reason.as_deref())));
    let mut write = ClassificationWrite::default();
    for duplicate in &duplicates {
        crate::archive::customers::remove(conn, &duplicate.row, &gone, &mut write)?;
        diesel::delete(merged_customers::table.find(&duplicate.row.code)).execute(conn)?;
        crate::insert_rows!(
            conn,
            merged_customers::table,
            (
                merged_customers::customer_code.eq(&duplicate.row.code),
                merged_customers::merged_into.eq(&survivor.code),
                merged_customers::merged_at.eq(now())
            )
        )?;
    }
    diesel::update(customers::table.find(survivor.id))
        .set((
            customers::short_name.eq(&fields["short_name"]),
            customers::tax_id.eq(&fields["tax_id"]),
            customers::contact_name.eq(&fields["contact_name"]),
            customers::phone.eq(&fields["phone"]),
            customers::email.eq(&fields["email"]),
            customers::address.eq(&fields["address"]),
            customers::note.eq(&fields["note"]),
            customers::updated_at.eq(now()),
        ))
        .execute(conn)?;
    duplicates::write_keys(conn, survivor.id, &survivor.name, fields["phone"].as_deref(), fields["email"].as_deref())?;

    // Categories: the survivor keeps its own and takes a duplicate's in a scheme where
    // it has none, if the category takes customers.
    let took =
        Provenance::new(&request.actor, Source::Merge, Some(merge_reason(&survivor.code, request.reason.as_deref())));
    let mut held: BTreeSet<String> =
        survivor_view.assignments.iter().map(|assignment| assignment.scheme.clone()).collect();
    let survivor_row = get_row(conn, &survivor.code)?;
    for duplicate in &duplicates {
        for assignment in &duplicate.assignments {
            if held.contains(&assignment.scheme) {
                if let Some(kept) = survivor_view
                    .assignments
                    .iter()
                    .find(|own| own.scheme == assignment.scheme)
                    .filter(|own| own.category != assignment.category)
                {
                    conflicts.push(Conflict {
                        field: format!("categories.{}", assignment.scheme),
                        kept: kept.category.clone(),
                        duplicate: duplicate.row.code.clone(),
                        dropped: assignment.category.clone(),
                    });
                }
                continue;
            }
            let Some(scheme) = scheme_store::find(conn, &assignment.scheme)? else { continue };
            let Ok(category) = assignments::assignable_category(conn, &scheme, &assignment.category, "categories")
            else {
                continue;
            };
            let setting = Setting {
                scheme: &scheme,
                category: &category,
                locked: None,
                provenance: &took,
                check: AttributeCheck::Deferred,
            };
            write.set(conn, &survivor_row, setting)?;
            held.insert(assignment.scheme.clone());
            taken.push(Taken {
                field: format!("categories.{}", assignment.scheme),
                value: assignment.category.clone(),
                duplicate: duplicate.row.code.clone(),
            });
        }
    }

    // Attribute values: the survivor's own win; a duplicate's fills a key the
    // survivor's categories define and it has no value of, if the value fits.
    let defined = attribute_values::effective_for(conn, survivor.id)?;
    let mut values: BTreeMap<String, Json> = BTreeMap::new();
    for duplicate in &duplicates {
        for (key, value) in duplicate.attributes.iter().filter(|(_, value)| !value.from_default) {
            let own = survivor_view.attributes.get(key).filter(|own| !own.from_default);
            match (own, defined.get(key)) {
                (Some(own), _) if own.value != value.value => {
                    conflicts.push(Conflict {
                        field: format!("attributes.{key}"),
                        kept: own.value.to_string(),
                        duplicate: duplicate.row.code.clone(),
                        dropped: value.value.to_string(),
                    });
                }
                (None, Some(effective))
                    if !values.contains_key(key) && effective.definition.check(&value.value).is_ok() =>
                {
                    values.insert(key.clone(), value.value.clone());
                    taken.push(Taken {
                        field: format!("attributes.{key}"),
                        value: value.value.to_string(),
                        duplicate: duplicate.row.code.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    attribute_values::edit_values(conn, &survivor_row, &values, EditMode::Merge)?;
    write.values_changed(survivor.id);
    write.finish(conn, true)?;
    let survivor = view_by_id(conn, survivor.id)?;
    let event = json!({"customer": survivor.row.code, "merged": merged, "version": survivor.row.version, "reason": request.reason});
    crate::feed::events::record_one(conn, crate::domain::event::EventType::CustomerMerged, event)?;
    Ok(MergeOutcome { survivor, merged, taken, conflicts, transactions_moved })
}

fn merge_reason(survivor: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("merged into {survivor}: {reason}"),
        None => format!("merged into {survivor}"),
    }
}
