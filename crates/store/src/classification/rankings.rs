//! Relative fields, set-based. A run reads each population's values once, in a few
//! statements of 100,000 customers (every metric a spread of it needs in one column
//! each), and answers every question its rules ask of a spread in one pass over the
//! sorted values (`domain::ranking::answer`); a customer's standing among a population
//! is one statement of counts. Metrics come from the sales totals where the moment is
//! at or after their anchor, so a ranking reads one row per customer, not every
//! transaction.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable};

use crate::db::schema::{customers, schemes};
use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::{transaction, DbConnection};
use crate::domain::attribute::ValueType;
use crate::domain::ranking::{self, Answer, Question, Spread};
use crate::domain::report::Measure;
use crate::domain::restriction::Restriction;
use crate::domain::rule::{Condition, Field, Kind, Metric, Population, Scalar};
use crate::domain::sales::Money;
use crate::error::AppError;

use crate::archive::sales_totals;
use crate::archive::transactions::metric_columns;
use crate::catalogue::rule_sql::{attribute_value, days_since};
use crate::catalogue::rules::ActiveRule;

/// Where the population's metrics come from.
#[derive(Clone, Copy)]
enum Sales {
    /// The sales totals, corrected by the transactions after their anchor.
    Totals { anchor: NaiveDateTime },
    /// The transactions themselves: for a moment before the anchor.
    Transactions,
}

/// The active customers of a population with their metrics as of a moment.
struct Populace<'a> {
    dialect: Dialect,
    as_of: NaiveDateTime,
    sales: Sales,
    /// The subtree the population is narrowed to, with its scheme's id.
    subtree: Option<(i64, &'a str)>,
    /// A restricted key's population is the customers it may see.
    restriction: Option<&'a Restriction>,
}

impl Populace<'_> {
    /// A metric of customer `c`, as the run's batch statement computes it.
    fn metric(&self, metric: Metric) -> Fragment {
        let last_order = || match self.sales {
            Sales::Totals { .. } => Fragment::new("COALESCE(x.last_order_at, s.last_order_at)"),
            Sales::Transactions => Fragment::new("m.last_order_at"),
        };
        match (self.sales, metric) {
            (_, Metric::DaysSinceLastOrder) => days_since(self.dialect, self.as_of, last_order()),
            (_, Metric::LastOrderAt) => last_order(),
            (Sales::Totals { .. }, Metric::Spend12m) => {
                Fragment::new("(COALESCE(s.spend_cents - s.earlier_spend_cents, 0) + COALESCE(x.spend_12m, 0))")
            }
            (Sales::Totals { .. }, Metric::Orders12m) => {
                Fragment::new("(COALESCE(s.orders - s.earlier_orders, 0) + COALESCE(x.orders_12m, 0))")
            }
            (Sales::Totals { .. }, Metric::LifetimeSpend) => {
                Fragment::new("(COALESCE(s.spend_cents, 0) + COALESCE(x.lifetime_spend, 0))")
            }
            (Sales::Transactions, Metric::Spend12m) => Fragment::new("COALESCE(m.spend_12m, 0)"),
            (Sales::Transactions, Metric::Orders12m) => Fragment::new("COALESCE(m.orders_12m, 0)"),
            (Sales::Transactions, Metric::LifetimeSpend) => Fragment::new("COALESCE(m.lifetime_spend, 0)"),
        }
    }

    /// `FROM` the population's customers `c` (those with ids in `ids`, when given),
    /// with their sales when `with_sales`, to the `WHERE` that keeps the active ones.
    fn rows(&self, with_sales: bool, ids: Option<(i64, i64)>) -> Fragment {
        let within =
            |column: &str| ids.map(|(low, high)| format!(" AND {column} BETWEEN {low} AND {high}")).unwrap_or_default();
        let mut rows = Fragment::new(" FROM customers c");
        if let Some((scheme_id, category)) = self.subtree {
            rows.push(&format!(" JOIN customer_categories p ON p.customer_id = c.id AND p.scheme_id = {scheme_id} AND p.category_code >= "))
                .bind(Bind::Text(category.to_string()))
                .push(" AND p.category_code < ")
                .bind(Bind::Text(crate::prefix_upper_bound(category)));
        }
        if with_sales {
            match self.sales {
                Sales::Totals { anchor } => {
                    let (columns, range) = sales_totals::correction(self.dialect, &Measure::ALL, anchor, self.as_of);
                    rows.push(" LEFT JOIN sales_totals s ON s.customer_id = c.id LEFT JOIN (SELECT t.customer_id, ")
                        .append(columns)
                        .push(", MAX(CASE WHEN t.amount_cents > 0 AND t.occurred_at > ")
                        .bind(Bind::Timestamp(anchor))
                        .push(" AND t.occurred_at <= ")
                        .bind(Bind::Timestamp(self.as_of))
                        .push(" THEN t.occurred_at END) AS last_order_at FROM transactions t WHERE ")
                        .append(range)
                        .push(&within("t.customer_id"))
                        .push(" GROUP BY t.customer_id) x ON x.customer_id = c.id");
                }
                Sales::Transactions => {
                    rows.push(" LEFT JOIN (SELECT t.customer_id, ")
                        .append(metric_columns(self.dialect, self.as_of))
                        .push(" FROM transactions t WHERE t.occurred_at <= ")
                        .bind(Bind::Timestamp(self.as_of))
                        .push(&within("t.customer_id"))
                        .push(" GROUP BY t.customer_id) m ON m.customer_id = c.id");
                }
            }
        }
        rows.push(" WHERE c.status = 'active'").push(&within("c.id"));
        if let Some(restriction) = self.restriction {
            rows.push(" AND ").append(crate::access::visibility::condition(restriction, "c.id"));
        }
        rows
    }
}

