use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{execute_directly, insert_customers_directly, ok_json, problem, TestApp};

both_backends!(
    filters_combine_across_schemes_with_subtrees,
    text_status_and_sort,
    bad_filters_and_cursors_are_refused,
    cursor_paging_visits_everyone_once_while_customers_are_added,
    intersections_of_large_categories_page_correctly,
    missing_values_dormancy_and_classification_filter_the_list,
);

fn codes(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect()
}

async fn setup(app: &TestApp) {
    app.create_scheme("REGION", "2-2").await;
    for (code, name) in
        [("01", "华北地区客户"), ("0101", "北京"), ("0102", "天津"), ("02", "华南地区客户"), ("0201", "广东")]
    {
        app.create_category("REGION", code, name).await;
    }
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    for (code, region, tier) in [
        ("C1", Some("0101"), Some("01")),
        ("C2", Some("0102"), Some("01")),
        ("C3", Some("0101"), Some("02")),
        ("C4", Some("0201"), Some("01")),
        ("C5", None, Some("01")),
        ("C6", Some("0102"), None),
    ] {
        let mut categories = serde_json::Map::new();
        if let Some(region) = region {
            categories.insert("REGION".into(), json!(region));
        }
        if let Some(tier) = tier {
            categories.insert("TIER".into(), json!(tier));
        }
        app.create_customer(code, Value::Object(categories)).await;
    }
}

async fn filters_combine_across_schemes_with_subtrees(app: TestApp) {
    setup(&app).await;
    let list = |query: &'static str| {
        let app = &app;
        async move { codes(&ok_json(app.get(&format!("/api/v1/customers?{query}")).await, StatusCode::OK).await) }
    };
    assert_eq!(list("category=REGION:01").await, ["C1", "C2", "C3", "C6"], "the subtree of 华北");
    assert_eq!(list("category=REGION:0101").await, ["C1", "C3"]);
    assert_eq!(list("category=REGION:01&category=TIER:01").await, ["C1", "C2"], "VIP customers in North China");
    assert_eq!(list("category=TIER:01&category=REGION:02").await, ["C4"]);
    assert_eq!(list("unclassified=REGION").await, ["C5"]);
    assert_eq!(list("unclassified=TIER&category=REGION:01").await, ["C6"]);
    assert_eq!(list("unclassified=TIER&unclassified=REGION").await, Vec::<String>::new());
    let page = ok_json(app.get("/api/v1/customers?category=REGION:01&category=TIER:01").await, StatusCode::OK).await;
    assert_eq!(page["next_cursor"], json!(null));
    assert_eq!(page["items"][0]["categories"], json!({"REGION": "0101", "TIER": "01"}));

    // Every kind of move shows in the next two-category list.
    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    assert_eq!(list("category=REGION:01&category=TIER:01").await, ["C2"], "a re-assignment");
    let batch = json!({"scheme": "REGION", "category": "0101", "customers": ["C4"]});
    ok_json(app.post("/api/v1/assignments/batch", &batch).await, StatusCode::OK).await;
    assert_eq!(list("category=REGION:01&category=TIER:01").await, ["C2", "C4"], "a batch move");
    assert_eq!(list("category=TIER:01&category=REGION:02").await, Vec::<String>::new());
    ok_json(app.delete("/api/v1/customers/C2/categories/REGION").await, StatusCode::OK).await;
    assert_eq!(list("category=TIER:01&category=REGION:01").await, ["C4"], "an unassignment");
    let rule = json!({"name": "C3 and C6 are VIP", "target_category": "01", "condition": {"field": "code", "op": "in", "value": ["C3", "C6"]}});
    ok_json(app.post("/api/v1/schemes/TIER/rules", &rule).await, StatusCode::CREATED).await;
    ok_json(
        app.post("/api/v1/schemes/TIER/classification-runs", &json!({"dry_run": false})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        list("category=TIER:01&category=REGION:01").await,
        ["C3", "C4", "C6"],
        "a classification run, moving C3 and giving C6 its first tier"
    );
    assert_eq!(list("category=REGION:0102&category=TIER:01").await, ["C6"]);
    assert_eq!(list("category=REGION:01&category=TIER:02").await, ["C1"]);

    // Moves between paths of different lengths, both ways.
    app.create_category("REGION", "03", "西北地区客户").await;
    ok_json(app.assign("C4", "REGION", "03").await, StatusCode::OK).await;
    assert_eq!(list("category=REGION:03&category=TIER:01").await, ["C4"], "to a shallower category");
    assert_eq!(list("category=TIER:01&category=REGION:01").await, ["C3", "C6"]);
    ok_json(app.assign("C4", "REGION", "0102").await, StatusCode::OK).await;
    assert_eq!(list("category=REGION:0102&category=TIER:01").await, ["C4", "C6"], "to a deeper one");
    assert_eq!(list("category=TIER:01&category=REGION:01").await, ["C3", "C4", "C6"]);
    assert_eq!(list("category=REGION:03").await, Vec::<String>::new());
    ok_json(app.assign("C6", "REGION", "0101").await, StatusCode::OK).await;
    assert_eq!(list("category=REGION:0101&category=TIER:01").await, ["C3", "C6"], "within the same parent");
    assert_eq!(list("category=REGION:0102&category=TIER:01").await, ["C4"]);
    assert_eq!(list("category=TIER:01&category=REGION:01").await, ["C3", "C4", "C6"]);
}

