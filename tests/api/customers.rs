use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};

both_backends!(
    create_get_patch_delete,
    every_bad_field_is_listed,
    tax_id_check_character_is_verified,
    codes_and_tax_ids_are_unique,
    create_assigns_named_categories_in_one_transaction,
    defaults_and_required_schemes_apply_to_new_customers,
    deleted_customers_keep_their_history,
    a_stale_delete_loses_to_the_update_it_waited_for,
);

async fn create_get_patch_delete(app: TestApp) {
    let body = json!({
        "code": "C0001", "name": " 北京华电科技有限公司 ", "short_name": "华电科技", "tax_id": "91350100m000100y43",
        "contact_name": "李雷", "phone": "010-6275 1234", "email": "li@huadian.example.cn",
        "address": "北京市海淀区中关村大街1号", "note": "重点客户 ✅"
    });
    let response = app.post("/api/v1/customers", &body).await;
    assert_eq!(response.headers()["location"], "/api/v1/customers/C0001");
    assert_eq!(response.headers()["etag"], "\"1\"");
    let created = ok_json(response, StatusCode::CREATED).await;
    assert_eq!(created["name"], "北京华电科技有限公司");
    assert_eq!(created["tax_id"], "91350100M000100Y43", "stored in canonical upper case");
    assert_eq!(created["status"], "active");
    assert_eq!(created["categories"], json!({}));
    assert_eq!(created["assignments"], json!([]));
    assert_eq!(created["version"], 1);
    let fetched = ok_json(app.get("/api/v1/customers/C0001").await, StatusCode::OK).await;
    assert_eq!(fetched, created);

    let patched = ok_json(
        app.patch("/api/v1/customers/C0001", &json!({"status": "inactive", "note": null, "phone": "13800138000"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (patched["status"].clone(), patched["note"].clone(), patched["phone"].clone()),
        (json!("inactive"), json!(null), json!("13800138000"))
    );
    assert_eq!(patched["short_name"], "华电科技", "absent fields stay");
    assert_eq!(patched["version"], 2);
    assert_eq!(ok_json(app.get("/api/v1/customers/C0001").await, StatusCode::OK).await, patched);

    let stale = app
        .admin(Method::PATCH, "/api/v1/customers/C0001")
        .header("If-Match", "\"1\"")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    problem(
        app.patch("/api/v1/customers/C0001", &json!({"code": "C2"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    problem(
        app.patch("/api/v1/customers/C0001", &json!({"categories": {}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;

    let stale_delete =
        app.admin(Method::DELETE, "/api/v1/customers/C0001").header("If-Match", "\"1\"").send().await.unwrap();
    problem(stale_delete, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let delete = app.admin(Method::DELETE, "/api/v1/customers/C0001").header("If-Match", "\"2\"").send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    problem(app.get("/api/v1/customers/C0001").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    problem(app.delete("/api/v1/customers/C0001").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    problem(
        app.patch("/api/v1/customers/C0001", &json!({"name": "x"})).await,
        StatusCode::NOT_FOUND,
        "customer_not_found",
    )
    .await;
}

async fn every_bad_field_is_listed(app: TestApp) {
    let body = json!({
        "code": "-bad code", "name": "", "tax_id": "123", "email": "nobody", "phone": "call me",
        "short_name": "短".repeat(101), "address": "地".repeat(501), "reason": "r".repeat(501)
    });
    let problem_body =
        problem(app.post("/api/v1/customers", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    let mut fields: Vec<_> =
        problem_body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect();
    fields.sort();
    assert_eq!(fields, ["address", "code", "email", "name", "phone", "reason", "short_name", "tax_id"]);

    let long_name = json!({"code": "C1", "name": "名".repeat(201)});
    problem(app.post("/api/v1/customers", &long_name).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    ok_json(app.post("/api/v1/customers", &json!({"code": "C1", "name": "名".repeat(200)})).await, StatusCode::CREATED)
        .await;
    let bad_status = problem(
        app.post("/api/v1/customers", &json!({"code": "C2", "name": "x", "status": "gone"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert!(bad_status["detail"].as_str().unwrap().contains("active"));
    let list = ok_json(app.get("/api/v1/customers").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "nothing invalid was stored");
}

async fn tax_id_check_character_is_verified(app: TestApp) {
    // A real published code passes; the same code with one character changed does not.
    ok_json(
        app.post("/api/v1/customers", &json!({"code": "REAL", "name": "x", "tax_id": "91110000802100433B"})).await,
        StatusCode::CREATED,
    )
    .await;
    for changed in ["91110000802100433C", "91110000802100434B", "81110000802100433B"] {
        let body = problem(
            app.post("/api/v1/customers", &json!({"code": "FAKE", "name": "x", "tax_id": changed})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "tax_id", "{changed}");
    }
    let body = problem(
        app.post("/api/v1/customers", &json!({"code": "FAKE", "name": "x", "tax_id": "91110000802100433C"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("should be B"));
    problem(
        app.patch("/api/v1/customers/REAL", &json!({"tax_id": "91110000802100433C"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let cleared = ok_json(app.patch("/api/v1/customers/REAL", &json!({"tax_id": null})).await, StatusCode::OK).await;
    assert_eq!(cleared["tax_id"], json!(null));
}

async fn codes_and_tax_ids_are_unique(app: TestApp) {
    ok_json(
        app.post("/api/v1/customers", &json!({"code": "C1", "name": "一", "tax_id": "911100001000009992"})).await,
        StatusCode::CREATED,
    )
    .await;
    problem(
        app.post("/api/v1/customers", &json!({"code": "C1", "name": "二"})).await,
        StatusCode::CONFLICT,
        "duplicate_code",
    )
    .await;
    problem(
        app.post("/api/v1/customers", &json!({"code": "C2", "name": "二", "tax_id": "911100001000009992"})).await,
        StatusCode::CONFLICT,
        "duplicate_tax_id",
    )
    .await;
    ok_json(
        app.post("/api/v1/customers", &json!({"code": "c1", "name": "lower case is another code"})).await,
        StatusCode::CREATED,
    )
    .await;
    ok_json(
        app.post("/api/v1/customers", &json!({"code": "C3", "name": "三", "tax_id": "91440300708461136T"})).await,
        StatusCode::CREATED,
    )
    .await;
    problem(
        app.patch("/api/v1/customers/C3", &json!({"tax_id": "911100001000009992"})).await,
        StatusCode::CONFLICT,
        "duplicate_tax_id",
    )
    .await;
    assert_eq!(ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await["name"], "一");
}

async fn create_assigns_named_categories_in_one_transaction(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    app.create_category("REGION", "01", "华北地区客户").await;
    app.create_category("REGION", "0101", "北京").await;
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;

    let body = json!({"code": "C1", "name": "一", "categories": {"REGION": "0101", "TIER": "01"}, "reason": "开户"});
    let created = ok_json(app.post("/api/v1/customers", &body).await, StatusCode::CREATED).await;
    assert_eq!(created["categories"], json!({"REGION": "0101", "TIER": "01"}));
    assert_eq!(created["assignments"][1]["category"], "01");
    assert_eq!(created["assignments"][1]["scheme"], "TIER");
    assert_eq!(created["assignments"][1]["locked"], false);
    let history = app.full_history("C1").await;
    assert_eq!(history.len(), 2);
    for entry in &history {
        assert_eq!(
            (entry["from"].clone(), entry["source"].clone(), entry["reason"].clone()),
            (json!(null), json!("manual"), json!("开户"))
        );
    }

    // One bad category refuses the whole create; every bad one is listed.
    let bad = json!({"code": "C2", "name": "二", "categories": {"REGION": "01", "TIER": "09", "NOPE": "01"}});
    let body =
        problem(app.post("/api/v1/customers", &bad).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_categories")
            .await;
    let fields: Vec<_> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["categories.NOPE", "categories.REGION", "categories.TIER"]);
    problem(app.get("/api/v1/customers/C2").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    problem(app.get("/api/v1/customers/C2/history").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    let region = ok_json(app.get("/api/v1/schemes/REGION/categories/0101").await, StatusCode::OK).await;
    assert_eq!(region["customer_count"], 1, "only C1");
}

async fn defaults_and_required_schemes_apply_to_new_customers(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "03", "潜在客户").await;
    ok_json(
        app.patch("/api/v1/schemes/TIER", &json!({"default_category": "03", "required": true})).await,
        StatusCode::OK,
    )
    .await;

    let plain = app.create_customer("C1", json!({})).await;
    assert_eq!(plain["categories"], json!({"TIER": "03"}));
    let history = app.full_history("C1").await;
    assert_eq!((history[0]["source"].clone(), history[0]["to"].clone()), (json!("default"), json!("03")));
    let named = app.create_customer("C2", json!({"TIER": "01"})).await;
    assert_eq!(named["categories"], json!({"TIER": "01"}), "a named category beats the default");

    app.create_scheme("INDUSTRY", "2").await;
    app.create_category("INDUSTRY", "01", "电子行业客户").await;
    ok_json(app.patch("/api/v1/schemes/INDUSTRY", &json!({"required": true})).await, StatusCode::OK).await;
    let body = problem(
        app.post("/api/v1/customers", &json!({"code": "C3", "name": "三"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_required",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "categories.INDUSTRY");
    app.create_customer("C3", json!({"INDUSTRY": "01"})).await;
    // An inactive scheme is neither required nor defaulted.
    ok_json(app.patch("/api/v1/schemes/INDUSTRY", &json!({"active": false})).await, StatusCode::OK).await;
    assert_eq!(app.create_customer("C4", json!({})).await["categories"], json!({"TIER": "03"}));
}

async fn deleted_customers_keep_their_history(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    ok_json(app.assign("C1", "TIER", "01").await, StatusCode::OK).await;
    assert_eq!(app.delete("/api/v1/customers/C1").await.status(), StatusCode::NO_CONTENT);

    let history = app.full_history("C1").await;
    let chain: Vec<(Value, Value)> = history.iter().map(|e| (e["from"].clone(), e["to"].clone())).collect();
    assert_eq!(chain, [(json!(null), json!("02")), (json!("02"), json!("01")), (json!("01"), json!(null))]);
    assert_eq!(history[2]["reason"], "customer deleted");
    let tier = ok_json(app.get("/api/v1/schemes/TIER/categories/01").await, StatusCode::OK).await;
    assert_eq!(tier["customer_count"], 0, "the assignment went with the customer");
    assert_eq!(app.delete("/api/v1/schemes/TIER/categories/01").await.status(), StatusCode::NO_CONTENT);
}

/// Another writer holds the customer and changes it; a delete tagged with the
/// version before that change waits for the writer, then sees its commit and
/// answers 412 (it used to compare a version read before it waited).
async fn a_stale_delete_loses_to_the_update_it_waited_for(app: TestApp) {
    use diesel::prelude::*;
    app.create_customer("C1", json!({})).await;
    let database = app.database.clone();
    let (holding, held) = tokio::sync::oneshot::channel();
    let (commit, release) = std::sync::mpsc::channel::<()>();
    let writer = tokio::task::spawn_blocking(move || {
        let pool = custclass::db::build_pool(
            &database,
            1,
            custclass::db::Timeouts::with_wait(std::time::Duration::from_secs(20)),
        )
        .unwrap();
        let conn = &mut pool.get().unwrap().conn;
        let begin = if matches!(conn, custclass::db::DbConnection::Sqlite(_)) { "BEGIN IMMEDIATE" } else { "BEGIN" };
        diesel::sql_query(begin).execute(conn).unwrap();
        diesel::sql_query("UPDATE customers SET name = '并发改名', version = version + 1 WHERE code = 'C1'")
            .execute(conn)
            .unwrap();
        holding.send(()).unwrap();
        release.recv().unwrap();
        diesel::sql_query("COMMIT").execute(conn).unwrap();
    });
    held.await.unwrap();
    let delete = tokio::spawn({
        let request = app.admin(Method::DELETE, "/api/v1/customers/C1").header("If-Match", "\"1\"");
        async move { request.send().await.unwrap() }
    });
    // Let the delete read version 1 and queue behind the writer's lock.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    commit.send(()).unwrap();
    writer.await.unwrap();
    let body = problem(delete.await.unwrap(), StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    assert!(body["detail"].as_str().unwrap().contains('2'), "{body}");
    let customer = ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await;
    assert_eq!((customer["name"].clone(), customer["version"].clone()), (json!("并发改名"), json!(2)));
}
