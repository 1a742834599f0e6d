//! Hold rules against flapping: an ordered scheme's `tier_policy` lets runs move a
//! customer up at once and down only after a minimum stay and enough consecutive
//! failing runs, counted in the database.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};
use crate::sales::pointers;

both_backends!(
    a_policy_belongs_to_an_ordered_scheme,
    a_customer_hovering_at_a_threshold_moves_once_with_the_policy,
    held_downgrades_say_why_and_dry_runs_do_not_count,
    the_minimum_stay_holds_a_downgrade_until_it_ends
);

/// An ordered scheme of two tiers: 01 (rank 2) for `spend_12m >= 1000`, else 02 (rank 1).
async fn two_tiers(app: &TestApp, scheme: &str, policy: Value) {
    let body = json!({"code": scheme, "name": "客户等级", "code_rule": "2", "ordered": true, "tier_policy": policy});
    ok_json(app.post("/api/v1/schemes", &body).await, StatusCode::CREATED).await;
    for (code, name, rank) in [("01", "大客户", 2), ("02", "普通客户", 1)] {
        let category = json!({"code": code, "name": name, "rank": rank});
        ok_json(app.post(&format!("/api/v1/schemes/{scheme}/categories"), &category).await, StatusCode::CREATED).await;
    }
    let rules = [
        ("年销售额≥1000", "01", json!({"field": "spend_12m", "op": ">=", "value": 1000})),
        ("其余", "02", json!({"field": "spend_12m", "op": ">=", "value": -1_000_000})),
    ];
    for (priority, (name, target, condition)) in rules.into_iter().enumerate() {
        let rule = json!({"name": name, "target_category": target, "priority": priority, "condition": condition});
        ok_json(app.post(&format!("/api/v1/schemes/{scheme}/rules"), &rule).await, StatusCode::CREATED).await;
    }
}

async fn sale(app: &TestApp, id: &str, customer: &str, amount: i64) {
    let occurred_at = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let item = json!([{"external_id": id, "customer_code": customer, "amount": amount, "occurred_at": occurred_at}]);
    let posted = ok_json(app.post("/api/v1/transactions", &item).await, StatusCode::OK).await;
    assert_eq!(posted["created"], 1, "{posted}");
}

async fn run(app: &TestApp, scheme: &str, body: Value) -> Value {
    ok_json(app.post(&format!("/api/v1/schemes/{scheme}/classification-runs"), &body).await, StatusCode::CREATED).await
}

async fn changes(app: &TestApp, scheme: &str, run: &Value) -> Vec<Value> {
    let path = format!("/api/v1/schemes/{scheme}/classification-runs/{}/changes", run["id"]);
    ok_json(app.get(&path).await, StatusCode::OK).await["items"].as_array().unwrap().clone()
}

async fn category_of(app: &TestApp, customer: &str, scheme: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/customers/{customer}")).await, StatusCode::OK).await["categories"][scheme].clone()
}

async fn moves_by_rules(app: &TestApp, customer: &str, scheme: &str) -> Vec<(String, String)> {
    app.full_history(customer)
        .await
        .iter()
        .filter(|entry| entry["scheme"] == scheme && entry["source"] == "rule")
        .map(|entry| (entry["to"].as_str().unwrap().to_string(), entry["direction"].as_str().unwrap().to_string()))
        .collect()
}

