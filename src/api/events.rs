//! `GET /events`: the change feed, in the order the events were numbered after their
//! changes committed (see `store::feed::events`), with long polling.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::paging::parse_limit_within;
use crate::api::AppState;
use crate::domain::event::{Cursor, TypeFilter};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};
use crate::service::feed::{self, Event, Reading};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    after: Option<String>,
    types: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// The events, oldest first (`items`, as every list of the API names them).
    pub items: Vec<Event>,
    /// Ask with `after=` this next (also when `items` is empty): it moves past the
    /// events that `types` left out.
    pub next_cursor: String,
}

/// 422 `unknown_event_type`, naming the known ones.
pub fn unknown_event_type(error: FieldError) -> AppError {
    AppError::validation(ErrorCode::UnknownEventType, error.message.clone(), vec![error])
}

fn invalid_query(detail: String) -> AppError {
    AppError::new(ErrorCode::InvalidQuery, detail)
}

/// Read the change feed
///
/// Every change to customers, their classification and the classification structure, in commit
/// order, after a cursor (`after`), with optional long polling (`wait`); the cursor is stable
/// across replicas. A restricted key reads the events of customers it may see.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", operation_id = "list_events",
    params(
        ("after" = Option<String>, Query, description = "The `next_cursor` of the page before; `latest`: after the newest event; none: from the oldest event kept"),
        ("types" = Option<String>, Query, description = "Types and families, comma-separated (`classification.changed,customer.*`); none: every type"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 100"),
        ("wait" = Option<i64>, Query, minimum = 0, maximum = 60, description = "Seconds to wait for an event when there is none yet (long poll), 0–60, default 0"),
    ),
    responses(
        (status = 200, description = "The events after the cursor (none when the wait ran out)", body = EventPage),
        (status = 400, description = "`invalid_cursor`, `invalid_query` (`limit` or `wait` out of range)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`unknown_event_type`: `types` names a type or family that does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`cursor_expired`: the events after the cursor are past their retention", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let cursor = Cursor::parse("after", query.after.as_deref()).map_err(|_| {
        AppError::new(
            ErrorCode::InvalidCursor,
            "`after` is a next_cursor this feed gave, or `latest`; start again without it",
        )
    })?;
    let types = TypeFilter::parse("types", query.types.as_deref().unwrap_or_default()).map_err(unknown_event_type)?;
    let limit = parse_limit_within(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let wait = match query.wait.as_deref() {
        None => 0,
        Some(text) => text.parse::<u64>().ok().filter(|seconds| *seconds <= MAX_WAIT_SECONDS).ok_or_else(|| {
            invalid_query(format!("wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}"))
        })?,
    };
    let reading =
        Reading { from: cursor, types, limit, wait: Duration::from_secs(wait), restriction: auth.caller.restriction };
    let page = feed::read(&state.db, &state.feed, reading).await?;
    let items = page.events.into_iter().map(Event::from).collect();
    Ok(HttpResponse::Ok().json(EventPage { items, next_cursor: page.next_cursor.to_string() }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/events").route(web::get().to(list)));
}