/// Customers per statement that reads a population's values: bounds what the database
/// client buffers.
const IDS_PER_READ: i64 = 100_000;

/// A population's values of each ranked metric (in the order of `RANKED_METRICS`): of
/// all its customers, and of those with orders.
type PopulationValues = [(Vec<i64>, Vec<i64>); 4];

/// One customer's metrics, as a population read gives them.
#[derive(QueryableByName)]
struct MetricValues {
    #[diesel(sql_type = BigInt)]
    spend_12m: i64,
    #[diesel(sql_type = BigInt)]
    orders_12m: i64,
    #[diesel(sql_type = BigInt)]
    lifetime_spend: i64,
    /// `None` for a customer without orders.
    #[diesel(sql_type = Nullable<BigInt>)]
    days_since_last_order: Option<i64>,
}

#[derive(QueryableByName)]
struct AttributeValue {
    #[diesel(sql_type = Nullable<Double>)]
    v: Option<f64>,
}

/// The answers over a spread of whole values (cents, counts, days), in the field's type.
fn answer_whole(ascending: &[i64], kind: Kind, questions: &[&Question]) -> Vec<Answer> {
    let typed =
        |value: i64| if kind == Kind::Money { Scalar::Money(Money::from_cents(value)) } else { Scalar::Integer(value) };
    ranking::answer(ascending, |v| v.max(0) as f64, questions)
        .into_iter()
        .map(|found| found.map(|(low, high)| (typed(low), typed(high))))
        .collect()
}

fn answer_decimal(ascending: &[f64], questions: &[&Question]) -> Vec<Answer> {
    ranking::answer(ascending, |v| v.max(0.0), questions)
        .into_iter()
        .map(|found| found.map(|(low, high)| (Scalar::Decimal(low), Scalar::Decimal(high))))
        .collect()
}

