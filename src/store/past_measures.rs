//! The measures of every customer of one scheme as of a past day, by the category
//! each stood in then, summed in the service from three ordered reads: where each
//! customer stood (its assignment, undone by its first move since), its sales totals
//! at the anchor, and the transactions between the day and the anchor (and between
//! the two window starts), which turn the totals back.
//!
//! The database would join each transaction to its customer's category: a lookup at
//! random that costs MariaDB about 5 µs a row, where streaming a row in index order
//! costs well under one. Customer ids sit densely in a range, so where each customer
//! stood is one small integer per id.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use crate::db::schema::{categories, customers, transactions};
use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::{snapshot, DbConnection};
use crate::domain::report::Measure;
use crate::error::AppError;

use super::reports::{journeys, CellKey, CodeRange};
use super::sales_totals;
use super::schemes::SchemeRow;
use super::transactions::window_start;

/// Customers read per statement: each result is buffered whole by the MySQL client.
const IDS_PER_READ: i64 = 50_000;

/// Transactions per statement: those of one day.
const DAYS_PER_READ: i64 = 1;

/// A customer not counted as of the day: created since.
const ABSENT: u32 = u32::MAX;

/// Ids a placement may span (4 bytes each): beyond, the ids are too sparse for it.
const MAX_ID_SPAN: i64 = 16_000_000;

/// Whether this way suits a report as of `moment`: it does before the anchor (after
/// it, the totals are corrected in the database by at most a day of sales), when the
/// sales between `moment` and the anchor are fewer than those up to `moment` (taken
/// as spread evenly since the first), and when the customer ids are dense enough.
pub fn suits(conn: &mut DbConnection, moment: NaiveDateTime) -> Result<bool, AppError> {
    let anchor = sales_totals::anchor(conn)?;
    let Some(first) = first_sale(conn)? else { return Ok(false) };
    let bounds = id_bounds(conn)?;
    let dense = matches!(bounds, (Some(low), Some(high)) if high - low < MAX_ID_SPAN);
    // Back to the day, and as much again for the window's start.
    let back = (anchor - moment).num_seconds() * 2;
    Ok(dense && moment < anchor && back < (moment - first).num_seconds())
}

fn first_sale(conn: &mut DbConnection) -> Result<Option<NaiveDateTime>, AppError> {
    Ok(transactions::table.select(diesel::dsl::min(transactions::occurred_at)).first(conn)?)
}

fn id_bounds(conn: &mut DbConnection) -> Result<(Option<i64>, Option<i64>), AppError> {
    Ok(customers::table.select((diesel::dsl::min(customers::id), diesel::dsl::max(customers::id))).first(conn)?)
}

/// Where each customer stood: an index into the cells, `0` for unclassified.
struct Placement {
    first_id: i64,
    cells: Vec<u32>,
}

impl Placement {
    fn cell(&self, customer_id: i64) -> Option<usize> {
        let index = usize::try_from(customer_id - self.first_id).ok()?;
        self.cells.get(index).copied().filter(|cell| *cell != ABSENT).map(|cell| cell as usize)
    }

    fn place(&mut self, customer_id: i64, cell: u32) {
        if let Some(slot) = usize::try_from(customer_id - self.first_id).ok().and_then(|index| self.cells.get_mut(index)) {
            *slot = cell;
        }
    }
}

#[derive(QueryableByName)]
struct Assigned {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = BigInt)]
    category_id: i64,
}

#[derive(QueryableByName)]
struct StoodThen {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    /// `''`: unclassified.
    #[diesel(sql_type = Text)]
    start_category: String,
}

#[derive(QueryableByName)]
struct Totals {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = BigInt)]
    spend_cents: i64,
    #[diesel(sql_type = BigInt)]
    orders: i64,
    #[diesel(sql_type = BigInt)]
    earlier_spend_cents: i64,
    #[diesel(sql_type = BigInt)]
    earlier_orders: i64,
}

#[derive(QueryableByName)]
struct Sale {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = BigInt)]
    amount_cents: i64,
    #[diesel(sql_type = Timestamp)]
    occurred_at: NaiveDateTime,
}

/// The value a measure takes from one sale, as of `moment`.
fn of_sale(measure: Measure, amount_cents: i64, occurred_at: NaiveDateTime, moment: NaiveDateTime) -> i64 {
    let in_window = occurred_at > window_start(moment) && occurred_at <= moment;
    match measure {
        Measure::LifetimeSpend if occurred_at <= moment => amount_cents,
        Measure::Spend12m if in_window => amount_cents,
        Measure::Orders12m if in_window && amount_cents > 0 => 1,
        _ => 0,
    }
}

