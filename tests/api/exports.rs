//! Exporting the customer archive (客户档案) as CSV, NDJSON and .xlsx.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{insert_customers_directly, ok_json, problem, TestApp};

both_backends!(
    an_export_has_every_column_in_each_format,
    an_export_takes_the_customer_list_filters,
    an_export_streams_every_page_once_in_code_order,
    bad_export_requests_are_problems,
    formula_like_texts_are_guarded_in_csv_and_import_back_unchanged,
);

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

const HEADER: [&str; 14] = [
    "code",
    "name",
    "short_name",
    "tax_id",
    "contact_name",
    "phone",
    "email",
    "address",
    "status",
    "note",
    "category:REGION",
    "category:TIER",
    "attr:discount_rate",
    "attr:vip_since",
];

/// REGION (2-2: 01 华东 › 0101 上海, 02 华北), TIER (2: 01 VIP with `discount_rate`,
/// a decimal defaulting to 0.1, and `vip_since`, a date; 02 普通), and three customers:
/// A1 (VIP in 上海, rate 0.25, since 2024-03-01, every field), A2 (VIP in 华北, rate from
/// the default) and A3 (no tier, inactive, a name to quote).
/// Returns a key of the `read` scope, which exports need.
pub(crate) async fn archive(app: &TestApp) -> String {
    app.create_scheme("REGION", "2-2").await;
    for (code, name) in [("01", "华东"), ("0101", "上海"), ("02", "华北")] {
        app.create_category("REGION", code, name).await;
    }
    app.create_scheme("TIER", "2").await;
    app.create_category("TIER", "01", "VIP客户").await;
    app.create_category("TIER", "02", "普通客户").await;
    let rate = json!({"key": "discount_rate", "type": "decimal", "min": 0, "max": 0.5, "default": 0.1});
    ok_json(app.post("/api/v1/schemes/TIER/categories/01/attributes", &rate).await, StatusCode::CREATED).await;
    ok_json(
        app.post("/api/v1/schemes/TIER/categories/01/attributes", &json!({"key": "vip_since", "type": "date"})).await,
        StatusCode::CREATED,
    )
    .await;
    let a1 = json!({
        "code": "A1", "name": "上海电子有限公司", "short_name": "上海电子", "tax_id": "91310000MA1FL8TQ36", "contact_name": "王经理",
        "phone": "021-5555 0101", "email": "wang@example.cn", "address": "上海市浦东新区", "note": "重点客户",
        "categories": {"REGION": "0101", "TIER": "01"}, "attributes": {"discount_rate": 0.25, "vip_since": "2024-03-01"}
    });
    ok_json(app.post("/api/v1/customers", &a1).await, StatusCode::CREATED).await;
    ok_json(
        app.post(
            "/api/v1/customers",
            &json!({"code": "A2", "name": "北京贸易", "categories": {"REGION": "02", "TIER": "01"}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let a3 =
        json!({"code": "A3", "name": "广州\"新星\", 有限公司", "status": "inactive", "categories": {"REGION": "02"}});
    ok_json(app.post("/api/v1/customers", &a3).await, StatusCode::CREATED).await;
    app.key("clerk", "read").await
}

async fn export(app: &TestApp, key: &str, query: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = app
        .request(Method::GET, &format!("/api/v1/exports/customers{query}"))
        .header("Authorization", format!("Bearer {key}"));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.unwrap()
}

/// The CSV's rows after its BOM and header, which are checked.
async fn csv_rows(response: reqwest::Response) -> Vec<Vec<String>> {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a BOM, so that Excel reads UTF-8");
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), HEADER);
    reader.records().map(|record| record.unwrap().iter().map(str::to_string).collect()).collect()
}

async fn an_export_has_every_column_in_each_format(app: TestApp) {
    let key = archive(&app).await;

    let csv = export(&app, &key, "", None).await;
    let disposition = csv.headers()["content-disposition"].to_str().unwrap().to_string();
    assert_eq!(disposition, format!("attachment; filename=\"customers-{}.csv\"", chrono::Utc::now().date_naive()));
    let rows = csv_rows(csv).await;
    assert_eq!(
        rows,
        [
            vec![
                "A1",
                "上海电子有限公司",
                "上海电子",
                "91310000MA1FL8TQ36",
                "王经理",
                "021-5555 0101",
                "wang@example.cn",
                "上海市浦东新区",
                "active",
                "重点客户",
                "0101",
                "01",
                "0.25",
                "2024-03-01"
            ],
            vec!["A2", "北京贸易", "", "", "", "", "", "", "active", "", "02", "01", "", ""],
            vec!["A3", "广州\"新星\", 有限公司", "", "", "", "", "", "", "inactive", "", "02", "", "", ""],
        ],
        "a value from the default stays empty: re-importing it would store it"
    );

    let ndjson = export(&app, &key, "", Some("application/x-ndjson")).await;
    assert_eq!(ndjson.status(), StatusCode::OK);
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    assert!(ndjson.headers()["content-disposition"].to_str().unwrap().ends_with(".ndjson\""));
    let text = ndjson.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["attr:discount_rate"], json!(0.25), "numbers stay numbers");
    assert_eq!(lines[0]["category:TIER"], "01");
    assert_eq!(
        lines[1],
        json!({"code": "A2", "name": "北京贸易", "status": "active", "category:REGION": "02", "category:TIER": "01"}),
        "empty cells are left out"
    );

    let xlsx = export(&app, &key, "", Some(XLSX)).await;
    assert_eq!(xlsx.status(), StatusCode::OK);
    assert_eq!(xlsx.headers()["content-type"], XLSX);
    assert!(xlsx.headers()["content-disposition"].to_str().unwrap().ends_with(".xlsx\""));
    let bytes = xlsx.bytes().await.unwrap().to_vec();
    use calamine::{Data, Reader};
    let mut workbook = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(workbook.sheet_names(), ["customers"]);
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.height(), 4);
    let header: Vec<_> = (0..HEADER.len() as u32).map(|column| sheet.get_value((0, column)).cloned()).collect();
    assert_eq!(header, HEADER.map(|name| Some(Data::String(name.into()))));
    assert_eq!(sheet.get_value((1, 1)), Some(&Data::String("上海电子有限公司".into())));
    assert_eq!(sheet.get_value((1, 12)), Some(&Data::Float(0.25)), "a decimal attribute is a number cell");
    assert_eq!(sheet.get_value((2, 12)), Some(&Data::Empty));
    assert_eq!(sheet.get_value((3, 8)), Some(&Data::String("inactive".into())));
}

