//! Relative fields resolved for a run. A leaf such as `percentile(spend_12m) >= 80`
//! asks which values of `spend_12m` stand at the 80th percentile or above among the
//! rule's population. A standing never falls as the value rises (nor, for recency and
//! shares, rises), so the values that answer one comparison are one range of the
//! population's values, or none: the store finds that range set-based over the whole
//! population once per run, and the leaf becomes a plain range on the field itself.
//! Every batch then ranks its customers against the whole population, not its own.

use super::rule::{Condition, Field, Metric, Op, Operand, Population, Ranking, RfmPart, Scalar, RFM_SCORES};

/// The values a standing is taken among: a numeric field over a population (every
/// active customer, or a subtree's); for RFM scores only the customers with orders.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub field: Field,
    pub population: Option<Population>,
    pub with_orders_only: bool,
}

/// How a value's standing is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Ranked(Ranking),
    /// A quintile score 1–5; for recency fewer days score higher.
    Score {
        fewer_is_better: bool,
    },
}

/// One comparison of a standing with a value (`=`, `>`, `>=`, `<`, `<=`) or a range
/// (`between`).
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub standing: Standing,
    pub op: Op,
    pub operand: Operand,
}

/// The lowest and highest of the spread's values that answer a question, in the
/// field's own type; `None` when no value does.
pub type Answer = Option<(Scalar, Scalar)>;

/// The questions a condition's relative leaves ask, in the order [`resolve`] wants
/// their answers.
pub fn questions(condition: &Condition, population: Option<&Population>) -> Vec<(Spread, Question)> {
    let mut asked = Vec::new();
    walk(condition, population, &mut |spread, question| {
        asked.push((spread, question));
        None
    });
    asked
}

/// The condition with its relative leaves turned into plain ones, given the answers to
/// its [`questions`] in their order.
pub fn resolve(
    condition: &Condition,
    population: Option<&Population>,
    answers: &mut impl Iterator<Item = Answer>,
) -> Condition {
    walk(condition, population, &mut |_, _| answers.next().flatten())
}

/// Whether a condition has relative leaves to resolve.
pub fn is_relative(condition: &Condition) -> bool {
    match condition {
        Condition::All(items) | Condition::Any(items) => items.iter().any(is_relative),
        Condition::Not(inner) => is_relative(inner),
        Condition::Leaf { field, .. } => field.is_relative(),
    }
}

type Ask<'a> = dyn FnMut(Spread, Question) -> Answer + 'a;

fn walk(condition: &Condition, population: Option<&Population>, ask: &mut Ask) -> Condition {
    match condition {
        Condition::All(items) => Condition::All(items.iter().map(|item| walk(item, population, ask)).collect()),
        Condition::Any(items) => Condition::Any(items.iter().map(|item| walk(item, population, ask)).collect()),
        Condition::Not(inner) => Condition::Not(Box::new(walk(inner, population, ask))),
        Condition::Leaf { field, op, value } if field.is_relative() => {
            relative_leaf(field, *op, value, population, ask)
        }
        leaf => leaf.clone(),
    }
}

fn leaf(field: Field, op: Op, value: Operand) -> Condition {
    Condition::Leaf { field, op, value }
}

/// Never holds (an `any` of nothing).
fn never() -> Condition {
    Condition::Any(Vec::new())
}

fn has_orders(orders: bool) -> Condition {
    leaf(Field::Metric(Metric::LastOrderAt), Op::IsNull, Operand::Null(!orders))
}

/// A relative leaf as plain conditions: the customer belongs to what is ranked, and
/// its standing compares as asked. A customer outside has no standing, so every
/// comparison is false for it, as with a missing value.
fn relative_leaf(field: &Field, op: Op, value: &Operand, population: Option<&Population>, ask: &mut Ask) -> Condition {
    let mut member = Vec::new();
    if let Some(population) = population {
        member.push(leaf(
            Field::Category { scheme: population.scheme.clone() },
            Op::Under,
            Operand::One(Scalar::Text(population.category.clone())),
        ));
    }
    if let Field::Ranked { of, .. } = field {
        // Only customers with a value are ranked: an attribute may be missing, and
        // days since the last order for customers who never ordered.
        if matches!(**of, Field::Attribute { .. } | Field::Metric(Metric::DaysSinceLastOrder)) {
            member.push(leaf((**of).clone(), Op::IsNull, Operand::Null(false)));
        }
    }
    let compared = match (op, value) {
        (Op::IsNull, Operand::Null(true)) => return Condition::Not(Box::new(Condition::All(member))),
        (Op::IsNull, _) => return Condition::All(member),
        (Op::In, Operand::List(values)) => Condition::Any(
            values.iter().map(|v| standing(field, Op::Eq, &Operand::One(v.clone()), population, ask)).collect(),
        ),
        (Op::NotIn, Operand::List(values)) => Condition::Not(Box::new(Condition::Any(
            values.iter().map(|v| standing(field, Op::Eq, &Operand::One(v.clone()), population, ask)).collect(),
        ))),
        (Op::Ne, value) => Condition::Not(Box::new(standing(field, Op::Eq, value, population, ask))),
        (op, value) => standing(field, op, value, population, ask),
    };
    member.push(compared);
    Condition::All(member)
}

