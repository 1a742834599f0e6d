//! The command line and start-up, run as an operator would.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ok_json, problem, spawn_app_with, Backend, Options, TestApp};

fn database_url(app: &TestApp) -> String {
    match &app.database {
        custclass::db::DatabaseUrl::Mysql(url) => url.clone(),
        custclass::db::DatabaseUrl::Sqlite(path) => path.display().to_string(),
    }
}

fn custclass(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_custclass"))
        .args(args)
        .env("DATABASE_URL", database_url(app))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the custclass binary")
}

both_backends!(keys_create_prints_a_working_secret_once, migrate_is_idempotent, seed_demo_loads_the_electronics_maker);

async fn keys_create_prints_a_working_secret_once(app: TestApp) {
    let output = custclass(&app, &["keys", "create", "--name", "reporting", "--scope", "read"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("cck_"), "{secret}");

    let read = app.request(Method::GET, "/api/v1/schemes").bearer_auth(&secret).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let write = app
        .request(Method::POST, "/api/v1/schemes")
        .bearer_auth(&secret)
        .json(&json!({"code": "X", "name": "x", "code_rule": "2"}))
        .send()
        .await
        .unwrap();
    problem(write, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let keys = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    assert!(keys["items"].as_array().unwrap().iter().any(|k| k["name"] == "reporting" && k["scope"] == "read"));

    let again = custclass(&app, &["keys", "create", "--name", "reporting", "--scope", "read"]);
    assert!(!again.status.success(), "a second key with the same name is refused");
    let bad_scope = custclass(&app, &["keys", "create", "--name", "x", "--scope", "root"]);
    assert!(!bad_scope.status.success());
}

async fn migrate_is_idempotent(app: TestApp) {
    app.create_scheme("TIER", "2").await;
    let output = custclass(&app, &["migrate"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await["code"], "TIER", "data survives");
}

async fn seed_demo_loads_the_electronics_maker(app: TestApp) {
    let output = custclass(&app, &["seed-demo"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let schemes = ok_json(app.get("/api/v1/schemes").await, StatusCode::OK).await;
    let codes: Vec<_> = schemes["items"].as_array().unwrap().iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["INDUSTRY", "REGION", "TIER"]);
    let tree = ok_json(app.get("/api/v1/schemes/REGION/categories/tree").await, StatusCode::OK).await;
    let names: Vec<_> = tree["items"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["华北地区客户", "华南地区客户", "华东地区客户"]);
    let total: i64 =
        tree["items"].as_array().unwrap().iter().map(|n| n["subtree_customer_count"].as_i64().unwrap()).sum();
    assert_eq!(total, 300);
    let vip_north =
        ok_json(app.get("/api/v1/customers?category=TIER:01&category=REGION:01&limit=1000").await, StatusCode::OK)
            .await;
    let vip_north = vip_north["items"].as_array().unwrap();
    assert!(!vip_north.is_empty());
    assert!(vip_north
        .iter()
        .all(|c| c["categories"]["TIER"] == "01" && c["categories"]["REGION"].as_str().unwrap().starts_with("01")));
    assert!(vip_north.iter().all(|c| c["attributes"]["account_manager"].is_string()
        && c["attributes"]["discount_rate"] == 0.1
        && c["attributes"]["credit_limit"] == 500000));
    let managed = ok_json(
        app.get("/api/v1/customers?attr=account_manager:eq:%E7%8E%8B%E8%8A%B3&limit=1000").await,
        StatusCode::OK,
    )
    .await;
    assert!(managed["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["categories"]["TIER"] == "01" && c["attributes"]["account_manager"] == "王芳"));
    let without_industry =
        ok_json(app.get("/api/v1/customers?unclassified=INDUSTRY&limit=1000").await, StatusCode::OK).await;
    let without_industry = without_industry["items"].as_array().unwrap();
    assert!(
        (5..60).contains(&without_industry.len()),
        "some demo customers wait for an industry: {}",
        without_industry.len()
    );
    assert!(without_industry
        .iter()
        .all(|c| c["categories"].get("INDUSTRY").is_none() && c["categories"]["TIER"].is_string()));
    let rules = ok_json(app.get("/api/v1/schemes/TIER/rules").await, StatusCode::OK).await;
    assert_eq!(rules["items"].as_array().unwrap().len(), 3);
    let vip_code = vip_north[0]["code"].as_str().unwrap();
    let metrics = ok_json(app.get(&format!("/api/v1/customers/{vip_code}/metrics")).await, StatusCode::OK).await;
    assert!(metrics["lifetime_spend"].as_str().unwrap() != "0.00", "VIPs have orders");
    let dry = ok_json(
        app.post("/api/v1/schemes/TIER/classification-runs", &json!({"dry_run": true})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(dry["status"], "completed");
    assert!(dry["evaluated"].as_i64().unwrap() > 250);
    let tier = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!((tier["default_category"].clone(), tier["required"].clone()), (json!("03"), json!(true)));

    let again = custclass(&app, &["seed-demo"]);
    assert!(!again.status.success(), "seeding twice is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already there"));
}

#[test]
fn openapi_command_prints_the_committed_document() {
    let output = Command::new(env!("CARGO_BIN_EXE_custclass")).arg("openapi").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), include_str!("../../openapi/openapi.json"));
}

both_backends!(backend: first_start_generates_one_admin_key, configured_admin_key_is_ensured);

/// With no key at all, the first start makes an admin key; later starts make none.
async fn first_start_generates_one_admin_key(backend: Backend) {
    let app = spawn_app_with(backend, Options { configured_admin_key: false, ..Options::default() }).await;
    let keys = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    let items = keys["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["name"].clone(), items[0]["scope"].clone()), (json!("initial-admin"), json!("admin")));
    assert!(app.admin_key.starts_with(items[0]["prefix"].as_str().unwrap()));

    let url = app.database.clone();
    let second = tokio::task::spawn_blocking(move || {
        let pool =
            custclass::db::build_pool(&url, 1, custclass::db::Timeouts::with_wait(std::time::Duration::from_secs(5)))
                .unwrap();
        custclass::startup::bootstrap_admin_key(&pool, None).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(second, None, "keys exist, so no second key is made");
    assert_eq!(ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await["items"].as_array().unwrap().len(), 1);
}

/// `CUSTCLASS_ADMIN_KEY` is re-enabled at start-up even after someone revoked it.
async fn configured_admin_key_is_ensured(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let keys = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    let id = keys["items"][0]["id"].as_i64().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/api-keys/{id}")).await.status(), StatusCode::NO_CONTENT);
    problem(app.get("/api/v1/api-keys").await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let (url, key) = (app.database.clone(), app.admin_key.clone());
    tokio::task::spawn_blocking(move || {
        let pool =
            custclass::db::build_pool(&url, 1, custclass::db::Timeouts::with_wait(std::time::Duration::from_secs(5)))
                .unwrap();
        custclass::startup::bootstrap_admin_key(&pool, Some(&key)).unwrap()
    })
    .await
    .unwrap();
    // This replica cached nothing for the refused key, so the re-enabled key works at once.
    let keys = ok_json(app.get("/api/v1/api-keys").await, StatusCode::OK).await;
    assert_eq!(keys["items"][0]["revoked_at"], json!(null));
}
