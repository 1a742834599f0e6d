//! Classification runs that stop cleanly: cancelled on request, or interrupted by the
//! service shutting down; either way at a batch boundary, with true counts and the
//! scheme's run slot free at once.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::events::feed_of;
use crate::helpers::{insert_customers_directly, ok_json, problem, spawn_app_with, Backend, Options, TestApp};

both_backends!(backend: a_cancelled_run_stops_between_batches_with_true_counts);
both_backends!(backend: a_run_stops_when_its_service_is_told_to_and_frees_the_slot);

/// Enough for a run of many batches, still going when it is stopped; whole batches of
/// `BATCH`, so that every committed batch counts `BATCH` (on MySQL a second connection
/// takes batches from the end).
const CUSTOMERS: usize = 49_994;
const BATCH: i64 = 7;

/// TIER with a rule that moves every customer to 01, and `CUSTOMERS` customers without a tier.
async fn everyone_to_vip(app: &TestApp) {
    app.create_tiers().await;
    let rule = json!({"name": "everyone", "target_category": "01", "condition": {"field": "code", "op": "!=", "value": "NONE"}});
    ok_json(app.post("/api/v1/schemes/TIER/rules", &rule).await, StatusCode::CREATED).await;
    insert_customers_directly(app, "R", CUSTOMERS).await;
}

/// Starts a run in the background (on `app`), and waits until `observer` sees it has
/// committed batches.
async fn start_in_background(app: &TestApp, observer: &TestApp) -> Value {
    let started = app
        .admin(Method::POST, "/api/v1/schemes/TIER/classification-runs")
        .header("Prefer", "respond-async")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let started = ok_json(started, StatusCode::ACCEPTED).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while run_of(observer, &started["id"]).await["changed"] == 0 {
        assert!(Instant::now() < deadline, "the run did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started
}

async fn run_of(app: &TestApp, id: &Value) -> Value {
    ok_json(app.get(&format!("/api/v1/schemes/TIER/classification-runs/{id}")).await, StatusCode::OK).await
}

async fn vip_count(app: &TestApp) -> i64 {
    ok_json(app.get("/api/v1/schemes/TIER/categories/01").await, StatusCode::OK).await["customer_count"]
        .as_i64()
        .unwrap()
}

/// The stopped run's counts are those of the batches it committed: whole batches, each
/// customer moved; what the archive holds agrees, and so does the feed.
async fn assert_stopped_truly(app: &TestApp, run: &Value, status: &str) {
    assert_eq!(run["status"], status, "{run}");
    let changed = run["changed"].as_i64().unwrap();
    assert!(changed > 0 && changed < CUSTOMERS as i64, "stopped part-way: {run}");
    assert_eq!(run["evaluated"], run["changed"], "{run}");
    assert_eq!(changed % BATCH, 0, "whole batches only: {run}");
    assert!(run["finished_at"].is_string(), "{run}");
    assert_eq!(vip_count(app).await, changed, "the category holds what the run says it moved");
    let finished = feed_of(app, "&types=classification_run.finished", 1).await;
    let data = &finished.last().unwrap()["data"];
    assert_eq!(
        (&data["run_id"], &data["status"], &data["totals"]["changed"]),
        (&run["id"], &json!(status), &run["changed"])
    );
}

/// The slot is free at once: a new run starts, and moves a customer the stopped one had
/// not reached (in the middle: on MySQL a second connection works from the end).
async fn assert_slot_free(app: &TestApp, stopped: &Value) {
    let middle = format!("R{:05}", CUSTOMERS / 2);
    let rest = ok_json(
        app.post("/api/v1/schemes/TIER/classification-runs", &json!({"customers": [middle]})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!((&rest["status"], &rest["changed"]), (&json!("completed"), &json!(1)), "{rest}");
    assert_eq!(vip_count(app).await, stopped["changed"].as_i64().unwrap() + 1);
}

async fn a_cancelled_run_stops_between_batches_with_true_counts(backend: Backend) {
    let app = spawn_app_with(backend, Options { run_batch_size: BATCH, ..Options::default() }).await;
    everyone_to_vip(&app).await;
    let started = start_in_background(&app, &app).await;
    let cancel = format!("/api/v1/schemes/TIER/classification-runs/{}/cancel", started["id"]);

    let cancelled = ok_json(app.post(&cancel, &json!({})).await, StatusCode::OK).await;
    assert!(cancelled["stop_requested_at"].is_string(), "{cancelled}");
    assert_stopped_truly(&app, &cancelled, "cancelled").await;
    assert_eq!(run_of(&app, &started["id"]).await, cancelled, "the stored run is the one answered");

    problem(app.post(&cancel, &json!({})).await, StatusCode::CONFLICT, "run_not_running").await;
    let reader = app.key("reader", "read").await;
    let refused = app.request(Method::POST, &cancel).bearer_auth(reader).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    problem(
        app.post("/api/v1/schemes/TIER/classification-runs/999999/cancel", &json!({})).await,
        StatusCode::NOT_FOUND,
        "run_not_found",
    )
    .await;
    problem(
        app.post("/api/v1/schemes/NOPE/classification-runs/1/cancel", &json!({})).await,
        StatusCode::NOT_FOUND,
        "scheme_not_found",
    )
    .await;
    assert_slot_free(&app, &cancelled).await;
}

async fn a_run_stops_when_its_service_is_told_to_and_frees_the_slot(backend: Backend) {
    let app = spawn_app_with(backend, Options { run_batch_size: BATCH, ..Options::default() }).await;
    everyone_to_vip(&app).await;
    let mut service = app.serve_binary(&[("RUN_BATCH_SIZE", &BATCH.to_string())]).await;
    let started = start_in_background(&service.app, &app).await;

    let terminated = Command::new("kill").args(["-TERM", &service.child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let exited = tokio::task::spawn_blocking(move || service.child.wait().unwrap()).await.unwrap();
    assert!(exited.success(), "the service exits cleanly on SIGTERM: {exited}");

    let interrupted = run_of(&app, &started["id"]).await;
    assert!(interrupted["stop_requested_at"].is_null(), "{interrupted}");
    assert_stopped_truly(&app, &interrupted, "interrupted").await;
    assert_slot_free(&app, &interrupted).await;
}
