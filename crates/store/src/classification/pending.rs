//! Changes that take effect on a date: asked for now, stored as pending, and applied
//! at `effective_at` through the one write path with history of source `scheduled`.
//! A customer has at most one pending change per scheme; a newer one replaces it,
//! and a manual change of the same customer and scheme cancels it unless the request
//! keeps it. Every write here holds the customer's row first, as every change of a
//! customer's category does, so a change and its cancellation never cross.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::{json, Value as Json};

use crate::db::schema::pending_changes;
use crate::db::sql::{Bind, Fragment};
use crate::db::{last_insert_id, now, transaction, DbConnection};
use crate::domain::customer::CustomerCode;
use crate::domain::event::EventType;
use crate::domain::history::Source;
use crate::domain::pending::PendingStatus;
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorCode, ErrorKind};

use crate::access::visibility;
use crate::archive::customer_rows::{self as customer_store, CustomerRow};
use crate::catalogue::schemes as scheme_store;
use crate::classification::assignments::{self, Assignment};
use crate::classification::pending_rows::{cancel_for, refresh, PendingRule};
use crate::classification::Provenance;
use crate::feed::events;

/// Pending changes applied per pass of the job.
const DUE_PER_PASS: i64 = 100;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pending_changes)]
pub struct PendingRow {
    pub id: i64,
    pub customer_id: i64,
    pub customer_code: String,
    pub scheme_code: String,
    pub category_code: String,
    pub locked: Option<bool>,
    /// Values of the category's attributes given with the change, as a JSON object.
    pub attributes: Option<String>,
    pub effective_at: NaiveDateTime,
    pub actor: String,
    pub reason: Option<String>,
    #[diesel(deserialize_as = String)]
    pub status: PendingStatus,
    pub failure: Option<String>,
    pub settled_at: Option<NaiveDateTime>,
    pub version: i64,
    pub created_at: NaiveDateTime,
}

impl PendingRow {
    pub fn values(&self) -> Result<BTreeMap<String, Json>, AppError> {
        match &self.attributes {
            None => Ok(BTreeMap::new()),
            Some(text) => serde_json::from_str(text)
                .map_err(|_| AppError::corrupt(format!("pending change {} has corrupt attribute values", self.id))),
        }
    }
}

pub fn pending_change_not_found(id: i64) -> AppError {
    AppError::new(ErrorCode::PendingChangeNotFound, format!("pending change {id} does not exist"))
}

/// One customer's change of category in a scheme, to take effect at `effective_at`.
pub struct Scheduling<'a> {
    pub customer: &'a str,
    pub scheme: &'a str,
    pub category: &'a str,
    pub locked: Option<bool>,
    pub values: &'a BTreeMap<String, Json>,
    pub effective_at: NaiveDateTime,
    /// Who asks and why; applied with the same actor and reason.
    pub provenance: &'a Provenance,
    /// The customer's version the caller read (`If-Match`).
    pub expected: Option<i64>,
    pub restriction: Option<&'a Restriction>,
}

/// Stores the change as pending, replacing the customer's pending change in the
/// scheme if it has one. The category must take customers now (it is checked again
/// when the change is applied).
pub fn schedule(conn: &mut DbConnection, scheduling: Scheduling) -> Result<PendingRow, AppError> {
    transaction(conn, |conn| {
        let customer =
            visibility::locked_customer(conn, scheduling.customer, scheduling.expected, scheduling.restriction)?;
        visibility::ensure_allowed(scheduling.restriction, scheduling.scheme, Some(scheduling.category))?;
        let scheme = scheme_store::get(conn, scheduling.scheme)?;
        assignments::assignable_category(conn, &scheme, scheduling.category, "category")?;
        let values = (!scheduling.values.is_empty()).then(|| json!(scheduling.values).to_string());
        let id = insert(conn, &customer, &scheduling, values.as_deref())?;
        refresh(conn, &[customer.id])?;
        get_row(conn, id)
    })
}

/// Many customers' changes to one category, all or none: each replaces the
/// customer's pending change in the scheme.
pub struct BatchScheduling<'a> {
    pub scheme: &'a str,
    pub category: &'a str,
    pub customers: &'a [CustomerCode],
    pub locked: Option<bool>,
    pub effective_at: NaiveDateTime,
    pub provenance: &'a Provenance,
    pub restriction: Option<&'a Restriction>,
}

