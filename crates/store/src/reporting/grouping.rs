//! The customers of a report as SQL (`Grouping`): who they are, now or as they stood
//! at a moment, which of them the filters keep, and their category on each axis; and
//! the statements that count them or sum their measures per cell (`Sums`), split over
//! two connections when there is a spare.

use std::collections::HashMap;

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
use crate::reporting::journeys::{in_entry, journeys_index};
use crate::reporting::scheme_counts::CellKey;

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

/// Where a report's measures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sales {
    /// The customers' sales totals up to this anchor, corrected by the transactions
    /// after it: for a moment at or after the anchor, which corrects by at most a day.
    Totals { anchor: NaiveDateTime },
    /// Every transaction up to the moment: for a moment before the anchor, where the
    /// correction would be as long as the time back to it (and costs more per row
    /// than a customer's own transactions read in order).
    Transactions,
}

/// A statement that sums measures per cell over the customers' transactions.
#[derive(Clone)]
pub(crate) struct Sums {
    /// `SELECT <axes>, <sums> FROM` and the tables, the transactions joined.
    head: Fragment,
    conditions: Vec<Fragment>,
    /// The customer id column, to split the work by.
    customer_id: &'static str,
}

impl Sums {
    /// The customers assigned in `scheme`, by category.
    pub(crate) fn classified(
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
    pub(crate) fn run_split(
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
pub(crate) fn sum_columns(dialect: Dialect, measures: &[Measure], moment: NaiveDateTime) -> Fragment {
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

pub(crate) fn cell(first: Option<String>, second: Option<String>, customers: i64) -> (CellKey, Tally) {
    ((first, second), Tally { customers, sums: Vec::new() })
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
pub(crate) struct GroupSums {
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) first_axis: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) second_axis: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(crate) spend_12m: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) orders_12m: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) lifetime_spend: i64,
}

impl GroupSums {
    pub(crate) fn sum_of(&self, measure: Measure) -> i64 {
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
pub(crate) struct Grouping {
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
    pub(crate) fn new(
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
    pub(crate) fn unclassified_only(mut self) -> Self {
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

    pub(crate) fn counts(self, conn: &mut DbConnection) -> Result<HashMap<CellKey, Tally>, AppError> {
        let rows: Vec<GroupCount> = self.statement(Fragment::new("COUNT(*) AS customers")).into_query().load(conn)?;
        Ok(rows.into_iter().map(|row| cell(row.first_axis, row.second_axis, row.customers)).collect())
    }

    /// The measures summed per cell, as of `moment`.
    pub(crate) fn into_sums(
        self,
        dialect: Dialect,
        measures: &[Measure],
        sales: Sales,
        moment: NaiveDateTime,
    ) -> Vec<Sums> {
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
