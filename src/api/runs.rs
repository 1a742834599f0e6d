//! `/schemes/{scheme}/classification-runs`: evaluating a scheme's rules over its customers.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth, Read};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::paging::{self, PageRequest};
use crate::api::{AppState, FieldErrors, Page};
use crate::domain::customer::CustomerCode;
use crate::domain::history::Direction;
use crate::domain::rule::parse_moment;
use crate::domain::run::{ChangeOutcome, RunStatus, Trigger};
use crate::error::{AppError, ErrorCode};
use crate::service::classification::runs::{self as service, Requested};
use crate::store::classification::assignments::MAX_BATCH;
use crate::store::classification::runs::{ChangeRow, RunView};

/// One from → to count of a run (`from` null: the customer had no category).
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionCount {
    pub from: Option<String>,
    pub to: String,
    pub count: i64,
}

/// A classification run and what it found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    pub id: i64,
    #[schema(example = "TIER")]
    pub scheme: String,
    pub status: RunStatus,
    /// Reported only: nothing was assigned.
    pub dry_run: bool,
    pub trigger: Trigger,
    pub actor: String,
    /// The moment the metrics were computed for.
    pub as_of: DateTime<Utc>,
    /// Active customers considered.
    pub evaluated: i64,
    /// Moved (or, dry, would move) by a rule.
    pub changed: i64,
    /// No rule matched, or the matching rule's target is where they are.
    pub unchanged: i64,
    /// Pinned assignments, left alone.
    pub skipped_locked: i64,
    /// Inactive customers, not evaluated.
    pub skipped_inactive: i64,
    /// A rule matched but the move would break a required attribute; listed in the changes.
    pub rejected: i64,
    /// A rule would move them down, but the scheme's `tier_policy` keeps them in their
    /// tier for now (dry: would keep); listed in the changes with outcome `held`.
    pub held: i64,
    /// Of `changed`, upgrades: moves to a higher rank in an ordered scheme.
    pub up: i64,
    /// Of `changed`, downgrades: moves to a lower rank.
    pub down: i64,
    pub transitions: Vec<TransitionCount>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When `POST …/cancel` asked the run to stop; it stops before its next batch.
    pub stop_requested_at: Option<DateTime<Utc>>,
}

impl From<RunView> for Run {
    fn from(view: RunView) -> Self {
        let (row, totals) = (view.row, view.totals);
        Run {
            id: row.id,
            scheme: view.scheme,
            status: row.status,
            dry_run: row.dry_run,
            trigger: row.trigger_source,
            actor: row.actor,
            as_of: row.as_of.and_utc(),
            evaluated: totals.evaluated,
            changed: totals.changed,
            unchanged: totals.unchanged,
            skipped_locked: totals.skipped_locked,
            skipped_inactive: totals.skipped_inactive,
            rejected: totals.rejected,
            held: totals.held,
            up: totals.up,
            down: totals.down,
            transitions: totals
                .transitions
                .into_iter()
                .map(|t| TransitionCount { from: t.from, to: t.to, count: t.count })
                .collect(),
            error: row.error,
            started_at: row.started_at.and_utc(),
            finished_at: row.finished_at.map(|at| at.and_utc()),
            stop_requested_at: row.stop_requested_at.map(|at| at.and_utc()),
        }
    }
}

/// Start a run. Without `customers` every customer of the archive is evaluated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dry_run": true, "customers": ["C0001", "C0002"]}))]
pub struct RunCreate {
    /// Report what would change without assigning anything.
    #[serde(default)]
    pub dry_run: bool,
    /// Only these customers (up to 10,000).
    pub customers: Option<Vec<String>>,
    /// Compute metrics as of this RFC 3339 time or date; default now.
    #[schema(value_type = Option<crate::api::schemas::Moment>)]
    pub as_of: Option<String>,
}

/// One customer a run moved (or, dry, would move), or could not move.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunChange {
    pub customer: String,
    pub from: Option<String>,
    pub to: String,
    pub rule_id: i64,
    pub outcome: ChangeOutcome,
    /// Why it was rejected, or for how long the tier policy holds it.
    pub detail: Option<String>,
    /// Which way the move goes, by the ranks when the run made it.
    pub direction: Direction,
}