/// The standing of `field` compares by `op` (`=`, `>`, `>=`, `<`, `<=`, `between`).
fn standing(field: &Field, op: Op, value: &Operand, population: Option<&Population>, ask: &mut Ask) -> Condition {
    match field {
        Field::Ranked { ranking, of } => {
            let spread = Spread { field: (**of).clone(), population: population.cloned(), with_orders_only: false };
            match ask(spread, Question { standing: Standing::Ranked(*ranking), op, operand: value.clone() }) {
                Some((low, high)) => leaf((**of).clone(), Op::Between, Operand::Range(low, high)),
                None => never(),
            }
        }
        Field::RfmScore(part) => {
            let metric = Field::Metric(part.metric());
            let spread = Spread { field: metric.clone(), population: population.cloned(), with_orders_only: true };
            let ranked = match ask(
                spread,
                Question {
                    standing: Standing::Score { fewer_is_better: part.fewer_is_better() },
                    op,
                    operand: value.clone(),
                },
            ) {
                Some((low, high)) => {
                    Condition::All(vec![has_orders(true), leaf(metric, Op::Between, Operand::Range(low, high))])
                }
                None => never(),
            };
            if score_compares(1, op, value) {
                Condition::Any(vec![ranked, has_orders(false)])
            } else {
                ranked
            }
        }
        Field::Rfm => match value {
            Operand::One(Scalar::Text(scores)) => Condition::All(
                RfmPart::ALL
                    .into_iter()
                    .zip(scores.bytes())
                    .map(|(part, digit)| {
                        standing(
                            &Field::RfmScore(part),
                            Op::Eq,
                            &Operand::One(Scalar::Integer(i64::from(digit - b'0'))),
                            population,
                            ask,
                        )
                    })
                    .collect(),
            ),
            _ => never(),
        },
        _ => never(),
    }
}

/// Whether a standing compares with the operand as asked (`=`, `>`, `>=`, `<`, `<=`,
/// `between`); a score's operands are integers, a ranking's numbers.
pub fn compares(standing: f64, op: Op, operand: &Operand) -> bool {
    let number = |scalar: &Scalar| match scalar {
        Scalar::Integer(n) => Some(*n as f64),
        Scalar::Decimal(n) => Some(*n),
        _ => None,
    };
    match (op, operand) {
        (Op::Between, Operand::Range(low, high)) => {
            number(low).zip(number(high)).is_some_and(|(low, high)| low <= standing && standing <= high)
        }
        (op, Operand::One(scalar)) => number(scalar).is_some_and(|n| match op {
            Op::Eq => standing == n,
            Op::Gt => standing > n,
            Op::Gte => standing >= n,
            Op::Lt => standing < n,
            Op::Lte => standing <= n,
            _ => false,
        }),
        _ => false,
    }
}

fn score_compares(score: i64, op: Op, operand: &Operand) -> bool {
    compares(score as f64, op, operand)
}

/// The percentile of a value with `below` of the `ranked` values under it:
/// `PERCENT_RANK` × 100, 0 for a population of one.
pub fn percentile(below: usize, ranked: usize) -> f64 {
    if ranked > 1 {
        100.0 * below as f64 / (ranked - 1) as f64
    } else {
        0.0
    }
}

/// The cumulative share of a value whose holders and those above hold `held` of the
/// positive `total`; none without a positive total.
pub fn cumulative_share(held: f64, total: f64) -> Option<f64> {
    (total > 0.0).then(|| 100.0 * held / total)
}

/// The score of a customer with `ranked_below` customers ranked below it among
/// `ranked` (both among the customers with orders).
pub fn score(ranked_below: usize, ranked: usize) -> i64 {
    if ranked == 0 {
        return 1;
    }
    1 + (RFM_SCORES as usize * ranked_below / ranked).min(RFM_SCORES as usize - 1) as i64
}

