//! Relative fields, set-based. A field's values over a population are grouped by
//! value and ranked with window functions (`SUM() OVER`), which answers every
//! question a run's rules ask of that spread in one statement (see
//! `domain::ranking`), and a customer's standing among the population in one more.
//! Metrics come from the sales totals where the moment is at or after their anchor,
//! so a ranking reads one row per customer, not every transaction.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double};

use crate::db::schema::{customers, schemes};
use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::{transaction, DbConnection};
use crate::domain::ranking::{self, Answer, Question, Spread, Standing};
use crate::domain::report::Measure;
use crate::domain::rule::{Condition, Field, Kind, Metric, Operand, Population, Ranking, Scalar, RFM_SCORES};
use crate::domain::sales::Money;
use crate::error::AppError;

use super::rule_sql::{attribute_value, days_since, scalar};
use super::rules::ActiveRule;
use super::sales_totals;
use super::transactions::metric_columns;

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
            (Sales::Totals { .. }, Metric::Spend12m) => Fragment::new("(COALESCE(s.spend_cents - s.earlier_spend_cents, 0) + COALESCE(x.spend_12m, 0))"),
            (Sales::Totals { .. }, Metric::Orders12m) => Fragment::new("(COALESCE(s.orders - s.earlier_orders, 0) + COALESCE(x.orders_12m, 0))"),
            (Sales::Totals { .. }, Metric::LifetimeSpend) => Fragment::new("(COALESCE(s.spend_cents, 0) + COALESCE(x.lifetime_spend, 0))"),
            (Sales::Transactions, Metric::Spend12m) => Fragment::new("COALESCE(m.spend_12m, 0)"),
            (Sales::Transactions, Metric::Orders12m) => Fragment::new("COALESCE(m.orders_12m, 0)"),
            (Sales::Transactions, Metric::LifetimeSpend) => Fragment::new("COALESCE(m.lifetime_spend, 0)"),
        }
    }

    /// A numeric field's value (a metric or an attribute) of customer `c`.
    fn value(&self, field: &Field) -> Fragment {
        match field {
            Field::Metric(metric) => self.metric(*metric),
            Field::Attribute { key, value_type } => attribute_value(key, *value_type),
            _ => Fragment::new("NULL"),
        }
    }

    /// `FROM` the population's customers `c`, with their sales when `with_sales`, to
    /// the `WHERE` that keeps the active ones.
    fn rows(&self, with_sales: bool) -> Fragment {
        let mut rows = Fragment::new(" FROM customers c");
        if let Some((scheme_id, category)) = self.subtree {
            rows.push(&format!(" JOIN customer_categories p ON p.customer_id = c.id AND p.scheme_id = {scheme_id} AND p.category_code >= "))
                .bind(Bind::Text(category.to_string()))
                .push(" AND p.category_code < ")
                .bind(Bind::Text(super::prefix_upper_bound(category)));
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
                        .push(" GROUP BY t.customer_id) x ON x.customer_id = c.id");
                }
                Sales::Transactions => {
                    rows.push(" LEFT JOIN (SELECT t.customer_id, ")
                        .append(metric_columns(self.dialect, self.as_of))
                        .push(" FROM transactions t WHERE t.occurred_at <= ")
                        .bind(Bind::Timestamp(self.as_of))
                        .push(" GROUP BY t.customer_id) m ON m.customer_id = c.id");
                }
            }
        }
        rows.push(" WHERE c.status = 'active'");
        rows
    }

    /// One row per value of the spread's field: the value `v`, how many customers of
    /// the population hold less (`below`) and more (`above`), the positive values from
    /// it upwards (`held`), and the customers ranked and their positive total.
    fn spread(&self, spread: &Spread) -> Fragment {
        let with_sales = spread.with_orders_only || matches!(spread.field, Field::Metric(_));
        let mut values = Fragment::new("SELECT ");
        values.append(self.value(&spread.field)).push(" AS v").append(self.rows(with_sales));
        if spread.with_orders_only {
            values.push(" AND ").append(self.metric(Metric::LastOrderAt)).push(" IS NOT NULL");
        }
        let mut ranked = Fragment::new(
            "SELECT v, SUM(n) OVER (ORDER BY v ROWS UNBOUNDED PRECEDING) - n AS below, \
             SUM(n) OVER (ORDER BY v DESC ROWS UNBOUNDED PRECEDING) - n AS above, \
             SUM(positive) OVER (ORDER BY v DESC ROWS UNBOUNDED PRECEDING) AS held, \
             SUM(n) OVER () AS ranked, SUM(positive) OVER () AS total \
             FROM (SELECT v, COUNT(*) AS n, SUM(CASE WHEN v > 0 THEN v ELSE 0 END) AS positive FROM (",
        );
        ranked.append(values).push(") r WHERE v IS NOT NULL GROUP BY v) g");
        ranked
    }
}