async fn an_export_takes_the_customer_list_filters(app: TestApp) {
    let key = archive(&app).await;
    let codes = |rows: Vec<Vec<String>>| rows.into_iter().map(|row| row[0].clone()).collect::<Vec<_>>();
    assert_eq!(codes(csv_rows(export(&app, &key, "?category=REGION:02", None).await).await), ["A2", "A3"]);
    assert_eq!(codes(csv_rows(export(&app, &key, "?category=REGION:02&status=active", None).await).await), ["A2"]);
    assert_eq!(codes(csv_rows(export(&app, &key, "?unclassified=TIER", None).await).await), ["A3"]);
    assert_eq!(codes(csv_rows(export(&app, &key, "?attr=vip_since:lt:2025-01-01", None).await).await), ["A1"]);
    assert_eq!(codes(csv_rows(export(&app, &key, "?q=%E8%B4%B8%E6%98%93", None).await).await), ["A2"], "q=贸易");
    assert!(
        csv_rows(export(&app, &key, "?category=REGION:0101&status=inactive", None).await).await.is_empty(),
        "no customer: the header alone"
    );
}

async fn an_export_streams_every_page_once_in_code_order(app: TestApp) {
    let key = archive(&app).await;
    let mut expected = insert_customers_directly(&app, "P", 2_345).await;
    expected.extend(["A1", "A2", "A3"].map(String::from));
    expected.sort();
    let codes: Vec<String> =
        csv_rows(export(&app, &key, "", None).await).await.into_iter().map(|row| row[0].clone()).collect();
    assert_eq!(codes, expected, "pages of 1,000 follow on without a gap or a repeat");
    let lines = export(&app, &key, "", Some("application/x-ndjson")).await.text().await.unwrap();
    assert_eq!(lines.lines().count(), expected.len());
    let bytes = export(&app, &key, "", Some(XLSX)).await.bytes().await.unwrap().to_vec();
    use calamine::Reader;
    let sheet = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap().worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.height(), expected.len() + 1);
}

