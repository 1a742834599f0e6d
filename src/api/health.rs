//! Probes and metrics, outside `/api/v1` and without auth.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::AppState;
use crate::service::access;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness probe
///
/// Answers 200 while the process serves requests; it does not touch the database.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok".into() })
}

/// The longest `/readyz` takes to answer.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(900);

/// Readiness probe
///
/// Answers within a second: 200 when the database answers, 503 when it does not; what a load
/// balancer should route by.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "`database_unavailable`, with Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // A probe must answer before the orchestrator's own timeout, whatever the
    // database does: down, hung, or every connection busy.
    access::ready(&state.db, READY_WITHIN).await?;
    Ok(HttpResponse::Ok().json(Health { status: "ready".into() }))
}

/// Prometheus metrics
///
/// Request counts and latencies by route and status, and the service's gauges, in the Prometheus
/// text format; no key needed.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(state.db.pool()))
}

/// `/swagger-ui` without its slash: where the UI is.
async fn swagger_ui_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((actix_web::http::header::LOCATION, "/swagger-ui/")).finish()
}

/// Each path is a resource, so another method answers 405 with `Allow`, as under `/api/v1`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .service(web::resource("/swagger-ui").route(web::get().to(swagger_ui_slash)));
}
