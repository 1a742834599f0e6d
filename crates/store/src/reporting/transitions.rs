//! The moves of a period (升级/降级): the transitions report, which counts customers by
//! where they started and ended a period (or each move, or the net direction), and the
//! customers behind one of its cells.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use crate::db::schema::customers;
use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::DbConnection;
use crate::domain::history::{Direction, Source};
use crate::domain::report::Period;
use crate::error::AppError;

use crate::catalogue::categories::Ranks;
use crate::catalogue::schemes::SchemeRow;
use crate::reporting::journeys::{self, in_entry, journeys_index, Span};
use crate::reporting::scheme_counts::category_or_none;

/// How a transitions report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Each customer once: where it stood before the period against where it stood after.
    Net,
    /// Every move of the period.
    Moves,
}

/// One cell of a transitions matrix. `direction` is `None` for customers that ended
/// where they started (net basis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionCell {
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<Direction>,
    pub count: i64,
}

#[derive(QueryableByName)]
struct MoveCount {
    #[diesel(sql_type = Text)]
    from_category: String,
    #[diesel(sql_type = Text)]
    to_category: String,
    #[diesel(sql_type = Text)]
    direction: String,
    #[diesel(sql_type = BigInt)]
    moves: i64,
}

/// The net direction of a customer that went from `from` to `to` over a period,
/// by the ranks of today; none when it ended where it started.
fn net_direction(ranks: &Ranks, from: Option<&str>, to: Option<&str>) -> Option<Direction> {
    (from != to).then(|| ranks.direction(from, to))
}

/// The from → to cells of a period. With a `spare` connection, the net basis of a long
/// period shares its scan between the two.
pub fn transitions(
    conn: &mut DbConnection,
    spare: Option<&mut DbConnection>,
    scheme: &SchemeRow,
    period: Period,
    basis: Basis,
    source: Option<Source>,
) -> Result<Vec<TransitionCell>, AppError> {
    match basis {
        Basis::Net => {
            let ranks = crate::catalogue::categories::ranks(conn, scheme)?;
            let moved = journeys::moved(
                conn,
                spare,
                &Span { scheme_code: &scheme.code, start: period.start(), end: Some(period.end()), source },
            )?;
            let mut cells: BTreeMap<(Option<String>, Option<String>), i64> = BTreeMap::new();
            for ((start, end), customers) in moved {
                *cells.entry((category_or_none(start), category_or_none(end))).or_default() += customers;
            }
            Ok(cells
                .into_iter()
                .map(|((from, to), count)| TransitionCell {
                    direction: net_direction(&ranks, from.as_deref(), to.as_deref()),
                    from,
                    to,
                    count,
                })
                .collect())
        }
        Basis::Moves => {
            // The period's entries are one range of an index that holds all that is counted.
            let index = journeys::period_index(Dialect::of(conn));
            let mut query = Fragment::new(&format!(
                "SELECT COALESCE(from_category, '') AS from_category, COALESCE(to_category, '') AS to_category, direction, COUNT(*) AS moves \
                 FROM assignment_history{index} WHERE scheme_code = "
            ));
            query
                .bind(Bind::Text(scheme.code.clone()))
                .push(" AND at >= ")
                .bind(Bind::Timestamp(period.start()))
                .push(" AND at < ")
                .bind(Bind::Timestamp(period.end()));
            if let Some(source) = source {
                query.push(" AND source = ").bind(Bind::Text(source.as_str().to_string()));
            }
            query.push(" GROUP BY COALESCE(from_category, ''), COALESCE(to_category, ''), direction");
            let rows: Vec<MoveCount> = query.into_query().load(conn)?;
            rows.into_iter()
                .map(|row| {
                    let direction = Direction::try_from(row.direction).map_err(AppError::corrupt)?;
                    Ok(TransitionCell {
                        from: category_or_none(row.from_category),
                        to: category_or_none(row.to_category),
                        direction: Some(direction),
                        count: row.moves,
                    })
                })
                .collect()
        }
    }
}

