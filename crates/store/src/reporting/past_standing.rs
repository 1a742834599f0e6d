//! Where every customer stood at the end of a past day, read into the service: its
//! assignment, undone by its first move since (history is an unbroken chain per
//! customer), one small integer per customer id, since ids sit densely in a range.
//! From there, in one snapshot:
//! - the measures of all customers of one scheme by the category they stood in: their
//!   sales totals at the anchor, turned back by the transactions between the day and
//!   the anchor (and between the two window starts), each read in index order;
//! - two schemes against each other, counted per customer.
//!
//! The database would join each transaction, or each customer of a second scheme, to
//! a category: a lookup at random that costs MariaDB about 5 µs a row, where
//! streaming a row in index order costs well under one.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{categories, customer_categories, customers, sales_totals, transactions};
use crate::db::{snapshot, DbConnection};
use crate::domain::report::{Measure, Tally};
use crate::error::AppError;

use crate::catalogue::schemes::SchemeRow;
use crate::domain::sales::window_start;
use crate::reporting::journeys::{self, Ids, Journey, Span};
use crate::reporting::scheme_counts::{rewound, CellKey};

/// Customers read per statement: each result is buffered whole by the MySQL client.
const IDS_PER_READ: i64 = 10_000;

/// Transactions per statement: those of one day.
const DAYS_PER_READ: i64 = 1;

/// A customer not counted as of the day: created since.
const ABSENT: u32 = u32::MAX;

/// Ids a placement may span (4 bytes each): beyond, the ids are too sparse for it.
pub(crate) const MAX_ID_SPAN: i64 = 16_000_000;

/// Whether the customer ids are dense enough to place every customer by id.
pub fn dense(conn: &mut DbConnection) -> Result<bool, AppError> {
    Ok(matches!(id_bounds(conn)?, (Some(low), Some(high)) if high - low < MAX_ID_SPAN))
}

/// Whether measures as of `moment` are best summed here: before the anchor (after it,
/// the totals are corrected in the database by at most a day of sales), when the sales
/// between `moment` and the anchor are fewer than those up to `moment` (taken as
/// spread evenly since the first), and when the customer ids are dense.
pub fn suits_measures(conn: &mut DbConnection, moment: NaiveDateTime) -> Result<bool, AppError> {
    let anchor = crate::archive::sales_totals::anchor(conn)?;
    let Some(first) = first_sale(conn)? else { return Ok(false) };
    // Back to the day, and as much again for the window's start.
    let back = (anchor - moment).num_seconds() * 2;
    Ok(moment < anchor && back < (moment - first).num_seconds() && dense(conn)?)
}

fn first_sale(conn: &mut DbConnection) -> Result<Option<NaiveDateTime>, AppError> {
    Ok(transactions::table.select(diesel::dsl::min(transactions::occurred_at)).first(conn)?)
}

pub(crate) fn id_bounds(conn: &mut DbConnection) -> Result<(Option<i64>, Option<i64>), AppError> {
    Ok(customers::table.select((diesel::dsl::min(customers::id), diesel::dsl::max(customers::id))).first(conn)?)
}

/// Where every customer stood in one scheme at a past moment: for each id from the
/// first, a cell, `0` for unclassified (and for ids nobody holds), `i + 1` for the
/// scheme's `i`-th category.
pub(crate) struct Standing {
    codes: Vec<String>,
    cell_by_code: HashMap<String, u32>,
    first_id: i64,
    cells: Vec<u32>,
    /// The customers who moved since, with where they stood and stand.
    journeys: Vec<Journey>,
}