impl Populace<'_> {
    /// The metrics of the population's customers: `(all, with orders only)` for each
    /// ranked metric, in the order of [`RANKED_METRICS`], sorted; only those `wanted`
    /// by some spread are kept, 8 bytes a customer each.
    fn metric_values(&self, conn: &mut DbConnection, wanted: &[(Metric, bool)]) -> Result<PopulationValues, AppError> {
        let keep: Vec<(bool, bool)> = RANKED_METRICS
            .iter()
            .map(|metric| (wanted.contains(&(*metric, false)), wanted.contains(&(*metric, true))))
            .collect();
        let mut values: PopulationValues = Default::default();
        for (low, high) in crate::customer_id_ranges(conn, IDS_PER_READ)? {
            let mut statement = Fragment::new("SELECT ");
            for (index, metric) in RANKED_METRICS.into_iter().enumerate() {
                statement
                    .push(&format!("{}CAST(", if index == 0 { "" } else { ", " }))
                    .append(self.metric(metric))
                    .push(&format!(" AS {}) AS {}", self.dialect.integer(), metric.name()));
            }
            statement.append(self.rows(true, Some((low, high))));
            for row in statement.into_query().load::<MetricValues>(conn)? {
                let ordered = row.days_since_last_order.is_some();
                let row_values =
                    [Some(row.spend_12m), Some(row.orders_12m), Some(row.lifetime_spend), row.days_since_last_order];
                for (((all, with_orders), value), (keep_all, keep_ordered)) in
                    values.iter_mut().zip(row_values).zip(&keep)
                {
                    if let Some(value) = value {
                        if *keep_all {
                            all.push(value);
                        }
                        if *keep_ordered && ordered {
                            with_orders.push(value);
                        }
                    }
                }
            }
        }
        for (all, with_orders) in &mut values {
            all.sort_unstable();
            with_orders.sort_unstable();
        }
        Ok(values)
    }

    /// The values of a numeric attribute over the population, sorted.
    fn attribute_values(
        &self,
        conn: &mut DbConnection,
        key: &str,
        value_type: ValueType,
    ) -> Result<Vec<f64>, AppError> {
        let mut values = Vec::new();
        for (low, high) in crate::customer_id_ranges(conn, IDS_PER_READ)? {
            let mut statement = Fragment::new("SELECT CAST(");
            statement
                .append(attribute_value(key, value_type))
                .push(&format!(" AS {}) AS v", self.dialect.double()))
                .append(self.rows(false, Some((low, high))));
            values.extend(statement.into_query().load::<AttributeValue>(conn)?.into_iter().filter_map(|row| row.v));
        }
        values.sort_unstable_by(f64::total_cmp);
        Ok(values)
    }
}

/// Where a moment's metrics come from, and the anchor they were read at.
fn sales_as_of(conn: &mut DbConnection, as_of: NaiveDateTime) -> Result<Sales, AppError> {
    let anchor = sales_totals::anchor(conn)?;
    Ok(if as_of >= anchor { Sales::Totals { anchor } } else { Sales::Transactions })
}