/// Which customers of a transitions report to list: a cell, or part of the matrix.
#[derive(Debug, Clone)]
pub struct CellQuery {
    pub period: Period,
    pub basis: Basis,
    pub source: Option<Source>,
    /// `Some(None)`: from no category; `None`: from anywhere.
    pub from: Option<Option<String>>,
    pub to: Option<Option<String>>,
    pub direction: Option<Direction>,
    /// The last customer code of the previous page.
    pub after: Option<String>,
    pub limit: i64,
}

/// A customer of a transitions cell: on the net basis, its whole journey through the
/// period; on the moves basis, its last move that matches and how many matched.
#[derive(Debug, Clone)]
pub struct CellCustomer {
    pub code: String,
    /// `None` once the customer has been deleted.
    pub name: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<Direction>,
    pub moves: i64,
    pub last_moved_at: NaiveDateTime,
}

#[derive(QueryableByName)]
struct JourneyRow {
    #[diesel(sql_type = Text)]
    customer_code: String,
    #[diesel(sql_type = Text)]
    start_category: String,
    #[diesel(sql_type = Text)]
    end_category: String,
    #[diesel(sql_type = BigInt)]
    moves: i64,
    #[diesel(sql_type = Timestamp)]
    last_at: NaiveDateTime,
}

#[derive(QueryableByName)]
struct MatchingMoves {
    #[diesel(sql_type = Text)]
    customer_code: String,
    #[diesel(sql_type = BigInt)]
    moves: i64,
    #[diesel(sql_type = Timestamp)]
    last_at: NaiveDateTime,
    /// `direction from to` of the last matching move (`from`/`to` empty for none).
    #[diesel(sql_type = Text)]
    latest: String,
}

/// `column = ?`, or `column = ''` for no category (as journeys spell it).
fn category_condition(column: &str, category: &Option<String>) -> Fragment {
    let mut condition = Fragment::new(&format!("{column} = "));
    condition.bind(Bind::Text(category.clone().unwrap_or_default()));
    condition
}

/// The SQL rank of the category in `column` (journey spelling), `NULL` without one.
fn rank_of(ranks: &Ranks, column: &str) -> Fragment {
    // A scheme without ranks (unordered, or without categories) ranks nothing, and a
    // CASE needs at least one WHEN.
    if ranks.iter().next().is_none() {
        return Fragment::new("NULL");
    }
    let mut sql = Fragment::new(&format!("(CASE {column}"));
    for (code, rank) in ranks.iter() {
        sql.push(" WHEN ").bind(Bind::Text(code.to_string())).push(" THEN ").bind(Bind::BigInt(i64::from(rank)));
    }
    sql.push(" ELSE NULL END)");
    sql
}

/// The journeys of `net_direction` = `direction`, as SQL on the journey's columns.
fn net_direction_condition(ranks: &Ranks, direction: Direction, start: &str, end: &str) -> Fragment {
    let mut sql = Fragment::new(&format!("{start} <> {end} AND "));
    let both = format!("{start} <> '' AND {end} <> '' AND ");
    match direction {
        Direction::In => sql.push(&format!("{start} = ''")),
        Direction::Out => sql.push(&format!("{start} <> '' AND {end} = ''")),
        Direction::Up | Direction::Down => {
            let comparison = if direction == Direction::Up { " > " } else { " < " };
            sql.push(&both).append(rank_of(ranks, end)).push(comparison).append(rank_of(ranks, start))
        }
        Direction::Lateral => sql
            .push(&both)
            .push("(")
            .append(rank_of(ranks, start))
            .push(" IS NULL OR ")
            .append(rank_of(ranks, end))
            .push(" IS NULL OR ")
            .append(rank_of(ranks, start))
            .push(" = ")
            .append(rank_of(ranks, end))
            .push(")"),
    };
    sql
}