impl Standing {
    /// Reads the scheme's assignments of customers `low..=high` and undoes the moves
    /// made since `at`: those of the customers still in the archive, or, with
    /// `Ids::Recorded`, of those deleted since too (for readers of sales alone).
    pub(crate) fn read(
        conn: &mut DbConnection,
        scheme: &SchemeRow,
        at: NaiveDateTime,
        window: (i64, i64),
        ids: Ids,
    ) -> Result<Self, AppError> {
        let mut standing = Self::now(conn, scheme, window)?;
        // Where a customer stood at `at` is the `from` of its first move since.
        let journeys =
            journeys::with_ids(conn, &Span { scheme_code: &scheme.code, start: at, end: None, source: None }, ids)?;
        for journey in &journeys {
            if let Some(id) = journey.customer_id {
                standing.place(id, standing.cell_of(&journey.start_category));
            }
        }
        standing.journeys = journeys;
        Ok(standing)
    }

    /// The scheme's assignments of customers `low..=high` as they are now.
    pub(crate) fn now(conn: &mut DbConnection, scheme: &SchemeRow, (low, high): (i64, i64)) -> Result<Self, AppError> {
        let codes: Vec<String> = categories::table
            .filter(categories::scheme_id.eq(scheme.id))
            .select(categories::code)
            .order(categories::id)
            .load(conn)?;
        let span = usize::try_from(high - low + 1).map_err(|_| AppError::internal("customer ids out of order"))?;
        let cell_by_code = codes.iter().enumerate().map(|(index, code)| (code.clone(), index as u32 + 1)).collect();
        let mut standing = Standing { codes, cell_by_code, first_id: low, cells: vec![0; span], journeys: Vec::new() };
        // Each category's customers in the order of `(scheme_id, category_code,
        // customer_id)`, which holds the scheme's alone (the primary key interleaves every
        // scheme's): ids only, no text a row.
        for cell in 1..=standing.codes.len() as u32 {
            let code = standing.codes[cell as usize - 1].clone();
            let mut after = i64::MIN;
            loop {
                let assigned: Vec<i64> = customer_categories::table
                    .filter(
                        customer_categories::scheme_id
                            .eq(scheme.id)
                            .and(customer_categories::category_code.eq(&code))
                            .and(customer_categories::customer_id.gt(after)),
                    )
                    .order(customer_categories::customer_id)
                    .select(customer_categories::customer_id)
                    .limit(IDS_PER_READ)
                    .load(conn)?;
                for customer_id in &assigned {
                    standing.place(*customer_id, cell);
                }
                match assigned.last() {
                    Some(last) if assigned.len() == IDS_PER_READ as usize => after = *last,
                    _ => break,
                }
            }
        }
        Ok(standing)
    }

    /// How many categories the cells number (`1..=` this; `0` is none).
    pub(crate) fn codes_len(&self) -> usize {
        self.codes.len()
    }

    /// The cell of a category code, `0` for `''` (none).
    pub(crate) fn cell_of(&self, code: &str) -> u32 {
        self.cell_by_code.get(code).copied().unwrap_or(0)
    }

    pub(crate) fn key(&self, cell: u32) -> Option<String> {
        cell.checked_sub(1).and_then(|index| self.codes.get(index as usize)).cloned()
    }

    pub(crate) fn cell(&self, customer_id: i64) -> Option<u32> {
        let index = usize::try_from(customer_id - self.first_id).ok()?;
        self.cells.get(index).copied().filter(|cell| *cell != ABSENT)
    }

    fn place(&mut self, customer_id: i64, cell: u32) {
        if let Some(slot) =
            usize::try_from(customer_id - self.first_id).ok().and_then(|index| self.cells.get_mut(index))
        {
            *slot = cell;
        }
    }

    /// Leaves out the customers created since.
    fn leave_out(&mut self, ids: &[i64]) {
        for id in ids {
            self.place(*id, ABSENT);
        }
    }
}

/// A moment with the start of its 12-month window, worked out once rather than for
/// every sale (the calendar arithmetic was a third of the time of summing the sales).
#[derive(Debug, Clone, Copy)]
struct AsOf {
    moment: NaiveDateTime,
    window_start: NaiveDateTime,
}

impl AsOf {
    fn new(moment: NaiveDateTime) -> Self {
        AsOf { moment, window_start: window_start(moment) }
    }

