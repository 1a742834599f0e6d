//! Webhooks: endpoints sent the change feed, signed as Standard Webhooks has it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::events::{feed_of, ids_of, read_feed, types_of};
use crate::helpers::{execute_directly, ok_json, problem, spawn_app_with, Backend, Options, TestApp};
use crate::receiver::{verify, Receiver};

both_backends!(
    a_receiver_that_fails_at_first_gets_every_event_once_in_order_after_it_recovers,
    endpoints_are_managed_and_their_secret_is_shown_once,
    a_rotated_secret_signs_beside_the_old_one,
    an_endpoint_failing_for_a_day_is_disabled_and_an_event_says_so,
    a_replay_sends_the_events_after_a_cursor_again,
    a_receiver_that_hangs_or_redirects_never_delays_a_request,
    an_endpoint_whose_replica_died_is_taken_over_when_its_lease_lapses,
    two_replicas_deliver_each_event_once,
    bad_webhook_requests_are_refused,
    forty_hanging_endpoints_do_not_hold_back_a_healthy_one,
);
both_backends!(backend: internal_addresses_are_refused_without_webhook_allow_private, a_database_outage_during_delivery_loses_no_event);

/// Registers the receiver for `types`; the endpoint and its secret.
async fn register(app: &TestApp, receiver: &Receiver, types: Value) -> (Value, String) {
    let created = ok_json(
        app.post("/api/v1/webhooks", &json!({"url": receiver.url, "types": types, "description": "CRM"})).await,
        StatusCode::CREATED,
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    (created, secret)
}

/// Waits until `done` holds of the receiver, or fails saying `what`.
async fn until(what: &str, receiver: &Receiver, done: impl Fn(&Receiver) -> bool) {
    for _ in 0..600 {
        if done(receiver) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}; the receiver got {:?}",
        receiver.received().iter().map(|r| (r.answered, r.json())).collect::<Vec<_>>()
    );
}

async fn webhook(app: &TestApp, id: &Value) -> Value {
    ok_json(app.get(&format!("/api/v1/webhooks/{id}")).await, StatusCode::OK).await
}

/// Waits until the endpoint's state satisfies `done`.
async fn until_webhook(app: &TestApp, id: &Value, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let current = webhook(app, id).await;
        if done(&current) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {}", webhook(app, id).await);
}

async fn deliveries(app: &TestApp, id: &Value) -> Vec<Value> {
    let page = ok_json(app.get(&format!("/api/v1/webhooks/{id}/deliveries?limit=500")).await, StatusCode::OK).await;
    page["items"].as_array().unwrap().clone()
}

