//! A period's sales per category of one scheme and per interval (分类销售统计), each sale
//! counted under the category its customer held when it happened (`at_sale`) or holds
//! now (`current`).
//!
//! Read into the service, as `past_standing` does: where every customer stood at the
//! end of the period (one small integer per customer id), each move of the period per
//! customer, then the period's sales in index order of `occurred_at`, a day per
//! statement. A sale's category is the `from` of its customer's first move after it,
//! or, without one, where the customer stood at the end: history is an unbroken chain
//! per customer. The database would look a category up per sale instead, at random.

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
use crate::reporting::journeys::period_index;
use crate::reporting::past_standing::{id_bounds, Standing, MAX_ID_SPAN};
use crate::reporting::reports::matching_ids;

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

/// Each customer's moves of the period in order, as `(at, id, from cell)`.
type MovesByCustomer = HashMap<i64, Vec<(NaiveDateTime, i64, u32)>>;

/// The category codes of one report, as small integers: `0` is none.
struct Cells {
    codes: Vec<Option<String>>,
    by_code: HashMap<String, u32>,
}

impl Cells {
    fn of(&mut self, code: Option<String>) -> u32 {
        let Some(code) = code.filter(|code| !code.is_empty()) else { return 0 };
        if let Some(cell) = self.by_code.get(&code) {
            return *cell;
        }
        let cell = self.codes.len() as u32;
        self.codes.push(Some(code.clone()));
        self.by_code.insert(code, cell);
        cell
    }
}

/// The sales of `[bounds[0], bounds[last])` of the customers `filters` selects, per
/// category of `scheme` on `basis` and per interval (`bounds[i] <= occurred_at <
/// bounds[i + 1]`). One snapshot, so that the sales and the categories agree.
pub fn sales_by_category(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    filters: &Filters,
    bounds: &[NaiveDateTime],
    basis: SalesBasis,
) -> Result<SalesCells, AppError> {
    let (Some(&start), Some(&end)) = (bounds.first(), bounds.last()) else { return Ok(SalesCells::new()) };
    let intervals = bounds.len() - 1;
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
        let now = crate::db::now();
        // Where each customer stood when the period ended (or now), and on `at_sale`
        // every move from the period's start up to then.
        let standing_at = match basis {
            SalesBasis::AtSale => end.min(now),
            SalesBasis::Current => now,
        };
        let mut sums: Vec<Vec<SalesSum>> = Vec::new();
        let mut cells = Cells { codes: vec![None], by_code: HashMap::new() };
        // Ids sit densely in a range but for many deletions: one window of ids at a time.
        let mut window_low = low;
        while window_low <= high {
            let window = (window_low, (window_low + MAX_ID_SPAN - 1).min(high));
            let standing = Standing::read(conn, scheme, standing_at, window)?;
            let moves = match basis {
                SalesBasis::AtSale => moves_between(conn, scheme, start, standing_at, window, &mut cells)?,
                SalesBasis::Current => HashMap::new(),
            };
            let cell_of_standing: Vec<u32> =
                (0..=standing.codes_len() as u32).map(|cell| cells.of(standing.key(cell))).collect();
            let mut day = first;
            while day <= last {
                let until = (day + chrono::Duration::days(DAYS_PER_READ)).min(end);
                let sales: Vec<(i64, i64, NaiveDateTime)> = transactions::table
                    .filter(transactions::occurred_at.ge(day).and(transactions::occurred_at.lt(until)))
                    .filter(transactions::customer_id.between(window.0, window.1))
                    .select((transactions::customer_id, transactions::amount_cents, transactions::occurred_at))
                    .load(conn)?;
                for (customer_id, amount_cents, occurred_at) in sales {
                    if included.as_ref().is_some_and(|ids| ids.binary_search(&customer_id).is_err()) {
                        continue;
                    }
                    let Some(stood) = standing.cell(customer_id) else { continue };
                    let later = moves.get(&customer_id).and_then(|moves| {
                        let next = moves.partition_point(|(at, _, _)| *at <= occurred_at);
                        moves.get(next).map(|(_, _, from)| *from)
                    });
                    let cell = later.unwrap_or(cell_of_standing[stood as usize]) as usize;
                    let interval = bounds.partition_point(|bound| *bound <= occurred_at).saturating_sub(1);
                    if sums.len() <= cell {
                        sums.resize(cell + 1, vec![SalesSum::default(); intervals]);
                    }
                    sums[cell][interval.min(intervals - 1)].add(amount_cents);
                }
                day = until;
            }
            window_low = window.1 + 1;
        }
        Ok(sums.into_iter().enumerate().map(|(cell, sums)| (cells.codes[cell].clone(), sums)).collect())
    })
}

/// Each customer's moves in `[start, end)`, ordered, as `(at, id, from cell)`; the
/// customers of `window` still in the archive only (a deleted one's sales went with it).
fn moves_between(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    start: NaiveDateTime,
    end: NaiveDateTime,
    window: (i64, i64),
    cells: &mut Cells,
) -> Result<MovesByCustomer, AppError> {
    let mut read = Fragment::new(&format!(
        "SELECT c.id AS customer_id, h.at, h.id, h.from_category FROM assignment_history h{} \
         JOIN customers c ON c.code = h.customer_code WHERE h.scheme_code = ",
        period_index(Dialect::of(conn))
    ));
    read.bind(Bind::Text(scheme.code.clone()))
        .push(" AND h.at >= ")
        .bind(Bind::Timestamp(start))
        .push(" AND h.at < ")
        .bind(Bind::Timestamp(end))
        .push(&format!(" AND c.id BETWEEN {} AND {}", window.0, window.1));
    let mut moves = MovesByCustomer::new();
    for entry in read.into_query().load::<Move>(conn)? {
        let from = cells.of(entry.from_category);
        moves.entry(entry.customer_id).or_default().push((entry.at, entry.id, from));
    }
    for customer in moves.values_mut() {
        customer.sort_unstable_by_key(|(at, id, _)| (*at, *id));
    }
    Ok(moves)
}
