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
//!   statement, where each scheme's category is the current assignment or, as of a
//!   day, that same first move after it.
//!
//! Measures come from the per-customer sales totals corrected in the database by the
//! sales since their anchor; as of a day before the anchor, for all customers of one
//! scheme, they are turned back in the service (`past_standing`), which also pairs
//! two schemes as of a day.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::DbConnection;
use crate::domain::report::{Measure, Tally};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::archive::customer_filters::Filters;
use crate::archive::customer_search::{filter_scheme, resolve, resolve_attribute, row_state_conditions};
use crate::archive::sales_totals;
use crate::archive::transactions::metric_sum;
use crate::catalogue::schemes::SchemeRow;
use crate::domain::attribute::LIKE_ESCAPE;
use crate::domain::category::ClassificationVector;
use crate::domain::rule::TextMatch;
use crate::prefix_upper_bound;
use crate::reporting::counts;
use crate::reporting::journeys::{self, in_entry, journeys, journeys_index, CodeRange, Span};
use crate::reporting::past_standing;
use crate::reporting::scheme_counts::{category_or_none, rewound, CellKey};

/// Only categories have a history; the other fields of a customer are known as they are now.
fn ensure_historical(filters: &Filters) -> Result<(), AppError> {
    let now_only: Vec<&str> = [
        ("q", filters.text.is_some()),
        ("status", filters.status.is_some()),
        ("attr", !filters.attributes.is_empty()),
        ("missing", !filters.missing.is_empty()),
        ("dormant_days", filters.dormant_days.is_some()),
        ("classified", filters.classified.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    if now_only.is_empty() {
        return Ok(());
    }
    Err(AppError::validation(
        ErrorCode::FilterNotHistorical,
        format!(
            "{} cannot be combined with as_of: the archive keeps the history of categories only",
            now_only.join(", ")
        ),
        now_only.into_iter().map(|field| FieldError::new(field, "not available with as_of")).collect(),
    ))
}

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

/// Where a report's measures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sales {
    /// The customers' sales totals up to this anchor, corrected by the transactions
    /// after it: for a moment at or after the anchor, which corrects by at most a day.
    Totals { anchor: NaiveDateTime },
    /// Every transaction up to the moment: for a moment before the anchor, where the
    /// correction would be as long as the time back to it (and costs more per row
    /// than a customer's own transactions read in order).
    Transactions,
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

/// A statement that sums measures per cell over the customers' transactions.
#[derive(Clone)]
struct Sums {
    /// `SELECT <axes>, <sums> FROM` and the tables, the transactions joined.
    head: Fragment,
    conditions: Vec<Fragment>,
    /// The customer id column, to split the work by.
    customer_id: &'static str,
}

impl Sums {
    /// The customers assigned in `scheme`, by category.
    fn classified(
        dialect: Dialect,
        scheme: &SchemeRow,
        measures: &[Measure],
        sales: Sales,
        moment: NaiveDateTime,
    ) -> Vec<Self> {
        let mut in_scheme = Fragment::new("k.scheme_id = ");
        in_scheme.bind(Bind::BigInt(scheme.id));
        let mut head = Fragment::new("SELECT k.category_code AS first_axis, NULL AS second_axis, ");
        let Sales::Totals { anchor } = sales else {
            head.append(sum_columns(dialect, measures, moment))
                .push(" FROM customer_categories k JOIN transactions t ON t.customer_id = k.customer_id AND t.occurred_at <= ")
                .bind(Bind::Timestamp(moment));
            return vec![Self { head, conditions: vec![in_scheme], customer_id: "k.customer_id" }];
        };
        let mut corrections = head.clone();
        head.append(sales_totals::totals_columns(dialect, measures))
            .push(" FROM customer_categories k JOIN sales_totals s ON s.customer_id = k.customer_id");
        let (columns, range) = sales_totals::correction(dialect, measures, anchor, moment);
        corrections
            .append(columns)
            .push(&format!(
                " FROM transactions t {} customer_categories k ON k.customer_id = t.customer_id AND k.scheme_id = ",
                dialect.left_first_join()
            ))
            .bind(Bind::BigInt(scheme.id));
        vec![
            Self { head, conditions: vec![in_scheme], customer_id: "k.customer_id" },
            Self { head: corrections, conditions: vec![range], customer_id: "t.customer_id" },
        ]
    }

    fn with_ids(mut self, from: Option<i64>, until: Option<i64>) -> Self {
        for (bound, operator) in [(from, ">="), (until, "<")] {
            if let Some(bound) = bound {
                let mut condition = Fragment::new(&format!("{} {operator} ", self.customer_id));
                condition.bind(Bind::BigInt(bound));
                self.conditions.push(condition);
            }
        }
        self
    }

    fn run(self, conn: &mut DbConnection, measures: &[Measure]) -> Result<HashMap<CellKey, Vec<i64>>, AppError> {
        let mut query = self.head;
        for (index, condition) in self.conditions.into_iter().enumerate() {
            query.push(if index == 0 { " WHERE " } else { " AND " }).append(condition);
        }
        query.push(" GROUP BY first_axis, second_axis");
        let rows: Vec<GroupSums> = query.into_query().load(conn)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    (row.first_axis.clone(), row.second_axis.clone()),
                    measures.iter().map(|measure| row.sum_of(*measure)).collect(),
                )
            })
            .collect())
    }

    /// With a `spare` connection, the lower and the upper half of the customers (by id)
    /// at once, one on each.
    fn run_split(
        self,
        conn: &mut DbConnection,
        spare: Option<&mut DbConnection>,
        measures: &[Measure],
    ) -> Result<HashMap<CellKey, Vec<i64>>, AppError> {
        let Some(spare) = spare else { return self.run(conn, measures) };
        let middle = crate::middle_customer_id(conn)?;
        let (lower, upper) = (self.clone().with_ids(None, Some(middle)), self.with_ids(Some(middle), None));
        let (mut sums, upper) = crate::side_by_side(
            conn,
            Some(spare),
            |conn| lower.run(conn, measures),
            |spare| upper.run(spare, measures),
        )?;
        for (key, more) in upper {
            let total = sums.entry(key).or_insert_with(|| vec![0; measures.len()]);
            for (sum, add) in total.iter_mut().zip(more) {
                *sum += add;
            }
        }
        Ok(sums)
    }
}

