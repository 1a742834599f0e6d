//! Sales transactions: idempotent ingestion and the metrics computed from them.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamp};

use crate::db::schema::{customers, transactions};
use crate::db::{now, transaction, DbConnection};
use crate::domain::report::Measure;
use crate::domain::sales::{window_start, ExternalId, Money};
use crate::error::AppError;

use crate::archive::customer_rows::customer_not_found;
use crate::archive::sales_totals;
use crate::db::sql::{Bind, Dialect, Fragment};

/// The most transactions one call takes.
pub const MAX_BATCH: usize = 10_000;
const CHUNK: usize = 1000;

/// A transaction that passed the checks that need no database.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub external_id: ExternalId,
    pub customer_code: String,
    pub amount: Money,
    pub occurred_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// The external id was already taken (earlier, by a racing call, or earlier in this call).
    Duplicate,
    Rejected(String),
}

pub struct Ingested {
    /// One per item, in request order.
    pub outcomes: Vec<Outcome>,
    /// Customers that received at least one new transaction.
    pub customer_ids: Vec<i64>,
}

/// Stores the valid items in one transaction; items already refused (`Err`) keep
/// their reason. A repeated external id changes nothing and reports `Duplicate`,
/// also when two identical calls race: the unique index decides, and each call
/// tells the rows it wrote by its own batch id.
pub fn ingest(conn: &mut DbConnection, items: &[Result<NewTransaction, String>]) -> Result<Ingested, AppError> {
    transaction(conn, |conn| {
        let anchor = sales_totals::hold_anchor(conn)?;
        let mut outcomes: Vec<Option<Outcome>> =
            items.iter().map(|item| item.as_ref().err().map(|reason| Outcome::Rejected(reason.clone()))).collect();
        let valid: Vec<(usize, &NewTransaction)> =
            items.iter().enumerate().filter_map(|(i, item)| item.as_ref().ok().map(|t| (i, t))).collect();

        let codes: Vec<&str> =
            valid.iter().map(|(_, t)| t.customer_code.as_str()).collect::<HashSet<_>>().into_iter().collect();
        let mut ids: HashMap<String, i64> = HashMap::new();
        for chunk in codes.chunks(CHUNK) {
            let found: Vec<(String, i64)> = customers::table
                .filter(customers::code.eq_any(chunk))
                .select((customers::code, customers::id))
                .load(conn)?;
            ids.extend(found);
        }
        let batch_id = uuid::Uuid::new_v4().to_string();
        let received_at = now();
        let mut in_this_call: HashSet<&str> = HashSet::new();
        let mut candidates = Vec::new();
        for (index, item) in &valid {
            let Some(customer_id) = ids.get(&item.customer_code) else {
                outcomes[*index] = Some(Outcome::Rejected(customer_not_found(&item.customer_code).detail));
                continue;
            };
            if !in_this_call.insert(item.external_id.as_str()) {
                outcomes[*index] = Some(Outcome::Duplicate);
                continue;
            }
            candidates.push((*index, *customer_id, *item));
        }
        let mut all_inserted = true;
        for chunk in candidates.chunks(CHUNK) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|(_, customer_id, item)| {
                    (
                        transactions::external_id.eq(item.external_id.as_str().to_string()),
                        transactions::customer_id.eq(*customer_id),
                        transactions::amount_cents.eq(item.amount.cents()),
                        transactions::occurred_at.eq(item.occurred_at),
                        transactions::received_at.eq(received_at),
                        transactions::batch_id.eq(batch_id.clone()),
                    )
                })
                .collect();
            let inserted = crate::native!(conn, |native| diesel::insert_or_ignore_into(transactions::table)
                .values(rows)
                .execute(native))?;
            all_inserted &= inserted == chunk.len();
        }
        // Only when the database ignored some rows does the call need to learn which
        // ones: an external id taken earlier or by a racing call (stored under another
        // batch id), or, on MySQL, a customer deleted meanwhile (not stored at all).
        let stored_by: Option<HashMap<String, String>> = if all_inserted {
            None
        } else {
            let mut stored_by = HashMap::new();
            for chunk in candidates.chunks(CHUNK) {
                let stored: Vec<(String, String)> = transactions::table
                    .filter(
                        transactions::external_id.eq_any(chunk.iter().map(|(_, _, item)| item.external_id.as_str())),
                    )
                    .select((transactions::external_id, transactions::batch_id))
                    .load(conn)?;
                stored_by.extend(stored);
            }
            Some(stored_by)
        };
        let mut customer_ids = Vec::new();
        let mut stored = Vec::new();
        for (index, customer_id, item) in &candidates {
            let outcome = match stored_by.as_ref().map(|stored_by| stored_by.get(item.external_id.as_str())) {
                None => Outcome::Created,
                Some(Some(batch)) if *batch == batch_id => Outcome::Created,
                Some(Some(_)) => Outcome::Duplicate,
                Some(None) => Outcome::Rejected(customer_not_found(&item.customer_code).detail),
            };
            if outcome == Outcome::Created {
                customer_ids.push(*customer_id);
                stored.push((*customer_id, item.amount.cents(), item.occurred_at));
            }
            outcomes[*index] = Some(outcome);
        }
        sales_totals::add_stored(conn, anchor, &stored)?;
        customer_ids.sort_unstable();
        customer_ids.dedup();
        Ok(Ingested { outcomes: outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Duplicate)).collect(), customer_ids })
    })
}

