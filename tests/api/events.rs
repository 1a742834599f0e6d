//! The change feed: `GET /events`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{
    insert_customers_directly, ok_json, problem, spawn_app_with, with_connection, Backend, Options, TestApp,
};

both_backends!(
    every_change_is_an_event_in_order_and_a_saved_cursor_misses_nothing,
    types_narrow_the_feed_and_a_long_poll_wakes_on_a_change,
    a_cursor_past_the_retention_is_gone,
    bad_feed_queries_are_refused,
    a_cursor_read_between_two_writers_commits_skips_nothing,
    moves_stored_together_read_as_one_event_each,
    an_import_stores_its_events_together_and_reads_them_one_by_one
);
both_backends!(backend: a_run_reports_each_move_and_its_end);

/// Every event after `after` (none: from the start), `limit` a page, following
/// `next_cursor` until a page comes back empty; and the last cursor.
pub(crate) async fn read_feed(app: &TestApp, after: Option<&str>, query: &str, limit: usize) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    let mut cursor = after.map(str::to_string);
    loop {
        let after = cursor.as_ref().map(|c| format!("&after={c}")).unwrap_or_default();
        let page = ok_json(app.get(&format!("/api/v1/events?limit={limit}{after}{query}")).await, StatusCode::OK).await;
        let next = page["next_cursor"].as_str().expect("next_cursor").to_string();
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return (events, next);
        }
        events.extend(items);
        cursor = Some(next);
    }
}

/// Waits (long-polling) until the feed holds `count` events of `query`, and returns them all.
pub(crate) async fn feed_of(app: &TestApp, query: &str, count: usize) -> Vec<Value> {
    for _ in 0..40 {
        let (events, last) = read_feed(app, None, query, 1000).await;
        if events.len() >= count {
            return events;
        }
        // Whatever arrives next wakes this; the sequencer numbers within a fraction of a second.
        ok_json(app.get(&format!("/api/v1/events?after={last}&wait=1{query}")).await, StatusCode::OK).await;
    }
    panic!("the feed did not reach {count} events of {query:?}");
}

pub(crate) fn types_of(events: &[Value]) -> Vec<&str> {
    events.iter().map(|event| event["type"].as_str().unwrap()).collect()
}

pub(crate) fn ids_of(events: &[Value]) -> Vec<i64> {
    events.iter().map(|event| event["id"].as_str().unwrap().parse().unwrap()).collect()
}

async fn every_change_is_an_event_in_order_and_a_saved_cursor_misses_nothing(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    app.create_customer("C1", json!({"TIER": "01"})).await;
    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    ok_json(app.patch("/api/v1/customers/C1", &json!({"name": "C1 股份有限公司"})).await, StatusCode::OK).await;
    assert_eq!(app.delete("/api/v1/customers/C1").await.status(), StatusCode::NO_CONTENT);

    let events = feed_of(&app, "", 9).await;
    assert_eq!(
        types_of(&events),
        [
            "scheme.created",
            "category.created",
            "category.created",
            "customer.created",
            "classification.changed",
            "classification.changed",
            "customer.updated",
            "classification.changed",
            "customer.deleted"
        ]
    );
    let moves: Vec<(Value, Value, Value)> = events
        .iter()
        .filter(|e| e["type"] == "classification.changed")
        .map(|e| (e["data"]["from"].clone(), e["data"]["to"].clone(), e["data"]["source"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, json!("01"), json!("manual")),
            (json!("01"), json!("02"), json!("manual")),
            (json!("02"), Value::Null, json!("manual"))
        ]
    );
    let upgrade = &events[5]["data"];
    assert_eq!(
        (&upgrade["customer"], &upgrade["scheme"], &upgrade["direction"]),
        (&json!("C1"), &json!("TIER"), &json!("lateral"))
    );
    assert_eq!(events[6]["data"], json!({"customer": "C1", "version": 3}), "the update reports the version it made");
    assert_eq!(events[1]["data"], json!({"scheme": "TIER", "category": "01"}));

    let ids = ids_of(&events);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    // A consumer reading two at a time, saving the cursor between pages, sees the same.
    let (paged, last) = read_feed(&app, None, "", 2).await;
    assert_eq!(ids_of(&paged), ids);
    assert_eq!(last, ids.last().unwrap().to_string());
    // Asking again with the saved cursor gives nothing twice, until something happens.
    let again = ok_json(app.get(&format!("/api/v1/events?after={last}")).await, StatusCode::OK).await;
    assert_eq!((again["items"].as_array().unwrap().len(), again["next_cursor"].as_str()), (0, Some(last.as_str())));
    app.create_customer("C2", json!({})).await;
    let (after_saved, _) = read_feed(&app, Some(&last), "&wait=5", 100).await;
    assert_eq!(types_of(&after_saved), ["customer.created"]);
}