impl From<ChangeRow> for RunChange {
    fn from(row: ChangeRow) -> Self {
        let change = row.change;
        let direction = change.direction();
        RunChange {
            customer: change.customer,
            from: change.from,
            to: change.to,
            rule_id: change.rule_id,
            outcome: change.outcome,
            detail: change.detail,
            direction,
        }
    }
}

/// Whether the caller sent `Prefer: respond-async` (RFC 7240).
pub fn prefers_async(request: &HttpRequest) -> bool {
    request.headers().get_all("Prefer").filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(',')).any(
        |preference| {
            preference.split(';').next().is_some_and(|token| token.trim().eq_ignore_ascii_case("respond-async"))
        },
    )
}

fn run_location(run: &Run) -> String {
    format!("/api/v1/schemes/{}/classification-runs/{}", run.scheme, run.id)
}

/// Run the scheme's rules
///
/// Evaluates the enabled rules for every customer (or those listed) and moves the ones whose
/// category changes, in committed batches, pinned customers excepted; `dry_run` reports what would
/// change. `Prefer: respond-async` answers 202 and runs in the background.
#[utoipa::path(post, path = "/api/v1/schemes/{scheme}/classification-runs", tag = "rules", operation_id = "start_classification_run", request_body = RunCreate,
    params(("scheme" = String, Path, description = "Scheme code"),
           ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 as soon as the run has started, and let it go on in the background")),
    responses(
        (status = 201, description = "The finished run (the request waits for it)", body = Run, headers(("Location" = String))),
        (status = 202, description = "With `Prefer: respond-async`: the run has started (`status: running`); follow `Location` until its status changes", body = Run,
            headers(("Location" = String), ("Preference-Applied" = String, description = "`respond-async`"))),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`run_in_progress`, `rule_invalid` (a rule refers to what no longer exists), `scheme_inactive`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`customers_not_found`, `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<RunCreate>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let codes: Option<Vec<CustomerCode>> = body.customers.map(|codes| {
        codes
            .iter()
            .enumerate()
            .filter_map(|(i, code)| errors.check(CustomerCode::parse(&format!("customers[{i}]"), code)))
            .collect()
    });
    let as_of = match &body.as_of {
        Some(text) => errors.check(parse_moment(text).ok_or_else(|| {
            crate::domain::FieldError::new(
                "as_of",
                format!("must be an RFC 3339 time or a date {}", crate::domain::MOMENT_RANGE),
            )
        })),
        None => Some(crate::db::now()),
    };
    if codes.as_ref().is_some_and(|codes| codes.len() > MAX_BATCH) {
        errors.check::<()>(Err(crate::domain::FieldError::new("customers", format!("at most {MAX_BATCH} customers"))));
    }
    errors.finish()?;
    let requested = Requested {
        dry_run: body.dry_run,
        as_of: as_of.expect("checked"),
        at: state.clock.now(),
        customers: codes,
        actor: auth.caller.name,
        batch_size: state.run_batch_size,
        shutdown: state.shutdown.clone(),
    };
    // The run reports through `started` once it holds the scheme's running slot;
    // the work goes on in its own task, so a caller that leaves does not stop it.
    let (started, has_started) = tokio::sync::oneshot::channel::<RunView>();
    // Nobody waits for the start when the caller wants the finished run.
    let work =
        actix_web::rt::spawn(
            async move { service::run(&state.db, scheme, requested, |run| drop(started.send(run))).await },
        );
    let outcome = |work: Result<Result<RunView, AppError>, _>| {
        work.unwrap_or_else(|_| Err(AppError::internal("the classification run's task stopped")))
    };
    if prefers_async(&request) {
        return match has_started.await {
            Ok(view) => {
                let run = Run::from(view);
                Ok(HttpResponse::Accepted()
                    .insert_header(("Location", run_location(&run)))
                    .insert_header(("Preference-Applied", "respond-async"))
                    .json(run))
            }
            // The run never started, and its task ended with the reason.
            Err(_) => match outcome(work.await) {
                Err(error) => Err(error.into()),
                Ok(_) => Err(AppError::internal("the classification run ended without reporting its start").into()),
            },
        };
    }
    let run = Run::from(outcome(work.await)?);
    Ok(HttpResponse::Created().insert_header(("Location", run_location(&run))).json(run))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    trigger: Option<String>,
}

/// Runs page by id (newest first), a run's changes by position.
#[derive(Serialize, Deserialize)]
struct Position {
    id: i64,
}

fn page_request(query: PageQuery) -> Result<PageRequest<Position>, AppError> {
    PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())
}

/// List a scheme's classification runs
///
/// The scheme's runs, newest first, with their status, how they were started and their counts.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/classification-runs", tag = "rules", operation_id = "list_classification_runs",
    params(("scheme" = String, Path, description = "Scheme code"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
           ("trigger" = Option<Trigger>, Query, description = "Only runs started so (`request`, `ingestion`, `schedule`)")),
    responses(
        (status = 200, description = "Newest first", body = Page<Run>),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    path: web::Path<String>,
    query: web::Query<RunListQuery>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let RunListQuery { limit, cursor, trigger } = query.into_inner();
    let trigger = trigger
        .map(|text| {
            Trigger::try_from(text)
                .map_err(|message| AppError::new(ErrorCode::InvalidQuery, format!("trigger: {message}")))
        })
        .transpose()?;
    let PageRequest { limit, after } = page_request(PageQuery { limit, cursor })?;
    let runs = service::list(&state.db, scheme, trigger, after.map(|p| p.id), limit).await?;
    Ok(HttpResponse::Ok().json(paging::into_page::<_, Run, _>(runs, limit, |run| Position { id: run.row.id })?))
}

/// Get a classification run
///
/// One run's status and counts; poll it for a run started with `Prefer: respond-async`.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/classification-runs/{id}", tag = "rules", operation_id = "get_classification_run",
    params(("scheme" = String, Path, description = "Scheme code"), ("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 404, description = "`scheme_not_found`, `run_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, id) = path.into_inner();
    let run = service::get(&state.db, scheme, id).await?;
    Ok(HttpResponse::Ok().json(Run::from(run)))
}