async fn text_status_and_sort(app: TestApp) {
    for (code, name, short) in [
        ("A1", "北京华电科技有限公司", "华电"),
        ("A2", "Shanghai Acme Trading", "ACME"),
        ("A3", "深圳华为技术", "华为"),
        ("A4", "100%_Pure Ltd", "pure"),
    ] {
        ok_json(
            app.post("/api/v1/customers", &json!({"code": code, "name": name, "short_name": short})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    ok_json(app.patch("/api/v1/customers/A3", &json!({"status": "inactive"})).await, StatusCode::OK).await;
    let list = |query: String| {
        let app = &app;
        async move { codes(&ok_json(app.get(&format!("/api/v1/customers?{query}")).await, StatusCode::OK).await) }
    };
    let encoded = |text: &str| text.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    assert_eq!(list(format!("q={}", encoded("华"))).await, ["A1", "A3"], "Chinese substring");
    assert_eq!(list(format!("q={}", encoded("华为"))).await, ["A3"], "short name");
    assert_eq!(list("q=acme".into()).await, ["A2"], "ASCII case-insensitive");
    assert_eq!(list("q=a2".into()).await, ["A2"], "code");
    assert_eq!(list(format!("q={}", encoded("%_"))).await, ["A4"], "wildcards are literal");
    assert_eq!(list(format!("q={}", encoded("_"))).await, ["A4"]);
    assert_eq!(list("status=inactive".into()).await, ["A3"]);
    assert_eq!(list("status=active&sort=-code".into()).await, ["A4", "A2", "A1"]);
    assert_eq!(list("sort=name".into()).await, ["A4", "A2", "A1", "A3"]);
    assert_eq!(list("sort=-created_at".into()).await, ["A4", "A3", "A2", "A1"]);
    assert_eq!(list("sort=created_at&limit=2".into()).await, ["A1", "A2"]);
}

async fn bad_filters_and_cursors_are_refused(app: TestApp) {
    setup(&app).await;
    problem(app.get("/api/v1/customers?category=NOPE:01").await, StatusCode::UNPROCESSABLE_ENTITY, "scheme_not_found")
        .await;
    problem(
        app.get("/api/v1/customers?category=REGION:09").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
    problem(app.get("/api/v1/customers?category=REGION").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    problem(app.get("/api/v1/customers?unclassified=NOPE").await, StatusCode::UNPROCESSABLE_ENTITY, "scheme_not_found")
        .await;
    problem(app.get("/api/v1/customers?status=gone").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    problem(app.get("/api/v1/customers?sort=colour").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers?limit=1001").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers?limit=x").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers?colour=red").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers?cursor=bm90IGpzb24").await, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let page = ok_json(app.get("/api/v1/customers?limit=2&sort=name").await, StatusCode::OK).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let body = problem(
        app.get(&format!("/api/v1/customers?limit=2&cursor={cursor}")).await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("sort=name"));
    let limit = ok_json(app.get("/api/v1/customers?limit=1000").await, StatusCode::OK).await;
    assert_eq!(limit["items"].as_array().unwrap().len(), 6);
}

/// Walks every page while another client keeps adding customers: everyone who was
/// there at the start is seen exactly once, and nobody is seen twice.
async fn cursor_paging_visits_everyone_once_while_customers_are_added(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let mut existing = HashSet::new();
    for i in 0..60 {
        let code = format!("P{:03}", i * 2);
        ok_json(
            app.post("/api/v1/customers", &json!({"code": code, "name": format!("客户{}", (i * 37) % 60)})).await,
            StatusCode::CREATED,
        )
        .await;
        existing.insert(code);
    }
    for sort in ["code", "-code", "name", "-created_at"] {
        let writer = {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let code = format!("P{:03}{sort}", i * 4 + 1).replace('-', "d").replace('_', "u");
                    app.post("/api/v1/customers", &json!({"code": code, "name": format!("新客户{i}")})).await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/customers?limit=7&sort={sort}&cursor={c}"),
                None => format!("/api/v1/customers?limit=7&sort={sort}"),
            };
            let page = ok_json(app.get(&path).await, StatusCode::OK).await;
            seen.extend(codes(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        writer.await.unwrap();
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "sort={sort}: someone was seen twice");
        assert!(
            existing.is_subset(&unique),
            "sort={sort}: missed {:?}",
            existing.difference(&unique).collect::<Vec<_>>()
        );
        existing = unique;
    }
}

/// Enough customers that every category is read in several chunks: pages of a
/// two-category intersection, both ways and with another filter, hold exactly the
/// customers that are in both categories.
async fn intersections_of_large_categories_page_correctly(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    for code in ["01", "0101", "0102", "02", "0201"] {
        app.create_category("REGION", code, &format!("区域{code}")).await;
    }
    app.create_scheme("TIER", "2").await;
    for code in ["01", "02", "03", "04", "05"] {
        app.create_category("TIER", code, &format!("等级{code}")).await;
    }
    let customers = insert_customers_directly(&app, "M", 700).await;
    let region = |i: usize| ["0101", "0102", "0201"][i % 3];
    let tier = |i: usize| ["01", "02", "03", "04", "05"][(i / 2) % 5];
    for category in ["0101", "0102", "0201"] {
        let members: Vec<&String> =
            customers.iter().enumerate().filter(|(i, _)| region(*i) == category).map(|(_, c)| c).collect();
        ok_json(
            app.post(
                "/api/v1/assignments/batch",
                &json!({"scheme": "REGION", "category": category, "customers": members}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
    }
    for category in ["01", "02", "03", "04", "05"] {
        let members: Vec<&String> =
            customers.iter().enumerate().filter(|(i, _)| tier(*i) == category).map(|(_, c)| c).collect();
        ok_json(
            app.post(
                "/api/v1/assignments/batch",
                &json!({"scheme": "TIER", "category": category, "customers": members}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
    }
    for i in (0..700).step_by(7) {
        ok_json(
            app.patch(&format!("/api/v1/customers/{}", customers[i]), &json!({"status": "inactive"})).await,
            StatusCode::OK,
        )
        .await;
    }

    let walk = |query: String| {
        let app = &app;
        async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/customers?{query}&cursor={c}"),
                    None => format!("/api/v1/customers?{query}"),
                };
                let page = ok_json(app.get(&path).await, StatusCode::OK).await;
                seen.extend(codes(&page));
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break seen,
                }
            }
        }
    };
    let expected: Vec<String> = customers
        .iter()
        .enumerate()
        .filter(|(i, _)| region(*i) != "0201" && tier(*i) == "02")
        .map(|(_, c)| c.clone())
        .collect();
    assert!(expected.len() > 50);
    assert_eq!(walk("category=REGION:01&category=TIER:02&limit=9".into()).await, expected);
    let mut descending = expected.clone();
    descending.reverse();
    assert_eq!(walk("category=TIER:02&category=REGION:01&limit=13&sort=-code".into()).await, descending);
    let inactive: Vec<String> = customers
        .iter()
        .enumerate()
        .filter(|(i, _)| region(*i) != "0201" && tier(*i) == "02" && i % 7 == 0)
        .map(|(_, c)| c.clone())
        .collect();
    assert!(!inactive.is_empty());
    assert_eq!(walk("category=REGION:01&category=TIER:02&status=inactive&limit=2".into()).await, inactive);
    let three: Vec<String> = customers
        .iter()
        .enumerate()
        .filter(|(i, _)| region(*i) == "0102" && tier(*i) == "05")
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(walk("category=REGION:0102&category=TIER:05&category=REGION:01&limit=1000".into()).await, three);
    assert_eq!(
        walk("category=REGION:0201&category=REGION:0101".into()).await,
        Vec::<String>::new(),
        "disjoint categories"
    );
}

/// Data-quality filters: a field or an own attribute value missing, no order for a
/// number of days, in a category of some scheme or of none.
async fn missing_values_dormancy_and_classification_filter_the_list(app: TestApp) {
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华北").await;
    ok_json(
        app.post("/api/v1/schemes/REGION/categories/01/attributes", &json!({"key": "level", "type": "string"})).await,
        StatusCode::CREATED,
    )
    .await;
    let customers = [
        json!({"code": "Q1", "name": "甲", "tax_id": "91310000MA1FL8TQ36", "phone": "021-5555 0101", "categories": {"REGION": "01"}, "attributes": {"level": "金"}}),
        json!({"code": "Q2", "name": "乙", "email": "b@example.cn", "categories": {"REGION": "01"}}),
        json!({"code": "Q3", "name": "丙", "status": "inactive", "categories": {"REGION": "01"}}),
        json!({"code": "Q4", "name": "丁"}),
    ];
    for customer in &customers {
        ok_json(app.post("/api/v1/customers", customer).await, StatusCode::CREATED).await;
    }
    let listed = |query: &'static str| {
        let app = &app;
        async move { codes(&ok_json(app.get(&format!("/api/v1/customers?{query}")).await, StatusCode::OK).await) }
    };
    assert_eq!(listed("missing=tax_id").await, ["Q2", "Q3", "Q4"]);
    assert_eq!(listed("missing=phone&missing=email").await, ["Q3", "Q4"]);
    assert_eq!(listed("missing=attr:level&category=REGION:01").await, ["Q2", "Q3"], "with a category driving the page");
    assert_eq!(listed("classified=true").await, ["Q1", "Q2", "Q3"]);
    assert_eq!(listed("classified=false").await, ["Q4"]);
    assert_eq!(listed("status=inactive&classified=true").await, ["Q3"]);

    // Dormant for 30 days: created before them, and no order in them (a refund is none).
    execute_directly(&app, &["UPDATE customers SET created_at = '2025-01-01 00:00:00' WHERE code <> 'Q4'"]).await;
    let day = |days: i64| (chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let sales = json!([
        {"external_id": "S1", "customer_code": "Q1", "amount": "100.00", "occurred_at": day(10)},
        {"external_id": "S2", "customer_code": "Q2", "amount": "100.00", "occurred_at": day(60)},
        {"external_id": "S3", "customer_code": "Q3", "amount": "-20.00", "occurred_at": day(5)},
    ]);
    ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
    assert_eq!(listed("dormant_days=30").await, ["Q2", "Q3"], "Q4 is too new to be dormant");
    assert_eq!(listed("dormant_days=90").await, ["Q3"]);
    let dormant =
        ok_json(app.get("/api/v1/reports/distribution?scheme=REGION&dormant_days=30").await, StatusCode::OK).await;
    assert_eq!(dormant["population"], 2, "the reports take the same filters");

    for (query, field) in
        [("missing=fax", "missing"), ("dormant_days=0", "dormant_days"), ("classified=yes", "classified")]
    {
        let refused = problem(
            app.get(&format!("/api/v1/customers?{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], field);
    }
    problem(
        app.get("/api/v1/customers?missing=attr:nope").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attribute_not_found",
    )
    .await;
    problem(
        app.get("/api/v1/reports/distribution?scheme=REGION&as_of=2026-01-01&missing=tax_id").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "filter_not_historical",
    )
    .await;
}
