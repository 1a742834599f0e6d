//! Each customer's journey through a scheme over a period: where it stood before its
//! first move and after its last. History is an unbroken chain per customer, so this
//! is all that the net transitions and the reports as of a past day need of it.
//!
//! Two ways to them: a short period's moves are read from its range of the period
//! index alone and folded per customer here; a long one is grouped in the database in
//! one pass over the scheme's history in customer order (no sorting, but every entry
//! of the scheme read, about 0.3 µs each on MariaDB).

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use crate::db::schema::customers;
use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::DbConnection;
use crate::domain::history::Source;
use crate::error::AppError;

use crate::reporting::counts::Count;

/// Up to this many moves in a period are read one by one (index-only, about 1 µs
/// each, and some 100 bytes a customer while folding); beyond, the one pass over the
/// scheme's history costs less and holds nothing.
const SHORT_PERIOD_MOVES: i64 = 250_000;

/// A customer's moves over a period, in brief. `''` stands for "no category", where
/// `NULL` would vanish in the database's `MAX`.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Journey {
    /// Filled when asked for; `None` then means deleted since.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub customer_id: Option<i64>,
    #[diesel(sql_type = Text)]
    pub customer_code: String,
    /// Before the first move and after the last.
    #[diesel(sql_type = Text)]
    pub start_category: String,
    #[diesel(sql_type = Text)]
    pub end_category: String,
}

/// How many customers went from each category to each, as `(start, end)`.
pub type Moved = HashMap<(String, String), i64>;

/// The period `[start, end)` of one scheme's history; open-ended without `end`.
#[derive(Debug, Clone)]
pub struct Span<'a> {
    pub scheme_code: &'a str,
    pub start: NaiveDateTime,
    pub end: Option<NaiveDateTime>,
    /// Only the customers with a move of this source.
    pub source: Option<Source>,
}

impl Span<'_> {
    /// `WHERE` over the period index, on `assignment_history h`.
    fn conditions(&self) -> Fragment {
        let mut conditions = Fragment::new(" WHERE h.scheme_code = ");
        conditions
            .bind(Bind::Text(self.scheme_code.to_string()))
            .push(" AND h.at >= ")
            .bind(Bind::Timestamp(self.start));
        if let Some(end) = self.end {
            conditions.push(" AND h.at < ").bind(Bind::Timestamp(end));
        }
        conditions
    }
}

/// The index of each scheme's moves in time order, holding all that the reports read.
pub(crate) fn period_index(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Mysql => " FORCE INDEX (ix_assignment_history_period)",
        Dialect::Sqlite => "",
    }
}

#[derive(QueryableByName)]
struct Move {
    #[diesel(sql_type = Nullable<BigInt>)]
    customer_id: Option<i64>,
    #[diesel(sql_type = Text)]
    customer_code: String,
    #[diesel(sql_type = Timestamp)]
    at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    from_category: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    to_category: Option<String>,
    #[diesel(sql_type = Text)]
    source: String,
}

/// Which customer ids journeys carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    None,
    /// Those of the customers still in the archive (`None`: deleted since): a lookup
    /// by id a move.
    OfExisting,
    /// Those history recorded, of customers deleted since as well: no lookup, for
    /// readers of sales, which go with their customer.
    Recorded,
}

/// The journeys of a period read from its moves and folded here, or `None` when it
/// has more than `SHORT_PERIOD_MOVES`.
pub fn folded(conn: &mut DbConnection, span: &Span, ids: Ids) -> Result<Option<Vec<Journey>>, AppError> {
    Ok(fold(conn, span, ids)?.map(Folding::journeys))
}

