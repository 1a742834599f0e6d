//! Record-level data permission (记录级数据权限): keys restricted to customers whose
//! category in a scheme lies in some subtrees, on every endpoint, inside and outside.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::events::{feed_of, read_feed};
use crate::helpers::{ok_json, problem, TestApp};
use crate::receiver::Receiver;

both_backends!(
    restricted_keys_are_checked_when_made,
    a_restricted_key_reads_only_customers_inside,
    reports_and_category_counts_count_the_visible_customers_only,
    a_restricted_key_changes_only_customers_inside_and_keeps_them_there,
    an_import_with_a_restricted_key_writes_inside_only,
    whole_archive_endpoints_refuse_a_restricted_key,
    the_feed_and_webhooks_of_a_restricted_key_show_customers_inside_only,
    every_event_a_restricted_key_reads_names_no_customer_outside,
    a_restricted_key_ranks_among_the_customers_it_may_see,
);

/// REGION 01 (华北: 0101, 0102) and 02 (华南: 0201, 0203); TIER 01, 02. N1 and N2 in
/// 华北, S1 in 0201, S3 in 0203, U without a region; every one in TIER 02.
async fn archive(app: &TestApp) {
    structure(app).await;
    customers(app).await;
}

async fn structure(app: &TestApp) {
    app.create_scheme("REGION", "2-2").await;
    for (code, name) in
        [("01", "华北"), ("0101", "北京"), ("0102", "天津"), ("02", "华南"), ("0201", "广州"), ("0203", "深圳")]
    {
        app.create_category("REGION", code, name).await;
    }
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
}

async fn customers(app: &TestApp) {
    for (code, region) in
        [("N1", Some("0101")), ("N2", Some("0102")), ("S1", Some("0201")), ("S3", Some("0203")), ("U", None)]
    {
        let categories = match region {
            Some(region) => json!({"REGION": region, "TIER": "02"}),
            None => json!({"TIER": "02"}),
        };
        app.create_customer(code, categories).await;
    }
}

const INSIDE: [&str; 3] = ["N1", "N2", "S3"];
const OUTSIDE: [&str; 2] = ["S1", "U"];

/// A key restricted to 华北 and 深圳 (`{"REGION": ["01", "0203"]}`).
async fn regional_key(app: &TestApp, scope: &str) -> String {
    let body = json!({"name": format!("north-{scope}"), "scope": scope, "restrict": {"REGION": ["01", "0203"]}});
    let created = ok_json(app.post("/api/v1/api-keys", &body).await, StatusCode::CREATED).await;
    assert_eq!(created["restrict"], json!({"REGION": ["01", "0203"]}));
    created["secret"].as_str().unwrap().to_string()
}

fn call(app: &TestApp, key: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.request(method, path).bearer_auth(key)
}

async fn get(app: &TestApp, key: &str, path: &str) -> Response {
    call(app, key, Method::GET, path).send().await.unwrap()
}

fn codes_of(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect()
}

