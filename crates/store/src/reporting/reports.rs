//! The queries behind the analysis reports: customers tallied by their category in
//! one or two schemes, now or as they stood at the end of a past day, and the moves
//! of a period (the report itself is `transitions`).
//!
//! Three ways to a tally, cheapest first:
//! - the distribution of all customers now reads the sharded counters (`counts`);
//! - the distribution of all customers as of a past day starts from those counters
//!   and undoes every move made since: a customer's category then is the `from` of
//!   its first move after that day, since history is an unbroken chain per customer;
//! - anything with filters, measures or a second scheme groups the customers in one
//!   statement (`grouping`), where each scheme's category is the current assignment
//!   or, as of a day, that same first move after it.
//!
//! Measures come from the per-customer sales totals corrected in the database by the
//! sales since their anchor; as of a day before the anchor, for all customers of one
//! scheme, they are turned back in the service (`past_standing`), which also pairs
//! two schemes as of a day.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::DbConnection;
use crate::domain::report::{Measure, Tally};
use crate::error::AppError;

use crate::archive::customer_filters::Filters;
use crate::archive::customer_search::resolve;
use crate::archive::sales_totals;
use crate::catalogue::schemes::SchemeRow;
use crate::prefix_upper_bound;
use crate::reporting::counts;
use crate::reporting::grouping::{cell, sum_columns, GroupSums, Grouping, Sales, Sums};
use crate::reporting::journeys::{self, journeys, CodeRange, Span};
use crate::reporting::past_standing;
use crate::reporting::scheme_counts::{category_or_none, rewound, CellKey};

/// Customers tallied by their categories on one or two axes. `as_of` is the first
/// instant after the day the report describes (`None`: now). Every customer of the
/// population lands in exactly one cell, so the cells add up to the population.
///
/// Measures are summed over the customers' transactions; with a `spare` connection
/// the two halves of the archive (by customer id) are summed at once, one on each.
pub fn tally(
    conn: &mut DbConnection,
    spare: Option<&mut DbConnection>,
    axes: &[&SchemeRow],
    filters: &Filters,
    measures: &[Measure],
    as_of: Option<NaiveDateTime>,
) -> Result<HashMap<CellKey, Tally>, AppError> {
    // The last instant of the day described, so that its own sales count.
    let moment = as_of.map_or_else(crate::db::now, |at| at - chrono::Duration::microseconds(1));
    // As of a past day, all customers of one scheme with measures: counted and summed
    // from one read of where each customer stood.
    if let (Some(at), [scheme], true, false) = (as_of, axes, filters.is_empty(), measures.is_empty()) {
        if past_standing::suits_measures(conn, moment)? {
            return Ok(with_every_measure(past_standing::by_category(conn, scheme, measures, at, moment)?, measures));
        }
    }
    let one_category =
        filters.categories.len() == 1 && Filters { categories: Vec::new(), ..filters.clone() }.is_empty();
    let mut cells = match (axes, as_of) {
        ([scheme], _) if filters.is_empty() => counted(conn, scheme, as_of)?,
        ([rows, cols], None) if filters.is_empty() => paired(conn, rows, cols)?,
        ([rows, cols], Some(at)) if filters.is_empty() && past_standing::dense(conn)? => {
            past_standing::paired(conn, rows, cols, at)?
        }
        ([scheme], None) if one_category => {
            let membership = resolve(conn, &filters.categories[0])?;
            within(conn, scheme, membership.scheme_id, &membership.code)?
        }
        _ => Grouping::new(conn, axes, filters, as_of)?.counts(conn)?,
    };
    if measures.is_empty() {
        return Ok(cells);
    }
    for (key, sums) in summed(conn, spare, axes, filters, measures, as_of, moment)? {
        add_sums(&mut cells, key, &sums, 1);
    }
    if let (Some(at), [scheme], true) = (as_of, axes, filters.is_empty()) {
        for (from, to, sums) in moved_back(conn, scheme, measures, at, moment)? {
            for (key, sign) in [(to, -1), (from, 1)] {
                let Some(key) = key else { continue };
                add_sums(&mut cells, (key, None), &sums, sign);
            }
        }
    }
    Ok(with_every_measure(cells, measures))
}