fn fold(conn: &mut DbConnection, span: &Span, ids: Ids) -> Result<Option<Folding>, AppError> {
    let index = period_index(Dialect::of(conn));
    let mut few =
        Fragment::new(&format!("SELECT COUNT(*) AS customers FROM (SELECT 1 AS one FROM assignment_history h{index}"));
    few.append(span.conditions()).push(&format!(" LIMIT {}) x", SHORT_PERIOD_MOVES + 1));
    if few.into_query().get_result::<Count>(conn)?.customers > SHORT_PERIOD_MOVES {
        return Ok(None);
    }
    let (id, join) = match ids {
        Ids::None => ("NULL", ""),
        Ids::OfExisting => ("c.id", " LEFT JOIN customers c ON c.id = h.customer_id"),
        Ids::Recorded => ("h.customer_id", ""),
    };
    let mut read = Fragment::new(&format!(
        "SELECT {id} AS customer_id, h.customer_code, h.at, h.id, h.from_category, h.to_category, h.source FROM assignment_history h{index}{join}"
    ));
    read.append(span.conditions());
    let mut folding = Folding::new(span.source);
    for entry in read.into_query().load_iter::<Move, DefaultLoadingMode>(conn)? {
        folding.add(entry?);
    }
    Ok(Some(folding))
}

/// Each customer's first and last move by `(at, id)`, from its moves in any order.
/// Held as small as a move allows (some 100 bytes a customer): the categories, a
/// handful, once each.
struct Folding {
    source: Option<Source>,
    categories: CategoryCells,
    per_customer: HashMap<String, Ends>,
}

struct Ends {
    customer_id: Option<i64>,
    first: (NaiveDateTime, i64),
    start: u32,
    last: (NaiveDateTime, i64),
    end: u32,
    of_source: bool,
}

impl Folding {
    fn new(source: Option<Source>) -> Self {
        // Index 0 is no category.
        Folding { source, categories: CategoryCells::default(), per_customer: HashMap::new() }
    }

    fn add(&mut self, entry: Move) {
        let key = (entry.at, entry.id);
        let of_source = self.source.is_none_or(|source| source.as_str() == entry.source);
        let (from, to) = (self.categories.cell(entry.from_category), self.categories.cell(entry.to_category));
        let ends = self.per_customer.entry(entry.customer_code).or_insert(Ends {
            customer_id: entry.customer_id,
            first: (NaiveDateTime::MAX, i64::MAX),
            start: 0,
            last: (NaiveDateTime::MIN, i64::MIN),
            end: 0,
            of_source: false,
        });
        ends.of_source |= of_source;
        if key < ends.first {
            (ends.first, ends.start) = (key, from);
        }
        if key > ends.last {
            (ends.last, ends.end) = (key, to);
        }
    }

    fn moved(&self) -> Moved {
        let mut moved = Moved::new();
        for ends in self.per_customer.values().filter(|ends| ends.of_source) {
            *moved
                .entry((self.categories.code(ends.start).to_string(), self.categories.code(ends.end).to_string()))
                .or_default() += 1;
        }
        moved
    }

    fn journeys(self) -> Vec<Journey> {
        let categories = self.categories;
        self.per_customer
            .into_iter()
            .filter(|(_, ends)| ends.of_source)
            .map(|(customer_code, ends)| Journey {
                customer_id: ends.customer_id,
                customer_code,
                start_category: categories.code(ends.start).to_string(),
                end_category: categories.code(ends.end).to_string(),
            })
            .collect()
    }
}

/// Category codes as small integers, in the order first met; `0` is none (`''`).
#[derive(Debug)]
pub(crate) struct CategoryCells {
    codes: Vec<String>,
    cells: HashMap<String, u32>,
}

impl Default for CategoryCells {
    fn default() -> Self {
        CategoryCells { codes: vec![String::new()], cells: HashMap::new() }
    }
}

impl CategoryCells {
    pub(crate) fn cell(&mut self, code: Option<String>) -> u32 {
        let Some(code) = code.filter(|code| !code.is_empty()) else { return 0 };
        if let Some(cell) = self.cells.get(&code) {
            return *cell;
        }
        let cell = self.codes.len() as u32;
        self.codes.push(code.clone());
        self.cells.insert(code, cell);
        cell
    }

