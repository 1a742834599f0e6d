use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};

both_backends!(
    hierarchy_is_derived_from_codes,
    codes_off_the_rule_are_refused,
    missing_parent_is_refused,
    duplicates_conflict,
    names_are_unique_among_siblings_only,
    chinese_and_emoji_round_trip_byte_exact,
    codes_compare_case_sensitively,
    tree_nests_and_orders_children,
    patch_with_versions,
    delete_refused_while_children_exist,
    unknown_scheme_and_category_are_404,
    counts_come_from_assignments,
);

fn codes(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect()
}

async fn hierarchy_is_derived_from_codes(app: TestApp) {
    app.create_scheme("REGION", "2-2-2").await;
    let root = app.create_category("REGION", "01", "华北地区客户").await;
    assert_eq!(
        (root["level"].clone(), root["parent_code"].clone(), root["is_leaf"].clone()),
        (json!(1), json!(null), json!(true))
    );
    let response = app
        .post(
            "/api/v1/schemes/REGION/categories",
            &json!({"code": "0101", "name": "北京", "sort_order": 3, "description": "首都"}),
        )
        .await;
    assert_eq!(response.headers()["location"], "/api/v1/schemes/REGION/categories/0101");
    assert_eq!(response.headers()["etag"], "\"1\"");
    let child = ok_json(response, StatusCode::CREATED).await;
    assert_eq!(child["level"], 2);
    assert_eq!(child["parent_code"], "01");
    assert_eq!(child["sort_order"], 3);
    assert_eq!(child["description"], "首都");
    assert_eq!(child["scheme"], "REGION");
    let grandchild = app.create_category("REGION", "010101", "海淀").await;
    assert_eq!((grandchild["level"].clone(), grandchild["parent_code"].clone()), (json!(3), json!("0101")));

    let root = ok_json(app.get("/api/v1/schemes/REGION/categories/01").await, StatusCode::OK).await;
    assert_eq!(root["is_leaf"], false, "a category with children is no leaf");
    let list = ok_json(app.get("/api/v1/schemes/REGION/categories").await, StatusCode::OK).await;
    assert_eq!(codes(&list), ["01", "0101", "010101"]);
    let leaves: Vec<_> = list["items"].as_array().unwrap().iter().map(|c| c["is_leaf"].as_bool().unwrap()).collect();
    assert_eq!(leaves, [false, false, true]);
    let scheme = ok_json(app.get("/api/v1/schemes/REGION").await, StatusCode::OK).await;
    assert_eq!(scheme["category_count"], 3);
}