/// The rules' conditions with their relative fields resolved against the whole
/// population as of `as_of`: each population's values read once, all in one
/// transaction, so that every answer sees the same sales and the same anchor.
pub fn resolve(
    conn: &mut DbConnection,
    rules: &[ActiveRule],
    scheme_ids: &HashMap<String, i64>,
    as_of: NaiveDateTime,
) -> Result<Vec<Condition>, AppError> {
    if !rules.iter().any(|rule| ranking::is_relative(&rule.condition)) {
        return Ok(rules.iter().map(|rule| rule.condition.clone()).collect());
    }
    let asked: Vec<Vec<(Spread, Question)>> =
        rules.iter().map(|rule| ranking::questions(&rule.condition, rule.population.as_ref())).collect();
    let mut spreads: Vec<(&Spread, Vec<&Question>)> = Vec::new();
    for (spread, question) in asked.iter().flatten() {
        match spreads.iter_mut().find(|(known, _)| *known == spread) {
            Some((_, questions)) if questions.contains(&question) => {}
            Some((_, questions)) => questions.push(question),
            None => spreads.push((spread, vec![question])),
        }
    }
    let started = std::time::Instant::now();
    let answers_by_spread: Vec<Vec<Answer>> = transaction(conn, |conn| {
        let (dialect, sales) = (Dialect::of(conn), sales_as_of(conn, as_of)?);
        // The metrics of each population are read once, for all its spreads.
        let mut metrics_of: Vec<(Option<&Population>, PopulationValues)> = Vec::new();
        let mut answered = Vec::new();
        for (spread, questions) in &spreads {
            let subtree = spread
                .population
                .as_ref()
                .map(|p| (scheme_ids.get(&p.scheme).copied().unwrap_or(-1), p.category.as_str()));
            let populace = Populace { dialect, as_of, sales, subtree, restriction: None };
            let kind = spread.field.kind();
            let answers = match &spread.field {
                Field::Metric(metric) => {
                    let index = RANKED_METRICS
                        .iter()
                        .position(|ranked| ranked == metric)
                        .ok_or_else(|| AppError::internal("a relative field ranks a metric that has no order"))?;
                    let known =
                        match metrics_of.iter().position(|(population, _)| *population == spread.population.as_ref()) {
                            Some(known) => known,
                            None => {
                                let wanted: Vec<(Metric, bool)> = spreads
                                    .iter()
                                    .filter(|(other, _)| other.population == spread.population)
                                    .filter_map(|(other, _)| match other.field {
                                        Field::Metric(metric) => Some((metric, other.with_orders_only)),
                                        _ => None,
                                    })
                                    .collect();
                                metrics_of.push((spread.population.as_ref(), populace.metric_values(conn, &wanted)?));
                                metrics_of.len() - 1
                            }
                        };
                    let (all, with_orders) = &metrics_of[known].1[index];
                    answer_whole(if spread.with_orders_only { with_orders } else { all }, kind, questions)
                }
                Field::Attribute { key, value_type } => {
                    answer_decimal(&populace.attribute_values(conn, key, *value_type)?, questions)
                }
                _ => vec![None; questions.len()],
            };
            answered.push(answers);
        }
        Ok(answered)
    })?;
    log::info!(
        "ranked {} spreads for {} questions in {:.1} s",
        spreads.len(),
        spreads.iter().map(|(_, questions)| questions.len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    Ok(rules
        .iter()
        .zip(&asked)
        .map(|(rule, asked)| {
            let mut answers = asked.iter().map(|(spread, question)| {
                let index = spreads.iter().position(|(known, _)| *known == spread)?;
                let asked_as = spreads[index].1.iter().position(|known| *known == question)?;
                answers_by_spread.get(index)?.get(asked_as)?.clone()
            });
            ranking::resolve(&rule.condition, rule.population.as_ref(), &mut answers)
        })
        .collect())
}

/// A customer's metric values, to rank.
pub struct Values {
    pub spend_12m: i64,
    pub orders_12m: i64,
    pub lifetime_spend: i64,
    pub days_since_last_order: Option<i64>,
}

/// Where a customer stands among a population as of a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Standings {
    /// Whether the customer belongs to the population (active, in the subtree): a
    /// customer outside has no standing.
    pub member: bool,
    /// Recency, frequency and monetary scores 1–5.
    pub rfm: [i64; 3],
    /// Of spend_12m, orders_12m, lifetime_spend and days_since_last_order, in that
    /// order: `None` without a value (or, for a share, without a positive total).
    pub percentiles: [Option<f64>; 4],
    pub cumulative_shares: [Option<f64>; 4],
}

/// The metrics a standing ranks, in the order of [`Standings`].
pub const RANKED_METRICS: [Metric; 4] =
    [Metric::Spend12m, Metric::Orders12m, Metric::LifetimeSpend, Metric::DaysSinceLastOrder];

/// The population's counts a standing is computed from; per ranked metric its
/// customers with a value, those below the customer's, and the positive values from
/// the customer's upwards and in all.
#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    member: i64,
    #[diesel(sql_type = BigInt)]
    ordered: i64,
    #[diesel(sql_type = BigInt)]
    recency_above: i64,
    #[diesel(sql_type = BigInt)]
    frequency_below: i64,
    #[diesel(sql_type = BigInt)]
    monetary_below: i64,
    #[diesel(sql_type = BigInt)]
    ranked_0: i64,
    #[diesel(sql_type = BigInt)]
    below_0: i64,
    #[diesel(sql_type = BigInt)]
    held_0: i64,
    #[diesel(sql_type = BigInt)]
    total_0: i64,
    #[diesel(sql_type = BigInt)]
    ranked_1: i64,
    #[diesel(sql_type = BigInt)]
    below_1: i64,
    #[diesel(sql_type = BigInt)]
    held_1: i64,
    #[diesel(sql_type = BigInt)]
    total_1: i64,
    #[diesel(sql_type = BigInt)]
    ranked_2: i64,
    #[diesel(sql_type = BigInt)]
    below_2: i64,
    #[diesel(sql_type = BigInt)]
    held_2: i64,
    #[diesel(sql_type = BigInt)]
    total_2: i64,
    #[diesel(sql_type = BigInt)]
    ranked_3: i64,
    #[diesel(sql_type = BigInt)]
    below_3: i64,
    #[diesel(sql_type = BigInt)]
    held_3: i64,
    #[diesel(sql_type = BigInt)]
    total_3: i64,
}