/// A standing as SQL over a ranked spread's row `d`; the metrics endpoint computes the
/// same in [`Standings`].
fn standing(dialect: Dialect, standing: Standing) -> String {
    match standing {
        Standing::Ranked(Ranking::Percentile) => "(CASE WHEN d.ranked > 1 THEN 100e0 * d.below / (d.ranked - 1) ELSE 0e0 END)".into(),
        Standing::Ranked(Ranking::CumulativeShare) => "(CASE WHEN d.total > 0 THEN 100e0 * d.held / d.total END)".into(),
        Standing::Score { fewer_is_better } => {
            let below = if fewer_is_better { "d.above" } else { "d.below" };
            format!("(1 + ({} * {below}) {} d.ranked)", RFM_SCORES, dialect.integer_division())
        }
    }
}

/// Which of the spread's values answer a question, as a condition on its row `d`.
fn answers(dialect: Dialect, question: &Question) -> Fragment {
    let mut condition = Fragment::new(&standing(dialect, question.standing));
    match &question.operand {
        Operand::Range(low, high) => {
            condition.push(" BETWEEN ").bind(scalar(low)).push(" AND ").bind(scalar(high));
        }
        Operand::One(value) => {
            condition.push(&format!(" {} ", question.op.sql())).bind(scalar(value));
        }
        Operand::List(_) | Operand::Null(_) => {
            condition = Fragment::new("0 = 1");
        }
    }
    condition
}

#[derive(QueryableByName)]
struct WholeRange {
    #[diesel(sql_type = BigInt)]
    question: i64,
    #[diesel(sql_type = BigInt)]
    low: i64,
    #[diesel(sql_type = BigInt)]
    high: i64,
}

#[derive(QueryableByName)]
struct DecimalRange {
    #[diesel(sql_type = BigInt)]
    question: i64,
    #[diesel(sql_type = Double)]
    low: f64,
    #[diesel(sql_type = Double)]
    high: f64,
}

/// The answers to questions asked of one spread, in their order, in one statement.
fn answer(conn: &mut DbConnection, population: &Populace, spread: &Spread, questions: &[&Question]) -> Result<Vec<Answer>, AppError> {
    let dialect = population.dialect;
    let kind = spread.field.kind();
    let cast = if kind == Kind::Decimal { dialect.double() } else { dialect.integer() };
    let mut statement = Fragment::new(&format!(
        "SELECT CAST(q.k AS {int}) AS question, CAST(MIN(d.v) AS {cast}) AS low, CAST(MAX(d.v) AS {cast}) AS high FROM (",
        int = dialect.integer()
    ));
    statement.append(population.spread(spread)).push(") d JOIN (");
    for index in 0..questions.len() {
        statement.push(&format!("{}SELECT {index} AS k", if index == 0 { "" } else { " UNION ALL " }));
    }
    statement.push(") q ON ");
    for (index, question) in questions.iter().enumerate() {
        statement.push(&format!("{}(q.k = {index} AND ", if index == 0 { "" } else { " OR " })).append(answers(dialect, question)).push(")");
    }
    statement.push(" GROUP BY q.k");
    let ranges: Vec<(i64, Scalar, Scalar)> = match kind {
        Kind::Decimal => statement.into_query().load::<DecimalRange>(conn)?.into_iter().map(|r| (r.question, Scalar::Decimal(r.low), Scalar::Decimal(r.high))).collect(),
        Kind::Money => statement
            .into_query()
            .load::<WholeRange>(conn)?
            .into_iter()
            .map(|r| (r.question, Scalar::Money(Money::from_cents(r.low)), Scalar::Money(Money::from_cents(r.high))))
            .collect(),
        _ => statement.into_query().load::<WholeRange>(conn)?.into_iter().map(|r| (r.question, Scalar::Integer(r.low), Scalar::Integer(r.high))).collect(),
    };
    let mut answered: Vec<Answer> = vec![None; questions.len()];
    for (index, low, high) in ranges {
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| answered.get_mut(i)) {
            *slot = Some((low, high));
        }
    }
    Ok(answered)
}

/// Where a moment's metrics come from, and the anchor they were read at.
fn sales_as_of(conn: &mut DbConnection, as_of: NaiveDateTime) -> Result<Sales, AppError> {
    let anchor = sales_totals::anchor(conn)?;
    Ok(if as_of >= anchor { Sales::Totals { anchor } } else { Sales::Transactions })
}