/// The measures asked for, each summed over `transactions t` (the others 0): each
/// costs a comparison per transaction.
fn sum_columns(dialect: Dialect, measures: &[Measure], moment: NaiveDateTime) -> Fragment {
    let mut columns = Fragment::default();
    for (index, measure) in Measure::ALL.into_iter().enumerate() {
        columns.push(if index == 0 { "" } else { ", " });
        if measures.contains(&measure) {
            columns.append(metric_sum(dialect, measure, moment));
        } else {
            columns.push(&format!("CAST(0 AS {}) AS {}", dialect.integer(), measure.as_str()));
        }
    }
    columns
}

fn cell(first: Option<String>, second: Option<String>, customers: i64) -> (CellKey, Tally) {
    ((first, second), Tally { customers, sums: Vec::new() })
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

#[derive(QueryableByName)]
struct GroupCount {
    #[diesel(sql_type = Nullable<Text>)]
    first_axis: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    second_axis: Option<String>,
    #[diesel(sql_type = BigInt)]
    customers: i64,
}

#[derive(QueryableByName)]
struct GroupSums {
    #[diesel(sql_type = Nullable<Text>)]
    first_axis: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    second_axis: Option<String>,
    #[diesel(sql_type = BigInt)]
    spend_12m: i64,
    #[diesel(sql_type = BigInt)]
    orders_12m: i64,
    #[diesel(sql_type = BigInt)]
    lifetime_spend: i64,
}

impl GroupSums {
    fn sum_of(&self, measure: Measure) -> i64 {
        match measure {
            Measure::Spend12m => self.spend_12m,
            Measure::Orders12m => self.orders_12m,
            Measure::LifetimeSpend => self.lifetime_spend,
        }
    }
}

/// The conditions of the filters on the customer row `p`: status, text and attributes.
pub(crate) fn row_conditions(conn: &mut DbConnection, filters: &Filters) -> Result<Vec<Fragment>, AppError> {
    let mut conditions = Vec::new();
    if let Some(status) = filters.status {
        let mut condition = Fragment::new("p.status = ");
        condition.bind(Bind::Text(status.as_str().to_string()));
        conditions.push(condition);
    }
    if let Some(text) = &filters.text {
        let pattern = TextMatch::Anywhere.like_pattern(text, LIKE_ESCAPE);
        let mut condition = Fragment::new("(");
        for (index, column) in ["p.code", "p.name", "COALESCE(p.short_name, '')"].into_iter().enumerate() {
            condition
                .push(if index == 0 { "" } else { " OR " })
                .push(&format!("LOWER({column}) LIKE "))
                .bind(Bind::Text(pattern.clone()))
                .push(&format!(" ESCAPE '{LIKE_ESCAPE}'"));
        }
        condition.push(")");
        conditions.push(condition);
    }
    for filter in &filters.attributes {
        conditions.push(resolve_attribute(conn, filter)?.condition(Some("p.id")));
    }
    conditions.extend(row_state_conditions(conn, filters, "p")?);
    Ok(conditions)
}

/// Joins that give each customer `p` its category in a scheme, now or as of a moment.
struct Categories {
    joins: Fragment,
    as_of: Option<NaiveDateTime>,
    dialect: Dialect,
    next_alias: usize,
}

impl Categories {
    /// Joins one scheme and returns the SQL expression of the customer's category there.
    fn of(&mut self, scheme: &SchemeRow) -> String {
        let alias = self.next_alias;
        self.next_alias += 1;
        self.joins
            .push(&format!(
                " LEFT JOIN customer_categories k{alias} ON k{alias}.customer_id = p.id AND k{alias}.scheme_id = "
            ))
            .bind(Bind::BigInt(scheme.id));
        match self.as_of {
            None => format!("k{alias}.category_code"),
            Some(at) => {
                // Where the customer stood then is where its first move since started.
                let dialect = self.dialect;
                self.joins
                    .push(&format!(
                        " LEFT JOIN (SELECT customer_code, {} AS from_category FROM assignment_history{} WHERE scheme_code = ",
                        in_entry(dialect, "MIN", "COALESCE(from_category, '')"),
                        journeys_index(dialect)
                    ))
                    .bind(Bind::Text(scheme.code.clone()))
                    .push(" AND at >= ")
                    .bind(Bind::Timestamp(at))
                    .push(&format!(" GROUP BY customer_code) h{alias} ON h{alias}.customer_code = p.code"));
                format!("(CASE WHEN h{alias}.customer_code IS NULL THEN k{alias}.category_code ELSE NULLIF(h{alias}.from_category, '') END)")
            }
        }
    }
}

/// The customers of a report as SQL: who they are (`from`: the population `p` with
/// the joins that give their categories), which of them count (`conditions`), and
/// their category on each axis (`first_axis`, `second_axis`).
struct Grouping {
    /// The table or subquery that yields one row per customer, the joins that give
    /// their categories or row, and the customer id column.
    population: Fragment,
    joins: Fragment,
    id: &'static str,
    conditions: Vec<Fragment>,
    first_axis: String,
    second_axis: String,
}

impl Grouping {
    fn new(
        conn: &mut DbConnection,
        axes: &[&SchemeRow],
        filters: &Filters,
        as_of: Option<NaiveDateTime>,
    ) -> Result<Self, AppError> {
        if as_of.is_none() && !filters.categories.is_empty() {
            return Self::of_members(conn, axes, filters);
        }
        let dialect = Dialect::of(conn);
        let mut population = Fragment::default();
        match as_of {
            None => population.push("customers p"),
            Some(at) => {
                ensure_historical(filters)?;
                population
                    .push("(SELECT id, code FROM customers WHERE created_at < ")
                    .bind(Bind::Timestamp(at))
                    .push(" UNION ALL SELECT NULL AS id, customer_code AS code FROM deleted_customers WHERE created_at < ")
                    .bind(Bind::Timestamp(at))
                    .push(" AND deleted_at >= ")
                    .bind(Bind::Timestamp(at))
                    .push(") p")
            }
        };
        let mut categories = Categories { joins: Fragment::default(), as_of, dialect, next_alias: 0 };
        let first_axis = categories.of(axes[0]);
        let second_axis = axes.get(1).map_or_else(|| "NULL".to_string(), |scheme| categories.of(scheme));

        let mut conditions: Vec<Fragment> = Vec::new();
        for filter in &filters.categories {
            let membership = resolve(conn, filter)?;
            let scheme = crate::catalogue::schemes::get(conn, &filter.scheme)?;
            debug_assert_eq!(scheme.id, membership.scheme_id);
            let category = categories.of(&scheme);
            let mut condition = Fragment::new(&format!("{category} >= "));
            condition
                .bind(Bind::Text(membership.code.clone()))
                .push(&format!(" AND {category} < "))
                .bind(Bind::Text(prefix_upper_bound(&membership.code)));
            conditions.push(condition);
        }
        for scheme_code in &filters.unclassified {
            let scheme = filter_scheme(conn, scheme_code, "unclassified")?;
            conditions.push(Fragment::new(&format!("{} IS NULL", categories.of(&scheme))));
        }
        conditions.extend(row_conditions(conn, filters)?);
        Ok(Self { population, joins: categories.joins, id: "p.id", conditions, first_axis, second_axis })
    }

    /// The customers in the subtree of the first category filter, read from that
    /// category's member index: each entry carries the customer's category in every
    /// scheme (its classification vector), so the axes and the other category filters
    /// are read off the entry instead of looked up per customer. The customer row is
    /// joined only for the filters on it.
    fn of_members(conn: &mut DbConnection, axes: &[&SchemeRow], filters: &Filters) -> Result<Self, AppError> {
        let mut conditions: Vec<Fragment> = Vec::new();
        for (index, filter) in filters.categories.iter().enumerate() {
            let membership = resolve(conn, filter)?;
            let condition = if index == 0 {
                let mut driver = Fragment::new("m.scheme_id = ");
                driver
                    .bind(Bind::BigInt(membership.scheme_id))
                    .push(" AND m.category_code = ")
                    .bind(Bind::Text(membership.code));
                driver
            } else {
                let mut within = Fragment::new("INSTR(m.classification_vector, ");
                within
                    .bind(Bind::Text(ClassificationVector::subtree_needle(membership.scheme_id, &membership.code)))
                    .push(") > 0");
                within
            };
            conditions.push(condition);
        }
        for scheme_code in &filters.unclassified {
            let scheme = filter_scheme(conn, scheme_code, "unclassified")?;
            let mut none = Fragment::new("INSTR(m.classification_vector, ");
            none.bind(Bind::Text(ClassificationVector::scheme_needle(scheme.id))).push(") = 0");
            conditions.push(none);
        }
        let on_row = row_conditions(conn, filters)?;
        let joins = Fragment::new(if on_row.is_empty() { "" } else { " JOIN customers p ON p.id = m.customer_id" });
        conditions.extend(on_row);
        let category_in = |scheme: &SchemeRow| {
            // The code after `|<scheme id>:` up to the next `|`; NULL without one.
            let needle = ClassificationVector::scheme_needle(scheme.id);
            let rest = format!(
                "SUBSTR(m.classification_vector, INSTR(m.classification_vector, '{needle}') + {})",
                needle.len()
            );
            format!("(CASE WHEN INSTR(m.classification_vector, '{needle}') > 0 THEN SUBSTR({rest}, 1, INSTR({rest}, '|') - 1) END)")
        };
        let first_axis = category_in(axes[0]);
        let second_axis = axes.get(1).map_or_else(|| "NULL".to_string(), |scheme| category_in(scheme));
        Ok(Self {
            population: Fragment::new("category_members m"),
            joins,
            id: "m.customer_id",
            conditions,
            first_axis,
            second_axis,
        })
    }

    /// The ids of the customers that count, in no order.
    fn ids(self, conn: &mut DbConnection) -> Result<Vec<i64>, AppError> {
        let mut query = Fragment::new(&format!("SELECT {} AS id FROM ", self.id));
        query.append(self.population).append(self.joins);
        for (index, condition) in self.conditions.into_iter().enumerate() {
            query.push(if index == 0 { " WHERE " } else { " AND " }).append(condition);
        }
        Ok(query.into_query().load::<CustomerId>(conn)?.into_iter().map(|row| row.id).collect())
    }

    /// Only the customers without a category on the first axis.
    fn unclassified_only(mut self) -> Self {
        self.conditions.push(Fragment::new(&format!("{} IS NULL", self.first_axis)));
        self
    }

    /// `SELECT <axes>, <columns> FROM … WHERE … GROUP BY <axes>`.
    fn statement(self, columns: Fragment) -> Fragment {
        let mut query =
            Fragment::new(&format!("SELECT {} AS first_axis, {} AS second_axis, ", self.first_axis, self.second_axis));
        query.append(columns).push(" FROM ").append(self.population).append(self.joins);
        for (index, condition) in self.conditions.into_iter().enumerate() {
            query.push(if index == 0 { " WHERE " } else { " AND " }).append(condition);
        }
        query.push(" GROUP BY first_axis, second_axis");
        query
    }

    fn counts(self, conn: &mut DbConnection) -> Result<HashMap<CellKey, Tally>, AppError> {
        let rows: Vec<GroupCount> = self.statement(Fragment::new("COUNT(*) AS customers")).into_query().load(conn)?;
        Ok(rows.into_iter().map(|row| cell(row.first_axis, row.second_axis, row.customers)).collect())
    }

    /// The measures summed per cell, as of `moment`.
    fn into_sums(self, dialect: Dialect, measures: &[Measure], sales: Sales, moment: NaiveDateTime) -> Vec<Sums> {
        let mut head =
            Fragment::new(&format!("SELECT {} AS first_axis, {} AS second_axis, ", self.first_axis, self.second_axis));
        let Sales::Totals { anchor } = sales else {
            // A customer without transactions adds nothing.
            head.append(sum_columns(dialect, measures, moment))
                .push(" FROM ")
                .append(self.population)
                .append(self.joins)
                .push(&format!(" JOIN transactions t ON t.customer_id = {} AND t.occurred_at <= ", self.id))
                .bind(Bind::Timestamp(moment));
            return vec![Sums { head, conditions: self.conditions, customer_id: self.id }];
        };
        let mut corrections = head.clone();
        head.append(sales_totals::totals_columns(dialect, measures))
            .push(" FROM ")
            .append(self.population.clone())
            .append(self.joins.clone())
            .push(&format!(" JOIN sales_totals s ON s.customer_id = {}", self.id));
        // The transactions after the anchor drive the join: they are a day's at most.
        let (columns, range) = sales_totals::correction(dialect, measures, anchor, moment);
        corrections
            .append(columns)
            .push(&format!(" FROM transactions t {} ", dialect.left_first_join()))
            .append(self.population)
            .push(&format!(" ON {} = t.customer_id", self.id))
            .append(self.joins);
        let mut corrected = self.conditions.clone();
        corrected.push(range);
        vec![
            Sums { head, conditions: self.conditions, customer_id: self.id },
            Sums { head: corrections, conditions: corrected, customer_id: "t.customer_id" },
        ]
    }
}

#[derive(QueryableByName)]
struct CustomerId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The ids of the customers the filters select now (a restricted key's among them).
pub(crate) fn matching_ids(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    filters: &Filters,
) -> Result<Vec<i64>, AppError> {
    Grouping::new(conn, &[scheme], filters, None)?.ids(conn)
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