/// A customer's metrics as of a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub as_of: NaiveDateTime,
    pub spend_12m: Money,
    pub orders_12m: i64,
    pub lifetime_spend: Money,
    pub last_order_at: Option<NaiveDateTime>,
    pub days_since_last_order: Option<i64>,
}

/// The aggregate of one summable metric over `transactions t` as of `as_of`, in SQL
/// of `dialect`, named after the metric. Rows must already be limited to
/// `occurred_at <= as_of`.
pub fn metric_sum(dialect: Dialect, measure: Measure, as_of: NaiveDateTime) -> Fragment {
    let int = dialect.integer();
    let mut column = Fragment::new("CAST(COALESCE(SUM(");
    match measure {
        Measure::Spend12m => column
            .push("CASE WHEN t.occurred_at > ")
            .bind(Bind::Timestamp(window_start(as_of)))
            .push(" THEN t.amount_cents ELSE 0 END"),
        Measure::Orders12m => column
            .push("CASE WHEN t.occurred_at > ")
            .bind(Bind::Timestamp(window_start(as_of)))
            .push(" AND t.amount_cents > 0 THEN 1 ELSE 0 END"),
        Measure::LifetimeSpend => column.push("t.amount_cents"),
    };
    column.push(&format!("), 0) AS {int}) AS {}", measure.as_str()));
    column
}

/// The aggregate columns of the metrics over `transactions t` as of `as_of`, in SQL
/// of `dialect`. Rows must already be limited to `occurred_at <= as_of`.
pub fn metric_columns(dialect: Dialect, as_of: NaiveDateTime) -> Fragment {
    let mut columns = Fragment::default();
    for measure in Measure::ALL {
        columns.append(metric_sum(dialect, measure, as_of)).push(", ");
    }
    columns.push("MAX(CASE WHEN t.amount_cents > 0 THEN t.occurred_at END) AS last_order_at");
    columns
}

#[derive(QueryableByName)]
struct MetricRow {
    #[diesel(sql_type = BigInt)]
    spend_12m: i64,
    #[diesel(sql_type = BigInt)]
    orders_12m: i64,
    #[diesel(sql_type = BigInt)]
    lifetime_spend: i64,
    #[diesel(sql_type = Nullable<Timestamp>)]
    last_order_at: Option<NaiveDateTime>,
}

/// Whole calendar days (UTC) from the last order to `as_of`.
pub fn days_between(last: NaiveDateTime, as_of: NaiveDateTime) -> i64 {
    (as_of.date() - last.date()).num_days()
}

pub fn metrics(conn: &mut DbConnection, code: &str, as_of: NaiveDateTime) -> Result<Metrics, AppError> {
    let customer_id: i64 = customers::table
        .filter(customers::code.eq(code))
        .select(customers::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| customer_not_found(code))?;
    let mut query = Fragment::new("SELECT ");
    query
        .append(metric_columns(Dialect::of(conn), as_of))
        .push(" FROM transactions t WHERE t.customer_id = ")
        .bind(Bind::BigInt(customer_id))
        .push(" AND t.occurred_at <= ")
        .bind(Bind::Timestamp(as_of));
    let row: MetricRow = query.into_query().get_result(conn)?;
    Ok(Metrics {
        as_of,
        spend_12m: Money::from_cents(row.spend_12m),
        orders_12m: row.orders_12m,
        lifetime_spend: Money::from_cents(row.lifetime_spend),
        days_since_last_order: row.last_order_at.map(|last| days_between(last, as_of)),
        last_order_at: row.last_order_at,
    })
}