async fn bad_export_requests_are_problems(app: TestApp) {
    let key = archive(&app).await;
    problem(export(&app, &key, "", Some("application/json")).await, StatusCode::NOT_ACCEPTABLE, "not_acceptable").await;
    assert_eq!(export(&app, &key, "", Some("application/*")).await.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        export(&app, &key, "", Some("text/html, */*;q=0.5")).await.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    problem(export(&app, &key, "?sort=name", None).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    problem(export(&app, &key, "?category=NOPE:01", None).await, StatusCode::UNPROCESSABLE_ENTITY, "scheme_not_found")
        .await;
    problem(export(&app, &key, "?attr=nope:eq:1", None).await, StatusCode::UNPROCESSABLE_ENTITY, "attribute_not_found")
        .await;
    let anonymous = app.request(Method::GET, "/api/v1/exports/customers").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// CSV injection (OWASP): a text a spreadsheet would run as a formula is written with a
/// leading `'`; the import takes it off again, so the file imports back unchanged. The
/// workbook holds such texts as text cells, as they are.
async fn formula_like_texts_are_guarded_in_csv_and_import_back_unchanged(app: TestApp) {
    let names = [
        "=HYPERLINK(\"http://evil.example/\",\"click\")",
        "+86 138 0000 0000",
        "-1+2",
        "@SUM(A1:A9)",
        "'=quoted already",
        "plain 名称",
    ];
    for (index, name) in names.iter().enumerate() {
        ok_json(
            app.post("/api/v1/customers", &json!({"code": format!("F{index}"), "name": name, "note": "=1+1"})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    let csv = export(&app, &app.admin_key, "", None).await;
    assert_eq!(csv.status(), StatusCode::OK);
    let bytes = csv.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let rows: Vec<Vec<String>> =
        reader.records().map(|record| record.unwrap().iter().map(str::to_string).collect()).collect();
    let written: Vec<(&str, &str)> = rows.iter().map(|row| (row[1].as_str(), row[9].as_str())).collect();
    assert_eq!(
        written,
        [
            ("'=HYPERLINK(\"http://evil.example/\",\"click\")", "'=1+1"),
            ("'+86 138 0000 0000", "'=1+1"),
            ("'-1+2", "'=1+1"),
            ("'@SUM(A1:A9)", "'=1+1"),
            ("''=quoted already", "'=1+1"),
            ("plain 名称", "'=1+1"),
        ]
    );

    let imported = app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", "text/csv")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let report = ok_json(imported, StatusCode::OK).await;
    assert_eq!(
        (&report["unchanged"], &report["updated"], &report["failed"]),
        (&json!(names.len()), &json!(0), &json!(0)),
        "{report:#}"
    );
    for (index, name) in names.iter().enumerate() {
        let customer = ok_json(app.get(&format!("/api/v1/customers/F{index}")).await, StatusCode::OK).await;
        assert_eq!((&customer["name"], &customer["note"]), (&json!(name), &json!("=1+1")));
    }

    let xlsx = export(&app, &app.admin_key, "", Some(XLSX)).await;
    use calamine::{Data, Reader};
    let mut workbook = calamine::Xlsx::new(std::io::Cursor::new(xlsx.bytes().await.unwrap().to_vec())).unwrap();
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.get_value((1, 1)), Some(&Data::String(names[0].into())), "a text cell, not a formula");
}