/// Where customer `code`, with `values` as of `as_of`, stands among the active
/// customers (of `population`'s subtree), by the formulas a run ranks with, in one
/// statement over the population, narrowed to the customers `restriction` admits: a
/// restricted key learns nothing of customers it may not see, not even how many.
pub fn standings(
    conn: &mut DbConnection,
    code: &str,
    values: &Values,
    as_of: NaiveDateTime,
    population: Option<&Population>,
    restriction: Option<&Restriction>,
) -> Result<Standings, AppError> {
    transaction(conn, |conn| {
        let dialect = Dialect::of(conn);
        let customer_id: i64 = customers::table.filter(customers::code.eq(code)).select(customers::id).first(conn)?;
        let subtree = match population {
            Some(population) => {
                let scheme_id: Option<i64> = schemes::table
                    .filter(schemes::code.eq(&population.scheme))
                    .select(schemes::id)
                    .first(conn)
                    .optional()?;
                Some((scheme_id.unwrap_or(-1), population.category.as_str()))
            }
            None => None,
        };
        let populace = Populace { dialect, as_of, sales: sales_as_of(conn, as_of)?, subtree, restriction };
        let int = dialect.integer();
        let mut statement = Fragment::new("SELECT ");
        let mut column = |condition: Fragment, value: Fragment, alias: &str| {
            statement
                .push(if alias == "member" { "" } else { ", " })
                .push("CAST(COALESCE(SUM(CASE WHEN ")
                .append(condition)
                .push(" THEN ")
                .append(value)
                .push(&format!(" ELSE 0 END), 0) AS {int}) AS {alias}"));
        };
        // The metrics are computed once per customer in `v`, and compared from there.
        let column_of = |metric: Metric| Fragment::new(&format!("v.{}", metric.name()));
        let compare = |metric: Metric, op: &str, value: i64| {
            let mut condition = column_of(metric);
            condition.push(&format!(" {op} ")).bind(Bind::BigInt(value));
            condition
        };
        let ordered = || Fragment::new("v.days_since_last_order IS NOT NULL");
        let ordered_and = |condition: Fragment| {
            let mut both = ordered();
            both.push(" AND ").append(condition);
            both
        };
        let one = || Fragment::new("1");
        column(Fragment::new(&format!("v.id = {customer_id}")), one(), "member");
        column(ordered(), one(), "ordered");
        column(
            ordered_and(compare(Metric::DaysSinceLastOrder, ">", values.days_since_last_order.unwrap_or(0))),
            one(),
            "recency_above",
        );
        column(ordered_and(compare(Metric::Orders12m, "<", values.orders_12m)), one(), "frequency_below");
        column(ordered_and(compare(Metric::Spend12m, "<", values.spend_12m)), one(), "monetary_below");
        let mine = [
            Some(values.spend_12m),
            Some(values.orders_12m),
            Some(values.lifetime_spend),
            values.days_since_last_order,
        ];
        for (index, (metric, value)) in RANKED_METRICS.into_iter().zip(mine).enumerate() {
            let value = value.unwrap_or(0);
            let mut has_value = column_of(metric);
            has_value.push(" IS NOT NULL");
            let mut held = compare(metric, ">=", value);
            held.push(" AND ").append(compare(metric, ">", 0));
            column(has_value, one(), &format!("ranked_{index}"));
            column(compare(metric, "<", value), one(), &format!("below_{index}"));
            column(held, column_of(metric), &format!("held_{index}"));
            column(compare(metric, ">", 0), column_of(metric), &format!("total_{index}"));
        }
        statement.push(" FROM (SELECT c.id AS id");
        for metric in RANKED_METRICS {
            statement.push(", ").append(populace.metric(metric)).push(&format!(" AS {}", metric.name()));
        }
        statement.append(populace.rows(true, None)).push(") v");
        let counts: Counts = statement.into_query().get_result(conn)?;
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        let member = counts.member > 0;
        let rfm = match values.days_since_last_order {
            Some(_) => [
                ranking::score(count(counts.recency_above), count(counts.ordered)),
                ranking::score(count(counts.frequency_below), count(counts.ordered)),
                ranking::score(count(counts.monetary_below), count(counts.ordered)),
            ],
            None => [1, 1, 1],
        };
        let per_metric = [
            (counts.ranked_0, counts.below_0, counts.held_0, counts.total_0),
            (counts.ranked_1, counts.below_1, counts.held_1, counts.total_1),
            (counts.ranked_2, counts.below_2, counts.held_2, counts.total_2),
            (counts.ranked_3, counts.below_3, counts.held_3, counts.total_3),
        ];
        let mut percentiles = [None; 4];
        let mut cumulative_shares = [None; 4];
        for (index, (ranked, below, held, total)) in per_metric.into_iter().enumerate() {
            if member && mine[index].is_some() {
                percentiles[index] = Some(ranking::percentile(count(below), count(ranked)));
                cumulative_shares[index] = ranking::cumulative_share(held as f64, total as f64);
            }
        }
        Ok(Standings { member, rfm, percentiles, cumulative_shares })
    })
}
