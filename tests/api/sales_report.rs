//! The sales report by category (分类销售统计): each sale under the category its
//! customer held when it happened, or holds now; per month, quarter or the whole period.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{execute_directly, ok_json, problem, with_connection, TestApp};
use crate::sales::pointers;

both_backends!(
    a_customer_moved_mid_period_counts_where_it_stood_or_stands,
    a_code_taken_again_after_a_delete_has_none_of_the_old_moves,
    history_from_before_it_carried_customer_ids_reads_the_same,
    the_sales_report_as_csv_and_xlsx,
    bad_sales_report_requests_name_the_field
);

/// GRADE (2-2: 01 with 0101 and 0102, 02 with 0201) and four customers. C1 came into
/// 0101 on 2026-01-01, moved to 0201 on 2026-02-15 and to 0102 on 2026-03-10; C2 sits
/// in 0201, C3 in none, C4 (inactive) in 0101. Their sales of the first quarter:
///
/// | sale | customer | day | amount |
/// |---|---|---|---|
/// | S1 | C1 | 01-10 | 100.10 |
/// | S2 | C1 | 02-10 | 200.20 |
/// | S3 | C1 | 02-20 | 300.30 |
/// | S4 | C1 | 03-05 | −50.05 (a refund) |
/// | S5 | C1 | 03-20 | 400.40 |
/// | S6 | C2 | 01-05 | 10.00 |
/// | S7 | C3 | 02-01 | 5.55 |
/// | S8 | C4 | 01-15 | 999.99 |
/// | S9 | C1 | 04-01 | 7.00 (after the period) |
async fn moved_customer(app: &TestApp) {
    app.create_scheme("GRADE", "2-2").await;
    for (code, name) in
        [("01", "重点"), ("0101", "华东重点"), ("0102", "华北重点"), ("02", "一般"), ("0201", "华东一般")]
    {
        app.create_category("GRADE", code, name).await;
    }
    app.create_customer("C1", json!({"GRADE": "0101"})).await;
    app.create_customer("C2", json!({"GRADE": "0201"})).await;
    app.create_customer("C3", json!({})).await;
    let c4 = json!({"code": "C4", "name": "C4 有限公司", "status": "inactive", "categories": {"GRADE": "0101"}});
    ok_json(app.post("/api/v1/customers", &c4).await, StatusCode::CREATED).await;
    ok_json(app.assign("C1", "GRADE", "0201").await, StatusCode::OK).await;
    ok_json(app.assign("C1", "GRADE", "0102").await, StatusCode::OK).await;
    execute_directly(
        app,
        &[
            "UPDATE assignment_history SET at = '2025-12-01 00:00:00' WHERE customer_code <> 'C1'",
            "UPDATE assignment_history SET at = '2026-01-01 00:00:00' WHERE customer_code = 'C1' AND from_category IS NULL",
            "UPDATE assignment_history SET at = '2026-02-15 12:00:00' WHERE customer_code = 'C1' AND to_category = '0201'",
            "UPDATE assignment_history SET at = '2026-03-10 08:30:00' WHERE customer_code = 'C1' AND to_category = '0102'",
        ],
    )
    .await;
    let sale = |id: &str, customer: &str, amount: &str, at: &str| json!({"external_id": id, "customer_code": customer, "amount": amount, "occurred_at": at});
    let sales = json!([
        sale("S1", "C1", "100.10", "2026-01-10T09:00:00Z"),
        sale("S2", "C1", "200.20", "2026-02-10T09:00:00Z"),
        sale("S3", "C1", "300.30", "2026-02-20T09:00:00Z"),
        sale("S4", "C1", "-50.05", "2026-03-05T09:00:00Z"),
        sale("S5", "C1", "400.40", "2026-03-20T09:00:00Z"),
        sale("S6", "C2", "10.00", "2026-01-05T09:00:00Z"),
        sale("S7", "C3", "5.55", "2026-02-01T00:00:00Z"),
        sale("S8", "C4", "999.99", "2026-01-15T09:00:00Z"),
        sale("S9", "C1", "7.00", "2026-04-01T00:00:00Z"),
    ]);
    let posted = ok_json(app.post("/api/v1/transactions", &sales).await, StatusCode::OK).await;
    assert_eq!(posted["created"], 9);
}