/// List the changes of a run
///
/// Each customer a run moved (or, dry, would move): from and to category and the rule that decided,
/// keyset-paged.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/classification-runs/{id}/changes", tag = "rules", operation_id = "list_classification_run_changes",
    params(("scheme" = String, Path, description = "Scheme code"), ("id" = i64, Path, description = "Run id"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses(
        (status = 200, description = "The customers the run moved (or would move) and those it could not, in run order", body = Page<RunChange>),
        (status = 404, description = "`scheme_not_found`, `run_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn changes(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    path: web::Path<(String, i64)>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, id) = path.into_inner();
    let PageRequest { limit, after } = page_request(query.into_inner())?;
    let rows = service::changes(&state.db, scheme, id, after.map(|p| p.id), limit).await?;
    Ok(HttpResponse::Ok().json(paging::into_page::<_, RunChange, _>(rows, limit, |row| Position { id: row.position })?))
}

/// Cancel a running classification run
///
/// Asks the run to stop at its next batch boundary; what it committed stays, and its counts say how
/// far it got.
#[utoipa::path(post, path = "/api/v1/schemes/{scheme}/classification-runs/{id}/cancel", tag = "rules", operation_id = "cancel_classification_run",
    params(("scheme" = String, Path, description = "Scheme code"), ("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run stopped before its next batch: `status: cancelled`, with the counts of the batches it committed", body = Run),
        (status = 202, description = "Asked to stop (`stop_requested_at`) but still in a batch after 10 s; follow `Location`", body = Run, headers(("Location" = String))),
        (status = 404, description = "`scheme_not_found`, `run_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`run_not_running`: the run has already ended", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, id) = path.into_inner();
    let run = Run::from(service::stop(&state.db, scheme, id).await?);
    if run.status == RunStatus::Running {
        return Ok(HttpResponse::Accepted().insert_header(("Location", run_location(&run))).json(run));
    }
    Ok(HttpResponse::Ok().json(run))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/schemes/{scheme}/classification-runs").route(web::get().to(list)).route(web::post().to(create)),
    )
    .service(web::resource("/schemes/{scheme}/classification-runs/{id}").route(web::get().to(get)))
    .service(web::resource("/schemes/{scheme}/classification-runs/{id}/changes").route(web::get().to(changes)))
    .service(web::resource("/schemes/{scheme}/classification-runs/{id}/cancel").route(web::post().to(cancel)));
}
