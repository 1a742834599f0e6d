use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};

both_backends!(
    create_get_and_list,
    create_validates_every_field,
    duplicate_scheme_code_conflicts,
    patch_changes_fields_and_version,
    code_rule_changes_only_while_empty_or_by_appending,
    default_category_must_be_an_active_leaf,
    delete_refused_while_categories_exist,
    if_match_mismatch_answers_412_and_changes_nothing,
);

async fn create_get_and_list(app: TestApp) {
    let response = app
        .post("/api/v1/schemes", &json!({"code": "REGION", "name": " 地区分类 ", "code_rule": "2-2", "required": true}))
        .await;
    assert_eq!(response.headers()["location"], "/api/v1/schemes/REGION");
    assert_eq!(response.headers()["etag"], "\"1\"");
    let created = ok_json(response, StatusCode::CREATED).await;
    assert_eq!(created["name"], "地区分类");
    assert_eq!(created["code_lengths"], json!([2, 4]));
    assert_eq!(created["required"], true);
    assert_eq!(created["active"], true);
    assert_eq!(created["auto_classify"], false);
    assert_eq!(created["default_category"], json!(null));
    assert_eq!(created["category_count"], 0);

    let fetched = ok_json(app.get("/api/v1/schemes/REGION").await, StatusCode::OK).await;
    assert_eq!(fetched, created);

    app.create_scheme("INDUSTRY", "2-2-2").await;
    app.create_category("INDUSTRY", "01", "电子行业客户").await;
    let list = ok_json(app.get("/api/v1/schemes").await, StatusCode::OK).await;
    let codes: Vec<_> = list["items"].as_array().unwrap().iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["INDUSTRY", "REGION"]);
    assert_eq!(list["items"][0]["category_count"], 1);
    assert_eq!(list["next_cursor"], json!(null));

    problem(app.get("/api/v1/schemes/NOPE").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
}