/// The customers given and the pending changes stored (a code given twice counts once).
pub fn schedule_batch(conn: &mut DbConnection, batch: BatchScheduling) -> Result<usize, AppError> {
    transaction(conn, |conn| {
        visibility::ensure_allowed(batch.restriction, batch.scheme, Some(batch.category))?;
        let scheme = assignments::scheme_in_body(conn, batch.scheme)?;
        assignments::assignable_category(conn, &scheme, batch.category, "category")?;
        let ids = assignments::customer_ids(conn, batch.customers, batch.restriction)?;
        let mut customer_ids: Vec<i64> = ids.values().copied().collect();
        customer_ids.sort_unstable();
        customer_ids.dedup();
        assignments::lock_in_scheme(conn, scheme.id, &customer_ids)?;
        cancel_for(conn, batch.scheme, &customer_ids)?;
        let at = now();
        let rows: Vec<_> = ids
            .iter()
            .map(|(code, id)| {
                (
                    pending_changes::customer_id.eq(*id),
                    pending_changes::customer_code.eq(code.as_str()),
                    pending_changes::scheme_code.eq(batch.scheme),
                    pending_changes::category_code.eq(batch.category),
                    pending_changes::locked.eq(batch.locked),
                    pending_changes::attributes.eq(None::<String>),
                    pending_changes::effective_at.eq(batch.effective_at),
                    pending_changes::actor.eq(batch.provenance.actor.as_str()),
                    pending_changes::reason.eq(batch.provenance.reason.as_deref()),
                    pending_changes::status.eq(PendingStatus::Pending.as_str()),
                    pending_changes::version.eq(1),
                    pending_changes::created_at.eq(at),
                )
            })
            .collect();
        for chunk in rows.chunks(crate::db::INSERT_BATCH) {
            crate::insert_rows!(conn, pending_changes::table, chunk.to_vec())?;
        }
        refresh(conn, &customer_ids)?;
        Ok(customer_ids.len())
    })
}

fn insert(
    conn: &mut DbConnection,
    customer: &CustomerRow,
    scheduling: &Scheduling,
    values: Option<&str>,
) -> Result<i64, AppError> {
    cancel_for(conn, scheduling.scheme, &[customer.id])?;
    diesel::insert_into(pending_changes::table)
        .values((
            pending_changes::customer_id.eq(customer.id),
            pending_changes::customer_code.eq(&customer.code),
            pending_changes::scheme_code.eq(scheduling.scheme),
            pending_changes::category_code.eq(scheduling.category),
            pending_changes::locked.eq(scheduling.locked),
            pending_changes::attributes.eq(values),
            pending_changes::effective_at.eq(scheduling.effective_at),
            pending_changes::actor.eq(scheduling.provenance.actor.as_str()),
            pending_changes::reason.eq(scheduling.provenance.reason.as_deref()),
            pending_changes::status.eq(PendingStatus::Pending.as_str()),
            pending_changes::version.eq(1),
            pending_changes::created_at.eq(now()),
        ))
        .execute(conn)?;
    last_insert_id(conn)
}

fn get_row(conn: &mut DbConnection, id: i64) -> Result<PendingRow, AppError> {
    pending_changes::table
        .find(id)
        .select(PendingRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| pending_change_not_found(id))
}

/// The pending change, if the caller may see it: its customer is one the key sees and
/// its category one the key may use (else 404, as if it did not exist).
pub fn get(conn: &mut DbConnection, id: i64, restriction: Option<&Restriction>) -> Result<PendingRow, AppError> {
    let row = get_row(conn, id)?;
    if let Some(restriction) = restriction {
        let visible = customer_store::find(conn, &row.customer_code)?
            .filter(|customer| customer.id == row.customer_id)
            .map(|customer| visibility::admits_row(Some(restriction), &customer))
            .transpose()?
            .unwrap_or(false);
        if !visible || !restriction.allows(&row.scheme_code, &row.category_code) {
            return Err(pending_change_not_found(id));
        }
    }
    Ok(row)
}

/// Which pending changes a list shows.
#[derive(Debug, Clone, Default)]
pub struct PendingFilter {
    pub scheme: Option<String>,
    pub customer: Option<String>,
    pub status: Option<PendingStatus>,
    /// Only those taking effect before this moment.
    pub before: Option<NaiveDateTime>,
}

