//! Analysis and reports (分类分析与报表): distributions, cross-tabs, transitions
//! (升级/降级), as of a past day, and as CSV and .xlsx.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{execute_directly, insert_customers_directly, ok_json, problem, with_connection, TestApp};

both_backends!(
    distribution_counts_filters_and_rolls_up,
    distribution_measures_are_exact_to_the_cent,
    distribution_as_of_rebuilds_from_history,
    as_of_reports_read_a_large_scheme_page_by_page,
    measures_are_exact_wherever_the_sales_totals_stand,
    crosstab_has_totals_and_an_unclassified_row_and_column,
    transitions_count_net_and_every_move,
    journeys_folded_in_the_service_and_grouped_in_the_database_agree,
    transition_customers_list_one_cell_page_by_page,
    reports_as_csv_and_xlsx,
    counts_stay_exact_under_concurrent_reassignments,
    bad_report_requests_name_the_field,
);

/// TIER (ordered: 01 VIP 3, 02 普通 2, 03 潜在 1) and REGION (2-2: 01 华东 with 0101
/// 上海 and 0102 江苏, 02 华北 with 0201 北京), and six customers:
///
/// | customer | TIER | REGION | status |
/// |---|---|---|---|
/// | C1 | 01 | 0101 | active |
/// | C2 | 01 | 0102 | active |
/// | C3 | 02 | 0101 | active |
/// | C4 | 02 | 0201 | active |
/// | C5 | 03 | 0201 | active |
/// | C6 | — | 0101 | inactive |
async fn known_customers(app: &TestApp) {
    ok_json(
        app.post("/api/v1/schemes", &json!({"code": "TIER", "name": "客户等级", "code_rule": "2", "ordered": true}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    for (code, name, rank) in [("01", "VIP客户", 3), ("02", "普通客户", 2), ("03", "潜在客户", 1)] {
        ok_json(
            app.post("/api/v1/schemes/TIER/categories", &json!({"code": code, "name": name, "rank": rank})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    app.create_scheme("REGION", "2-2").await;
    for (code, name) in [("01", "华东"), ("0101", "上海"), ("0102", "江苏"), ("02", "华北"), ("0201", "北京")]
    {
        app.create_category("REGION", code, name).await;
    }
    for (code, tier, region) in
        [("C1", "01", "0101"), ("C2", "01", "0102"), ("C3", "02", "0101"), ("C4", "02", "0201"), ("C5", "03", "0201")]
    {
        app.create_customer(code, json!({"TIER": tier, "REGION": region})).await;
    }
    let c6 = json!({"code": "C6", "name": "C6 有限公司", "status": "inactive", "categories": {"REGION": "0101"}});
    ok_json(app.post("/api/v1/customers", &c6).await, StatusCode::CREATED).await;
}

/// `(code, customers, subtree_customers, share)` of each row.
fn counts(report: &Value) -> Vec<(Value, i64, i64, String)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["code"].clone(),
                row["customers"].as_i64().unwrap(),
                row["subtree_customers"].as_i64().unwrap(),
                row["share"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row(code: Value, customers: i64, subtree: i64, share: &str) -> (Value, i64, i64, String) {
    (code, customers, subtree, share.to_string())
}

async fn report(app: &TestApp, path: &str) -> Value {
    ok_json(app.get(path).await, StatusCode::OK).await
}

async fn distribution_counts_filters_and_rolls_up(app: TestApp) {
    known_customers(&app).await;
    let tier = report(&app, "/api/v1/reports/distribution?scheme=TIER").await;
    assert_eq!(tier["population"], 6);
    assert_eq!(
        counts(&tier),
        [
            row(json!("01"), 2, 2, "0.3333"),
            row(json!("02"), 2, 2, "0.3333"),
            row(json!("03"), 1, 1, "0.1667"),
            row(json!(null), 1, 1, "0.1667")
        ]
    );
    assert_eq!(
        (tier["rows"][0]["name"].clone(), tier["rows"][0]["rank"].clone(), tier["rows"][0]["depth"].clone()),
        (json!("VIP客户"), json!(3), json!(1))
    );
    assert_eq!(tier["rows"][3]["name"], "未分类");
    assert_eq!(tier["total"]["customers"], 6);

    // Filters narrow the population: 华东 (subtree), then only its active customers.
    let east = report(&app, "/api/v1/reports/distribution?scheme=TIER&category=REGION:01").await;
    assert_eq!(east["population"], 4);
    assert_eq!(
        counts(&east),
        [
            row(json!("01"), 2, 2, "0.5000"),
            row(json!("02"), 1, 1, "0.2500"),
            row(json!("03"), 0, 0, "0.0000"),
            row(json!(null), 1, 1, "0.2500")
        ]
    );
    let active_east = report(&app, "/api/v1/reports/distribution?scheme=TIER&category=REGION:01&status=active").await;
    assert_eq!(active_east["population"], 3);
    assert_eq!(active_east["rows"][3]["customers"], 0);
    let found = report(&app, "/api/v1/reports/distribution?scheme=TIER&q=c5").await;
    assert_eq!(counts(&found)[2], row(json!("03"), 1, 1, "1.0000"));
    let without_tier = report(&app, "/api/v1/reports/distribution?scheme=REGION&unclassified=TIER").await;
    assert_eq!(
        (
            without_tier["population"].clone(),
            without_tier["rows"][1]["code"].clone(),
            without_tier["rows"][1]["customers"].clone()
        ),
        (json!(1), json!("0101"), json!(1))
    );

    // The tree in pre-order; depth 1 rolls 上海 and 江苏 into 华东.
    let region = report(&app, "/api/v1/reports/distribution?scheme=REGION").await;
    assert_eq!(
        counts(&region),
        [
            row(json!("01"), 0, 4, "0.6667"),
            row(json!("0101"), 3, 3, "0.5000"),
            row(json!("0102"), 1, 1, "0.1667"),
            row(json!("02"), 0, 2, "0.3333"),
            row(json!("0201"), 2, 2, "0.3333"),
            row(json!(null), 0, 0, "0.0000"),
        ]
    );
    let rolled = report(&app, "/api/v1/reports/distribution?scheme=REGION&depth=1").await;
    assert_eq!(
        counts(&rolled),
        [row(json!("01"), 4, 4, "0.6667"), row(json!("02"), 2, 2, "0.3333"), row(json!(null), 0, 0, "0.0000")]
    );

    // The category tree shows the same counts.
    let tree = report(&app, "/api/v1/schemes/REGION/categories").await;
    let items = tree["items"].as_array().unwrap();
    let east_node = items.iter().find(|c| c["code"] == "01").unwrap();
    assert_eq!(
        (east_node["customer_count"].clone(), east_node["subtree_customer_count"].clone()),
        (json!(0), json!(4))
    );
}

fn sale(id: &str, customer: &str, amount: &str, days_ago: i64) -> Value {
    let at = (chrono::Utc::now() - chrono::Duration::days(days_ago)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({"external_id": id, "customer_code": customer, "amount": amount, "occurred_at": at})
}

async fn distribution_measures_are_exact_to_the_cent(app: TestApp) {
    known_customers(&app).await;
    let sales = json!([
        sale("S1", "C1", "1000.00", 10),
        sale("S2", "C1", "0.01", 20),
        sale("S3", "C2", "333.33", 30),
        sale("S4", "C3", "50.00", 400),
        sale("S5", "C3", "-10.00", 5),
        sale("S6", "C6", "7.00", 3),
    ]);
    ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
    let tier =
        report(&app, "/api/v1/reports/distribution?scheme=TIER&measures=spend_12m,orders_12m,lifetime_spend").await;
    assert_eq!(tier["measures"], json!(["spend_12m", "orders_12m", "lifetime_spend"]));
    let vip = &tier["rows"][0];
    assert_eq!(
        (
            vip["sum_spend_12m"].clone(),
            vip["avg_spend_12m"].clone(),
            vip["sum_orders_12m"].clone(),
            vip["avg_orders_12m"].clone(),
            vip["sum_lifetime_spend"].clone()
        ),
        (json!("1333.34"), json!("666.67"), json!(3), json!("1.50"), json!("1333.34"))
    );
    // 普通: C3's refund inside the 12 months, its sale outside them; C4 bought nothing.
    let ordinary = &tier["rows"][1];
    assert_eq!(
        (
            ordinary["sum_spend_12m"].clone(),
            ordinary["avg_spend_12m"].clone(),
            ordinary["sum_orders_12m"].clone(),
            ordinary["sum_lifetime_spend"].clone(),
            ordinary["avg_lifetime_spend"].clone()
        ),
        (json!("-10.00"), json!("-5.00"), json!(0), json!("40.00"), json!("20.00"))
    );
    // C6, without a tier, is the unclassified row.
    assert_eq!(
        (tier["rows"][3]["sum_spend_12m"].clone(), tier["rows"][3]["avg_spend_12m"].clone()),
        (json!("7.00"), json!("7.00"))
    );
    assert_eq!(
        (tier["total"]["sum_spend_12m"].clone(), tier["total"]["avg_spend_12m"].clone()),
        (json!("1330.34"), json!("221.72"))
    );
    // The same sums through a filter (the grouping query): 华东 is C1, C2, C3 and C6.
    let east = report(&app, "/api/v1/reports/distribution?scheme=TIER&category=REGION:01&measures=spend_12m").await;
    assert_eq!(
        (
            east["rows"][0]["sum_spend_12m"].clone(),
            east["rows"][1]["sum_spend_12m"].clone(),
            east["total"]["sum_spend_12m"].clone()
        ),
        (json!("1333.34"), json!("-10.00"), json!("1330.34"))
    );
    // Counts with measures agree with the counters.
    assert_eq!(counts(&tier), counts(&report(&app, "/api/v1/reports/distribution?scheme=TIER").await));
    let only_spend = report(&app, "/api/v1/reports/distribution?scheme=TIER&measures=spend_12m").await;
    assert!(only_spend["rows"][0].get("sum_orders_12m").is_none());
}

/// Reports sum measures from per-customer totals up to an anchor (moved to the start
/// of each day) plus the transactions since: the figures must not depend on where the
/// anchor stands, also for a day before it and for sales stored after it moved.
async fn measures_are_exact_wherever_the_sales_totals_stand(app: TestApp) {
    known_customers(&app).await;
    // The customers stand where they are since 2025, so that a month ago they were there.
    execute_directly(
        &app,
        &[
            "UPDATE customers SET created_at = '2025-01-01 09:00:00'",
            "UPDATE assignment_history SET at = '2025-01-01 10:00:00'",
        ],
    )
    .await;
    let sales = json!([
        sale("S1", "C1", "1000.00", 0),
        sale("S2", "C1", "0.01", 2),
        sale("S3", "C2", "333.33", 40),
        sale("S4", "C3", "50.00", 364),
        sale("S5", "C3", "-10.00", 367),
        sale("S6", "C4", "7.00", 800),
    ]);
    ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
    let month_ago = chrono::Utc::now().date_naive() - chrono::Duration::days(30);
    let paths = [
        "/api/v1/reports/distribution?scheme=TIER&measures=spend_12m,orders_12m,lifetime_spend".to_string(),
        format!(
            "/api/v1/reports/distribution?scheme=TIER&as_of={month_ago}&measures=spend_12m,orders_12m,lifetime_spend"
        ),
        "/api/v1/reports/crosstab?rows=REGION&cols=TIER&measures=spend_12m,orders_12m,lifetime_spend".to_string(),
    ];
    // A report of now says when it was made; the figures are what must agree.
    let figures = |mut report: Value| {
        report.as_object_mut().unwrap().remove("as_of");
        report
    };
    let mut expected = Vec::new();
    for path in &paths {
        expected.push(figures(report(&app, path).await));
    }
    // Today's sale and the one two days ago are in the 12 months; a month ago, neither was made.
    let vip = |report: &Value| {
        (
            report["rows"][0]["sum_spend_12m"].clone(),
            report["rows"][0]["sum_orders_12m"].clone(),
            report["rows"][0]["sum_lifetime_spend"].clone(),
        )
    };
    assert_eq!(vip(&expected[0]), (json!("1333.34"), json!(3), json!("1333.34")));
    assert_eq!(vip(&expected[1]), (json!("333.33"), json!(1), json!("333.33")));
    assert_eq!(
        (expected[0]["rows"][1]["sum_spend_12m"].clone(), expected[1]["rows"][1]["sum_spend_12m"].clone()),
        (json!("50.00"), json!("40.00"))
    );

    // Nothing summed, the anchor before any sale: every figure comes from the transactions.
    execute_directly(
        &app,
        &["DELETE FROM sales_totals", "UPDATE sales_totals_anchor SET anchored_at = '1970-01-01 00:00:00'"],
    )
    .await;
    for (path, expected) in paths.iter().zip(&expected) {
        assert_eq!(&figures(report(&app, path).await), expected, "{path} with the anchor before every sale");
    }
    // Moved to today, as the service does every day: the totals hold the past.
    let today = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap();
    let anchored = with_connection(&app, |conn| {
        assert!(custclass::store::archive::sales_totals::advance(conn).unwrap(), "the anchor was behind today");
        assert!(!custclass::store::archive::sales_totals::advance(conn).unwrap(), "a second move finds it in place");
        custclass::store::archive::sales_totals::anchor(conn).unwrap()
    })
    .await;
    assert_eq!(anchored, today);
    for (path, expected) in paths.iter().zip(&expected) {
        assert_eq!(&figures(report(&app, path).await), expected, "{path} with the anchor at today");
    }
    // Sales stored afterwards, before and after the anchor, count at once.
    ok_json(
        app.post("/api/v1/transactions", &json!([sale("S7", "C2", "0.99", 0), sale("S8", "C2", "2.00", 100)])).await,
        StatusCode::OK,
    )
    .await;
    let after = figures(report(&app, &paths[0]).await);
    assert_eq!(
        (after["rows"][0]["sum_spend_12m"].clone(), after["rows"][0]["sum_orders_12m"].clone()),
        (json!("1336.33"), json!(5))
    );
    execute_directly(
        &app,
        &["DELETE FROM sales_totals", "UPDATE sales_totals_anchor SET anchored_at = '1970-01-01 00:00:00'"],
    )
    .await;
    assert_eq!(figures(report(&app, &paths[0]).await), after, "the totals kept at ingestion match the transactions");
}

async fn distribution_as_of_rebuilds_from_history(app: TestApp) {
    known_customers(&app).await;
    // Everything so far happened on 2025-01-01.
    execute_directly(
        &app,
        &[
            "UPDATE customers SET created_at = '2025-01-01 09:00:00'",
            "UPDATE assignment_history SET at = '2025-01-01 10:00:00'",
        ],
    )
    .await;
    // Since then: C5 went up to VIP, C2 was deleted, C7 arrived as VIP.
    ok_json(app.assign("C5", "TIER", "01").await, StatusCode::OK).await;
    assert_eq!(
        app.admin(Method::DELETE, "/api/v1/customers/C2").send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    app.create_customer("C7", json!({"TIER": "01", "REGION": "0102"})).await;

    let now = report(&app, "/api/v1/reports/distribution?scheme=TIER").await;
    assert_eq!(now["population"], 6);
    assert_eq!(
        counts(&now),
        [
            row(json!("01"), 3, 3, "0.5000"),
            row(json!("02"), 2, 2, "0.3333"),
            row(json!("03"), 0, 0, "0.0000"),
            row(json!(null), 1, 1, "0.1667")
        ]
    );

    // On 2025-06-30 C2 was still there and in VIP, C5 in 潜在, C7 not yet a customer.
    let then = report(&app, "/api/v1/reports/distribution?scheme=TIER&as_of=2025-06-30").await;
    assert_eq!(then["as_of"], "2025-06-30T23:59:59.999999Z");
    assert_eq!(then["population"], 6);
    assert_eq!(
        counts(&then),
        [
            row(json!("01"), 2, 2, "0.3333"),
            row(json!("02"), 2, 2, "0.3333"),
            row(json!("03"), 1, 1, "0.1667"),
            row(json!(null), 1, 1, "0.1667")
        ]
    );
    // The same day through the grouping query (a filter as of that day), and in a cross-tab.
    let east_then = report(&app, "/api/v1/reports/distribution?scheme=TIER&as_of=2025-06-30&category=REGION:01").await;
    assert_eq!(
        counts(&east_then),
        [
            row(json!("01"), 2, 2, "0.5000"),
            row(json!("02"), 1, 1, "0.2500"),
            row(json!("03"), 0, 0, "0.0000"),
            row(json!(null), 1, 1, "0.2500")
        ]
    );
    // REGION × TIER that day: 华东 held C1 and C2 (VIP), C3 (普通) and C6 (no tier);
    // 华北 C4 (普通) and C5 (潜在). Now 华北's C5 is a VIP and C7 has joined 华东.
    let matrix = |row: &Value| {
        row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["customers"].as_i64().unwrap())
            .chain([row["total"]["customers"].as_i64().unwrap()])
            .collect::<Vec<_>>()
    };
    let table_then = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&as_of=2025-06-30").await;
    assert_eq!(table_then["population"], 6);
    let rows_then: Vec<Vec<i64>> = table_then["rows"].as_array().unwrap().iter().map(matrix).collect();
    assert_eq!(rows_then, [vec![2, 1, 0, 1, 4], vec![0, 1, 1, 0, 2], vec![0, 0, 0, 0, 0]]);
    assert_eq!(matrix(&table_then["totals"]), [2, 2, 1, 1, 6]);
    let table_now = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER").await;
    assert_eq!(
        (matrix(&table_now["rows"][1]), matrix(&table_now["totals"])),
        (vec![1, 1, 0, 0, 2], vec![3, 2, 0, 1, 6])
    );
    // Within 华东 (the grouping query), the same row.
    let east_table =
        report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&as_of=2025-06-30&category=REGION:01").await;
    assert_eq!(matrix(&east_table["rows"][0]), [2, 1, 0, 1, 4]);
    // Measures as of that day: C5's sale counts where C5 stood (潜在), C7's (created
    // since, its sale backdated) nowhere, and the sale after the day not at all.
    let at = |day: &str| format!("{day}T10:00:00Z");
    let sales = json!([
        {"external_id": "S0", "customer_code": "C1", "amount": "25.00", "occurred_at": at("2015-03-01")},
        {"external_id": "S1", "customer_code": "C5", "amount": "100.00", "occurred_at": at("2025-03-01")},
        {"external_id": "S2", "customer_code": "C1", "amount": "50.00", "occurred_at": at("2025-04-01")},
        {"external_id": "S3", "customer_code": "C7", "amount": "999.00", "occurred_at": at("2025-05-01")},
        {"external_id": "S4", "customer_code": "C5", "amount": "1.00", "occurred_at": at("2025-08-01")},
    ]);
    ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
    let with_measures =
        report(&app, "/api/v1/reports/distribution?scheme=TIER&as_of=2025-06-30&measures=lifetime_spend").await;
    assert_eq!(counts(&with_measures), counts(&then));
    let lifetime = |report: &Value| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["sum_lifetime_spend"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(lifetime(&with_measures), ["75.00", "0.00", "100.00", "0.00"]);
    assert_eq!(with_measures["total"]["sum_lifetime_spend"], "175.00");
    let east_measures = report(
        &app,
        "/api/v1/reports/distribution?scheme=TIER&as_of=2025-06-30&category=REGION:01&measures=lifetime_spend",
    )
    .await;
    assert_eq!(lifetime(&east_measures), ["75.00", "0.00", "0.00", "0.00"]);
    assert_eq!(
        lifetime(&report(&app, "/api/v1/reports/distribution?scheme=TIER&measures=lifetime_spend").await),
        ["1175.00", "0.00", "0.00", "0.00"]
    );
    // With the sales totals at today, that day is far back from them but farther from
    // the first sale: its measures are the totals turned back by the sales since, where
    // each customer stood then; the same figures.
    with_connection(&app, |conn| custclass::store::archive::sales_totals::advance(conn).unwrap()).await;
    assert_eq!(
        report(&app, "/api/v1/reports/distribution?scheme=TIER&as_of=2025-06-30&measures=lifetime_spend").await,
        with_measures
    );
    let today = chrono::Utc::now().date_naive();
    assert_eq!(
        counts(&report(&app, &format!("/api/v1/reports/distribution?scheme=TIER&as_of={today}")).await),
        counts(&now)
    );
    let before = report(&app, "/api/v1/reports/distribution?scheme=TIER&as_of=2024-12-31").await;
    assert_eq!(before["population"], 0);

    let tomorrow = today.succ_opt().unwrap();
    let future = problem(
        app.get(&format!("/api/v1/reports/distribution?scheme=TIER&as_of={tomorrow}")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(future["errors"][0]["field"], "as_of");
    let text = problem(
        app.get("/api/v1/reports/distribution?scheme=TIER&as_of=2025-06-30&q=C").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "filter_not_historical",
    )
    .await;
    assert_eq!(text["errors"][0]["field"], "q");
}

/// As of a day, the service reads where every customer stood in pages of 10,000
/// assignments of one category: a category with more than that must come out whole.
async fn as_of_reports_read_a_large_scheme_page_by_page(app: TestApp) {
    known_customers(&app).await;
    insert_customers_directly(&app, "P", 10_500).await;
    execute_directly(
        &app,
        &[
            "INSERT INTO customer_categories (customer_id, scheme_id, category_id, category_code, locked, assigned_at) \
             SELECT c.id, k.scheme_id, k.id, k.code, FALSE, c.created_at FROM customers c \
             JOIN categories k ON k.code = CASE WHEN c.id % 50 = 0 THEN '01' WHEN c.id % 50 = 1 THEN '03' ELSE '02' END \
             JOIN schemes s ON s.id = k.scheme_id AND s.code = 'TIER' WHERE c.code LIKE 'P%'",
        ],
    )
    .await;
    with_connection(&app, |conn| custclass::store::reporting::counts::recount(conn).unwrap()).await;
    let today = chrono::Utc::now().date_naive();
    let now = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER").await;
    let then = report(&app, &format!("/api/v1/reports/crosstab?rows=REGION&cols=TIER&as_of={today}")).await;
    assert_eq!(then["totals"], now["totals"]);
    assert_eq!(then["rows"], now["rows"]);
    let tiers: Vec<i64> =
        now["totals"]["cells"].as_array().unwrap().iter().map(|cell| cell["customers"].as_i64().unwrap()).collect();
    assert_eq!(tiers.iter().sum::<i64>(), 10_506);
    assert_eq!(tiers[3], 1, "only C6 has no tier");
}

async fn crosstab_has_totals_and_an_unclassified_row_and_column(app: TestApp) {
    known_customers(&app).await;
    let table = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER").await;
    let codes = |entries: &Value| entries.as_array().unwrap().iter().map(|e| e["code"].clone()).collect::<Vec<_>>();
    assert_eq!(codes(&table["columns"]), [json!("01"), json!("02"), json!("03"), json!(null)]);
    assert_eq!(codes(&table["rows"]), [json!("01"), json!("02"), json!(null)]);
    let matrix = |row: &Value| {
        row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["customers"].as_i64().unwrap())
            .chain([row["total"]["customers"].as_i64().unwrap()])
            .collect::<Vec<_>>()
    };
    assert_eq!(matrix(&table["rows"][0]), [2, 1, 0, 1, 4]);
    assert_eq!(matrix(&table["rows"][1]), [0, 1, 1, 0, 2]);
    assert_eq!(matrix(&table["rows"][2]), [0, 0, 0, 0, 0]);
    assert_eq!(matrix(&table["totals"]), [2, 2, 1, 1, 6]);
    assert_eq!((table["rows"][0]["name"].clone(), table["population"].clone()), (json!("华东"), json!(6)));

    let deep = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&rows_depth=2&status=active").await;
    assert_eq!(codes(&deep["rows"]), [json!("0101"), json!("0102"), json!("0201"), json!(null)]);
    assert_eq!(matrix(&deep["rows"][0]), [1, 1, 0, 0, 2]);
    assert_eq!(matrix(&deep["totals"]), [2, 2, 1, 0, 5]);

    // Within a category (read from its members' index entries): 华东; its VIPs; its
    // inactive customers without a tier.
    let east = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&rows_depth=2&category=REGION:01").await;
    assert_eq!(codes(&east["rows"]), [json!("0101"), json!("0102"), json!("0201"), json!(null)]);
    assert_eq!(matrix(&east["rows"][0]), [1, 1, 0, 1, 3]);
    assert_eq!(matrix(&east["rows"][1]), [1, 0, 0, 0, 1]);
    assert_eq!(matrix(&east["rows"][2]), [0, 0, 0, 0, 0]);
    assert_eq!(matrix(&east["totals"]), [2, 1, 0, 1, 4]);
    let east_vip =
        report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&rows_depth=2&category=REGION:01&category=TIER:01")
            .await;
    assert_eq!((matrix(&east_vip["rows"][0]), matrix(&east_vip["totals"])), (vec![1, 0, 0, 0, 1], vec![2, 0, 0, 0, 2]));
    let untiered = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&rows_depth=2&category=REGION:01&unclassified=TIER&status=inactive").await;
    assert_eq!((matrix(&untiered["rows"][0]), matrix(&untiered["totals"])), (vec![0, 0, 0, 1, 1], vec![0, 0, 0, 1, 1]));

    let same = problem(
        app.get("/api/v1/reports/crosstab?rows=TIER&cols=TIER").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(same["errors"][0]["field"], "cols");
    problem(app.get("/api/v1/reports/crosstab?rows=REGION&cols=NOPE").await, StatusCode::NOT_FOUND, "scheme_not_found")
        .await;
    let depth = problem(
        app.get("/api/v1/reports/crosstab?rows=REGION&cols=TIER&cols_depth=2").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(depth["errors"][0]["field"], "cols_depth");
}

/// Before today (aged to 2025): C1 潜在, C2 VIP, C3 普通, C6 潜在. Today: C1 up to VIP,
/// C2 down to 普通, C3 down to 潜在 and back up, C5 arrives in 普通, C6 is deleted.
async fn a_quarter_of_moves(app: &TestApp) {
    ok_json(
        app.post("/api/v1/schemes", &json!({"code": "TIER", "name": "客户等级", "code_rule": "2", "ordered": true}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    for (code, name, rank) in [("01", "VIP客户", 3), ("02", "普通客户", 2), ("03", "潜在客户", 1)] {
        ok_json(
            app.post("/api/v1/schemes/TIER/categories", &json!({"code": code, "name": name, "rank": rank})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    for (code, tier) in [("C1", "03"), ("C2", "01"), ("C3", "02"), ("C6", "03")] {
        app.create_customer(code, json!({"TIER": tier})).await;
    }
    execute_directly(app, &["UPDATE assignment_history SET at = '2025-01-01 10:00:00'"]).await;
    for (customer, category) in [("C1", "01"), ("C2", "02"), ("C3", "03"), ("C3", "02")] {
        ok_json(app.assign(customer, "TIER", category).await, StatusCode::OK).await;
    }
    app.create_customer("C5", json!({"TIER": "02"})).await;
    assert_eq!(
        app.admin(Method::DELETE, "/api/v1/customers/C6").send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
}

/// `(from, to, direction, count)` of each cell.
fn cells(report: &Value) -> Vec<(Value, Value, Value, i64)> {
    let mut cells: Vec<_> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["from_category"].clone(), c["to_category"].clone(), c["direction"].clone(), c["count"].as_i64().unwrap())
        })
        .collect();
    cells.sort_by_key(|c| format!("{c:?}"));
    cells
}

fn cell(from: Value, to: Value, direction: Value, count: i64) -> (Value, Value, Value, i64) {
    (from, to, direction, count)
}

async fn transitions_count_net_and_every_move(app: TestApp) {
    a_quarter_of_moves(&app).await;
    let today = chrono::Utc::now().date_naive();
    let period = format!("scheme=TIER&from={}&to={today}", today - chrono::Duration::days(91));

    let net = report(&app, &format!("/api/v1/reports/transitions?{period}")).await;
    assert_eq!(net["basis"], "net");
    let mut expected = vec![
        cell(json!("03"), json!("01"), json!("up"), 1),
        cell(json!("01"), json!("02"), json!("down"), 1),
        cell(json!("02"), json!("02"), json!(null), 1),
        cell(json!(null), json!("02"), json!("in"), 1),
        cell(json!("03"), json!(null), json!("out"), 1),
    ];
    expected.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(cells(&net), expected);
    assert_eq!(net["totals"], json!({"up": 1, "down": 1, "lateral": 0, "in": 1, "out": 1, "unchanged": 1, "total": 5}));
    assert_eq!(
        net["cells"].as_array().unwrap().iter().find(|c| c["to_category"] == "01").unwrap()["to_name"],
        "VIP客户"
    );

    let moves = report(&app, &format!("/api/v1/reports/transitions?{period}&basis=moves")).await;
    assert_eq!(
        moves["totals"],
        json!({"up": 2, "down": 2, "lateral": 0, "in": 1, "out": 1, "unchanged": 0, "total": 6})
    );
    assert!(cells(&moves).contains(&cell(json!("02"), json!("03"), json!("down"), 1)));
    let manual = report(&app, &format!("/api/v1/reports/transitions?{period}&basis=moves&source=manual")).await;
    assert_eq!(manual["totals"]["total"], 6);
    let by_rules = report(&app, &format!("/api/v1/reports/transitions?{period}&source=rule")).await;
    assert_eq!((by_rules["cells"].clone(), by_rules["totals"]["total"].clone()), (json!([]), json!(0)));

    // A period before today saw none of it.
    let earlier = report(&app, "/api/v1/reports/transitions?scheme=TIER&from=2025-02-01&to=2025-12-31").await;
    assert_eq!(earlier["totals"]["total"], 0);
    let first_day = report(&app, "/api/v1/reports/transitions?scheme=TIER&from=2025-01-01&to=2025-01-01").await;
    assert_eq!(first_day["totals"]["in"], 4);
}

/// A period's journeys are read two ways, by how many moves it holds: folded in the
/// service from the period's moves, or grouped in the database over the scheme's
/// history. The reports' tests only reach the first; both must give the same.
async fn journeys_folded_in_the_service_and_grouped_in_the_database_agree(app: TestApp) {
    use custclass::domain::history::Source;
    use custclass::store::reporting::journeys::{self, Journey, Span};

    a_quarter_of_moves(&app).await;
    let today = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap();
    let journey = |code: &str, start: &str, end: &str, id: Option<i64>| Journey {
        customer_id: id,
        customer_code: code.to_string(),
        start_category: start.to_string(),
        end_category: end.to_string(),
    };
    let (folded, grouped, moved, ids, recorded) = with_connection(&app, move |conn| {
        use custclass::db::schema::customers;
        use diesel::prelude::*;
        let ids: Vec<(String, i64)> =
            customers::table.select((customers::code, customers::id)).order(customers::code).load(conn).unwrap();
        let spans = [
            Span { scheme_code: "TIER", start: today, end: None, source: None },
            Span { scheme_code: "TIER", start: today - chrono::Duration::days(800), end: Some(today), source: None },
            Span {
                scheme_code: "TIER",
                start: today - chrono::Duration::days(800),
                end: None,
                source: Some(Source::Manual),
            },
            Span {
                scheme_code: "TIER",
                start: today - chrono::Duration::days(800),
                end: None,
                source: Some(Source::Rule),
            },
        ];
        let mut folded = Vec::new();
        let mut grouped = Vec::new();
        let mut moved = Vec::new();
        for span in &spans {
            let mut by_folding = journeys::folded(conn, span, journeys::Ids::OfExisting)
                .unwrap()
                .expect("a handful of moves is a short period");
            by_folding.sort_by(|a, b| a.customer_code.cmp(&b.customer_code));
            let mut by_grouping = journeys::grouped_with_ids(conn, span).unwrap();
            by_grouping.sort_by(|a, b| a.customer_code.cmp(&b.customer_code));
            moved.push((
                journeys::moved(conn, None, span).unwrap(),
                journeys::grouped(conn, None, span).unwrap(),
                journeys::tally(&by_folding),
            ));
            folded.push(by_folding);
            grouped.push(by_grouping);
        }
        let mut recorded = journeys::folded(conn, &spans[0], journeys::Ids::Recorded).unwrap().unwrap();
        recorded.sort_by(|a, b| a.customer_code.cmp(&b.customer_code));
        (folded, grouped, moved, ids.into_iter().collect::<std::collections::HashMap<_, _>>(), recorded)
    })
    .await;
    assert_eq!(folded, grouped);
    for (counted, by_grouping, tallied) in &moved {
        assert_eq!((counted, by_grouping), (tallied, tallied));
    }
    // Today: C1 03 → 01, C2 01 → 02, C3 02 → 03 → 02, C5 created in 02, C6 (deleted) 03 → none.
    assert_eq!(
        folded[0],
        vec![
            journey("C1", "03", "01", Some(ids["C1"])),
            journey("C2", "01", "02", Some(ids["C2"])),
            journey("C3", "02", "02", Some(ids["C3"])),
            journey("C5", "", "02", Some(ids["C5"])),
            journey("C6", "03", "", None),
        ]
    );
    // As history recorded them, the deleted C6's moves keep its id.
    assert_eq!(recorded[..4], folded[0][..4]);
    let c6 = recorded[4].customer_id.expect("history recorded C6's id");
    assert!(!ids.values().any(|id| *id == c6), "C6 is deleted");
    // Before today: the four created on 2025-01-01.
    assert_eq!(
        folded[1]
            .iter()
            .map(|j| (j.customer_code.as_str(), j.start_category.as_str(), j.end_category.as_str()))
            .collect::<Vec<_>>(),
        [("C1", "", "03"), ("C2", "", "01"), ("C3", "", "02"), ("C6", "", "03")]
    );
    assert_eq!(folded[2].len(), 5, "every move was manual");
    assert!(folded[3].is_empty(), "none by rules");
}

fn codes_of(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect()
}

async fn transition_customers_list_one_cell_page_by_page(app: TestApp) {
    a_quarter_of_moves(&app).await;
    let today = chrono::Utc::now().date_naive();
    let period = format!("scheme=TIER&from={}&to={today}", today - chrono::Duration::days(91));

    // Who was downgraded from VIP this quarter.
    let from_vip =
        report(&app, &format!("/api/v1/reports/transitions/customers?{period}&from_category=01&direction=down")).await;
    assert_eq!(codes_of(&from_vip), ["C2"]);
    let c2 = &from_vip["items"][0];
    assert_eq!(
        (c2["name"].clone(), c2["from_category"].clone(), c2["to_category"].clone(), c2["moves"].clone()),
        (json!("C2 有限公司"), json!("01"), json!("02"), json!(1))
    );

    let downs =
        report(&app, &format!("/api/v1/reports/transitions/customers?{period}&basis=moves&direction=down")).await;
    assert_eq!(codes_of(&downs), ["C2", "C3"]);
    let gone = report(&app, &format!("/api/v1/reports/transitions/customers?{period}&to_category=")).await;
    assert_eq!(codes_of(&gone), ["C6"]);
    assert_eq!((gone["items"][0]["name"].clone(), gone["items"][0]["direction"].clone()), (json!(null), json!("out")));
    let back =
        report(&app, &format!("/api/v1/reports/transitions/customers?{period}&from_category=02&to_category=02")).await;
    assert_eq!(
        (codes_of(&back), back["items"][0]["direction"].clone(), back["items"][0]["moves"].clone()),
        (vec!["C3".to_string()], json!(null), json!(2))
    );

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/reports/transitions/customers?{period}&limit=2&cursor={cursor}"),
            None => format!("/api/v1/reports/transitions/customers?{period}&limit=2"),
        };
        let page = report(&app, &path).await;
        seen.extend(codes_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["C1", "C2", "C3", "C5", "C6"]);

    // In a scheme without ranks nobody goes up or down; a move between categories is lateral.
    app.create_scheme("REGION", "2").await;
    for code in ["01", "02"] {
        app.create_category("REGION", code, code).await;
    }
    ok_json(app.assign("C1", "REGION", "01").await, StatusCode::OK).await;
    ok_json(app.assign("C1", "REGION", "02").await, StatusCode::OK).await;
    let region = format!("scheme=REGION&from={}&to={today}", today - chrono::Duration::days(91));
    for direction in ["down", "up"] {
        let none = report(&app, &format!("/api/v1/reports/transitions/customers?{region}&direction={direction}")).await;
        assert_eq!(codes_of(&none), Vec::<String>::new(), "{direction}");
    }
    let lateral =
        report(&app, &format!("/api/v1/reports/transitions/customers?{region}&basis=moves&direction=lateral")).await;
    assert_eq!(codes_of(&lateral), ["C1"]);
}

async fn reports_as_csv_and_xlsx(app: TestApp) {
    known_customers(&app).await;
    let csv = app
        .request(Method::GET, "/api/v1/reports/distribution?scheme=TIER")
        .header("Authorization", format!("Bearer {}", app.key("analyst", "read").await))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = csv.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"distribution-TIER-") && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let bytes = csv.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a BOM, so that Excel reads UTF-8");
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["code", "name", "depth", "rank", "customers", "subtree_customers", "share"]
    );
    let records: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    assert_eq!(records[0], ["01", "VIP客户", "1", "3", "2", "2", "0.3333"]);
    assert_eq!(records[3], ["", "未分类", "", "", "1", "1", "0.1667"]);
    assert_eq!(records[4][1..5], ["total", "", "", "6"]);

    let xlsx = app
        .admin(Method::GET, "/api/v1/reports/crosstab?rows=REGION&cols=TIER&measures=spend_12m")
        .header("Accept", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), StatusCode::OK);
    assert!(xlsx.headers()["content-disposition"].to_str().unwrap().contains("crosstab-REGION-TIER-"));
    let bytes = xlsx.bytes().await.unwrap().to_vec();
    use calamine::{Data, Reader};
    let mut workbook = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.get((0, 0)), Some(&Data::String("code".into())));
    assert_eq!(sheet.get((0, 2)), Some(&Data::String("01.customers".into())));
    assert_eq!(sheet.get((1, 1)), Some(&Data::String("华东".into())));
    assert_eq!(sheet.get((1, 2)), Some(&Data::Float(2.0)), "counts are number cells");
    assert_eq!(sheet.get((1, 3)), Some(&Data::Float(0.0)), "money is a number cell too");
    let last = sheet.height() - 1;
    assert_eq!(sheet.get((last, 1)), Some(&Data::String("total".into())));

    let transitions = app
        .admin(Method::GET, "/api/v1/reports/transitions?scheme=TIER&from=2026-01-01&to=2026-03-31")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(
        transitions.headers()["content-disposition"],
        "attachment; filename=\"transitions-TIER-2026-01-01-2026-03-31.csv\""
    );

    let html = app
        .admin(Method::GET, "/api/v1/reports/distribution?scheme=TIER")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    problem(html, StatusCode::NOT_ACCEPTABLE, "not_acceptable").await;
    let anything = app
        .admin(Method::GET, "/api/v1/reports/distribution?scheme=TIER")
        .header("Accept", "text/html, */*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(anything.headers()["content-type"], "application/json");
    let unauthenticated = app.request(Method::GET, "/api/v1/reports/distribution?scheme=TIER").send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

async fn counts_stay_exact_under_concurrent_reassignments(app: TestApp) {
    app.create_tiers().await;
    app.create_scheme("REGION", "2").await;
    app.create_category("REGION", "01", "华东").await;
    app.create_category("REGION", "02", "华北").await;
    let customers: Vec<String> = (1..=10).map(|i| format!("C{i:02}")).collect();
    for (index, code) in customers.iter().enumerate() {
        let region = if index % 3 == 0 { json!({"TIER": "03"}) } else { json!({"TIER": "03", "REGION": "01"}) };
        app.create_customer(code, region).await;
    }
    // 50 re-assignments at once, in both schemes, several of them of the same customer.
    let moves = (0..50).map(|i| {
        let customer = customers[(i * 7) % customers.len()].clone();
        let (scheme, category) =
            if i % 5 == 4 { ("REGION", ["01", "02"][i % 2]) } else { ("TIER", ["01", "02", "03"][i % 3]) };
        let app = &app;
        async move { app.assign(&customer, scheme, category).await.status() }
    });
    let statuses = futures_util::future::join_all(moves).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT), "{statuses:?}");

    let listed = |filters: String| {
        let app = &app;
        async move {
            report(app, &format!("/api/v1/customers?{filters}&limit=1000")).await["items"].as_array().unwrap().len()
                as i64
        }
    };
    let tier_filter =
        |code: &Value| code.as_str().map_or("unclassified=TIER".to_string(), |code| format!("category=TIER:{code}"));
    let region_filter = |code: &Value| {
        code.as_str().map_or("unclassified=REGION".to_string(), |code| format!("category=REGION:{code}"))
    };
    let distribution = report(&app, "/api/v1/reports/distribution?scheme=TIER").await;
    assert_eq!(distribution["population"], 10);
    for row in distribution["rows"].as_array().unwrap() {
        assert_eq!(row["customers"].as_i64().unwrap(), listed(tier_filter(&row["code"])).await, "{row}");
    }
    // The cross-tab reads the pair counters, which the same transactions keep.
    let table = report(&app, "/api/v1/reports/crosstab?rows=REGION&cols=TIER").await;
    for row in table["rows"].as_array().unwrap() {
        for (column, cell) in table["columns"].as_array().unwrap().iter().zip(row["cells"].as_array().unwrap()) {
            let filters = format!("{}&{}", region_filter(&row["code"]), tier_filter(&column["code"]));
            assert_eq!(
                cell["customers"].as_i64().unwrap(),
                listed(filters).await,
                "REGION {} × TIER {}",
                row["code"],
                column["code"]
            );
        }
    }
}

async fn bad_report_requests_name_the_field(app: TestApp) {
    known_customers(&app).await;
    problem(app.get("/api/v1/reports/distribution?scheme=NOPE").await, StatusCode::NOT_FOUND, "scheme_not_found").await;
    let missing =
        problem(app.get("/api/v1/reports/distribution").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(missing["errors"][0]["field"], "scheme");
    let measure = problem(
        app.get("/api/v1/reports/distribution?scheme=TIER&measures=spend_12m,margin").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(measure["errors"][0]["field"], "measures");
    assert!(measure["errors"][0]["message"].as_str().unwrap().contains("spend_12m, orders_12m, lifetime_spend"));
    let depth = problem(
        app.get("/api/v1/reports/distribution?scheme=REGION&depth=3").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(depth["errors"][0]["field"], "depth");
    let backwards = problem(
        app.get("/api/v1/reports/transitions?scheme=TIER&from=2026-09-30&to=2026-07-01").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(backwards["errors"][0]["field"], "from");
    let long = problem(
        app.get("/api/v1/reports/transitions?scheme=TIER&from=2015-01-01&to=2026-01-01").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(long["errors"][0]["field"], "to");
    let basis = problem(
        app.get("/api/v1/reports/transitions?scheme=TIER&from=2026-01-01&to=2026-01-02&basis=gross").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(basis["errors"][0]["field"], "basis");
    problem(
        app.get("/api/v1/reports/transitions?scheme=NOPE&from=2026-01-01&to=2026-01-02").await,
        StatusCode::NOT_FOUND,
        "scheme_not_found",
    )
    .await;
    problem(
        app.get("/api/v1/reports/distribution?scheme=TIER&category=REGION:09").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
    problem(
        app.get("/api/v1/reports/distribution?scheme=TIER&colour=red").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    problem(
        app.get("/api/v1/reports/transitions/customers?scheme=TIER&from=2026-01-01&to=2026-01-02&cursor=nonsense")
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await;
}