    /// The code of a cell, `''` for none.
    pub(crate) fn code(&self, cell: u32) -> &str {
        self.codes.get(cell as usize).map_or("", String::as_str)
    }
}

/// Every journey of the period, with each customer's id as `ids` asks (a long period's
/// are those of the customers still in the archive).
pub fn with_ids(conn: &mut DbConnection, span: &Span, ids: Ids) -> Result<Vec<Journey>, AppError> {
    match folded(conn, span, ids)? {
        Some(journeys) => Ok(journeys),
        None => grouped_with_ids(conn, span),
    }
}

/// Every journey of the period with each customer's id, grouped in the database.
pub fn grouped_with_ids(conn: &mut DbConnection, span: &Span) -> Result<Vec<Journey>, AppError> {
    let mut read =
        Fragment::new("SELECT c.id AS customer_id, y.customer_code, y.start_category, y.end_category FROM (");
    read.append(journeys(
        Dialect::of(conn),
        span.scheme_code,
        span.start,
        span.end,
        span.source,
        &CodeRange::default(),
    ))
    .push(") y LEFT JOIN customers c ON c.code = y.customer_code");
    Ok(read.into_query().load(conn)?)
}

/// How many customers went from each category to each over the period.
pub fn moved(conn: &mut DbConnection, spare: Option<&mut DbConnection>, span: &Span) -> Result<Moved, AppError> {
    match fold(conn, span, Ids::None)? {
        Some(folding) => Ok(folding.moved()),
        None => grouped(conn, spare, span),
    }
}

/// How many customers went from each category to each over the period, grouped in the
/// database: in two halves of the customers when a `spare` connection is at hand, one
/// on each.
pub fn grouped(conn: &mut DbConnection, spare: Option<&mut DbConnection>, span: &Span) -> Result<Moved, AppError> {
    let dialect = Dialect::of(conn);
    let count = |conn: &mut DbConnection, codes: &CodeRange| -> Result<Vec<JourneyCount>, AppError> {
        let mut query = Fragment::new("SELECT start_category, end_category, COUNT(*) AS customers FROM (");
        query
            .append(journeys(dialect, span.scheme_code, span.start, span.end, span.source, codes))
            .push(") y GROUP BY start_category, end_category");
        Ok(query.into_query().load(conn)?)
    };
    let halves = match spare {
        Some(spare) => Some((spare, CodeRange::halves(conn)?)),
        None => None,
    };
    let rows = match halves {
        Some((spare, halves)) if halves.len() == 2 => {
            let (lower, upper) = std::thread::scope(|scope| {
                let other = scope.spawn(|| count(spare, &halves[1]));
                (count(conn, &halves[0]), other.join())
            });
            let mut rows = lower?;
            rows.extend(upper.map_err(|_| AppError::internal("counting journeys panicked"))??);
            rows
        }
        _ => count(conn, &CodeRange::default())?,
    };
    let mut moved = Moved::new();
    for row in rows {
        *moved.entry((row.start_category, row.end_category)).or_default() += row.customers;
    }
    Ok(moved)
}

/// How many of the journeys went from each category to each.
pub fn tally(journeys: &[Journey]) -> Moved {
    let mut moved = Moved::new();
    for journey in journeys {
        *moved.entry((journey.start_category.clone(), journey.end_category.clone())).or_default() += 1;
    }
    moved
}

#[derive(QueryableByName)]
struct JourneyCount {
    #[diesel(sql_type = Text)]
    start_category: String,
    #[diesel(sql_type = Text)]
    end_category: String,
    #[diesel(sql_type = BigInt)]
    customers: i64,
}

