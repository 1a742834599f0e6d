//! Importing the customer archive (客户档案导入) from CSV (UTF-8 and GB18030), NDJSON and .xlsx.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::exports::archive;
use crate::helpers::{assert_read_model_agrees, ok_json, problem, spawn_app, with_connection, Backend, TestApp};

both_backends!(
    an_import_reads_each_format_and_both_encodings,
    an_atomic_import_with_bad_rows_writes_nothing_and_lists_every_error,
    a_partial_import_lands_the_good_rows,
    an_upsert_leaves_empty_cells_and_clears_null,
    a_dry_run_checks_everything_and_writes_nothing,
    an_async_import_shows_its_progress_and_then_its_report,
    an_export_imported_again_changes_nothing,
    malformed_files_answer_400_with_row_and_byte,
    bad_imports_are_problems,
    an_import_keys_its_new_customers_for_duplicates_once_it_commits,
    an_import_of_many_chunks_lands_whole_with_its_counts_members_and_history,
    an_import_refused_in_its_last_chunk_leaves_nothing_of_the_earlier_ones,
    an_atomic_import_is_never_seen_in_part,
    a_browser_form_uploads_the_file_as_multipart,
    row_errors_come_in_row_order,
);
both_backends!(backend: an_import_whose_service_is_killed_is_recorded_interrupted_and_the_file_imports_again);

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const HEADER: &str = "code,name,tax_id,phone,category:REGION,category:TIER,attr:discount_rate,attr:vip_since";

async fn send(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.admin(Method::POST, &format!("/api/v1/imports/customers{query}"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn csv(app: &TestApp, query: &str, text: &str) -> reqwest::Response {
    send(app, query, "text/csv", text.as_bytes().to_vec()).await
}

/// The rows of the reports that the counters give: the REGION distribution and the
/// REGION × TIER cross-tab.
async fn counted_reports(app: &TestApp) -> Vec<Value> {
    let mut rows = Vec::new();
    for path in ["/api/v1/reports/distribution?scheme=REGION", "/api/v1/reports/crosstab?rows=REGION&cols=TIER"] {
        rows.push(ok_json(app.get(path).await, StatusCode::OK).await["rows"].clone());
    }
    rows
}

/// Asserts that the counters an import wrote equal a recount from the assignments.
async fn assert_counters_equal_a_recount(app: &TestApp) {
    let counted = counted_reports(app).await;
    with_connection(app, |conn| custclass::store::reporting::counts::recount(conn).unwrap()).await;
    assert_eq!(counted_reports(app).await, counted, "the counters the import wrote equal a recount");
}

/// Asserts the counts of a report.
fn assert_counts(report: &Value, created: u64, updated: u64, unchanged: u64, failed: u64) {
    let counts = [&report["created"], &report["updated"], &report["unchanged"], &report["failed"]];
    assert_eq!(counts, [&json!(created), &json!(updated), &json!(unchanged), &json!(failed)], "{report:#}");
}

async fn customer(app: &TestApp, code: &str) -> Value {
    ok_json(app.get(&format!("/api/v1/customers/{code}")).await, StatusCode::OK).await
}

fn category_of(customer: &Value, scheme: &str) -> Option<String> {
    customer["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scheme"] == scheme)
        .map(|a| a["category"].as_str().unwrap().to_string())
}

fn workbook(rows: &[Vec<Value>]) -> Vec<u8> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match cell {
                Value::String(text) => drop(sheet.write_string(r, c, text).unwrap()),
                Value::Number(number) => drop(sheet.write_number(r, c, number.as_f64().unwrap()).unwrap()),
                Value::Bool(flag) => drop(sheet.write_boolean(r, c, *flag).unwrap()),
                _ => {}
            }
        }
    }
    workbook.save_to_buffer().unwrap()
}

