//! `/webhooks`: endpoints that are sent the change feed's events, signed as the
//! Standard Webhooks specification has it (see `webhook_sender`), their secrets
//! (shown once), their delivery log, and replays.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Caller, Restrictable, Write};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::events::unknown_event_type;
use crate::api::paging::parse_limit_within;
use crate::api::{created_versioned, explicit_null, ok_versioned, AppState, FieldErrors, IfMatch, Page};
use crate::db::now;
use crate::domain::event::{Cursor, TypeFilter};
use crate::domain::webhook::{private_refusal, DeliveryOutcome, WebhookSecret, WebhookUrl};
use crate::domain::{clean_optional_text, FieldError};
use crate::error::{AppError, ErrorCode};
use crate::service::webhook_sender::resolves_only_privately;
use crate::service::webhooks::{self as service, Manager, Subscription};
use crate::store::feed::webhooks::{DeliveryRow, WebhookChange, WebhookRow};

/// An endpoint, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    #[schema(example = "https://crm.example.com/hooks/custclass")]
    pub url: String,
    pub description: Option<String>,
    /// The event types and families it is sent, as given; empty: every type.
    #[schema(example = json!(["classification.changed", "customer.*"]))]
    pub types: Vec<String>,
    /// Disabled endpoints are sent nothing; one failing for 24 hours is disabled by
    /// the service (`disabled_reason` says why, and a `webhook.disabled` event records it).
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The feed cursor it has been delivered through: every event of its types up to
    /// here was delivered (or, if it was past its retention, skipped and logged).
    #[schema(example = "1042")]
    pub delivered_through: String,
    /// Failed attempts on its next event since the last success.
    pub failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// When the next event is tried again after a failure.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Until then, deliveries are also signed with the secret the last rotation replaced.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The key that created it.
    pub created_by: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Self {
        Webhook {
            id: row.id,
            types: row.type_names(),
            url: row.url,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            delivered_through: row.delivered_through.to_string(),
            failures: row.failures,
            failing_since: row.failing_since.map(utc),
            next_attempt_at: row.next_attempt_at.map(utc),
            previous_secret_expires_at: row.previous_secret_until.filter(|until| *until > now()).map(utc),
            created_by: row.created_by,
            version: row.version,
            created_at: utc(row.created_at),
            updated_at: utc(row.updated_at),
        }
    }
}

/// An endpoint and its signing secret, which is shown in this response only.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` and the base64 of the key: verify `webhook-signature` with it.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://erp.example.com/hooks/custclass", "types": ["classification.changed", "customer.*"], "description": "ERP 客户同步"}))]
pub struct WebhookCreate {
    /// `http(s)`; not on loopback or private networks unless `WEBHOOK_ALLOW_PRIVATE=true`.
    pub url: String,
    /// Types and families (`customer.*`); absent or empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    pub description: Option<String>,
}

/// Changes to an endpoint; absent fields stay as they are. Any change takes effect
/// from the next batch of deliveries.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true, "types": ["classification.changed"]}))]
pub struct WebhookPatch {
    pub url: Option<String>,
    /// Empty: every type.
    pub types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `true` on a disabled endpoint starts it again from where it stopped.
    pub enabled: Option<bool>,
}

/// The types as stored (comma-separated, as given, each once), checked.
fn parse_types(types: &[String]) -> Result<Option<String>, AppError> {
    let mut given: Vec<&str> = Vec::new();
    for name in types.iter().map(|name| name.trim()) {
        if name.contains(',') || name.is_empty() {
            return Err(unknown_event_type(FieldError::new(
                "types",
                format!("{name:?} is not an event type or family; give one per item"),
            )));
        }
        if !given.contains(&name) {
            given.push(name);
        }
    }
    let joined = given.join(",");
    TypeFilter::parse("types", &joined).map_err(unknown_event_type)?;
    Ok((!joined.is_empty()).then_some(joined))
}

