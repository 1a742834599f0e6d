//! `GET /customers/{code}/classification/{scheme}/explanation`: why a customer stands
//! where it does in a scheme, and what would move it.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read, Restrictable};
use crate::api::customers::{HistoryEntry, PendingSummary};
use crate::api::error::{ApiError, Problem};
use crate::api::schemas::ConditionVerdict;
use crate::api::AppState;
use crate::domain::customer::CustomerStatus;
use crate::domain::explanation::{gap, number, Gap};
use crate::domain::rule::{Field, Kind, Op, Operand, Scalar};
use crate::domain::sales::Money;
use crate::error::AppError;
use crate::service::classification::explanation as service;
use crate::store::classification::explanation::{Explanation as Explained, LeafVerdict, Node, RuleVerdict, Verdict};

/// Why a customer is in its category of a scheme, and what would move it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    #[schema(example = "C0001")]
    pub customer: String,
    #[schema(example = "TIER")]
    pub scheme: String,
    /// The customer's category now (null: none).
    #[schema(example = "02")]
    pub category: Option<String>,
    /// Pinned by a person: classification runs leave it alone.
    pub locked: bool,
    /// Runs classify active customers only.
    pub status: CustomerStatus,
    /// How it got there: the latest change in the scheme (source, rule, actor, reason, when).
    pub last_change: Option<HistoryEntry>,
    /// The change planned for later in the scheme, if any.
    pub pending: Option<PendingSummary>,
    /// When the rules were evaluated.
    pub as_of: DateTime<Utc>,
    /// Every enabled rule in priority order, evaluated now for this customer.
    pub rules: Vec<RuleExplained>,
    /// What a classification run would do now.
    pub outcome: Outcome,
    /// Of an ordered scheme: how far the customer is from the tier above and the tier below.
    pub distance: Option<Distance>,
}

/// A rule evaluated for one customer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleExplained {
    pub id: i64,
    pub name: String,
    pub priority: i32,
    pub target_category: String,
    pub holds: bool,
    /// The first rule that holds: the one a run would apply.
    pub wins: bool,
    /// The condition as written, each node with `holds`; each leaf with `actual` (the
    /// customer's value: money as an exact decimal string, null for none) and, for a
    /// numeric comparison, `missing` (how far the value must move for it to hold) or
    /// `to_spare` (how far it may move and still hold). A relative leaf
    /// (`percentile(…)`, `cumulative_share(…)`, `rfm_*`) also has `at_todays_ranks`:
    /// the field it ranks and the range of its values that holds today.
    #[schema(value_type = ConditionVerdict, example = json!({"holds": false, "all": [{"field": "spend_12m", "op": ">", "value": 1000000, "actual": "750000.00", "holds": false, "missing": "250000.00"}]}))]
    pub condition: Json,
}

/// What a classification run would do now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Outcome {
    /// `moves` (to `category`, by `rule_id`), `held` (the rule would move it down, but the
    /// scheme's tier policy keeps it for now: `detail` says for how long), `stays` (a rule
    /// holds for its category, or none holds), `pinned` (the customer is pinned) or
    /// `inactive` (runs skip it).
    #[schema(example = "moves")]
    pub kind: String,
    pub category: Option<String>,
    pub rule_id: Option<i64>,
    /// For `held`: the runs and the stay the policy still waits for.
    pub detail: Option<String>,
}

/// The distance to the neighbouring tiers of an ordered scheme.
#[derive(Debug, Serialize, ToSchema)]
pub struct Distance {
    /// The next higher rank (from no category: the lowest); null at the top.
    pub above: Option<Tier>,
    /// The next lower rank; null at the bottom or without a category.
    pub below: Option<Tier>,
}

/// A neighbouring tier and the numeric comparisons of the rules that lead there.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tier {
    pub category: String,
    pub rank: i32,
    /// The leaves of the enabled rules targeting it that compare numbers, each with
    /// `rule_id`, `actual`, `holds` and `missing` or `to_spare`.
    #[schema(value_type = Vec<ConditionVerdict>)]
    pub conditions: Vec<Json>,
}