async fn report(app: &TestApp, query: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/reports/sales?scheme=GRADE&{query}")).await, StatusCode::OK).await
}

/// A row as `(code, [(amount, orders) per interval], (amount, orders) in all)`.
type Figures = (String, Vec<(String, i64)>, (String, i64));

fn figures(report: &Value) -> Vec<Figures> {
    let pair = |f: &Value| (f["amount"].as_str().unwrap().to_string(), f["orders"].as_i64().unwrap());
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["code"].as_str().unwrap_or("-").to_string(),
                row["intervals"].as_array().unwrap().iter().map(pair).collect(),
                pair(&row["total"]),
            )
        })
        .collect()
}

fn row(code: &str, months: [(&str, i64); 3], total: (&str, i64)) -> Figures {
    (
        code.to_string(),
        months.iter().map(|(amount, orders)| (amount.to_string(), *orders)).collect(),
        (total.0.to_string(), total.1),
    )
}

async fn a_customer_moved_mid_period_counts_where_it_stood_or_stands(app: TestApp) {
    moved_customer(&app).await;
    let quarter = "from=2026-01-01&to=2026-03-31";
    let at_sale = report(&app, &format!("{quarter}&interval=month&basis=at_sale")).await;
    assert_eq!(
        at_sale["intervals"],
        json!([
            {"label": "2026-01", "from": "2026-01-01", "to": "2026-01-31"},
            {"label": "2026-02", "from": "2026-02-01", "to": "2026-02-28"},
            {"label": "2026-03", "from": "2026-03-01", "to": "2026-03-31"}
        ])
    );
    assert_eq!(
        figures(&at_sale),
        [
            row("01", [("1100.09", 2), ("200.20", 1), ("400.40", 1)], ("1700.69", 4)),
            row("0101", [("1100.09", 2), ("200.20", 1), ("0.00", 0)], ("1300.29", 3)),
            row("0102", [("0.00", 0), ("0.00", 0), ("400.40", 1)], ("400.40", 1)),
            row("02", [("10.00", 1), ("300.30", 1), ("-50.05", 0)], ("260.25", 2)),
            row("0201", [("10.00", 1), ("300.30", 1), ("-50.05", 0)], ("260.25", 2)),
            row("-", [("0.00", 0), ("5.55", 1), ("0.00", 0)], ("5.55", 1)),
        ]
    );
    let total =
        |report: &Value| (report["total"]["total"]["amount"].clone(), report["total"]["total"]["orders"].clone());
    assert_eq!(total(&at_sale), (json!("1966.49"), json!(7)), "S9 lies after the period");
    assert_eq!(at_sale["rows"][5]["name"], "未分类");
    assert_eq!((at_sale["basis"].clone(), at_sale["interval"].clone()), (json!("at_sale"), json!("month")));

    // Now C1 is in 0102: all its sales of the period count there.
    let current = report(&app, &format!("{quarter}&basis=current")).await;
    assert_eq!(
        figures(&current),
        [
            row("01", [("1100.09", 2), ("500.50", 2), ("350.35", 1)], ("1950.94", 5)),
            row("0101", [("999.99", 1), ("0.00", 0), ("0.00", 0)], ("999.99", 1)),
            row("0102", [("100.10", 1), ("500.50", 2), ("350.35", 1)], ("950.95", 4)),
            row("02", [("10.00", 1), ("0.00", 0), ("0.00", 0)], ("10.00", 1)),
            row("0201", [("10.00", 1), ("0.00", 0), ("0.00", 0)], ("10.00", 1)),
            row("-", [("0.00", 0), ("5.55", 1), ("0.00", 0)], ("5.55", 1)),
        ]
    );
    assert_eq!(total(&current), total(&at_sale), "the same sales, grouped otherwise");

    // By quarter, rolled up to the top level, over the active customers only (not C4).
    let rolled = report(&app, &format!("{quarter}&interval=quarter&depth=1&status=active")).await;
    let rows: Vec<(String, Vec<(String, i64)>)> =
        figures(&rolled).into_iter().map(|(code, intervals, _)| (code, intervals)).collect();
    assert_eq!(
        rows,
        [
            ("01".to_string(), vec![("700.70".to_string(), 3)]),
            ("02".into(), vec![("260.25".into(), 2)]),
            ("-".into(), vec![("5.55".into(), 1)])
        ]
    );
    assert_eq!(rolled["intervals"][0]["label"], "2026-Q1");

    // One day of the period, as one interval: the sale of 02-20 counts where C1 stood then.
    let day = report(&app, "from=2026-02-20&to=2026-02-20&interval=none").await;
    assert_eq!(day["intervals"][0]["label"], "2026-02-20..2026-02-20");
    assert_eq!(day["rows"][4]["total"], json!({"amount": "300.30", "orders": 1}));
    assert_eq!(day["rows"][1]["total"], json!({"amount": "0.00", "orders": 0}));
    assert_eq!(day["rows"][1]["intervals"], json!([{"amount": "0.00", "orders": 0}]));

    // A key restricted to 02 sums the customers inside only.
    let body = json!({"name": "east", "scope": "read", "restrict": {"GRADE": ["02"]}});
    let key = ok_json(app.post("/api/v1/api-keys", &body).await, StatusCode::CREATED).await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let inside = app
        .request(Method::GET, &format!("/api/v1/reports/sales?scheme=GRADE&{quarter}&interval=none"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let inside = ok_json(inside, StatusCode::OK).await;
    assert_eq!(total(&inside), (json!("10.00"), json!(1)), "C2 only: C1 stands in 01 now");
}

/// A deleted customer's history stays, under its code; a new customer given that code
/// later is another customer, and its sales count where it stood, not where the old
/// one did.
async fn a_code_taken_again_after_a_delete_has_none_of_the_old_moves(app: TestApp) {
    moved_customer(&app).await;
    app.create_customer("C7", json!({"GRADE": "0101"})).await;
    ok_json(app.assign("C7", "GRADE", "0201").await, StatusCode::OK).await;
    execute_directly(
        &app,
        &[
            "UPDATE assignment_history SET at = '2025-12-01 00:00:00' WHERE customer_code = 'C7' AND from_category IS NULL",
            "UPDATE assignment_history SET at = '2026-02-01 00:00:00' WHERE customer_code = 'C7' AND to_category = '0201'",
        ],
    )
    .await;
    assert_eq!(app.delete("/api/v1/customers/C7").await.status(), StatusCode::NO_CONTENT);
    app.create_customer("C7", json!({})).await;
    let sale = json!([{"external_id": "S10", "customer_code": "C7", "amount": "70.00", "occurred_at": "2026-01-20T09:00:00Z"}]);
    ok_json(app.post("/api/v1/transactions", &sale).await, StatusCode::OK).await;

    let at_sale = report(&app, "from=2026-01-01&to=2026-03-31&interval=month&basis=at_sale").await;
    let unclassified = figures(&at_sale).pop().unwrap();
    assert_eq!(
        unclassified,
        row("-", [("70.00", 1), ("5.55", 1), ("0.00", 0)], ("75.55", 2)),
        "the new C7 was in no category; the old one was in 0101 on 2026-01-20"
    );
    assert_eq!(figures(&at_sale)[1], row("0101", [("1100.09", 2), ("200.20", 1), ("0.00", 0)], ("1300.29", 3)));
}

/// History written before it carried customer ids is given them by the migration, from
/// the customers that hold its codes: the report reads the same after it.
async fn history_from_before_it_carried_customer_ids_reads_the_same(app: TestApp) {
    use custclass::db::DbConnection;
    use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
    const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");
    const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

    moved_customer(&app).await;
    let query = "from=2026-01-01&to=2026-03-31&interval=month&basis=at_sale";
    let before = report(&app, query).await;
    let reverted = with_connection(&app, |conn| {
        let reverted = match conn {
            DbConnection::Mysql(conn) => conn.revert_last_migration(MYSQL).unwrap().to_string(),
            DbConnection::Sqlite(conn) => conn.revert_last_migration(SQLITE).unwrap().to_string(),
        };
        match conn {
            DbConnection::Mysql(conn) => conn.run_pending_migrations(MYSQL).unwrap(),
            DbConnection::Sqlite(conn) => conn.run_pending_migrations(SQLITE).unwrap(),
        };
        reverted
    })
    .await;
    assert_eq!(reverted, "20261208000026", "the migration that gave history its customer ids");
    let after = report(&app, query).await;
    assert_eq!(figures(&after), figures(&before));
    assert_eq!(figures(&after)[2], row("0102", [("0.00", 0), ("0.00", 0), ("400.40", 1)], ("400.40", 1)));
}

async fn the_sales_report_as_csv_and_xlsx(app: TestApp) {
    moved_customer(&app).await;
    let path = "/api/v1/reports/sales?scheme=GRADE&from=2026-01-01&to=2026-03-31&depth=1";
    let csv = app.admin(Method::GET, path).header("Accept", "text/csv").send().await.unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(
        csv.headers()["content-disposition"],
        "attachment; filename=\"sales-GRADE-2026-01-01-2026-03-31-at_sale.csv\""
    );
    let bytes = csv.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a BOM, so that Excel reads UTF-8");
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "code",
            "name",
            "depth",
            "rank",
            "2026-01.amount",
            "2026-01.orders",
            "2026-02.amount",
            "2026-02.orders",
            "2026-03.amount",
            "2026-03.orders",
            "total.amount",
            "total.orders"
        ]
    );
    let records: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    assert_eq!(records[0], ["01", "重点", "1", "", "1100.09", "2", "200.20", "1", "400.40", "1", "1700.69", "4"]);
    assert_eq!(records[2][..2], ["", "未分类"]);
    assert_eq!(records[3][1..], ["total", "", "", "1110.09", "3", "506.05", "3", "350.35", "1", "1966.49", "7"]);

    let xlsx = app
        .admin(Method::GET, path)
        .header("Accept", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), StatusCode::OK);
    let bytes = xlsx.bytes().await.unwrap().to_vec();
    use calamine::{Data, Reader};
    let mut workbook = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.get((0, 4)), Some(&Data::String("2026-01.amount".into())));
    assert_eq!(sheet.get((1, 1)), Some(&Data::String("重点".into())));
    assert_eq!(sheet.get((1, 4)), Some(&Data::Float(1100.09)), "money is a number cell");
    assert_eq!(sheet.get((1, 5)), Some(&Data::Float(2.0)));
}

