//! Changes that take effect on a date (生效日期): a category asked for with
//! `effective_at` waits as a pending change, shows on the customer and in
//! `GET /pending-changes`, and is applied at its moment (by the service's clock, which
//! these tests move) with history of source `scheduled`; a manual change cancels it
//! unless kept, `DELETE` cancels it, and one its category can no longer take fails
//! with the reason.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};
use crate::sales::pointers;

both_backends!(
    a_change_takes_effect_at_its_moment,
    only_a_future_moment_is_taken,
    a_manual_change_cancels_the_pending_one_unless_kept,
    a_pending_change_is_cancelled_with_if_match,
    a_change_its_category_can_no_longer_take_fails_with_the_reason,
    a_batch_is_scheduled_all_or_none,
    a_restricted_key_sees_and_makes_pending_changes_inside_only,
);

fn from_now(by: chrono::Duration) -> String {
    (Utc::now() + by).to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn schedule(app: &TestApp, customer: &str, category: &str, body: Value) -> Response {
    let mut body = body;
    body["category"] = json!(category);
    app.admin(Method::PUT, &format!("/api/v1/customers/{customer}/categories/TIER")).json(&body).send().await.unwrap()
}

type Response = reqwest::Response;

async fn customer(app: &TestApp, code: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/customers/{code}")).await, StatusCode::OK).await
}

/// Waits (up to 10 s, the job looks every second) until the customer's TIER category is `category`.
async fn wait_for_category(app: &TestApp, code: &str, category: &str) -> Value {
    let started = Instant::now();
    loop {
        let current = customer(app, code).await;
        if current["categories"]["TIER"] == json!(category) {
            return current;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{code} never moved to {category}: {current}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pending_change(app: &TestApp, id: &Value) -> Value {
    ok_json(app.get(&format!("/api/v1/pending-changes/{id}")).await, StatusCode::OK).await
}

/// Waits until the pending change `id` is no longer pending.
async fn wait_settled(app: &TestApp, id: &Value) -> Value {
    let started = Instant::now();
    loop {
        let change = pending_change(app, id).await;
        if change["status"] != "pending" {
            return change;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "pending change {id} was never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The feed's events of a type once one satisfies `wanted` (they are numbered by the
/// sequencer shortly after they commit), waiting up to 10 s.
async fn events_once(app: &TestApp, kind: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let page = ok_json(app.get(&format!("/api/v1/events?types={kind}&limit=1000")).await, StatusCode::OK).await;
        let events = page["items"].as_array().unwrap().clone();
        if events.iter().any(&wanted) {
            return events;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no {kind} event as wanted: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn listed(app: &TestApp, query: &str) -> Vec<Value> {
    let page = ok_json(app.get(&format!("/api/v1/pending-changes{query}")).await, StatusCode::OK).await;
    page["items"].as_array().unwrap().clone()
}

async fn a_change_takes_effect_at_its_moment(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    let before = customer(&app, "C1").await;
    let effective_at = from_now(chrono::Duration::days(1));
    let response = schedule(&app, "C1", "01", json!({"reason": "下月升级", "effective_at": effective_at})).await;
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let change = ok_json(response, StatusCode::ACCEPTED).await;
    assert_eq!(location, format!("/api/v1/pending-changes/{}", change["id"]));
    assert_eq!(etag, format!("\"{}\"", change["version"]));
    assert_eq!(
        (&change["customer"], &change["scheme"], &change["category"], &change["status"], &change["reason"]),
        (&json!("C1"), &json!("TIER"), &json!("01"), &json!("pending"), &json!("下月升级"))
    );
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(change["effective_at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&effective_at).unwrap()
    );

    // Until then the customer stays where it is and shows what is coming, with a new version.
    let waiting = customer(&app, "C1").await;
    assert_eq!(waiting["categories"]["TIER"], "02");
    assert_eq!(waiting["pending"]["TIER"]["id"], change["id"]);
    assert_eq!(waiting["pending"]["TIER"]["category"], "01");
    assert_eq!(waiting["pending"]["TIER"]["actor"], change["actor"]);
    assert_eq!(waiting["pending"]["TIER"]["reason"], "下月升级");
    assert!(waiting["version"].as_i64() > before["version"].as_i64());
    assert_eq!(app.full_history("C1").await.len(), 1);
    let pending = listed(&app, "?scheme=TIER&status=pending").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], change["id"]);
    assert!(listed(&app, &format!("?before={}", from_now(chrono::Duration::hours(1)))).await.is_empty());
    assert!(listed(&app, "?scheme=REGION").await.is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(customer(&app, "C1").await["categories"]["TIER"], "02", "nothing happens before the moment");

    app.advance_clock(Duration::from_secs(2 * 86_400));
    let moved = wait_for_category(&app, "C1", "01").await;
    assert_eq!(moved["pending"], json!({}));
    let history = app.full_history("C1").await;
    let last = history.last().unwrap();
    assert_eq!(
        (&last["from"], &last["to"], &last["source"], &last["reason"], &last["actor"]),
        (&json!("02"), &json!("01"), &json!("scheduled"), &json!("下月升级"), &change["actor"])
    );
    assert_eq!(history.len(), 2, "applied once: {history:?}");
    let applied = wait_settled(&app, &change["id"]).await;
    assert_eq!(applied["status"], "applied");
    assert!(applied["settled_at"].is_string());
    assert!(applied["version"].as_i64() > change["version"].as_i64());
    let changed = events_once(&app, "classification.changed", |event| event["data"]["source"] == "scheduled").await;
    let scheduled: Vec<&Value> = changed.iter().filter(|event| event["data"]["source"] == "scheduled").collect();
    assert_eq!(scheduled.len(), 1, "{changed:?}");
    assert_eq!((&scheduled[0]["data"]["customer"], &scheduled[0]["data"]["to"]), (&json!("C1"), &json!("01")));
    assert_eq!(listed(&app, "?status=applied").await.len(), 1);
    assert!(listed(&app, "?status=pending").await.is_empty());
}

async fn only_a_future_moment_is_taken(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    for (body, field) in [
        (json!({"effective_at": from_now(-chrono::Duration::hours(1))}), "effective_at"),
        (json!({"effective_at": "next month"}), "effective_at"),
        (json!({"effective_at": from_now(chrono::Duration::days(1)), "keep_pending": true}), "keep_pending"),
    ] {
        let refused =
            problem(schedule(&app, "C1", "01", body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .await;
        assert_eq!(pointers(&refused), [field]);
    }
    let later = json!({"effective_at": from_now(chrono::Duration::days(1))});
    problem(schedule(&app, "C1", "09", later.clone()).await, StatusCode::UNPROCESSABLE_ENTITY, "category_not_found")
        .await;
    problem(schedule(&app, "NOBODY", "01", later).await, StatusCode::NOT_FOUND, "customer_not_found").await;
    assert!(listed(&app, "").await.is_empty(), "nothing was stored");
    assert_eq!(customer(&app, "C1").await["pending"], json!({}));
    problem(app.get("/api/v1/pending-changes?status=done").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/pending-changes?before=soon").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/pending-changes/999").await, StatusCode::NOT_FOUND, "pending_change_not_found").await;
}

async fn a_manual_change_cancels_the_pending_one_unless_kept(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    let later = json!({"effective_at": from_now(chrono::Duration::days(1))});
    let first = ok_json(schedule(&app, "C1", "01", later.clone()).await, StatusCode::ACCEPTED).await;
    // A newer pending change replaces the older one.
    let second = ok_json(schedule(&app, "C1", "03", later.clone()).await, StatusCode::ACCEPTED).await;
    assert_eq!(pending_change(&app, &first["id"]).await["status"], "cancelled");
    assert_eq!(customer(&app, "C1").await["pending"]["TIER"]["category"], "03");

    // A manual change that keeps it leaves it waiting.
    let kept = schedule(&app, "C1", "03", json!({"keep_pending": true})).await;
    assert_eq!(ok_json(kept, StatusCode::OK).await["pending"]["TIER"]["id"], second["id"]);
    let removed =
        app.admin(Method::DELETE, "/api/v1/customers/C1/categories/TIER?keep_pending=true").send().await.unwrap();
    assert_eq!(ok_json(removed, StatusCode::OK).await["pending"]["TIER"]["id"], second["id"]);
    assert_eq!(pending_change(&app, &second["id"]).await["status"], "pending");

    // One that does not cancels it.
    let manual = ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    assert_eq!(manual["pending"], json!({}));
    let cancelled = pending_change(&app, &second["id"]).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["settled_at"].is_string());
    app.advance_clock(Duration::from_secs(2 * 86_400));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(customer(&app, "C1").await["categories"]["TIER"], "02", "a cancelled change is never applied");
    assert!(app.full_history("C1").await.iter().all(|entry| entry["source"] != "scheduled"));

    // So does a removal, and a batch.
    app.create_customer("C2", json!({"TIER": "02"})).await;
    let third = ok_json(
        schedule(&app, "C1", "01", json!({"effective_at": from_now(chrono::Duration::days(9))})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let fourth = ok_json(
        app.admin(Method::PUT, "/api/v1/customers/C2/categories/TIER")
            .json(&json!({"category": "01", "effective_at": from_now(chrono::Duration::days(9))}))
            .send()
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(app.delete("/api/v1/customers/C1/categories/TIER").await.status(), StatusCode::OK);
    assert_eq!(pending_change(&app, &third["id"]).await["status"], "cancelled");
    let batch = json!({"scheme": "TIER", "category": "03", "customers": ["C2"]});
    ok_json(app.post("/api/v1/assignments/batch", &batch).await, StatusCode::OK).await;
    assert_eq!(pending_change(&app, &fourth["id"]).await["status"], "cancelled");
    assert_eq!(customer(&app, "C2").await["pending"], json!({}));
}

async fn a_pending_change_is_cancelled_with_if_match(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    let change = ok_json(
        schedule(&app, "C1", "01", json!({"effective_at": from_now(chrono::Duration::days(1))})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let path = format!("/api/v1/pending-changes/{}", change["id"]);
    let stale = app.admin(Method::DELETE, &path).header("If-Match", "\"99\"").send().await.unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    assert_eq!(pending_change(&app, &change["id"]).await["status"], "pending");
    let fresh =
        app.admin(Method::DELETE, &path).header("If-Match", format!("\"{}\"", change["version"])).send().await.unwrap();
    let cancelled = ok_json(fresh, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(customer(&app, "C1").await["pending"], json!({}));
    problem(app.delete(&path).await, StatusCode::CONFLICT, "pending_change_settled").await;
    problem(app.delete("/api/v1/pending-changes/999").await, StatusCode::NOT_FOUND, "pending_change_not_found").await;
    app.advance_clock(Duration::from_secs(2 * 86_400));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(customer(&app, "C1").await["categories"]["TIER"], "02");
}

async fn a_change_its_category_can_no_longer_take_fails_with_the_reason(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    let change = ok_json(
        schedule(&app, "C1", "01", json!({"effective_at": from_now(chrono::Duration::days(1))})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    ok_json(app.patch("/api/v1/schemes/TIER/categories/01", &json!({"active": false})).await, StatusCode::OK).await;
    app.advance_clock(Duration::from_secs(2 * 86_400));
    let failed = wait_settled(&app, &change["id"]).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["failure"].as_str().unwrap().starts_with("category_inactive: "), "{failed}");
    let current = customer(&app, "C1").await;
    assert_eq!((&current["categories"]["TIER"], &current["pending"]), (&json!("02"), &json!({})));
    assert_eq!(app.full_history("C1").await.len(), 1, "nothing moved");
    assert_eq!(listed(&app, "?status=failed").await.len(), 1);
    let reported = events_once(&app, "pending_change.failed", |_| true).await;
    assert_eq!(reported.len(), 1);
    assert_eq!(
        (&reported[0]["data"]["customer"], &reported[0]["data"]["category"], &reported[0]["data"]["pending_change"]),
        (&json!("C1"), &json!("01"), &change["id"])
    );
    assert_eq!(reported[0]["data"]["failure"], failed["failure"]);

    // A deleted category fails the same way.
    app.create_customer("C2", json!({"TIER": "02"})).await;
    let later = ok_json(
        schedule(&app, "C2", "03", json!({"effective_at": from_now(chrono::Duration::days(5))})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(app.delete("/api/v1/schemes/TIER/categories/03").await.status(), StatusCode::NO_CONTENT);
    app.advance_clock(Duration::from_secs(5 * 86_400));
    let gone = wait_settled(&app, &later["id"]).await;
    assert!(gone["failure"].as_str().unwrap().starts_with("category_not_found: "), "{gone}");
}

async fn a_batch_is_scheduled_all_or_none(app: TestApp) {
    app.create_tiers().await;
    for code in ["C1", "C2"] {
        app.create_customer(code, json!({"TIER": "02"})).await;
    }
    let at = from_now(chrono::Duration::days(1));
    let unknown = json!({"scheme": "TIER", "category": "01", "customers": ["C1", "NOBODY"], "effective_at": at});
    problem(
        app.post("/api/v1/assignments/batch", &unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "customers_not_found",
    )
    .await;
    assert!(listed(&app, "").await.is_empty());
    let past = json!({"scheme": "TIER", "category": "01", "customers": ["C1"], "effective_at": "2020-01-01"});
    problem(app.post("/api/v1/assignments/batch", &past).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    let batch = json!({"scheme": "TIER", "category": "01", "customers": ["C1", "C2", "C1"], "reason": "季度调整", "effective_at": at});
    let scheduled = ok_json(app.post("/api/v1/assignments/batch", &batch).await, StatusCode::ACCEPTED).await;
    assert_eq!((&scheduled["scheduled"], &scheduled["category"]), (&json!(2), &json!("01")));
    assert_eq!(listed(&app, "?status=pending&scheme=TIER").await.len(), 2);
    assert_eq!(listed(&app, "?customer=C2").await.len(), 1);
    app.advance_clock(Duration::from_secs(2 * 86_400));
    for code in ["C1", "C2"] {
        wait_for_category(&app, code, "01").await;
        let last = app.full_history(code).await.pop().unwrap();
        assert_eq!((&last["source"], &last["reason"]), (&json!("scheduled"), &json!("季度调整")));
    }
}

async fn a_restricted_key_sees_and_makes_pending_changes_inside_only(app: TestApp) {
    app.create_tiers().await;
    app.create_scheme("REGION", "2").await;
    for (code, name) in [("01", "华北"), ("02", "华南")] {
        app.create_category("REGION", code, name).await;
    }
    app.create_customer("N1", json!({"TIER": "02", "REGION": "01"})).await;
    app.create_customer("S1", json!({"TIER": "02", "REGION": "02"})).await;
    let body = json!({"name": "north", "scope": "write", "restrict": {"REGION": ["01"]}});
    let key = ok_json(app.post("/api/v1/api-keys", &body).await, StatusCode::CREATED).await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let later = from_now(chrono::Duration::days(1));
    let as_north = |method: Method, path: &str| app.request(method, path).bearer_auth(&key);

    let outside = as_north(Method::PUT, "/api/v1/customers/S1/categories/TIER")
        .json(&json!({"category": "01", "effective_at": later}))
        .send()
        .await
        .unwrap();
    problem(outside, StatusCode::NOT_FOUND, "customer_not_found").await;
    let away = as_north(Method::PUT, "/api/v1/customers/N1/categories/REGION")
        .json(&json!({"category": "02", "effective_at": later}))
        .send()
        .await
        .unwrap();
    problem(away, StatusCode::FORBIDDEN, "outside_restriction").await;
    let own = as_north(Method::PUT, "/api/v1/customers/N1/categories/TIER")
        .json(&json!({"category": "01", "effective_at": later}))
        .send()
        .await
        .unwrap();
    let own = ok_json(own, StatusCode::ACCEPTED).await;

    // The admin plans a move of S1 and one of N1 out of the key's subtree.
    let theirs = ok_json(schedule(&app, "S1", "01", json!({"effective_at": later})).await, StatusCode::ACCEPTED).await;
    let leaving = app
        .admin(Method::PUT, "/api/v1/customers/N1/categories/REGION")
        .json(&json!({"category": "02", "effective_at": later}))
        .send()
        .await
        .unwrap();
    let leaving = ok_json(leaving, StatusCode::ACCEPTED).await;
    assert_eq!(listed(&app, "").await.len(), 3);

    let page = as_north(Method::GET, "/api/v1/pending-changes").send().await.unwrap();
    let seen: Vec<Value> = ok_json(page, StatusCode::OK).await["items"].as_array().unwrap().clone();
    assert_eq!(seen.iter().map(|change| change["id"].clone()).collect::<Vec<_>>(), [own["id"].clone()]);
    for hidden in [&theirs, &leaving] {
        let path = format!("/api/v1/pending-changes/{}", hidden["id"]);
        problem(as_north(Method::GET, &path).send().await.unwrap(), StatusCode::NOT_FOUND, "pending_change_not_found")
            .await;
        problem(
            as_north(Method::DELETE, &path).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "pending_change_not_found",
        )
        .await;
    }
    assert_eq!(pending_change(&app, &theirs["id"]).await["status"], "pending");
    let mine = format!("/api/v1/pending-changes/{}", own["id"]);
    assert_eq!(
        ok_json(as_north(Method::DELETE, &mine).send().await.unwrap(), StatusCode::OK).await["status"],
        "cancelled"
    );
}
