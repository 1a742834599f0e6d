//! `POST /imports/customers`: the customer archive from a file (CSV in UTF-8 or
//! GB18030, NDJSON, .xlsx), and `GET /imports/{id}`: an import's progress and report.
//! The body is spooled and checked whole before any row is written; the rows are then
//! written on the blocking pool, a thousand at a time. With `Prefer: respond-async`
//! the answer is 202 once the file is checked, and the import goes on by itself.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::{Auth, Read, Restrictable, Write};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::runs::prefers_async;
use crate::api::schemas::{MultipartUpload, UploadedFile};
use crate::api::spreadsheet::{CSV, NDJSON, XLSX};
use crate::api::{blocking_failed, AppState};
use crate::domain::import::{ImportFormat, ImportMode, ImportStatus, RowError};
use crate::error::{AppError, ErrorCode};
use crate::service::exchange::import_files::{self, TextEncoding, Upload};
use crate::service::exchange::imports::{self as service, ImportJob};
use crate::store::exchange::imports::{self as store, ImportOptions, ImportRow};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `upsert` (default): existing codes are updated; `create`: they are refused.
    mode: Option<ImportMode>,
    /// true (default): every row lands or none does (422 lists every error); false: good rows land, bad ones are listed.
    atomic: Option<bool>,
    /// Check everything and write nothing.
    dry_run: Option<bool>,
    /// Leave out columns that are not customer fields, `category:SCHEME` or `attr:KEY` (default: refuse them).
    ignore_unknown_columns: Option<bool>,
}

/// An import: its options, progress, and once done its report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Import {
    #[schema(example = "6f1c0f9e-3b1e-4c55-9a43-0d8b7f2b1c11")]
    pub id: String,
    pub status: ImportStatus,
    pub format: ImportFormat,
    pub mode: ImportMode,
    pub atomic: bool,
    pub dry_run: bool,
    /// The API key's name that sent it.
    pub actor: String,
    /// Data rows in the file, when known before reading them.
    pub rows_total: Option<i64>,
    pub rows_done: i64,
    pub created: Option<u64>,
    pub updated: Option<u64>,
    pub unchanged: Option<u64>,
    pub failed: Option<u64>,
    /// Every error of every row (the first 10,000; `error_count` counts all).
    pub errors: Vec<RowError>,
    pub error_count: Option<u64>,
    /// Columns left out with `ignore_unknown_columns=true`.
    pub ignored_columns: Vec<String>,
    /// Why a failed import stopped.
    pub failure: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Import {
    /// `in_memory` is the import's progress in this process (`RunningImports`), read
    /// before the row: that progress is dropped only once the row holds the end, so
    /// that, read in this order, a missing one means the row is the latest word. Read
    /// after the row, a running row could meet progress dropped meanwhile, and show 0.
    fn of(row: ImportRow, in_memory: Option<u64>) -> Result<Self, AppError> {
        let report = row.report()?;
        let live = in_memory.map_or(row.rows_done, |done| (done as i64).max(row.rows_done));
        let tally = report.as_ref().map(|r| &r.tally);
        Ok(Import {
            status: row.status,
            format: row.format,
            mode: row.mode,
            atomic: row.atomic,
            dry_run: row.dry_run,
            actor: row.actor,
            rows_total: row.rows_total,
            rows_done: live,
            created: tally.map(|t| t.created),
            updated: tally.map(|t| t.updated),
            unchanged: tally.map(|t| t.unchanged),
            failed: tally.map(|t| t.failed),
            errors: tally.map(|t| t.errors.clone()).unwrap_or_default(),
            error_count: tally.map(|t| t.error_count),
            ignored_columns: tally.map(|t| t.ignored_columns.clone()).unwrap_or_default(),
            failure: report.and_then(|r| r.failure),
            started_at: row.started_at.and_utc(),
            finished_at: row.finished_at.map(|at| at.and_utc()),
            id: row.id,
        })
    }
}

fn unsupported(detail: String) -> AppError {
    AppError::new(ErrorCode::UnsupportedMediaType, detail)
}

const MULTIPART: &str = "multipart/form-data";

/// The content type of the request, as text.
fn content_type_of(request: &HttpRequest) -> &str {
    request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("")
}

fn is_multipart(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(MULTIPART))
}

/// The format of a browser's `file` part: by the file name's extension, since browsers
/// name spreadsheets and CSV files with varying types (`application/vnd.ms-excel` for a
/// .csv on Windows, or none), else by the part's own content type; `None` when neither
/// tells (no extension we know, and no type or `application/octet-stream`): then the
/// content does (`import_files::sniff_format`).
fn format_of_part(
    file_name: Option<&str>,
    content_type: &str,
) -> Result<Option<(ImportFormat, Option<TextEncoding>)>, AppError> {
    let extension =
        file_name.and_then(|name| name.rsplit_once('.')).map(|(_, extension)| extension.to_ascii_lowercase());
    let by_name = match extension.as_deref() {
        Some("csv" | "txt") => Some(ImportFormat::Csv),
        Some("xlsx") => Some(ImportFormat::Xlsx),
        Some("ndjson" | "jsonl") => Some(ImportFormat::Ndjson),
        _ => None,
    };
    let untyped = matches!(content_type.split(';').next().map(str::trim), None | Some("" | "application/octet-stream"));
    match by_name {
        Some(format) => {
            let declared = format_of(content_type).ok().and_then(|(_, declared)| declared);
            Ok(Some((format, declared.filter(|_| format == ImportFormat::Csv))))
        }
        None if untyped => Ok(None),
        None => format_of(content_type).map(Some),
    }
}