/// Up to `limit` pending changes in the order they take effect (`effective_at`, id),
/// after `after`; a restricted key sees those of customers it sees, to categories it
/// may use.
pub fn list(
    conn: &mut DbConnection,
    filter: &PendingFilter,
    after: Option<(NaiveDateTime, i64)>,
    limit: i64,
    restriction: Option<&Restriction>,
) -> Result<Vec<PendingRow>, AppError> {
    let mut sql = Fragment::new("SELECT p.id AS id FROM pending_changes p WHERE 1 = 1");
    if let Some(scheme) = &filter.scheme {
        sql.push(" AND p.scheme_code = ").bind(Bind::Text(scheme.clone()));
    }
    if let Some(customer) = &filter.customer {
        sql.push(" AND p.customer_code = ").bind(Bind::Text(customer.clone()));
    }
    if let Some(status) = filter.status {
        sql.push(" AND p.status = ").bind(Bind::Text(status.as_str().to_string()));
    }
    if let Some(before) = filter.before {
        sql.push(" AND p.effective_at < ").bind(Bind::Timestamp(before));
    }
    if let Some((at, id)) = after {
        sql.push(" AND (p.effective_at > ")
            .bind(Bind::Timestamp(at))
            .push(" OR (p.effective_at = ")
            .bind(Bind::Timestamp(at))
            .push(" AND p.id > ")
            .bind(Bind::BigInt(id))
            .push("))");
    }
    if let Some(restriction) = restriction {
        sql.push(" AND ").append(visibility::condition(restriction, "p.customer_id"));
        for (scheme, roots) in restriction.schemes() {
            sql.push(" AND (p.scheme_code <> ").bind(Bind::Text(scheme.to_string()));
            for root in roots {
                sql.push(&format!(" OR SUBSTR(p.category_code, 1, {}) = ", root.as_str().len()))
                    .bind(Bind::Text(root.as_str().to_string()));
            }
            sql.push(")");
        }
    }
    sql.push(" ORDER BY p.effective_at, p.id LIMIT ").bind(Bind::BigInt(limit));
    let ids: Vec<i64> = sql.into_query().load::<Listed>(conn)?.into_iter().map(|listed| listed.id).collect();
    let mut rows: Vec<PendingRow> =
        pending_changes::table.filter(pending_changes::id.eq_any(&ids)).select(PendingRow::as_select()).load(conn)?;
    rows.sort_by_key(|row| (row.effective_at, row.id));
    Ok(rows)
}

