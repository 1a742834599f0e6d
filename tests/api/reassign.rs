//! Re-mapping a category (分类标准更新): moving a subtree's customers to another leaf.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_read_model_agrees, ok_json, problem, spawn_app_with, Backend, Options, TestApp};

both_backends!(
    backend: a_subtree_moves_in_batches_and_pinned_customers_stay,
);
both_backends!(customers_whose_values_do_not_fit_stay_where_they_are, bad_reassignments_name_the_problem,);

/// REGION (2-2): 01 华东 › 0101 上海, 0102 江苏; 02 华北 › 0201 北京; and C1 0101,
/// C2 0101 pinned, C3 0102, C4 0201, C5 0102.
async fn regions(app: &TestApp) {
    app.create_scheme("REGION", "2-2").await;
    for (code, name) in [("01", "华东"), ("0101", "上海"), ("0102", "江苏"), ("02", "华北"), ("0201", "北京")]
    {
        app.create_category("REGION", code, name).await;
    }
    for (code, region) in [("C1", "0101"), ("C2", "0101"), ("C3", "0102"), ("C4", "0201"), ("C5", "0102")] {
        app.create_customer(code, json!({"REGION": region})).await;
    }
    let pin = app
        .admin(Method::PUT, "/api/v1/customers/C2/categories/REGION")
        .json(&json!({"category": "0101", "locked": true}))
        .send()
        .await
        .unwrap();
    ok_json(pin, StatusCode::OK).await;
}

async fn reassign(app: &TestApp, from: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/api/v1/schemes/REGION/categories/{from}/reassign"), &body).await
}

async fn region_of(app: &TestApp, customer: &str) -> (Value, Value) {
    let customer = ok_json(app.get(&format!("/api/v1/customers/{customer}")).await, StatusCode::OK).await;
    let assignment = customer["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scheme"] == "REGION")
        .cloned()
        .unwrap_or(Value::Null);
    (assignment["category"].clone(), assignment["locked"].clone())
}

