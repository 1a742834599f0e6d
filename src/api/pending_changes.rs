//! `/pending-changes`: changes of category asked for with `effective_at`, waiting for
//! their moment (生效日期), and what became of them.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read, Restrictable, Write};
use crate::api::error::{ApiError, Problem};
use crate::api::paging::{self, PageRequest};
use crate::api::schemas::AttributeValue;
use crate::api::{ok_versioned, AppState, IfMatch, Page};
use crate::domain::pending::PendingStatus;
use crate::domain::rule::parse_moment;
use crate::error::{AppError, ErrorCode};
use crate::service::classification::pending as service;
use crate::store::classification::pending::{PendingFilter, PendingRow};

/// A change of a customer's category in a scheme that takes effect at `effective_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingChange {
    pub id: i64,
    #[schema(example = "C0001")]
    pub customer: String,
    #[schema(example = "TIER")]
    pub scheme: String,
    #[schema(example = "01")]
    pub category: String,
    /// The pin the change sets; absent keeps the customer's.
    pub locked: Option<bool>,
    /// Values of the category's attributes given with the change.
    #[schema(value_type = BTreeMap<String, AttributeValue>)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub effective_at: DateTime<Utc>,
    /// The API key's name that asked for it; the history entry names it too.
    pub actor: String,
    pub reason: Option<String>,
    pub status: PendingStatus,
    /// Why a `failed` change was not applied: the code and detail of the refusal.
    #[schema(example = "category_inactive: category 01 of scheme TIER is inactive and takes no new assignments")]
    pub failure: Option<String>,
    /// When it was applied, cancelled or failed.
    pub settled_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<PendingRow> for PendingChange {
    type Error = AppError;

    fn try_from(row: PendingRow) -> Result<Self, AppError> {
        Ok(PendingChange {
            attributes: row.values()?,
            id: row.id,
            customer: row.customer_code,
            scheme: row.scheme_code,
            category: row.category_code,
            locked: row.locked,
            effective_at: row.effective_at.and_utc(),
            actor: row.actor,
            reason: row.reason,
            status: row.status,
            failure: row.failure,
            settled_at: row.settled_at.map(|at| at.and_utc()),
            version: row.version,
            created_at: row.created_at.and_utc(),
        })
    }
}

pub fn location(id: i64) -> String {
    format!("/api/v1/pending-changes/{id}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingQuery {
    scheme: Option<String>,
    customer: Option<String>,
    status: Option<String>,
    before: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Where a page of pending changes continues: after the one at `(at, id)`.
#[derive(Debug, Serialize, Deserialize)]
struct Position {
    at: NaiveDateTime,
    id: i64,
}

fn invalid_query(detail: String) -> AppError {
    AppError::new(ErrorCode::InvalidQuery, detail)
}

/// List pending changes
///
/// Changes of category waiting for their `effective_at`, and those applied, cancelled or failed, in
/// the order they take effect; filtered by scheme, customer, status and `before` (effective before
/// that moment). A restricted key sees those of customers it may see, to categories it may use.
#[utoipa::path(get, path = "/api/v1/pending-changes", tag = "assignments", operation_id = "list_pending_changes",
    params(("scheme" = Option<String>, Query, description = "Only this scheme"),
           ("customer" = Option<String>, Query, description = "Only this customer"),
           ("status" = Option<PendingStatus>, Query, description = "Only this status (`pending` for what is still to come)"),
           ("before" = Option<crate::api::schemas::Moment>, Query, description = "Only those taking effect before this moment: RFC 3339, or a date (its midnight UTC)"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses(
        (status = 200, description = "Ordered by `effective_at`, then id", body = Page<PendingChange>),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    query: web::Query<PendingQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let PageRequest { limit, after } = PageRequest::<Position>::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let status = query
        .status
        .map(|text| {
            PendingStatus::from_label(&text).ok_or_else(|| {
                invalid_query(format!("status {text:?} is not one of {}", PendingStatus::LABELS.join(", ")))
            })
        })
        .transpose()?;
    let before = query
        .before
        .map(|text| {
            parse_moment(&text).ok_or_else(|| {
                invalid_query(format!(
                    "before {text:?} is not an RFC 3339 time or a date {}",
                    crate::domain::MOMENT_RANGE
                ))
            })
        })
        .transpose()?;
    let filter = PendingFilter { scheme: query.scheme, customer: query.customer, status, before };
    let rows = service::list(
        &state.db,
        filter,
        after.map(|position| (position.at, position.id)),
        limit + 1,
        auth.caller.restriction,
    )
    .await?;
    let page: Page<PendingChange> =
        paging::into_page(rows, limit, |row: &PendingRow| Position { at: row.effective_at, id: row.id })?;
    Ok(HttpResponse::Ok().json(page))
}

/// Get a pending change
///
/// One change of category asked for with `effective_at`: waiting, applied, cancelled, or failed
/// with the reason.
#[utoipa::path(get, path = "/api/v1/pending-changes/{id}", tag = "assignments", operation_id = "get_pending_change",
    params(("id" = i64, Path, description = "Pending change id")),
    responses(
        (status = 200, description = "The change", body = PendingChange, headers(("ETag" = String))),
        (status = 404, description = "`pending_change_not_found` (also one the key may not see)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let change = PendingChange::try_from(service::get(&state.db, path.into_inner(), auth.caller.restriction).await?)?;
    Ok(ok_versioned(change.version, &change))
}

/// Cancel a pending change
///
/// Cancels a change that has not taken effect yet; it stays listed as `cancelled`, and the customer
/// no longer shows it.
#[utoipa::path(delete, path = "/api/v1/pending-changes/{id}", tag = "assignments", operation_id = "cancel_pending_change",
    params(("id" = i64, Path, description = "Pending change id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the pending change being cancelled")),
    responses(
        (status = 200, description = "The change, now `cancelled`", body = PendingChange, headers(("ETag" = String))),
        (status = 404, description = "`pending_change_not_found` (also one the key may not see)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`pending_change_settled`: it was applied, cancelled or failed already", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let row = service::cancel(&state.db, path.into_inner(), if_match.0, auth.caller.restriction).await?;
    let change = PendingChange::try_from(row)?;
    Ok(ok_versioned(change.version, &change))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/pending-changes").route(web::get().to(list)))
        .service(web::resource("/pending-changes/{id}").route(web::get().to(get)).route(web::delete().to(cancel)));
}