/// Adds `sign` × `sums` to the sums of a cell, which may have none yet.
fn add_sums(cells: &mut HashMap<CellKey, Tally>, key: CellKey, sums: &[i64], sign: i64) {
    let tally = cells.entry(key).or_insert_with(|| Tally::new(0));
    tally.sums.resize(sums.len(), 0);
    for (sum, add) in tally.sums.iter_mut().zip(sums) {
        *sum += sign * add;
    }
}

/// Every cell with a sum for each measure, 0 where nobody had sales.
fn with_every_measure(mut cells: HashMap<CellKey, Tally>, measures: &[Measure]) -> HashMap<CellKey, Tally> {
    for tally in cells.values_mut() {
        tally.sums.resize(measures.len(), 0);
    }
    cells
}

/// The measures of the report's customers per cell, as of `moment`. From the totals,
/// should the anchor move while the statements run, they run again, since totals and
/// corrections must agree on one anchor.
fn summed(
    conn: &mut DbConnection,
    mut spare: Option<&mut DbConnection>,
    axes: &[&SchemeRow],
    filters: &Filters,
    measures: &[Measure],
    as_of: Option<NaiveDateTime>,
    moment: NaiveDateTime,
) -> Result<HashMap<CellKey, Vec<i64>>, AppError> {
    let dialect = Dialect::of(conn);
    let mut anchor = sales_totals::anchor(conn)?;
    loop {
        let sales = if moment >= anchor { Sales::Totals { anchor } } else { Sales::Transactions };
        let plans = match axes {
            // All customers of one scheme: its assignments drive the join in category
            // order, so that nothing is sorted; the unclassified, if any, are read apart.
            // As of a past day, the customers who moved since are then moved back.
            [scheme] if filters.is_empty() => {
                let counted_now = counts::of_schemes(conn, scheme.id, None)?;
                let mut plans = Sums::classified(dialect, scheme, measures, sales, moment);
                if counted_now.population > counted_now.first.values().sum::<i64>() {
                    plans.extend(
                        Grouping::new(conn, axes, filters, None)?
                            .unclassified_only()
                            .into_sums(dialect, measures, sales, moment),
                    );
                }
                plans
            }
            _ => Grouping::new(conn, axes, filters, as_of)?.into_sums(dialect, measures, sales, moment),
        };
        let mut cells: HashMap<CellKey, Vec<i64>> = HashMap::new();
        for plan in plans {
            for (key, sums) in plan.run_split(conn, spare.as_deref_mut(), measures)? {
                let total = cells.entry(key).or_insert_with(|| vec![0; measures.len()]);
                for (sum, add) in total.iter_mut().zip(sums) {
                    *sum += add;
                }
            }
        }
        let now_at = sales_totals::anchor(conn)?;
        if sales == Sales::Transactions || now_at == anchor {
            return Ok(cells);
        }
        anchor = now_at;
    }
}

/// The measures (as of `moment`) of the customers who moved in `scheme` since `at`,
/// by where they stood then and where they stand now (`Some(None)`: unclassified; a
/// customer created since stood nowhere, `None`): what an `as_of` report moves back.
#[allow(clippy::type_complexity)]
fn moved_back(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    measures: &[Measure],
    at: NaiveDateTime,
    moment: NaiveDateTime,
) -> Result<Vec<(Option<Option<String>>, Option<Option<String>>, Vec<i64>)>, AppError> {
    let dialect = Dialect::of(conn);
    // `first_axis` is NULL for customers created since.
    let mut query = Fragment::new("SELECT CASE WHEN c.created_at >= ");
    query
        .bind(Bind::Timestamp(at))
        .push(" THEN NULL ELSE y.start_category END AS first_axis, y.end_category AS second_axis, ")
        .append(sum_columns(dialect, measures, moment))
        .push(" FROM (")
        .append(journeys(dialect, &scheme.code, at, None, None, &CodeRange::default()))
        .push(&format!(") y {} customers c ON c.code = y.customer_code JOIN transactions t ON t.customer_id = c.id AND t.occurred_at <= ", dialect.left_first_join()))
        .bind(Bind::Timestamp(moment))
        .push(" GROUP BY first_axis, second_axis");
    let rows: Vec<GroupSums> = query.into_query().load(conn)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let sums = measures.iter().map(|measure| row.sum_of(*measure)).collect();
            (row.first_axis.map(category_or_none), row.second_axis.map(category_or_none), sums)
        })
        .collect())
}

