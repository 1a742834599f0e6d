//! Assignment: `PUT/DELETE /customers/{code}/categories/{scheme}` and `POST /assignments/batch`.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Caller, Restrictable, Write};
use crate::api::customers::{parse_reason, Customer};
use crate::api::error::{json_error, ApiError, Problem};
use crate::api::pending_changes::{location, PendingChange};
use crate::api::schemas::AttributeValue;
use crate::api::{etag, ok_versioned, AppState, FieldErrors, IfMatch};
use crate::db::Clock;
use crate::domain::category::CategoryCode;
use crate::domain::customer::CustomerCode;
use crate::domain::history::Source;
use crate::domain::pending;
use crate::domain::rule::parse_moment;
use crate::domain::FieldError;
use crate::service::classification::assignments::{self as service, BatchPlacement, Changer, Placement};
use crate::store::classification::assignments::{BatchOutcome, PendingRule, MAX_BATCH};
use crate::store::classification::pending::PendingRow;
use crate::store::classification::Provenance;

/// Assign or re-assign a customer in one scheme.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"category": "01", "reason": "年度销售额超过100万", "locked": false, "attributes": {"account_manager": "王芳"}}))]
pub struct AssignmentPut {
    /// An active leaf category of the scheme.
    #[schema(example = "01")]
    pub category: String,
    /// Why; kept in the history (up to 500 characters).
    #[schema(example = "年度销售额超过100万")]
    pub reason: Option<String>,
    /// Pin the assignment so that rules leave it alone; absent keeps the current pin.
    pub locked: Option<bool>,
    /// Values for attributes the new category defines (for example a required one
    /// it has no default for), checked and stored with the move.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, AttributeValue>, example = json!({"account_manager": "王芳"}))]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When the change takes effect (生效日期): an RFC 3339 time, or a date (its midnight
    /// UTC), in the future. Absent: now. With it the answer is 202 and a pending
    /// change that replaces the customer's pending change in this scheme, if any.
    #[schema(value_type = Option<crate::api::schemas::Moment>, example = "2027-01-01T00:00:00+08:00")]
    pub effective_at: Option<String>,
    /// A change made now cancels the customer's pending change in this scheme;
    /// `true` keeps it (it then still takes effect at its moment).
    #[serde(default)]
    pub keep_pending: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnassignQuery {
    reason: Option<String>,
    keep_pending: Option<bool>,
}

/// When a change takes effect: now (with what becomes of a pending change), or later.
enum When {
    Now(PendingRule),
    At(NaiveDateTime),
}

/// `effective_at` and `keep_pending` of a request, checked against the clock.
fn when(errors: &mut FieldErrors, clock: &Clock, effective_at: Option<&str>, keep_pending: bool) -> Option<When> {
    let Some(text) = effective_at else {
        return Some(When::Now(if keep_pending { PendingRule::Keep } else { PendingRule::Cancel }));
    };
    if keep_pending {
        errors.check::<()>(Err(FieldError::new("keep_pending", "applies only to a change made now")));
    }
    let at = errors.check(parse_moment(text).ok_or_else(|| {
        FieldError::new("effective_at", format!("must be an RFC 3339 time or a date {}", crate::domain::MOMENT_RANGE))
    }))?;
    errors.check(pending::effective_at("effective_at", at, clock.now())).map(When::At)
}

/// 202 with the pending change and where to follow it.
fn scheduled(row: PendingRow) -> Result<HttpResponse, ApiError> {
    let change = PendingChange::try_from(row)?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location(change.id)))
        .insert_header(etag(change.version))
        .json(change))
}

