//! Relative segmentation: ABC by cumulative share, RFM scores, percentiles, populations
//! narrowed to a subtree, and batches that rank against the whole population.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, spawn_app_with, Backend, Options, TestApp};
use crate::sales::pointers;

both_backends!(
    abc_by_cumulative_share_with_ties,
    rfm_scores_on_known_data,
    a_population_narrowed_to_a_subtree,
    relative_fields_are_validated_with_pointers,
);

both_backends!(backend: many_batches_rank_against_the_whole_population);

/// A moment `days` before now, as the API takes it.
fn days_ago(days: i64) -> String {
    (Utc::now() - Duration::days(days)).to_rfc3339()
}

/// The known customers: (code, orders as (amount, days ago), region).
/// Spend: C01 5000, C02 2000, C03 1000, C04 1000, C05 500, C06 300, C07 100, C08 100,
/// C09 nothing, C10 a refund only (no order); C11 has the most but is inactive.
type KnownCustomer = (&'static str, Vec<(&'static str, i64)>, &'static str);

fn known() -> Vec<KnownCustomer> {
    vec![
        ("C01", vec![("5000.00", 100)], "0101"),
        ("C02", vec![("1000.00", 5), ("1000.00", 5)], "0101"),
        ("C03", vec![("1000.00", 30)], "0102"),
        ("C04", vec![("500.00", 30), ("500.00", 30)], "0102"),
        ("C05", vec![("100.00", 1); 5], "02"),
        ("C06", vec![("100.00", 60); 3], "02"),
        ("C07", vec![("100.00", 200)], "02"),
        ("C08", vec![("100.00", 300)], "02"),
        ("C09", vec![], "02"),
        ("C10", vec![("-50.00", 3)], "02"),
        ("C11", vec![("1000000.00", 2)], "0101"),
    ]
}

/// TIER as A (01), B (02), C (03); REGION 01 华北 (0101, 0102) and 02; the known
/// customers with their sales; C11 made inactive.
async fn load_known(app: &TestApp) {
    app.create_tiers().await;
    app.create_scheme("REGION", "2-2").await;
    for (code, name) in [("01", "华北"), ("0101", "北京"), ("0102", "天津"), ("02", "华东")] {
        app.create_category("REGION", code, name).await;
    }
    let mut sales = Vec::new();
    for (code, orders, region) in known() {
        app.create_customer(code, json!({"REGION": region})).await;
        for (index, (amount, days)) in orders.into_iter().enumerate() {
            sales.push(json!({"external_id": format!("{code}-{index}"), "customer_code": code, "amount": amount, "occurred_at": days_ago(days)}));
        }
    }
    let posted = ok_json(app.post("/api/v1/transactions", &Value::Array(sales)).await, StatusCode::OK).await;
    assert_eq!(posted["rejected"], 0, "{posted}");
    ok_json(app.patch("/api/v1/customers/C11", &json!({"status": "inactive"})).await, StatusCode::OK).await;
}

async fn rule(app: &TestApp, body: Value) -> Value {
    ok_json(app.post("/api/v1/schemes/TIER/rules", &body).await, StatusCode::CREATED).await
}

/// The customers a run put (or, dry, would put) in each category.
async fn placed(app: &TestApp, run: &Value) -> Vec<(String, String)> {
    let changes = ok_json(
        app.get(&format!("/api/v1/schemes/TIER/classification-runs/{}/changes?limit=1000", run["id"])).await,
        StatusCode::OK,
    )
    .await;
    let mut placed: Vec<(String, String)> = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["to"].as_str().unwrap().to_string(), c["customer"].as_str().unwrap().to_string()))
        .collect();
    placed.sort();
    placed
}

fn pairs(expected: &[(&str, &[&str])]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = expected
        .iter()
        .flat_map(|(to, codes)| codes.iter().map(move |code| (to.to_string(), code.to_string())))
        .collect();
    pairs.sort();
    pairs
}

async fn run(app: &TestApp, body: Value) -> Value {
    ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &body).await, StatusCode::CREATED).await
}

