//! Candidate duplicates (清理重复数据): groups by tax id, normalised name, phone, email.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{execute_directly, insert_customers_directly, ok_json, problem, with_connection, TestApp};

both_backends!(
    names_that_differ_in_form_group_together,
    groups_come_largest_first_page_by_page,
    customers_written_behind_the_service_are_found_too,
    bad_duplicate_searches_are_problems,
    a_search_is_narrowed_by_the_customer_list_filters,
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
            let codes = group["customers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["code"].as_str().unwrap().to_string())
                .collect();
            (
                group["key"].as_str().unwrap().to_string(),
                group["value"].as_str().unwrap().to_string(),
                group["size"].as_i64().unwrap(),
                codes,
            )
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
    ok_json(app.patch("/api/v1/customers/D4", &json!({"name": "ＢＥＩＪＩＮＧ 北京电子公司"})).await, StatusCode::OK)
        .await;
    ok_json(app.patch("/api/v1/customers/D5", &json!({"name": "Beijing北京电子"})).await, StatusCode::OK).await;
    let renamed = ok_json(app.get("/api/v1/customers/duplicates?by=name").await, StatusCode::OK).await;
    assert_eq!(
        groups(&renamed),
        [group("name", "beijing北京电子", &["D4", "D5"]), group("name", "北京电子", &["D1", "D3"])]
    );
    // A deleted customer leaves every group.
    assert_eq!(app.delete("/api/v1/customers/D3").await.status(), StatusCode::NO_CONTENT);
    let after_delete = ok_json(app.get("/api/v1/customers/duplicates?by=name,phone").await, StatusCode::OK).await;
    assert_eq!(
        groups(&after_delete),
        [group("name", "beijing北京电子", &["D4", "D5"]), group("phone", "13800138000", &["D4", "D5"])]
    );
}

async fn groups_come_largest_first_page_by_page(app: TestApp) {
    for (code, name) in [
        ("G1", "甲公司"),
        ("G2", "甲有限公司"),
        ("G3", "乙公司"),
        ("G4", "乙有限公司"),
        ("G5", "乙股份有限公司"),
        ("G6", "丙"),
        ("G7", "丙公司"),
        ("G8", "丁"),
    ] {
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
    assert_eq!(
        seen,
        [
            group("name", "乙", &["G3", "G4", "G5"]),
            group("name", "丙", &["G6", "G7"]),
            group("name", "甲", &["G1", "G2"])
        ]
    );
}

async fn customers_written_behind_the_service_are_found_too(app: TestApp) {
    customer(&app, "K1", "广州新星有限公司", None, None).await;
    insert_customers_directly(&app, "P", 1_500).await;
    execute_directly(&app, &["UPDATE customers SET name = '广州新星公司' WHERE code IN ('P00007', 'P01499')"]).await;
    // Behind the service means without keys: the service keys what has none as it
    // starts, and may have keyed these under their old names while they were inserted.
    with_connection(&app, |conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query("DELETE FROM customer_match_keys WHERE customer_id IN (SELECT id FROM customers WHERE code IN ('P00007', 'P01499'))").execute(conn).unwrap()
    })
    .await;
    let page = ok_json(app.get("/api/v1/customers/duplicates?by=name").await, StatusCode::OK).await;
    assert_eq!(
        groups(&page),
        [group("name", "广州新星", &["K1", "P00007", "P01499"])],
        "keyed on the way, over more than one batch"
    );
}

async fn bad_duplicate_searches_are_problems(app: TestApp) {
    let unknown = problem(
        app.get("/api/v1/customers/duplicates?by=name,fax").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(unknown["errors"][0]["field"], "by");
    problem(app.get("/api/v1/customers/duplicates?limit=101").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers/duplicates?cursor=nonsense").await, StatusCode::BAD_REQUEST, "invalid_cursor")
        .await;
    problem(app.get("/api/v1/customers/duplicates?sort=size").await, StatusCode::BAD_REQUEST, "invalid_query").await;
}

/// A cleansing job per region: `category`, `status`, `q` and `attr` narrow the search
/// to the customers they select, and groups are formed among those alone.
async fn a_search_is_narrowed_by_the_customer_list_filters(app: TestApp) {
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华北").await;
    app.create_category("REGION", "02", "华东").await;
    let rate = json!({"key": "grade", "type": "integer", "min": 1, "max": 9});
    ok_json(app.post("/api/v1/schemes/REGION/categories/01/attributes", &rate).await, StatusCode::CREATED).await;
    let add = |code: &'static str, name: &'static str, region: &'static str, extra: Value| {
        let app = &app;
        async move {
            let mut body = json!({"code": code, "name": name, "categories": {"REGION": region}});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            ok_json(app.post("/api/v1/customers", &body).await, StatusCode::CREATED).await;
        }
    };
    add("N1", "北京电子有限公司", "01", json!({"attributes": {"grade": 5}})).await;
    add("N2", "北京电子有限责任公司", "01", json!({"attributes": {"grade": 7}})).await;
    add("N3", "北京电子公司", "01", json!({"status": "inactive"})).await;
    add("E1", "上海贸易有限公司", "02", json!({})).await;
    add("E2", "上海贸易公司", "02", json!({})).await;
    add("X1", "北京电子", "02", json!({})).await;

    let search = |query: &'static str| {
        let app = &app;
        async move {
            groups(
                &ok_json(app.get(&format!("/api/v1/customers/duplicates?by=name{query}")).await, StatusCode::OK).await,
            )
        }
    };
    assert_eq!(
        search("").await,
        [group("name", "北京电子", &["N1", "N2", "N3", "X1"]), group("name", "上海贸易", &["E1", "E2"])]
    );
    assert_eq!(
        search("&category=REGION:01").await,
        [group("name", "北京电子", &["N1", "N2", "N3"])],
        "the region's customers alone"
    );
    assert_eq!(
        search("&category=REGION:02").await,
        [group("name", "上海贸易", &["E1", "E2"])],
        "X1 has no duplicate inside 华东"
    );
    assert_eq!(search("&category=REGION:01&status=active").await, [group("name", "北京电子", &["N1", "N2"])]);
    assert_eq!(search("&q=%E4%B8%8A%E6%B5%B7").await, [group("name", "上海贸易", &["E1", "E2"])], "q=上海");
    assert_eq!(
        search("&attr=grade:gte:6").await,
        Vec::<(String, String, i64, Vec<String>)>::new(),
        "one customer is no group"
    );
    assert_eq!(search("&attr=grade:gte:5").await, [group("name", "北京电子", &["N1", "N2"])]);
    problem(
        app.get("/api/v1/customers/duplicates?category=REGION:09").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
    problem(app.get("/api/v1/customers/duplicates?sort=name").await, StatusCode::BAD_REQUEST, "invalid_query").await;
}
