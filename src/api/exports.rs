//! `/exports/customers`: the customer archive (客户档案) as a file, in the columns the
//! import reads: CSV (UTF-8 with a BOM, for Excel in China), NDJSON, or an .xlsx
//! workbook, by `Accept`. CSV and NDJSON are streamed a page of the keyset scan at a
//! time; a workbook is written in constant memory (rows go to a temporary file) and
//! streamed once it is complete, since a zip ends with its directory.

use std::io::Write;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream, StreamExt};

use crate::api::auth::{Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::filters::parse_filter;
use crate::api::schemas::{CsvTable, NdjsonLines, Workbook};
use crate::api::spreadsheet::{Format, NDJSON, XLSX};
use crate::api::{blocking_failed, AppState, FieldErrors};
use crate::domain::archive::{Layout, Value};
use crate::domain::formula;
use crate::error::{AppError, ErrorCode};
use crate::service::exchange::exports::{self, ExportScan};
use crate::store::archive::customer_filters::Filters;
use crate::store::exchange::exports::{ExportPage, Record};

/// Data rows a worksheet holds (Excel's 1,048,576 rows less the header); an export
/// with more goes on to a second sheet.
const ROWS_PER_SHEET: u32 = 1_048_575;

/// Bytes of a workbook sent at a time.
const CHUNK: usize = 64 * 1024;

fn parse_query(pairs: Vec<(String, String)>) -> Result<Filters, AppError> {
    let mut filters = Filters::default();
    let mut errors = FieldErrors::default();
    for (key, value) in pairs {
        if !parse_filter(&key, &value, &mut filters, &mut errors) {
            return Err(AppError::new(ErrorCode::InvalidQuery, format!("unknown query parameter {key:?}")));
        }
    }
    errors.finish()?;
    Ok(filters)
}

/// Export the customer archive
///
/// The archive (or what the list filters select) as CSV (UTF-8 with a BOM, formula-like texts
/// guarded), NDJSON or an .xlsx workbook, streamed page by page: the columns an import reads back.
#[utoipa::path(get, path = "/api/v1/exports/customers", tag = "customers", operation_id = "export_customers",
    params(
        ("category" = Option<Vec<String>>, Query, description = "`SCHEME:CODE`, repeatable, as on `GET /customers`", example = "REGION:01"),
        ("attr" = Option<Vec<String>>, Query, description = "`KEY:OP:VALUE`, repeatable, as on `GET /customers`"),
        ("unclassified" = Option<Vec<String>>, Query, description = "Scheme code: customers with no category there"),
        ("q" = Option<String>, Query, description = "Substring of code, name or short name"),
        ("status" = Option<crate::domain::customer::CustomerStatus>, Query, description = "active or inactive"),
        ("missing" = Option<Vec<String>>, Query, description = "A field that must be empty, or `attr:KEY`, as on `GET /customers`"),
        ("dormant_days" = Option<i64>, Query, minimum = 1, maximum = 3650, description = "Dormant customers, as on `GET /customers`"),
        ("classified" = Option<bool>, Query, description = "In a category of some scheme (true) or of none (false)"),
    ),
    responses(
        (status = 200, description = "Every matching customer by code: its fields, then `category:SCHEME` for every scheme, then `attr:KEY` for every attribute (values set on the customer; a default stays empty). CSV without `Accept` or for `*/*`", content(
            (CsvTable = "text/csv"),
            (NdjsonLines = "application/x-ndjson"),
            (Workbook = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "`attachment` with a file name"))),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`not_acceptable`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`scheme_not_found`, `category_not_found`, `attribute_not_found`, `invalid_filter`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export_customers(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::negotiate_among(&req, &[Format::Csv, Format::Ndjson, Format::Xlsx])?;
    let mut filters = parse_query(query.into_inner())?;
    filters.restrict_to(auth.caller.restriction);
    let (pages, first) = exports::open(&state.db, filters).await?;
    let layout = pages.layout.clone();
    let stem = format!("customers-{}", chrono::Utc::now().date_naive());
    let (content_type, extension) = match format {
        Format::Ndjson => (NDJSON, "ndjson"),
        Format::Xlsx => (XLSX, "xlsx"),
        Format::Csv | Format::Json => ("text/csv; charset=utf-8", "csv"),
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{stem}.{extension}\"")));
    Ok(match format {
        Format::Ndjson => {
            response.streaming(pages.pages(first).map(move |page| page.and_then(|page| ndjson(&layout, &page))))
        }
        Format::Xlsx => response.streaming(workbook(pages, first)),
        Format::Csv | Format::Json => {
            let header = csv_bytes(true, &layout.header(), &[]);
            response.streaming(
                stream::once(async move { header })
                    .chain(pages.pages(first).map(|page| page.and_then(|page| csv_bytes(false, &[], &page.records)))),
            )
        }
    })
}