async fn types_narrow_the_feed_and_a_long_poll_wakes_on_a_change(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_customer("C1", json!({"TIER": "01"})).await;
    feed_of(&app, "", 4).await;

    let customers = feed_of(&app, "&types=customer.*", 1).await;
    assert_eq!(types_of(&customers), ["customer.created"]);
    let (both, last) = read_feed(&app, None, "&types=classification.changed,scheme.*", 100).await;
    assert_eq!(types_of(&both), ["scheme.created", "classification.changed"]);
    // The cursor of a filtered read moves past what the filter left out.
    let (rest, _) = read_feed(&app, Some(&last), "", 100).await;
    assert!(rest.is_empty(), "{rest:?}");

    // A long poll from the newest event returns the next change when it happens.
    let waiting = {
        let request = app.admin(Method::GET, "/api/v1/events?after=latest&wait=30&types=classification.changed");
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.create_category("TIER", "02", "普通客户").await;
    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    let woken = ok_json(waiting.await.unwrap(), StatusCode::OK).await;
    assert_eq!(types_of(woken["items"].as_array().unwrap()), ["classification.changed"], "{woken}");
    assert_eq!(woken["items"][0]["data"]["to"], "02");
}

async fn a_run_reports_each_move_and_its_end(backend: Backend) {
    let app = spawn_app_with(backend, Options { run_batch_size: 2, ..Options::default() }).await;
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    for code in ["A", "B", "C", "D", "E"] {
        app.create_customer(code, json!({"TIER": "02"})).await;
    }
    let rule = json!({"name": "everyone is VIP", "target_category": "01", "condition": {"field": "status", "op": "=", "value": "active"}});
    let rule = ok_json(app.post("/api/v1/schemes/TIER/rules", &rule).await, StatusCode::CREATED).await;
    let run =
        ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &json!({})).await, StatusCode::CREATED).await;

    let events = feed_of(&app, "&types=classification.changed,classification_run.*", 11).await;
    let by_run: Vec<&Value> = events.iter().filter(|e| e["data"]["run_id"] == run["id"]).collect();
    let mut moved: Vec<&str> = by_run
        .iter()
        .filter(|e| e["type"] == "classification.changed")
        .map(|e| e["data"]["customer"].as_str().unwrap())
        .collect();
    // Batches commit in their own order (a run shares them between two connections on MySQL).
    moved.sort_unstable();
    assert_eq!(moved, ["A", "B", "C", "D", "E"], "one event per customer moved");
    for change in by_run.iter().filter(|e| e["type"] == "classification.changed") {
        let data = &change["data"];
        assert_eq!(
            (&data["from"], &data["to"], &data["source"], &data["rule_id"]),
            (&json!("02"), &json!("01"), &json!("rule"), &rule["id"]),
            "{data}"
        );
    }
    let finished = by_run.last().expect("the run's events");
    assert_eq!(finished["type"], "classification_run.finished", "the end comes after every move");
    assert_eq!(
        (&finished["data"]["status"], &finished["data"]["scheme"], &finished["data"]["totals"]["changed"]),
        (&json!("completed"), &json!("TIER"), &json!(5))
    );
}