/// A receiver's URL, refused (SSRF) when it is, or its name resolves only to, an
/// internal address.
async fn parse_url(state: &AppState, text: &str, errors: &mut FieldErrors) -> Option<WebhookUrl> {
    let url = errors.check(WebhookUrl::parse("url", text, state.webhook_allow_private))?;
    if !state.webhook_allow_private && url.literal_address().is_none() && resolves_only_privately(&url).await {
        let host = url.host_name().unwrap_or_default().to_string();
        errors.check::<()>(Err(FieldError::new(
            "url",
            private_refusal(&format!("{host} resolves only to an address that")),
        )));
        return None;
    }
    Some(url)
}

/// A restricted key manages the endpoints it created only; others manage every one.
fn manager(caller: Caller) -> Manager {
    Manager { name: caller.name, restriction: caller.restriction }
}

fn location(id: i64) -> String {
    format!("/api/v1/webhooks/{id}")
}

/// Subscribe a webhook
///
/// Sends the feed's events (optionally of some types) to an endpoint on a public address, signed as
/// Standard Webhooks sign and retried with back-off; the `whsec_` secret is in this answer only. A
/// restricted key's webhook is sent what the key may see.
#[utoipa::path(post, path = "/api/v1/webhooks", operation_id = "create_webhook", tag = "webhooks", request_body = WebhookCreate,
    responses(
        (status = 201, description = "Created; sent the events numbered from now on. The secret is in this response only", body = WebhookWithSecret, headers(("Location" = String), ("ETag" = String))),
        (status = 422, description = "`validation_failed` (a URL that is not http(s), carries credentials, or points at an internal address), `unknown_event_type`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    body: web::Json<WebhookCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let url = parse_url(&state, &body.url, &mut errors).await;
    let description = errors.check(clean_optional_text("description", body.description.as_deref(), 500));
    errors.finish()?;
    let types = parse_types(&body.types)?;
    let (url, description) = (url.expect("checked"), description.expect("checked"));
    let secret = WebhookSecret::generate();
    let exposed = secret.expose().to_string();
    let subscription = Subscription { url, description, types, secret };
    let row = service::create(&state.db, manager(auth.caller), subscription).await?;
    let webhook = Webhook::from(row);
    Ok(created_versioned(location(webhook.id), webhook.version, &WebhookWithSecret { webhook, secret: exposed }))
}

/// List webhooks
///
/// The webhooks the key may manage (a restricted key: the ones it created), with their delivery
/// state.
#[utoipa::path(get, path = "/api/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    responses((status = 200, description = "Every endpoint, without secrets", body = Page<Webhook>)))]
pub async fn list(state: web::Data<AppState>, auth: Auth<Write, Restrictable>) -> Result<HttpResponse, ApiError> {
    let rows = service::list(&state.db, manager(auth.caller)).await?;
    Ok(HttpResponse::Ok().json(Page::complete(rows.into_iter().map(Webhook::from).collect())))
}

/// Get a webhook
///
/// One webhook: its URL, event types, whether it is enabled and how its deliveries stand.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The endpoint and its delivery state", body = Webhook, headers(("ETag" = String))),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let webhook = Webhook::from(service::get(&state.db, manager(auth.caller), id).await?);
    Ok(ok_versioned(webhook.version, &webhook))
}

/// Change a webhook
///
/// Changes its URL, event types or whether it is enabled; re-enabling one disabled after failures
/// resumes from where it stopped.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", operation_id = "update_webhook", tag = "webhooks", request_body = WebhookPatch,
    params(("id" = i64, Path, description = "Webhook id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Updated", body = Webhook, headers(("ETag" = String))),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `unknown_event_type`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
    if_match: IfMatch,
    body: web::Json<WebhookPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let url = match &body.url {
        Some(text) => parse_url(&state, text, &mut errors).await,
        None => None,
    };
    let description = match &body.description {
        Some(text) => errors.check(clean_optional_text("description", text.as_deref(), 500)),
        None => None,
    };
    errors.finish()?;
    let types = body.types.as_deref().map(parse_types).transpose()?;
    let change = WebhookChange { url, description, types, enabled: body.enabled };
    let webhook = Webhook::from(service::update(&state.db, manager(auth.caller), id, if_match.0, change).await?);
    Ok(ok_versioned(webhook.version, &webhook))
}

