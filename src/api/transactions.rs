//! `POST /transactions` (sales facts from other ERP services) and `GET /customers/{code}/metrics`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read, Restrictable, Write};
use crate::api::error::{json_error, ApiError, Problem};
use crate::api::runs::Run;
use crate::api::AppState;
use crate::domain::rule::parse_moment;
use crate::domain::sales::{ExternalId, Money};
use crate::error::{AppError, ErrorCode};
use crate::service::archive::sales::{self as service, Among, AutoClassified, AutoRuns};
use crate::store::archive::transactions::{NewTransaction, Outcome, MAX_BATCH};

/// Bodies of up to 10,000 transactions.
/// How far ahead of the service's clock `occurred_at` may lie (clock skew, time zones).
const FUTURE_TOLERANCE: chrono::Duration = chrono::Duration::days(1);

/// One sales transaction, as a sender posts it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionIn {
    /// The sender's id, 1–100 characters; posting it again changes nothing.
    #[schema(example = "SO-2026-000123")]
    pub external_id: String,
    #[schema(example = "C0001")]
    pub customer_code: String,
    /// Exact decimal with at most two places, as a JSON number or string; negative for refunds.
    #[schema(value_type = String, example = "12500.00")]
    pub amount: Box<RawValue>,
    /// RFC 3339.
    #[schema(example = "2026-11-20T10:30:00+08:00")]
    pub occurred_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Created,
    Duplicate,
    Rejected,
}

/// What happened to one posted transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// Position in the posted array.
    pub index: usize,
    pub external_id: Option<String>,
    pub status: ItemStatus,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// A scheme with `auto_classify` re-classifying the customers that just got transactions.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoClassification {
    pub scheme: String,
    /// The run, when it ran.
    pub run: Option<Run>,
    /// Why it did not run (for example `run_in_progress`).
    pub skipped: Option<String>,
}

/// The outcome of a posted batch: valid items landed even when others were rejected.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestionResult {
    pub created: usize,
    pub duplicate: usize,
    pub rejected: usize,
    pub items: Vec<ItemResult>,
    pub classification: Vec<AutoClassification>,
}

fn parse_item(raw: &RawValue, now: chrono::NaiveDateTime) -> (Option<String>, Result<NewTransaction, String>) {
    let item: TransactionIn = match serde_json::from_str(raw.get()) {
        Ok(item) => item,
        Err(error) => return (None, Err(format!("not a transaction: {error}"))),
    };
    let external_id = Some(item.external_id.clone());
    let mut reasons = Vec::new();
    let id = ExternalId::parse("external_id", &item.external_id)
        .map_err(|e| reasons.push(format!("external_id {}", e.message)))
        .ok();
    let code = crate::domain::customer::CustomerCode::parse("customer_code", &item.customer_code)
        .map_err(|e| reasons.push(format!("customer_code {}", e.message)))
        .ok();
    let amount = Money::from_json_text(item.amount.get()).map_err(|e| reasons.push(format!("amount: {e}"))).ok();
    let occurred_at = match DateTime::parse_from_rfc3339(&item.occurred_at) {
        Ok(at) if at.naive_utc() > now + FUTURE_TOLERANCE => {
            reasons.push("occurred_at lies more than a day in the future".into());
            None
        }
        Ok(at) if !crate::domain::moment_in_range(at.naive_utc()) => {
            reasons.push(format!("occurred_at must lie {}", crate::domain::MOMENT_RANGE));
            None
        }
        Ok(at) => Some(at.naive_utc()),
        Err(_) => {
            reasons.push(format!("occurred_at {:?} is not an RFC 3339 time", item.occurred_at));
            None
        }
    };
    match (id, code, amount, occurred_at) {
        (Some(external_id), Some(code), Some(amount), Some(occurred_at)) if reasons.is_empty() => (
            external_id.as_str().to_string().into(),
            Ok(NewTransaction { external_id, customer_code: code.as_str().to_string(), amount, occurred_at }),
        ),
        _ => (external_id, Err(reasons.join("; "))),
    }
}

