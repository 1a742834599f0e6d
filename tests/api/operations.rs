use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{execute_directly, ok_json, problem, spawn_app_with, Backend, Options, TestApp};

both_backends!(
    probes_answer_without_auth,
    request_ids_are_echoed_or_made,
    metrics_count_requests_and_pool,
    corrupt_rows_answer_internal_error
);

async fn probes_answer_without_auth(app: TestApp) {
    let health = ok_json(app.request(Method::GET, "/healthz").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = ok_json(app.request(Method::GET, "/readyz").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    let ui = app.request(Method::GET, "/swagger-ui/").send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.unwrap().contains("swagger"), "Swagger UI is served from the binary");
    let doc = ok_json(app.request(Method::GET, "/api-docs/openapi.json").send().await.unwrap(), StatusCode::OK).await;
    let committed: serde_json::Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    assert_eq!(doc, committed, "the served document is the committed one");
}

async fn request_ids_are_echoed_or_made(app: TestApp) {
    let given = app.request(Method::GET, "/healthz").header("X-Request-Id", "trace-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-123");
    let made = app.get("/api/v1/nothing").await;
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID is made when none is sent: {id}");
}

async fn metrics_count_requests_and_pool(app: TestApp) {
    app.get("/api/v1/schemes").await;
    app.get("/api/v1/schemes/NOPE").await;
    let text = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"custclass_http_requests_total{method="GET",route="/api/v1/schemes",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"custclass_http_requests_total{method="GET",route="/api/v1/schemes/{scheme}",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"custclass_http_request_duration_seconds_bucket{method="GET",route="/api/v1/schemes",status="200",le="+Inf"} 1"#));
    assert!(text.contains("custclass_db_pool_max_connections 4"));
    assert!(text.contains("custclass_db_pool_connections "));
}

/// A row the service cannot read answers 500 internal_error (its cause goes to the
/// log under the request id), never a value made up in its place.
async fn corrupt_rows_answer_internal_error(app: TestApp) {
    app.create_tiers().await;
    ok_json(
        app.post("/api/v1/customers", &json!({"code": "C1", "name": "一号", "categories": {"TIER": "02"}})).await,
        StatusCode::CREATED,
    )
    .await;
    ok_json(app.post("/api/v1/customers", &json!({"code": "C2", "name": "二号"})).await, StatusCode::CREATED).await;
    ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &json!({"dry_run": true})).await, StatusCode::CREATED)
        .await;
    execute_directly(
        &app,
        &[
            "UPDATE customers SET status = 'archived' WHERE code = 'C1'",
            "UPDATE classification_runs SET totals = '{\"evaluated\":' WHERE id = 1",
            "UPDATE schemes SET code_rule = '2--2' WHERE code = 'TIER'",
            "UPDATE assignment_history SET dropped_attributes = '{' WHERE customer_code = 'C1'",
        ],
    )
    .await;
    for path in [
        "/api/v1/customers/C1",
        "/api/v1/customers?limit=10",
        "/api/v1/schemes/TIER/classification-runs/1",
        "/api/v1/schemes/TIER/classification-runs",
        "/api/v1/schemes/TIER",
        "/api/v1/customers/C1/history",
    ] {
        let response = app.get(path).await;
        assert!(response.headers().contains_key("x-request-id"));
        let body = problem(response, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
        assert!(body["detail"].as_str().unwrap().contains("X-Request-Id"), "{path}: {body}");
    }
    execute_directly(
        &app,
        &["UPDATE assignment_history SET dropped_attributes = NULL, source = 'robot' WHERE customer_code = 'C1'"],
    )
    .await;
    problem(app.get("/api/v1/customers/C1/history").await, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    ok_json(app.get("/api/v1/customers/C2").await, StatusCode::OK).await;
}

/// While the database is gone (MySQL) or locked by another process (SQLite), API
/// calls answer 503 with Retry-After; once it is back they succeed without a restart.
mod database_outage {
    use super::*;

    const SHORT: Duration = Duration::from_millis(700);

    /// The first 200 of `path` within five seconds: the service recovers by itself.
    async fn recovered(app: &crate::helpers::TestApp, path: &str) -> reqwest::Response {
        let started = std::time::Instant::now();
        let mut last = String::new();
        while started.elapsed() < Duration::from_secs(5) {
            let response = app.get(path).await;
            if response.status() == StatusCode::OK {
                return response;
            }
            last = format!("{} {}", response.status(), response.text().await.unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} did not answer 200 within 5 s of the database's return; last answer: {last}");
    }

    async fn assert_unavailable(response: reqwest::Response) {
        assert_eq!(response.headers()["retry-after"], "5");
        problem(response, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        let app =
            spawn_app_with(Backend::Mysql, Options { db_timeout: SHORT, through_proxy: true, ..Options::default() })
                .await;
        app.create_scheme("TIER", "2").await;
        let proxy = app.proxy.as_ref().unwrap();

        proxy.cut();
        assert_unavailable(app.get("/api/v1/schemes/TIER").await).await;
        assert_unavailable(app.post("/api/v1/schemes", &json!({"code": "DOWN", "name": "x", "code_rule": "2"})).await)
            .await;
        assert_unavailable(app.request(Method::GET, "/readyz").send().await.unwrap()).await;
        assert_eq!(
            app.request(Method::GET, "/healthz").send().await.unwrap().status(),
            StatusCode::OK,
            "the process itself is alive"
        );

        proxy.restore().await;
        let scheme = ok_json(recovered(&app, "/api/v1/schemes/TIER").await, StatusCode::OK).await;
        assert_eq!(scheme["code"], "TIER");
        app.create_scheme("BACK", "2").await;
        assert_eq!(app.request(Method::GET, "/readyz").send().await.unwrap().status(), StatusCode::OK);
    }

    /// A server that stops answering (a stopped process, a network that drops
    /// everything) is no slower to notice than its statement limit: requests get
    /// 503 then (`database_timeout`, or `database_unavailable` when a connection had
    /// to be opened), and `/readyz` says not ready, instead of waiting as long as the
    /// server hangs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_hung() {
        let options = Options {
            db_timeout: SHORT,
            statement_timeout: Duration::from_millis(800),
            through_proxy: true,
            ..Options::default()
        };
        let app = spawn_app_with(Backend::Mysql, options).await;
        app.create_scheme("TIER", "2").await;
        let proxy = app.proxy.as_ref().unwrap();

        proxy.freeze();
        let read = app.get("/api/v1/schemes/TIER").await;
        assert_eq!(read.headers()["retry-after"], "5");
        // A pooled connection that was idle waits on its statement (`database_timeout`);
        // without one, opening a connection hangs too (`database_unavailable`): which
        // depends on what the background jobs held at that moment.
        let status = read.status();
        let body: serde_json::Value = read.json().await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            ["database_timeout", "database_unavailable"].contains(&body["code"].as_str().unwrap_or_default()),
            "{body}"
        );
        let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(app.request(Method::GET, "/healthz").send().await.unwrap().status(), StatusCode::OK);

        proxy.thaw();
        assert_eq!(ok_json(recovered(&app, "/api/v1/schemes/TIER").await, StatusCode::OK).await["code"], "TIER");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = spawn_app_with(Backend::Sqlite, Options { db_timeout: SHORT, ..Options::default() }).await;
        app.create_scheme("TIER", "2").await;
        let custclass::db::DatabaseUrl::Sqlite(path) = app.database.clone() else { unreachable!() };
        let holder = crate::helpers::hold_sqlite_write_lock(path);

        assert_unavailable(app.post("/api/v1/schemes", &json!({"code": "DOWN", "name": "x", "code_rule": "2"})).await)
            .await;
        assert_unavailable(app.patch("/api/v1/schemes/TIER", &json!({"name": "x"})).await).await;

        holder.release();
        app.create_scheme("BACK", "2").await;
        let scheme = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
        assert_eq!(scheme["name"], "TIER scheme", "the refused write changed nothing");
        problem(app.get("/api/v1/schemes/DOWN").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
    }
}
