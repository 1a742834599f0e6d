use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};

both_backends!(
    unknown_routes_are_problem_404,
    wrong_methods_are_problem_405,
    malformed_json_is_400,
    wrong_content_type_is_415,
    oversized_bodies_are_413,
    wrong_field_types_are_422,
    swagger_ui_without_its_slash_redirects,
    whole_numbers_may_carry_a_zero_fraction,
);

async fn unknown_routes_are_problem_404(app: TestApp) {
    for path in ["/", "/api/v1/nothing", "/api/v2/schemes", "/api/v1/schemes/TIER/categories/01/extra/deep"] {
        let body = problem(app.get(path).await, StatusCode::NOT_FOUND, "route_not_found").await;
        assert_eq!(body["type"], "urn:custclass:problem:route_not_found");
        assert_eq!(body["title"], "Not Found");
    }
    // Without a key too: an unknown route is 404, not 401.
    problem(
        app.request(Method::GET, "/api/v1/nothing").send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "route_not_found",
    )
    .await;
}

async fn wrong_methods_are_problem_405(app: TestApp) {
    let response = app.admin(Method::PUT, "/api/v1/schemes").send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    problem(
        app.admin(Method::POST, "/api/v1/schemes/TIER").send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    for (method, path) in [
        (Method::DELETE, "/healthz"),
        (Method::POST, "/readyz"),
        (Method::PUT, "/metrics"),
        (Method::POST, "/api-docs/openapi.json"),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(response.headers()["allow"], "GET", "{method} {path}");
        problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
}

async fn swagger_ui_without_its_slash_redirects(app: TestApp) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(format!("{}/swagger-ui", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()["location"], "/swagger-ui/");
    let page = app.request(Method::GET, "/swagger-ui/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let document = app.request(Method::GET, "/api-docs/openapi.json").send().await.unwrap();
    assert_eq!(document.status(), StatusCode::OK);
    assert_eq!(
        document.text().await.unwrap(),
        custclass::api::openapi::document_json(),
        "the served document is the committed one's source"
    );
}

/// JSON Schema counts `5.0` as an integer, and many clients send it so.
async fn whole_numbers_may_carry_a_zero_fraction(app: TestApp) {
    app.create_tiers().await;
    let category = ok_json(
        app.post("/api/v1/schemes/TIER/categories", &json!({"code": "04", "name": "流失客户", "sort_order": 4.0}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(category["sort_order"], 4);
    let patched =
        ok_json(app.patch("/api/v1/schemes/TIER/categories/04", &json!({"sort_order": 7.0})).await, StatusCode::OK)
            .await;
    assert_eq!(patched["sort_order"], 7);
    let half = problem(
        app.patch("/api/v1/schemes/TIER/categories/04", &json!({"sort_order": 7.5})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert!(half["detail"].as_str().unwrap().contains("whole number"), "{half}");
    assert_eq!(ok_json(app.get("/api/v1/schemes/TIER/categories/04").await, StatusCode::OK).await["sort_order"], 7);

    let definition = json!({"key": "seats", "label": "席位", "type": "integer", "min": 1.0, "max": 500.0});
    ok_json(app.post("/api/v1/schemes/TIER/categories/01/attributes", &definition).await, StatusCode::CREATED).await;
    let customer =
        json!({"code": "C1", "name": "华电有限公司", "categories": {"TIER": "01"}, "attributes": {"seats": 12.0}});
    let created = ok_json(app.post("/api/v1/customers", &customer).await, StatusCode::CREATED).await;
    assert_eq!(created["attributes"]["seats"], 12);
    let fractional =
        json!({"code": "C2", "name": "华电二公司", "categories": {"TIER": "01"}, "attributes": {"seats": 12.5}});
    problem(app.post("/api/v1/customers", &fractional).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_attributes")
        .await;

    let rule = json!({"name": "常客", "target_category": "01", "priority": 10.0, "condition": {"field": "orders_12m", "op": ">=", "value": 5.0}});
    let saved = ok_json(app.post("/api/v1/schemes/TIER/rules", &rule).await, StatusCode::CREATED).await;
    assert_eq!(saved["priority"], 10);
}

async fn malformed_json_is_400(app: TestApp) {
    for body in ["{", "{\"code\": }", "not json", "{\"code\": \"A\",}"] {
        let response = app
            .admin(Method::POST, "/api/v1/schemes")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    let response = app
        .admin(Method::PATCH, "/api/v1/schemes/TIER")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
}

async fn wrong_content_type_is_415(app: TestApp) {
    let response = app
        .admin(Method::POST, "/api/v1/schemes")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let response = app
        .admin(Method::POST, "/api/v1/schemes")
        .body(r#"{"code":"A","name":"a","code_rule":"2"}"#)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

async fn oversized_bodies_are_413(app: TestApp) {
    let huge = json!({"code": "BIG", "name": "x".repeat(2 * 1024 * 1024), "code_rule": "2"});
    problem(app.post("/api/v1/schemes", &huge).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    problem(app.get("/api/v1/schemes/BIG").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
}

async fn wrong_field_types_are_422(app: TestApp) {
    let response = app.post("/api/v1/schemes", &json!({"code": 5, "name": "x", "code_rule": "2"})).await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let response = app.post("/api/v1/schemes", &json!({"name": "x"})).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("missing field"));
    let response = app.post("/api/v1/schemes", &json!([])).await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
}
