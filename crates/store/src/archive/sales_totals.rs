//! Each customer's sales summed up to one moment, the anchor, and up to 12 calendar
//! months before it, so that a report's measures read one row per customer instead
//! of every transaction. A later moment's figures are those totals corrected by the
//! transactions between the anchor and that moment (and between the two window
//! starts), which the `occurred_at` index finds: the totals are exact wherever the
//! anchor stands, and the closer it is, the fewer transactions a report reads.
//!
//! Ingestion adds what it stores at or before the anchor to the totals in its own
//! transaction, holding the anchor row shared; moving the anchor holds it exclusively,
//! so the two never interleave. The service moves the anchor to the start of the
//! current UTC day (`advance`) at start-up and every hour.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};

use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::{transaction, DbConnection};
use crate::domain::report::Measure;
use crate::error::AppError;

use crate::domain::sales::window_start;

/// Where the anchor starts: before any moment the service accepts, so nothing is summed.
fn origin() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1970, 1, 1).and_then(|day| day.and_hms_opt(0, 0, 0)).expect("a valid date")
}

#[derive(QueryableByName)]
struct Anchor {
    #[diesel(sql_type = Timestamp)]
    anchored_at: NaiveDateTime,
}

/// The anchor as last committed; with `lock`, held (shared or exclusive) until the
/// transaction ends.
fn read_anchor(conn: &mut DbConnection, lock: Option<&str>) -> Result<NaiveDateTime, AppError> {
    let suffix = match (Dialect::of(conn), lock) {
        (Dialect::Mysql, Some(lock)) => lock,
        _ => "",
    };
    let anchor: Anchor = diesel::sql_query(format!("SELECT anchored_at FROM sales_totals_anchor WHERE id = 1{suffix}"))
        .get_result(conn)?;
    Ok(anchor.anchored_at)
}

/// The anchor the totals stand at now.
pub fn anchor(conn: &mut DbConnection) -> Result<NaiveDateTime, AppError> {
    read_anchor(conn, None)
}

/// One customer's sales at or before the anchor and at or before its window start,
/// and its last order at or before the anchor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Totals {
    #[diesel(sql_type = BigInt)]
    pub spend_cents: i64,
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub earlier_spend_cents: i64,
    #[diesel(sql_type = BigInt)]
    pub earlier_orders: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamp>)]
    pub last_order_at: Option<NaiveDateTime>,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spend {} in {} orders ({} in {} a year earlier), last order {}",
            self.spend_cents,
            self.orders,
            self.earlier_spend_cents,
            self.earlier_orders,
            self.last_order_at.map_or_else(|| "none".to_string(), |at| at.to_string())
        )
    }
}

impl Totals {
    fn add(&mut self, amount_cents: i64, occurred_at: NaiveDateTime, anchor: NaiveDateTime) {
        let order = i64::from(amount_cents > 0);
        if occurred_at <= anchor {
            self.spend_cents += amount_cents;
            self.orders += order;
            if order == 1 {
                self.last_order_at = self.last_order_at.max(Some(occurred_at));
            }
        }
        if occurred_at <= window_start(anchor) {
            self.earlier_spend_cents += amount_cents;
            self.earlier_orders += order;
        }
    }
}

/// The columns a totals row is written with, in order.
const TOTALS_COLUMNS: &str = "customer_id, spend_cents, orders, earlier_spend_cents, earlier_orders, last_order_at";

/// The clause that adds a conflicting row's totals to the stored ones, keeping the
/// later last order.
fn upsert_adding(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Mysql => {
            " ON DUPLICATE KEY UPDATE spend_cents = spend_cents + VALUES(spend_cents), orders = orders + VALUES(orders), \
             earlier_spend_cents = earlier_spend_cents + VALUES(earlier_spend_cents), earlier_orders = earlier_orders + VALUES(earlier_orders), \
             last_order_at = CASE WHEN last_order_at IS NULL OR VALUES(last_order_at) > last_order_at THEN VALUES(last_order_at) ELSE last_order_at END"
        }
        Dialect::Sqlite => {
            " ON CONFLICT (customer_id) DO UPDATE SET spend_cents = spend_cents + excluded.spend_cents, orders = orders + excluded.orders, \
             earlier_spend_cents = earlier_spend_cents + excluded.earlier_spend_cents, earlier_orders = earlier_orders + excluded.earlier_orders, \
             last_order_at = CASE WHEN last_order_at IS NULL OR excluded.last_order_at > last_order_at THEN excluded.last_order_at ELSE last_order_at END"
        }
    }
}

