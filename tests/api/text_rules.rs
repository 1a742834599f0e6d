//! Rules that match text (`contains`, `starts_with`, `ends_with`): on the customer's
//! code, name, short name and tax id and on string attributes, case-insensitive for
//! Latin letters, exact for Chinese, with `%` and `_` meaning themselves.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};
use crate::sales::pointers;

both_backends!(text_matches_classify_by_keywords, text_matches_are_refused_where_they_do_not_apply);

/// The customers a condition selects, read from a dry run's changes.
async fn selected(app: &TestApp, condition: Value) -> Vec<String> {
    let body = json!({"name": "probe", "target_category": "01", "condition": condition});
    let created = ok_json(app.post("/api/v1/schemes/INDUSTRY/rules", &body).await, StatusCode::CREATED).await;
    let dry = ok_json(
        app.post("/api/v1/schemes/INDUSTRY/classification-runs", &json!({"dry_run": true})).await,
        StatusCode::CREATED,
    )
    .await;
    let changes = ok_json(
        app.get(&format!("/api/v1/schemes/INDUSTRY/classification-runs/{}/changes", dry["id"])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        app.delete(&format!("/api/v1/schemes/INDUSTRY/rules/{}", created["id"])).await.status(),
        StatusCode::NO_CONTENT
    );
    let mut codes: Vec<String> =
        changes["items"].as_array().unwrap().iter().map(|c| c["customer"].as_str().unwrap().to_string()).collect();
    codes.sort();
    codes
}

/// INDUSTRY: 01 金融业 (where the keyword rules put customers), 02 制造业, both
/// with a text attribute `note`.
async fn industries(app: &TestApp) {
    app.create_scheme("INDUSTRY", "2").await;
    for (code, name) in [("01", "金融业"), ("02", "制造业")] {
        app.create_category("INDUSTRY", code, name).await;
        let note = json!({"key": "note", "type": "string"});
        ok_json(
            app.post(&format!("/api/v1/schemes/INDUSTRY/categories/{code}/attributes"), &note).await,
            StatusCode::CREATED,
        )
        .await;
    }
}

async fn text_matches_classify_by_keywords(app: TestApp) {
    industries(&app).await;
    let customers = [
        json!({"code": "F1", "name": "中国工商银行北京分行", "tax_id": "91110000100003962Y"}),
        json!({"code": "F2", "name": "Bank of Ningbo 宁波", "short_name": "BoNB"}),
        json!({"code": "f3", "name": "100%_Pure 有限公司", "categories": {"INDUSTRY": "02"}, "attributes": {"note": "Gold VIP since 2020"}}),
        json!({"code": "X1", "name": "华为技术有限公司", "short_name": "华为", "categories": {"INDUSTRY": "02"}, "attributes": {"note": "银行 partner"}}),
        json!({"code": "X2", "name": "100 Pure Water"}),
    ];
    for customer in customers {
        ok_json(app.post("/api/v1/customers", &customer).await, StatusCode::CREATED).await;
    }
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"field": "name", "op": "contains", "value": "银行"}), vec!["F1"]),
        // Latin letters match whatever their case, in the value and in the text.
        (json!({"field": "name", "op": "contains", "value": "BANK"}), vec!["F2"]),
        (json!({"field": "code", "op": "starts_with", "value": "F"}), vec!["F1", "F2", "f3"]),
        (json!({"field": "name", "op": "ends_with", "value": "有限公司"}), vec!["X1", "f3"]),
        (json!({"field": "name", "op": "starts_with", "value": "中国"}), vec!["F1"]),
        // `%` and `_` are themselves: "0%_p" is in f3's name only, although "100 Pure"
        // would match it as a pattern; "_" alone matches no name without one.
        (json!({"field": "name", "op": "contains", "value": "0%_p"}), vec!["f3"]),
        (json!({"field": "name", "op": "contains", "value": "_"}), vec!["f3"]),
        (json!({"field": "name", "op": "contains", "value": "%"}), vec!["f3"]),
        (json!({"field": "short_name", "op": "starts_with", "value": "bo"}), vec!["F2"]),
        (json!({"field": "tax_id", "op": "ends_with", "value": "962y"}), vec!["F1"]),
        (json!({"field": "attr.note", "op": "contains", "value": "vip"}), vec!["f3"]),
        // A missing text matches nothing, so `not` holds for it.
        (json!({"not": {"field": "short_name", "op": "contains", "value": "华"}}), vec!["F1", "F2", "X2", "f3"]),
        (
            json!({"any": [{"field": "name", "op": "contains", "value": "银行"}, {"field": "attr.note", "op": "starts_with", "value": "银行"}]}),
            vec!["F1", "X1"],
        ),
    ];
    for (condition, expected) in cases {
        assert_eq!(selected(&app, condition.clone()).await, expected, "{condition}");
    }

    // Applied, the keyword rule (名称含"银行" → 金融业) moves the bank, with the rule in its history.
    let body = json!({"name": "名称含银行", "target_category": "01", "condition": {"field": "name", "op": "contains", "value": "银行"}});
    let created = ok_json(app.post("/api/v1/schemes/INDUSTRY/rules", &body).await, StatusCode::CREATED).await;
    assert_eq!(created["condition"], body["condition"]);
    ok_json(app.post("/api/v1/schemes/INDUSTRY/classification-runs", &json!({})).await, StatusCode::CREATED).await;
    let bank = ok_json(app.get("/api/v1/customers/F1").await, StatusCode::OK).await;
    assert_eq!(bank["categories"]["INDUSTRY"], "01");
    let history = app.full_history("F1").await;
    let last = history.last().unwrap();
    assert_eq!((last["to"].clone(), last["rule_id"].clone()), (json!("01"), created["id"].clone()));
}

async fn text_matches_are_refused_where_they_do_not_apply(app: TestApp) {
    industries(&app).await;
    ok_json(
        app.post(
            "/api/v1/schemes/INDUSTRY/categories/01/attributes",
            &json!({"key": "level", "type": "enum", "options": ["金", "银"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let cases = [
        (json!({"field": "spend_12m", "op": "contains", "value": "1"}), "/condition/op"),
        (json!({"field": "category.INDUSTRY", "op": "starts_with", "value": "0"}), "/condition/op"),
        (json!({"field": "attr.level", "op": "contains", "value": "金"}), "/condition/op"),
        (json!({"field": "status", "op": "ends_with", "value": "ive"}), "/condition/op"),
        (json!({"field": "rfm", "op": "contains", "value": "5"}), "/condition/op"),
        (json!({"field": "name", "op": "contains", "value": ""}), "/condition/value"),
        (json!({"field": "name", "op": "contains", "value": 5}), "/condition/value"),
        (json!({"field": "name", "op": "contains", "value": "长".repeat(201)}), "/condition/value"),
        (json!({"field": "name", "op": "matches", "value": "银行"}), "/condition/op"),
    ];
    for (condition, pointer) in cases {
        let body = json!({"name": "r", "target_category": "01", "condition": condition});
        let refused = problem(
            app.post("/api/v1/schemes/INDUSTRY/rules", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_condition",
        )
        .await;
        assert_eq!(pointers(&refused), [pointer], "{condition}");
    }
    let listed = ok_json(app.get("/api/v1/schemes/INDUSTRY/rules").await, StatusCode::OK).await;
    assert_eq!(listed["items"], json!([]));
}
