use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, TestApp};

both_backends!(
    definitions_are_inherited_through_three_levels,
    definitions_check_their_own_parts,
    a_key_may_not_repeat_along_a_path_or_across_schemes,
    values_are_checked_by_type_and_boundaries,
    defaults_fill_in_on_read,
    required_values_on_create_and_on_move,
    a_batch_move_needing_values_fails_as_a_whole,
    values_the_new_category_does_not_define_go_to_history,
    definition_changes_report_violations_and_force_gives_the_default,
    deleting_a_definition_with_values_needs_force,
    search_compares_by_type,
    search_ops_and_combinations,
);

fn attributes_path(scheme: &str, category: &str) -> String {
    format!("/api/v1/schemes/{scheme}/categories/{category}/attributes")
}

async fn define(app: &TestApp, scheme: &str, category: &str, definition: Value) -> Value {
    ok_json(app.post(&attributes_path(scheme, category), &definition).await, StatusCode::CREATED).await
}

/// REGION (2-2-2): 01 华北 ⊃ 0101 北京 ⊃ 010101 海淀, 010102 朝阳; 02 华南 ⊃ 0201 广州.
async fn regions(app: &TestApp) {
    app.create_scheme("REGION", "2-2-2").await;
    for (code, name) in [
        ("01", "华北地区客户"),
        ("0101", "北京"),
        ("010101", "海淀"),
        ("010102", "朝阳"),
        ("02", "华南地区客户"),
        ("0201", "广州"),
    ] {
        app.create_category("REGION", code, name).await;
    }
}

/// TIER (2): 01 VIP with `discount_rate` (0–0.5, default 0.1) and a required
/// `account_manager`; 02 普通 with its own `discount_rate` (0–0.1); 03 潜在 with none.
async fn tiers(app: &TestApp) {
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    app.create_category("TIER", "03", "潜在客户").await;
    define(
        app,
        "TIER",
        "01",
        json!({"key": "discount_rate", "label": "折扣率", "type": "decimal", "min": 0, "max": 0.5, "default": 0.1}),
    )
    .await;
    define(
        app,
        "TIER",
        "01",
        json!({"key": "account_manager", "label": "客户经理", "type": "string", "required": true}),
    )
    .await;
    define(app, "TIER", "02", json!({"key": "discount_rate", "type": "decimal", "min": 0, "max": 0.1, "default": 0}))
        .await;
}

async fn create(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/api/v1/customers", &body).await
}

async fn put_values(app: &TestApp, customer: &str, values: Value) -> reqwest::Response {
    app.admin(Method::PUT, &format!("/api/v1/customers/{customer}/attributes")).json(&values).send().await.unwrap()
}

async fn move_to(app: &TestApp, customer: &str, scheme: &str, body: Value) -> reqwest::Response {
    app.admin(Method::PUT, &format!("/api/v1/customers/{customer}/categories/{scheme}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn customer(app: &TestApp, code: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/customers/{code}")).await, StatusCode::OK).await
}

fn fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect();
    fields.sort();
    fields
}

