//! What browsers on other origins and HTTP clients that compress rely on.

use reqwest::{Method, StatusCode};

use crate::helpers::{ok_json, problem, spawn_app_with, Backend, Options, TestApp};
use custclass::config::CorsOrigins;

const FRONTEND: &str = "https://erp.example.com";

async fn with_cors(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options { cors: CorsOrigins::List(vec![FRONTEND.into()]), ..Options::default() }).await
}

crate::both_backends!(backend: cors_preflights_and_headers, cors_is_off_unless_configured);
crate::both_backends!(responses_are_compressed_when_asked);

async fn cors_preflights_and_headers(backend: Backend) {
    let app = with_cors(backend).await;
    app.create_tiers().await;
    let preflight = app
        .request(Method::OPTIONS, "/api/v1/schemes/TIER")
        .header("Origin", FRONTEND)
        .header("Access-Control-Request-Method", "PATCH")
        .header("Access-Control-Request-Headers", "authorization, if-match, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK, "a preflight needs no key");
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], FRONTEND);
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["authorization", "if-match", "content-type"] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("PATCH"));

    let read = app.admin(Method::GET, "/api/v1/schemes/TIER").header("Origin", FRONTEND).send().await.unwrap();
    assert_eq!(read.headers()["access-control-allow-origin"], FRONTEND);
    let exposed = read.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["etag", "location", "x-request-id"] {
        assert!(exposed.contains(header), "{header} in {exposed}");
    }
    ok_json(read, StatusCode::OK).await;

    // An error keeps the CORS headers, so the page can read the problem.
    let missing = app.admin(Method::GET, "/api/v1/schemes/NOPE").header("Origin", FRONTEND).send().await.unwrap();
    assert_eq!(missing.headers()["access-control-allow-origin"], FRONTEND);
    problem(missing, StatusCode::NOT_FOUND, "scheme_not_found").await;

    let stranger = app
        .request(Method::OPTIONS, "/api/v1/schemes/TIER")
        .header("Origin", "https://evil.example.net")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .await
        .unwrap();
    assert!(stranger.headers().get("access-control-allow-origin").is_none());
    let refused = problem(stranger, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("https://evil.example.net") && detail.contains("CORS_ALLOWED_ORIGINS"), "{detail}");

    let odd_header = app
        .request(Method::OPTIONS, "/api/v1/schemes/TIER")
        .header("Origin", FRONTEND)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-not-allowed")
        .send()
        .await
        .unwrap();
    problem(odd_header, StatusCode::BAD_REQUEST, "cors_preflight_invalid").await;
}

async fn cors_is_off_unless_configured(backend: Backend) {
    let app = spawn_app_with(backend, Options::default()).await;
    let preflight = app
        .request(Method::OPTIONS, "/api/v1/schemes")
        .header("Origin", FRONTEND)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
    let refused = problem(preflight, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    assert!(refused["detail"].as_str().unwrap().contains("CORS_ALLOWED_ORIGINS"), "{refused}");
    let read = app.admin(Method::GET, "/api/v1/schemes").header("Origin", FRONTEND).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert!(read.headers().get("access-control-allow-origin").is_none());
}

async fn responses_are_compressed_when_asked(app: TestApp) {
    for encoding in ["gzip", "br"] {
        let document = app
            .request(Method::GET, "/api-docs/openapi.json")
            .header("Accept-Encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(document.headers()["content-encoding"], encoding);
        let compressed = document.bytes().await.unwrap().len();
        assert!(compressed < custclass::api::openapi::document_json().len() / 3, "{encoding}: {compressed} bytes");
    }
    for i in 0..60 {
        app.create_customer(&format!("C{i:03}"), serde_json::json!({})).await;
    }
    let list =
        app.admin(Method::GET, "/api/v1/customers?limit=100").header("Accept-Encoding", "gzip").send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(list.headers()["content-encoding"], "gzip");
    let plain = app.get("/api/v1/customers?limit=100").await;
    assert!(plain.headers().get("content-encoding").is_none(), "no encoding unless asked");
    assert_eq!(ok_json(plain, StatusCode::OK).await["items"].as_array().unwrap().len(), 60);
}