#[derive(QueryableByName)]
struct Listed {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Cancels a pending change (`DELETE`): 409 `pending_change_settled` once it is
/// applied, cancelled or failed.
pub fn cancel(
    conn: &mut DbConnection,
    id: i64,
    expected: Option<i64>,
    restriction: Option<&Restriction>,
) -> Result<PendingRow, AppError> {
    transaction(conn, |conn| {
        let row = get(conn, id, restriction)?;
        // The customer's row first, as every change of it takes it.
        let held = customer_store::find(conn, &row.customer_code)?.filter(|customer| customer.id == row.customer_id);
        if let Some(customer) = &held {
            crate::lock_rows(conn, crate::LockableTable::Customers, &[customer.id], crate::LockMode::Exclusive)?;
        }
        let row = get_row(conn, id)?;
        crate::check_version(expected, row.version)?;
        if row.status != PendingStatus::Pending {
            return Err(AppError::new(
                ErrorCode::PendingChangeSettled,
                format!("pending change {id} is {} and can no longer be cancelled", row.status),
            ));
        }
        settle(conn, id, PendingStatus::Cancelled, None)?;
        if held.is_some() {
            refresh(conn, &[row.customer_id])?;
        }
        get_row(conn, id)
    })
}

/// Marks a pending change settled, if it still is pending; whether it was.
fn settle(conn: &mut DbConnection, id: i64, status: PendingStatus, failure: Option<&str>) -> Result<bool, AppError> {
    let changed = diesel::update(
        pending_changes::table
            .filter(pending_changes::id.eq(id))
            .filter(pending_changes::status.eq(PendingStatus::Pending.as_str())),
    )
    .set((
        pending_changes::status.eq(status.as_str()),
        pending_changes::failure.eq(failure),
        pending_changes::settled_at.eq(Some(now())),
        pending_changes::version.eq(pending_changes::version + 1),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// What became of a due pending change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Applied,
    Failed,
    /// Another replica settled it first, or it was cancelled meanwhile.
    Elsewhere,
}

/// Applies the pending changes due at `moment`, in the order they take effect, each in
/// its own transaction; how each ended.
pub fn apply_due(conn: &mut DbConnection, moment: NaiveDateTime) -> Result<Vec<(i64, Settled)>, AppError> {
    let due: Vec<(i64, String)> = pending_changes::table
        .filter(pending_changes::status.eq(PendingStatus::Pending.as_str()))
        .filter(pending_changes::effective_at.le(moment))
        .order((pending_changes::effective_at, pending_changes::id))
        .select((pending_changes::id, pending_changes::customer_code))
        .limit(DUE_PER_PASS)
        .load(conn)?;
    let mut settled = Vec::with_capacity(due.len());
    for (id, customer) in due {
        settled.push((id, apply(conn, id, &customer)?));
    }
    Ok(settled)
}

/// Applies one pending change through the one write path, unless another replica
/// did: its status is moved from `pending` in the same transaction as the change, so
/// of two replicas racing for it one moves it and the other finds it settled (on a
/// Galera cluster, the loser's commit fails certification and its retry finds it so).
/// A change its category or customer can no longer take is marked failed, with the
/// reason, and reported in the feed.
fn apply(conn: &mut DbConnection, id: i64, customer_code: &str) -> Result<Settled, AppError> {
    transaction(conn, |conn| {
        let held = customer_store::find(conn, customer_code)?;
        if let Some(customer) = &held {
            crate::lock_rows(conn, crate::LockableTable::Customers, &[customer.id], crate::LockMode::Exclusive)?;
        }
        let row = get_row(conn, id)?;
        if !settle(conn, id, PendingStatus::Applied, None)? {
            return Ok(Settled::Elsewhere);
        }
        let customer = held.filter(|customer| customer.id == row.customer_id);
        let outcome = match &customer {
            None => Err(customer_store::customer_not_found(customer_code)),
            Some(_) => {
                let values = row.values()?;
                let provenance = Provenance::new(&row.actor, Source::Scheduled, row.reason.clone());
                // A savepoint: a refused change leaves nothing behind, and the
                // pending change is still marked failed below.
                transaction(conn, |conn| {
                    assignments::assign(
                        conn,
                        Assignment {
                            customer: &row.customer_code,
                            scheme: &row.scheme_code,
                            category: &row.category_code,
                            locked: row.locked,
                            values: &values,
                            provenance: &provenance,
                            expected: None,
                            restriction: None,
                            pending: PendingRule::Keep,
                        },
                    )
                })
                .map(|_| ())
            }
        };
        match outcome {
            Ok(()) => {
                refresh(conn, &[row.customer_id])?;
                Ok(Settled::Applied)
            }
            Err(error) if refuses_the_change(&error) => {
                let failure = format!("{}: {}", error.code, error.detail);
                diesel::update(pending_changes::table.find(id))
                    .set((
                        pending_changes::status.eq(PendingStatus::Failed.as_str()),
                        pending_changes::failure.eq(&failure),
                    ))
                    .execute(conn)?;
                if customer.is_some() {
                    refresh(conn, &[row.customer_id])?;
                }
                events::record_one(
                    conn,
                    EventType::PendingChangeFailed,
                    json!({
                        "customer": row.customer_code,
                        "scheme": row.scheme_code,
                        "category": row.category_code,
                        "pending_change": id,
                        "effective_at": events::rfc3339(row.effective_at),
                        "failure": failure,
                    }),
                )?;
                Ok(Settled::Failed)
            }
            Err(error) => Err(error),
        }
    })
}

/// Whether an error says the change itself cannot be made (its category, scheme or
/// customer no longer takes it), rather than that the database failed for now.
fn refuses_the_change(error: &AppError) -> bool {
    matches!(error.kind(), ErrorKind::NotFound | ErrorKind::Unprocessable | ErrorKind::Conflict | ErrorKind::Forbidden)
        && !error.is_concurrent_update()
}
