//! Candidate duplicates (清理重复数据): groups by tax id, normalised name, phone, email.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{execute_directly, insert_customers_directly, ok_json, problem, TestApp};

both_backends!(
    names_that_differ_in_form_group_together,
    groups_come_largest_first_page_by_page,
    customers_written_behind_the_service_are_found_too,
    bad_duplicate_searches_are_problems,
);

async fn customer(app: &TestApp, code: &str, name: &str, phone: Option<&str>, email: Option<&str>) {
    let body = json!({"code": code, "name": name, "phone": phone, "email": email});
    ok_json(app.post("/api/v1/customers", &body).await, StatusCode::CREATED).await;
}

/// `(key, value, size, codes)` of each group.
fn groups(page: &Value) -> Vec<(String, String, i64, Vec<String>)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            let codes = group["customers"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect();
            (group["key"].as_str().unwrap().to_string(), group["value"].as_str().unwrap().to_string(), group["size"].as_i64().unwrap(), codes)
        })
        .collect()
}

fn group(key: &str, value: &str, codes: &[&str]) -> (String, String, i64, Vec<String>) {
    (key.into(), value.into(), codes.len() as i64, codes.iter().map(|c| c.to_string()).collect())
}

async fn names_that_differ_in_form_group_together(app: TestApp) {
    customer(&app, "D1", "北京电子有限公司", Some("010-6552 9988"), Some("sales@bjdz.cn")).await;
    customer(&app, "D2", "北京电子有限责任公司", None, Some("Sales@BJDZ.cn")).await;
    customer(&app, "D3", "（北京）电子有限公司", Some("(010) 65529988"), None).await;
    customer(&app, "D4", "上海电子有限公司", Some("+86 138 0013 8000"), None).await;
    customer(&app, "D5", "上海贸易", Some("13800138000"), None).await;

    let by_name = ok_json(app.get("/api/v1/customers/duplicates?by=name").await, StatusCode::OK).await;
    assert_eq!(groups(&by_name), [group("name", "北京电子", &["D1", "D2", "D3"])]);
    assert_eq!(by_name["items"][0]["customers"][2]["name"], "（北京）电子有限公司", "customers as they are stored");
    assert_eq!(by_name["next_cursor"], Value::Null);

    let every = ok_json(app.get("/api/v1/customers/duplicates").await, StatusCode::OK).await;
    assert_eq!(
        groups(&every),
        [
            group("name", "北京电子", &["D1", "D2", "D3"]),
            group("phone", "01065529988", &["D1", "D3"]),
            group("phone", "13800138000", &["D4", "D5"]),
            group("email", "sales@bjdz.cn", &["D1", "D2"]),
        ]
    );

    // A customer renamed away leaves its group; one renamed into it joins.
    ok_json(app.patch("/api/v1/customers/D2", &json!({"name": "北京电器"})).await, StatusCode::OK).await;
    ok_json(app.patch("/api/v1/customers/D4", &json!({"name": "ＢＥＩＪＩＮＧ 北京电子公司"})).await, StatusCode::OK).await;
    ok_json(app.patch("/api/v1/customers/D5", &json!({"name": "Beijing北京电子"})).await, StatusCode::OK).await;
    let renamed = ok_json(app.get("/api/v1/customers/duplicates?by=name").await, StatusCode::OK).await;
    assert_eq!(groups(&renamed), [group("name", "beijing北京电子", &["D4", "D5"]), group("name", "北京电子", &["D1", "D3"])]);
    // A deleted customer leaves every group.
    assert_eq!(app.delete("/api/v1/customers/D3").await.status(), StatusCode::NO_CONTENT);
    let after_delete = ok_json(app.get("/api/v1/customers/duplicates?by=name,phone").await, StatusCode::OK).await;
    assert_eq!(groups(&after_delete), [group("name", "beijing北京电子", &["D4", "D5"]), group("phone", "13800138000", &["D4", "D5"])]);
}

async fn groups_come_largest_first_page_by_page(app: TestApp) {
    for (code, name) in [("G1", "甲公司"), ("G2", "甲有限公司"), ("G3", "乙公司"), ("G4", "乙有限公司"), ("G5", "乙股份有限公司"), ("G6", "丙"), ("G7", "丙公司"), ("G8", "丁")] {
        customer(&app, code, name, None, None).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/customers/duplicates?by=name&limit=1".to_string();
    loop {
        let page = ok_json(app.get(&path).await, StatusCode::OK).await;
        seen.extend(groups(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/customers/duplicates?by=name&limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, [group("name", "乙", &["G3", "G4", "G5"]), group("name", "丙", &["G6", "G7"]), group("name", "甲", &["G1", "G2"])]);
}

async fn customers_written_behind_the_service_are_found_too(app: TestApp) {
    customer(&app, "K1", "广州新星有限公司", None, None).await;
    insert_customers_directly(&app, "P", 1_500).await;
    execute_directly(&app, &["UPDATE customers SET name = '广州新星公司' WHERE code IN ('P00007', 'P01499')"]).await;
    let page = ok_json(app.get("/api/v1/customers/duplicates?by=name").await, StatusCode::OK).await;
    assert_eq!(groups(&page), [group("name", "广州新星", &["K1", "P00007", "P01499"])], "keyed on the way, over more than one batch");
}

async fn bad_duplicate_searches_are_problems(app: TestApp) {
    let unknown = problem(app.get("/api/v1/customers/duplicates?by=name,fax").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(unknown["errors"][0]["field"], "by");
    problem(app.get("/api/v1/customers/duplicates?limit=101").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers/duplicates?cursor=nonsense").await, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    problem(app.get("/api/v1/customers/duplicates?sort=size").await, StatusCode::BAD_REQUEST, "invalid_query").await;
}