/// Record sales facts
///
/// Up to 10,000 sales or returns from an ERP service, each with an external id that makes
/// re-sending idempotent; they feed the sales metrics that rules and reports use.
#[utoipa::path(post, path = "/api/v1/transactions", tag = "transactions", operation_id = "post_transactions",
    request_body(content = Vec<TransactionIn>, description = "Up to 10,000 transactions",
        example = json!([{"external_id": "SO-2026-000123", "customer_code": "C0001", "amount": "12500.00", "occurred_at": "2026-11-20T10:30:00+08:00"}, {"external_id": "RT-2026-000007", "customer_code": "C0001", "amount": "-800.00", "occurred_at": "2026-11-25T09:00:00+08:00"}])),
    responses(
        (status = 200, description = "Per-item results; valid items are stored even when others are rejected", body = IngestionResult),
        (status = 422, description = "`too_many_items`, `invalid_body` (not an array)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post(
    state: web::Data<AppState>,
    auth: Auth<Write>,
    body: web::Json<Vec<Box<RawValue>>>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.into_inner();
    if raw.len() > MAX_BATCH {
        return Err(AppError::validation(
            ErrorCode::TooManyItems,
            format!("{} transactions in one call; the most is {MAX_BATCH}", raw.len()),
            Vec::new(),
        )
        .into());
    }
    let now = crate::db::now();
    let (external_ids, items): (Vec<Option<String>>, Vec<Result<NewTransaction, String>>) =
        raw.iter().map(|item| parse_item(item, now)).unzip();
    let runs = AutoRuns {
        actor: auth.caller.name,
        at: state.clock.now(),
        batch_size: state.run_batch_size,
        shutdown: state.shutdown.clone(),
    };
    let (ingested, classified) = service::record(&state.db, items, runs).await?;
    let classification = classified.into_iter().map(AutoClassification::from).collect();
    let items: Vec<ItemResult> = ingested
        .outcomes
        .into_iter()
        .zip(external_ids)
        .enumerate()
        .map(|(index, (outcome, external_id))| {
            let (status, reason) = match outcome {
                Outcome::Created => (ItemStatus::Created, None),
                Outcome::Duplicate => (ItemStatus::Duplicate, None),
                Outcome::Rejected(reason) => (ItemStatus::Rejected, Some(reason)),
            };
            ItemResult { index, external_id, status, reason }
        })
        .collect();
    let count = |wanted: fn(&ItemStatus) -> bool| items.iter().filter(|item| wanted(&item.status)).count();
    Ok(HttpResponse::Ok().json(IngestionResult {
        created: count(|s| matches!(s, ItemStatus::Created)),
        duplicate: count(|s| matches!(s, ItemStatus::Duplicate)),
        rejected: count(|s| matches!(s, ItemStatus::Rejected)),
        items,
        classification,
    }))
}

impl From<AutoClassified> for AutoClassification {
    fn from(classified: AutoClassified) -> Self {
        let (run, skipped) = match classified.run {
            Ok(run) => (Some(Run::from(run)), None),
            Err(error) => (None, Some(format!("{}: {}", error.code, error.detail))),
        };
        AutoClassification { scheme: classified.scheme, run, skipped }
    }
}

/// A customer's metrics from its transactions. Amounts are exact decimal strings.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerMetrics {
    pub customer: String,
    pub as_of: DateTime<Utc>,
    /// Net of refunds, in the 12 months up to `as_of` (after `as_of` − 12 months, up to and including `as_of`).
    #[schema(value_type = String, example = "1250000.00")]
    pub spend_12m: Money,
    /// Transactions with a positive amount in the same window.
    pub orders_12m: i64,
    /// Net of refunds, up to `as_of`.
    #[schema(value_type = String, example = "3400000.50")]
    pub lifetime_spend: Money,
    /// The latest transaction with a positive amount up to `as_of`; null if none.
    pub last_order_at: Option<DateTime<Utc>>,
    /// Calendar days (UTC) from `last_order_at` to `as_of`; null if no order.
    pub days_since_last_order: Option<i64>,
    /// RFM scores among `population`: only when it is asked for; null for a customer
    /// outside it, such as an inactive one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RfmScores>)]
    pub rfm: Option<Option<RfmScores>>,
    /// Percentiles and cumulative shares among `population`: only when it is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standing: Option<MetricStanding>,
}

/// Recency (fewer days since the last order score higher), frequency (`orders_12m`)
/// and monetary value (`spend_12m`), each a quintile 1–5 by rank among the customers
/// with orders, equal values scoring equal; a customer without orders scores 1 on each.
#[derive(Debug, Serialize, ToSchema)]
pub struct RfmScores {
    pub r: i64,
    pub f: i64,
    pub m: i64,
    /// The three as one string, as rules compare `rfm`.
    #[schema(example = "545")]
    pub rfm: String,
}

