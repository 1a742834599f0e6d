//! Schemes that classify by themselves: `schedule` starts runs with trigger `schedule`,
//! one run per firing whatever the number of instances, and a firing missed while
//! none ran runs once.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, with_connection, TestApp};

both_backends!(
    a_schedule_shows_its_next_firing_and_bad_ones_are_refused,
    a_due_firing_starts_one_run_among_two_instances,
    firings_missed_while_down_run_once_at_start_up
);

const NIGHTLY: &str = r#"{"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}"#;

fn nightly() -> Value {
    serde_json::from_str(NIGHTLY).unwrap()
}

fn next_run_at(scheme: &Value) -> DateTime<Utc> {
    scheme["next_run_at"].as_str().unwrap_or_else(|| panic!("no next_run_at: {scheme}")).parse().unwrap()
}

/// 02:00 in Shanghai is 18:00 UTC, within the next day.
fn assert_next_nightly(scheme: &Value) {
    let next = next_run_at(scheme);
    assert_eq!((next.hour(), next.minute(), next.second()), (18, 0, 0), "{scheme}");
    assert!(next > Utc::now() && next - Utc::now() <= chrono::Duration::days(1), "{scheme}");
}

async fn a_schedule_shows_its_next_firing_and_bad_ones_are_refused(app: TestApp) {
    let body = json!({"code": "TIER", "name": "等级", "code_rule": "2", "schedule": nightly()});
    let created = ok_json(app.post("/api/v1/schemes", &body).await, StatusCode::CREATED).await;
    assert_eq!(created["schedule"], json!({"cron": "0 2 * * *", "timezone": "Asia/Shanghai", "dry_run": false}));
    assert_next_nightly(&created);
    assert_eq!(
        ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await["next_run_at"],
        created["next_run_at"]
    );

    let every_five = ok_json(
        app.patch(
            "/api/v1/schemes/TIER",
            &json!({"schedule": {"cron": "*/5 * * * *", "timezone": "UTC", "dry_run": true}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let next = next_run_at(&every_five);
    assert!(
        next.minute().is_multiple_of(5) && next.second() == 0 && next - Utc::now() <= chrono::Duration::minutes(5),
        "{every_five}"
    );
    assert_eq!(every_five["schedule"]["dry_run"], true);
    let unscheduled =
        ok_json(app.patch("/api/v1/schemes/TIER", &json!({"schedule": null})).await, StatusCode::OK).await;
    assert_eq!((&unscheduled["schedule"], &unscheduled["next_run_at"]), (&Value::Null, &Value::Null));
    assert_eq!(
        ok_json(app.patch("/api/v1/schemes/TIER", &json!({"name": "客户等级"})).await, StatusCode::OK).await
            ["schedule"],
        Value::Null
    );

    for (schedule, pointer, words) in [
        (json!({"cron": "0 2 * *", "timezone": "UTC"}), "/schedule/cron", "five fields"),
        (json!({"cron": "0 25 * * *", "timezone": "UTC"}), "/schedule/cron", "cron expression"),
        (json!({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}), "/schedule/timezone", "time zone"),
        (json!({"cron": "*/2 * * * *", "timezone": "UTC"}), "/schedule/cron", "every 5 minutes"),
    ] {
        let refused = problem(
            app.patch("/api/v1/schemes/TIER", &json!({"schedule": schedule})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], pointer, "{refused}");
        assert!(refused["errors"][0]["message"].as_str().unwrap().contains(words), "{refused}");
        let body = json!({"code": "OTHER", "name": "其他", "code_rule": "2", "schedule": schedule});
        let refused =
            problem(app.post("/api/v1/schemes", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .await;
        assert_eq!(refused["errors"][0]["field"], pointer, "{refused}");
    }
    problem(
        app.get("/api/v1/schemes/TIER/classification-runs?trigger=cron").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

/// TIER scheduled nightly, its rule moving everyone to 01, and customers C1 and C2 in 03.
async fn nightly_tiers(app: &TestApp, dry_run: bool) {
    app.create_tiers().await;
    let mut schedule = nightly();
    schedule["dry_run"] = json!(dry_run);
    ok_json(app.patch("/api/v1/schemes/TIER", &json!({"schedule": schedule})).await, StatusCode::OK).await;
    let rule = json!({"name": "everyone", "target_category": "01", "condition": {"field": "code", "op": "!=", "value": "NONE"}});
    ok_json(app.post("/api/v1/schemes/TIER/rules", &rule).await, StatusCode::CREATED).await;
    app.create_customer("C1", json!({"TIER": "03"})).await;
    app.create_customer("C2", json!({"TIER": "03"})).await;
}

/// Moves TIER's next firing to `at`, as the passing of time (or downtime) would.
async fn due_at(app: &TestApp, at: NaiveDateTime) {
    with_connection(app, move |conn| {
        use custclass::db::schema::schemes;
        use diesel::prelude::*;
        diesel::update(schemes::table.filter(schemes::code.eq("TIER")))
            .set(schemes::schedule_next_at.eq(Some(at)))
            .execute(conn)
            .unwrap();
    })
    .await;
}

async fn scheduled_runs(app: &TestApp) -> Vec<Value> {
    let page =
        ok_json(app.get("/api/v1/schemes/TIER/classification-runs?trigger=schedule").await, StatusCode::OK).await;
    page["items"].as_array().unwrap().clone()
}

/// Waits for a scheduled run to end, then two more checks of every instance, and
/// returns the scheduled runs there are.
async fn scheduled_runs_once_settled(app: &TestApp) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = scheduled_runs(app).await;
        if runs.iter().any(|run| run["status"] != "running") {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled run ended: {runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    scheduled_runs(app).await
}

async fn a_due_firing_starts_one_run_among_two_instances(app: TestApp) {
    nightly_tiers(&app, false).await;
    let other = app.replica().await;
    due_at(&app, custclass::db::now() - chrono::Duration::seconds(1)).await;

    let runs = scheduled_runs_once_settled(&other).await;
    assert_eq!(runs.len(), 1, "one run for the firing: {runs:?}");
    let run = &runs[0];
    assert_eq!(
        (&run["trigger"], &run["actor"], &run["status"], &run["changed"], &run["dry_run"]),
        (&json!("schedule"), &json!("schedule"), &json!("completed"), &json!(2), &json!(false))
    );
    let customer = ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await;
    assert_eq!(customer["categories"]["TIER"], "01", "{customer}");
    assert_eq!(app.full_history("C1").await.last().unwrap()["run_id"], run["id"]);
    assert_next_nightly(&ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await);
    let requested =
        ok_json(app.get("/api/v1/schemes/TIER/classification-runs?trigger=request").await, StatusCode::OK).await;
    assert_eq!(requested["items"], json!([]));
}

/// Three nightly firings passed while no instance ran: the next to start runs one.
async fn firings_missed_while_down_run_once_at_start_up(app: TestApp) {
    nightly_tiers(&app, true).await;
    due_at(&app, custclass::db::now() - chrono::Duration::days(3)).await;
    let started = app.replica().await;

    let runs = scheduled_runs_once_settled(&started).await;
    assert_eq!(runs.len(), 1, "missed firings run once: {runs:?}");
    assert_eq!(
        (&runs[0]["status"], &runs[0]["dry_run"], &runs[0]["changed"]),
        (&json!("completed"), &json!(true), &json!(2))
    );
    let customer = ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await;
    assert_eq!(customer["categories"]["TIER"], "03", "a dry run moves nobody");
    assert_next_nightly(&ok_json(started.get("/api/v1/schemes/TIER").await, StatusCode::OK).await);
}