/// The delivery log once it holds `count` entries: the sender records a delivery
/// after its answer came, so the receiver may have it before the log does.
async fn deliveries_when(app: &TestApp, id: &Value, count: usize) -> Vec<Value> {
    for _ in 0..600 {
        let log = deliveries(app, id).await;
        if log.len() >= count {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the delivery log never held {count} entries: {:?}", deliveries(app, id).await);
}

/// Some changes: a scheme, two categories, three customers, a move.
async fn make_changes(app: &TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    for code in ["C1", "C2", "C3"] {
        app.create_customer(code, json!({"TIER": "02"})).await;
    }
    ok_json(app.assign("C2", "TIER", "01").await, StatusCode::OK).await;
}

async fn a_receiver_that_fails_at_first_gets_every_event_once_in_order_after_it_recovers(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.fail_next(3, 503);
    let (created, secret) = register(&app, &receiver, json!(["classification.changed", "customer.*"])).await;
    make_changes(&app).await;
    let expected = feed_of(&app, "&types=classification.changed,customer.*", 7).await;
    assert_eq!(types_of(&expected).iter().filter(|t| **t == "customer.created").count(), 3);

    until("every event reached the receiver", &receiver, |r| r.accepted().len() >= expected.len()).await;
    let received = receiver.received();
    assert!(
        received.iter().all(|request| verify(&secret, request)),
        "every request carries a valid Standard Webhooks signature"
    );
    assert!(received.iter().all(|request| request.header("content-type") == "application/json"));
    let accepted = receiver.accepted();
    assert_eq!(accepted, expected, "each event once, in feed order, as the feed shows it");
    for request in received.iter().filter(|r| r.answered == 200) {
        assert_eq!(
            request.header("webhook-id"),
            request.json()["id"].as_str().unwrap(),
            "webhook-id is the event's id"
        );
    }
    // The first event was tried three times before it got through, each time the same message.
    let first_tries: Vec<&str> = received[..4].iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(first_tries, vec![expected[0]["id"].as_str().unwrap(); 4]);
    assert_eq!(received[..3].iter().map(|r| r.answered).collect::<Vec<_>>(), [503, 503, 503]);

    let log = deliveries_when(&app, &created["id"], expected.len() + 3).await;
    let oldest_first: Vec<&Value> = log.iter().rev().collect();
    assert_eq!(oldest_first.len(), expected.len() + 3);
    for (attempt, entry) in oldest_first[..3].iter().enumerate() {
        assert_eq!(entry["outcome"], "failed");
        assert_eq!(entry["response_status"], 503);
        assert_eq!(entry["attempt"], attempt as i64 + 1);
        assert_eq!(entry["event_id"], expected[0]["id"]);
        assert!(entry["error"].as_str().unwrap().contains("503"), "{entry}");
    }
    assert_eq!(oldest_first[3]["outcome"], "delivered");
    assert_eq!(oldest_first[3]["attempt"], 4);
    assert!(oldest_first[4..]
        .iter()
        .all(|entry| entry["outcome"] == "delivered" && entry["attempt"] == 1 && entry["response_status"] == 200));
    assert!(oldest_first
        .iter()
        .all(|entry| entry["duration_ms"].as_i64().unwrap() >= 0 && entry["attempted_at"].is_string()));

    let state = until_webhook(&app, &created["id"], "the endpoint moves past the last event", |w| {
        w["delivered_through"] == expected.last().unwrap()["id"]
            || w["delivered_through"].as_str().unwrap().parse::<i64>().unwrap()
                >= ids_of(&expected).last().copied().unwrap()
    })
    .await;
    assert_eq!(state["failures"], 0);
    assert_eq!(state["failing_since"], Value::Null);
    assert_eq!(state["enabled"], true);
    // Events of other types (scheme.*, category.*) were never sent.
    assert!(receiver.received().iter().all(|r| {
        let t = r.json()["type"].as_str().unwrap().to_string();
        t == "classification.changed" || t.starts_with("customer.")
    }));
}

async fn endpoints_are_managed_and_their_secret_is_shown_once(app: TestApp) {
    let receiver = Receiver::start().await;
    let response =
        app.post("/api/v1/webhooks", &json!({"url": receiver.url, "types": ["customer.*", "customer.*"]})).await;
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let created = ok_json(response, StatusCode::CREATED).await;
    let id = created["id"].clone();
    assert_eq!(location, format!("/api/v1/webhooks/{id}"));
    assert_eq!(etag, "\"1\"");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["types"], json!(["customer.*"]), "each type once");
    assert_eq!(created["enabled"], true);
    assert!(
        created["created_by"].as_str().is_some_and(|by| by.starts_with("admin-from-env-")),
        "the admin key that created it: {created}"
    );

    let read = webhook(&app, &id).await;
    assert_eq!(read.get("secret"), None, "the secret is shown once only");
    let listed = ok_json(app.get("/api/v1/webhooks").await, StatusCode::OK).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0].get("secret"), None);

    let stale = app
        .admin(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .header("If-Match", "\"7\"")
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let patched = app
        .admin(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .header("If-Match", "\"1\"")
        .json(&json!({"description": "客户关系管理", "types": []}))
        .send()
        .await
        .unwrap();
    let patched = ok_json(patched, StatusCode::OK).await;
    assert_eq!(patched["description"], "客户关系管理");
    assert_eq!(patched["types"], json!([]), "empty: every type");
    assert_eq!(patched["version"], 2);

    // Every type now: a scheme change reaches it.
    app.create_scheme("TIER", "2").await;
    until("scheme.created is delivered", &receiver, |r| r.accepted().iter().any(|e| e["type"] == "scheme.created"))
        .await;

    let disabled =
        ok_json(app.patch(&format!("/api/v1/webhooks/{id}"), &json!({"enabled": false})).await, StatusCode::OK).await;
    assert_eq!(disabled["enabled"], false);
    assert!(disabled["disabled_reason"].as_str().unwrap().contains("disabled by"), "{disabled}");
    let before = receiver.received().len();
    app.create_scheme("AREA", "2").await;
    feed_of(&app, "&types=scheme.created", 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.received().len(), before, "a disabled endpoint is sent nothing");
    let enabled =
        ok_json(app.patch(&format!("/api/v1/webhooks/{id}"), &json!({"enabled": true})).await, StatusCode::OK).await;
    assert_eq!(enabled["disabled_reason"], Value::Null);
    until("enabled again, it goes on from where it stopped", &receiver, |r| {
        r.accepted().iter().any(|e| e["type"] == "scheme.created" && e["data"]["scheme"] == "AREA")
    })
    .await;

    let response = app.delete(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(app.get(&format!("/api/v1/webhooks/{id}")).await, StatusCode::NOT_FOUND, "webhook_not_found").await;
    problem(app.get(&format!("/api/v1/webhooks/{id}/deliveries")).await, StatusCode::NOT_FOUND, "webhook_not_found")
        .await;
    let count = receiver.received().len();
    app.create_scheme("GONE", "2").await;
    feed_of(&app, "&types=scheme.created", 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.received().len(), count, "a deleted endpoint is sent nothing");

    let reader = app.key("reader", "read").await;
    let refused = app.request(Method::GET, "/api/v1/webhooks").bearer_auth(reader).send().await.unwrap();
    problem(refused, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

async fn a_rotated_secret_signs_beside_the_old_one(app: TestApp) {
    let receiver = Receiver::start().await;
    let (created, old) = register(&app, &receiver, json!(["scheme.*"])).await;
    let rotated = ok_json(
        app.post(&format!("/api/v1/webhooks/{}/rotate-secret", created["id"]), &json!({})).await,
        StatusCode::OK,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_expires_at"].is_string(), "{rotated}");
    app.create_scheme("TIER", "2").await;
    until("the change is delivered", &receiver, |r| !r.accepted().is_empty()).await;
    let request = &receiver.received()[0];
    assert!(
        verify(&new, request) && verify(&old, request),
        "signed by both secrets: {}",
        request.header("webhook-signature")
    );
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    let forged = crate::receiver::Received { body: b"{\"id\":\"1\"}".to_vec(), ..request.clone() };
    assert!(!verify(&new, &forged), "a changed body fails the check");
}

async fn an_endpoint_failing_for_a_day_is_disabled_and_an_event_says_so(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX, 500);
    let (created, _) = register(&app, &receiver, json!(["customer.*"])).await;
    let id = created["id"].clone();
    app.create_customer("C1", json!({})).await;
    let failing = until_webhook(&app, &id, "the endpoint fails", |w| w["failures"].as_i64().unwrap() >= 2).await;
    assert!(failing["failing_since"].is_string() && failing["next_attempt_at"].is_string(), "{failing}");
    assert_eq!(failing["enabled"], true);

    // A day of failures, as if it had gone on since yesterday.
    execute_directly(
        &app,
        &[&format!(
            "UPDATE webhooks SET failing_since = '2020-01-01 00:00:00', next_attempt_at = NULL WHERE id = {id}"
        )],
    )
    .await;
    let disabled = until_webhook(&app, &id, "the endpoint is disabled", |w| w["enabled"] == false).await;
    assert!(disabled["disabled_reason"].as_str().unwrap().contains("500"), "{disabled}");
    let events = feed_of(&app, "&types=webhook.disabled", 1).await;
    assert_eq!(events[0]["data"]["webhook_id"], id);
    assert_eq!(events[0]["data"]["url"], receiver.url);
    let tried = receiver.received().len();
    app.create_customer("C2", json!({})).await;
    feed_of(&app, "&types=customer.created", 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.received().len(), tried, "a disabled endpoint is tried no more");

    receiver.fail_next(0, 500);
    let enabled =
        ok_json(app.patch(&format!("/api/v1/webhooks/{id}"), &json!({"enabled": true})).await, StatusCode::OK).await;
    assert_eq!(enabled["failures"], 0);
    until("both customers are delivered once it is enabled", &receiver, |r| r.accepted().len() == 2).await;
    let codes: Vec<Value> = receiver.accepted().iter().map(|e| e["data"]["customer"].clone()).collect();
    assert_eq!(codes, [json!("C1"), json!("C2")]);
}

async fn a_replay_sends_the_events_after_a_cursor_again(app: TestApp) {
    let receiver = Receiver::start().await;
    let (created, _) = register(&app, &receiver, json!(["customer.created"])).await;
    let id = created["id"].clone();
    for code in ["C1", "C2", "C3"] {
        app.create_customer(code, json!({})).await;
    }
    until("three customers", &receiver, |r| r.accepted().len() == 3).await;
    let first = receiver.accepted()[0]["id"].as_str().unwrap().to_string();
    let replayed =
        ok_json(app.post(&format!("/api/v1/webhooks/{id}/replay?after={first}"), &json!({})).await, StatusCode::OK)
            .await;
    assert_eq!(replayed["delivered_through"], first.as_str());
    until("C2 and C3 again", &receiver, |r| r.accepted().len() == 5).await;
    let codes: Vec<Value> = receiver.accepted().iter().map(|e| e["data"]["customer"].clone()).collect();
    assert_eq!(codes, [json!("C1"), json!("C2"), json!("C3"), json!("C2"), json!("C3")]);

    for bad in ["", "?after=abc", "?after=latest", "?after=-1"] {
        problem(
            app.post(&format!("/api/v1/webhooks/{id}/replay{bad}"), &json!({})).await,
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        )
        .await;
    }
    problem(
        app.post("/api/v1/webhooks/999/replay?after=1", &json!({})).await,
        StatusCode::NOT_FOUND,
        "webhook_not_found",
    )
    .await;
}

async fn a_receiver_that_hangs_or_redirects_never_delays_a_request(app: TestApp) {
    let hanging = Receiver::start().await;
    hanging.hang(true);
    let (stuck, _) = register(&app, &hanging, json!(["customer.*"])).await;
    let redirecting = Receiver::start().await;
    redirecting.fail_next(usize::MAX, 302);
    let (moved, _) = register(&app, &redirecting, json!(["customer.*"])).await;
    app.create_customer("C1", json!({})).await;
    until("the hanging receiver holds a delivery", &hanging, |r| !r.received().is_empty()).await;
    // While that delivery waits for an answer, requests are answered as ever.
    for code in ["C2", "C3"] {
        app.create_customer(code, json!({})).await;
        assert_eq!(hanging.received().iter().filter(|r| r.answered == 0).count(), 1, "the delivery is still waiting");
    }
    ok_json(app.get("/api/v1/customers/C2").await, StatusCode::OK).await;

    let timed_out =
        until_webhook(&app, &stuck["id"], "the hanging delivery times out", |w| w["failures"].as_i64().unwrap() >= 1)
            .await;
    assert_eq!(timed_out["enabled"], true);
    let log = deliveries(&app, &stuck["id"]).await;
    assert!(log.last().unwrap()["error"].as_str().unwrap().contains("no answer within 2 s"), "{log:?}");
    assert_eq!(log.last().unwrap()["response_status"], Value::Null);

    until_webhook(&app, &moved["id"], "the redirect counts as a failure", |w| w["failures"].as_i64().unwrap() >= 1)
        .await;
    let log = deliveries(&app, &moved["id"]).await;
    let first = log.last().unwrap();
    assert_eq!(first["response_status"], 302);
    assert!(first["error"].as_str().unwrap().contains("redirects are not followed"), "{first}");
    assert!(redirecting.received().iter().all(|r| r.answered == 302), "the redirect's target was never called");
}

async fn an_endpoint_whose_replica_died_is_taken_over_when_its_lease_lapses(app: TestApp) {
    let receiver = Receiver::start().await;
    let (created, _) = register(&app, &receiver, json!(["customer.*"])).await;
    let id = created["id"].clone();
    // Another replica claimed the endpoint and died before settling anything.
    let lapses = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(2);
    execute_directly(
        &app,
        &[&format!(
            "UPDATE webhooks SET lease_owner = 'replica-dead', lease_until = '{}' WHERE id = {id}",
            lapses.format("%Y-%m-%d %H:%M:%S%.6f")
        )],
    )
    .await;
    app.create_customer("C1", json!({})).await;
    feed_of(&app, "&types=customer.created", 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(receiver.received().is_empty(), "nothing is sent while the lease holds");
    until("the event is delivered once the lease lapsed", &receiver, |r| r.accepted().len() == 1).await;
    assert_eq!(receiver.accepted()[0]["data"]["customer"], "C1");
}

/// Both replicas run a sender; the lease lets one at a time deliver to an endpoint,
/// so the receiver gets each event once, in order, whichever replica the changes and
/// the endpoints were made on.
async fn two_replicas_deliver_each_event_once(app: TestApp) {
    let other = app.replica().await;
    let receivers = [Receiver::start().await, Receiver::start().await, Receiver::start().await];
    register(&app, &receivers[0], json!(["customer.created"])).await;
    register(&other, &receivers[1], json!(["customer.created"])).await;
    register(&app, &receivers[2], json!(["customer.created"])).await;
    let codes: Vec<String> = (1..=40).map(|i| format!("C{i:02}")).collect();
    for (i, code) in codes.iter().enumerate() {
        let replica = if i % 2 == 0 { &app } else { &other };
        replica.create_customer(code, json!({})).await;
    }
    for receiver in &receivers {
        until("every customer reaches every endpoint", receiver, |r| r.accepted().len() >= codes.len()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let feed: Vec<Value> = feed_of(&app, "&types=customer.created", codes.len()).await;
    for receiver in &receivers {
        assert_eq!(receiver.received().len(), codes.len(), "no event sent twice");
        assert_eq!(receiver.accepted(), feed, "in feed order");
    }
}

/// The database goes away while a delivery is in flight: on MySQL the connection
/// is cut, on SQLite another process holds the write lock beyond the wait limit.
async fn a_database_outage_during_delivery_loses_no_event(backend: Backend) {
    let options =
        Options { db_timeout: Duration::from_secs(1), through_proxy: backend == Backend::Mysql, ..Options::default() };
    let app = spawn_app_with(backend, options).await;
    let receiver = Receiver::start().await;
    let (created, _) = register(&app, &receiver, json!(["customer.*"])).await;
    app.create_customer("C1", json!({})).await;
    until("the first event", &receiver, |r| r.accepted().len() == 1).await;
    // C2's delivery hangs until it times out, and by then the database is gone.
    receiver.hang(true);
    app.create_customer("C2", json!({})).await;
    until("C2 is being delivered", &receiver, |r| r.received().len() == 2).await;
    let release = match (&app.proxy, &app.database) {
        (Some(proxy), _) => {
            proxy.cut();
            None
        }
        (None, custclass::db::DatabaseUrl::Sqlite(path)) => Some(crate::helpers::hold_sqlite_write_lock(path.clone())),
        (None, _) => unreachable!("MySQL runs through the proxy here"),
    };
    receiver.hang(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    match release {
        Some(holder) => holder.release(),
        None => app.proxy.as_ref().unwrap().restore().await,
    }
    until("C2 is delivered after the outage", &receiver, |r| {
        r.accepted().iter().any(|e| e["data"]["customer"] == "C2")
    })
    .await;
    app.create_customer("C3", json!({})).await;
    until("and C3 after it", &receiver, |r| r.accepted().iter().any(|e| e["data"]["customer"] == "C3")).await;
    let codes: Vec<Value> = receiver.accepted().iter().map(|e| e["data"]["customer"].clone()).collect();
    assert_eq!(codes, [json!("C1"), json!("C2"), json!("C3")], "in order, none lost");
    assert_eq!(webhook(&app, &created["id"]).await["enabled"], true);
}

async fn bad_webhook_requests_are_refused(app: TestApp) {
    for (body, field) in [
        (json!({"url": "ftp://crm.example.com/"}), "url"),
        (json!({"url": "crm.example.com/hooks"}), "url"),
        (json!({"url": "https://user:password@crm.example.com/"}), "url"),
        (json!({"url": "https://crm.example.com/", "description": "x".repeat(501)}), "description"),
    ] {
        let refused =
            problem(app.post("/api/v1/webhooks", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .await;
        assert_eq!(refused["errors"][0]["field"], field, "{refused}");
    }
    for types in [json!(["customer.renamed"]), json!(["nothing.*"]), json!(["customer.created,customer.updated"])] {
        let refused = problem(
            app.post("/api/v1/webhooks", &json!({"url": "https://crm.example.com/", "types": types})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_event_type",
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], "types");
    }
    problem(
        app.post("/api/v1/webhooks", &json!({"url": "https://crm.example.com/", "secret": "mine"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    problem(app.get("/api/v1/webhooks/999").await, StatusCode::NOT_FOUND, "webhook_not_found").await;
    problem(app.get("/api/v1/webhooks/1/deliveries?limit=0").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    let listed = ok_json(app.get("/api/v1/webhooks").await, StatusCode::OK).await;
    assert_eq!(listed["items"], json!([]), "nothing refused was stored");
}

async fn internal_addresses_are_refused_without_webhook_allow_private(backend: Backend) {
    let mut options = Options::default();
    options.webhooks.allow_private = false;
    let app = spawn_app_with(backend, options).await;
    for internal in [
        "http://127.0.0.1:9000/hooks",
        "http://localhost:8080/hooks",
        "http://10.0.0.8/hooks",
        "http://192.168.1.20/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hooks",
        "http://[fd12::1]/hooks",
    ] {
        let refused = problem(
            app.post("/api/v1/webhooks", &json!({"url": internal})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(refused["detail"].as_str().unwrap().contains("WEBHOOK_ALLOW_PRIVATE"), "{internal}: {refused}");
    }
    let public =
        ok_json(app.post("/api/v1/webhooks", &json!({"url": "https://8.8.8.8/hooks"})).await, StatusCode::CREATED)
            .await;
    let moved =
        app.patch(&format!("/api/v1/webhooks/{}", public["id"]), &json!({"url": "http://127.0.0.1/hooks"})).await;
    problem(moved, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        webhook(&app, &public["id"]).await["url"],
        "https://8.8.8.8/hooks",
        "the refused change changed nothing"
    );
    let (events, _) = read_feed(&app, None, "", 100).await;
    assert!(events.is_empty());
}

/// Forty endpoints that take a delivery and never answer, and one that answers: the
/// healthy one is sent the event in the first wave, before any hanging delivery has
/// timed out, so it waits for none of them.
async fn forty_hanging_endpoints_do_not_hold_back_a_healthy_one(app: TestApp) {
    let hanging = Receiver::start().await;
    hanging.hang(true);
    let mut stuck = Vec::new();
    for n in 0..40 {
        let created = app
            .post("/api/v1/webhooks", &json!({"url": format!("{}/{n}", hanging.url), "types": ["customer.created"]}))
            .await;
        stuck.push(ok_json(created, StatusCode::CREATED).await["id"].clone());
    }
    let healthy = Receiver::start().await;
    register(&app, &healthy, json!(["customer.created"])).await;
    app.create_customer("C1", json!({})).await;
    until("the healthy endpoint gets the event", &healthy, |r| !r.received().is_empty()).await;
    let mut timed_out = Vec::new();
    for id in &stuck {
        if webhook(&app, id).await["failures"].as_i64().unwrap() > 0 {
            timed_out.push(id.clone());
        }
    }
    assert_eq!(
        timed_out,
        Vec::<Value>::new(),
        "the healthy endpoint was sent its event before any hanging delivery timed out"
    );
    until("the hanging endpoints hold their deliveries", &hanging, |r| r.received().len() >= 40).await;
}