/// One page of the customers of a transitions cell, by customer code. Both shapes
/// group an index in customer order and stop at the page's end.
pub fn cell_customers(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    query: &CellQuery,
) -> Result<Vec<CellCustomer>, AppError> {
    let dialect = Dialect::of(conn);
    let ranks = crate::catalogue::categories::ranks(conn, scheme)?;
    let mut sql = Fragment::new("SELECT customer_code, COUNT(*) AS moves, MAX(at) AS last_at, ");
    let mut having: Vec<Fragment> = Vec::new();
    match query.basis {
        Basis::Net => {
            let (start, end) = (
                in_entry(dialect, "MIN", "COALESCE(from_category, '')"),
                in_entry(dialect, "MAX", "COALESCE(to_category, '')"),
            );
            sql.push(&format!("{start} AS start_category, {end} AS end_category"));
            if let Some(from) = &query.from {
                having.push(category_condition(&start, from));
            }
            if let Some(to) = &query.to {
                having.push(category_condition(&end, to));
            }
            if let Some(direction) = query.direction {
                having.push(net_direction_condition(&ranks, direction, &start, &end));
            }
            if let Some(source) = query.source {
                let mut sourced = Fragment::new("SUM(CASE WHEN source = ");
                sourced.bind(Bind::Text(source.as_str().to_string())).push(" THEN 1 ELSE 0 END) > 0");
                having.push(sourced);
            }
        }
        Basis::Moves => {
            sql.push(&format!(
                "{} AS latest",
                in_entry(
                    dialect,
                    "MAX",
                    "CONCAT(direction, ' ', COALESCE(from_category, ''), ' ', COALESCE(to_category, ''))"
                )
            ));
        }
    }
    sql.push(&format!(" FROM assignment_history{} WHERE scheme_code = ", journeys_index(dialect)))
        .bind(Bind::Text(scheme.code.clone()))
        .push(" AND at >= ")
        .bind(Bind::Timestamp(query.period.start()))
        .push(" AND at < ")
        .bind(Bind::Timestamp(query.period.end()));
    if query.basis == Basis::Moves {
        if let Some(source) = query.source {
            sql.push(" AND source = ").bind(Bind::Text(source.as_str().to_string()));
        }
        if let Some(from) = &query.from {
            sql.push(" AND ").append(category_condition("COALESCE(from_category, '')", from));
        }
        if let Some(to) = &query.to {
            sql.push(" AND ").append(category_condition("COALESCE(to_category, '')", to));
        }
        if let Some(direction) = query.direction {
            sql.push(" AND direction = ").bind(Bind::Text(direction.as_str().to_string()));
        }
    }
    if let Some(after) = &query.after {
        sql.push(" AND customer_code > ").bind(Bind::Text(after.clone()));
    }
    sql.push(" GROUP BY customer_code");
    for (index, condition) in having.into_iter().enumerate() {
        sql.push(if index == 0 { " HAVING " } else { " AND " }).append(condition);
    }
    sql.push(" ORDER BY customer_code LIMIT ").bind(Bind::BigInt(query.limit));
    let found: Vec<CellCustomer> = match query.basis {
        Basis::Net => sql
            .into_query()
            .load::<JourneyRow>(conn)?
            .into_iter()
            .map(|row| {
                let (from, to) = (category_or_none(row.start_category), category_or_none(row.end_category));
                CellCustomer {
                    direction: net_direction(&ranks, from.as_deref(), to.as_deref()),
                    name: None,
                    code: row.customer_code,
                    from,
                    to,
                    moves: row.moves,
                    last_moved_at: row.last_at,
                }
            })
            .collect(),
        Basis::Moves => sql
            .into_query()
            .load::<MatchingMoves>(conn)?
            .into_iter()
            .map(|row| {
                let mut parts = row.latest.split(' ');
                let (direction, from, to) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                let direction = Direction::try_from(direction.to_string()).map_err(AppError::corrupt)?;
                Ok(CellCustomer {
                    name: None,
                    code: row.customer_code,
                    from: category_or_none(from.to_string()),
                    to: category_or_none(to.to_string()),
                    direction: Some(direction),
                    moves: row.moves,
                    last_moved_at: row.last_at,
                })
            })
            .collect::<Result<_, AppError>>()?,
    };
    let codes: Vec<&str> = found.iter().map(|customer| customer.code.as_str()).collect();
    let names: HashMap<String, String> = customers::table
        .filter(customers::code.eq_any(&codes))
        .select((customers::code, customers::name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    Ok(found
        .into_iter()
        .map(|customer| CellCustomer { name: names.get(&customer.code).cloned(), ..customer })
        .collect())
}
