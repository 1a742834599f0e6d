//! Why a customer stands where it does (`GET /customers/{code}/classification/{scheme}/explanation`):
//! the last change, the pin and the pending change, every enabled rule evaluated now
//! leaf by leaf (nested `all`/`any`/`not`, a relative field at today's ranks), the rule
//! a run would apply, and the distance to the tiers above and below.

use chrono::{SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};

both_backends!(a_customer_standing_is_explained_rule_by_rule, pins_restrictions_and_unknowns_are_explained);

/// TIER ordered 01 VIP (rank 3) > 02 普通 (2) > 03 潜在 (1), with three rules.
async fn tiers_with_rules(app: &TestApp) -> [i64; 3] {
    let scheme = json!({"code": "TIER", "name": "客户等级", "code_rule": "2", "ordered": true});
    ok_json(app.post("/api/v1/schemes", &scheme).await, StatusCode::CREATED).await;
    for (code, name, rank) in [("01", "VIP客户", 3), ("02", "普通客户", 2), ("03", "潜在客户", 1)] {
        let category = json!({"code": code, "name": name, "rank": rank});
        ok_json(app.post("/api/v1/schemes/TIER/categories", &category).await, StatusCode::CREATED).await;
    }
    let rules = [
        json!({"name": "大客户", "target_category": "01", "priority": 10, "condition": {"all": [
            {"field": "spend_12m", "op": ">=", "value": 1000000},
            {"any": [{"field": "orders_12m", "op": ">=", "value": 10}, {"not": {"field": "name", "op": "contains", "value": "测试"}}]},
        ]}}),
        json!({"name": "普通", "target_category": "02", "priority": 20, "condition": {"field": "spend_12m", "op": ">=", "value": 100000}}),
        json!({"name": "后一半", "target_category": "03", "priority": 30, "condition": {"field": "percentile(spend_12m)", "op": "<", "value": 50}}),
    ];
    let mut ids = [0; 3];
    for (i, rule) in rules.iter().enumerate() {
        ids[i] = ok_json(app.post("/api/v1/schemes/TIER/rules", rule).await, StatusCode::CREATED).await["id"]
            .as_i64()
            .unwrap();
    }
    ids
}

async fn sell(app: &TestApp, customer: &str, amounts: &[&str]) {
    let at = (Utc::now() - chrono::Duration::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let sales: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, amount)| json!({"external_id": format!("{customer}-{i}"), "customer_code": customer, "amount": amount, "occurred_at": at}))
        .collect();
    ok_json(app.post("/api/v1/transactions", &json!(sales)).await, StatusCode::OK).await;
}

async fn explained(app: &TestApp, customer: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/customers/{customer}/classification/TIER/explanation")).await, StatusCode::OK)
        .await
}