async fn a_cursor_past_the_retention_is_gone(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_scheme("REGION", "2").await;
    let events = feed_of(&app, "", 2).await;
    let first = events[0]["id"].as_str().unwrap().to_string();

    // The first event ages past a 30-day retention; the hourly pruning deletes it.
    let pruned = with_connection(&app, move |conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!("UPDATE events SET occurred_at = '2020-01-01 00:00:00' WHERE position = {first}"))
            .execute(conn)
            .unwrap();
        custclass::store::feed::events::prune(conn, custclass::db::now() - chrono::Duration::days(30)).unwrap()
    })
    .await;
    assert_eq!(pruned, 1);
    let expired = problem(app.get("/api/v1/events?after=0").await, StatusCode::GONE, "cursor_expired").await;
    assert!(expired["detail"].as_str().unwrap().contains("retention"), "{expired}");
    // From the start means from the oldest event kept.
    let (kept, _) = read_feed(&app, None, "", 100).await;
    assert_eq!(types_of(&kept), ["scheme.created"]);
    assert_eq!(kept[0]["data"]["scheme"], "REGION");
    let cursor = events[0]["id"].as_str().unwrap();
    ok_json(app.get(&format!("/api/v1/events?after={cursor}")).await, StatusCode::OK).await;
}

/// A batch's moves are stored a thousand to a row and numbered as consecutive events:
/// on pages that cut through those rows, each move is one event, in order, once; a
/// cursor may stand inside a row; retention deletes such a row whole.
async fn moves_stored_together_read_as_one_event_each(app: TestApp) {
    app.create_tiers().await;
    let codes = insert_customers_directly(&app, "G", 2500).await;
    let structure = feed_of(&app, "", 4).await;
    let before: i64 = structure[3]["id"].as_str().unwrap().parse().unwrap();
    let batch = json!({"scheme": "TIER", "category": "02", "customers": codes, "reason": "批量调整"});
    assert_eq!(ok_json(app.post("/api/v1/assignments/batch", &batch).await, StatusCode::OK).await["changed"], 2500);
    feed_of(&app, "&types=classification.changed", 2500).await;

    let (moves, _) = read_feed(&app, Some(&before.to_string()), "", 7).await;
    assert_eq!(
        ids_of(&moves),
        (before + 1..=before + 2500).collect::<Vec<_>>(),
        "one event a move, numbered without a gap"
    );
    let customers: Vec<&str> = moves.iter().map(|event| event["data"]["customer"].as_str().unwrap()).collect();
    assert_eq!(customers, codes);
    for event in &moves {
        assert_eq!(event["type"], "classification.changed");
        let data = &event["data"];
        assert_eq!(
            (&data["scheme"], &data["from"], &data["to"], &data["source"], &data["reason"]),
            (&json!("TIER"), &Value::Null, &json!("02"), &json!("manual"), &json!("批量调整")),
            "{event}"
        );
        assert!(data.get("customers").is_none(), "{event}");
    }
    let stored = with_connection(&app, |conn| {
        use custclass::db::schema::events;
        use diesel::prelude::*;
        events::table.filter(events::event_type.eq("classification.changed")).count().get_result::<i64>(conn).unwrap()
    })
    .await;
    assert_eq!(stored, 3, "2,500 moves take three rows");

    let inside = before + 1234;
    let (rest, _) = read_feed(&app, Some(&inside.to_string()), "&types=classification.changed", 1000).await;
    assert_eq!(rest.iter().map(|event| event["data"]["customer"].as_str().unwrap()).collect::<Vec<_>>(), codes[1234..]);

    let pruned = with_connection(&app, |conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query("UPDATE events SET occurred_at = '2020-01-01 00:00:00'").execute(conn).unwrap();
        custclass::store::feed::events::prune(conn, custclass::db::now() - chrono::Duration::days(30)).unwrap()
    })
    .await;
    assert_eq!(pruned, 2504, "the structure's four events and the 2,500 moves");
    problem(app.get(&format!("/api/v1/events?after={inside}")).await, StatusCode::GONE, "cursor_expired").await;
    let latest = before + 2500;
    let after_all = ok_json(app.get(&format!("/api/v1/events?after={latest}")).await, StatusCode::OK).await;
    assert_eq!(after_all["items"], json!([]));
}

