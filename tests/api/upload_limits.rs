//! Uploads that would exhaust memory are refused before they are expanded: a header of
//! thousands of columns, a workbook whose parts unpack to gigabytes, a row of millions
//! of cells, a workbook whose `dimension` lies about its rows. Each answers a small
//! problem+json, and the service process (the binary, measured by its `VmHWM`) stays
//! under 200 MB while it answers.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{ok_json, spawn_app, Backend, ServiceProcess, TestApp};

both_backends!(backend: bombs_are_refused_small_and_the_service_stays_under_200_mb);
both_backends!(refused_headers_are_brief);

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PEAK_LIMIT: u64 = 200 * 1024 * 1024;

/// Writes a workbook part as it goes (it may write a great deal).
type PartWriter<'a> = &'a dyn Fn(&mut dyn Write);

/// A workbook of the parts a reader needs, with `sheet` as its one sheet and, when
/// given, its shared strings as `shared_strings` writes them.
fn workbook(sheet: &[u8], shared_strings: Option<PartWriter>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    let shared_type = if shared_strings.is_some() {
        r#"<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>"#
    } else {
        ""
    };
    let parts: Vec<(&str, String)> = vec![
        ("[Content_Types].xml", format!(r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>{shared_type}</Types>"#)),
        ("_rels/.rels", r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.into()),
        ("xl/workbook.xml", r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="customers" sheetId="1" r:id="rId1"/></sheets></workbook>"#.into()),
        ("xl/_rels/workbook.xml.rels", format!(r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>{}</Relationships>"#,
            if shared_strings.is_some() { r#"<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>"# } else { "" })),
    ];
    for (name, text) in parts {
        zip.start_file(name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.start_file("xl/worksheets/sheet1.xml", options).unwrap();
    zip.write_all(sheet).unwrap();
    if let Some(write_shared) = shared_strings {
        zip.start_file("xl/sharedStrings.xml", options).unwrap();
        write_shared(&mut zip);
    }
    zip.finish().unwrap().into_inner()
}

fn sheet(dimension: &str, rows: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut xml = format!(r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>"#).into_bytes();
    rows(&mut xml);
    xml.extend_from_slice(b"</sheetData></worksheet>");
    xml
}

fn text_cell(xml: &mut Vec<u8>, at: &str, text: &str) {
    write!(xml, r#"<c r="{at}" t="inlineStr"><is><t>{text}</t></is></c>"#).unwrap();
}

/// Sends the file to the process and expects a refusal with `code` in a small body.
async fn refused(
    service: &ServiceProcess,
    what: &str,
    content_type: &str,
    file: Vec<u8>,
    status: StatusCode,
    code: &str,
) {
    let sent = file.len();
    let response = service
        .app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", content_type)
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(response.headers()["content-type"], "application/problem+json", "{what}");
    let body = response.bytes().await.unwrap();
    assert!(body.len() < 16 * 1024, "{what}: a small answer, not {} bytes", body.len());
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], code, "{what}: {problem}");
    let peak = service.peak_resident_bytes();
    assert!(peak < PEAK_LIMIT, "{what} ({sent} bytes sent): the service peaked at {} MB", peak / (1024 * 1024));
}

async fn bombs_are_refused_small_and_the_service_stays_under_200_mb(backend: Backend) {
    let app: TestApp = spawn_app(backend).await;
    let service = app.serve_binary(&[]).await;

    let wide: Vec<String> = (0..10_000).map(|n| format!("c{n}")).collect();
    refused(
        &service,
        "a CSV header of 10,000 unknown columns",
        "text/csv",
        format!("code,{}\nC1\n", wide.join(",")).into_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_columns",
    )
    .await;

    let far_right = workbook(
        &sheet("ACOF1", |xml| {
            xml.extend_from_slice(br#"<row r="1">"#);
            text_cell(xml, "ACOF1", "code");
            xml.extend_from_slice(b"</row>");
        }),
        None,
    );
    refused(
        &service,
        "a workbook with one header cell at column ACOF",
        XLSX,
        far_right,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_columns",
    )
    .await;

    let strings = workbook(
        &sheet("A1", |xml| {
            xml.extend_from_slice(br#"<row r="1"><c r="A1" t="s"><v>0</v></c></row>"#);
        }),
        Some(&|out: &mut dyn Write| {
            out.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#).unwrap();
            let block = b"<si><t>a</t></si>".repeat(4096);
            for _ in 0..2_000 {
                out.write_all(&block).unwrap();
            }
            out.write_all(b"</sst>").unwrap();
        }),
    );
    refused(
        &service,
        "a workbook whose shared strings unpack to 139 MB (8 million strings)",
        XLSX,
        strings,
        StatusCode::PAYLOAD_TOO_LARGE,
        "workbook_too_large",
    )
    .await;

    let long_row = workbook(
        &sheet("A1:B2", |xml| {
            xml.extend_from_slice(br#"<row r="1">"#);
            text_cell(xml, "A1", "code");
            for _ in 0..3_000_000 {
                xml.extend_from_slice(br#"<c r="A1"><v>1</v></c>"#);
            }
            xml.extend_from_slice(b"</row>");
        }),
        None,
    );
    refused(
        &service,
        "a workbook with one row of 3,000,000 cells",
        XLSX,
        long_row,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_columns",
    )
    .await;

    let lying = workbook(
        &sheet("A1:B2", |xml| {
            xml.extend_from_slice(br#"<row r="1">"#);
            text_cell(xml, "A1", "code");
            text_cell(xml, "B1", "name");
            xml.extend_from_slice(b"</row>");
            for row in 2..=1_000_002u32 {
                write!(xml, r#"<row r="{row}"><c r="A{row}"><v>{row}</v></c></row>"#).unwrap();
            }
        }),
        None,
    );
    refused(
        &service,
        "a workbook whose dimension says 2 rows and that holds 1,000,002",
        XLSX,
        lying,
        StatusCode::PAYLOAD_TOO_LARGE,
        "import_too_large",
    )
    .await;

    let big_cell = workbook(
        &sheet("A1:B2", |xml| {
            xml.extend_from_slice(br#"<row r="1">"#);
            text_cell(xml, "A1", "code");
            text_cell(xml, "B1", "note");
            xml.extend_from_slice(br#"</row><row r="2">"#);
            text_cell(xml, "A2", "C1");
            text_cell(xml, "B2", &"x".repeat(50 * 1024 * 1024));
            xml.extend_from_slice(b"</row>");
        }),
        None,
    );
    refused(&service, "a workbook with a 50 MB cell", XLSX, big_cell, StatusCode::PAYLOAD_TOO_LARGE, "cell_too_large")
        .await;

    refused(
        &service,
        "a CSV with a 1 MB cell",
        "text/csv",
        format!("code,note\nC1,{}\n", "x".repeat(1024 * 1024)).into_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "cell_too_large",
    )
    .await;
    let wide_line = format!("{{\"code\":\"C1\",\"note\":\"{}\"}}\n", "x".repeat(8 * 1024 * 1024));
    refused(
        &service,
        "an NDJSON line of 8 MB",
        "application/x-ndjson",
        wide_line.into_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "row_too_large",
    )
    .await;
    let keys: Vec<String> = (0..300).map(|n| format!("\"k{n}\":1")).collect();
    refused(
        &service,
        "an NDJSON object of 300 keys",
        "application/x-ndjson",
        format!("{{\"code\":\"C1\",{}}}\n", keys.join(",")).into_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_columns",
    )
    .await;

    // Within the limits, a workbook still imports, and nothing refused was written.
    let fine = workbook(
        &sheet("A1:B2", |xml| {
            xml.extend_from_slice(br#"<row r="1">"#);
            text_cell(xml, "A1", "code");
            text_cell(xml, "B1", "name");
            xml.extend_from_slice(br#"</row><row r="2">"#);
            text_cell(xml, "A2", "W1");
            text_cell(xml, "B2", "无锡机械");
            xml.extend_from_slice(b"</row>");
        }),
        None,
    );
    let imported = service
        .app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", XLSX)
        .body(fine)
        .send()
        .await
        .unwrap();
    let report = ok_json(imported, StatusCode::OK).await;
    assert_eq!((&report["created"], &report["rows_total"]), (&serde_json::json!(1), &serde_json::json!(1)), "{report}");
    let listed = ok_json(app.get("/api/v1/customers").await, StatusCode::OK).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

/// An unknown-columns refusal names a few columns and counts the rest, however many
/// the file has.
async fn refused_headers_are_brief(app: TestApp) {
    let wide: Vec<String> = (0..150).map(|n| format!("列{n}")).collect();
    let response = app
        .admin(Method::POST, "/api/v1/imports/customers")
        .header("Content-Type", "text/csv")
        .body(format!("code,{}\n", wide.join(",")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "unknown_columns");
    assert_eq!(problem["row_errors"].as_array().unwrap().len(), 20, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("and 130 more"), "{problem}");
}