async fn an_import_reads_each_format_and_both_encodings(app: TestApp) {
    archive(&app).await;
    let utf8 = format!(
        "\u{FEFF}{HEADER}\r\nB1,上海精密仪器有限公司,91350100M000100Y43,13800138000,0101,01,0.3,2025-06-01\r\n"
    );
    let report = ok_json(csv(&app, "", &utf8).await, StatusCode::OK).await;
    assert_counts(&report, 1, 0, 0, 0);
    assert_eq!(
        (report["status"].as_str(), report["format"].as_str(), report["rows_total"].as_i64()),
        (Some("succeeded"), Some("csv"), Some(1))
    );
    let b1 = customer(&app, "B1").await;
    assert_eq!(
        (b1["name"].as_str(), b1["tax_id"].as_str(), b1["phone"].as_str()),
        (Some("上海精密仪器有限公司"), Some("91350100M000100Y43"), Some("13800138000"))
    );
    assert_eq!((category_of(&b1, "REGION"), category_of(&b1, "TIER")), (Some("0101".into()), Some("01".into())));
    assert_eq!(b1["attributes"]["discount_rate"], json!(0.3));
    assert_eq!(b1["attributes"]["vip_since"], json!("2025-06-01"));
    let history = app.full_history("B1").await;
    assert!(history.iter().all(|entry| entry["source"] == "import"), "{history:#?}");
    assert_eq!(history.len(), 2);

    // Chinese Excel's "CSV" is GB18030: by charset, and detected when the bytes are not UTF-8.
    let chinese = format!("{HEADER}\nB2,广州新星贸易有限公司,,,02,02,,\n");
    let (gb, _, _) = encoding_rs::GB18030.encode(&chinese);
    assert_counts(
        &ok_json(send(&app, "", "text/csv; charset=gb18030", gb.to_vec()).await, StatusCode::OK).await,
        1,
        0,
        0,
        0,
    );
    assert_eq!(customer(&app, "B2").await["name"], "广州新星贸易有限公司");
    let shenzhen = chinese.replace("B2,广州", "B3,深圳");
    let (gb, _, _) = encoding_rs::GB18030.encode(&shenzhen);
    assert_counts(&ok_json(send(&app, "", "text/csv", gb.to_vec()).await, StatusCode::OK).await, 1, 0, 0, 0);
    assert_eq!(customer(&app, "B3").await["name"], "深圳新星贸易有限公司");

    let lines = [
        json!({"code": "B4", "name": "杭州数码", "category:REGION": "0101", "category:TIER": "01", "attr:discount_rate": 0.2}),
        json!({"code": "B5", "name": "天津物流", "phone": null, "category:REGION": "02"}),
    ];
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let report = ok_json(send(&app, "", "application/x-ndjson", body.into_bytes()).await, StatusCode::OK).await;
    assert_counts(&report, 2, 0, 0, 0);
    assert_eq!(customer(&app, "B4").await["attributes"]["discount_rate"], json!(0.2));
    assert_eq!(category_of(&customer(&app, "B5").await, "TIER"), None, "TIER has no default");

    let rows = vec![
        HEADER.split(',').map(|h| json!(h)).collect::<Vec<_>>(),
        vec![
            json!("B6"),
            json!("成都软件有限公司"),
            json!(""),
            json!(13912345678.0),
            json!("02"),
            json!("01"),
            json!(0.15),
            json!("2024-12-31"),
        ],
    ];
    let report = ok_json(send(&app, "", XLSX, workbook(&rows)).await, StatusCode::OK).await;
    assert_counts(&report, 1, 0, 0, 0);
    assert_eq!(report["format"], "xlsx");
    let b6 = customer(&app, "B6").await;
    assert_eq!(b6["phone"], "13912345678", "a phone typed as a number reads as its digits");
    assert_eq!(b6["attributes"]["discount_rate"], json!(0.15));
    assert_eq!(category_of(&b6, "TIER"), Some("01".into()));

    let counts = ok_json(app.get("/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;
    let vip = counts["rows"].as_array().unwrap().iter().find(|row| row["code"] == "01").unwrap()["customers"].clone();
    assert_eq!(vip, json!(5), "A1, A2, B1, B4 and B6 are counted in VIP: {counts:#}");
    assert_counters_equal_a_recount(&app).await;
    assert_read_model_agrees(&app).await;
}

async fn an_atomic_import_with_bad_rows_writes_nothing_and_lists_every_error(app: TestApp) {
    archive(&app).await;
    let before = customer(&app, "A2").await;
    let text = format!(
        "{HEADER}\n\
         C1,好客户,,,0101,01,,\n\
         C2,坏税号,91350100M000100Y44,,0101,,,\n\
         C3,,,,01,03,0.9,\n\
         A2,北京贸易改名,,12,,,,\n\
         C1,重复,,,02,,,\n\
         C4,重复税号,91310000MA1FL8TQ36,,02,,,\n"
    );
    let body = problem(csv(&app, "", &text).await, StatusCode::UNPROCESSABLE_ENTITY, "import_rejected").await;
    let mut found: Vec<(u64, String, String)> = body["row_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().unwrap_or("").to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(u64, String, String)> = [
        (3, "tax_id", "invalid_value"),
        (4, "attr:discount_rate", "attribute_not_defined"),
        (4, "category:REGION", "category_not_leaf"),
        (4, "category:TIER", "category_not_found"),
        (4, "name", "required"),
        (5, "phone", "invalid_value"),
        (6, "code", "duplicate_in_file"),
        (7, "tax_id", "duplicate_tax_id"),
    ]
    .iter()
    .map(|(row, column, code)| (*row, column.to_string(), code.to_string()))
    .collect();
    assert_eq!(found, expected, "{body:#}");
    assert!(body["detail"].as_str().unwrap().contains("nothing was written"));
    problem(app.get("/api/v1/customers/C1").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    assert_eq!(customer(&app, "A2").await, before, "the good rows were not written either");
}

async fn a_partial_import_lands_the_good_rows(app: TestApp) {
    archive(&app).await;
    let text = format!("{HEADER}\nC1,好客户,,,0101,01,,\nC2,坏分类,,,09,,,\nA2,北京贸易集团,,,,,,\n");
    let report = ok_json(csv(&app, "?atomic=false", &text).await, StatusCode::OK).await;
    assert_counts(&report, 1, 1, 0, 1);
    assert_eq!(
        report["errors"],
        json!([{"row": 3, "column": "category:REGION", "code": "category_not_found", "message": "no category 09 in scheme REGION"}])
    );
    assert_eq!(customer(&app, "C1").await["name"], "好客户");
    assert_eq!(customer(&app, "A2").await["name"], "北京贸易集团");
    problem(app.get("/api/v1/customers/C2").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    let id = report["id"].as_str().unwrap();
    let stored = ok_json(app.get(&format!("/api/v1/imports/{id}")).await, StatusCode::OK).await;
    assert_eq!(
        (stored["status"].as_str(), stored["failed"].as_u64(), stored["rows_done"].as_u64()),
        (Some("succeeded"), Some(1), Some(3))
    );
}

async fn an_upsert_leaves_empty_cells_and_clears_null(app: TestApp) {
    archive(&app).await;
    let text =
        "code,name,short_name,phone,email,note,category:REGION,category:TIER,attr:discount_rate,attr:vip_since\n\
                A1,,,,NULL,新备注,02,,NULL,\n";
    let report = ok_json(csv(&app, "", text).await, StatusCode::OK).await;
    assert_counts(&report, 0, 1, 0, 0);
    let a1 = customer(&app, "A1").await;
    assert_eq!(
        (a1["name"].as_str(), a1["short_name"].as_str(), a1["phone"].as_str()),
        (Some("上海电子有限公司"), Some("上海电子"), Some("021-5555 0101")),
        "empty cells keep"
    );
    assert_eq!((a1["email"].clone(), a1["note"].as_str()), (Value::Null, Some("新备注")));
    assert_eq!((category_of(&a1, "REGION"), category_of(&a1, "TIER")), (Some("02".into()), Some("01".into())));
    assert_eq!(a1["attributes"]["discount_rate"], json!(0.1), "NULL clears the value; the default returns");
    assert_eq!(a1["attributes_from_default"], json!(["discount_rate"]));
    assert_eq!(a1["attributes"]["vip_since"], "2024-03-01");
    let history = app.full_history("A1").await;
    let last = history.last().unwrap();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str(), last["source"].as_str()),
        (Some("0101"), Some("02"), Some("import"))
    );

    let again = ok_json(csv(&app, "", text).await, StatusCode::OK).await;
    assert_counts(&again, 0, 0, 1, 0);
    let clear = ok_json(csv(&app, "", "code,category:TIER\nA2,NULL\n").await, StatusCode::OK).await;
    assert_counts(&clear, 0, 1, 0, 0);
    assert_eq!(category_of(&customer(&app, "A2").await, "TIER"), None, "NULL takes the customer out of the scheme");

    let create =
        ok_json(csv(&app, "?mode=create&atomic=false", "code,name\nA3,又一个\nD1,新客户\n").await, StatusCode::OK)
            .await;
    assert_counts(&create, 1, 0, 0, 1);
    assert_eq!(create["errors"][0]["code"], "duplicate_code");
}

async fn a_dry_run_checks_everything_and_writes_nothing(app: TestApp) {
    archive(&app).await;
    let text = format!("{HEADER}\nC1,好客户,,,0101,01,,\nA2,北京贸易改名,,,,,,\nC2,坏分类,,,09,,,\n");
    let report = ok_json(csv(&app, "?dry_run=true", &text).await, StatusCode::OK).await;
    assert_counts(&report, 1, 1, 0, 1);
    assert_eq!((report["dry_run"].as_bool(), report["error_count"].as_u64()), (Some(true), Some(1)));
    problem(app.get("/api/v1/customers/C1").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    assert_eq!(customer(&app, "A2").await["name"], "北京贸易");
}

async fn an_async_import_shows_its_progress_and_then_its_report(app: TestApp) {
    archive(&app).await;
    let mut text = String::from("code,name,category:REGION\n");
    for n in 0..2_500 {
        text.push_str(&format!("E{n:05},客户{n},02\n"));
    }
    let response = app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", "text/csv")
        .header("Prefer", "respond-async")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["preference-applied"], "respond-async");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let started = ok_json(response, StatusCode::ACCEPTED).await;
    assert_eq!(location, format!("/api/v1/imports/{}", started["id"].as_str().unwrap()));
    assert_eq!((started["status"].as_str(), started["rows_total"].as_u64()), (Some("running"), Some(2_500)));
    let mut seen = Vec::new();
    let finished = loop {
        let state = ok_json(app.get(&location).await, StatusCode::OK).await;
        seen.push(state["rows_done"].as_u64().unwrap());
        if state["status"] != "running" {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "progress only grows: {seen:?}");
    assert_eq!(finished["status"], "succeeded");
    assert_counts(&finished, 2_500, 0, 0, 0);
    assert_eq!(finished["rows_done"], 2_500);
    assert!(finished["finished_at"].is_string());
    let counts = ok_json(app.get("/api/v1/reports/distribution?scheme=REGION").await, StatusCode::OK).await;
    let north = counts["rows"].as_array().unwrap().iter().find(|row| row["code"] == "02").unwrap()["customers"].clone();
    assert_eq!(north, json!(2_502));
    problem(app.get("/api/v1/imports/nope").await, StatusCode::NOT_FOUND, "import_not_found").await;
}

async fn an_export_imported_again_changes_nothing(app: TestApp) {
    let key = archive(&app).await;
    for (accept, content_type) in
        [("text/csv", "text/csv"), ("application/x-ndjson", "application/x-ndjson"), (XLSX, XLSX)]
    {
        let file = app
            .request(Method::GET, "/api/v1/exports/customers")
            .bearer_auth(&key)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(file.status(), StatusCode::OK);
        let bytes = file.bytes().await.unwrap().to_vec();
        let report = ok_json(send(&app, "", content_type, bytes).await, StatusCode::OK).await;
        assert_counts(&report, 0, 0, 3, 0);
    }
    assert_eq!(customer(&app, "A1").await["version"], json!(1), "nothing was rewritten");
}

async fn malformed_files_answer_400_with_row_and_byte(app: TestApp) {
    archive(&app).await;
    let body = problem(
        csv(&app, "", "code,name\nC1,ok\nC2,\"never closed\n").await,
        StatusCode::BAD_REQUEST,
        "malformed_file",
    )
    .await;
    assert_eq!(
        (body["row_errors"][0]["row"].as_u64(), body["row_errors"][0]["byte"].as_u64()),
        (Some(3), Some(19)),
        "{body:#}"
    );
    let body = problem(csv(&app, "", "code,name\nC1,\"A\"B\n").await, StatusCode::BAD_REQUEST, "malformed_file").await;
    assert_eq!((body["row_errors"][0]["row"].as_u64(), body["row_errors"][0]["byte"].as_u64()), (Some(2), Some(16)));
    let body = problem(
        send(&app, "", "text/csv", b"code,name\nC1,\xff\xfe\n".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "malformed_file",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("neither UTF-8 nor GB18030"), "{body:#}");
    assert_eq!(body["row_errors"][0]["byte"], 13);

    let mut truncated = workbook(&[vec![json!("code"), json!("name")], vec![json!("C1"), json!("x")]]);
    truncated.truncate(truncated.len() / 2);
    let body = problem(send(&app, "", XLSX, truncated).await, StatusCode::BAD_REQUEST, "malformed_file").await;
    assert!(body["detail"].as_str().unwrap().contains("not a readable .xlsx workbook"), "{body:#}");

    let body = problem(
        send(&app, "", "application/x-ndjson", b"{\"code\": \"C1\"}\n{\"code\": \n".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "malformed_file",
    )
    .await;
    assert_eq!(body["row_errors"][0]["row"], 2);
    problem(app.get("/api/v1/customers/C1").await, StatusCode::NOT_FOUND, "customer_not_found").await;
}

async fn bad_imports_are_problems(app: TestApp) {
    archive(&app).await;
    let body = problem(
        csv(&app, "", "code,name,客户名称,category:NOPE\nC1,x,y,01\n").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_columns",
    )
    .await;
    let columns: Vec<&str> =
        body["row_errors"].as_array().unwrap().iter().map(|e| e["column"].as_str().unwrap()).collect();
    assert_eq!(columns, ["客户名称", "category:NOPE"]);
    let report =
        ok_json(csv(&app, "?ignore_unknown_columns=true", "code,name,客户名称\nC1,x,y\n").await, StatusCode::OK).await;
    assert_eq!(report["ignored_columns"], json!(["客户名称"]));
    assert_counts(&report, 1, 0, 0, 0);
    problem(csv(&app, "", "name,name\nx,y\n").await, StatusCode::UNPROCESSABLE_ENTITY, "repeated_columns").await;
    problem(csv(&app, "", "name\nx\n").await, StatusCode::UNPROCESSABLE_ENTITY, "code_column_missing").await;
    problem(
        send(&app, "", "application/json", b"[]".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    problem(
        send(&app, "", "text/csv; charset=latin1", b"code\n".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    problem(csv(&app, "?mode=replace", "code\nC1\n").await, StatusCode::BAD_REQUEST, "invalid_query").await;
    let reader = app.key("reader", "read").await;
    let refused = app
        .request(Method::POST, "/api/v1/imports/customers")
        .bearer_auth(reader)
        .header("Content-Type", "text/csv")
        .body("code\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let mut many = String::from("code\n");
    for n in 0..1_000_001 {
        many.push_str(&format!("R{n}\n"));
    }
    let body = problem(csv(&app, "", &many).await, StatusCode::PAYLOAD_TOO_LARGE, "import_too_large").await;
    assert!(body["detail"].as_str().unwrap().contains("1000001 data rows"), "{body:#}");
}

/// The duplicate keys of an import's new customers are written once it commits, outside
/// its transaction, without waiting for a search to compute them.
async fn an_import_keys_its_new_customers_for_duplicates_once_it_commits(app: TestApp) {
    archive(&app).await;
    let text = format!("{HEADER}\nK1,北京电子有限公司,,010-6552 9988,0101,01,,\nK2,（北京）电子有限公司,,(010) 65529988,0101,01,,\nK3,上海贸易,,,0101,01,,\n");
    assert_counts(&ok_json(csv(&app, "", &text).await, StatusCode::OK).await, 3, 0, 0, 0);
    let keyed = || {
        with_connection(&app, |conn| {
            use custclass::db::schema::{customer_match_keys, customers};
            use diesel::prelude::*;
            customer_match_keys::table
                .inner_join(customers::table)
                .filter(customers::code.eq_any(["K1", "K2", "K3"]))
                .count()
                .get_result::<i64>(conn)
                .unwrap()
        })
    };
    let mut waited = Duration::ZERO;
    while keyed().await < 3 {
        assert!(waited < Duration::from_secs(10), "the import's customers were not keyed within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let by_phone = ok_json(app.get("/api/v1/customers/duplicates?by=name,phone").await, StatusCode::OK).await;
    let found: Vec<(&str, Vec<&str>)> = by_phone["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            (
                group["key"].as_str().unwrap(),
                group["customers"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect(),
            )
        })
        .filter(|(_, codes): &(&str, Vec<&str>)| codes.iter().any(|code| code.starts_with('K')))
        .collect();
    assert_eq!(found, [("name", vec!["K1", "K2"]), ("phone", vec!["K1", "K2"])], "{by_phone:#}");
}

/// 3,500 new customers: four chunks, which on MySQL the import's own connection and its
/// second writer (an XA branch) share, committed together.
fn many_chunks() -> String {
    let mut text = format!("{HEADER}\n");
    for n in 1..=3500 {
        let (region, tier, rate) = match n % 3 {
            0 => ("0101", "01", "0.2"),
            1 => ("02", "02", ""),
            _ => ("02", "01", ""),
        };
        text.push_str(&format!("M{n:05},客户{n},,,{region},{tier},{rate},\n"));
    }
    text
}

/// The codes an export with `query` lists (`GET /customers` filters, every page).
async fn exported_codes(app: &TestApp, query: &str) -> Vec<String> {
    let response = app
        .admin(Method::GET, &format!("/api/v1/exports/customers{query}"))
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["code"].as_str().unwrap().to_string())
        .collect()
}

async fn an_import_of_many_chunks_lands_whole_with_its_counts_members_and_history(app: TestApp) {
    archive(&app).await;
    assert_counts(&ok_json(csv(&app, "", &many_chunks()).await, StatusCode::OK).await, 3500, 0, 0, 0);

    // A customer of the first chunk and of the last, and of each category pair.
    for (code, region, tier, rate) in [
        ("M00001", "02", "02", None),
        ("M01000", "02", "02", None),
        ("M03500", "02", "01", Some(0.1)),
        ("M03498", "0101", "01", Some(0.2)),
    ] {
        let found = customer(&app, code).await;
        assert_eq!(
            (category_of(&found, "REGION").as_deref(), category_of(&found, "TIER").as_deref()),
            (Some(region), Some(tier)),
            "{found:#}"
        );
        assert_eq!(found["attributes"]["discount_rate"].as_f64(), rate, "{code}: the file's rate, or VIP's default");
        let history: Vec<(Value, Value, Value)> = app
            .full_history(code)
            .await
            .iter()
            .map(|e| (e["scheme"].clone(), e["to"].clone(), e["source"].clone()))
            .collect();
        assert_eq!(history.len(), 2, "{code}: {history:?}");
        assert!(
            history.contains(&(json!("REGION"), json!(region), json!("import")))
                && history.contains(&(json!("TIER"), json!(tier), json!("import"))),
            "{code}: {history:?}"
        );
    }

    // Subtree filters read the memberships: 1,166 imported in 上海 (and A1), under 华东 too.
    let shanghai: Vec<String> = (1..=3500)
        .filter(|n| n % 3 == 0)
        .map(|n| format!("M{n:05}"))
        .chain(["A1".to_string()])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(exported_codes(&app, "?category=REGION:0101").await, shanghai);
    assert_eq!(exported_codes(&app, "?category=REGION:01").await, shanghai, "the parent's members");
    assert_eq!(exported_codes(&app, "?category=TIER:02").await.len(), 1167);

    let counts = ok_json(app.get("/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;
    let of = |code: &str| {
        counts["rows"].as_array().unwrap().iter().find(|row| row["code"] == code).unwrap()["customers"].clone()
    };
    assert_eq!((of("01"), of("02")), (json!(2333 + 2), json!(1167)), "{counts:#}");
    assert_counters_equal_a_recount(&app).await;
    assert_read_model_agrees(&app).await;
}

async fn an_import_refused_in_its_last_chunk_leaves_nothing_of_the_earlier_ones(app: TestApp) {
    archive(&app).await;
    let before = counted_reports(&app).await;
    let text = many_chunks().replace("M03400,客户3400,,,02,02,", "M03400,客户3400,,,09,02,");
    let body = problem(csv(&app, "", &text).await, StatusCode::UNPROCESSABLE_ENTITY, "import_rejected").await;
    assert_eq!(
        body["row_errors"],
        json!([{"row": 3401, "column": "category:REGION", "code": "category_not_found", "message": "no category 09 in scheme REGION"}])
    );
    problem(app.get("/api/v1/customers/M00001").await, StatusCode::NOT_FOUND, "customer_not_found").await;
    assert_eq!(exported_codes(&app, "").await, ["A1", "A2", "A3"]);
    assert!(app.full_history("A1").await.iter().all(|entry| entry["source"] != "import"));
    assert_eq!(counted_reports(&app).await, before, "the counters are as they were");
    // The same file, corrected, lands.
    assert_counts(&ok_json(csv(&app, "", &many_chunks()).await, StatusCode::OK).await, 3500, 0, 0, 0);
}

/// An atomic import is one transaction: while it runs, a reader sees none of its
/// customers, and once it sees the first it sees the last too, and the counters with them.
async fn an_atomic_import_is_never_seen_in_part(app: TestApp) {
    archive(&app).await;
    let population = |report: Value| report["population"].clone();
    let before = population(ok_json(app.get("/api/v1/reports/distribution?scheme=REGION").await, StatusCode::OK).await);
    let done = std::sync::atomic::AtomicBool::new(false);
    let importing = async {
        let answer = csv(&app, "", &many_chunks()).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let reading = async {
        let mut partial = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let first = app.get("/api/v1/customers/M00001").await.status();
            let last = app.get("/api/v1/customers/M03500").await.status();
            let counted =
                population(ok_json(app.get("/api/v1/reports/distribution?scheme=REGION").await, StatusCode::OK).await);
            if first == StatusCode::OK && (last != StatusCode::OK || counted == before) {
                partial.push((first, last, counted));
            }
        }
        partial
    };
    let (imported, partial) = tokio::join!(importing, reading);
    assert_counts(&ok_json(imported, StatusCode::OK).await, 3500, 0, 0, 0);
    assert!(partial.is_empty(), "a reader saw the import in part: {partial:?}");
    let after = population(ok_json(app.get("/api/v1/reports/distribution?scheme=REGION").await, StatusCode::OK).await);
    assert_eq!(after.as_i64().unwrap() - before.as_i64().unwrap(), 3500);
}

/// A body as Chrome sends a form with one file input: `multipart/form-data` with a
/// WebKit boundary, the part named `file` with its file name and type.
fn form_with_file(file_name: &str, content_type: &str, content: &[u8], other_part: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    if let Some(name) = other_part {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\nx\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn a_browser_form_uploads_the_file_as_multipart(app: TestApp) {
    archive(&app).await;
    let text = format!("\u{FEFF}{HEADER}\r\nM1,苏州精工,,,0101,01,,\r\n");
    let (content_type, body) = form_with_file("客户.csv", "text/csv", text.as_bytes(), None);
    let report = ok_json(send(&app, "", &content_type, body).await, StatusCode::OK).await;
    assert_counts(&report, 1, 0, 0, 0);
    assert_eq!(report["format"], "csv");
    assert_eq!(customer(&app, "M1").await["name"], "苏州精工");

    // Windows names a .csv file application/vnd.ms-excel; the extension decides, and a
    // GB18030 file is found as such.
    let chinese = format!("{HEADER}\nM2,无锡纺织,,,02,,,\n");
    let (gb, _, _) = encoding_rs::GB18030.encode(&chinese);
    let (content_type, body) = form_with_file("客户.csv", "application/vnd.ms-excel", &gb, None);
    assert_counts(&ok_json(send(&app, "", &content_type, body).await, StatusCode::OK).await, 1, 0, 0, 0);
    assert_eq!(customer(&app, "M2").await["name"], "无锡纺织");

    let rows = vec![
        HEADER.split(',').map(|h| json!(h)).collect::<Vec<_>>(),
        vec![json!("M3"), json!("常州电机"), json!(""), json!(""), json!("02"), json!(""), json!(""), json!("")],
    ];
    let (content_type, body) = form_with_file("archive.xlsx", "application/octet-stream", &workbook(&rows), None);
    let report = ok_json(send(&app, "?atomic=false", &content_type, body).await, StatusCode::OK).await;
    assert_eq!(report["format"], "xlsx");
    assert_eq!(customer(&app, "M3").await["name"], "常州电机");

    // Neither a known extension nor a type: the first bytes tell a workbook from text.
    let (content_type, body) = form_with_file("upload", "application/octet-stream", &workbook(&rows), None);
    assert_eq!(
        ok_json(send(&app, "?atomic=false&dry_run=true", &content_type, body).await, StatusCode::OK).await["format"],
        "xlsx"
    );
    let (content_type, body) = form_with_file("upload", "application/octet-stream", text.as_bytes(), None);
    let report = ok_json(send(&app, "", &content_type, body).await, StatusCode::OK).await;
    assert_eq!((&report["format"], &report["unchanged"]), (&json!("csv"), &json!(1)), "{report}");

    let (content_type, body) = form_with_file("客户.csv", "text/csv", text.as_bytes(), Some("note"));
    problem(send(&app, "", &content_type, body).await, StatusCode::BAD_REQUEST, "invalid_multipart").await;
    let (content_type, body) = form_with_file("notes.pdf", "application/pdf", b"%PDF", None);
    problem(send(&app, "", &content_type, body).await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        .await;
    problem(
        send(&app, "", "multipart/form-data; boundary=x", b"--x--\r\n".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "invalid_multipart",
    )
    .await;
}

/// Errors found as rows are read and those found against the archive as their chunk is
/// written come out in file order.
async fn row_errors_come_in_row_order(app: TestApp) {
    archive(&app).await;
    let mut text = format!("{HEADER}\n");
    for row in 0..2_500 {
        // Every row fails: odd rows on reading (a bad phone), even rows against the
        // archive (no category 09).
        if row % 2 == 0 {
            text.push_str(&format!("E{row},名{row},,,09,,,\n"));
        } else {
            text.push_str(&format!("E{row},名{row},,12,,,,\n"));
        }
    }
    let report = ok_json(csv(&app, "?atomic=false", &text).await, StatusCode::OK).await;
    let rows: Vec<u64> =
        report["errors"].as_array().unwrap().iter().map(|error| error["row"].as_u64().unwrap()).collect();
    assert_eq!(rows.len(), 2_500, "{}", report["error_count"]);
    assert!(rows.windows(2).all(|pair| pair[0] <= pair[1]), "row errors in row order");
}

/// `kill -9` of the service in the middle of an atomic import: the same file sent again
/// at once imports whole, and another replica (here the test's own process) records the
/// killed import `failed` with the reason `interrupted` (SQLite at once, its file served
/// by one process; MySQL once the heartbeat is 15 s old), nothing of it in the archive.
async fn an_import_whose_service_is_killed_is_recorded_interrupted_and_the_file_imports_again(backend: Backend) {
    let app = spawn_app(backend).await;
    archive(&app).await;
    const ROWS: usize = 60_000;
    let mut text = format!("{HEADER}\n");
    for row in 0..ROWS {
        text.push_str(&format!("K{row:06},客户{row},,,0101,01,,\n"));
    }
    let service = app.serve_binary(&[]).await;
    let started = service
        .app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", "text/csv")
        .header("Prefer", "respond-async")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    let started = ok_json(started, StatusCode::ACCEPTED).await;
    let location = format!("/api/v1/imports/{}", started["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let progress = ok_json(service.app.get(&location).await, StatusCode::OK).await;
        assert_eq!(progress["status"], "running", "killed before it ends: {progress}");
        if progress["rows_done"].as_u64().unwrap() >= 2_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the import did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.kill();

    // Sent again at once, while the server may still be rolling the killed import back.
    let again = app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", "text/csv")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    let report = ok_json(again, StatusCode::OK).await;
    assert_counts(&report, ROWS as u64, 0, 0, 0);
    assert_eq!(customer(&app, "K059999").await["name"], "客户59999");

    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let interrupted = loop {
        let import = ok_json(app.get(&location).await, StatusCode::OK).await;
        if import["status"] != "running" {
            break import;
        }
        assert_eq!(
            backend,
            Backend::Mysql,
            "on SQLite a running import no process runs is never shown running: {import}"
        );
        assert!(std::time::Instant::now() < deadline, "still running 40 s after its service was killed: {import}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(interrupted["status"], "failed", "{interrupted}");
    assert!(interrupted["failure"].as_str().unwrap().starts_with("interrupted:"), "{interrupted}");
    assert!(interrupted["finished_at"].is_string(), "{interrupted}");
    let history = app.full_history("K000000").await;
    assert_eq!(history.len(), 2, "one creation's history (REGION and TIER), the re-sent import's: {history:#?}");
    assert!(
        history.iter().all(|entry| entry["reason"] == json!(format!("import {}", report["id"].as_str().unwrap()))),
        "{history:#?}"
    );
}