/// An import's new customers: their `customer.created` events share a row, and so do
/// their placements in each scheme; read, each is an event of its own.
async fn an_import_stores_its_events_together_and_reads_them_one_by_one(app: TestApp) {
    app.create_tiers().await;
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华北").await;
    // Two schemes and four categories: the cursor goes after all six.
    let before = feed_of(&app, "", 6).await;
    let cursor = before.last().unwrap()["id"].as_str().unwrap().to_string();
    let file = "code,name,category:TIER,category:REGION\nI1,一,01,01\nI2,二,01,01\nI3,三,02,01\n";
    let imported = app
        .request(Method::POST, "/api/v1/imports/customers")
        .bearer_auth(&app.admin_key)
        .header("Content-Type", "text/csv")
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(imported, StatusCode::OK).await["created"], 3);

    feed_of(&app, "", 6 + 9).await;
    let (events, _) = read_feed(&app, Some(&cursor), "", 2).await;
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|event| {
            let data = &event["data"];
            let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
            (text(&event["type"]), text(&data["customer"]), format!("{}{}", text(&data["scheme"]), text(&data["to"])))
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("customer.created", "I1", ""),
        ("customer.created", "I2", ""),
        ("customer.created", "I3", ""),
        ("classification.changed", "I1", "TIER01"),
        ("classification.changed", "I2", "TIER01"),
        ("classification.changed", "I1", "REGION01"),
        ("classification.changed", "I2", "REGION01"),
        ("classification.changed", "I3", "REGION01"),
        ("classification.changed", "I3", "TIER02"),
    ]
    .iter()
    .map(|(kind, customer, change)| (kind.to_string(), customer.to_string(), change.to_string()))
    .collect();
    let mut sorted = seen.clone();
    sorted[3..].sort_by(|a, b| (&a.2, &a.1).cmp(&(&b.2, &b.1)));
    let mut wanted = expected.clone();
    wanted[3..].sort_by(|a, b| (&a.2, &a.1).cmp(&(&b.2, &b.1)));
    assert_eq!(sorted, wanted, "{seen:?}");
    let first: i64 = cursor.parse().unwrap();
    assert_eq!(ids_of(&events), (first + 1..=first + 9).collect::<Vec<_>>());
    let rows = with_connection(&app, move |conn| {
        use custclass::db::schema::events;
        use diesel::prelude::*;
        events::table.filter(events::position.gt(first)).count().get_result::<i64>(conn).unwrap()
    })
    .await;
    assert_eq!(rows, 4, "created, and one row per change shared: TIER 01, TIER 02, REGION 01");
}