async fn a_policy_belongs_to_an_ordered_scheme(app: TestApp) {
    let unordered = json!({"code": "REGION", "name": "地区", "code_rule": "2", "tier_policy": {"min_stay_days": 30}});
    let refused =
        problem(app.post("/api/v1/schemes", &unordered).await, StatusCode::UNPROCESSABLE_ENTITY, "scheme_not_ordered")
            .await;
    assert_eq!(pointers(&refused), ["tier_policy"]);
    let absurd = json!({"code": "TIER", "name": "等级", "code_rule": "2", "ordered": true,
        "tier_policy": {"min_stay_days": 3651, "downgrade_after_runs": 0}});
    let refused =
        problem(app.post("/api/v1/schemes", &absurd).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(pointers(&refused), ["/tier_policy/min_stay_days"]);
    let zero_runs = json!({"code": "TIER", "name": "等级", "code_rule": "2", "ordered": true,
        "tier_policy": {"downgrade_after_runs": 0}});
    let refused =
        problem(app.post("/api/v1/schemes", &zero_runs).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(pointers(&refused), ["/tier_policy/downgrade_after_runs"]);

    two_tiers(&app, "TIER", json!({"min_stay_days": 30})).await;
    let scheme = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!(
        scheme["tier_policy"],
        json!({"min_stay_days": 30, "downgrade_after_runs": 1}),
        "the default count is 1"
    );
    let unordering = app.patch("/api/v1/schemes/TIER", &json!({"ordered": false})).await;
    problem(unordering, StatusCode::UNPROCESSABLE_ENTITY, "scheme_not_ordered").await;
    let both = ok_json(
        app.patch("/api/v1/schemes/TIER", &json!({"ordered": false, "tier_policy": null})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!((both["ordered"].clone(), both["tier_policy"].clone()), (json!(false), json!(null)));
    let again = json!({"ordered": true, "tier_policy": {"min_stay_days": 0, "downgrade_after_runs": 3}});
    let patched = ok_json(app.patch("/api/v1/schemes/TIER", &again).await, StatusCode::OK).await;
    assert_eq!(patched["tier_policy"], json!({"min_stay_days": 0, "downgrade_after_runs": 3}));
}

/// The case: spend alternates below and above the threshold over six runs.
/// Without a policy every run after the first moves the customer (five moves); with
/// `downgrade_after_runs: 2` it goes up once and stays, since it never fails its tier
/// twice in a row.
async fn a_customer_hovering_at_a_threshold_moves_once_with_the_policy(app: TestApp) {
    two_tiers(&app, "PLAIN", json!(null)).await;
    two_tiers(&app, "STEADY", json!({"downgrade_after_runs": 2})).await;
    app.create_customer("C1", json!({"PLAIN": "02", "STEADY": "02"})).await;
    sale(&app, "SO-0", "C1", 900).await;
    let mut held = Vec::new();
    for round in 0..6 {
        if round > 0 {
            let amount = if round % 2 == 1 { 200 } else { -200 };
            sale(&app, &format!("SO-{round}"), "C1", amount).await;
        }
        run(&app, "PLAIN", json!({})).await;
        let steady = run(&app, "STEADY", json!({})).await;
        held.push(steady["held"].as_i64().unwrap());
    }
    let plain = moves_by_rules(&app, "C1", "PLAIN").await;
    assert_eq!(plain.len(), 5, "{plain:?}");
    assert_eq!(
        moves_by_rules(&app, "C1", "STEADY").await,
        [("01".to_string(), "up".to_string())],
        "up at once, never down"
    );
    assert_eq!(held, [0, 0, 1, 0, 1, 0]);
    assert_eq!(category_of(&app, "C1", "STEADY").await, "01");
    assert_eq!(category_of(&app, "C1", "PLAIN").await, "01");
}

async fn held_downgrades_say_why_and_dry_runs_do_not_count(app: TestApp) {
    two_tiers(&app, "TIER", json!({"downgrade_after_runs": 3})).await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    app.create_customer("C2", json!({"TIER": "02"})).await;
    sale(&app, "SO-1", "C1", 1500).await;
    let up = run(&app, "TIER", json!({})).await;
    assert_eq!((up["up"].clone(), up["held"].clone()), (json!(1), json!(0)));
    sale(&app, "SO-2", "C1", -1000).await;

    for _ in 0..2 {
        let dry = run(&app, "TIER", json!({"dry_run": true})).await;
        assert_eq!((dry["held"].clone(), dry["changed"].clone()), (json!(1), json!(0)));
        let listed = changes(&app, "TIER", &dry).await;
        assert_eq!(listed.len(), 1);
        let change = &listed[0];
        assert_eq!(
            (change["customer"].clone(), change["from"].clone(), change["to"].clone(), change["outcome"].clone()),
            (json!("C1"), json!("01"), json!("02"), json!("held"))
        );
        assert_eq!(change["direction"], "down");
        let detail = change["detail"].as_str().unwrap();
        assert!(detail.contains("failed its tier in 1 of the 3 consecutive runs needed (2 more)"), "{detail}");
    }

    let first = run(&app, "TIER", json!({})).await;
    assert_eq!(
        (first["held"].clone(), first["evaluated"].clone(), first["unchanged"].clone()),
        (json!(1), json!(2), json!(1))
    );
    let rule_id = changes(&app, "TIER", &first).await[0]["rule_id"].clone();
    let rules = ok_json(app.get("/api/v1/schemes/TIER/rules").await, StatusCode::OK).await;
    let fallback = rules["items"].as_array().unwrap().iter().find(|r| r["target_category"] == "02").unwrap();
    assert_eq!(rule_id, fallback["id"], "the held change names the rule that would have moved it");

    // The explanation says what an applied run now would do: hold it a second time.
    let explained =
        ok_json(app.get("/api/v1/customers/C1/classification/TIER/explanation").await, StatusCode::OK).await;
    let outcome = &explained["outcome"];
    assert_eq!((outcome["kind"].clone(), outcome["category"].clone()), (json!("held"), json!("02")));
    let detail = outcome["detail"].as_str().unwrap();
    assert!(detail.contains("2 of the 3 consecutive runs needed (1 more)"), "{detail}");

    // Another replica (a process without memory of the first run) counts on.
    let replica = app.replica().await;
    let second = run(&replica, "TIER", json!({})).await;
    let detail = changes(&replica, "TIER", &second).await[0]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("2 of the 3 consecutive runs needed (1 more)"), "{detail}");
    assert_eq!(category_of(&app, "C1", "TIER").await, "01");

    let third = run(&app, "TIER", json!({})).await;
    assert_eq!((third["held"].clone(), third["down"].clone()), (json!(0), json!(1)));
    assert_eq!(category_of(&app, "C1", "TIER").await, "02");
    let history = app.full_history("C1").await;
    let last = history.last().unwrap();
    assert_eq!((last["source"].clone(), last["direction"].clone()), (json!("rule"), json!("down")));

    // A run that finds the customer in its tier again starts the count anew.
    sale(&app, "SO-3", "C1", 1000).await;
    run(&app, "TIER", json!({})).await;
    sale(&app, "SO-4", "C1", -1000).await;
    run(&app, "TIER", json!({})).await;
    sale(&app, "SO-5", "C1", 1000).await;
    run(&app, "TIER", json!({})).await;
    sale(&app, "SO-6", "C1", -1000).await;
    let anew = run(&app, "TIER", json!({})).await;
    let detail = changes(&app, "TIER", &anew).await[0]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("1 of the 3"), "{detail}");

    // Dropping the policy forgets the counts; a later one starts from nothing.
    ok_json(app.patch("/api/v1/schemes/TIER", &json!({"tier_policy": null})).await, StatusCode::OK).await;
    let again = json!({"tier_policy": {"downgrade_after_runs": 3}});
    ok_json(app.patch("/api/v1/schemes/TIER", &again).await, StatusCode::OK).await;
    let restarted = run(&app, "TIER", json!({})).await;
    let detail = changes(&app, "TIER", &restarted).await[0]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("1 of the 3"), "{detail}");
}

async fn the_minimum_stay_holds_a_downgrade_until_it_ends(app: TestApp) {
    two_tiers(&app, "TIER", json!({"min_stay_days": 30})).await;
    app.create_customer("C1", json!({"TIER": "02"})).await;
    sale(&app, "SO-1", "C1", 1500).await;
    run(&app, "TIER", json!({})).await;
    sale(&app, "SO-2", "C1", -1000).await;
    let held = run(&app, "TIER", json!({})).await;
    assert_eq!(held["held"], 1);
    let detail = changes(&app, "TIER", &held).await[0]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("the minimum stay of 30 days lasts until"), "{detail}");
    assert!(!detail.contains("consecutive"), "one failing run is enough here: {detail}");

    // Upgrades never wait, whatever the stay.
    app.advance_clock(Duration::from_secs(29 * 86_400));
    assert_eq!(run(&app, "TIER", json!({})).await["held"], 1);
    app.advance_clock(Duration::from_secs(2 * 86_400));
    // The explanation judges the stay by the same clock as the runs.
    let explained =
        ok_json(app.get("/api/v1/customers/C1/classification/TIER/explanation").await, StatusCode::OK).await;
    assert_eq!(
        (explained["outcome"]["kind"].clone(), explained["outcome"]["category"].clone()),
        (json!("moves"), json!("02"))
    );
    let moved = run(&app, "TIER", json!({})).await;
    assert_eq!((moved["held"].clone(), moved["down"].clone()), (json!(0), json!(1)));
    assert_eq!(category_of(&app, "C1", "TIER").await, "02");
}