/// The rules' conditions with their relative fields resolved against the whole
/// population as of `as_of`: one statement per spread, in one transaction, so that
/// every answer sees the same sales and the same anchor.
pub fn resolve(conn: &mut DbConnection, rules: &[ActiveRule], scheme_ids: &HashMap<String, i64>, as_of: NaiveDateTime) -> Result<Vec<Condition>, AppError> {
    if !rules.iter().any(|rule| ranking::is_relative(&rule.condition)) {
        return Ok(rules.iter().map(|rule| rule.condition.clone()).collect());
    }
    let asked: Vec<Vec<(Spread, Question)>> = rules.iter().map(|rule| ranking::questions(&rule.condition, rule.population.as_ref())).collect();
    let mut spreads: Vec<(&Spread, Vec<&Question>)> = Vec::new();
    for (spread, question) in asked.iter().flatten() {
        match spreads.iter_mut().find(|(known, _)| *known == spread) {
            Some((_, questions)) => questions.push(question),
            None => spreads.push((spread, vec![question])),
        }
    }
    let mut answers_by_spread: Vec<std::vec::IntoIter<Answer>> = transaction(conn, |conn| {
        let (dialect, sales) = (Dialect::of(conn), sales_as_of(conn, as_of)?);
        spreads
            .iter()
            .map(|(spread, questions)| {
                let subtree = spread.population.as_ref().map(|p| (scheme_ids.get(&p.scheme).copied().unwrap_or(-1), p.category.as_str()));
                let population = Populace { dialect, as_of, sales, subtree };
                answer(conn, &population, spread, questions).map(Vec::into_iter)
            })
            .collect::<Result<_, AppError>>()
    })?;
    Ok(rules
        .iter()
        .zip(&asked)
        .map(|(rule, asked)| {
            let mut answers = asked.iter().map(|(spread, _)| {
                let index = spreads.iter().position(|(known, _)| *known == spread).expect("every spread was asked");
                answers_by_spread[index].next().flatten()
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
pub const RANKED_METRICS: [Metric; 4] = [Metric::Spend12m, Metric::Orders12m, Metric::LifetimeSpend, Metric::DaysSinceLastOrder];

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

/// The percentile of a value with `below` of `ranked` values under it, as
/// [`standing`] computes it in SQL.
fn percentile(below: i64, ranked: i64) -> f64 {
    if ranked > 1 {
        100.0 * below as f64 / (ranked - 1) as f64
    } else {
        0.0
    }
}

/// The cumulative share of a value whose and the higher values hold `held` of `total`.
fn cumulative_share(held: i64, total: i64) -> Option<f64> {
    (total > 0).then(|| 100.0 * held as f64 / total as f64)
}

/// Where customer `code`, with `values` as of `as_of`, stands among the active
/// customers (of `population`'s subtree), by the formulas a run ranks with, in one
/// statement over the population.
pub fn standings(conn: &mut DbConnection, code: &str, values: &Values, as_of: NaiveDateTime, population: Option<&Population>) -> Result<Standings, AppError> {
    transaction(conn, |conn| {
        let dialect = Dialect::of(conn);
        let customer_id: i64 = customers::table.filter(customers::code.eq(code)).select(customers::id).first(conn)?;
        let subtree = match population {
            Some(population) => {
                let scheme_id: Option<i64> = schemes::table.filter(schemes::code.eq(&population.scheme)).select(schemes::id).first(conn).optional()?;
                Some((scheme_id.unwrap_or(-1), population.category.as_str()))
            }
            None => None,
        };
        let populace = Populace { dialect, as_of, sales: sales_as_of(conn, as_of)?, subtree };
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
        let compare = |metric: Metric, op: &str, value: i64| {
            let mut condition = populace.metric(metric);
            condition.push(&format!(" {op} ")).bind(Bind::BigInt(value));
            condition
        };
        let ordered_and = |condition: Fragment| {
            let mut both = populace.metric(Metric::LastOrderAt);
            both.push(" IS NOT NULL AND ").append(condition);
            both
        };
        let one = || Fragment::new("1");
        column(Fragment::new(&format!("c.id = {customer_id}")), one(), "member");
        let mut ordered = populace.metric(Metric::LastOrderAt);
        ordered.push(" IS NOT NULL");
        column(ordered, one(), "ordered");
        column(ordered_and(compare(Metric::DaysSinceLastOrder, ">", values.days_since_last_order.unwrap_or(0))), one(), "recency_above");
        column(ordered_and(compare(Metric::Orders12m, "<", values.orders_12m)), one(), "frequency_below");
        column(ordered_and(compare(Metric::Spend12m, "<", values.spend_12m)), one(), "monetary_below");
        let mine = [Some(values.spend_12m), Some(values.orders_12m), Some(values.lifetime_spend), values.days_since_last_order];
        for (index, (metric, value)) in RANKED_METRICS.into_iter().zip(mine).enumerate() {
            let value = value.unwrap_or(0);
            let mut has_value = populace.metric(metric);
            has_value.push(" IS NOT NULL");
            let mut held = compare(metric, ">=", value);
            held.push(" AND ").append(compare(metric, ">", 0));
            column(has_value, one(), &format!("ranked_{index}"));
            column(compare(metric, "<", value), one(), &format!("below_{index}"));
            column(held, populace.metric(metric), &format!("held_{index}"));
            column(compare(metric, ">", 0), populace.metric(metric), &format!("total_{index}"));
        }
        statement.append(populace.rows(true));
        let counts: Counts = statement.into_query().get_result(conn)?;
        let member = counts.member > 0;
        let rfm = match values.days_since_last_order {
            Some(_) => [
                ranking::score(counts.recency_above, counts.ordered),
                ranking::score(counts.frequency_below, counts.ordered),
                ranking::score(counts.monetary_below, counts.ordered),
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
                percentiles[index] = Some(percentile(below, ranked));
                cumulative_shares[index] = cumulative_share(held, total);
            }
        }
        Ok(Standings { member, rfm, percentiles, cumulative_shares })
    })
}
