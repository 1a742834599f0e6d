//! HTTP resources under `/api/v1`, one module each, plus what they share.

pub mod api_keys;
pub mod assignments;
pub mod attributes;
pub mod auth;
pub mod categories;
pub mod customers;
pub mod data_quality;
pub mod duplicates;
pub mod error;
pub mod events;
pub mod explanations;
pub mod exports;
pub mod filters;
pub mod health;
pub mod imports;
pub mod merge;
pub mod openapi;
pub mod paging;
pub mod paths;
pub mod pending_changes;
pub mod reports;
pub mod rules;
pub mod runs;
pub mod schemas;
pub mod schemes;
pub mod spreadsheet;
pub mod transactions;
pub mod webhooks;

use std::future::{ready, Ready};

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::db::Db;
use crate::error::AppError;
use crate::telemetry::Metrics;

pub use auth::KeyCache;

/// What every handler can reach; the service keeps no other state.
pub struct AppState {
    pub db: Db,
    pub keys: KeyCache,
    /// Also app data of its own, which the request middleware reads.
    pub metrics: web::Data<Metrics>,
    /// Customers per batch of a classification run (`RUN_BATCH_SIZE`).
    pub run_batch_size: i64,
    /// Progress of the imports this process runs.
    pub imports: crate::service::exchange::imports::RunningImports,
    /// Wakes the feed's long polls when this replica numbers events.
    pub feed: crate::service::feed::FeedSignal,
    /// Whether webhook endpoints may be on internal networks (`WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_allow_private: bool,
    /// Tells classification runs that the service is stopping.
    pub shutdown: crate::shutdown::Shutdown,
    /// When pending changes take effect; an `effective_at` must lie after its now.
    pub clock: crate::db::Clock,
}

/// Largest JSON body accepted by ordinary endpoints.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;
/// Largest JSON body of the bulk endpoints (`POST /transactions`, `POST /assignments/batch`).
pub const BULK_JSON_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// The paths that take [`BULK_JSON_BODY_LIMIT`].
pub const BULK_PATHS: [&str; 2] = ["/api/v1/transactions", "/api/v1/assignments/batch"];

/// A list response. `next_cursor` is `null` on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn complete(items: Vec<T>) -> Self {
        Self { items, next_cursor: None }
    }
}

/// `If-Match` as a version: `"3"` and `W/"3"` name version 3, `*` or no header
/// matches any. A tag that is not one of ours can never match, so it answers 412.
pub struct IfMatch(pub Option<i64>);

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_if_match(req).map_err(ApiError))
    }
}

fn parse_if_match(req: &HttpRequest) -> Result<IfMatch, AppError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(IfMatch(None));
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(IfMatch(None));
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .map(|version| IfMatch(Some(version)))
        .ok_or_else(|| {
            AppError::new(
                crate::error::ErrorCode::VersionMismatch,
                format!("If-Match {text:?} does not name a version of this resource; use the ETag of a GET"),
            )
        })
}

pub fn etag(version: i64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// 200 with the resource's `ETag`.
pub fn ok_versioned<T: Serialize>(version: i64, body: &T) -> HttpResponse {
    HttpResponse::Ok().insert_header(etag(version)).json(body)
}

/// 201 with `Location` and `ETag`.
pub fn created_versioned<T: Serialize>(location: String, version: i64, body: &T) -> HttpResponse {
    let mut response: HttpResponseBuilder = HttpResponse::Created();
    response.insert_header((header::LOCATION, location)).insert_header(etag(version));
    response.json(body)
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`) in a PATCH body.
pub fn explicit_null<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Registers every `/api/v1` resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(auth::authenticate))
            .configure(schemes::routes)
            .configure(categories::routes)
            .configure(attributes::routes)
            // Before `/customers/{code}`, which would take `duplicates` for a code.
            .configure(duplicates::routes)
            .configure(customers::routes)
            .configure(merge::routes)
            .configure(assignments::routes)
            .configure(pending_changes::routes)
            .configure(explanations::routes)
            .configure(transactions::routes)
            .configure(rules::routes)
            .configure(runs::routes)
            .configure(reports::routes)
            .configure(data_quality::routes)
            .configure(exports::routes)
            .configure(imports::routes)
            .configure(events::routes)
            .configure(webhooks::routes)
            .configure(api_keys::routes),
    );
}

/// The blocking pool could not run `what` (it shut down, or the work panicked).
pub fn blocking_failed(what: &'static str) -> impl Fn(actix_web::error::BlockingError) -> AppError {
    move |error| AppError::internal(format!("{what}: {error}"))
}

/// Collects every field error of a request before answering, so that a client
/// learns all that is wrong at once.
#[derive(Default)]
pub struct FieldErrors(Vec<crate::domain::FieldError>);

impl FieldErrors {
    pub fn check<T>(&mut self, result: Result<T, crate::domain::FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    pub fn check_all<T>(&mut self, result: Result<T, Vec<crate::domain::FieldError>>) -> Option<T> {
        result.map_err(|errors| self.0.extend(errors)).ok()
    }

    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::invalid_fields(self.0))
        }
    }
}