async fn bad_sales_report_requests_name_the_field(app: TestApp) {
    moved_customer(&app).await;
    let refused = |query: &'static str, status: StatusCode, code: &'static str| {
        let app = &app;
        async move { problem(app.get(&format!("/api/v1/reports/sales?{query}")).await, status, code).await }
    };
    let missing = refused("scheme=GRADE", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(pointers(&missing), ["from", "to"]);
    let wrong = refused(
        "scheme=GRADE&from=2026-03-01&to=2026-01-01&interval=week&basis=now&depth=3",
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(pointers(&wrong), ["from", "interval", "basis"]);
    let deep = refused(
        "scheme=GRADE&from=2026-01-01&to=2026-01-31&depth=3",
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(pointers(&deep), ["depth"]);
    refused("scheme=NOPE&from=2026-01-01&to=2026-01-31", StatusCode::NOT_FOUND, "scheme_not_found").await;
    refused("scheme=GRADE&from=2026-01-01&to=2026-01-31&colour=red", StatusCode::BAD_REQUEST, "invalid_query").await;
    refused(
        "scheme=GRADE&from=2026-01-01&to=2026-01-31&category=GRADE:09",
        StatusCode::UNPROCESSABLE_ENTITY,
        "category_not_found",
    )
    .await;
}
