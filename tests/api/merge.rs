//! Merging duplicates into a survivor (合并重复客户).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_read_model_agrees, ok_json, problem, TestApp};

both_backends!(
    a_merge_moves_sales_values_and_categories_to_the_survivor,
    a_dry_run_changes_nothing,
    bad_merges_are_refused
);

/// TIER (01 VIP, 02 普通) and REGION (01 华北, 02 华南, with `level` on 01), and:
/// S (the survivor: TIER 01, no region, no tax id, phone 010-1),
/// D1 (TIER 02, REGION 01 with level 金, a tax id, phone 010-2, email, two sales),
/// D2 (no categories, one sale, a note).
async fn three_of_one(app: &TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华北").await;
    app.create_category("REGION", "02", "华南").await;
    ok_json(
        app.post("/api/v1/schemes/REGION/categories/01/attributes", &json!({"key": "level", "type": "string"})).await,
        StatusCode::CREATED,
    )
    .await;
    let customers = [
        json!({"code": "S", "name": "北京电子有限公司", "phone": "010-5555 0001", "categories": {"TIER": "01"}}),
        json!({"code": "D1", "name": "北京电子有限责任公司", "tax_id": "91310000MA1FL8TQ36", "phone": "010-5555 0002", "email": "d1@example.cn", "categories": {"TIER": "02", "REGION": "01"}, "attributes": {"level": "金"}}),
        json!({"code": "D2", "name": "（北京）电子有限公司", "note": "老客户"}),
    ];
    for customer in &customers {
        ok_json(app.post("/api/v1/customers", customer).await, StatusCode::CREATED).await;
    }
    let sales = json!([
        {"external_id": "M1", "customer_code": "D1", "amount": "100.00", "occurred_at": "2026-01-10T00:00:00Z"},
        {"external_id": "M2", "customer_code": "D1", "amount": "50.50", "occurred_at": "2026-02-10T00:00:00Z"},
        {"external_id": "M3", "customer_code": "D2", "amount": "20.00", "occurred_at": "2026-03-10T00:00:00Z"},
        {"external_id": "M4", "customer_code": "S", "amount": "10.00", "occurred_at": "2026-03-11T00:00:00Z"},
    ]);
    ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
}

async fn merge(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/api/v1/customers/S/merge", &body).await
}

