//! A period's sales per category of one scheme and per interval (分类销售统计), each sale
//! counted under the category its customer held when it happened (`at_sale`) or holds
//! now (`current`).
//!
//! Read into the service, as `past_standing` does: where every customer stood when the
//! period ended (`at_sale`) or stands now (`current`), one small integer per customer
//! id; on `at_sale` each move of the period per customer id, as history recorded it
//! (a deleted customer's moves do no harm: its sales went with it); then the period's sales in
//! index order of `occurred_at`, a day per statement. A sale's category is the `from`
//! of its customer's first move after it, or, without one in the period, where the
//! customer stood at its end: history is an unbroken chain per customer. The database
//! would look a category up per sale instead, at random. With a spare connection the
//! period's moves are read beside the standing, and the two halves of the period's
//! sales side by side. Memory grows with the customers (4 bytes each) and the moves
//! inside the period (some 60 bytes each), not with the sales.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use crate::db::schema::transactions;
use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::{snapshot, DbConnection};
use crate::domain::sales_report::SalesBasis;
use crate::error::AppError;

use crate::archive::customer_filters::Filters;
use crate::catalogue::schemes::SchemeRow;
use crate::reporting::grouping::matching_ids;
use crate::reporting::journeys::{period_index, CategoryCells, Ids};
use crate::reporting::past_standing::{id_bounds, Standing, MAX_ID_SPAN};

/// Sales per statement: those of one day.
const DAYS_PER_READ: i64 = 1;

/// What the sales of one category add up to in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalesSum {
    pub amount_cents: i64,
    /// Sales with a positive amount; refunds lower the amount but are no orders.
    pub orders: i64,
}

impl SalesSum {
    fn add(&mut self, amount_cents: i64) {
        self.amount_cents += amount_cents;
        if amount_cents > 0 {
            self.orders += 1;
        }
    }
}

/// The sums by category code (`None`: unclassified), one per interval.
pub type SalesCells = HashMap<Option<String>, Vec<SalesSum>>;

/// A move of the period, as a sale before it sees it.
#[derive(QueryableByName)]
struct Move {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = Timestamp)]
    at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    from_category: Option<String>,
}

/// Each customer's moves of the period in order, as `(at, id, from cell)`, by
/// customer id.
type MovesByCustomer = HashMap<i64, Vec<(NaiveDateTime, i64, u32)>>;

/// Where the customers of one window of ids stand, with the cells of their categories.
struct Placed<'a> {
    standing: &'a Standing,
    /// The report's cell of each of the standing's.
    cell_of_standing: &'a [u32],
    moves: &'a MovesByCustomer,
    /// Ids the filters select, sorted; `None`: everyone.
    included: Option<&'a [i64]>,
    bounds: &'a [NaiveDateTime],
}

impl Placed<'_> {
    /// The sums of the sales in `[from, until)` of the window's customers, by cell and interval.
    fn sum(
        &self,
        conn: &mut DbConnection,
        window: (i64, i64),
        (from, until): (NaiveDateTime, NaiveDateTime),
    ) -> Result<Vec<Vec<SalesSum>>, AppError> {
        let intervals = self.bounds.len() - 1;
        let mut sums: Vec<Vec<SalesSum>> = Vec::new();
        let mut day = from;
        while day < until {
            let next = (day + chrono::Duration::days(DAYS_PER_READ)).min(until);
            let sales: Vec<(i64, i64, NaiveDateTime)> = transactions::table
                .filter(transactions::occurred_at.ge(day).and(transactions::occurred_at.lt(next)))
                .filter(transactions::customer_id.between(window.0, window.1))
                .select((transactions::customer_id, transactions::amount_cents, transactions::occurred_at))
                .load(conn)?;
            for (customer_id, amount_cents, occurred_at) in sales {
                if self.included.is_some_and(|ids| ids.binary_search(&customer_id).is_err()) {
                    continue;
                }
                let Some(stands) = self.standing.cell(customer_id) else { continue };
                let then = self.moves.get(&customer_id).and_then(|moves| {
                    let next = moves.partition_point(|(at, _, _)| *at <= occurred_at);
                    moves.get(next).map(|(_, _, from)| *from)
                });
                let cell = then.unwrap_or(self.cell_of_standing[stands as usize]) as usize;
                let interval = self.bounds.partition_point(|bound| *bound <= occurred_at).saturating_sub(1);
                if sums.len() <= cell {
                    sums.resize(cell + 1, vec![SalesSum::default(); intervals]);
                }
                sums[cell][interval.min(intervals - 1)].add(amount_cents);
            }
            day = next;
        }
        Ok(sums)
    }
}