    /// The value a measure takes from one sale, as of this moment.
    fn of_sale(&self, measure: Measure, amount_cents: i64, occurred_at: NaiveDateTime) -> i64 {
        let in_window = occurred_at > self.window_start && occurred_at <= self.moment;
        match measure {
            Measure::LifetimeSpend if occurred_at <= self.moment => amount_cents,
            Measure::Spend12m if in_window => amount_cents,
            Measure::Orders12m if in_window && amount_cents > 0 => 1,
            _ => 0,
        }
    }
}

/// The customers of `scheme` as they stood at `at`, by category (unclassified as
/// `None`), with their measures as of `moment` (the last instant of the day before
/// `at`): customers created since are left out, those deleted since counted where
/// they were (their sales went with them). One snapshot, so that counts and sums agree.
pub fn by_category(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    measures: &[Measure],
    at: NaiveDateTime,
    moment: NaiveDateTime,
) -> Result<HashMap<CellKey, Tally>, AppError> {
    snapshot(conn, |conn| {
        let (Some(low), Some(high)) = id_bounds(conn)? else { return rewound(conn, scheme, Some(at), &HashMap::new()) };
        let mut standing = Standing::read(conn, scheme, at, (low, high), Ids::OfExisting)?;
        standing.leave_out(&born_since(conn, at)?);
        let mut cells = rewound(conn, scheme, Some(at), &journeys::tally(&standing.journeys))?;
        let mut sums = vec![vec![0_i64; measures.len()]; standing.codes.len() + 1];
        let anchor = crate::archive::sales_totals::anchor(conn)?;
        // Nothing happened before the first sale: the spans start there at the earliest.
        let before_first = first_sale(conn)?.map(|first| first - chrono::Duration::microseconds(1));
        for from in (low..=high).step_by(IDS_PER_READ as usize) {
            let totals: Vec<(i64, i64, i64, i64, i64)> = sales_totals::table
                .filter(sales_totals::customer_id.ge(from).and(sales_totals::customer_id.lt(from + IDS_PER_READ)))
                .select((
                    sales_totals::customer_id,
                    sales_totals::spend_cents,
                    sales_totals::orders,
                    sales_totals::earlier_spend_cents,
                    sales_totals::earlier_orders,
                ))
                .load(conn)?;
            for (customer_id, spend_cents, orders, earlier_spend_cents, earlier_orders) in totals {
                let Some(cell) = standing.cell(customer_id) else { continue };
                for (sum, measure) in sums[cell as usize].iter_mut().zip(measures) {
                    *sum += match measure {
                        Measure::Spend12m => spend_cents - earlier_spend_cents,
                        Measure::Orders12m => orders - earlier_orders,
                        Measure::LifetimeSpend => spend_cents,
                    };
                }
            }
        }
        // Every sale whose measures differ as of `moment` and as of the anchor lies
        // between the two, or between their window starts.
        let (earlier, later) = (moment.min(anchor), moment.max(anchor));
        let (then, at_anchor) = (AsOf::new(moment), AsOf::new(anchor));
        for (low, high) in spans(&[(earlier, later), (window_start(earlier), window_start(later))]) {
            let mut start = before_first.map_or(high, |first| low.max(first));
            while start < high {
                let end = (start + chrono::Duration::days(DAYS_PER_READ)).min(high);
                let sales: Vec<(i64, i64, NaiveDateTime)> = transactions::table
                    .filter(transactions::occurred_at.gt(start).and(transactions::occurred_at.le(end)))
                    .select((transactions::customer_id, transactions::amount_cents, transactions::occurred_at))
                    .load(conn)?;
                for (customer_id, amount_cents, occurred_at) in sales {
                    let Some(cell) = standing.cell(customer_id) else { continue };
                    for (sum, measure) in sums[cell as usize].iter_mut().zip(measures) {
                        *sum += then.of_sale(*measure, amount_cents, occurred_at)
                            - at_anchor.of_sale(*measure, amount_cents, occurred_at);
                    }
                }
                start = end;
            }
        }
        for (cell, sums) in sums.into_iter().enumerate() {
            cells.entry((standing.key(cell as u32), None)).or_insert_with(|| Tally::new(0)).sums = sums;
        }
        Ok(cells)
    })
}