async fn a_merge_moves_sales_values_and_categories_to_the_survivor(app: TestApp) {
    three_of_one(&app).await;
    let tiers_before = ok_json(app.get("/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;
    assert_eq!(tiers_before["population"], 3);

    let result =
        ok_json(merge(&app, json!({"duplicates": ["D1", "D2"], "reason": "重复建档"})).await, StatusCode::OK).await;
    assert_eq!(result["merged"], json!(["D1", "D2"]));
    assert_eq!(result["transactions_moved"], 3);
    let survivor = &result["survivor"];
    assert_eq!(
        (survivor["name"].clone(), survivor["phone"].clone()),
        (json!("北京电子有限公司"), json!("010-5555 0001")),
        "the survivor's own fields win"
    );
    assert_eq!(
        (survivor["tax_id"].clone(), survivor["email"].clone(), survivor["note"].clone()),
        (json!("91310000MA1FL8TQ36"), json!("d1@example.cn"), json!("老客户")),
        "its empty ones are filled"
    );
    let categories: Vec<(Value, Value)> = survivor["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["scheme"].clone(), a["category"].clone()))
        .collect();
    assert_eq!(
        categories,
        [(json!("REGION"), json!("01")), (json!("TIER"), json!("01"))],
        "it keeps TIER 01 and takes D1's region"
    );
    assert_eq!(survivor["attributes"], json!({"level": "金"}), "and D1's value there");
    let conflicts: Vec<(Value, Value)> =
        result["conflicts"].as_array().unwrap().iter().map(|c| (c["field"].clone(), c["duplicate"].clone())).collect();
    assert_eq!(
        conflicts,
        [
            (json!("name"), json!("D1")),
            (json!("phone"), json!("D1")),
            (json!("name"), json!("D2")),
            (json!("categories.TIER"), json!("D1"))
        ]
    );

    let metrics = ok_json(app.get("/api/v1/customers/S/metrics?as_of=2026-04-01").await, StatusCode::OK).await;
    assert_eq!((metrics["lifetime_spend"].clone(), metrics["orders_12m"].clone()), (json!("180.50"), json!(4)));

    let gone = problem(app.get("/api/v1/customers/D1").await, StatusCode::NOT_FOUND, "customer_merged").await;
    assert_eq!(gone["merged_into"], "S");
    problem(app.get("/api/v1/customers/NOBODY").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    let region = app.full_history("S").await.into_iter().find(|entry| entry["scheme"] == "REGION").unwrap();
    assert_eq!(
        (region["source"].clone(), region["to"].clone(), region["reason"].clone()),
        (json!("merge"), json!("01"), json!("merged into S: 重复建档"))
    );
    let old = app.full_history("D1").await;
    let last = old.last().unwrap();
    assert_eq!(
        (last["source"].clone(), last["direction"].clone(), last["reason"].clone()),
        (json!("merge"), json!("out"), json!("merged into S: 重复建档")),
        "the duplicate's history stays readable"
    );

    let tiers = ok_json(app.get("/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;
    assert_eq!(tiers["population"], 1);
    let counts: Vec<i64> =
        tiers["rows"].as_array().unwrap().iter().map(|row| row["customers"].as_i64().unwrap()).collect();
    assert_eq!(counts, [1, 0, 0], "VIP, 普通, unclassified");
    let spend =
        ok_json(app.get("/api/v1/reports/distribution?scheme=TIER&measures=lifetime_spend").await, StatusCode::OK)
            .await;
    assert_eq!(spend["rows"][0]["sum_lifetime_spend"], "180.50", "the sales totals moved with the sales");
    let duplicates = ok_json(app.get("/api/v1/customers/duplicates?by=name").await, StatusCode::OK).await;
    assert_eq!(duplicates["items"], json!([]), "the group is one customer now");
    assert_read_model_agrees(&app).await;
}

async fn a_dry_run_changes_nothing(app: TestApp) {
    three_of_one(&app).await;
    let before = ok_json(app.get("/api/v1/customers/S").await, StatusCode::OK).await;
    let dry = ok_json(merge(&app, json!({"duplicates": ["D1"], "dry_run": true})).await, StatusCode::OK).await;
    assert_eq!(
        (dry["dry_run"].clone(), dry["transactions_moved"].clone(), dry["survivor"]["tax_id"].clone()),
        (json!(true), json!(2), json!("91310000MA1FL8TQ36"))
    );
    assert_eq!(ok_json(app.get("/api/v1/customers/S").await, StatusCode::OK).await, before);
    ok_json(app.get("/api/v1/customers/D1").await, StatusCode::OK).await;
    let metrics = ok_json(app.get("/api/v1/customers/D1/metrics?as_of=2026-04-01").await, StatusCode::OK).await;
    assert_eq!(metrics["lifetime_spend"], "150.50");
}

async fn bad_merges_are_refused(app: TestApp) {
    three_of_one(&app).await;
    let survivor_too = problem(
        merge(&app, json!({"duplicates": ["D1", "S"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(survivor_too["errors"][0]["field"], "duplicates[1]");
    problem(merge(&app, json!({"duplicates": []})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let many: Vec<String> = (0..101).map(|i| format!("X{i}")).collect();
    problem(merge(&app, json!({"duplicates": many})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    problem(
        merge(&app, json!({"duplicates": ["D1", "NOBODY"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "customers_not_found",
    )
    .await;
    problem(
        app.post("/api/v1/customers/NOBODY/merge", &json!({"duplicates": ["D1"]})).await,
        StatusCode::NOT_FOUND,
        "customer_not_found",
    )
    .await;
    let stale = app
        .admin(Method::POST, "/api/v1/customers/S/merge")
        .header("If-Match", "\"999\"")
        .json(&json!({"duplicates": ["D1"]}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let clerk = app.key("clerk", "write").await;
    let forbidden = app
        .request(Method::POST, "/api/v1/customers/S/merge")
        .header("Authorization", format!("Bearer {clerk}"))
        .json(&json!({"duplicates": ["D1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    ok_json(app.get("/api/v1/customers/D1").await, StatusCode::OK).await;
}