/// The format by `Content-Type`, and for CSV the charset it names.
fn format_of(content_type: &str) -> Result<(ImportFormat, Option<TextEncoding>), AppError> {
    let mut parts = content_type.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or("").to_ascii_lowercase();
    let charset = parts
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim().trim_matches('"').to_ascii_lowercase());
    let format = match media_type.as_str() {
        CSV => ImportFormat::Csv,
        NDJSON | "application/ndjson" | "application/jsonl" => ImportFormat::Ndjson,
        XLSX => ImportFormat::Xlsx,
        _ => return Err(unsupported(format!("send the file as {CSV} (UTF-8 or charset=gb18030), {NDJSON} or {XLSX}, or as the part `file` of {MULTIPART}; got {content_type:?}"))),
    };
    let declared = match charset.as_deref() {
        None | Some("utf-8" | "utf8") => None,
        Some("gb18030" | "gbk" | "gb2312") => Some(TextEncoding::Gb18030),
        Some(other) => return Err(unsupported(format!("charset {other} is not read; send UTF-8 or GB18030"))),
    };
    Ok((format, declared.filter(|_| format == ImportFormat::Csv)))
}

/// Bytes of the body gathered before they are written to the spooled file.
const SPOOL_CHUNK: usize = 1024 * 1024;

/// Appends `gathered` to the upload on the blocking pool; returns both, the buffer empty.
async fn spool(mut upload: Upload, mut gathered: Vec<u8>) -> Result<(Upload, Vec<u8>), AppError> {
    web::block(move || {
        upload.append(&gathered)?;
        gathered.clear();
        Ok((upload, gathered))
    })
    .await
    .map_err(blocking_failed("reading the upload"))?
}

/// Writes a body (or a part of one) to a spooled file of `format`. The body is gathered
/// a megabyte at a time and written to the file on the blocking pool, so that no file
/// write runs on an async worker.
async fn spool_body<E: std::fmt::Display>(
    format: ImportFormat,
    declared: Option<TextEncoding>,
    body: impl futures_util::Stream<Item = Result<web::Bytes, E>>,
) -> Result<Upload, AppError> {
    let mut upload =
        web::block(move || Upload::new(format, declared)).await.map_err(blocking_failed("reading the upload"))??;
    let mut body = std::pin::pin!(body);
    let mut gathered = Vec::with_capacity(SPOOL_CHUNK);
    while let Some(piece) = body.next().await {
        let piece =
            piece.map_err(|e| AppError::new(ErrorCode::BodyUnreadable, format!("the upload broke off: {e}")))?;
        gathered.extend_from_slice(&piece);
        if gathered.len() >= SPOOL_CHUNK {
            (upload, gathered) = spool(upload, gathered).await?;
        }
    }
    Ok(spool(upload, gathered).await?.0)
}

fn invalid_multipart(detail: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidMultipart, detail)
}

/// The one part named `file` of a `multipart/form-data` body, as a browser's form or
/// `FormData` sends a file input; any other part is refused, so nothing unread is lost.
async fn spool_multipart(request: &HttpRequest, body: web::Payload) -> Result<Upload, AppError> {
    let mut parts = actix_multipart::Multipart::new(request.headers(), body);
    let mut upload = None;
    while let Some(part) = parts.next().await {
        let part = part.map_err(|e| invalid_multipart(format!("the multipart body cannot be read: {e}")))?;
        match (part.name(), &upload) {
            (Some("file"), None) => {}
            (Some("file"), Some(_)) => return Err(invalid_multipart("send one part named file; this body has two")),
            (name, _) => {
                return Err(invalid_multipart(format!(
                    "send the file as the one part named file; this body has a part named {:?}",
                    name.unwrap_or("")
                )))
            }
        }
        let file_name =
            part.content_disposition().and_then(|disposition| disposition.get_filename()).map(str::to_string);
        let content_type = part.content_type().map(|mime| mime.to_string()).unwrap_or_default();
        let told = format_of_part(file_name.as_deref(), &content_type)?;
        let (format, declared) = told.unwrap_or((ImportFormat::Csv, None));
        let mut spooled = spool_body(format, declared, part).await?;
        if told.is_none() {
            spooled = web::block(move || import_files::sniff_format(spooled))
                .await
                .map_err(blocking_failed("reading the upload"))??;
        }
        upload = Some(spooled);
    }
    upload.ok_or_else(|| invalid_multipart("the multipart body has no part named file"))
}

fn location(id: &str) -> String {
    format!("/api/v1/imports/{id}")
}