async fn metrics(app: &TestApp, code: &str, query: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/customers/{code}/metrics{query}")).await, StatusCode::OK).await
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

async fn abc_by_cumulative_share_with_ties(app: TestApp) {
    load_known(&app).await;
    // Positive total 10,000 among the ten active customers: C01 holds 50 %, with C02 70 %,
    // C03 and C04 tie at 90 %, C05 95 %, C06 98 %, and the rest 100 %.
    let share = |op: &str, value: f64| json!({"field": "cumulative_share(spend_12m)", "op": op, "value": value});
    rule(&app, json!({"name": "A", "target_category": "01", "priority": 1, "condition": share("<=", 80.0)})).await;
    rule(&app, json!({"name": "B", "target_category": "02", "priority": 2, "condition": share("<=", 95.0)})).await;
    rule(&app, json!({"name": "C", "target_category": "03", "priority": 3, "condition": share(">", 95.0)})).await;
    let expected =
        pairs(&[("01", &["C01", "C02"]), ("02", &["C03", "C04", "C05"]), ("03", &["C06", "C07", "C08", "C09", "C10"])]);
    let dry = run(&app, json!({"dry_run": true})).await;
    assert_eq!(placed(&app, &dry).await, expected, "ties stand together; the inactive C11 is no part of the total");
    let applied = run(&app, json!({})).await;
    assert_eq!((applied["changed"].clone(), applied["skipped_inactive"].clone()), (json!(10), json!(1)));
    for (category, code) in &expected {
        let customer = ok_json(app.get(&format!("/api/v1/customers/{code}")).await, StatusCode::OK).await;
        assert_eq!(customer["categories"]["TIER"], json!(category), "{code}");
    }
    // A run of some customers still ranks them against everyone.
    let some = run(&app, json!({"dry_run": true, "customers": ["C03", "C06"]})).await;
    assert_eq!(some["changed"], 0, "C03 and C06 are where the whole population puts them");

    let c03 = metrics(&app, "C03", "?population=all").await;
    assert!(close(&c03["standing"]["cumulative_share"]["spend_12m"], 90.0), "{c03}");
    assert!(close(&c03["standing"]["percentile"]["spend_12m"], 600.0 / 9.0), "six of the other nine spent less: {c03}");
    assert!(
        close(&c03["standing"]["percentile"]["days_since_last_order"], 200.0 / 7.0),
        "of the eight who ordered, two did more recently: {c03}"
    );
    let plain = metrics(&app, "C03", "").await;
    assert!(
        plain.get("standing").is_none() && plain.get("rfm").is_none(),
        "standings only when a population is asked for: {plain}"
    );
    // Before the anchor of the sales totals, the ranking reads the transactions: two
    // days ago C05 had not ordered yet, so the positive total was 9,500.
    let earlier = metrics(&app, "C03", &format!("?population=all&as_of={}", &days_ago(2)[..10])).await;
    assert!(close(&earlier["standing"]["cumulative_share"]["spend_12m"], 100.0 * 9000.0 / 9500.0), "{earlier}");
    let inactive = metrics(&app, "C11", "?population=all").await;
    assert_eq!(
        (
            inactive["rfm"].clone(),
            inactive["standing"]["member"].clone(),
            inactive["standing"]["percentile"]["spend_12m"].clone()
        ),
        (json!(null), json!(false), json!(null))
    );
}

async fn rfm_scores_on_known_data(app: TestApp) {
    load_known(&app).await;
    // Among the eight customers with orders, a quintile by rank: 1 + ⌊5 × ranked below / 8⌋.
    let expected = [
        ("C01", "215"),
        ("C02", "434"),
        ("C03", "313"),
        ("C04", "333"),
        ("C05", "552"),
        ("C06", "242"),
        ("C07", "111"),
        ("C08", "111"),
        ("C09", "111"),
        ("C10", "111"),
    ];
    for (code, rfm) in expected {
        let scores = metrics(&app, code, "?population=all").await["rfm"].clone();
        assert_eq!(scores["rfm"], rfm, "{code}: {scores}");
        let digits: Vec<i64> = rfm.bytes().map(|b| i64::from(b - b'0')).collect();
        assert_eq!(
            [scores["r"].clone(), scores["f"].clone(), scores["m"].clone()],
            [json!(digits[0]), json!(digits[1]), json!(digits[2])]
        );
    }
    rule(&app, json!({"name": "lost", "target_category": "03", "priority": 1, "condition": {"field": "rfm", "op": "=", "value": "111"}})).await;
    rule(&app, json!({"name": "big spenders", "target_category": "01", "priority": 2, "condition": {"field": "rfm_m", "op": ">=", "value": 4}})).await;
    rule(&app, json!({"name": "frequent", "target_category": "02", "priority": 3,
        "condition": {"all": [{"field": "rfm_f", "op": "between", "value": [3, 5]}, {"field": "rfm", "op": "not_in", "value": ["434"]}]}})).await;
    let dry = run(&app, json!({"dry_run": true})).await;
    assert_eq!(
        placed(&app, &dry).await,
        pairs(&[("01", &["C01", "C02"]), ("02", &["C04", "C05", "C06"]), ("03", &["C07", "C08", "C09", "C10"])])
    );
}

async fn a_population_narrowed_to_a_subtree(app: TestApp) {
    load_known(&app).await;
    // 华北 (REGION 01): C01 5000, C02 2000, C03 and C04 1000 — C01 and C02 hold 78 %.
    // 华东 (REGION 02): C05 500, C06 300, C07 and C08 100 — C05 and C06 hold 80 %.
    let top = json!({"field": "cumulative_share(spend_12m)", "op": "<=", "value": 80});
    let north = rule(&app, json!({"name": "A 华北", "target_category": "01", "priority": 1, "condition": top, "population": {"category": "REGION:01"}})).await;
    assert_eq!(north["population"], json!({"category": "REGION:01"}));
    rule(&app, json!({"name": "A 华东", "target_category": "01", "priority": 2, "condition": top, "population": {"category": "REGION:02"}})).await;
    let dry = run(&app, json!({"dry_run": true})).await;
    assert_eq!(placed(&app, &dry).await, pairs(&[("01", &["C01", "C02", "C05", "C06"])]));

    let c03 = metrics(&app, "C03", "?population=REGION:01").await;
    assert_eq!(
        (c03["standing"]["member"].clone(), c03["standing"]["percentile"]["spend_12m"].clone()),
        (json!(true), json!(0.0))
    );
    assert_eq!(
        c03["rfm"]["rfm"], "211",
        "ranked among 华北's four: only C01 ordered longer ago; no fewer orders; no less spend"
    );
    let outside = metrics(&app, "C05", "?population=REGION:01").await;
    assert_eq!((outside["standing"]["member"].clone(), outside["rfm"].clone()), (json!(false), json!(null)));
    for unknown in ["REGION:09", "", "REGION"] {
        let refused = problem(
            app.get(&format!("/api/v1/customers/C05/metrics?population={unknown}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_population",
        )
        .await;
        assert_eq!(pointers(&refused), ["population"]);
    }

    // Without a population the rule ranks among everyone again.
    let patched = ok_json(
        app.patch(&format!("/api/v1/schemes/TIER/rules/{}", north["id"]), &json!({"population": null})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["population"], json!(null));
    let everyone = run(&app, json!({"dry_run": true})).await;
    assert_eq!(
        placed(&app, &everyone).await,
        pairs(&[("01", &["C01", "C02", "C05", "C06"])]),
        "C01 and C02 hold 70 % of everyone's"
    );
    // A deleted population category makes the rule stale: the run is refused.
    let c1 = ok_json(
        app.patch(
            &format!("/api/v1/schemes/TIER/rules/{}", north["id"]),
            &json!({"population": {"category": "REGION:0102"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(c1["population"]["category"], "REGION:0102");
    for code in ["C03", "C04"] {
        ok_json(app.delete(&format!("/api/v1/customers/{code}/categories/REGION")).await, StatusCode::OK).await;
    }
    assert_eq!(app.delete("/api/v1/schemes/REGION/categories/0102").await.status(), StatusCode::NO_CONTENT);
    problem(
        app.post("/api/v1/schemes/TIER/classification-runs", &json!({"dry_run": true})).await,
        StatusCode::CONFLICT,
        "rule_invalid",
    )
    .await;
}

async fn relative_fields_are_validated_with_pointers(app: TestApp) {
    app.create_tiers().await;
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华北").await;
    let refused = |condition: Value| {
        let app = &app;
        async move {
            let body = json!({"name": "r", "target_category": "01", "condition": condition});
            pointers(
                &problem(
                    app.post("/api/v1/schemes/TIER/rules", &body).await,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_condition",
                )
                .await,
            )
        }
    };
    assert_eq!(refused(json!({"field": "percentile(name)", "op": ">", "value": 50})).await, ["/condition/field"]);
    assert_eq!(
        refused(json!({"field": "cumulative_share(last_order_at)", "op": "<=", "value": 80})).await,
        ["/condition/field"]
    );
    assert_eq!(refused(json!({"all": [{"field": "code", "op": "=", "value": "x"}, {"field": "percentile(spend_12m", "op": ">", "value": 1}]})).await, ["/condition/all/1/field"]);
    assert_eq!(
        refused(json!({"field": "percentile(spend_12m)", "op": ">", "value": "high"})).await,
        ["/condition/value"]
    );
    assert_eq!(refused(json!({"field": "rfm", "op": "=", "value": "56"})).await, ["/condition/value"]);
    assert_eq!(refused(json!({"field": "rfm", "op": "in", "value": ["555", "5x5"]})).await, ["/condition/value/1"]);
    assert_eq!(refused(json!({"field": "rfm", "op": ">", "value": "555"})).await, ["/condition/op"]);
    assert_eq!(refused(json!({"field": "rfm_r", "op": "under", "value": 5})).await, ["/condition/op"]);
    for population in ["REGION:09", "NOPE:01", "REGION", "REGION:"] {
        let body = json!({"name": "r", "target_category": "01", "condition": {"field": "rfm_m", "op": "=", "value": 5}, "population": {"category": population}});
        let refused = problem(
            app.post("/api/v1/schemes/TIER/rules", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_population",
        )
        .await;
        assert_eq!(pointers(&refused), ["/population/category"], "{population}");
    }
    let rules = ok_json(app.get("/api/v1/schemes/TIER/rules").await, StatusCode::OK).await;
    assert_eq!(rules["items"], json!([]), "nothing refused was saved");
}

/// Spends 1..=n hundred, so that the expected classes follow from arithmetic.
async fn many_batches_rank_against_the_whole_population(backend: Backend) {
    let app = spawn_app_with(backend, Options { run_batch_size: 7, ..Options::default() }).await;
    app.create_tiers().await;
    let n = 60;
    let mut sales = Vec::new();
    for i in 1..=n {
        let code = format!("K{i:03}");
        app.create_customer(&code, json!({})).await;
        // Every fifth spends as much as the one before it: ties across batch boundaries.
        let hundreds = if i % 5 == 0 { i - 1 } else { i };
        sales.push(json!({"external_id": format!("S{i}"), "customer_code": code, "amount": format!("{hundreds}00.00"), "occurred_at": days_ago(i)}));
    }
    ok_json(app.post("/api/v1/transactions", &Value::Array(sales)).await, StatusCode::OK).await;
    rule(&app, json!({"name": "A", "target_category": "01", "priority": 1, "condition": {"field": "cumulative_share(spend_12m)", "op": "<=", "value": 80}})).await;
    rule(&app, json!({"name": "upper 70 %", "target_category": "02", "priority": 2, "condition": {"field": "percentile(spend_12m)", "op": ">=", "value": 30}})).await;
    rule(&app, json!({"name": "recent", "target_category": "03", "priority": 3, "condition": {"field": "rfm_r", "op": "=", "value": 5}})).await;

    let spends: Vec<i64> = (1..=n).map(|i| if i % 5 == 0 { i - 1 } else { i }).collect();
    let total: i64 = spends.iter().sum();
    let mut expected = Vec::new();
    for (index, spend) in spends.iter().enumerate() {
        let held: i64 = spends.iter().filter(|s| *s >= spend).sum();
        let below = spends.iter().filter(|s| *s < spend).count() as f64;
        let days_above = (index + 1..spends.len()).count() as i64;
        let category = if 100.0 * held as f64 / total as f64 <= 80.0 {
            "01"
        } else if 100.0 * below / (n as f64 - 1.0) >= 30.0 {
            "02"
        } else if 1 + 5 * days_above / n >= 5 {
            "03"
        } else {
            continue;
        };
        expected.push((category.to_string(), format!("K{:03}", index + 1)));
    }
    expected.sort();
    assert!(
        expected.iter().any(|(c, _)| c == "01")
            && expected.iter().any(|(c, _)| c == "02")
            && expected.iter().any(|(c, _)| c == "03")
    );
    let batched = run(&app, json!({"dry_run": true})).await;
    assert_eq!(placed(&app, &batched).await, expected, "nine batches of seven rank as one");
    let applied = run(&app, json!({})).await;
    assert_eq!(applied["changed"], json!(expected.len()));
}