/// The anchor, held shared until the transaction ends: the first statement of a
/// transaction that stores sales, so that it never waits for the anchor while holding
/// rows that moving the anchor reads.
pub fn hold_anchor(conn: &mut DbConnection) -> Result<NaiveDateTime, AppError> {
    read_anchor(conn, Some(" LOCK IN SHARE MODE"))
}

/// Adds newly stored transactions `(customer id, amount in cents, occurred at)`, in
/// the transaction that stored them, which holds `anchor` ([`hold_anchor`]).
pub fn add_stored(
    conn: &mut DbConnection,
    anchor: NaiveDateTime,
    stored: &[(i64, i64, NaiveDateTime)],
) -> Result<(), AppError> {
    let mut per_customer: BTreeMap<i64, Totals> = BTreeMap::new();
    for (customer_id, amount_cents, occurred_at) in stored {
        per_customer.entry(*customer_id).or_default().add(*amount_cents, *occurred_at, anchor);
    }
    // Sales after the anchor are read from the transactions until it passes them.
    let changed: Vec<(i64, Totals)> =
        per_customer.into_iter().filter(|(_, totals)| *totals != Totals::default()).collect();
    insert_adding(conn, &changed)
}

/// Adds `rows` to the stored totals (a customer without a row gets one).
fn insert_adding(conn: &mut DbConnection, rows: &[(i64, Totals)]) -> Result<(), AppError> {
    let dialect = Dialect::of(conn);
    for chunk in rows.chunks(1000) {
        let mut statement = Fragment::new(&format!("INSERT INTO sales_totals ({TOTALS_COLUMNS}) VALUES "));
        for (index, (customer_id, totals)) in chunk.iter().enumerate() {
            statement.push(if index == 0 { "(" } else { ", (" });
            for value in
                [*customer_id, totals.spend_cents, totals.orders, totals.earlier_spend_cents, totals.earlier_orders]
            {
                statement.bind(Bind::BigInt(value)).push(", ");
            }
            match totals.last_order_at {
                Some(at) => statement.bind(Bind::Timestamp(at)),
                None => statement.push("NULL"),
            };
            statement.push(")");
        }
        statement.push(upsert_adding(dialect));
        statement.into_query().execute(conn)?;
    }
    Ok(())
}

/// Adds the totals of customers `from` to those of `to` and drops theirs, in a
/// transaction that moved their transactions to `to` and holds the anchor
/// ([`hold_anchor`]): merging customers.
pub fn move_totals(conn: &mut DbConnection, from: &[i64], to: i64) -> Result<(), AppError> {
    if from.is_empty() {
        return Ok(());
    }
    let ids = crate::id_list(from);
    let mut statement = Fragment::new(&format!("INSERT INTO sales_totals ({TOTALS_COLUMNS}) SELECT "));
    statement
        .bind(Bind::BigInt(to))
        .push(&format!(
            ", SUM(spend_cents), SUM(orders), SUM(earlier_spend_cents), SUM(earlier_orders), MAX(last_order_at) FROM sales_totals WHERE customer_id IN ({ids}) HAVING COUNT(*) > 0"
        ))
        .push(upsert_adding(Dialect::of(conn)));
    statement.into_query().execute(conn)?;
    diesel::sql_query(format!("DELETE FROM sales_totals WHERE customer_id IN ({ids})")).execute(conn)?;
    Ok(())
}

/// The start of the current UTC day.
fn today() -> NaiveDateTime {
    crate::db::now().date().and_hms_opt(0, 0, 0).expect("midnight exists")
}

