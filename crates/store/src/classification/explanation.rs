//! Why a customer stands where it does in a scheme, and what would move it: the last
//! change, the pin and the pending change, and every enabled rule evaluated now for
//! this customer, leaf by leaf, by the same SQL a classification run compiles (so the
//! rule that wins here is the one a run would apply). Relative fields are resolved at
//! today's ranks, as a run resolves them.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value as Json;

use crate::db::schema::schemes;
use crate::db::sql::Dialect;
use crate::db::{now, DbConnection};
use crate::domain::history::Direction;
use crate::domain::restriction::Restriction;
use crate::domain::rule::{Condition, Field, Operand, Scalar};
use crate::domain::tier_policy::{Hold, TierPolicy};
use crate::error::AppError;

use crate::access::visibility;
use crate::archive::customer_rows::{self as customer_store, CustomerView};
use crate::catalogue::categories;
use crate::catalogue::rule_sql::Evaluation;
use crate::catalogue::rules::{self, RuleRow};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::classification::history::{self, HistoryRow};
use crate::classification::rankings;
use crate::classification::{tier_holds, Mover};

/// A customer's standing in a scheme, explained.
pub struct Explanation {
    pub customer: CustomerView,
    pub scheme: SchemeRow,
    /// When the rules were evaluated.
    pub as_of: NaiveDateTime,
    /// The customer's latest change in the scheme.
    pub last_change: Option<HistoryRow>,
    /// The enabled rules in priority order, each evaluated for the customer.
    pub rules: Vec<RuleVerdict>,
    /// Of an ordered scheme: the ranked categories, lowest rank first.
    pub ranks: Vec<(String, i32)>,
    /// The downgrade the winning rule asks for, as the scheme's tier policy would
    /// hold it back in an applied run now.
    pub tier_hold: Option<(TierPolicy, Hold)>,
}

impl Explanation {
    /// The first rule that holds: the one a run would apply.
    pub fn winner(&self) -> Option<&RuleVerdict> {
        self.rules.iter().find(|rule| rule.condition.holds)
    }
}

pub struct RuleVerdict {
    pub rule: RuleRow,
    pub condition: Verdict,
}

/// A condition's node, with whether it holds for the customer.
pub struct Verdict {
    pub holds: bool,
    pub node: Node,
}

pub enum Node {
    All(Vec<Verdict>),
    Any(Vec<Verdict>),
    Not(Box<Verdict>),
    Leaf(Box<LeafVerdict>),
}

pub struct LeafVerdict {
    /// The leaf as the rule was written: `{"field", "op", "value"}`.
    pub written: Json,
    pub field: Field,
    pub op: crate::domain::rule::Op,
    pub operand: Operand,
    /// The customer's value of the field (of the field it ranks, for a relative one),
    /// as the run reads it: money in cents, moments as text; null when it has none.
    pub value: Json,
    /// A relative leaf at today's ranks: the field it ranks (`rfm` for the RFM
    /// string), and the range of that field's values that holds (none: no single
    /// range, or no value does).
    pub ranked: Option<(Field, Option<(Scalar, Scalar)>)>,
}