async fn a_customer_standing_is_explained_rule_by_rule(app: TestApp) {
    let [vip, ordinary, lower_half] = tiers_with_rules(&app).await;
    for code in ["C1", "C2", "C3", "C4"] {
        app.create_customer(code, json!({})).await;
    }
    sell(&app, "C1", &["250000.00", "250000.00", "250000.00"]).await;
    sell(&app, "C2", &["50000.00"]).await;
    sell(&app, "C3", &["2000000.00"]).await;
    let put = app
        .admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
        .json(&json!({"category": "02", "reason": "初始"}))
        .send()
        .await
        .unwrap();
    ok_json(put, StatusCode::OK).await;

    let c1 = explained(&app, "C1").await;
    assert_eq!(
        (&c1["customer"], &c1["scheme"], &c1["category"], &c1["locked"]),
        (&json!("C1"), &json!("TIER"), &json!("02"), &json!(false))
    );
    assert_eq!(
        (&c1["last_change"]["source"], &c1["last_change"]["reason"], &c1["last_change"]["to"]),
        (&json!("manual"), &json!("初始"), &json!("02"))
    );
    assert_eq!(c1["pending"], Value::Null);
    let rules = c1["rules"].as_array().unwrap();
    assert_eq!(
        rules.iter().map(|rule| rule["id"].as_i64().unwrap()).collect::<Vec<_>>(),
        [vip, ordinary, lower_half],
        "in priority order"
    );
    assert_eq!(
        rules.iter().map(|rule| (rule["holds"].clone(), rule["wins"].clone())).collect::<Vec<_>>(),
        [(json!(false), json!(false)), (json!(true), json!(true)), (json!(false), json!(false))]
    );

    // The VIP rule, leaf by leaf: the spend falls 250,000.00 short; the `any` holds through its `not`.
    let all = &rules[0]["condition"];
    assert_eq!(all["holds"], false);
    let spend = &all["all"][0];
    assert_eq!((&spend["field"], &spend["op"], &spend["value"]), (&json!("spend_12m"), &json!(">="), &json!(1000000)));
    assert_eq!(
        (&spend["actual"], &spend["holds"], &spend["missing"]),
        (&json!("750000.00"), &json!(false), &json!("250000.00"))
    );
    let any = &all["all"][1];
    assert_eq!(any["holds"], true);
    assert_eq!(
        (&any["any"][0]["actual"], &any["any"][0]["holds"], &any["any"][0]["missing"]),
        (&json!(3), &json!(false), &json!(7))
    );
    let not = &any["any"][1];
    assert_eq!(
        (&not["holds"], &not["not"]["holds"], &not["not"]["actual"]),
        (&json!(true), &json!(false), &json!("C1 有限公司"))
    );
    // The ordinary rule holds with 650,000.00 to spare.
    assert_eq!(
        (&rules[1]["condition"]["holds"], &rules[1]["condition"]["to_spare"]),
        (&json!(true), &json!("650000.00"))
    );
    // The relative rule at today's ranks: C1's spend is above the lower half's range.
    let half = &rules[2]["condition"];
    assert_eq!(
        (&half["field"], &half["actual"], &half["holds"]),
        (&json!("percentile(spend_12m)"), &json!("750000.00"), &json!(false))
    );
    assert_eq!(half["at_todays_ranks"]["field"], "spend_12m");
    assert!(half["missing"].is_string(), "{half}");
    assert_eq!((&c1["outcome"]["kind"], &c1["outcome"]["rule_id"]), (&json!("stays"), &json!(ordinary)));

    // The tiers around 普通: what VIP misses, and what the lower half is away.
    let above = &c1["distance"]["above"];
    assert_eq!((&above["category"], &above["rank"]), (&json!("01"), &json!(3)));
    let fields: Vec<(Value, Value)> =
        above["conditions"].as_array().unwrap().iter().map(|c| (c["field"].clone(), c["missing"].clone())).collect();
    assert_eq!(fields, [(json!("spend_12m"), json!("250000.00")), (json!("orders_12m"), json!(7))]);
    assert!(above["conditions"].as_array().unwrap().iter().all(|c| c["rule_id"] == json!(vip)));
    let below = &c1["distance"]["below"];
    assert_eq!((&below["category"], &below["conditions"][0]["rule_id"]), (&json!("03"), &json!(lower_half)));

    // A run agrees with the explanation: C3 qualifies for VIP, C2 for the lower half.
    let c3 = explained(&app, "C3").await;
    assert_eq!(
        (&c3["outcome"]["kind"], &c3["outcome"]["category"], &c3["outcome"]["rule_id"]),
        (&json!("moves"), &json!("01"), &json!(vip))
    );
    assert_eq!(c3["distance"]["above"]["category"], "03", "from no category the lowest rank is above");
    let c2 = explained(&app, "C2").await;
    assert_eq!((&c2["outcome"]["category"], &c2["outcome"]["rule_id"]), (&json!("03"), &json!(lower_half)));
    ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &json!({})).await, StatusCode::CREATED).await;
    for (code, category) in [("C1", "02"), ("C2", "03"), ("C3", "01")] {
        assert_eq!(explained(&app, code).await["category"], category);
    }
    let after = explained(&app, "C3").await;
    assert_eq!((&after["last_change"]["source"], &after["last_change"]["rule_id"]), (&json!("rule"), &json!(vip)));
    assert_eq!(after["outcome"]["kind"], "stays");
}

async fn pins_restrictions_and_unknowns_are_explained(app: TestApp) {
    tiers_with_rules(&app).await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    sell(&app, "C1", &["5000000.00"]).await;
    let pinned = app
        .admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
        .json(&json!({"category": "03", "locked": true}))
        .send()
        .await
        .unwrap();
    ok_json(pinned, StatusCode::OK).await;
    let later = (Utc::now() + chrono::Duration::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let planned = app
        .admin(Method::PUT, "/api/v1/customers/C1/categories/TIER")
        .json(&json!({"category": "01", "effective_at": later, "reason": "下月"}))
        .send()
        .await
        .unwrap();
    let planned = ok_json(planned, StatusCode::ACCEPTED).await;
    let c1 = explained(&app, "C1").await;
    assert_eq!((&c1["locked"], &c1["outcome"]["kind"]), (&json!(true), &json!("pinned")));
    assert_eq!((&c1["pending"]["id"], &c1["pending"]["category"]), (&planned["id"], &json!("01")));
    assert_eq!(c1["distance"]["below"], Value::Null, "潜在 is the lowest rank");

    let key = ok_json(
        app.post("/api/v1/api-keys", &json!({"name": "vip-only", "scope": "read", "restrict": {"TIER": ["01"]}})).await,
        StatusCode::CREATED,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let outside = app
        .request(Method::GET, "/api/v1/customers/C1/classification/TIER/explanation")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    problem(outside, StatusCode::NOT_FOUND, "customer_not_found").await;
    problem(
        app.get("/api/v1/customers/NOBODY/classification/TIER/explanation").await,
        StatusCode::NOT_FOUND,
        "customer_not_found",
    )
    .await;
    problem(
        app.get("/api/v1/customers/C1/classification/NONE/explanation").await,
        StatusCode::NOT_FOUND,
        "scheme_not_found",
    )
    .await;
}