/// A sortable text of a history entry's place in time, `(at, id)`, fixed-width per
/// backend, and its width: `MIN(CONCAT(key, x))` is then the `x` of the first entry.
fn move_key(dialect: Dialect) -> (&'static str, usize) {
    match dialect {
        Dialect::Mysql => ("CONCAT(DATE_FORMAT(at, '%Y%m%d%H%i%s%f'), LPAD(id, 20, '0'))", 40),
        // SQLite keeps times as text with 0, 3, 6 or 9 decimals: padded to 9.
        Dialect::Sqlite => ("((CASE WHEN length(at) = 19 THEN at || '.000000000' ELSE substr(at || '000000000', 1, 29) END) || printf('%020d', id))", 49),
    }
}

/// The index that yields each customer's moves of a scheme in order, with what the
/// reports read of them. MariaDB would rather range-scan the period by time and sort.
pub(crate) fn journeys_index(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Mysql => " FORCE INDEX (ix_assignment_history_journeys)",
        Dialect::Sqlite => "",
    }
}

/// SQL of the value of `column` in the first (`MIN`) or last (`MAX`) entry of a group.
pub(crate) fn in_entry(dialect: Dialect, aggregate: &str, column: &str) -> String {
    let (key, width) = move_key(dialect);
    format!("SUBSTR({aggregate}(CONCAT({key}, {column})), {})", width + 1)
}

/// Customers by code, `[from, until)`; an end that is `None` is open.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeRange {
    from: Option<String>,
    until: Option<String>,
}

impl CodeRange {
    /// All codes in two halves, or in one range when the archive is empty. The split
    /// is the code of the customer with the middle id, found by one index probe: the
    /// median code where codes follow creation, as they usually do (finding the exact
    /// median would cost a scan of half the codes).
    pub(crate) fn halves(conn: &mut DbConnection) -> Result<Vec<CodeRange>, AppError> {
        let middle = crate::middle_customer_id(conn)?;
        let median: Option<String> = customers::table
            .select(customers::code)
            .filter(customers::id.ge(middle))
            .order(customers::id)
            .first(conn)
            .optional()?;
        Ok(match median {
            Some(code) => {
                vec![CodeRange { from: None, until: Some(code.clone()) }, CodeRange { from: Some(code), until: None }]
            }
            None => vec![CodeRange::default()],
        })
    }
}

/// Per customer with moves in `scheme_code` from `start` (until `end`, if given;
/// only customers with a move of `source`, if given), in customer-code order:
/// `customer_code`, the category before its first move (`start_category`) and after
/// its last (`end_category`), `''` for none, the number of `moves` and when the last
/// was (`last_at`). One pass over an index in customer order, without sorting;
/// `codes` narrows it to one range of that index.
pub(crate) fn journeys(
    dialect: Dialect,
    scheme_code: &str,
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
    source: Option<Source>,
    codes: &CodeRange,
) -> Fragment {
    let mut sql = Fragment::new(&format!(
        "SELECT customer_code, {} AS start_category, {} AS end_category, COUNT(*) AS moves, MAX(at) AS last_at FROM assignment_history{} WHERE scheme_code = ",
        in_entry(dialect, "MIN", "COALESCE(from_category, '')"),
        in_entry(dialect, "MAX", "COALESCE(to_category, '')"),
        journeys_index(dialect),
    ));
    sql.bind(Bind::Text(scheme_code.to_string())).push(" AND at >= ").bind(Bind::Timestamp(start));
    if let Some(end) = end {
        sql.push(" AND at < ").bind(Bind::Timestamp(end));
    }
    for (bound, operator) in [(&codes.from, ">="), (&codes.until, "<")] {
        if let Some(code) = bound {
            sql.push(&format!(" AND customer_code {operator} ")).bind(Bind::Text(code.clone()));
        }
    }
    sql.push(" GROUP BY customer_code");
    if let Some(source) = source {
        sql.push(" HAVING SUM(CASE WHEN source = ")
            .bind(Bind::Text(source.as_str().to_string()))
            .push(" THEN 1 ELSE 0 END) > 0");
    }
    sql
}