/// The explanation of `customer_code`'s standing in `scheme_code`, as of now; a
/// restricted key gets 404 for a customer outside its subtree. A tier policy's
/// minimum stay is judged at `clock_now`, the service clock's, as runs judge it.
pub fn explain(
    conn: &mut DbConnection,
    customer_code: &str,
    scheme_code: &str,
    restriction: Option<&Restriction>,
    clock_now: NaiveDateTime,
) -> Result<Explanation, AppError> {
    // One snapshot, read-only: the rules, their ranks and the customer agree.
    crate::db::snapshot(conn, |conn| {
        let customer = customer_store::view(conn, customer_code)?;
        if !visibility::admits_row(restriction, &customer.row)? {
            return Err(customer_store::customer_not_found(customer_code));
        }
        let scheme = scheme_store::get(conn, scheme_code)?;
        let as_of = now();
        let last_change = history::page(conn, customer_code, Some(scheme_code), None, 1)?.into_iter().next();
        let active = rules::enabled(conn, &scheme)?;
        let scheme_ids: HashMap<String, i64> =
            schemes::table.select((schemes::code, schemes::id)).load::<(String, i64)>(conn)?.into_iter().collect();
        let resolved = rankings::resolve(conn, &active, &scheme_ids, as_of)?;

        // Every leaf's field and its (resolved) condition, evaluated in one statement.
        let mut probes = Probes::default();
        let mut shapes = Vec::with_capacity(active.len());
        for (rule, resolved) in active.iter().zip(&resolved) {
            let written: Json = serde_json::from_str(&rule.row.rule_condition)
                .map_err(|_| AppError::corrupt(format!("rule {} has a corrupt condition", rule.row.id)))?;
            shapes.push(probes.shape(&rule.condition, resolved, &written)?);
        }
        let evaluation = Evaluation { dialect: Dialect::of(conn), as_of, scheme_ids: &scheme_ids };
        let fields: Vec<&Field> = probes.fields.iter().collect();
        let conditions: Vec<&Condition> = probes.conditions.iter().collect();
        let row: Probed = evaluation.probe(&fields, &conditions, customer.row.id).into_query().get_result(conn)?;
        let answers: Vec<Json> = serde_json::from_str(&row.probe)
            .map_err(|_| AppError::internal("the rules' evaluation of one customer did not read back"))?;
        let (values, truths) = answers.split_at(fields.len().min(answers.len()));
        let rules = active
            .into_iter()
            .zip(shapes)
            .map(|(rule, shape)| RuleVerdict { rule: rule.row, condition: shape.verdict(values, truths) })
            .collect();
        let ranked = categories::ranks(conn, &scheme)?;
        let mut ranks: Vec<(String, i32)> = ranked.iter().map(|(code, rank)| (code.to_string(), rank)).collect();
        ranks.sort_by_key(|(code, rank)| (*rank, code.clone()));
        let mut explanation = Explanation { customer, scheme, as_of, last_change, rules, ranks, tier_hold: None };
        let policy = if explanation.scheme.ordered { explanation.scheme.tier_policy()? } else { None };
        let current = explanation.customer.assignments.iter().find(|held| held.scheme == explanation.scheme.code);
        let target = explanation.winner().map(|rule| rule.rule.target_category.clone());
        if let (Some(policy), Some(current), Some(target)) = (policy, current, target) {
            if ranked.direction(Some(&current.category), Some(&target)) == Direction::Down {
                let mover = Mover {
                    id: explanation.customer.row.id,
                    code: explanation.customer.row.code.clone(),
                    from: Some(current.category.clone()),
                };
                let mut downgrade = BTreeMap::from([(0, vec![mover])]);
                let held =
                    tier_holds::hold_back(conn, explanation.scheme.id, &policy, clock_now, &mut downgrade, |_, _| {
                        true
                    })?;
                explanation.tier_hold = held.into_iter().next().map(|held| (policy, held.hold));
            }
        }
        Ok(explanation)
    })
}

#[derive(QueryableByName)]
struct Probed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    probe: String,
}

/// What one statement evaluates: fields (their values) and conditions (their truth).
#[derive(Default)]
struct Probes {
    fields: Vec<Field>,
    conditions: Vec<Condition>,
}

/// A condition's shape, its leaves pointing at their probes.
enum Shape {
    All(Vec<Shape>),
    Any(Vec<Shape>),
    Not(Box<Shape>),
    Leaf {
        written: Json,
        field: Field,
        op: crate::domain::rule::Op,
        operand: Operand,
        value: Option<usize>,
        truth: usize,
        ranked: Option<(Field, Option<(Scalar, Scalar)>)>,
    },
}