/// Records as CSV lines; with `header`, the byte-order mark and the header row first.
/// Texts that a spreadsheet would run as formulas are written guarded (`domain::formula`).
fn csv_bytes(header: bool, columns: &[String], records: &[Record]) -> Result<Bytes, AppError> {
    let start = if header { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(start);
    let fail = |e: csv::Error| AppError::internal(format!("writing CSV: {e}"));
    if header {
        writer.write_record(columns).map_err(fail)?;
    }
    for record in records {
        writer
            .write_record(record.iter().map(|cell| match cell {
                Some(Value::Text(text)) => formula::guard(text).into_owned(),
                Some(value) => value.text(),
                None => String::new(),
            }))
            .map_err(fail)?;
    }
    writer.into_inner().map(Bytes::from).map_err(|e| AppError::internal(format!("writing CSV: {e}")))
}

/// Records as JSON objects a line, keyed by the column headers; empty cells left out.
fn ndjson(layout: &Layout, page: &ExportPage) -> Result<Bytes, AppError> {
    let columns = layout.header();
    let mut lines = Vec::new();
    for record in &page.records {
        let object: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .zip(record)
            .filter_map(|(column, cell)| cell.as_ref().map(|value| (column.clone(), value.json())))
            .collect();
        serde_json::to_writer(&mut lines, &object).map_err(|e| AppError::internal(format!("writing NDJSON: {e}")))?;
        lines.push(b'\n');
    }
    Ok(Bytes::from(lines))
}

/// A workbook of every page, rows written as they are read (on the blocking pool, with
/// the page's connection) and the file streamed once complete.
fn workbook(pages: ExportScan, first: ExportPage) -> impl Stream<Item = Result<Bytes, AppError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, AppError>>(4);
    actix_web::rt::spawn(async move {
        let failed = sender.clone();
        if let Err(error) = write_workbook(pages, first, sender).await {
            let _ = failed.send(Err(error)).await;
        }
    });
    stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|chunk| (chunk, receiver)) })
}

async fn write_workbook(
    pages: ExportScan,
    first: ExportPage,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, AppError>>,
) -> Result<(), AppError> {
    let header = pages.layout.header();
    let mut sheets =
        web::block(move || Sheets::new(header)).await.map_err(blocking_failed("writing the workbook"))??;
    let mut page = first;
    loop {
        let after = page.after.take();
        sheets = web::block(move || sheets.write(&page.records).map(|()| sheets))
            .await
            .map_err(blocking_failed("writing the workbook"))??;
        match after {
            Some(code) => page = pages.after(code).await?,
            None => break,
        }
    }
    web::block(move || {
        let mut body = ChunkSender { sender, buffer: Vec::with_capacity(CHUNK) };
        sheets.workbook.save_to_writer(&mut body).map_err(xlsx_failed)?;
        body.flush().map_err(|e| AppError::internal(format!("sending the workbook: {e}")))
    })
    .await
    .map_err(blocking_failed("writing the workbook"))?
}

fn xlsx_failed(error: rust_xlsxwriter::XlsxError) -> AppError {
    AppError::internal(format!("writing the workbook: {error}"))
}

/// The workbook being written: the sheet being filled and its next row.
struct Sheets {
    workbook: rust_xlsxwriter::Workbook,
    header: Vec<String>,
    bold: rust_xlsxwriter::Format,
    row: u32,
}

impl Sheets {
    fn new(header: Vec<String>) -> Result<Self, AppError> {
        let mut sheets = Sheets {
            workbook: rust_xlsxwriter::Workbook::new(),
            header,
            bold: rust_xlsxwriter::Format::new().set_bold(),
            row: 0,
        };
        sheets.add_sheet()?;
        Ok(sheets)
    }

    fn add_sheet(&mut self) -> Result<(), AppError> {
        let number = self.workbook.worksheets().len() + 1;
        let sheet = self.workbook.add_worksheet_with_constant_memory().map_err(xlsx_failed)?;
        sheet
            .set_name(if number == 1 { "customers".to_string() } else { format!("customers {number}") })
            .map_err(xlsx_failed)?;
        for (column, name) in self.header.iter().enumerate() {
            sheet.write_string_with_format(0, column as u16, name, &self.bold).map_err(xlsx_failed)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(xlsx_failed)?;
        self.row = 1;
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> Result<(), AppError> {
        for record in records {
            if self.row > ROWS_PER_SHEET {
                self.add_sheet()?;
            }
            let row = self.row;
            let sheet = self.workbook.worksheets_mut().last_mut().expect("a sheet was added");
            for (column, cell) in record.iter().enumerate() {
                let column = column as u16;
                match cell {
                    Some(Value::Text(text)) => sheet.write_string(row, column, text).map(drop),
                    Some(Value::Number(number)) => {
                        sheet.write_number(row, column, number.as_f64().unwrap_or_default()).map(drop)
                    }
                    Some(Value::Boolean(flag)) => sheet.write_boolean(row, column, *flag).map(drop),
                    None => Ok(()),
                }
                .map_err(xlsx_failed)?;
            }
            self.row += 1;
        }
        Ok(())
    }
}

/// The workbook's bytes to the response body, a chunk at a time; a client that went
/// away ends the writing.
struct ChunkSender {
    sender: tokio::sync::mpsc::Sender<Result<Bytes, AppError>>,
    buffer: Vec<u8>,
}

impl Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/exports/customers").route(web::get().to(export_customers)));
}