async fn bad_feed_queries_are_refused(app: TestApp) {
    for (query, code) in [
        ("after=abc", "invalid_cursor"),
        ("after=-1", "invalid_cursor"),
        ("wait=61", "invalid_query"),
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
    ] {
        problem(app.get(&format!("/api/v1/events?{query}")).await, StatusCode::BAD_REQUEST, code).await;
    }
    for types in ["customer.renamed", "nothing.*", "customer.created,customer"] {
        let refused = problem(
            app.get(&format!("/api/v1/events?types={types}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_event_type",
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], "types", "{refused}");
        assert!(refused["errors"][0]["message"].as_str().unwrap().contains("classification.changed"), "{refused}");
    }
    let far = ok_json(app.get(&format!("/api/v1/events?after={}", i64::MAX)).await, StatusCode::OK).await;
    assert_eq!(far["items"], json!([]), "a cursor past everything reads nothing");
    let reader = app.key("reader", "read").await;
    let page = app.request(Method::GET, "/api/v1/events").bearer_auth(reader).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the feed needs scope read only");
    let anonymous = reqwest::Client::new().get(format!("{}/api/v1/events", app.address)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// A writer whose transaction holds an event uncommitted, straight on the database:
/// it begins, inserts, tells `inserted`, and commits once told on `release`.
fn hold_uncommitted_event(
    database: custclass::db::DatabaseUrl,
) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    use diesel::RunQueryDsl;

    let (inserted_tx, inserted) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let pool = custclass::db::build_pool(
            &database,
            1,
            custclass::db::Timeouts::with_wait(std::time::Duration::from_secs(10)),
        )
        .unwrap();
        let mut session = pool.get().unwrap();
        let begin = match &session.conn {
            custclass::db::DbConnection::Mysql(_) => "BEGIN",
            custclass::db::DbConnection::Sqlite(_) => "BEGIN IMMEDIATE",
        };
        diesel::sql_query(begin).execute(&mut session.conn).unwrap();
        // Stamped now: an older event could be pruned by the replica's retention pass as
        // soon as it is committed, and the reader's cursor would then have expired.
        let now = chrono::Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S");
        diesel::sql_query(format!("INSERT INTO events (position, event_type, occurred_at, data) VALUES (NULL, 'customer.updated', '{now}', '{{\"customer\":\"HELD\",\"version\":2}}')"))
            .execute(&mut session.conn)
            .unwrap();
        inserted_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        diesel::sql_query("COMMIT").execute(&mut session.conn).unwrap();
    });
    (inserted, release, holder)
}

/// Writer A inserts its event first but commits last; writer B commits in between
/// (on SQLite, B waits for A's lock instead). A reader that saved its cursor after
/// B's event still gets A's: a cursor never passes an uncommitted event.
async fn a_cursor_read_between_two_writers_commits_skips_nothing(app: TestApp) {
    let (_, start) = read_feed(&app, None, "", 100).await;
    let (inserted, release, holder) = hold_uncommitted_event(app.database.clone());
    tokio::task::spawn_blocking(move || inserted.recv().unwrap()).await.unwrap();
    let writer_b = {
        let (address, key) = (app.address.clone(), app.admin_key.clone());
        tokio::spawn(async move {
            let body = json!({"code": "B1", "name": "乙"});
            reqwest::Client::new()
                .post(format!("{address}/api/v1/customers"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let mysql = matches!(app.database, custclass::db::DatabaseUrl::Mysql(_));
    let mut seen = Vec::new();
    let mut cursor = start.clone();
    if mysql {
        // B commits while A still holds its event; the reader saves its cursor after B's.
        let (between, next) = {
            let mut waited = 0;
            loop {
                let (events, next) = read_feed(&app, Some(&cursor), "&wait=1", 100).await;
                if !events.is_empty() || waited > 20 {
                    break (events, next);
                }
                waited += 1;
            }
        };
        assert_eq!(
            between.iter().map(|e| e["data"]["customer"].as_str().unwrap()).collect::<Vec<_>>(),
            ["B1"],
            "only the committed writer's event"
        );
        seen.extend(between);
        cursor = next;
    } else {
        let (between, next) = read_feed(&app, Some(&cursor), "", 100).await;
        assert!(between.is_empty(), "nothing is committed yet: {between:?}");
        cursor = next;
    }
    release.send(()).unwrap();
    tokio::task::spawn_blocking(move || holder.join().unwrap()).await.unwrap();
    assert_eq!(writer_b.await.unwrap(), StatusCode::CREATED);
    for _ in 0..40 {
        let (events, next) = read_feed(&app, Some(&cursor), "&wait=1", 100).await;
        seen.extend(events);
        cursor = next;
        if seen.len() >= 2 {
            break;
        }
    }
    let mut customers: Vec<&str> = seen.iter().map(|e| e["data"]["customer"].as_str().unwrap()).collect();
    customers.sort_unstable();
    assert_eq!(customers, ["B1", "HELD"], "each writer's event once, none skipped");
    let ids = ids_of(&seen);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}