/// Moves the anchor from `from` to `to`, adding each customer's sales in between.
fn move_anchor(conn: &mut DbConnection, from: NaiveDateTime, to: NaiveDateTime) -> Result<(), AppError> {
    let dialect = Dialect::of(conn);
    let (earlier_from, earlier_to) = (window_start(from), window_start(to));
    let within = |low: NaiveDateTime, high: NaiveDateTime| {
        let mut condition = Fragment::new("occurred_at > ");
        condition.bind(Bind::Timestamp(low)).push(" AND occurred_at <= ").bind(Bind::Timestamp(high));
        condition
    };
    let sum = |condition: Fragment, value: &str| {
        let mut column = Fragment::new("SUM(CASE WHEN ");
        column.append(condition).push(&format!(" THEN {value} ELSE 0 END)"));
        column
    };
    let mut statement = Fragment::new(&format!("INSERT INTO sales_totals ({TOTALS_COLUMNS}) SELECT customer_id, "));
    statement
        .append(sum(within(from, to), "amount_cents"))
        .push(", ")
        .append(sum(within(from, to), "CASE WHEN amount_cents > 0 THEN 1 ELSE 0 END"))
        .push(", ")
        .append(sum(within(earlier_from, earlier_to), "amount_cents"))
        .push(", ")
        .append(sum(within(earlier_from, earlier_to), "CASE WHEN amount_cents > 0 THEN 1 ELSE 0 END"))
        .push(", MAX(CASE WHEN amount_cents > 0 AND ")
        .append(within(from, to))
        .push(" THEN occurred_at END) FROM transactions WHERE (")
        .append(within(from, to))
        .push(") OR (")
        .append(within(earlier_from, earlier_to))
        .push(") GROUP BY customer_id")
        .push(upsert_adding(dialect));
    statement.into_query().execute(conn)?;
    let mut update = Fragment::new("UPDATE sales_totals_anchor SET anchored_at = ");
    update.bind(Bind::Timestamp(to)).push(" WHERE id = 1");
    update.into_query().execute(conn)?;
    Ok(())
}

/// Moves the anchor to the start of the current UTC day if it is older; `false` if
/// it was already there (another replica may have moved it meanwhile).
pub fn advance(conn: &mut DbConnection) -> Result<bool, AppError> {
    transaction(conn, |conn| {
        let (anchor, target) = (read_anchor(conn, Some(" FOR UPDATE"))?, today());
        if anchor >= target {
            return Ok(false);
        }
        move_anchor(conn, anchor, target)?;
        Ok(true)
    })
}

/// Each customer's totals in `low..=high` summed from its transactions as they
/// stand at `anchor`: what the stored rows must say. Customers with no sale at or
/// before the anchor have none.
pub fn recomputed(
    conn: &mut DbConnection,
    anchor: NaiveDateTime,
    low: i64,
    high: i64,
) -> Result<BTreeMap<i64, Totals>, AppError> {
    use crate::db::schema::transactions;
    let sales: Vec<(i64, i64, NaiveDateTime)> = transactions::table
        .filter(transactions::customer_id.between(low, high))
        .filter(transactions::occurred_at.le(anchor))
        .select((transactions::customer_id, transactions::amount_cents, transactions::occurred_at))
        .load(conn)?;
    let mut per_customer: BTreeMap<i64, Totals> = BTreeMap::new();
    for (customer_id, amount_cents, occurred_at) in sales {
        per_customer.entry(customer_id).or_default().add(amount_cents, occurred_at, anchor);
    }
    per_customer.retain(|_, totals| *totals != Totals::default());
    Ok(per_customer)
}

#[derive(QueryableByName)]
struct StoredTotals {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(embed)]
    totals: Totals,
}

/// The stored totals of customers in `low..=high` (a row of zeros counts as none).
pub fn stored(conn: &mut DbConnection, low: i64, high: i64) -> Result<BTreeMap<i64, Totals>, AppError> {
    let rows: Vec<StoredTotals> = diesel::sql_query(format!(
        "SELECT {TOTALS_COLUMNS} FROM sales_totals WHERE customer_id BETWEEN {low} AND {high}"
    ))
    .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|row| row.totals != Totals::default())
        .map(|row| (row.customer_id, row.totals))
        .collect())
}

/// Replaces the stored totals of `customers` by `totals` (none for a customer
/// without an entry), in a transaction that holds the anchor ([`hold_anchor`]).
pub fn replace(conn: &mut DbConnection, customers: &[i64], totals: &BTreeMap<i64, Totals>) -> Result<(), AppError> {
    for chunk in customers.chunks(1000) {
        diesel::sql_query(format!("DELETE FROM sales_totals WHERE customer_id IN ({})", crate::id_list(chunk)))
            .execute(conn)?;
    }
    let rows: Vec<(i64, Totals)> =
        customers.iter().filter_map(|id| totals.get(id).map(|totals| (*id, *totals))).collect();
    insert_adding(conn, &rows)
}