async fn subtree_counts(app: &TestApp) -> Vec<(String, i64)> {
    let categories = ok_json(app.get("/api/v1/schemes/REGION/categories").await, StatusCode::OK).await;
    categories["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["code"].as_str().unwrap().to_string(), c["subtree_customer_count"].as_i64().unwrap()))
        .collect()
}

async fn a_subtree_moves_in_batches_and_pinned_customers_stay(backend: Backend) {
    let app = spawn_app_with(backend, Options { run_batch_size: 1, ..Options::default() }).await;
    regions(&app).await;

    let outcome =
        ok_json(reassign(&app, "01", json!({"to": "0201", "reason": "华东并入华北"})).await, StatusCode::OK).await;
    assert_eq!(
        outcome,
        json!({"scheme": "REGION", "from": "01", "to": "0201", "moved": 3, "skipped_locked": 1, "rejected": 0, "rejections": [], "batches": 4}),
        "a batch a customer: 0101 holds C1 and C2, 0102 holds C3 and C5"
    );
    for customer in ["C1", "C3", "C4", "C5"] {
        assert_eq!(region_of(&app, customer).await.0, "0201", "{customer}");
    }
    assert_eq!(region_of(&app, "C2").await, (json!("0101"), json!(true)), "a pinned customer stays");
    assert_eq!(
        subtree_counts(&app).await,
        [("01".into(), 1), ("0101".into(), 1), ("0102".into(), 0), ("02".into(), 4), ("0201".into(), 4)]
    );

    let history = app.full_history("C3").await;
    let last = history.last().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!((last["source"].clone(), last["reason"].clone()), (json!("remap"), json!("华东并入华北")));
    assert_eq!(
        (last["from"].clone(), last["to"].clone(), last["direction"].clone()),
        (json!("0102"), json!("0201"), json!("lateral"))
    );
    let today = chrono::Utc::now().date_naive();
    let remapped = ok_json(
        app.get(&format!("/api/v1/reports/transitions?scheme=REGION&from={today}&to={today}&basis=moves&source=remap"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(remapped["totals"]["total"], 3);

    // The emptied category can go; the pinned customer's cannot until it moves too.
    assert_eq!(app.delete("/api/v1/schemes/REGION/categories/0102").await.status(), StatusCode::NO_CONTENT);
    problem(app.delete("/api/v1/schemes/REGION/categories/0101").await, StatusCode::CONFLICT, "category_in_use").await;
    let pinned_too =
        ok_json(reassign(&app, "0101", json!({"to": "0201", "include_locked": true})).await, StatusCode::OK).await;
    assert_eq!((pinned_too["moved"].clone(), pinned_too["skipped_locked"].clone()), (json!(1), json!(0)));
    assert_eq!(region_of(&app, "C2").await, (json!("0201"), json!(true)), "moved, and still pinned");
    assert_eq!(app.delete("/api/v1/schemes/REGION/categories/0101").await.status(), StatusCode::NO_CONTENT);

    let again = ok_json(reassign(&app, "01", json!({"to": "0201"})).await, StatusCode::OK).await;
    assert_eq!((again["moved"].clone(), again["batches"].clone()), (json!(0), json!(0)), "nothing left to move");
    assert_read_model_agrees(&app).await;
}

async fn customers_whose_values_do_not_fit_stay_where_they_are(app: TestApp) {
    regions(&app).await;
    app.create_category("REGION", "0202", "天津").await;
    let required = json!({"key": "employees", "type": "integer", "required": true});
    ok_json(app.post("/api/v1/schemes/REGION/categories/0202/attributes", &required).await, StatusCode::CREATED).await;
    let outcome = ok_json(reassign(&app, "0102", json!({"to": "0202"})).await, StatusCode::OK).await;
    assert_eq!((outcome["moved"].clone(), outcome["rejected"].clone()), (json!(0), json!(2)));
    let rejected: Vec<&str> =
        outcome["rejections"].as_array().unwrap().iter().map(|r| r["customer"].as_str().unwrap()).collect();
    assert_eq!(rejected, ["C3", "C5"]);
    assert!(outcome["rejections"][0]["detail"].as_str().unwrap().contains("employees"), "{outcome}");
    assert_eq!(region_of(&app, "C3").await.0, "0102");
}

async fn bad_reassignments_name_the_problem(app: TestApp) {
    regions(&app).await;
    let not_leaf = problem(
        reassign(&app, "0101", json!({"to": "02"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_leaf",
    )
    .await;
    assert_eq!(not_leaf["errors"][0]["field"], "to");
    problem(
        reassign(&app, "0101", json!({"to": "0299"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
    problem(reassign(&app, "0101", json!({"to": "x y"})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    problem(reassign(&app, "0199", json!({"to": "0201"})).await, StatusCode::NOT_FOUND, "category_not_found").await;
    problem(
        app.post("/api/v1/schemes/NOPE/categories/01/reassign", &json!({"to": "0201"})).await,
        StatusCode::NOT_FOUND,
        "scheme_not_found",
    )
    .await;
    ok_json(app.patch("/api/v1/schemes/REGION/categories/0201", &json!({"active": false})).await, StatusCode::OK).await;
    problem(reassign(&app, "0101", json!({"to": "0201"})).await, StatusCode::UNPROCESSABLE_ENTITY, "category_inactive")
        .await;
    problem(
        reassign(&app, "0101", json!({"to": "0102", "force": true})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    let clerk = app.key("clerk", "write").await;
    let forbidden = app
        .request(Method::POST, "/api/v1/schemes/REGION/categories/0101/reassign")
        .header("Authorization", format!("Bearer {clerk}"))
        .json(&json!({"to": "0102"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(region_of(&app, "C1").await.0, "0101", "nothing moved");
}