/// Delete a webhook
///
/// Stops and removes the subscription.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being deleted")),
    responses(
        (status = 204, description = "Deleted, with its delivery log; nothing more is sent to it"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    service::delete(&state.db, manager(auth.caller), id, if_match.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate a webhook's signing secret
///
/// Makes a new secret, shown once; for 24 hours requests carry two signatures, by the new secret
/// and the old one, so that a receiver can switch without losing a delivery.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", operation_id = "rotate_webhook_secret", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "A new secret, shown this once. For 24 hours deliveries carry a signature by the old secret too", body = WebhookWithSecret, headers(("ETag" = String))),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let secret = WebhookSecret::generate();
    let exposed = secret.expose().to_string();
    let webhook = Webhook::from(service::rotate_secret(&state.db, manager(auth.caller), id, if_match.0, secret).await?);
    Ok(ok_versioned(webhook.version, &WebhookWithSecret { webhook, secret: exposed }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    after: Option<String>,
}

/// Deliver a webhook's events again
///
/// Sends again the events after a cursor (`after`, an event id), for a receiver that lost some.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", operation_id = "replay_webhook", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id"),
           ("after" = String, Query, description = "A feed cursor (an event id, or `0` for the oldest kept): every event of its types after it is sent again, in order"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Delivery goes on from the cursor, its failures cleared", body = Webhook, headers(("ETag" = String))),
        (status = 400, description = "`invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`cursor_expired`: retention deleted events after the cursor", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
    query: web::Query<ReplayQuery>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let cursor = match Cursor::parse("after", query.into_inner().after.as_deref()) {
        Ok(Cursor::After(position)) => Cursor::After(position),
        _ => {
            return Err(AppError::new(
                ErrorCode::InvalidCursor,
                "`after` is an event id (a cursor of the feed) to replay after",
            )
            .into())
        }
    };
    let webhook = Webhook::from(service::replay(&state.db, manager(auth.caller), id, if_match.0, cursor).await?);
    Ok(ok_versioned(webhook.version, &webhook))
}

/// One attempt to deliver one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    /// The event's id in the feed (the `webhook-id` header).
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first try of this event, counting up while it fails.
    pub attempt: i32,
    pub outcome: DeliveryOutcome,
    /// The receiver's HTTP status, when it answered.
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    /// Why it failed: the status, a timeout, a refused connection.
    pub error: Option<String>,
    pub attempted_at: DateTime<Utc>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = AppError;

    fn try_from(row: DeliveryRow) -> Result<Self, AppError> {
        Ok(Delivery {
            id: row.id,
            outcome: row.outcome()?,
            event_id: row.event_position.to_string(),
            event_type: row.event_type,
            attempt: row.attempt,
            response_status: row.response_status,
            duration_ms: row.duration_ms,
            error: row.error,
            attempted_at: utc(row.attempted_at),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// List a webhook's deliveries
///
/// The log of delivery attempts, newest first: when, the status code or error, and how long each
/// took.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id"),
           ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "1–500, default 100")),
    responses(
        (status = 200, description = "Attempts, newest first; kept as long as events (EVENT_RETENTION_DAYS)", body = Page<Delivery>),
        (status = 400, description = "`invalid_cursor`, `invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<i64>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let query = query.into_inner();
    let limit = parse_limit_within(query.limit.as_deref(), 100, 500)?;
    let before =
        match query.cursor.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                AppError::new(ErrorCode::InvalidCursor, "cursor is the next_cursor of an earlier page")
            })?),
        };
    let rows = service::deliveries(&state.db, manager(auth.caller), id, before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|row| row.id.to_string())).flatten();
    let items = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/webhooks").route(web::get().to(list)).route(web::post().to(create)))
        .service(
            web::resource("/webhooks/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/webhooks/{id}/rotate-secret").route(web::post().to(rotate_secret)))
        .service(web::resource("/webhooks/{id}/replay").route(web::post().to(replay)))
        .service(web::resource("/webhooks/{id}/deliveries").route(web::get().to(deliveries)));
}