/// The sales of `[bounds[0], bounds[last])` of the customers `filters` selects, per
/// category of `scheme` on `basis` and per interval (`bounds[i] <= occurred_at <
/// bounds[i + 1]`). One snapshot on `conn`; with a `spare` connection, part of the
/// reading is done there at the same time.
pub fn sales_by_category(
    conn: &mut DbConnection,
    mut spare: Option<&mut DbConnection>,
    scheme: &SchemeRow,
    filters: &Filters,
    bounds: &[NaiveDateTime],
    basis: SalesBasis,
) -> Result<SalesCells, AppError> {
    let (Some(&start), Some(&end)) = (bounds.first(), bounds.last()) else { return Ok(SalesCells::new()) };
    snapshot(conn, |conn| {
        let mut included = if filters.is_empty() { None } else { Some(matching_ids(conn, scheme, filters)?) };
        if let Some(ids) = included.as_mut() {
            ids.sort_unstable();
        }
        let (Some(low), Some(high)) = id_bounds(conn)? else { return Ok(SalesCells::new()) };
        // From the period's first sale to its last: a long period is mostly empty.
        let (first, last): (Option<NaiveDateTime>, Option<NaiveDateTime>) = transactions::table
            .filter(transactions::occurred_at.ge(start).and(transactions::occurred_at.lt(end)))
            .select((diesel::dsl::min(transactions::occurred_at), diesel::dsl::max(transactions::occurred_at)))
            .first(conn)?;
        let (Some(first), Some(last)) = (first, last) else { return Ok(SalesCells::new()) };
        // Where each customer stood when the period ended (or stands now).
        let standing_at = match basis {
            SalesBasis::AtSale => end.min(crate::db::now()),
            SalesBasis::Current => crate::db::now(),
        };
        let mut cells = CategoryCells::default();
        let mut moves = MovesByCustomer::new();
        let mut sums: Vec<Vec<SalesSum>> = Vec::new();
        // Ids sit densely in a range but for many deletions: one window of ids at a time.
        let mut window_low = low;
        while window_low <= high {
            let window = (window_low, (window_low + MAX_ID_SPAN - 1).min(high));
            let read_moves = window_low == low && basis == SalesBasis::AtSale;
            let (standing, moved) = crate::side_by_side(
                conn,
                spare.as_deref_mut(),
                |conn| match basis {
                    SalesBasis::AtSale => Standing::read(conn, scheme, standing_at, window, Ids::Recorded),
                    SalesBasis::Current => Standing::now(conn, scheme, window),
                },
                |conn| if read_moves { Moved::read(conn, scheme, start, standing_at).map(Some) } else { Ok(None) },
            )?;
            if let Some(moved) = moved {
                moves = moved.by_customer(&mut cells);
            }
            let cell_of_standing: Vec<u32> =
                (0..=standing.codes_len() as u32).map(|cell| cells.cell(standing.key(cell))).collect();
            let placed = Placed {
                standing: &standing,
                cell_of_standing: &cell_of_standing,
                moves: &moves,
                included: included.as_deref(),
                bounds,
            };
            // The period's sales in two halves of days, side by side when there is a spare.
            let until = last + chrono::Duration::microseconds(1);
            let middle = first + (until - first) / 2;
            let (earlier, later) = crate::side_by_side(
                conn,
                spare.as_deref_mut(),
                |conn| placed.sum(conn, window, (first, middle)),
                |conn| placed.sum(conn, window, (middle, until)),
            )?;
            for part in [earlier, later] {
                add(&mut sums, part);
            }
            window_low = window.1 + 1;
        }
        Ok(sums
            .into_iter()
            .enumerate()
            .map(|(cell, sums)| (Some(cells.code(cell as u32).to_string()).filter(|code| !code.is_empty()), sums))
            .collect())
    })
}

fn add(sums: &mut Vec<Vec<SalesSum>>, part: Vec<Vec<SalesSum>>) {
    for (cell, intervals) in part.into_iter().enumerate() {
        if sums.len() <= cell {
            sums.resize(cell + 1, vec![SalesSum::default(); intervals.len()]);
        }
        for (sum, more) in sums[cell].iter_mut().zip(intervals) {
            sum.amount_cents += more.amount_cents;
            sum.orders += more.orders;
        }
    }
}

/// The moves of the period, read beside the standing; those of customers deleted
/// before history carried ids are left out, as their sales are gone.
struct Moved {
    within: Vec<Move>,
}

impl Moved {
    fn read(
        conn: &mut DbConnection,
        scheme: &SchemeRow,
        start: NaiveDateTime,
        end: NaiveDateTime,
    ) -> Result<Self, AppError> {
        let mut read = Fragment::new(&format!(
            "SELECT h.customer_id, h.at, h.id, h.from_category FROM assignment_history h{} WHERE h.customer_id IS NOT NULL AND h.scheme_code = ",
            period_index(Dialect::of(conn))
        ));
        read.bind(Bind::Text(scheme.code.clone()))
            .push(" AND h.at >= ")
            .bind(Bind::Timestamp(start))
            .push(" AND h.at < ")
            .bind(Bind::Timestamp(end));
        Ok(Moved { within: read.into_query().load(conn)? })
    }

    /// Each customer's moves of the period in order.
    fn by_customer(self, cells: &mut CategoryCells) -> MovesByCustomer {
        let mut moves = MovesByCustomer::new();
        for entry in self.within {
            let from = cells.cell(entry.from_category);
            moves.entry(entry.customer_id).or_default().push((entry.at, entry.id, from));
        }
        for customer in moves.values_mut() {
            customer.sort_unstable_by_key(|(at, id, _)| (*at, *id));
        }
        moves
    }
}
