use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ok_json, problem, raw_get, TestApp};

both_backends!(
    missing_or_bad_keys_answer_401,
    scopes_are_enforced_at_every_boundary,
    api_keys_are_created_listed_and_revoked,
    api_key_input_is_validated,
    authentication_and_scope_come_before_every_extractor,
    every_spelling_of_a_path_needs_the_same_key,
);

async fn missing_or_bad_keys_answer_401(app: TestApp) {
    let none = app.request(Method::GET, "/api/v1/schemes").send().await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"custclass\"");
    problem(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = app.request(Method::GET, "/api/v1/schemes").bearer_auth("cck_not_a_key").send().await.unwrap();
    problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let basic = app.request(Method::GET, "/api/v1/schemes").basic_auth("admin", Some("x")).send().await.unwrap();
    problem(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let empty = app.request(Method::GET, "/api/v1/schemes").header("Authorization", "Bearer ").send().await.unwrap();
    problem(empty, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Auth comes before the body: no key and a broken body is still 401.
    let unauthenticated_write = app
        .request(Method::POST, "/api/v1/schemes")
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    problem(unauthenticated_write, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn scopes_are_enforced_at_every_boundary(app: TestApp) {
    let read = app.key("reader", "read").await;
    let write = app.key("writer", "write").await;
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;

    // read may GET everything readable...
    for path in [
        "/api/v1/schemes",
        "/api/v1/schemes/TIER",
        "/api/v1/schemes/TIER/categories",
        "/api/v1/schemes/TIER/categories/tree",
        "/api/v1/schemes/TIER/categories/01",
    ] {
        let response = app.request(Method::GET, path).bearer_auth(&read).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // ...and nothing else; schemes and categories need admin, so write is refused too.
    let admin_only: [(Method, &str, Option<serde_json::Value>); 7] = [
        (Method::POST, "/api/v1/schemes", Some(json!({"code": "X", "name": "x", "code_rule": "2"}))),
        (Method::PATCH, "/api/v1/schemes/TIER", Some(json!({"name": "x"}))),
        (Method::DELETE, "/api/v1/schemes/TIER", None),
        (Method::POST, "/api/v1/schemes/TIER/categories", Some(json!({"code": "02", "name": "x"}))),
        (Method::PATCH, "/api/v1/schemes/TIER/categories/01", Some(json!({"name": "x"}))),
        (Method::DELETE, "/api/v1/schemes/TIER/categories/01", None),
        (Method::POST, "/api/v1/api-keys", Some(json!({"name": "k", "scope": "read"}))),
    ];
    for key in [&read, &write] {
        for (method, path, body) in &admin_only {
            let mut request = app.request(method.clone(), path).bearer_auth(key);
            if let Some(body) = body {
                request = request.json(body);
            }
            let problem_body =
                problem(request.send().await.unwrap(), StatusCode::FORBIDDEN, "insufficient_scope").await;
            assert!(problem_body["detail"].as_str().unwrap().contains("admin"), "{method} {path}");
        }
        let list_keys = app.request(Method::GET, "/api/v1/api-keys").bearer_auth(key).send().await.unwrap();
        problem(list_keys, StatusCode::FORBIDDEN, "insufficient_scope").await;
        let revoke = app.request(Method::DELETE, "/api/v1/api-keys/1").bearer_auth(key).send().await.unwrap();
        problem(revoke, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
    // Nothing the refused calls tried is stored.
    let scheme = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!((scheme["name"].clone(), scheme["category_count"].clone()), (json!("TIER scheme"), json!(1)));
    let schemes = ok_json(app.get("/api/v1/schemes").await, StatusCode::OK).await;
    assert_eq!(schemes["items"].as_array().unwrap().len(), 1);
}

async fn api_keys_are_created_listed_and_revoked(app: TestApp) {
    let response = app.post("/api/v1/api-keys", &json!({"name": "erp-sales", "scope": "write"})).await;
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created = ok_json(response, StatusCode::CREATED).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("cck_") && secret.len() > 40);
    assert_eq!(created["scope"], "write");
    assert_eq!(created["prefix"], &secret[..12]);
    assert_eq!(location, format!("/api/v1/api-keys/{}", created["id"]));

    let list = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    let listed = list["items"].as_array().unwrap().iter().find(|k| k["name"] == "erp-sales").unwrap().clone();
    assert_eq!(listed["revoked_at"], json!(null));
    assert!(listed.get("secret").is_none(), "secrets are shown once only");
    assert!(!list.to_string().contains(&secret));

    let works = app.request(Method::GET, "/api/v1/schemes").bearer_auth(&secret).send().await.unwrap();
    assert_eq!(works.status(), StatusCode::OK);

    assert_eq!(app.delete(&location).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&location).await.status(), StatusCode::NO_CONTENT, "revoking twice changes nothing");
    let revoked = app.request(Method::GET, "/api/v1/schemes").bearer_auth(&secret).send().await.unwrap();
    problem(revoked, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let list = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    let listed = list["items"].as_array().unwrap().iter().find(|k| k["name"] == "erp-sales").unwrap().clone();
    assert!(listed["revoked_at"].is_string());

    problem(app.delete("/api/v1/api-keys/999999").await, StatusCode::NOT_FOUND, "api_key_not_found").await;
    problem(app.delete("/api/v1/api-keys/abc").await, StatusCode::NOT_FOUND, "not_found").await;
}

async fn api_key_input_is_validated(app: TestApp) {
    app.key("erp-sales", "read").await;
    problem(
        app.post("/api/v1/api-keys", &json!({"name": "erp-sales", "scope": "read"})).await,
        StatusCode::CONFLICT,
        "duplicate_name",
    )
    .await;
    problem(
        app.post("/api/v1/api-keys", &json!({"name": "x", "scope": "root"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    let blank = problem(
        app.post("/api/v1/api-keys", &json!({"name": "  ", "scope": "read"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(blank["errors"][0]["field"], "name");
}

/// Requests that would each fail a different extractor (body schema, JSON syntax,
/// media type, size, `If-Match`, query): without a valid key they answer 401, and
/// with a key of too small a scope 403, never what the extractor would say.
async fn authentication_and_scope_come_before_every_extractor(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({})).await;
    let revoked = app.key("soon-revoked", "admin").await;
    let revoked_id = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "soon-revoked")
        .unwrap()["id"]
        .clone();
    assert_eq!(app.delete(&format!("/api/v1/api-keys/{revoked_id}")).await.status(), StatusCode::NO_CONTENT);
    let reader = app.key("reader", "read").await;
    let unknown = format!("cck_{}", "0123456789abcdef".repeat(3));

    let json_type = ("content-type", "application/json");
    // What the case is, its request (method, path, headers, body).
    type Case<'a> = (&'a str, Method, &'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            "schema error (422)",
            Method::POST,
            "/api/v1/schemes",
            vec![json_type],
            r#"{"code":"SECX","name":"x"}"#.into(),
        ),
        ("malformed JSON (400)", Method::POST, "/api/v1/schemes", vec![json_type], "{".into()),
        ("wrong media type (415)", Method::POST, "/api/v1/schemes", vec![("content-type", "text/plain")], "{}".into()),
        (
            "oversized body (413)",
            Method::POST,
            "/api/v1/schemes",
            vec![json_type],
            format!(r#"{{"code":"BIG","name":"{}","code_rule":"2"}}"#, "x".repeat(5 * 1024 * 1024)),
        ),
        (
            "bad If-Match (412)",
            Method::PATCH,
            "/api/v1/schemes/TIER",
            vec![json_type, ("if-match", "garbage")],
            r#"{"name":"x"}"#.into(),
        ),
        ("bad query (400)", Method::DELETE, "/api/v1/customers/C1/categories/TIER?bogus=1", vec![], String::new()),
        ("bad path (404)", Method::DELETE, "/api/v1/api-keys/abc", vec![], String::new()),
    ];
    for (what, method, path, headers, body) in &cases {
        for (key, status, code) in [
            (unknown.as_str(), StatusCode::UNAUTHORIZED, "unauthorized"),
            (revoked.as_str(), StatusCode::UNAUTHORIZED, "unauthorized"),
            (reader.as_str(), StatusCode::FORBIDDEN, "insufficient_scope"),
        ] {
            let mut request = app.request(method.clone(), path).bearer_auth(key).body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.unwrap();
            let answered = response.status();
            assert_eq!(answered, status, "{what} with key {key}");
            problem(response, status, code).await;
        }
    }
    // None of it changed anything.
    let scheme = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!(scheme["name"], "TIER scheme");
    problem(app.get("/api/v1/schemes/SECX").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
}

/// Escaped letters, doubled slashes and dot segments name the same endpoint, so they
/// answer 401 without a key (never a 500 or a way past the key check) and, with one,
/// what the plain path answers.
async fn every_spelling_of_a_path_needs_the_same_key(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    let (status, plain) = raw_get(&app, "/api/v1/schemes", Some(&app.admin_key)).await;
    assert_eq!(status, 200, "{plain}");
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    for spelling in [
        "/api/v1/%73chemes",
        "/api/v1/%73%63%68%65%6D%65%73",
        "/%61pi/v1/schemes",
        "//api/v1//schemes",
        "/api/v1/./schemes",
        "/api/v1/customers/../schemes",
        "/api/x/%2E%2E/v1/schemes",
    ] {
        let (status, body) = raw_get(&app, spelling, None).await;
        assert_eq!(status, 401, "{spelling} without a key: {body}");
        assert!(body.contains("\"code\":\"unauthorized\""), "{spelling}: {body}");
        let (status, body) = raw_get(&app, spelling, Some(&app.admin_key)).await;
        assert_eq!(status, 200, "{spelling} with a key: {body}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), plain, "{spelling}");
    }
    let (status, body) = raw_get(&app, "/api/v1/%63ustomers/NOPE", None).await;
    assert_eq!(status, 401, "{body}");
}