/// Two schemes against each other, from the pair counters: a customer without a
/// category in one of them is what the other's count leaves over.
fn paired(conn: &mut DbConnection, rows: &SchemeRow, cols: &SchemeRow) -> Result<HashMap<CellKey, Tally>, AppError> {
    let counted = counts::of_schemes(conn, rows.id, Some(cols.id))?;
    let mut row_rest = counted.first.clone();
    let mut col_rest = counted.second.clone();
    let mut rest = counted.population;
    let mut cells: HashMap<CellKey, Tally> = HashMap::new();
    for ((row, col), customers) in counted.pairs {
        *row_rest.entry(row.clone()).or_default() -= customers;
        *col_rest.entry(col.clone()).or_default() -= customers;
        rest -= customers;
        cells.extend([cell(Some(row), Some(col), customers)]);
    }
    for (row, customers) in row_rest.into_iter().filter(|(_, customers)| *customers != 0) {
        rest -= customers;
        cells.extend([cell(Some(row), None, customers)]);
    }
    for (col, customers) in col_rest.into_iter().filter(|(_, customers)| *customers != 0) {
        rest -= customers;
        cells.extend([cell(None, Some(col), customers)]);
    }
    cells.extend([cell(None, None, rest)]);
    Ok(cells)
}

/// One scheme's distribution among the customers of one category's subtree (of
/// `filter_scheme`), from the counters.
fn within(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    filter_scheme: i64,
    code: &str,
) -> Result<HashMap<CellKey, Tally>, AppError> {
    let upper = prefix_upper_bound(code);
    let inside = |other: &str| other >= code && other < upper.as_str();
    let mut cells: HashMap<CellKey, Tally> = HashMap::new();
    let population: i64;
    if filter_scheme == scheme.id {
        let counted = counts::of_schemes(conn, scheme.id, None)?;
        population = counted.first.iter().filter(|(other, _)| inside(other)).map(|(_, customers)| customers).sum();
        cells.extend(
            counted
                .first
                .into_iter()
                .filter(|(other, _)| inside(other))
                .map(|(other, customers)| cell(Some(other), None, customers)),
        );
    } else {
        let counted = counts::of_schemes(conn, scheme.id, Some(filter_scheme))?;
        population = counted.second.iter().filter(|(other, _)| inside(other)).map(|(_, customers)| customers).sum();
        for ((category, other), customers) in counted.pairs {
            if inside(&other) {
                cells.entry((Some(category), None)).or_insert_with(|| Tally::new(0)).customers += customers;
            }
        }
    }
    let classified: i64 = cells.values().map(|tally| tally.customers).sum();
    cells.extend([cell(None, None, population - classified)]);
    Ok(cells)
}

/// All customers of one scheme from the counters, rewound to `as_of` when given.
fn counted(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    as_of: Option<NaiveDateTime>,
) -> Result<HashMap<CellKey, Tally>, AppError> {
    let Some(at) = as_of else { return rewound(conn, scheme, None, &HashMap::new()) };
    let moved = journeys::moved(conn, None, &Span { scheme_code: &scheme.code, start: at, end: None, source: None })?;
    rewound(conn, scheme, Some(at), &moved)
}

/// The tallies of the report's rows, by category code, for `tree_tallies`.
pub fn by_first_axis(cells: &HashMap<CellKey, Tally>, measures: usize) -> (BTreeMap<String, Tally>, Tally) {
    let mut direct: BTreeMap<String, Tally> = BTreeMap::new();
    let mut unclassified = Tally::new(measures);
    for ((first, _), tally) in cells {
        match first {
            Some(code) => direct.entry(code.clone()).or_insert_with(|| Tally::new(measures)).add(tally),
            None => unclassified.add(tally),
        }
    }
    (direct, unclassified)
}