/// Explain a customer's category
///
/// Why the customer is in its category of the scheme (the latest change: source, rule, actor,
/// reason, when), its pin and pending change, every enabled rule evaluated now (each condition's
/// value for this customer, the comparison and whether it holds, relative fields at today's ranks)
/// with the rule a run would apply, and for ordered schemes how much is missing for the tier above
/// or to spare before the tier below.
#[utoipa::path(get, path = "/api/v1/customers/{code}/classification/{scheme}/explanation", tag = "rules", operation_id = "explain_classification",
    params(("code" = String, Path, description = "Customer code"), ("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 200, description = "The explanation", body = Explanation),
        (status = 404, description = "`customer_not_found` (also for a customer outside the key's restriction), `scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`rule_invalid`: an enabled rule no longer fits (as a run would refuse)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn explain(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (customer, scheme) = path.into_inner();
    let explained = service::explain(&state.db, customer, scheme, auth.caller.restriction, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(Explanation::try_from(explained)?))
}

impl TryFrom<Explained> for Explanation {
    type Error = AppError;

    fn try_from(explained: Explained) -> Result<Self, AppError> {
        let scheme = explained.scheme.code.clone();
        let held = explained.customer.assignments.iter().find(|assignment| assignment.scheme == scheme).cloned();
        let category = held.as_ref().map(|held| held.category.clone());
        let locked = held.as_ref().is_some_and(|held| held.locked);
        let status = explained.customer.row.status;
        let winner = explained.winner().map(|rule| (rule.rule.id, rule.rule.target_category.clone()));
        let outcome = |kind: &str, category: Option<String>, rule_id: Option<i64>| Outcome {
            kind: kind.into(),
            category,
            rule_id,
            detail: None,
        };
        let outcome = match (&winner, status, locked, &explained.tier_hold) {
            (_, status, _, _) if status != CustomerStatus::Active => outcome("inactive", None, None),
            (_, _, true, _) => outcome("pinned", None, None),
            (Some((id, target)), _, _, Some((policy, hold))) => {
                Outcome { detail: Some(hold.describe(policy)), ..outcome("held", Some(target.clone()), Some(*id)) }
            }
            (Some((id, target)), _, _, None) if Some(target) != category.as_ref() => {
                outcome("moves", Some(target.clone()), Some(*id))
            }
            (rule, _, _, _) => outcome("stays", None, rule.as_ref().map(|(id, _)| *id)),
        };
        let distance = distance(&explained, category.as_deref());
        let pending = explained.customer.pending.get(&scheme).map(|pending| PendingSummary {
            id: pending.id,
            category: pending.category.clone(),
            effective_at: pending.effective_at.and_utc(),
            actor: pending.actor.clone(),
            reason: pending.reason.clone(),
        });
        let winner_id = winner.map(|(id, _)| id);
        Ok(Explanation {
            customer: explained.customer.row.code.clone(),
            scheme,
            category,
            locked,
            status,
            last_change: explained.last_change.map(HistoryEntry::try_from).transpose()?,
            pending,
            as_of: explained.as_of.and_utc(),
            rules: explained
                .rules
                .iter()
                .map(|rule| RuleExplained {
                    id: rule.rule.id,
                    name: rule.rule.name.clone(),
                    priority: rule.rule.priority,
                    target_category: rule.rule.target_category.clone(),
                    holds: rule.condition.holds,
                    wins: Some(rule.rule.id) == winner_id,
                    condition: condition(&rule.condition),
                })
                .collect(),
            outcome,
            distance,
        })
    }
}

/// A verdict as JSON: the node as written, with `holds` and, at a leaf, what the
/// customer's value says.
fn condition(verdict: &Verdict) -> Json {
    let mut node = match &verdict.node {
        Node::All(items) => json!({"all": items.iter().map(condition).collect::<Vec<_>>()}),
        Node::Any(items) => json!({"any": items.iter().map(condition).collect::<Vec<_>>()}),
        Node::Not(inner) => json!({"not": condition(inner)}),
        Node::Leaf(leaf) => leaf_json(leaf, verdict.holds),
    };
    node["holds"] = json!(verdict.holds);
    node
}

fn leaf_json(leaf: &LeafVerdict, holds: bool) -> Json {
    let mut node: Map<String, Json> = leaf.written.as_object().cloned().unwrap_or_default();
    let measured = leaf.ranked.as_ref().map_or(&leaf.field, |(of, _)| of);
    node.insert("actual".into(), shown(measured, &leaf.value));
    let compared = match &leaf.ranked {
        Some((of, range)) => {
            let (from, to) = match range {
                Some((low, high)) => (scalar_shown(of, low), scalar_shown(of, high)),
                None => (Json::Null, Json::Null),
            };
            node.insert("at_todays_ranks".into(), json!({"field": field_name(of), "from": from, "to": to}));
            range.as_ref().map(|(low, high)| (Op::Between, Operand::Range(low.clone(), high.clone())))
        }
        None => Some((leaf.op, leaf.operand.clone())),
    };
    let actual = leaf.value.as_f64().or_else(|| leaf.value.as_str().and_then(|text| text.parse().ok()));
    if let (Some((op, operand)), Some(actual)) = (compared, actual) {
        let numeric = matches!(measured.kind(), Kind::Money | Kind::Integer | Kind::Decimal);
        match gap(op, &operand, actual).filter(|_| numeric) {
            Some(Gap::Missing(amount)) if !holds => {
                node.insert("missing".into(), amount_shown(measured, amount));
            }
            Some(Gap::ToSpare(amount)) if holds => {
                node.insert("to_spare".into(), amount_shown(measured, amount));
            }
            _ => {}
        }
    }
    Json::Object(node)
}

/// The name of a field as conditions write it, for the fields a relative leaf ranks.
fn field_name(field: &Field) -> String {
    match field {
        Field::Metric(metric) => metric.name().to_string(),
        Field::Attribute { key, .. } => format!("attributes.{key}"),
        _ => "rfm".into(),
    }
}

/// A value as the API shows the field's values: money as an exact decimal string,
/// booleans as booleans.
fn shown(field: &Field, value: &Json) -> Json {
    match (field.kind(), value) {
        (_, Json::Null) => Json::Null,
        (Kind::Money, value) => value
            .as_f64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .map_or(value.clone(), |cents| json!(Money::from_cents(cents.round() as i64).to_string())),
        (Kind::Boolean, value) => value.as_f64().map_or(value.clone(), |flag| json!(flag != 0.0)),
        (_, value) => value.clone(),
    }
}

fn scalar_shown(field: &Field, scalar: &Scalar) -> Json {
    match number(scalar) {
        Some(n) => shown(field, &json!(n)),
        None => Json::Null,
    }
}

fn amount_shown(field: &Field, amount: f64) -> Json {
    match field.kind() {
        Kind::Money => json!(Money::from_cents(amount.round() as i64).to_string()),
        Kind::Integer => json!(amount.round() as i64),
        _ => json!(amount),
    }
}

/// The neighbouring tiers of the customer's category, with the numeric leaves of the
/// rules that lead to each.
fn distance(explained: &Explained, category: Option<&str>) -> Option<Distance> {
    if !explained.scheme.ordered || explained.ranks.is_empty() {
        return None;
    }
    let rank = category.and_then(|code| explained.ranks.iter().find(|(ranked, _)| ranked == code).map(|(_, r)| *r));
    let above = match rank {
        Some(rank) => explained.ranks.iter().find(|(_, other)| *other > rank),
        None if category.is_none() => explained.ranks.first(),
        None => None,
    };
    let below = rank.and_then(|rank| explained.ranks.iter().rev().find(|(_, other)| *other < rank));
    let tier = |(code, rank): &(String, i32)| Tier {
        category: code.clone(),
        rank: *rank,
        conditions: explained
            .rules
            .iter()
            .filter(|rule| &rule.rule.target_category == code)
            .flat_map(numeric_leaves)
            .collect(),
    };
    Some(Distance { above: above.map(tier), below: below.map(tier) })
}

fn numeric_leaves(rule: &RuleVerdict) -> Vec<Json> {
    fn walk(verdict: &Verdict, rule_id: i64, found: &mut Vec<Json>) {
        match &verdict.node {
            Node::All(items) | Node::Any(items) => items.iter().for_each(|item| walk(item, rule_id, found)),
            Node::Not(inner) => walk(inner, rule_id, found),
            Node::Leaf(leaf) => {
                let measured = leaf.ranked.as_ref().map_or(&leaf.field, |(of, _)| of);
                if matches!(measured.kind(), Kind::Money | Kind::Integer | Kind::Decimal) {
                    let mut node = leaf_json(leaf, verdict.holds);
                    node["holds"] = json!(verdict.holds);
                    node["rule_id"] = json!(rule_id);
                    found.push(node);
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(&rule.condition, rule.rule.id, &mut found);
    found
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/customers/{code}/classification/{scheme}/explanation").route(web::get().to(explain)));
}