/// The measures (as of `moment`, the last instant of the day before `at`) of the
/// customers of `scheme` by the category they stood in at `at`, unclassified as
/// `None`; customers created since are left out. One snapshot, so the reads agree.
pub fn by_category(conn: &mut DbConnection, scheme: &SchemeRow, measures: &[Measure], at: NaiveDateTime, moment: NaiveDateTime) -> Result<HashMap<CellKey, Vec<i64>>, AppError> {
    snapshot(conn, |conn| {
        let dialect = Dialect::of(conn);
        let codes: Vec<(i64, String)> = categories::table.filter(categories::scheme_id.eq(scheme.id)).select((categories::id, categories::code)).order(categories::id).load(conn)?;
        let cell_of_id: HashMap<i64, u32> = codes.iter().enumerate().map(|(index, (id, _))| (*id, index as u32 + 1)).collect();
        let cell_of_code: HashMap<&str, u32> = codes.iter().enumerate().map(|(index, (_, code))| (code.as_str(), index as u32 + 1)).collect();
        let (Some(low), Some(high)) = id_bounds(conn)? else { return Ok(HashMap::new()) };
        let span = usize::try_from(high - low + 1).map_err(|_| AppError::internal("customer ids out of order"))?;
        let mut placement = Placement { first_id: low, cells: vec![0; span] };

        for from in (low..=high).step_by(IDS_PER_READ as usize) {
            let mut read = Fragment::new("SELECT customer_id, category_id FROM customer_categories WHERE customer_id >= ");
            read.bind(Bind::BigInt(from)).push(" AND customer_id < ").bind(Bind::BigInt(from + IDS_PER_READ)).push(" AND scheme_id = ").bind(Bind::BigInt(scheme.id));
            for row in read.into_query().load::<Assigned>(conn)? {
                placement.place(row.customer_id, cell_of_id.get(&row.category_id).copied().unwrap_or(0));
            }
        }
        // History is an unbroken chain per customer: where one stood at `at` is the
        // `from` of its first move since.
        let mut stood = Fragment::new("SELECT c.id AS customer_id, y.start_category FROM (");
        stood.append(journeys(dialect, &scheme.code, at, None, None, &CodeRange::default())).push(&format!(") y {} customers c ON c.code = y.customer_code", dialect.left_first_join()));
        for row in stood.into_query().load::<StoodThen>(conn)? {
            placement.place(row.customer_id, cell_of_code.get(row.start_category.as_str()).copied().unwrap_or(0));
        }
        let born: Vec<i64> = customers::table.filter(customers::created_at.ge(at)).select(customers::id).load(conn)?;
        for id in born {
            placement.place(id, ABSENT);
        }

        let mut sums = vec![vec![0_i64; measures.len()]; codes.len() + 1];
        let anchor = sales_totals::anchor(conn)?;
        // Nothing happened before the first sale: the spans start there at the earliest.
        let before_first = first_sale(conn)?.map(|first| first - chrono::Duration::microseconds(1));
        for from in (low..=high).step_by(IDS_PER_READ as usize) {
            let mut read = Fragment::new("SELECT customer_id, spend_cents, orders, earlier_spend_cents, earlier_orders FROM sales_totals WHERE customer_id >= ");
            read.bind(Bind::BigInt(from)).push(" AND customer_id < ").bind(Bind::BigInt(from + IDS_PER_READ));
            for row in read.into_query().load::<Totals>(conn)? {
                let Some(cell) = placement.cell(row.customer_id) else { continue };
                for (sum, measure) in sums[cell].iter_mut().zip(measures) {
                    *sum += match measure {
                        Measure::Spend12m => row.spend_cents - row.earlier_spend_cents,
                        Measure::Orders12m => row.orders - row.earlier_orders,
                        Measure::LifetimeSpend => row.spend_cents,
                    };
                }
            }
        }
        // Every sale whose measures differ as of `moment` and as of the anchor lies
        // between the two, or between their window starts.
        let (earlier, later) = (moment.min(anchor), moment.max(anchor));
        for (low, high) in spans(&[(earlier, later), (window_start(earlier), window_start(later))]) {
            let mut start = before_first.map_or(high, |first| low.max(first));
            while start < high {
                let end = (start + chrono::Duration::days(DAYS_PER_READ)).min(high);
                let mut read = Fragment::new("SELECT customer_id, amount_cents, occurred_at FROM transactions WHERE occurred_at > ");
                read.bind(Bind::Timestamp(start)).push(" AND occurred_at <= ").bind(Bind::Timestamp(end));
                for sale in read.into_query().load::<Sale>(conn)? {
                    let Some(cell) = placement.cell(sale.customer_id) else { continue };
                    for (sum, measure) in sums[cell].iter_mut().zip(measures) {
                        *sum += of_sale(*measure, sale.amount_cents, sale.occurred_at, moment) - of_sale(*measure, sale.amount_cents, sale.occurred_at, anchor);
                    }
                }
                start = end;
            }
        }
        let keys = std::iter::once(None).chain(codes.into_iter().map(|(_, code)| Some(code)));
        Ok(keys.zip(sums).map(|(key, sums)| ((key, None), sums)).collect())
    })
}

/// Half-open spans `(low, high]` merged where they overlap, so that no sale is read twice.
fn spans(ranges: &[(NaiveDateTime, NaiveDateTime)]) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let mut sorted: Vec<_> = ranges.iter().copied().filter(|(low, high)| low < high).collect();
    sorted.sort();
    let mut merged: Vec<(NaiveDateTime, NaiveDateTime)> = Vec::new();
    for (low, high) in sorted {
        match merged.last_mut() {
            Some(last) if low <= last.1 => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn a_sale_counts_within_its_window_and_for_life() {
        let moment = at("2026-09-30 00:00:00");
        let sale = |amount, when| Measure::ALL.map(|measure| of_sale(measure, amount, at(when), moment));
        assert_eq!(sale(500, "2026-09-30 00:00:00"), [500, 1, 500]);
        assert_eq!(sale(-200, "2026-01-01 00:00:00"), [-200, 0, -200]);
        assert_eq!(sale(500, "2025-09-30 00:00:00"), [0, 0, 500], "the window's start is not in it");
        assert_eq!(sale(500, "2026-09-30 00:00:01"), [0, 0, 0], "after the moment");
    }

    #[test]
    fn overlapping_spans_merge_and_empty_ones_go() {
        let (a, b, c, d) = (at("2025-01-01 00:00:00"), at("2025-06-01 00:00:00"), at("2025-09-01 00:00:00"), at("2026-01-01 00:00:00"));
        assert_eq!(spans(&[(b, d), (a, c)]), vec![(a, d)]);
        assert_eq!(spans(&[(c, d), (a, b), (b, b)]), vec![(a, b), (c, d)]);
    }
}