/// Two schemes against each other as the customers stood at `at`: customers created
/// since are left out, those deleted since counted where they were. The customers
/// unclassified in both are what the population leaves over.
pub fn paired(
    conn: &mut DbConnection,
    rows: &SchemeRow,
    cols: &SchemeRow,
    at: NaiveDateTime,
) -> Result<HashMap<CellKey, Tally>, AppError> {
    snapshot(conn, |conn| {
        let (Some(low), Some(high)) = id_bounds(conn)? else { return rewound(conn, rows, Some(at), &HashMap::new()) };
        let (mut first, mut second) = (
            Standing::read(conn, rows, at, (low, high), Ids::OfExisting)?,
            Standing::read(conn, cols, at, (low, high), Ids::OfExisting)?,
        );
        let born = born_since(conn, at)?;
        first.leave_out(&born);
        second.leave_out(&born);
        let population: i64 = rewound(conn, rows, Some(at), &journeys::tally(&first.journeys))?
            .values()
            .map(|tally| tally.customers)
            .sum();
        let mut pairs: HashMap<(u32, u32), i64> = HashMap::new();
        for (row, col) in first.cells.iter().zip(&second.cells) {
            if *row != ABSENT && (*row, *col) != (0, 0) {
                *pairs.entry((*row, *col)).or_default() += 1;
            }
        }
        let mut gone: HashMap<&str, (u32, u32)> = HashMap::new();
        for (standing, column) in [(&first, 0), (&second, 1)] {
            for journey in standing
                .journeys
                .iter()
                .filter(|journey| journey.customer_id.is_none() && !journey.start_category.is_empty())
            {
                let pair = gone.entry(journey.customer_code.as_str()).or_insert((0, 0));
                let cell = standing.cell_of(&journey.start_category);
                if column == 0 {
                    pair.0 = cell;
                } else {
                    pair.1 = cell;
                }
            }
        }
        for pair in gone.into_values() {
            *pairs.entry(pair).or_default() += 1;
        }
        let classified: i64 = pairs.values().sum();
        let mut cells: HashMap<CellKey, Tally> = pairs
            .into_iter()
            .map(|((row, col), customers)| ((first.key(row), second.key(col)), Tally { customers, sums: Vec::new() }))
            .collect();
        cells.insert((None, None), Tally { customers: population - classified, sums: Vec::new() });
        Ok(cells)
    })
}

fn born_since(conn: &mut DbConnection, at: NaiveDateTime) -> Result<Vec<i64>, AppError> {
    Ok(customers::table.filter(customers::created_at.ge(at)).select(customers::id).load(conn)?)
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
        let sale = |amount, when| Measure::ALL.map(|measure| AsOf::new(moment).of_sale(measure, amount, at(when)));
        assert_eq!(sale(500, "2026-09-30 00:00:00"), [500, 1, 500]);
        assert_eq!(sale(-200, "2026-01-01 00:00:00"), [-200, 0, -200]);
        assert_eq!(sale(500, "2025-09-30 00:00:00"), [0, 0, 500], "the window's start is not in it");
        assert_eq!(sale(500, "2026-09-30 00:00:01"), [0, 0, 0], "after the moment");
    }

    #[test]
    fn overlapping_spans_merge_and_empty_ones_go() {
        let (a, b, c, d) = (
            at("2025-01-01 00:00:00"),
            at("2025-06-01 00:00:00"),
            at("2025-09-01 00:00:00"),
            at("2026-01-01 00:00:00"),
        );
        assert_eq!(spans(&[(b, d), (a, c)]), vec![(a, d)]);
        assert_eq!(spans(&[(c, d), (a, b), (b, b)]), vec![(a, b), (c, d)]);
    }
}