impl Probes {
    fn shape(&mut self, condition: &Condition, resolved: &Condition, written: &Json) -> Result<Shape, AppError> {
        Ok(match (condition, resolved) {
            (Condition::All(items), Condition::All(done)) => Shape::All(self.shapes(items, done, &written["all"])?),
            (Condition::Any(items), Condition::Any(done)) => Shape::Any(self.shapes(items, done, &written["any"])?),
            (Condition::Not(inner), Condition::Not(done)) => {
                Shape::Not(Box::new(self.shape(inner, done, &written["not"])?))
            }
            // Resolving replaces a relative leaf by plain conditions; a plain leaf stays.
            (Condition::Leaf { field, op, value: operand }, resolved) => {
                let ranked_of = ranked_field(field);
                let ranked = field.is_relative().then(|| {
                    let range = ranked_of.as_ref().and_then(|of| range_of(resolved, of));
                    (ranked_of.clone().unwrap_or(Field::Rfm), range)
                });
                let valued = match (&ranked_of, field.is_relative()) {
                    (Some(of), _) => Some(of.clone()),
                    (None, false) => Some(field.clone()),
                    (None, true) => None,
                };
                let value = valued.map(|valued| {
                    self.fields.push(valued);
                    self.fields.len() - 1
                });
                self.conditions.push(resolved.clone());
                Shape::Leaf {
                    written: written.clone(),
                    field: field.clone(),
                    op: *op,
                    operand: operand.clone(),
                    value,
                    truth: self.conditions.len() - 1,
                    ranked,
                }
            }
            _ => return Err(AppError::internal("a rule's resolved condition does not match the rule")),
        })
    }

    fn shapes(&mut self, items: &[Condition], resolved: &[Condition], written: &Json) -> Result<Vec<Shape>, AppError> {
        items.iter().zip(resolved).enumerate().map(|(i, (item, done))| self.shape(item, done, &written[i])).collect()
    }
}

/// The field whose value a relative leaf ranks (`percentile(spend_12m)` ranks
/// `spend_12m`, `rfm_m` the 12 months' spend); `None` for a plain field and for `rfm`.
fn ranked_field(field: &Field) -> Option<Field> {
    match field {
        Field::Ranked { of, .. } => Some((**of).clone()),
        Field::RfmScore(part) => Some(Field::Metric(part.metric())),
        _ => None,
    }
}

/// The range of `field`'s values a resolved relative leaf compares with.
fn range_of(resolved: &Condition, field: &Field) -> Option<(Scalar, Scalar)> {
    match resolved {
        Condition::All(items) | Condition::Any(items) => items.iter().find_map(|item| range_of(item, field)),
        Condition::Not(inner) => range_of(inner, field),
        Condition::Leaf { field: ranged, op: crate::domain::rule::Op::Between, value: Operand::Range(low, high) }
            if ranged == field =>
        {
            Some((low.clone(), high.clone()))
        }
        Condition::Leaf { .. } => None,
    }
}

impl Shape {
    fn verdict(self, values: &[Json], truths: &[Json]) -> Verdict {
        let truth = |index: usize| truths.get(index).and_then(Json::as_i64).unwrap_or(0) != 0;
        match self {
            Shape::All(items) => {
                let items: Vec<Verdict> = items.into_iter().map(|item| item.verdict(values, truths)).collect();
                Verdict { holds: items.iter().all(|item| item.holds), node: Node::All(items) }
            }
            Shape::Any(items) => {
                let items: Vec<Verdict> = items.into_iter().map(|item| item.verdict(values, truths)).collect();
                Verdict { holds: items.iter().any(|item| item.holds), node: Node::Any(items) }
            }
            Shape::Not(inner) => {
                let inner = inner.verdict(values, truths);
                Verdict { holds: !inner.holds, node: Node::Not(Box::new(inner)) }
            }
            Shape::Leaf { written, field, op, operand, value, truth: index, ranked } => Verdict {
                holds: truth(index),
                node: Node::Leaf(Box::new(LeafVerdict {
                    written,
                    field,
                    op,
                    operand,
                    value: value.and_then(|index| values.get(index).cloned()).unwrap_or(Json::Null),
                    ranked,
                })),
            },
        }
    }
}