/// Import customers from a file
///
/// 客户档案导入: CSV (UTF-8 or GB18030), NDJSON or .xlsx, as the request body or as the part `file` of a
/// browser form. Checked whole before anything is written, within limits on size, rows, columns and
/// cells; atomic by default (every row or none), with a report listing each bad row's errors by row
/// and column.
#[utoipa::path(post, path = "/api/v1/imports/customers", tag = "customers", operation_id = "import_customers",
    params(ImportQuery, ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 once the file is checked, and go on in the background")),
    request_body(description = "The archive: a header row of customer fields, `category:SCHEME` and `attr:KEY` (as the export writes), then a customer a row. An empty cell leaves a value as it is; `NULL` clears it. At most 1,000,000 rows and 200 MB", content(
        (UploadedFile = "text/csv"),
        (UploadedFile = "application/x-ndjson"),
        (UploadedFile = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (MultipartUpload = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "The import's report (also with a dry run, and with `atomic=false` when rows failed)", body = Import, headers(("Location" = String))),
        (status = 202, description = "With `Prefer: respond-async`: the file is checked and the import runs; follow `Location`", body = Import,
            headers(("Location" = String), ("Preference-Applied" = String, description = "`respond-async`"))),
        (status = 400, description = "`malformed_file` (with the row and byte where it broke), `invalid_multipart`, `invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`concurrent_update`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`import_too_large`: more than 200 MB or 1,000,000 rows; `too_many_columns`: more than 200 columns; `cell_too_large`: a cell over 32 KB; `row_too_large`: an NDJSON line over 6.25 MB; `workbook_too_large`: a workbook that unpacks to more than 1 GB, a part other than a sheet to more than 32 MB, or over 1,000,000 shared strings", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`import_rejected` (atomic, with bad rows: nothing was written; `row_errors` lists every error), `unknown_columns`, `repeated_columns`, `code_column_missing`, `transaction_too_large` (an atomic import above a Galera cluster's write-set limits; nothing was written)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn import_customers(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    request: HttpRequest,
    query: web::Query<ImportQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = content_type_of(&request);
    let upload = if is_multipart(content_type) {
        spool_multipart(&request, body).await?
    } else {
        let (format, declared) = format_of(content_type)?;
        spool_body(format, declared, body).await?
    };
    let query = query.into_inner();
    let options = ImportOptions {
        mode: query.mode.unwrap_or(ImportMode::Upsert),
        atomic: query.atomic.unwrap_or(true),
        dry_run: query.dry_run.unwrap_or(false),
        ignore_unknown_columns: query.ignore_unknown_columns.unwrap_or(false),
    };
    let mut upload = upload;
    let (upload, checked) = web::block(move || import_files::check(&mut upload).map(|checked| (upload, checked)))
        .await
        .map_err(blocking_failed("reading the upload"))??;
    let id = uuid::Uuid::new_v4().to_string();
    let job = ImportJob {
        id: id.clone(),
        options,
        actor: auth.caller.name,
        restriction: auth.caller.restriction,
        upload,
        checked,
    };
    let started = service::begin(&state.db, &state.imports, &job).await?;
    let work = actix_web::rt::spawn(async move { service::run(&state.db, &state.imports, job).await });
    if prefers_async(&request) {
        let import = Import::of(started, None)?;
        return Ok(HttpResponse::Accepted()
            .insert_header(("Location", location(&id)))
            .insert_header(("Preference-Applied", "respond-async"))
            .json(import));
    }
    let finished = work.await.unwrap_or_else(|_| Err(AppError::internal("the import's task stopped")))?;
    let import = Import::of(finished, None)?;
    if import.status == ImportStatus::Rejected {
        return Err(AppError {
            row_errors: import.errors.into(),
            ..AppError::validation(
                ErrorCode::ImportRejected,
                format!(
                    "{} of {} rows have errors ({} in all); nothing was written",
                    import.failed.unwrap_or_default(),
                    import.rows_done,
                    import.error_count.unwrap_or_default()
                ),
                Vec::new(),
            )
        }
        .into());
    }
    Ok(HttpResponse::Ok().insert_header(("Location", location(&id))).json(import))
}

/// Get an import's progress or report
///
/// A running import's rows done of its total, then its report; an import whose service stopped
/// before it finished shows `failed` with the reason `interrupted`.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "customers", operation_id = "get_import",
    params(("id" = String, Path, description = "The import's id, from `Location`")),
    responses(
        (status = 200, description = "The import: `running` with `rows_done` (and `rows_total`), then its report", body = Import),
        (status = 404, description = "`import_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let in_memory = state.imports.rows_done(&id);
    let row = service::get(&state.db, &state.imports, id).await?;
    // A restricted key sees the imports it made only.
    if auth.caller.restriction.is_some() && row.actor != auth.caller.name {
        return Err(store::import_not_found(&row.id).into());
    }
    Ok(HttpResponse::Ok().json(Import::of(row, in_memory)?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/imports/customers").route(web::post().to(import_customers)));
    cfg.service(web::resource("/imports/{id}").route(web::get().to(get)));
}