async fn restricted_keys_are_checked_when_made(app: TestApp) {
    archive(&app).await;
    let admin = problem(
        app.post("/api/v1/api-keys", &json!({"name": "x", "scope": "admin", "restrict": {"REGION": ["01"]}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "restricted_admin",
    )
    .await;
    assert_eq!(admin["errors"][0]["field"], "scope");
    for (restrict, code, field) in [
        (json!({"NOPE": ["01"]}), "invalid_restriction", "restrict/NOPE"),
        (json!({"REGION": ["09"]}), "invalid_restriction", "restrict/REGION"),
        (json!({"REGION": []}), "validation_failed", "restrict/REGION"),
        (json!({"REGION": ["0-1"]}), "validation_failed", "restrict/REGION/0"),
        (json!(["01"]), "validation_failed", "restrict"),
    ] {
        let refused = problem(
            app.post("/api/v1/api-keys", &json!({"name": "x", "scope": "read", "restrict": restrict})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], field, "{refused}");
    }
    regional_key(&app, "read").await;
    let keys = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    let restricted: Vec<&Value> =
        keys["items"].as_array().unwrap().iter().filter(|k| !k["restrict"].is_null()).collect();
    assert_eq!(restricted.len(), 1, "nothing refused was stored: {keys}");
    assert_eq!(restricted[0]["name"], "north-read");
}

async fn a_restricted_key_reads_only_customers_inside(app: TestApp) {
    archive(&app).await;
    let key = regional_key(&app, "read").await;
    for code in INSIDE {
        let customer = ok_json(get(&app, &key, &format!("/api/v1/customers/{code}")).await, StatusCode::OK).await;
        assert_eq!(customer["code"], code);
        ok_json(get(&app, &key, &format!("/api/v1/customers/{code}/history")).await, StatusCode::OK).await;
        ok_json(get(&app, &key, &format!("/api/v1/customers/{code}/metrics")).await, StatusCode::OK).await;
    }
    let missing =
        problem(get(&app, &key, "/api/v1/customers/NOBODY").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    for code in OUTSIDE {
        let hidden = problem(
            get(&app, &key, &format!("/api/v1/customers/{code}")).await,
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
        assert_eq!(
            hidden["detail"],
            missing["detail"].as_str().unwrap().replace("NOBODY", code),
            "outside answers as if it did not exist"
        );
        problem(
            get(&app, &key, &format!("/api/v1/customers/{code}/history")).await,
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
        problem(
            get(&app, &key, &format!("/api/v1/customers/{code}/metrics")).await,
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
        ok_json(app.get(&format!("/api/v1/customers/{code}")).await, StatusCode::OK).await;
    }

    let all = ok_json(get(&app, &key, "/api/v1/customers").await, StatusCode::OK).await;
    assert_eq!(codes_of(&all), INSIDE);
    let south = ok_json(get(&app, &key, "/api/v1/customers?category=REGION:02").await, StatusCode::OK).await;
    assert_eq!(codes_of(&south), ["S3"], "a filter narrows within the restriction");
    let by_name = ok_json(get(&app, &key, "/api/v1/customers?sort=-name&q=有限公司").await, StatusCode::OK).await;
    assert_eq!(codes_of(&by_name), ["S3", "N2", "N1"]);
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = ok_json(get(&app, &key, &format!("/api/v1/customers?limit=1{cursor}")).await, StatusCode::OK).await;
        paged.extend(codes_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, INSIDE, "pages of one hold the same customers");

    let export = get(&app, &key, "/api/v1/exports/customers").await;
    assert_eq!(export.status(), StatusCode::OK);
    let csv = export.text().await.unwrap();
    let exported: Vec<&str> = csv.lines().skip(1).map(|line| line.split(',').next().unwrap()).collect();
    assert_eq!(exported, INSIDE);

    // The structure is the same for everyone.
    ok_json(get(&app, &key, "/api/v1/schemes").await, StatusCode::OK).await;
    ok_json(get(&app, &key, "/api/v1/schemes/TIER/rules").await, StatusCode::OK).await;
    ok_json(get(&app, &key, "/api/v1/schemes/REGION/categories/01/attributes").await, StatusCode::OK).await;
}

async fn reports_and_category_counts_count_the_visible_customers_only(app: TestApp) {
    archive(&app).await;
    let key = regional_key(&app, "read").await;
    let report = ok_json(get(&app, &key, "/api/v1/reports/distribution?scheme=REGION").await, StatusCode::OK).await;
    assert_eq!(report["population"], 3);
    let counted: Vec<(String, i64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["subtree_customers"].as_i64().unwrap() > 0)
        .map(|row| (row["code"].as_str().unwrap_or("-").to_string(), row["subtree_customers"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counted,
        [
            ("01".to_string(), 2),
            ("0101".to_string(), 1),
            ("0102".to_string(), 1),
            ("02".to_string(), 1),
            ("0203".to_string(), 1)
        ]
    );
    let everyone = ok_json(app.get("/api/v1/reports/distribution?scheme=REGION").await, StatusCode::OK).await;
    assert_eq!(everyone["population"], 5);
    let tiers = ok_json(get(&app, &key, "/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;
    assert_eq!(tiers["population"], 3);
    let crosstab =
        ok_json(get(&app, &key, "/api/v1/reports/crosstab?rows=REGION&cols=TIER").await, StatusCode::OK).await;
    assert_eq!(crosstab["population"], 3, "{crosstab}");

    let categories = ok_json(get(&app, &key, "/api/v1/schemes/REGION/categories").await, StatusCode::OK).await;
    let counts: Vec<(String, i64)> = categories["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["code"].as_str().unwrap().to_string(), c["subtree_customer_count"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [
            ("01".into(), 2),
            ("0101".into(), 1),
            ("0102".into(), 1),
            ("02".into(), 1),
            ("0201".into(), 0),
            ("0203".into(), 1)
        ]
    );
    let south = ok_json(get(&app, &key, "/api/v1/schemes/REGION/categories/02").await, StatusCode::OK).await;
    assert_eq!(south["subtree_customer_count"], 1);
    let tree = ok_json(get(&app, &key, "/api/v1/schemes/REGION/categories/tree").await, StatusCode::OK).await;
    assert_eq!(tree["items"][1]["subtree_customer_count"], 1);
    let unrestricted = ok_json(app.get("/api/v1/schemes/REGION/categories/02").await, StatusCode::OK).await;
    assert_eq!(unrestricted["subtree_customer_count"], 2);
}

async fn a_restricted_key_changes_only_customers_inside_and_keeps_them_there(app: TestApp) {
    archive(&app).await;
    let key = regional_key(&app, "write").await;
    let send = |method: Method, path: &str, body: Value| call(&app, &key, method, path).json(&body).send();

    // Creating: inside only.
    let created = ok_json(
        send(
            Method::POST,
            "/api/v1/customers",
            json!({"code": "N3", "name": "新客户", "categories": {"REGION": "0102", "TIER": "01"}}),
        )
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["categories"]["REGION"], "0102");
    for categories in [json!({"REGION": "0201"}), json!({"TIER": "01"})] {
        let refused =
            send(Method::POST, "/api/v1/customers", json!({"code": "X1", "name": "外", "categories": categories}))
                .await
                .unwrap();
        problem(refused, StatusCode::FORBIDDEN, "outside_restriction").await;
        problem(app.get("/api/v1/customers/X1").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    }

    // Changing a customer inside; one outside is not there.
    ok_json(
        send(Method::PATCH, "/api/v1/customers/N1", json!({"phone": "010-12345678"})).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    ok_json(send(Method::PUT, "/api/v1/customers/N1/attributes", json!({})).await.unwrap(), StatusCode::OK).await;
    for code in OUTSIDE {
        problem(
            send(Method::PATCH, &format!("/api/v1/customers/{code}"), json!({"phone": "020-12345678"})).await.unwrap(),
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
        problem(
            send(Method::PUT, &format!("/api/v1/customers/{code}/attributes"), json!({})).await.unwrap(),
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
        problem(
            send(Method::PUT, &format!("/api/v1/customers/{code}/categories/TIER"), json!({"category": "01"}))
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
        problem(
            call(&app, &key, Method::DELETE, &format!("/api/v1/customers/{code}")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "customer_not_found",
        )
        .await;
    }
    let stale = call(&app, &key, Method::PATCH, "/api/v1/customers/S1")
        .header("If-Match", "\"99\"")
        .json(&json!({"phone": "020-12345678"}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::NOT_FOUND, "customer_not_found").await;
    assert_eq!(
        ok_json(app.get("/api/v1/customers/S1").await, StatusCode::OK).await["version"],
        1,
        "nothing outside changed"
    );

    // Moves: within the subtrees, and in other schemes, freely; out of them, never.
    ok_json(
        send(Method::PUT, "/api/v1/customers/N1/categories/REGION", json!({"category": "0203"})).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    ok_json(
        send(Method::PUT, "/api/v1/customers/N1/categories/TIER", json!({"category": "01"})).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    problem(
        send(Method::PUT, "/api/v1/customers/N1/categories/REGION", json!({"category": "0201"})).await.unwrap(),
        StatusCode::FORBIDDEN,
        "outside_restriction",
    )
    .await;
    problem(
        call(&app, &key, Method::DELETE, "/api/v1/customers/N1/categories/REGION").send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "outside_restriction",
    )
    .await;
    ok_json(
        call(&app, &key, Method::DELETE, "/api/v1/customers/N1/categories/TIER").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let n1 = ok_json(app.get("/api/v1/customers/N1").await, StatusCode::OK).await;
    assert_eq!(n1["categories"], json!({"REGION": "0203"}));

    // Batches: customers outside count as unknown; categories outside are refused.
    let batch =
        |customers: Value, category: &str| json!({"scheme": "REGION", "category": category, "customers": customers});
    let unknown = problem(
        send(Method::POST, "/api/v1/assignments/batch", batch(json!(["N2", "S1"]), "0101")).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "customers_not_found",
    )
    .await;
    assert_eq!(unknown["errors"].as_array().unwrap().len(), 1);
    assert_eq!(unknown["errors"][0]["field"], "customers[1]");
    problem(
        send(Method::POST, "/api/v1/assignments/batch", batch(json!(["N2"]), "0201")).await.unwrap(),
        StatusCode::FORBIDDEN,
        "outside_restriction",
    )
    .await;
    let moved = ok_json(
        send(Method::POST, "/api/v1/assignments/batch", batch(json!(["N2", "S3"]), "0101")).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["changed"], 2);

    ok_json(app.get("/api/v1/customers/S1").await, StatusCode::OK).await;
    let response = call(&app, &key, Method::DELETE, "/api/v1/customers/N3").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(get(&app, &key, "/api/v1/customers/N3/history").await, StatusCode::NOT_FOUND, "customer_not_found").await;
}

async fn an_import_with_a_restricted_key_writes_inside_only(app: TestApp) {
    archive(&app).await;
    let key = regional_key(&app, "write").await;
    let file = "code,name,phone,category:REGION\nN1,,010-87654321,\nS1,,020-87654321,\nN4,新北,,0101\nS4,新南,,0201\nN2,,,0201\n";
    let import = call(&app, &key, Method::POST, "/api/v1/imports/customers?atomic=false")
        .header("Content-Type", "text/csv")
        .body(file)
        .send()
        .await
        .unwrap();
    let report = ok_json(import, StatusCode::OK).await;
    assert_eq!(
        [&report["created"], &report["updated"], &report["failed"]],
        [&json!(1), &json!(1), &json!(3)],
        "{report:#}"
    );
    let refused: Vec<(i64, String, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["column"].as_str().unwrap().to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (3, "code".to_string(), "outside_restriction".to_string()),
            (5, "category:REGION".to_string(), "outside_restriction".to_string()),
            (6, "category:REGION".to_string(), "outside_restriction".to_string())
        ]
    );
    assert_eq!(ok_json(app.get("/api/v1/customers/N1").await, StatusCode::OK).await["phone"], "010-87654321");
    assert_eq!(ok_json(app.get("/api/v1/customers/S1").await, StatusCode::OK).await["phone"], Value::Null);
    assert_eq!(ok_json(app.get("/api/v1/customers/N2").await, StatusCode::OK).await["categories"]["REGION"], "0102");
    ok_json(app.get("/api/v1/customers/N4").await, StatusCode::OK).await;
    problem(app.get("/api/v1/customers/S4").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    // The import's report is the key's own.
    let id = report["id"].as_str().unwrap();
    ok_json(get(&app, &key, &format!("/api/v1/imports/{id}")).await, StatusCode::OK).await;
    let admins = app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", "text/csv")
        .body("code,name\nA1,甲\n")
        .send()
        .await
        .unwrap();
    let admins = ok_json(admins, StatusCode::OK).await;
    problem(
        get(&app, &key, &format!("/api/v1/imports/{}", admins["id"].as_str().unwrap())).await,
        StatusCode::NOT_FOUND,
        "import_not_found",
    )
    .await;
}

async fn whole_archive_endpoints_refuse_a_restricted_key(app: TestApp) {
    archive(&app).await;
    let key = regional_key(&app, "write").await;
    for path in [
        "/api/v1/customers/duplicates?by=name",
        "/api/v1/reports/data-quality",
        "/api/v1/reports/transitions?scheme=REGION&from=2020-01-01&to=2030-01-01",
        "/api/v1/reports/transitions/customers?scheme=REGION&from=2020-01-01&to=2030-01-01&direction=in",
        "/api/v1/schemes/TIER/classification-runs",
        "/api/v1/api-keys",
    ] {
        let refused = get(&app, &key, path).await;
        let code = if path.ends_with("api-keys") { "insufficient_scope" } else { "restricted_key" };
        problem(refused, StatusCode::FORBIDDEN, code).await;
    }
    let sales = call(&app, &key, Method::POST, "/api/v1/transactions").json(&json!([{"external_id": "T1", "customer_code": "N1", "amount": "10.00", "occurred_at": "2026-01-01T00:00:00Z"}])).send().await.unwrap();
    problem(sales, StatusCode::FORBIDDEN, "restricted_key").await;
}

async fn the_feed_and_webhooks_of_a_restricted_key_show_customers_inside_only(app: TestApp) {
    let receiver = Receiver::start().await;
    structure(&app).await;
    let key = key_with_webhook(&app, &receiver).await;
    customers(&app).await;
    // Runs and webhooks speak of the whole archive; the customers outside stay out.
    ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &json!({"dry_run": true})).await, StatusCode::CREATED)
        .await;
    ok_json(app.assign("S1", "TIER", "01").await, StatusCode::OK).await;
    ok_json(app.assign("N1", "TIER", "01").await, StatusCode::OK).await;
    // A batch's moves are stored as one row; the key sees those of its customers.
    let batch = json!({"scheme": "TIER", "category": "01", "customers": ["N2", "S3", "U"]});
    ok_json(app.post("/api/v1/assignments/batch", &batch).await, StatusCode::OK).await;
    feed_of(&app, "&types=classification_run.finished", 1).await;
    let everything = feed_of(&app, "&types=classification.changed", 14).await;
    assert_eq!(everything.len(), 14);

    let seen = feed_as(&app, &key, 3).await;
    let customers: Vec<&str> = seen.iter().filter_map(|e| e["data"]["customer"].as_str()).collect();
    assert!(customers.iter().all(|c| INSIDE.contains(c)), "{customers:?}");
    assert!(customers.contains(&"N1") && customers.contains(&"S3"));
    let promoted: Vec<&str> = seen
        .iter()
        .filter(|e| e["type"] == "classification.changed" && e["data"]["to"] == "01")
        .map(|e| e["data"]["customer"].as_str().unwrap())
        .collect();
    assert_eq!(promoted, ["N1", "N2", "S3"]);
    assert!(seen.iter().any(|e| e["type"] == "category.created"), "the structure's events are everyone's");
    assert!(seen.iter().all(|e| e["type"] != "classification_run.finished"));
    let (unrestricted, _) = read_feed(&app, None, "", 1000).await;
    assert!(unrestricted.len() > seen.len());

    let expected: Vec<Value> = seen.iter().filter(|e| e["type"] == "customer.created").cloned().collect();
    assert_eq!(expected.len(), 3);
    for _ in 0..200 {
        if receiver.accepted().len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.accepted(), expected, "the key's webhook is sent what the key may see");
}

/// The whole feed as `key` reads it, `limit` events a page.
async fn feed_as(app: &TestApp, key: &str, limit: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.as_ref().map(|c| format!("&after={c}")).unwrap_or_default();
        let page = ok_json(get(app, key, &format!("/api/v1/events?limit={limit}{after}")).await, StatusCode::OK).await;
        let events = page["items"].as_array().unwrap().clone();
        if events.is_empty() {
            return seen;
        }
        seen.extend(events);
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
}

/// A write key restricted as [`regional_key`] with a webhook for `customer.created`;
/// its webhooks are its own.
async fn key_with_webhook(app: &TestApp, receiver: &Receiver) -> String {
    let key = regional_key(app, "write").await;
    let created = call(app, &key, Method::POST, "/api/v1/webhooks")
        .json(&json!({"url": receiver.url, "types": ["customer.created"]}))
        .send()
        .await
        .unwrap();
    let created = ok_json(created, StatusCode::CREATED).await;
    let admins = ok_json(
        app.post("/api/v1/webhooks", &json!({"url": "http://127.0.0.1:9/elsewhere"})).await,
        StatusCode::CREATED,
    )
    .await;
    let own = ok_json(get(app, &key, "/api/v1/webhooks").await, StatusCode::OK).await;
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    assert_eq!(own["items"][0]["id"], created["id"]);
    problem(
        get(app, &key, &format!("/api/v1/webhooks/{}", admins["id"])).await,
        StatusCode::NOT_FOUND,
        "webhook_not_found",
    )
    .await;
    let everyone = ok_json(app.get("/api/v1/webhooks").await, StatusCode::OK).await;
    assert_eq!(everyone["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.delete(&format!("/api/v1/webhooks/{}", admins["id"])).await.status(), StatusCode::NO_CONTENT);
    key
}

/// Every kind of event a restricted key reads (customers created, changed, moved and
/// merged; schemes and categories created, changed and deleted), in the feed
/// and in its webhook, names no customer outside its subtree: a customer merged into
/// one inside is left out of `merged`.
async fn every_event_a_restricted_key_reads_names_no_customer_outside(app: TestApp) {
    let receiver = Receiver::start().await;
    structure(&app).await;
    let key = regional_key(&app, "write").await;
    let hook =
        call(&app, &key, Method::POST, "/api/v1/webhooks").json(&json!({"url": receiver.url})).send().await.unwrap();
    ok_json(hook, StatusCode::CREATED).await;
    customers(&app).await;
    app.create_customer("OUTSIDER9", json!({"REGION": "0201"})).await;
    app.create_customer("GONE7", json!({"REGION": "0102"})).await;

    ok_json(app.patch("/api/v1/customers/N1", &json!({"name": "北京新名"})).await, StatusCode::OK).await;
    ok_json(app.patch("/api/v1/customers/S1", &json!({"name": "广州新名"})).await, StatusCode::OK).await;
    ok_json(app.assign("N2", "TIER", "01").await, StatusCode::OK).await;
    ok_json(app.assign("S1", "TIER", "01").await, StatusCode::OK).await;
    ok_json(app.assign("S3", "REGION", "0201").await, StatusCode::OK).await;
    assert_eq!(app.delete("/api/v1/customers/GONE7").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/api/v1/customers/U").await.status(), StatusCode::NO_CONTENT);
    ok_json(app.post("/api/v1/customers/N1/merge", &json!({"duplicates": ["OUTSIDER9"]})).await, StatusCode::OK).await;
    ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &json!({"dry_run": true})).await, StatusCode::CREATED)
        .await;
    app.create_scheme("GRADE", "1").await;
    ok_json(app.patch("/api/v1/schemes/GRADE", &json!({"name": "等级"})).await, StatusCode::OK).await;
    app.create_category("GRADE", "1", "一级").await;
    ok_json(app.patch("/api/v1/schemes/GRADE/categories/1", &json!({"name": "甲级"})).await, StatusCode::OK).await;
    assert_eq!(app.delete("/api/v1/schemes/GRADE/categories/1").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/api/v1/schemes/GRADE").await.status(), StatusCode::NO_CONTENT);
    // Numbered in the order they committed: once the last is in the feed, all are.
    feed_of(&app, "&types=scheme.deleted", 1).await;

    let seen = feed_as(&app, &key, 1000).await;
    let types: std::collections::BTreeSet<&str> = seen.iter().map(|event| event["type"].as_str().unwrap()).collect();
    for expected in [
        "customer.created",
        "customer.updated",
        "customer.merged",
        "classification.changed",
        "scheme.created",
        "scheme.updated",
        "scheme.deleted",
        "category.created",
        "category.updated",
        "category.deleted",
    ] {
        assert!(types.contains(expected), "{expected} in {types:?}");
    }
    // A restricted key reads the events of the customers it may see now: a deleted one
    // (GONE7 was inside) is no longer one of them, nor are the runs' events.
    for absent in ["customer.deleted", "classification_run.finished"] {
        assert!(!types.contains(absent), "{absent} in {types:?}");
    }
    for event in &seen {
        let text = event.to_string();
        for outside in ["S1", "OUTSIDER9", "\"U\""] {
            assert!(!text.contains(outside), "{outside} in {text}");
        }
    }
    let merged = seen.iter().find(|event| event["type"] == "customer.merged").unwrap();
    assert_eq!((&merged["data"]["customer"], &merged["data"]["merged"]), (&json!("N1"), &json!([])), "{merged}");
    let (unrestricted, _) = read_feed(&app, None, "&types=customer.merged", 10).await;
    assert_eq!(unrestricted[0]["data"]["merged"], json!(["OUTSIDER9"]), "an unrestricted key reads the whole event");

    // The webhook is sent each event as the key could see it when it was sent (S3 was
    // still inside then): the same filter and redaction, never a customer outside.
    for _ in 0..200 {
        if receiver.accepted().iter().any(|event| event["type"] == "scheme.deleted") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sent = receiver.accepted();
    let merged = sent.iter().find(|event| event["type"] == "customer.merged").expect("the merge was sent");
    assert_eq!(merged["data"]["merged"], json!([]), "{merged}");
    for event in &sent {
        let text = event.to_string();
        for outside in ["S1", "OUTSIDER9", "\"U\""] {
            assert!(!text.contains(outside), "{outside} sent in {text}");
        }
    }
}

/// `population=all` means all that the key may see: a sale of a customer outside moves
/// nothing of an inside customer's standing for a restricted key, where it does for
/// an unrestricted one.
async fn a_restricted_key_ranks_among_the_customers_it_may_see(app: TestApp) {
    archive(&app).await;
    let key = regional_key(&app, "read").await;
    let sale = |id: &str, customer: &str, amount: &str| json!({"external_id": id, "customer_code": customer, "amount": amount, "occurred_at": "2026-11-01T00:00:00Z"});
    let sales = json!([
        sale("T1", "N1", "100.00"),
        sale("T2", "N2", "50.00"),
        sale("T3", "S3", "300.00"),
        sale("T4", "S1", "10.00")
    ]);
    ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
    let standing = |key: Option<String>| {
        let app = &app;
        async move {
            let path = "/api/v1/customers/N1/metrics?population=all";
            let response = match key {
                Some(key) => get(app, &key, path).await,
                None => app.get(path).await,
            };
            ok_json(response, StatusCode::OK).await["standing"].clone()
        }
    };
    let before = standing(Some(key.clone())).await;
    let admin_before = standing(None).await;
    assert_ne!(before, admin_before, "the key ranks among 3 customers, the admin among 5: {before} {admin_before}");
    ok_json(app.post("/api/v1/transactions", &json!([sale("T5", "S1", "90.00")])).await, StatusCode::OK).await;
    assert_eq!(standing(Some(key.clone())).await, before, "a sale outside moves nothing the key may see");
    assert_ne!(standing(None).await, admin_before, "the same sale moves the unrestricted standing");
}