/// Assign a customer to a category
///
/// Puts the customer in a leaf category of the scheme, or moves it there, with `reason` recorded in
/// its history and a `classification.changed` event. `locked: true` pins it against classification
/// runs. `If-Match` with the customer's version guards against lost updates. With `effective_at` the
/// change waits as a pending change (202) and is applied at that moment, with history of source
/// `scheduled`; a change made now cancels the customer's pending change in the scheme unless
/// `keep_pending` is true.
#[utoipa::path(put, path = "/api/v1/customers/{code}/categories/{scheme}", tag = "assignments", operation_id = "assign_customer",
    request_body = AssignmentPut,
    params(("code" = String, Path, description = "Customer code"), ("scheme" = String, Path, description = "Scheme code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the customer version being changed")),
    responses(
        (status = 200, description = "The customer with its new category and version", body = Customer, headers(("ETag" = String))),
        (status = 202, description = "With `effective_at`: the pending change, which replaced the customer's pending change in the scheme, if any", body = PendingChange, headers(("Location" = String), ("ETag" = String))),
        (status = 403, description = "`outside_restriction`: the key is restricted, and the category is outside its subtrees", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer_not_found` (also for a customer outside the key's restriction), `scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`category_not_found`, `category_not_leaf`, `category_inactive`, `scheme_inactive`; `attribute_required` (the new category requires values the customer lacks; send them in `attributes`), `invalid_attributes`; `validation_failed` (`effective_at` not in the future, or with `keep_pending`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn assign(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<(String, String)>,
    if_match: IfMatch,
    body: web::Json<AssignmentPut>,
) -> Result<HttpResponse, ApiError> {
    let (customer, scheme) = path.into_inner();
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let category = errors.check(CategoryCode::parse("category", &body.category));
    let reason = errors.check(parse_reason(body.reason.as_deref()));
    let when = when(&mut errors, &state.clock, body.effective_at.as_deref(), body.keep_pending);
    errors.finish()?;
    let (category, reason, when) = (category.expect("checked"), reason.expect("checked"), when.expect("checked"));
    let placement =
        Placement { customer, scheme, category, locked: body.locked, values: body.attributes, expected: if_match.0 };
    let changer = manual(auth.caller, reason);
    let view = match when {
        When::At(effective_at) => {
            return scheduled(service::schedule(&state.db, placement, effective_at, changer).await?)
        }
        When::Now(pending) => service::assign(&state.db, placement, pending, changer).await?,
    };
    let customer = Customer::from(view);
    Ok(ok_versioned(customer.version, &customer))
}

/// Take a customer out of a scheme
///
/// Removes the customer's category in the scheme (`?reason=` for its history); refused with
/// `category_required` for a required scheme. A customer without a category there answers 200
/// unchanged.
#[utoipa::path(delete, path = "/api/v1/customers/{code}/categories/{scheme}", tag = "assignments", operation_id = "unassign_customer",
    params(("code" = String, Path, description = "Customer code"), ("scheme" = String, Path, description = "Scheme code"),
           ("reason" = Option<String>, Query, description = "Why; kept in the history"),
           ("keep_pending" = Option<bool>, Query, description = "Keep the customer's pending change in the scheme (by default this change cancels it)"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the customer version being changed")),
    responses(
        (status = 200, description = "The customer without a category in the scheme (also when it had none)", body = Customer, headers(("ETag" = String))),
        (status = 403, description = "`outside_restriction`: the key is restricted in this scheme, so the customer must keep a category in it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer_not_found` (also for a customer outside the key's restriction), `scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`category_required`: the scheme is required", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn unassign(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<(String, String)>,
    query: web::Query<UnassignQuery>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let (customer, scheme) = path.into_inner();
    let reason = parse_reason(query.reason.as_deref())?;
    let pending = if query.keep_pending.unwrap_or(false) { PendingRule::Keep } else { PendingRule::Cancel };
    let view = service::unassign(&state.db, customer, scheme, if_match.0, pending, manual(auth.caller, reason)).await?;
    let customer = Customer::from(view);
    Ok(ok_versioned(customer.version, &customer))
}

/// Put many customers into one category, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scheme": "TIER", "category": "01", "customers": ["C0001", "C0002"], "reason": "季度调整", "locked": false}))]
pub struct BatchAssign {
    #[schema(example = "TIER")]
    pub scheme: String,
    #[schema(example = "01")]
    pub category: String,
    /// Customer codes, at most 10,000; repeats count once.
    #[schema(example = json!(["C0001", "C0002"]))]
    pub customers: Vec<String>,
    pub reason: Option<String>,
    /// Pin (or unpin) every assignment; absent keeps each one's pin.
    pub locked: Option<bool>,
    /// When the changes take effect: a moment in the future, as for one customer.
    /// With it the answer is 202 and one pending change per customer.
    #[schema(value_type = Option<crate::api::schemas::Moment>, example = "2027-01-01")]
    pub effective_at: Option<String>,
    /// Changes made now cancel the customers' pending changes in this scheme; `true` keeps them.
    #[serde(default)]
    pub keep_pending: bool,
}

/// A batch stored as pending changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchScheduled {
    pub scheme: String,
    pub category: String,
    pub effective_at: DateTime<Utc>,
    /// Distinct customers in the request, each with a pending change now (replacing
    /// the one it had in this scheme); `GET /pending-changes?scheme=&status=pending`.
    pub scheduled: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub scheme: String,
    pub category: String,
    /// Distinct customers in the request.
    pub requested: usize,
    /// Customers whose category (or pin) changed; each has a history entry for a category change.
    pub changed: usize,
    /// Customers already in the category.
    pub unchanged: usize,
}

/// Assign many customers at once
///
/// Moves up to 10,000 customers into one leaf category, all or nothing (`customers_not_found` lists
/// unknown codes); each move gets its history entry and event, as a single assignment would. With
/// `effective_at`, one pending change per customer instead (202), applied at that moment.
#[utoipa::path(post, path = "/api/v1/assignments/batch", tag = "assignments", operation_id = "assign_batch", request_body = BatchAssign,
    responses(
        (status = 200, description = "Every customer is in the category", body = BatchResult),
        (status = 202, description = "With `effective_at`: every customer has a pending change to the category", body = BatchScheduled),
        (status = 403, description = "`outside_restriction`: the key is restricted, and the category is outside its subtrees", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`customers_not_found` (lists every unknown code, and every customer outside the key's restriction, in `errors`; nothing changed), `scheme_not_found`, `category_not_found`, `category_not_leaf`, `category_inactive`, `validation_failed`; `attribute_required`, `invalid_attributes` (fields named `CODE.attributes.KEY`; nothing changed)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    body: web::Json<BatchAssign>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let category = errors.check(CategoryCode::parse("category", &body.category));
    let reason = errors.check(parse_reason(body.reason.as_deref()));
    if body.customers.is_empty() || body.customers.len() > MAX_BATCH {
        errors.check::<()>(Err(FieldError::new("customers", format!("must list 1 to {MAX_BATCH} customer codes"))));
    }
    let codes: Vec<CustomerCode> = body
        .customers
        .iter()
        .enumerate()
        .filter_map(|(i, code)| errors.check(CustomerCode::parse(&format!("customers[{i}]"), code)))
        .collect();
    let when = when(&mut errors, &state.clock, body.effective_at.as_deref(), body.keep_pending);
    errors.finish()?;
    let (category, reason, when) = (category.expect("checked"), reason.expect("checked"), when.expect("checked"));
    let category_code = category.as_str().to_string();
    let batch = BatchPlacement { scheme: body.scheme.clone(), category, customers: codes, locked: body.locked };
    let changer = manual(auth.caller, reason);
    let pending = match when {
        When::Now(pending) => pending,
        When::At(effective_at) => {
            let scheduled = service::schedule_batch(&state.db, batch, effective_at, changer).await?;
            return Ok(HttpResponse::Accepted().json(BatchScheduled {
                scheme: body.scheme,
                category: category_code,
                effective_at: effective_at.and_utc(),
                scheduled,
            }));
        }
    };
    let BatchOutcome { requested, changed, unchanged } =
        service::assign_batch(&state.db, batch, pending, changer).await?;
    Ok(HttpResponse::Ok().json(BatchResult {
        scheme: body.scheme,
        category: category_code,
        requested,
        changed,
        unchanged,
    }))
}

/// A change a person makes by hand, held to the key's restriction.
fn manual(caller: Caller, reason: Option<String>) -> Changer {
    Changer { provenance: Provenance::new(&caller.name, Source::Manual, reason), restriction: caller.restriction }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/customers/{code}/categories/{scheme}")
            .route(web::put().to(assign))
            .route(web::delete().to(unassign)),
    )
    .service(
        web::resource("/assignments/batch")
            // 10,000 codes of up to 40 characters fit well within the bulk limit.
            .app_data(web::JsonConfig::default().limit(super::BULK_JSON_BODY_LIMIT).error_handler(json_error))
            .route(web::post().to(batch)),
    );
}