async fn codes_off_the_rule_are_refused(app: TestApp) {
    app.create_scheme("INDUSTRY", "2-2").await;
    app.create_category("INDUSTRY", "01", "电子行业客户").await;
    for code in ["0", "010", "01010"] {
        let body = json!({"code": code, "name": "x"});
        let body = problem(
            app.post("/api/v1/schemes/INDUSTRY/categories", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_code_length",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "code");
        assert!(body["detail"].as_str().unwrap().contains("[2, 4]"), "{body}");
    }
    for code in ["01-1", "０１", ""] {
        let body = json!({"code": code, "name": "x"});
        let body = problem(
            app.post("/api/v1/schemes/INDUSTRY/categories", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "code");
    }
    let list = ok_json(app.get("/api/v1/schemes/INDUSTRY/categories").await, StatusCode::OK).await;
    assert_eq!(codes(&list), ["01"]);
}

async fn missing_parent_is_refused(app: TestApp) {
    app.create_scheme("INDUSTRY", "2-2-2").await;
    app.create_category("INDUSTRY", "01", "电子行业客户").await;
    let body = problem(
        app.post("/api/v1/schemes/INDUSTRY/categories", &json!({"code": "010203", "name": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "parent_not_found",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("0102"));
    missing_root_is_refused_too(&app).await;
}

async fn missing_root_is_refused_too(app: &TestApp) {
    problem(
        app.post("/api/v1/schemes/INDUSTRY/categories", &json!({"code": "0201", "name": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "parent_not_found",
    )
    .await;
}

async fn duplicates_conflict(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    problem(
        app.post("/api/v1/schemes/TIER/categories", &json!({"code": "01", "name": "another"})).await,
        StatusCode::CONFLICT,
        "duplicate_code",
    )
    .await;
    let stored = ok_json(app.get("/api/v1/schemes/TIER/categories/01").await, StatusCode::OK).await;
    assert_eq!(stored["name"], "VIP客户");
}

async fn names_are_unique_among_siblings_only(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    app.create_category("REGION", "01", "华北地区客户").await;
    app.create_category("REGION", "02", "华南地区客户").await;
    problem(
        app.post("/api/v1/schemes/REGION/categories", &json!({"code": "03", "name": " 华北地区客户 "})).await,
        StatusCode::CONFLICT,
        "duplicate_name",
    )
    .await;
    // The same name under another parent is fine.
    app.create_category("REGION", "0101", "其他").await;
    app.create_category("REGION", "0201", "其他").await;
    problem(
        app.post("/api/v1/schemes/REGION/categories", &json!({"code": "0102", "name": "其他"})).await,
        StatusCode::CONFLICT,
        "duplicate_name",
    )
    .await;
    problem(
        app.patch("/api/v1/schemes/REGION/categories/02", &json!({"name": "华北地区客户"})).await,
        StatusCode::CONFLICT,
        "duplicate_name",
    )
    .await;
    // Renaming to its own name is no clash.
    ok_json(app.patch("/api/v1/schemes/REGION/categories/02", &json!({"name": "华南地区客户"})).await, StatusCode::OK)
        .await;

    let long = "客".repeat(101);
    let body = problem(
        app.post("/api/v1/schemes/REGION/categories", &json!({"code": "04", "name": long})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
    app.create_category("REGION", "04", &"客".repeat(100)).await;
}

async fn chinese_and_emoji_round_trip_byte_exact(app: TestApp) {
    let name = "华北地区客户🚀";
    let description = "重点区域 ✅ — «quoted» 'single' \"double\" \\ backslash";
    app.create_scheme("REGION", "2").await;
    let body = json!({"code": "01", "name": name, "description": description});
    let created = ok_json(app.post("/api/v1/schemes/REGION/categories", &body).await, StatusCode::CREATED).await;
    assert_eq!(created["name"], name);
    let response = app.get("/api/v1/schemes/REGION/categories/01").await;
    let raw = response.bytes().await.unwrap();
    let fetched: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(fetched["name"].as_str().unwrap().as_bytes(), name.as_bytes());
    assert_eq!(fetched["description"].as_str().unwrap().as_bytes(), description.as_bytes());
    let tree = ok_json(app.get("/api/v1/schemes/REGION/categories/tree").await, StatusCode::OK).await;
    assert_eq!(tree["items"][0]["name"], name);
}

async fn codes_compare_case_sensitively(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "aa", "lower").await;
    app.create_category("TIER", "AA", "upper").await;
    assert_eq!(ok_json(app.get("/api/v1/schemes/TIER/categories/aa").await, StatusCode::OK).await["name"], "lower");
    assert_eq!(ok_json(app.get("/api/v1/schemes/TIER/categories/AA").await, StatusCode::OK).await["name"], "upper");
    problem(app.get("/api/v1/schemes/TIER/categories/Aa").await, StatusCode::NOT_FOUND, "category_not_found").await;
    problem(app.get("/api/v1/schemes/tier").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
}

async fn tree_nests_and_orders_children(app: TestApp) {
    app.create_scheme("INDUSTRY", "2-2").await;
    app.post("/api/v1/schemes/INDUSTRY/categories", &json!({"code": "01", "name": "制造行业客户", "sort_order": 2}))
        .await;
    app.post("/api/v1/schemes/INDUSTRY/categories", &json!({"code": "02", "name": "电子行业客户", "sort_order": 1}))
        .await;
    app.create_category("INDUSTRY", "0102", "机械").await;
    app.create_category("INDUSTRY", "0101", "汽车").await;
    let tree = ok_json(app.get("/api/v1/schemes/INDUSTRY/categories/tree").await, StatusCode::OK).await;
    assert_eq!(tree["scheme"], "INDUSTRY");
    let top: Vec<_> = tree["items"].as_array().unwrap().iter().map(|n| n["code"].as_str().unwrap()).collect();
    assert_eq!(top, ["02", "01"], "siblings by sort_order");
    let children: Vec<_> =
        tree["items"][1]["children"].as_array().unwrap().iter().map(|n| n["code"].as_str().unwrap()).collect();
    assert_eq!(children, ["0101", "0102"], "then by code");
    assert_eq!(tree["items"][0]["children"], json!([]));
    assert_eq!(tree["items"][1]["children"][0]["is_leaf"], true);
    assert_eq!(tree["items"][1]["subtree_customer_count"], 0);
}

async fn patch_with_versions(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    let response = app
        .patch(
            "/api/v1/schemes/TIER/categories/01",
            &json!({"name": "VIP", "description": "top", "sort_order": 5, "active": false}),
        )
        .await;
    assert_eq!(response.headers()["etag"], "\"2\"");
    let patched = ok_json(response, StatusCode::OK).await;
    assert_eq!(
        (patched["name"].clone(), patched["sort_order"].clone(), patched["active"].clone()),
        (json!("VIP"), json!(5), json!(false))
    );

    let stale = app
        .admin(Method::PATCH, "/api/v1/schemes/TIER/categories/01")
        .header("If-Match", "\"1\"")
        .json(&json!({"name": "stale"}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    assert_eq!(ok_json(app.get("/api/v1/schemes/TIER/categories/01").await, StatusCode::OK).await["name"], "VIP");

    let current = app
        .admin(Method::PATCH, "/api/v1/schemes/TIER/categories/01")
        .header("If-Match", "\"2\"")
        .json(&json!({"description": null}))
        .send()
        .await
        .unwrap();
    let current = ok_json(current, StatusCode::OK).await;
    assert_eq!(current["description"], json!(null));
    assert_eq!(current["version"], 3);
    assert_eq!(current["name"], "VIP");

    problem(
        app.patch("/api/v1/schemes/TIER/categories/01", &json!({"code": "02"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    problem(
        app.patch("/api/v1/schemes/TIER/categories/01", &json!({"name": " "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let stale_delete = app
        .admin(Method::DELETE, "/api/v1/schemes/TIER/categories/01")
        .header("If-Match", "\"2\"")
        .send()
        .await
        .unwrap();
    problem(stale_delete, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    assert_eq!(app.get("/api/v1/schemes/TIER/categories/01").await.status(), StatusCode::OK);
}

async fn delete_refused_while_children_exist(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    app.create_category("REGION", "01", "华北地区客户").await;
    app.create_category("REGION", "0101", "北京").await;
    let problem_body =
        problem(app.delete("/api/v1/schemes/REGION/categories/01").await, StatusCode::CONFLICT, "category_in_use")
            .await;
    assert!(problem_body["detail"].as_str().unwrap().contains("child"));
    assert_eq!(app.delete("/api/v1/schemes/REGION/categories/0101").await.status(), StatusCode::NO_CONTENT);
    let parent = ok_json(app.get("/api/v1/schemes/REGION/categories/01").await, StatusCode::OK).await;
    assert_eq!(parent["is_leaf"], true, "a leaf again once its child is gone");
    assert_eq!(app.delete("/api/v1/schemes/REGION/categories/01").await.status(), StatusCode::NO_CONTENT);
    problem(app.get("/api/v1/schemes/REGION/categories/01").await, StatusCode::NOT_FOUND, "category_not_found").await;
    problem(app.delete("/api/v1/schemes/REGION/categories/01").await, StatusCode::NOT_FOUND, "category_not_found")
        .await;
}

async fn unknown_scheme_and_category_are_404(app: TestApp) {
    problem(app.get("/api/v1/schemes/NOPE/categories").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
    problem(app.get("/api/v1/schemes/NOPE/categories/tree").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
    problem(
        app.post("/api/v1/schemes/NOPE/categories", &json!({"code": "01", "name": "x"})).await,
        StatusCode::NOT_FOUND,
        "scheme_not_found",
    )
    .await;
    app.create_scheme("TIER", "2").await;
    problem(app.get("/api/v1/schemes/TIER/categories/99").await, StatusCode::NOT_FOUND, "category_not_found").await;
    problem(
        app.patch("/api/v1/schemes/TIER/categories/99", &json!({"name": "x"})).await,
        StatusCode::NOT_FOUND,
        "category_not_found",
    )
    .await;
}

/// Counts follow the assignments: direct on the category, and over the whole subtree.
async fn counts_come_from_assignments(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    app.create_category("REGION", "01", "华北地区客户").await;
    app.create_category("REGION", "0101", "北京").await;
    app.create_category("REGION", "0102", "天津").await;
    app.create_category("REGION", "02", "华南地区客户").await;
    for (customer, category) in [("C1", "0101"), ("C2", "0101"), ("C3", "0102"), ("C4", "02")] {
        app.create_customer(customer, json!({"REGION": category})).await;
    }

    let list = ok_json(app.get("/api/v1/schemes/REGION/categories").await, StatusCode::OK).await;
    let counts: Vec<(String, i64, i64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap().to_string(),
                c["customer_count"].as_i64().unwrap(),
                c["subtree_customer_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("01".into(), 0, 3), ("0101".into(), 2, 2), ("0102".into(), 1, 1), ("02".into(), 1, 1)]);
    let one = ok_json(app.get("/api/v1/schemes/REGION/categories/01").await, StatusCode::OK).await;
    assert_eq!((one["customer_count"].clone(), one["subtree_customer_count"].clone()), (json!(0), json!(3)));
    let tree = ok_json(app.get("/api/v1/schemes/REGION/categories/tree").await, StatusCode::OK).await;
    assert_eq!(tree["items"][0]["children"][0]["customer_count"], 2);

    // A category holding customers takes no children and cannot be deleted.
    problem(
        app.post("/api/v1/schemes/REGION/categories", &json!({"code": "0201", "name": "深圳"})).await,
        StatusCode::CONFLICT,
        "category_in_use",
    )
    .await;
    let problem_body =
        problem(app.delete("/api/v1/schemes/REGION/categories/0102").await, StatusCode::CONFLICT, "category_in_use")
            .await;
    assert!(problem_body["detail"].as_str().unwrap().contains("1 customers"));
}
