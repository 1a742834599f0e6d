//! Request ids, the request log and Prometheus metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::api::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counts and latency by method, route pattern and status.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series.entry((method.to_string(), route.to_string(), status)).or_default();
        entry.count += 1;
        entry.sum += seconds;
        for (bucket, bound) in entry.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Prometheus text exposition format, with the pool's state.
    pub fn render(&self, pool: &crate::db::DbPool) -> String {
        let mut out = String::new();
        out.push_str("# HELP custclass_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE custclass_http_requests_total counter\n");
        let series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for ((method, route, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "custclass_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP custclass_http_request_duration_seconds HTTP request latency by method, route and status.\n",
        );
        out.push_str("# TYPE custclass_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in series.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (bound, count) in BUCKETS.iter().zip(s.buckets) {
                let _ =
                    writeln!(out, "custclass_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "custclass_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "custclass_http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "custclass_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        let state = pool.state();
        out.push_str("# HELP custclass_db_pool_connections Open database connections.\n# TYPE custclass_db_pool_connections gauge\n");
        let _ = writeln!(out, "custclass_db_pool_connections {}", state.connections);
        out.push_str("# HELP custclass_db_pool_idle_connections Idle database connections.\n# TYPE custclass_db_pool_idle_connections gauge\n");
        let _ = writeln!(out, "custclass_db_pool_idle_connections {}", state.idle_connections);
        out.push_str("# HELP custclass_db_pool_max_connections Configured pool size.\n# TYPE custclass_db_pool_max_connections gauge\n");
        let _ = writeln!(out, "custclass_db_pool_max_connections {}", pool.max_size());
        out
    }
}

/// Accepts the caller's `X-Request-Id` (up to 128 visible ASCII characters) or makes one.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// One log line per request, the `X-Request-Id` echoed, and the metrics updated.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    let method = req.method().to_string();
    let path = req.path().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let mut response = next.call(req).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if let Some(metrics) = metrics {
        metrics.observe(&method, &route, status, elapsed.as_secs_f64());
    }
    let millis = elapsed.as_secs_f64() * 1000.0;
    match response.response().error().filter(|_| status >= 500) {
        Some(error) => {
            let cause = error.as_error::<ApiError>().and_then(|e| e.0.cause.as_deref()).unwrap_or("");
            log::error!(target: "custclass::request", "{method} {path} {status} {millis:.1}ms request_id={request_id} error={error} {cause}");
        }
        None => {
            log::info!(target: "custclass::request", "{method} {path} {status} {millis:.1}ms request_id={request_id}")
        }
    }
    Ok(response)
}