/// The answers to `questions` over a spread's values, ascending: for each, the lowest
/// and highest value whose standing compares as asked, or `None`. One pass over the
/// values, a group of equal values at a time, so that equal values stand equal.
pub fn answer<T: Copy + PartialOrd>(
    ascending: &[T],
    positive: impl Fn(T) -> f64,
    questions: &[&Question],
) -> Vec<Option<(T, T)>> {
    let ranked = ascending.len();
    let total: f64 = ascending.iter().map(|v| positive(*v)).sum();
    let mut answers: Vec<Option<(T, T)>> = vec![None; questions.len()];
    let (mut below, mut held_below) = (0, 0.0);
    while below < ranked {
        let value = ascending[below];
        let equal = ascending[below..].iter().take_while(|v| **v == value).count();
        let above = ranked - below - equal;
        for (question, found) in questions.iter().zip(answers.iter_mut()) {
            let standing = match question.standing {
                Standing::Ranked(Ranking::Percentile) => Some(percentile(below, ranked)),
                Standing::Ranked(Ranking::CumulativeShare) => cumulative_share(total - held_below, total),
                Standing::Score { fewer_is_better: false } => Some(score(below, ranked) as f64),
                Standing::Score { fewer_is_better: true } => Some(score(above, ranked) as f64),
            };
            if standing.is_some_and(|standing| compares(standing, question.op, &question.operand)) {
                *found = Some(found.map_or((value, value), |(low, _)| (low, value)));
            }
        }
        held_below += ascending[below..below + equal].iter().map(|v| positive(*v)).sum::<f64>();
        below += equal;
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::Money;

    fn spend() -> Field {
        Field::Metric(Metric::Spend12m)
    }

    fn money(cents: i64) -> Scalar {
        Scalar::Money(Money::from_cents(cents))
    }

    fn region() -> Population {
        Population { scheme: "REGION".into(), category: "01".into() }
    }

    #[test]
    fn a_share_leaf_becomes_a_range_of_the_field_it_ranks() {
        let abc = leaf(
            Field::Ranked { ranking: Ranking::CumulativeShare, of: Box::new(spend()) },
            Op::Lte,
            Operand::One(Scalar::Decimal(80.0)),
        );
        let asked = questions(&abc, None);
        assert_eq!(
            asked,
            vec![(
                Spread { field: spend(), population: None, with_orders_only: false },
                Question {
                    standing: Standing::Ranked(Ranking::CumulativeShare),
                    op: Op::Lte,
                    operand: Operand::One(Scalar::Decimal(80.0))
                }
            )]
        );
        let resolved = resolve(&abc, None, &mut [Some((money(5_000), money(90_000)))].into_iter());
        assert_eq!(
            resolved,
            Condition::All(vec![leaf(spend(), Op::Between, Operand::Range(money(5_000), money(90_000)))])
        );
        assert_eq!(resolve(&abc, None, &mut [None].into_iter()), Condition::All(vec![never()]));
    }

    #[test]
    fn a_population_and_a_missing_value_leave_a_customer_unranked() {
        let days = Field::Metric(Metric::DaysSinceLastOrder);
        let top = leaf(
            Field::Ranked { ranking: Ranking::Percentile, of: Box::new(days.clone()) },
            Op::Ne,
            Operand::One(Scalar::Decimal(50.0)),
        );
        let population = region();
        assert_eq!(questions(&top, Some(&population))[0].0.population, Some(region()));
        let resolved =
            resolve(&top, Some(&population), &mut [Some((Scalar::Integer(3), Scalar::Integer(9)))].into_iter());
        assert_eq!(
            resolved,
            Condition::All(vec![
                leaf(Field::Category { scheme: "REGION".into() }, Op::Under, Operand::One(Scalar::Text("01".into()))),
                leaf(days.clone(), Op::IsNull, Operand::Null(false)),
                Condition::Not(Box::new(leaf(
                    days,
                    Op::Between,
                    Operand::Range(Scalar::Integer(3), Scalar::Integer(9))
                ))),
            ])
        );
    }

    #[test]
    fn an_rfm_string_asks_each_part_and_customers_without_orders_score_one() {
        let rfm = leaf(Field::Rfm, Op::In, Operand::List(vec![Scalar::Text("511".into())]));
        let asked = questions(&rfm, None);
        let standings: Vec<_> = asked
            .iter()
            .map(|(spread, q)| (spread.field.clone(), spread.with_orders_only, q.standing, q.operand.clone()))
            .collect();
        assert_eq!(
            standings,
            vec![
                (
                    Field::Metric(Metric::DaysSinceLastOrder),
                    true,
                    Standing::Score { fewer_is_better: true },
                    Operand::One(Scalar::Integer(5))
                ),
                (
                    Field::Metric(Metric::Orders12m),
                    true,
                    Standing::Score { fewer_is_better: false },
                    Operand::One(Scalar::Integer(1))
                ),
                (spend(), true, Standing::Score { fewer_is_better: false }, Operand::One(Scalar::Integer(1))),
            ]
        );
        let resolved =
            resolve(&rfm, None, &mut [None, Some((Scalar::Integer(0), Scalar::Integer(2))), None].into_iter());
        let Condition::All(parts) = resolved else { panic!("{resolved:?}") };
        let Condition::Any(values) = &parts[0] else { panic!() };
        let Condition::All(scores) = &values[0] else { panic!() };
        assert_eq!(scores[0], never(), "no customer with orders scores 5 on recency here");
        assert_eq!(
            scores[1],
            Condition::Any(vec![
                Condition::All(vec![
                    has_orders(true),
                    leaf(
                        Field::Metric(Metric::Orders12m),
                        Op::Between,
                        Operand::Range(Scalar::Integer(0), Scalar::Integer(2))
                    )
                ]),
                has_orders(false),
            ])
        );
    }

    #[test]
    fn is_null_asks_nothing() {
        let percentile = leaf(
            Field::Ranked { ranking: Ranking::Percentile, of: Box::new(spend()) },
            Op::IsNull,
            Operand::Null(true),
        );
        assert!(questions(&percentile, None).is_empty());
        assert_eq!(
            resolve(&percentile, None, &mut std::iter::empty()),
            Condition::Not(Box::new(Condition::All(vec![])))
        );
        assert!(is_relative(&Condition::Not(Box::new(percentile))));
        assert!(!is_relative(&leaf(spend(), Op::Gt, Operand::One(money(1)))));
    }

    #[test]
    fn scores_are_quintiles_by_rank_with_ties_equal() {
        assert_eq!((0..10).map(|below| score(below, 10)).collect::<Vec<_>>(), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(score(0, 1), 1);
        assert_eq!(score(0, 0), 1);
        assert_eq!(score(2, 3), 4);
        assert!(score_compares(1, Op::Lte, &Operand::One(Scalar::Integer(2))));
        assert!(!score_compares(1, Op::Between, &Operand::Range(Scalar::Integer(2), Scalar::Integer(5))));
    }

    fn asked(standing: Standing, op: Op, operand: Operand) -> Question {
        Question { standing, op, operand }
    }

    #[test]
    fn answers_are_ranges_of_values_with_ties_together() {
        // Positive total 100: 50 holds 50 %, the two 20s 90 %, 10 100 %, and the
        // refund -5 nothing more.
        let values = [-5, 10, 20, 20, 50];
        let positive = |v: i64| v.max(0) as f64;
        let share = asked(Standing::Ranked(Ranking::CumulativeShare), Op::Lte, Operand::One(Scalar::Decimal(90.0)));
        let top = asked(Standing::Ranked(Ranking::Percentile), Op::Gte, Operand::One(Scalar::Decimal(50.0)));
        let exactly = asked(Standing::Ranked(Ranking::Percentile), Op::Eq, Operand::One(Scalar::Decimal(60.0)));
        let best = asked(Standing::Score { fewer_is_better: false }, Op::Eq, Operand::One(Scalar::Integer(5)));
        let fewest = asked(
            Standing::Score { fewer_is_better: true },
            Op::Between,
            Operand::Range(Scalar::Integer(4), Scalar::Integer(5)),
        );
        assert_eq!(
            answer(&values, positive, &[&share, &top, &exactly, &best, &fewest]),
            vec![Some((20, 50)), Some((20, 50)), None, Some((50, 50)), Some((-5, 10))]
        );
        assert_eq!(answer::<i64>(&[], positive, &[&share]), vec![None]);
        let nothing_positive = answer(
            &[-3, 0],
            positive,
            &[&asked(Standing::Ranked(Ranking::CumulativeShare), Op::Gte, Operand::One(Scalar::Decimal(0.0)))],
        );
        assert_eq!(nothing_positive, vec![None], "no share of no total");
    }

    #[test]
    fn percentiles_and_shares_follow_their_definitions() {
        assert_eq!((percentile(0, 1), percentile(0, 5), percentile(4, 5), percentile(2, 5)), (0.0, 0.0, 100.0, 50.0));
        assert_eq!((cumulative_share(50.0, 200.0), cumulative_share(1.0, 0.0)), (Some(25.0), None));
    }
}