async fn create_validates_every_field(app: TestApp) {
    let body = json!({"code": "region", "name": "  ", "code_rule": "2-2-2-2-2-2-2-2-2-2"});
    let body =
        problem(app.post("/api/v1/schemes", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<_> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["code", "name", "code_rule"]);

    for rule in ["", "2--2", "0-2", "x", "10-10-11"] {
        let body = json!({"code": "R", "name": "r", "code_rule": rule});
        let body =
            problem(app.post("/api/v1/schemes", &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .await;
        assert_eq!(body["errors"][0]["field"], "code_rule", "rule {rule:?}");
    }
    // Nine levels and thirty characters are the limits, and allowed.
    app.create_scheme("NINE", "1-1-1-1-1-1-1-1-1").await;
    app.create_scheme("THIRTY", "10-10-10").await;

    let unknown = json!({"code": "R", "name": "r", "code_rule": "2", "colour": "red"});
    let body =
        problem(app.post("/api/v1/schemes", &unknown).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("colour"));

    let list = ok_json(app.get("/api/v1/schemes").await, StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "nothing invalid was stored");
}

async fn duplicate_scheme_code_conflicts(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    let body = json!({"code": "TIER", "name": "again", "code_rule": "3"});
    problem(app.post("/api/v1/schemes", &body).await, StatusCode::CONFLICT, "duplicate_code").await;
    let stored = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!(stored["code_rule"], "2", "the first scheme is untouched");
}

async fn patch_changes_fields_and_version(app: TestApp) {
    app.admin(Method::POST, "/api/v1/schemes")
        .json(&json!({"code": "TIER", "name": "客户等级", "description": "by spend", "code_rule": "2"}))
        .send()
        .await
        .unwrap();
    let patched = app
        .patch(
            "/api/v1/schemes/TIER",
            &json!({"name": "等级", "description": null, "auto_classify": true, "active": false}),
        )
        .await;
    assert_eq!(patched.headers()["etag"], "\"2\"");
    let patched = ok_json(patched, StatusCode::OK).await;
    assert_eq!(patched["name"], "等级");
    assert_eq!(patched["description"], json!(null));
    assert_eq!(patched["auto_classify"], true);
    assert_eq!(patched["active"], false);
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["code_rule"], "2", "absent fields stay");

    let fetched = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!(fetched, patched);

    let body = problem(
        app.patch("/api/v1/schemes/TIER", &json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
    code_cannot_be_patched(&app).await;
    patching_an_unknown_scheme_is_404(&app).await;
}

async fn code_cannot_be_patched(app: &TestApp) {
    problem(
        app.patch("/api/v1/schemes/TIER", &json!({"code": "OTHER"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
}

async fn patching_an_unknown_scheme_is_404(app: &TestApp) {
    problem(app.patch("/api/v1/schemes/NOPE", &json!({"name": "x"})).await, StatusCode::NOT_FOUND, "scheme_not_found")
        .await;
}

async fn code_rule_changes_only_while_empty_or_by_appending(app: TestApp) {
    app.create_scheme("INDUSTRY", "2-2").await;
    let changed =
        ok_json(app.patch("/api/v1/schemes/INDUSTRY", &json!({"code_rule": "3-3"})).await, StatusCode::OK).await;
    assert_eq!(changed["code_rule"], "3-3", "free to change while empty");

    app.create_category("INDUSTRY", "001", "电子行业客户").await;
    problem(
        app.patch("/api/v1/schemes/INDUSTRY", &json!({"code_rule": "2-2"})).await,
        StatusCode::CONFLICT,
        "code_rule_locked",
    )
    .await;
    problem(
        app.patch("/api/v1/schemes/INDUSTRY", &json!({"code_rule": "3"})).await,
        StatusCode::CONFLICT,
        "code_rule_locked",
    )
    .await;
    let extended =
        ok_json(app.patch("/api/v1/schemes/INDUSTRY", &json!({"code_rule": "3-3-2"})).await, StatusCode::OK).await;
    assert_eq!(extended["code_rule"], "3-3-2");
    assert_eq!(extended["code_lengths"], json!([3, 6, 8]));
    // The appended level is usable at once.
    app.create_category("INDUSTRY", "001001", "消费电子").await;
    app.create_category("INDUSTRY", "00100101", "手机").await;
}

async fn default_category_must_be_an_active_leaf(app: TestApp) {
    app.create_scheme("TIER", "2-2").await;
    app.create_category("TIER", "01", "重点客户").await;
    app.create_category("TIER", "0101", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;

    let problem_body = problem(
        app.patch("/api/v1/schemes/TIER", &json!({"default_category": "09"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
    assert_eq!(problem_body["errors"][0]["field"], "default_category");
    problem(
        app.patch("/api/v1/schemes/TIER", &json!({"default_category": "01"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_leaf",
    )
    .await;
    app.patch("/api/v1/schemes/TIER/categories/0101", &json!({"active": false})).await;
    problem(
        app.patch("/api/v1/schemes/TIER", &json!({"default_category": "0101"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_inactive",
    )
    .await;

    let set =
        ok_json(app.patch("/api/v1/schemes/TIER", &json!({"default_category": "02"})).await, StatusCode::OK).await;
    assert_eq!(set["default_category"], "02");
    // The default must stay an active leaf.
    problem(
        app.post("/api/v1/schemes/TIER/categories", &json!({"code": "0201", "name": "x"})).await,
        StatusCode::CONFLICT,
        "category_is_default",
    )
    .await;
    problem(
        app.patch("/api/v1/schemes/TIER/categories/02", &json!({"active": false})).await,
        StatusCode::CONFLICT,
        "category_is_default",
    )
    .await;
    problem(app.delete("/api/v1/schemes/TIER/categories/02").await, StatusCode::CONFLICT, "category_is_default").await;

    let cleared =
        ok_json(app.patch("/api/v1/schemes/TIER", &json!({"default_category": null})).await, StatusCode::OK).await;
    assert_eq!(cleared["default_category"], json!(null));
    assert_eq!(app.delete("/api/v1/schemes/TIER/categories/02").await.status(), StatusCode::NO_CONTENT);
}

async fn delete_refused_while_categories_exist(app: TestApp) {
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华北地区客户").await;
    let body = problem(app.delete("/api/v1/schemes/REGION").await, StatusCode::CONFLICT, "scheme_in_use").await;
    assert!(body["detail"].as_str().unwrap().contains("1 categories"));
    assert_eq!(app.get("/api/v1/schemes/REGION").await.status(), StatusCode::OK);

    assert_eq!(app.delete("/api/v1/schemes/REGION/categories/01").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/api/v1/schemes/REGION").await.status(), StatusCode::NO_CONTENT);
    deleted_scheme_is_gone(&app).await;
}

async fn deleted_scheme_is_gone(app: &TestApp) {
    problem(app.get("/api/v1/schemes/REGION").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
    problem(app.delete("/api/v1/schemes/REGION").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
}

async fn if_match_mismatch_answers_412_and_changes_nothing(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    let stale = app
        .admin(Method::PATCH, "/api/v1/schemes/TIER")
        .header("If-Match", "\"7\"")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let garbage = app
        .admin(Method::PATCH, "/api/v1/schemes/TIER")
        .header("If-Match", "banana")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    problem(garbage, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let unchanged = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!(unchanged["name"], "TIER scheme");
    assert_eq!(unchanged["version"], 1);

    let fresh = app
        .admin(Method::PATCH, "/api/v1/schemes/TIER")
        .header("If-Match", "\"1\"")
        .json(&json!({"name": "等级"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(fresh, StatusCode::OK).await["version"], 2);
    let stale_delete =
        app.admin(Method::DELETE, "/api/v1/schemes/TIER").header("If-Match", "\"1\"").send().await.unwrap();
    problem(stale_delete, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let weak_delete =
        app.admin(Method::DELETE, "/api/v1/schemes/TIER").header("If-Match", "W/\"2\"").send().await.unwrap();
    assert_eq!(weak_delete.status(), StatusCode::NO_CONTENT);
}
