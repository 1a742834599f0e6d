use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{insert_customers_directly, ok_json, problem, with_connection, TestApp};

both_backends!(
    assign_reassign_unassign_write_history,
    only_active_leaves_take_customers,
    categories_holding_customers_refuse_children_and_deletion,
    one_category_per_scheme_is_a_database_constraint,
    locks_pin_assignments,
    if_match_guards_assignments,
    batch_is_all_or_nothing_and_lists_every_bad_code,
    batch_takes_ten_thousand_customers,
    history_pages_newest_first,
    concurrent_reassignments_keep_one_category_and_an_unbroken_chain,
);

async fn assign_reassign_unassign_write_history(app: TestApp) {
    app.create_tiers().await;
    let sales = app.key("crm-frontend", "write").await;
    app.create_customer("C1", json!({})).await;
    let put = |category: &str, reason: &str| {
        app.request(Method::PUT, "/api/v1/customers/C1/categories/TIER")
            .bearer_auth(&sales)
            .json(&json!({"category": category, "reason": reason}))
            .send()
    };
    let first = put("03", "新客户").await.unwrap();
    assert_eq!(first.headers()["etag"], "\"2\"");
    assert_eq!(ok_json(first, StatusCode::OK).await["categories"], json!({"TIER": "03"}));
    assert_eq!(
        ok_json(put("01", "年度销售额超过100万").await.unwrap(), StatusCode::OK).await["categories"]["TIER"],
        "01"
    );
    let same = ok_json(put("01", "again").await.unwrap(), StatusCode::OK).await;
    assert_eq!(same["version"], 3, "re-assigning to the same category changes nothing");

    let removed = app
        .request(Method::DELETE, "/api/v1/customers/C1/categories/TIER?reason=%E9%80%80%E5%9B%9E")
        .bearer_auth(&sales)
        .send()
        .await
        .unwrap();
    let removed = ok_json(removed, StatusCode::OK).await;
    assert_eq!(removed["categories"], json!({}));
    assert_eq!(
        ok_json(app.delete("/api/v1/customers/C1/categories/TIER").await, StatusCode::OK).await["version"],
        removed["version"],
        "nothing to remove"
    );

    let history = app.full_history("C1").await;
    let summary: Vec<(Value, Value, Value, Value)> =
        history.iter().map(|e| (e["from"].clone(), e["to"].clone(), e["reason"].clone(), e["actor"].clone())).collect();
    assert_eq!(
        summary,
        [
            (json!(null), json!("03"), json!("新客户"), json!("crm-frontend")),
            (json!("03"), json!("01"), json!("年度销售额超过100万"), json!("crm-frontend")),
            (json!("01"), json!(null), json!("退回"), json!("crm-frontend")),
        ]
    );
    assert!(history.iter().all(|e| e["source"] == "manual" && e["scheme"] == "TIER" && e["rule_id"].is_null()));

    let reader = app.key("reader", "read").await;
    let refused = app
        .request(Method::PUT, "/api/v1/customers/C1/categories/TIER")
        .bearer_auth(&reader)
        .json(&json!({"category": "01"}))
        .send()
        .await
        .unwrap();
    problem(refused, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

async fn only_active_leaves_take_customers(app: TestApp) {
    app.create_scheme("REGION", "2-2").await;
    app.create_category("REGION", "01", "华北地区客户").await;
    app.create_category("REGION", "0101", "北京").await;
    app.create_category("REGION", "0102", "天津").await;
    app.create_customer("C1", json!({})).await;

    problem(app.assign("C1", "REGION", "01").await, StatusCode::UNPROCESSABLE_ENTITY, "category_not_leaf").await;
    problem(app.assign("C1", "REGION", "0199").await, StatusCode::UNPROCESSABLE_ENTITY, "category_not_found").await;
    problem(app.assign("C1", "NOPE", "01").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
    problem(app.assign("C9", "REGION", "0101").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    let bad_code = app
        .admin(Method::PUT, "/api/v1/customers/C1/categories/REGION")
        .json(&json!({"category": "01-01"}))
        .send()
        .await
        .unwrap();
    problem(bad_code, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    ok_json(app.assign("C1", "REGION", "0102").await, StatusCode::OK).await;
    ok_json(app.patch("/api/v1/schemes/REGION/categories/0101", &json!({"active": false})).await, StatusCode::OK).await;
    problem(app.assign("C1", "REGION", "0101").await, StatusCode::UNPROCESSABLE_ENTITY, "category_inactive").await;
    // Existing assignments stay when their category is deactivated.
    ok_json(app.patch("/api/v1/schemes/REGION/categories/0102", &json!({"active": false})).await, StatusCode::OK).await;
    assert_eq!(ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await["categories"]["REGION"], "0102");
    ok_json(app.patch("/api/v1/schemes/REGION/categories/0101", &json!({"active": true})).await, StatusCode::OK).await;
    ok_json(app.patch("/api/v1/schemes/REGION", &json!({"active": false})).await, StatusCode::OK).await;
    problem(app.assign("C1", "REGION", "0101").await, StatusCode::UNPROCESSABLE_ENTITY, "scheme_inactive").await;
    assert_eq!(app.full_history("C1").await.len(), 1, "refused assignments leave no history");
}

async fn categories_holding_customers_refuse_children_and_deletion(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "01"})).await;
    problem(
        app.post("/api/v1/schemes/TIER/categories", &json!({"code": "011", "name": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_code_length",
    )
    .await;
    ok_json(app.patch("/api/v1/schemes/TIER", &json!({"code_rule": "2-2"})).await, StatusCode::OK).await;
    let body = problem(
        app.post("/api/v1/schemes/TIER/categories", &json!({"code": "0101", "name": "金卡"})).await,
        StatusCode::CONFLICT,
        "category_in_use",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("1 customers"));
    problem(app.delete("/api/v1/schemes/TIER/categories/01").await, StatusCode::CONFLICT, "category_in_use").await;

    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    app.create_category("TIER", "0101", "金卡").await;
    assert_eq!(app.delete("/api/v1/schemes/TIER/categories/03").await.status(), StatusCode::NO_CONTENT);
}

async fn one_category_per_scheme_is_a_database_constraint(app: TestApp) {
    use custclass::db::schema::{categories, customer_categories, customers};
    use diesel::prelude::*;

    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "01"})).await;
    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    assert_eq!(
        ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await["assignments"].as_array().unwrap().len(),
        1
    );

    // Writing a second row for the same customer and scheme behind the service's back fails.
    let outcome = with_connection(&app, |conn| {
        let customer: i64 =
            customers::table.filter(customers::code.eq("C1")).select(customers::id).first(conn).unwrap();
        let (category, scheme): (i64, i64) = categories::table
            .filter(categories::code.eq("03"))
            .select((categories::id, categories::scheme_id))
            .first(conn)
            .unwrap();
        diesel::insert_into(customer_categories::table)
            .values((
                customer_categories::customer_id.eq(customer),
                customer_categories::scheme_id.eq(scheme),
                customer_categories::category_id.eq(category),
                customer_categories::category_code.eq("03"),
                customer_categories::locked.eq(false),
                customer_categories::assigned_at.eq(custclass::db::now()),
            ))
            .execute(conn)
    })
    .await;
    assert!(
        matches!(
            outcome,
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        ),
        "{outcome:?}"
    );
}

async fn locks_pin_assignments(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({})).await;
    let pinned = app
        .admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
        .json(&json!({"category": "01", "locked": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(pinned, StatusCode::OK).await["assignments"][0]["locked"], true);
    let moved = ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    assert_eq!(moved["assignments"][0]["locked"], true, "a manual move keeps the pin unless told otherwise");
    let unpinned = app
        .admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
        .json(&json!({"category": "02", "locked": false}))
        .send()
        .await
        .unwrap();
    let unpinned = ok_json(unpinned, StatusCode::OK).await;
    assert_eq!(unpinned["assignments"][0]["locked"], false);
    assert_eq!(unpinned["version"], moved["version"].as_i64().unwrap() + 1, "a pin change is a change");
    assert_eq!(app.full_history("C1").await.len(), 2, "pins are not category changes");
}

async fn if_match_guards_assignments(app: TestApp) {
    app.create_tiers().await;
    let created = app.create_customer("C1", json!({"TIER": "03"})).await;
    assert_eq!(created["version"], 1);
    let put = |version: i64, category: &'static str| {
        app.admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
            .header("If-Match", format!("\"{version}\""))
            .json(&json!({"category": category}))
            .send()
    };
    ok_json(put(1, "02").await.unwrap(), StatusCode::OK).await;
    problem(put(1, "01").await.unwrap(), StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let stale_delete = app
        .admin(Method::DELETE, "/api/v1/customers/C1/categories/TIER")
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    problem(stale_delete, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
    let customer = ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await;
    assert_eq!((customer["categories"]["TIER"].clone(), customer["version"].clone()), (json!("02"), json!(2)));
    assert_eq!(app.full_history("C1").await.len(), 2);
}

async fn batch_is_all_or_nothing_and_lists_every_bad_code(app: TestApp) {
    app.create_tiers().await;
    for code in ["C1", "C2", "C3"] {
        app.create_customer(code, json!({"TIER": "03"})).await;
    }
    let body = json!({"scheme": "TIER", "category": "01", "customers": ["C1", "X1", "C2", "X2"], "reason": "季度升级"});
    let refused = problem(
        app.post("/api/v1/assignments/batch", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "customers_not_found",
    )
    .await;
    let bad: Vec<_> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["message"].as_str().unwrap()))
        .collect();
    assert_eq!(bad, [("customers[1]", "customer X1 does not exist"), ("customers[3]", "customer X2 does not exist")]);
    for code in ["C1", "C2"] {
        assert_eq!(
            ok_json(app.get(&format!("/api/v1/customers/{code}")).await, StatusCode::OK).await["categories"]["TIER"],
            "03",
            "nothing moved"
        );
    }
    let syntax = json!({"scheme": "TIER", "category": "01", "customers": ["C1", "bad code"]});
    let body_errors = problem(
        app.post("/api/v1/assignments/batch", &syntax).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body_errors["errors"][0]["field"], "customers[1]");
    problem(
        app.post("/api/v1/assignments/batch", &json!({"scheme": "TIER", "category": "09", "customers": ["C1"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
    problem(
        app.post("/api/v1/assignments/batch", &json!({"scheme": "NOPE", "category": "01", "customers": ["C1"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "scheme_not_found",
    )
    .await;
    problem(
        app.post("/api/v1/assignments/batch", &json!({"scheme": "TIER", "category": "01", "customers": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let body = json!({"scheme": "TIER", "category": "01", "customers": ["C1", "C2", "C1"], "reason": "季度升级"});
    let done = ok_json(app.post("/api/v1/assignments/batch", &body).await, StatusCode::OK).await;
    assert_eq!(done, json!({"scheme": "TIER", "category": "01", "requested": 2, "changed": 2, "unchanged": 0}));
    let again = ok_json(
        app.post("/api/v1/assignments/batch", &json!({"scheme": "TIER", "category": "01", "customers": ["C1", "C3"]}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!((again["changed"].clone(), again["unchanged"].clone()), (json!(1), json!(1)));
    let history = app.full_history("C2").await;
    assert_eq!(
        (history[1]["from"].clone(), history[1]["to"].clone(), history[1]["reason"].clone()),
        (json!("03"), json!("01"), json!("季度升级"))
    );
    let vip = ok_json(app.get("/api/v1/schemes/TIER/categories/01").await, StatusCode::OK).await;
    assert_eq!(vip["customer_count"], 3);
}

async fn batch_takes_ten_thousand_customers(app: TestApp) {
    app.create_tiers().await;
    let codes = insert_customers_directly(&app, "B", 10_000).await;
    // Half of them already have a category, so the batch both moves and adds.
    let half = json!({"scheme": "TIER", "category": "03", "customers": codes[..5000]});
    assert_eq!(ok_json(app.post("/api/v1/assignments/batch", &half).await, StatusCode::OK).await["changed"], 5000);
    let all = json!({"scheme": "TIER", "category": "01", "customers": codes});
    let done = ok_json(app.post("/api/v1/assignments/batch", &all).await, StatusCode::OK).await;
    assert_eq!((done["requested"].clone(), done["changed"].clone()), (json!(10_000), json!(10_000)));
    let vip = ok_json(app.get("/api/v1/schemes/TIER/categories/01").await, StatusCode::OK).await;
    assert_eq!(vip["customer_count"], 10_000);
    let first = app.full_history("B00001").await;
    assert_eq!(first.iter().map(|e| e["to"].as_str().unwrap()).collect::<Vec<_>>(), ["03", "01"]);
    let last = app.full_history("B10000").await;
    assert_eq!((last.len(), last[0]["from"].clone()), (1, json!(null)));
    assert_eq!(ok_json(app.get("/api/v1/customers/B10000").await, StatusCode::OK).await["version"], 2);
}

async fn history_pages_newest_first(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "01"})).await;
    let cycle = ["02", "03", "01"];
    for i in 0..20 {
        ok_json(app.assign("C1", "TIER", cycle[i % 3]).await, StatusCode::OK).await;
    }
    let first = ok_json(app.get("/api/v1/customers/C1/history?limit=5").await, StatusCode::OK).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 5);
    assert_eq!(first["items"][0]["to"], cycle[19 % 3], "newest first");
    let all = app.full_history("C1").await;
    assert_eq!(all.len(), 21);
    assert!(all.windows(2).all(|w| w[0]["at"].as_str() <= w[1]["at"].as_str()));
    let only_tier = ok_json(app.get("/api/v1/customers/C1/history?scheme=REGION").await, StatusCode::OK).await;
    assert_eq!(only_tier["items"], json!([]));
    problem(app.get("/api/v1/customers/C1/history?cursor=garbage").await, StatusCode::BAD_REQUEST, "invalid_cursor")
        .await;
    problem(app.get("/api/v1/customers/C1/history?limit=0").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers/C1/history?colour=red").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(app.get("/api/v1/customers/NOBODY/history").await, StatusCode::NOT_FOUND, "customer_not_found").await;
}

/// Many clients re-assign one customer at once: one category remains, and every
/// history entry starts where the one before ended.
async fn concurrent_reassignments_keep_one_category_and_an_unbroken_chain(app: TestApp) {
    app.create_tiers().await;
    app.create_customer("C1", json!({"TIER": "03"})).await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for worker in 0..12 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for round in 0..6 {
                let category = ["01", "02", "03"][(worker + round) % 3];
                statuses.push(app.assign("C1", "TIER", category).await.status());
            }
            statuses
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().iter().all(|s| *s == StatusCode::OK));
    }
    let customer = ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await;
    assert_eq!(customer["assignments"].as_array().unwrap().len(), 1);
    let current = customer["categories"]["TIER"].clone();
    let history = app.full_history("C1").await;
    assert!(history.len() >= 2);
    assert_eq!(history[0]["from"], json!(null));
    for pair in history.windows(2) {
        assert_eq!(pair[1]["from"], pair[0]["to"], "the chain breaks between {} and {}", pair[0], pair[1]);
        assert_ne!(pair[1]["from"], pair[1]["to"], "no entry without a change");
    }
    assert_eq!(history.last().unwrap()["to"], current);

    // Clients holding the same ETag, each moving the customer elsewhere: exactly one wins.
    let version = customer["version"].as_i64().unwrap();
    let others: Vec<&'static str> = ["01", "02", "03"].into_iter().filter(|c| json!(c) != current).collect();
    let attempts: Vec<_> = others
        .iter()
        .map(|category| {
            let (app, category) = (app.clone(), *category);
            tokio::spawn(async move {
                app.admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
                    .header("If-Match", format!("\"{version}\""))
                    .json(&json!({"category": category}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    outcomes.sort();
    assert_eq!(outcomes, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    assert_eq!(ok_json(app.get("/api/v1/customers/C1").await, StatusCode::OK).await["version"], version + 1);
}