/// Sums every customer again from the transactions, for programs that load sales
/// around the service (benchmarks, fixtures); the service keeps the totals as it goes.
pub fn rebuild(conn: &mut DbConnection) -> Result<(), AppError> {
    transaction(conn, |conn| {
        read_anchor(conn, Some(" FOR UPDATE"))?;
        diesel::sql_query("DELETE FROM sales_totals").execute(conn)?;
        move_anchor(conn, origin(), today())
    })
}

/// The measures of customers (`s`: their totals) as of the anchor, named as
/// `metric_sum` names them.
pub fn totals_columns(dialect: Dialect, measures: &[Measure]) -> Fragment {
    let int = dialect.integer();
    let mut columns = Fragment::default();
    for (index, measure) in Measure::ALL.into_iter().enumerate() {
        let value = match measure {
            _ if !measures.contains(&measure) => "0",
            Measure::Spend12m => "SUM(s.spend_cents - s.earlier_spend_cents)",
            Measure::Orders12m => "SUM(s.orders - s.earlier_orders)",
            Measure::LifetimeSpend => "SUM(s.spend_cents)",
        };
        columns.push(&format!(
            "{}CAST(COALESCE({value}, 0) AS {int}) AS {}",
            if index == 0 { "" } else { ", " },
            measure.as_str()
        ));
    }
    columns
}

/// What the transactions `t` after the anchor, up to `moment` (not before it), add to
/// the totals: the measure columns, and the condition that finds those transactions
/// by `occurred_at`.
pub fn correction(
    dialect: Dialect,
    measures: &[Measure],
    anchor: NaiveDateTime,
    moment: NaiveDateTime,
) -> (Fragment, Fragment) {
    debug_assert!(moment >= anchor, "totals are corrected forwards only");
    let up_to_moment = (anchor, moment);
    let up_to_window = (window_start(anchor), window_start(moment));
    let within = |(low, high): (NaiveDateTime, NaiveDateTime)| {
        let mut condition = Fragment::new("t.occurred_at > ");
        condition.bind(Bind::Timestamp(low)).push(" AND t.occurred_at <= ").bind(Bind::Timestamp(high));
        condition
    };
    let sum = |range: (NaiveDateTime, NaiveDateTime), value: &str| {
        let mut term = Fragment::new("SUM(CASE WHEN ");
        term.append(within(range)).push(&format!(" THEN {value} ELSE 0 END)"));
        term
    };
    let int = dialect.integer();
    let order = "CASE WHEN t.amount_cents > 0 THEN 1 ELSE 0 END";
    let mut columns = Fragment::default();
    for (index, measure) in Measure::ALL.into_iter().enumerate() {
        columns.push(if index == 0 { "CAST(" } else { ", CAST(" });
        match measure {
            _ if !measures.contains(&measure) => {
                columns.push("0");
            }
            Measure::LifetimeSpend => {
                columns.append(sum(up_to_moment, "t.amount_cents"));
            }
            // What entered the window since the anchor, less what left it.
            Measure::Spend12m => {
                columns
                    .append(sum(up_to_moment, "t.amount_cents"))
                    .push(" - ")
                    .append(sum(up_to_window, "t.amount_cents"));
            }
            Measure::Orders12m => {
                columns.append(sum(up_to_moment, order)).push(" - ").append(sum(up_to_window, order));
            }
        }
        columns.push(&format!(" AS {int}) AS {}", measure.as_str()));
    }
    let mut condition = Fragment::new("((");
    condition.append(within(up_to_moment)).push(") OR (").append(within(up_to_window)).push("))");
    (columns, condition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn a_sale_counts_up_to_the_anchor_and_up_to_its_window_start() {
        let anchor = at("2026-11-27 00:00:00");
        let mut totals = Totals::default();
        totals.add(500, at("2026-11-27 00:00:00"), anchor);
        totals.add(-100, at("2025-11-27 00:00:00"), anchor);
        totals.add(700, at("2026-11-27 00:00:01"), anchor);
        assert_eq!(
            totals,
            Totals {
                spend_cents: 400,
                orders: 1,
                earlier_spend_cents: -100,
                earlier_orders: 0,
                last_order_at: Some(anchor)
            }
        );
    }
}
