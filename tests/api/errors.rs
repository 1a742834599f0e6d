use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{problem, TestApp};

both_backends!(
    unknown_routes_are_problem_404,
    wrong_methods_are_problem_405,
    malformed_json_is_400,
    wrong_content_type_is_415,
    oversized_bodies_are_413,
    wrong_field_types_are_422,
);

async fn unknown_routes_are_problem_404(app: TestApp) {
    for path in ["/", "/api/v1/nothing", "/api/v2/schemes", "/api/v1/schemes/TIER/categories/01/extra/deep"] {
        let body = problem(app.get(path).await, StatusCode::NOT_FOUND, "route_not_found").await;
        assert_eq!(body["type"], "urn:custclass:problem:route_not_found");
        assert_eq!(body["title"], "Not Found");
    }
    // Without a key too: an unknown route is 404, not 401.
    problem(app.request(Method::GET, "/api/v1/nothing").send().await.unwrap(), StatusCode::NOT_FOUND, "route_not_found").await;
}

async fn wrong_methods_are_problem_405(app: TestApp) {
    let response = app.admin(Method::PUT, "/api/v1/schemes").send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    problem(app.admin(Method::POST, "/api/v1/schemes/TIER").send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    problem(app.admin(Method::DELETE, "/healthz").send().await.unwrap(), StatusCode::NOT_FOUND, "route_not_found").await;
}

async fn malformed_json_is_400(app: TestApp) {
    for body in ["{", "{\"code\": }", "not json", "{\"code\": \"A\",}"] {
        let response = app.admin(Method::POST, "/api/v1/schemes").header("content-type", "application/json").body(body).send().await.unwrap();
        problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    let response = app.admin(Method::PATCH, "/api/v1/schemes/TIER").header("content-type", "application/json").body("{").send().await.unwrap();
    problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
}

async fn wrong_content_type_is_415(app: TestApp) {
    let response = app.admin(Method::POST, "/api/v1/schemes").header("content-type", "text/plain").body("{}").send().await.unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let response = app.admin(Method::POST, "/api/v1/schemes").body(r#"{"code":"A","name":"a","code_rule":"2"}"#).send().await.unwrap();
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