/// Where the customer's metrics stand among a population, as rules rank them.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricStanding {
    /// `all` (every active customer) or `SCHEME:CODE` (those of a subtree).
    #[schema(example = "REGION:01")]
    pub population: String,
    /// Whether the customer belongs to it; outside it, every value is null.
    pub member: bool,
    /// 0–100: the share of the rest of the population with a smaller value.
    pub percentile: RankedMetrics,
    /// 0–100: the share of the population's positive total held by customers with this value or more.
    pub cumulative_share: RankedMetrics,
}

/// One number per ranked metric; null where the customer has no value.
#[derive(Debug, Serialize, ToSchema)]
pub struct RankedMetrics {
    pub spend_12m: Option<f64>,
    pub orders_12m: Option<f64>,
    pub lifetime_spend: Option<f64>,
    pub days_since_last_order: Option<f64>,
}

impl From<[Option<f64>; 4]> for RankedMetrics {
    fn from([spend_12m, orders_12m, lifetime_spend, days_since_last_order]: [Option<f64>; 4]) -> Self {
        RankedMetrics { spend_12m, orders_12m, lifetime_spend, days_since_last_order }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    as_of: Option<String>,
    population: Option<String>,
}

/// Get a customer's sales metrics
///
/// Spend and orders over 12 months, lifetime spend, days since the last order, as of a moment; with
/// `population`, where the customer ranks (percentiles, cumulative shares, RFM scores) among the
/// active customers the key may see.
#[utoipa::path(get, path = "/api/v1/customers/{code}/metrics", tag = "transactions", operation_id = "get_customer_metrics",
    params(("code" = String, Path, description = "Customer code"),
           ("as_of" = Option<crate::api::schemas::Moment>, Query, description = "RFC 3339 time or date (YYYY-MM-DD, its midnight UTC); default now"),
           ("population" = Option<String>, Query, description = "`all` or `SCHEME:CODE`: adds `rfm` and `standing` (percentiles and cumulative shares) among the active customers (of that subtree) that the key may see; this reads the whole population")),
    responses(
        (status = 200, description = "The metrics", body = CustomerMetrics),
        (status = 400, description = "`invalid_query`: as_of is not a time", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_population`: population is neither `all` nor `SCHEME:CODE` of an existing category", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
    query: web::Query<MetricsQuery>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let MetricsQuery { as_of, population } = query.into_inner();
    let as_of = match as_of {
        Some(text) => parse_moment(&text).ok_or_else(|| {
            AppError::new(
                ErrorCode::InvalidQuery,
                format!("as_of {text:?} is not an RFC 3339 time or a date {}", crate::domain::MOMENT_RANGE),
            )
        })?,
        None => crate::db::now(),
    };
    let among = match population.as_deref() {
        None => Among::Nobody,
        Some("all") => Among::All,
        Some(text) => Among::Category(text.to_string()),
    };
    let (metrics, standings) = service::metrics(&state.db, code.clone(), as_of, among, auth.caller.restriction).await?;
    let (rfm, standing) = match (population, standings) {
        (Some(population), Some(standings)) => {
            let [r, f, m] = standings.rfm;
            let rfm = standings.member.then(|| RfmScores { r, f, m, rfm: format!("{r}{f}{m}") });
            let standing = MetricStanding {
                population,
                member: standings.member,
                percentile: standings.percentiles.into(),
                cumulative_share: standings.cumulative_shares.into(),
            };
            (Some(rfm), Some(standing))
        }
        _ => (None, None),
    };
    Ok(HttpResponse::Ok().json(CustomerMetrics {
        customer: code,
        as_of: metrics.as_of.and_utc(),
        spend_12m: metrics.spend_12m,
        orders_12m: metrics.orders_12m,
        lifetime_spend: metrics.lifetime_spend,
        last_order_at: metrics.last_order_at.map(|at| at.and_utc()),
        days_since_last_order: metrics.days_since_last_order,
        rfm,
        standing,
    }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/transactions")
            .app_data(web::JsonConfig::default().limit(super::BULK_JSON_BODY_LIMIT).error_handler(json_error))
            .route(web::post().to(post)),
    )
    .service(web::resource("/customers/{code}/metrics").route(web::get().to(metrics)));
}