async fn definitions_are_inherited_through_three_levels(app: TestApp) {
    regions(&app).await;
    define(
        &app,
        "REGION",
        "01",
        json!({"key": "credit_limit", "label": "信用额度", "type": "integer", "min": 0, "default": 100000}),
    )
    .await;
    define(&app, "REGION", "0101", json!({"key": "since", "type": "date"})).await;
    let level =
        define(&app, "REGION", "010101", json!({"key": "level", "type": "enum", "options": ["金", "银", "铜"]})).await;
    assert_eq!(level["defined_on"], "010101");
    assert_eq!(level["options"], json!(["金", "银", "铜"]));

    let own = ok_json(app.get(&attributes_path("REGION", "010101")).await, StatusCode::OK).await;
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    let effective =
        ok_json(app.get(&format!("{}?effective=true", attributes_path("REGION", "010101"))).await, StatusCode::OK)
            .await;
    let listed: Vec<(Value, Value)> =
        effective["items"].as_array().unwrap().iter().map(|d| (d["key"].clone(), d["defined_on"].clone())).collect();
    assert_eq!(
        listed,
        [(json!("credit_limit"), json!("01")), (json!("since"), json!("0101")), (json!("level"), json!("010101"))]
    );
    let sibling =
        ok_json(app.get(&format!("{}?effective=true", attributes_path("REGION", "010102"))).await, StatusCode::OK)
            .await;
    assert_eq!(sibling["items"].as_array().unwrap().len(), 2, "a sibling inherits from the ancestors only");
    let other_root =
        ok_json(app.get(&format!("{}?effective=true", attributes_path("REGION", "0201"))).await, StatusCode::OK).await;
    assert_eq!(other_root["items"], json!([]));

    let created = ok_json(
        create(&app, json!({"code": "C1", "name": "海淀客户", "categories": {"REGION": "010101"}, "attributes": {"level": "金", "since": "2020-05-01"}})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["attributes"], json!({"credit_limit": 100000, "level": "金", "since": "2020-05-01"}));
    assert_eq!(created["attributes_from_default"], json!(["credit_limit"]));
    let got = ok_json(app.get(&format!("{}/level", attributes_path("REGION", "010101"))).await, StatusCode::OK).await;
    assert_eq!(got["type"], "enum");
    problem(
        app.get(&format!("{}/level", attributes_path("REGION", "0101"))).await,
        StatusCode::NOT_FOUND,
        "attribute_not_found",
    )
    .await;
}

async fn definitions_check_their_own_parts(app: TestApp) {
    regions(&app).await;
    let path = attributes_path("REGION", "01");
    let bad_default = problem(
        app.post(&path, &json!({"key": "rate", "type": "decimal", "max": 0.5, "default": 0.6})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    assert_eq!(fields(&bad_default), ["default"]);
    let no_options = problem(
        app.post(&path, &json!({"key": "level", "type": "enum"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    assert_eq!(fields(&no_options), ["options"]);
    problem(
        app.post(&path, &json!({"key": "level", "type": "enum", "options": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    let repeated = problem(
        app.post(&path, &json!({"key": "level", "type": "enum", "options": ["金", "银", "金"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    assert_eq!(fields(&repeated), ["options[2]"]);
    let not_enum = problem(
        app.post(&path, &json!({"key": "name2", "type": "string", "options": ["a"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    assert_eq!(fields(&not_enum), ["options"]);
    let inverted = problem(
        app.post(&path, &json!({"key": "since", "type": "date", "min": "2021-01-01", "max": "2020-01-01"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    assert_eq!(fields(&inverted), ["max"]);
    problem(
        app.post(&path, &json!({"key": "flag", "type": "boolean", "min": 0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attribute_definition",
    )
    .await;
    let bad_key = problem(
        app.post(&path, &json!({"key": "Bad-Key", "type": "string"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&bad_key), ["key"]);
    problem(
        app.post(&path, &json!({"key": "x", "type": "money"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    problem(
        app.post(&attributes_path("REGION", "09"), &json!({"key": "x", "type": "string"})).await,
        StatusCode::NOT_FOUND,
        "category_not_found",
    )
    .await;
    let listed = ok_json(app.get(&path).await, StatusCode::OK).await;
    assert_eq!(listed["items"], json!([]), "nothing refused was stored");
}

async fn a_key_may_not_repeat_along_a_path_or_across_schemes(app: TestApp) {
    regions(&app).await;
    define(&app, "REGION", "0101", json!({"key": "credit_limit", "type": "integer"})).await;
    for (category, why) in [("01", "an ancestor"), ("010101", "a descendant"), ("0101", "the same category")] {
        let clash = problem(
            app.post(&attributes_path("REGION", category), &json!({"key": "credit_limit", "type": "integer"})).await,
            StatusCode::CONFLICT,
            "duplicate_attribute",
        )
        .await;
        assert!(clash["detail"].as_str().unwrap().contains("0101"), "{why}: {clash}");
    }
    let sibling = define(&app, "REGION", "0201", json!({"key": "credit_limit", "type": "integer", "max": 5000})).await;
    assert_eq!(sibling["defined_on"], "0201", "another subtree may define the key again");
    problem(
        app.post(&attributes_path("REGION", "02"), &json!({"key": "credit_limit", "type": "integer"})).await,
        StatusCode::CONFLICT,
        "duplicate_attribute",
    )
    .await;
    app.create_category("REGION", "03", "西北").await;
    problem(
        app.post(&attributes_path("REGION", "03"), &json!({"key": "credit_limit", "type": "decimal"})).await,
        StatusCode::CONFLICT,
        "attribute_type_conflict",
    )
    .await;
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    let other_scheme = problem(
        app.post(&attributes_path("TIER", "01"), &json!({"key": "credit_limit", "type": "integer"})).await,
        StatusCode::CONFLICT,
        "duplicate_attribute",
    )
    .await;
    assert!(other_scheme["detail"].as_str().unwrap().contains("REGION"));
}

async fn values_are_checked_by_type_and_boundaries(app: TestApp) {
    regions(&app).await;
    define(&app, "REGION", "01", json!({"key": "credit_limit", "type": "integer", "min": 0, "max": 1000000})).await;
    define(&app, "REGION", "01", json!({"key": "rate", "type": "decimal", "min": 0, "max": 0.5})).await;
    define(&app, "REGION", "01", json!({"key": "since", "type": "date", "min": "2000-01-01", "max": "2030-12-31"}))
        .await;
    define(&app, "REGION", "01", json!({"key": "contract", "type": "boolean"})).await;
    define(&app, "REGION", "01", json!({"key": "manager", "type": "string", "min": 2, "max": 4})).await;
    define(&app, "REGION", "01", json!({"key": "level", "type": "enum", "options": ["金", "银", "铜"]})).await;
    ok_json(
        create(&app, json!({"code": "C1", "name": "客户", "categories": {"REGION": "010101"}})).await,
        StatusCode::CREATED,
    )
    .await;

    let edge = json!({"credit_limit": 1000000, "rate": 0.5, "since": "2000-01-01", "contract": false, "manager": "王芳", "level": "铜"});
    let stored = ok_json(put_values(&app, "C1", edge.clone()).await, StatusCode::OK).await;
    assert_eq!(stored["attributes"], edge);
    assert_eq!(stored["attributes_from_default"], json!([]));
    let low = json!({"credit_limit": 0, "rate": 0, "since": "2030-12-31", "contract": true, "manager": "欧阳娜娜", "level": "金"});
    assert_eq!(ok_json(put_values(&app, "C1", low.clone()).await, StatusCode::OK).await["attributes"], low);

    let wrong = json!({
        "credit_limit": 1000001, "rate": 0.51, "since": "1999-12-31", "contract": "yes", "manager": "王", "level": "钻石", "unknown_key": 1
    });
    let refused =
        problem(put_values(&app, "C1", wrong).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_attributes").await;
    assert_eq!(
        fields(&refused),
        [
            "attributes.contract",
            "attributes.credit_limit",
            "attributes.level",
            "attributes.manager",
            "attributes.rate",
            "attributes.since",
            "attributes.unknown_key"
        ]
    );
    let types = json!({"credit_limit": 10.5, "rate": "0.2", "since": "2020-02-30", "manager": 12});
    let refused =
        problem(put_values(&app, "C1", types).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_attributes").await;
    assert_eq!(
        fields(&refused),
        ["attributes.credit_limit", "attributes.manager", "attributes.rate", "attributes.since"]
    );
    assert_eq!(customer(&app, "C1").await["attributes"], low, "nothing of a refused change was stored");

    let patched = ok_json(
        app.patch("/api/v1/customers/C1", &json!({"attributes": {"rate": 0.25, "manager": null}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["attributes"]["rate"], 0.25);
    assert!(patched["attributes"].get("manager").is_none(), "null removes a value");
    assert_eq!(patched["attributes"]["level"], "金", "a patch keeps what it does not name");
    let replaced = ok_json(put_values(&app, "C1", json!({"level": "银"})).await, StatusCode::OK).await;
    assert_eq!(replaced["attributes"], json!({"level": "银"}), "PUT replaces every value");
}

async fn defaults_fill_in_on_read(app: TestApp) {
    tiers(&app).await;
    let vip = ok_json(create(&app, json!({"code": "C1", "name": "客户", "categories": {"TIER": "01"}, "attributes": {"account_manager": "王芳"}})).await, StatusCode::CREATED).await;
    assert_eq!(vip["attributes"], json!({"account_manager": "王芳", "discount_rate": 0.1}));
    assert_eq!(vip["attributes_from_default"], json!(["discount_rate"]));
    let set =
        ok_json(put_values(&app, "C1", json!({"account_manager": "王芳", "discount_rate": 0.1})).await, StatusCode::OK)
            .await;
    assert_eq!(set["attributes_from_default"], json!([]), "a value given equal to the default is a given value");
    let cleared = ok_json(
        app.patch("/api/v1/customers/C1", &json!({"attributes": {"discount_rate": null}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cleared["attributes"]["discount_rate"], 0.1);
    assert_eq!(cleared["attributes_from_default"], json!(["discount_rate"]));

    let listed = ok_json(app.get("/api/v1/customers?category=TIER:01").await, StatusCode::OK).await;
    assert_eq!(listed["items"][0]["attributes"], json!({"account_manager": "王芳", "discount_rate": 0.1}));

    let patched = ok_json(
        app.patch(&format!("{}/discount_rate", attributes_path("TIER", "01")), &json!({"default": 0.15})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["default"], 0.15);
    let after = customer(&app, "C1").await;
    assert_eq!(after["attributes"]["discount_rate"], 0.15, "defaulted values follow the new default");
    assert!(after["version"].as_i64() > cleared["version"].as_i64());
}

async fn required_values_on_create_and_on_move(app: TestApp) {
    tiers(&app).await;
    let missing = problem(
        create(&app, json!({"code": "C1", "name": "客户", "categories": {"TIER": "01"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attribute_required",
    )
    .await;
    assert_eq!(fields(&missing), ["attributes.account_manager"]);
    problem(app.get("/api/v1/customers/C1").await, StatusCode::NOT_FOUND, "customer_not_found").await;

    ok_json(
        create(&app, json!({"code": "C1", "name": "客户", "categories": {"TIER": "03"}})).await,
        StatusCode::CREATED,
    )
    .await;
    let refused = problem(
        move_to(&app, "C1", "TIER", json!({"category": "01", "reason": "升级"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attribute_required",
    )
    .await;
    assert_eq!(fields(&refused), ["attributes.account_manager"]);
    let unchanged = customer(&app, "C1").await;
    assert_eq!(unchanged["categories"]["TIER"], "03");
    assert_eq!(app.full_history("C1").await.len(), 1, "a refused move writes no history");

    let bad = problem(
        move_to(
            &app,
            "C1",
            "TIER",
            json!({"category": "01", "attributes": {"account_manager": "王芳", "discount_rate": 0.9}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attributes",
    )
    .await;
    assert_eq!(fields(&bad), ["attributes.discount_rate"]);
    let moved = ok_json(
        move_to(&app, "C1", "TIER", json!({"category": "01", "attributes": {"account_manager": "王芳"}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["categories"]["TIER"], "01");
    assert_eq!(moved["attributes"], json!({"account_manager": "王芳", "discount_rate": 0.1}));

    let removed = problem(
        app.patch("/api/v1/customers/C1", &json!({"attributes": {"account_manager": null}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attribute_required",
    )
    .await;
    assert_eq!(fields(&removed), ["attributes.account_manager"]);
}

async fn a_batch_move_needing_values_fails_as_a_whole(app: TestApp) {
    tiers(&app).await;
    for code in ["C1", "C2", "C3"] {
        ok_json(
            create(&app, json!({"code": code, "name": "客户", "categories": {"TIER": "03"}})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    let batch = json!({"scheme": "TIER", "category": "01", "customers": ["C1", "C2", "C3"], "reason": "年度升级"});
    let refused = problem(
        app.post("/api/v1/assignments/batch", &batch).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attribute_required",
    )
    .await;
    assert_eq!(
        fields(&refused),
        ["C1.attributes.account_manager", "C2.attributes.account_manager", "C3.attributes.account_manager"]
    );
    for code in ["C1", "C2", "C3"] {
        assert_eq!(customer(&app, code).await["categories"]["TIER"], "03");
    }

    let to_regular = json!({"scheme": "TIER", "category": "02", "customers": ["C1", "C2", "C3"]});
    ok_json(app.post("/api/v1/assignments/batch", &to_regular).await, StatusCode::OK).await;
    let regular = customer(&app, "C2").await;
    assert_eq!(regular["attributes"], json!({"discount_rate": 0}));
    assert_eq!(regular["attributes_from_default"], json!(["discount_rate"]));
}

async fn values_the_new_category_does_not_define_go_to_history(app: TestApp) {
    tiers(&app).await;
    ok_json(
        create(&app, json!({"code": "C1", "name": "客户", "categories": {"TIER": "01"}, "attributes": {"account_manager": "王芳", "discount_rate": 0.3}})).await,
        StatusCode::CREATED,
    )
    .await;
    let refused = problem(
        move_to(&app, "C1", "TIER", json!({"category": "02"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attributes",
    )
    .await;
    assert_eq!(fields(&refused), ["attributes.discount_rate"], "0.3 is above the regular tier's maximum");
    let moved = ok_json(
        move_to(&app, "C1", "TIER", json!({"category": "02", "attributes": {"discount_rate": 0.05}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["attributes"], json!({"discount_rate": 0.05}), "the account manager is no longer shown");

    let history = app.full_history("C1").await;
    let last = history.last().unwrap();
    assert_eq!((last["from"].clone(), last["to"].clone()), (json!("01"), json!("02")));
    assert_eq!(last["dropped_attributes"], json!({"account_manager": "王芳"}));

    let left = ok_json(move_to(&app, "C1", "TIER", json!({"category": "03"})).await, StatusCode::OK).await;
    assert_eq!(left["attributes"], json!({}));
    assert_eq!(app.full_history("C1").await.last().unwrap()["dropped_attributes"], json!({"discount_rate": 0.05}));
    let found = ok_json(app.get("/api/v1/customers?attr=discount_rate:gte:0").await, StatusCode::OK).await;
    assert_eq!(found["items"], json!([]), "dropped values are not searchable");
}

async fn definition_changes_report_violations_and_force_gives_the_default(app: TestApp) {
    regions(&app).await;
    let credit = define(&app, "REGION", "01", json!({"key": "credit_limit", "type": "integer", "min": 0})).await;
    for (code, limit) in [("C1", Some(500)), ("C2", Some(5000)), ("C3", None), ("C4", None)] {
        let attributes = limit.map_or(json!({}), |l| json!({"credit_limit": l}));
        ok_json(
            create(
                &app,
                json!({"code": code, "name": "客户", "categories": {"REGION": "010101"}, "attributes": attributes}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let path = format!("{}/credit_limit", attributes_path("REGION", "01"));

    let required =
        problem(app.patch(&path, &json!({"required": true})).await, StatusCode::CONFLICT, "attribute_violations").await;
    assert_eq!(required["violations"], 2, "C3 and C4 have no value");
    let capped =
        problem(app.patch(&path, &json!({"max": 1000})).await, StatusCode::CONFLICT, "attribute_violations").await;
    assert_eq!(capped["violations"], 1, "C2's 5000 is above the new maximum");
    problem(
        app.patch(&format!("{path}?force=true"), &json!({"required": true})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "force_needs_default",
    )
    .await;
    let unchanged = ok_json(app.get(&path).await, StatusCode::OK).await;
    assert_eq!(
        (unchanged["required"].clone(), unchanged["version"].clone()),
        (json!(false), credit["version"].clone())
    );

    let forced = ok_json(
        app.patch(&format!("{path}?force=true"), &json!({"required": true, "max": 1000, "default": 100})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (forced["required"].clone(), forced["max"].clone(), forced["default"].clone()),
        (json!(true), json!(1000), json!(100))
    );
    let values: Vec<(Value, Value)> = {
        let mut values = Vec::new();
        for code in ["C1", "C2", "C3", "C4"] {
            let c = customer(&app, code).await;
            values.push((c["attributes"]["credit_limit"].clone(), c["attributes_from_default"].clone()));
        }
        values
    };
    assert_eq!(
        values,
        [
            (json!(500), json!([])),
            (json!(100), json!(["credit_limit"])),
            (json!(100), json!(["credit_limit"])),
            (json!(100), json!(["credit_limit"]))
        ]
    );

    let new_required = problem(
        app.post(&attributes_path("REGION", "0101"), &json!({"key": "since", "type": "date", "required": true})).await,
        StatusCode::CONFLICT,
        "attribute_violations",
    )
    .await;
    assert_eq!(new_required["violations"], 4);
    let with_default = define(
        &app,
        "REGION",
        "0101",
        json!({"key": "since", "type": "date", "required": true, "default": "2020-01-01"}),
    )
    .await;
    assert_eq!(with_default["default"], "2020-01-01");
    assert_eq!(customer(&app, "C4").await["attributes"]["since"], "2020-01-01");

    let stale = app
        .admin(Method::PATCH, &path)
        .header("If-Match", "\"1\"")
        .json(&json!({"label": "额度"}))
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED, "version_mismatch").await;
}

async fn deleting_a_definition_with_values_needs_force(app: TestApp) {
    tiers(&app).await;
    ok_json(
        create(
            &app,
            json!({"code": "C1", "name": "客户", "categories": {"TIER": "02"}, "attributes": {"discount_rate": 0.05}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    ok_json(
        create(&app, json!({"code": "C2", "name": "客户", "categories": {"TIER": "02"}})).await,
        StatusCode::CREATED,
    )
    .await;
    let path = format!("{}/discount_rate", attributes_path("TIER", "02"));
    let in_use = problem(app.delete(&path).await, StatusCode::CONFLICT, "attribute_in_use").await;
    assert_eq!(in_use["violations"], 1, "only C1's value was given; C2 has the default");
    assert_eq!(
        app.admin(Method::DELETE, &format!("{path}?force=true")).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(customer(&app, "C1").await["attributes"], json!({}));
    problem(app.get(&path).await, StatusCode::NOT_FOUND, "attribute_not_found").await;
}

async fn codes(app: &TestApp, query: &str) -> Vec<String> {
    let page = ok_json(app.get(&format!("/api/v1/customers?{query}")).await, StatusCode::OK).await;
    page["items"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect()
}

async fn search_compares_by_type(app: TestApp) {
    regions(&app).await;
    define(&app, "REGION", "01", json!({"key": "employees", "type": "integer"})).await;
    define(&app, "REGION", "01", json!({"key": "since", "type": "date"})).await;
    define(&app, "REGION", "01", json!({"key": "rate", "type": "decimal"})).await;
    for (code, employees, since, rate) in
        [("C1", 9, "2019-12-31", 0.05), ("C2", 10, "2020-01-01", 0.15), ("C3", 100, "2100-01-01", 0.2)]
    {
        let attributes = json!({"employees": employees, "since": since, "rate": rate});
        ok_json(
            create(
                &app,
                json!({"code": code, "name": "客户", "categories": {"REGION": "010101"}, "attributes": attributes}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
    }
    assert_eq!(codes(&app, "attr=employees:gt:9").await, ["C2", "C3"], "10 > 9 as numbers, not as text");
    assert_eq!(codes(&app, "attr=employees:lt:10").await, ["C1"]);
    assert_eq!(codes(&app, "attr=since:gte:2020-01-01").await, ["C2", "C3"]);
    assert_eq!(codes(&app, "attr=since:lt:2020-01-01").await, ["C1"]);
    assert_eq!(codes(&app, "attr=rate:gte:0.15").await, ["C2", "C3"]);
    assert_eq!(codes(&app, "attr=rate:gte:0.15&sort=-name").await.len(), 2);

    let unknown = problem(
        app.get("/api/v1/customers?attr=nope:eq:1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attribute_not_found",
    )
    .await;
    assert_eq!(fields(&unknown), ["attr"]);
    problem(
        app.get("/api/v1/customers?attr=employees:gt:many").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_filter",
    )
    .await;
    problem(
        app.get("/api/v1/customers?attr=since:gt:2020-13-01").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_filter",
    )
    .await;
    problem(
        app.get("/api/v1/customers?attr=employees:like:1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_filter",
    )
    .await;
    problem(
        app.get("/api/v1/customers?attr=employees:between:1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem(app.get("/api/v1/customers?attr=employees").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
}

async fn search_ops_and_combinations(app: TestApp) {
    regions(&app).await;
    tiers(&app).await;
    define(&app, "REGION", "01", json!({"key": "level", "type": "enum", "options": ["金", "银", "铜"]})).await;
    define(&app, "REGION", "01", json!({"key": "contract", "type": "boolean", "default": false})).await;
    define(&app, "REGION", "01", json!({"key": "note_text", "type": "string"})).await;
    let rows = [
        (
            "C1",
            "010101",
            "01",
            json!({"level": "金", "contract": true, "note_text": "Key account 50%", "account_manager": "王芳"}),
        ),
        ("C2", "010102", "02", json!({"level": "银", "note_text": "new KEY customer"})),
        ("C3", "010101", "03", json!({"level": "铜", "contract": true})),
        ("C4", "0201", "01", json!({"account_manager": "李伟", "discount_rate": 0.3})),
    ];
    for (code, region, tier, attributes) in rows {
        ok_json(
            create(&app, json!({"code": code, "name": "客户", "categories": {"REGION": region, "TIER": tier}, "attributes": attributes})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    assert_eq!(codes(&app, "attr=level:eq:%E9%87%91").await, ["C1"]);
    assert_eq!(codes(&app, "attr=level:ne:%E9%87%91").await, ["C2", "C3"], "ne: a different value, not a missing one");
    assert_eq!(codes(&app, "attr=level:in:%E9%87%91,%E9%93%9C").await, ["C1", "C3"]);
    assert_eq!(codes(&app, "attr=contract:eq:false").await, ["C2"], "the default is a value search sees");
    assert_eq!(
        codes(&app, "attr=note_text:like:key").await,
        ["C1", "C2"],
        "like is a substring, ASCII case-insensitive"
    );
    assert_eq!(codes(&app, "attr=note_text:like:new*").await, ["C2"], "* anchors and matches any run");
    assert_eq!(codes(&app, "attr=note_text:like:50%25").await, ["C1"], "% is literal");
    assert_eq!(codes(&app, "attr=discount_rate:lte:0.1").await, ["C1", "C2"]);
    assert_eq!(codes(&app, "attr=discount_rate:gt:0.1").await, ["C4"]);
    assert_eq!(codes(&app, "attr=contract:eq:true&category=TIER:01").await, ["C1"]);
    assert_eq!(codes(&app, "category=REGION:01&category=TIER:01&attr=level:eq:%E9%87%91").await, ["C1"]);
    assert_eq!(
        codes(&app, "category=REGION:0101&attr=contract:eq:true&attr=level:in:%E9%87%91,%E9%93%9C&sort=-code").await,
        ["C3", "C1"]
    );
    assert_eq!(codes(&app, "attr=account_manager:eq:%E6%9D%8E%E4%BC%9F&q=C4").await, ["C4"]);
    assert_eq!(codes(&app, "attr=discount_rate:gte:0&limit=1").await.len(), 1);
}
