//! Reports as spreadsheets (分类报表 in Excel): the media type chosen by `Accept`,
//! CSV as Excel in China opens it (UTF-8 with a BOM, RFC 4180 quoting, CRLF) and
//! .xlsx workbooks with typed cells and a frozen header row.

use actix_web::http::header::{self, Accept, Header};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::api::error::ApiError;
use crate::error::{AppError, ErrorCode};

pub const CSV: &str = "text/csv";
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

pub const NDJSON: &str = "application/x-ndjson";

/// How a report or an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Xlsx,
    /// One JSON object a line.
    Ndjson,
}

impl Format {
    fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => CSV,
            Format::Xlsx => XLSX,
            Format::Ndjson => NDJSON,
        }
    }

    /// A report's format: JSON without `Accept`, for `*/*` and `application/*`.
    pub fn negotiate(req: &HttpRequest) -> Result<Format, AppError> {
        Format::negotiate_among(req, &[Format::Json, Format::Csv, Format::Xlsx])
    }

    /// The most preferred of the `offered` formats that `Accept` allows: the first
    /// offered without the header and for `*/*`, the first of its type for `text/*` or
    /// `application/*`; 406 when it allows none of them.
    pub fn negotiate_among(req: &HttpRequest, offered: &[Format]) -> Result<Format, AppError> {
        let Some(value) = req.headers().get(header::ACCEPT) else { return Ok(offered[0]) };
        let not_acceptable = || {
            let media_types: Vec<&str> = offered.iter().map(|format| format.media_type()).collect();
            AppError::new(
                ErrorCode::NotAcceptable,
                format!(
                    "this is written as {}; Accept: {} allows none of them",
                    media_types.join(", "),
                    value.to_str().unwrap_or("(not text)")
                ),
            )
        };
        let accept = Accept::parse(req).map_err(|_| not_acceptable())?;
        let mut wanted: Vec<_> =
            accept.iter().filter(|item| item.quality > actix_web::http::header::Quality::ZERO).collect();
        wanted.sort_by_key(|item| std::cmp::Reverse(item.quality));
        wanted
            .into_iter()
            .find_map(|item| {
                let (kind, subtype) = (item.item.type_().as_str(), item.item.subtype().as_str());
                offered.iter().copied().find(|format| {
                    let (offered_kind, offered_subtype) = format.media_type().split_once('/').expect("a media type");
                    (kind == "*" && subtype == "*")
                        || (kind == offered_kind
                            && (subtype == "*"
                                || subtype == offered_subtype
                                || (*format == Format::Ndjson && subtype == "ndjson")))
                })
            })
            .ok_or_else(not_acceptable)
    }
}

/// A value in a spreadsheet cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Integer(i64),
    /// Exact decimal text, such as money; a number cell in a workbook.
    Decimal(String),
    Empty,
}

impl From<Option<String>> for Cell {
    fn from(text: Option<String>) -> Self {
        text.map_or(Cell::Empty, Cell::Text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(text.to_string())
    }
}

impl From<i64> for Cell {
    fn from(number: i64) -> Self {
        Cell::Integer(number)
    }
}

/// A report flattened to a table whose header row holds the JSON field names.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    /// The file name without its extension, ASCII.
    pub file_stem: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Sheet {
    pub fn new(file_stem: String, header: Vec<String>) -> Self {
        Self { file_stem, header, rows: Vec::new() }
    }

    fn csv(&self) -> Result<Vec<u8>, AppError> {
        let mut writer =
            csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::from(*b"\xEF\xBB\xBF"));
        let fail = |e: csv::Error| AppError::internal(format!("writing CSV: {e}"));
        writer.write_record(&self.header).map_err(fail)?;
        for row in &self.rows {
            writer
                .write_record(row.iter().map(|cell| match cell {
                    Cell::Text(text) => crate::domain::formula::guard(text).into_owned(),
                    Cell::Decimal(text) => text.clone(),
                    Cell::Integer(number) => number.to_string(),
                    Cell::Empty => String::new(),
                }))
                .map_err(fail)?;
        }
        writer.into_inner().map_err(|e| AppError::internal(format!("writing CSV: {e}")))
    }

    fn xlsx(&self) -> Result<Vec<u8>, AppError> {
        use rust_xlsxwriter::{Format as CellFormat, Workbook};
        let fail = |e: rust_xlsxwriter::XlsxError| AppError::internal(format!("writing the workbook: {e}"));
        let mut workbook = Workbook::new();
        let sheet = workbook.add_worksheet();
        let bold = CellFormat::new().set_bold();
        let cents = CellFormat::new().set_num_format("0.00");
        for (column, name) in self.header.iter().enumerate() {
            sheet.write_string_with_format(0, column as u16, name, &bold).map_err(fail)?;
        }
        for (index, row) in self.rows.iter().enumerate() {
            let line = index as u32 + 1;
            for (column, cell) in row.iter().enumerate() {
                let column = column as u16;
                match cell {
                    Cell::Text(text) => sheet.write_string(line, column, text).map(|_| ()),
                    Cell::Integer(number) => sheet.write_number(line, column, *number as f64).map(|_| ()),
                    Cell::Decimal(text) => match text.parse::<f64>() {
                        Ok(number) => sheet.write_number_with_format(line, column, number, &cents).map(|_| ()),
                        Err(_) => sheet.write_string(line, column, text).map(|_| ()),
                    },
                    Cell::Empty => Ok(()),
                }
                .map_err(fail)?;
            }
        }
        sheet.set_freeze_panes(1, 0).map_err(fail)?;
        workbook.save_to_buffer().map_err(fail)
    }
}

/// The report in the negotiated format; `sheet` is built only for a spreadsheet.
pub fn respond<T: Serialize>(
    format: Format,
    report: &T,
    sheet: impl FnOnce() -> Sheet,
) -> Result<HttpResponse, ApiError> {
    let (content_type, extension, body) = match format {
        // A report is one JSON document; NDJSON is offered by the exports only.
        Format::Json | Format::Ndjson => return Ok(HttpResponse::Ok().json(report)),
        Format::Csv => ("text/csv; charset=utf-8", "csv", sheet_and(sheet, Sheet::csv)?),
        Format::Xlsx => (XLSX, "xlsx", sheet_and(sheet, Sheet::xlsx)?),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.{extension}\"", body.0)))
        .body(body.1))
}

fn sheet_and(
    sheet: impl FnOnce() -> Sheet,
    write: fn(&Sheet) -> Result<Vec<u8>, AppError>,
) -> Result<(String, Vec<u8>), AppError> {
    let sheet = sheet();
    let bytes = write(&sheet)?;
    Ok((sheet.file_stem, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_starts_with_a_bom_and_quotes_as_rfc_4180() {
        let mut sheet = Sheet::new("report".into(), vec!["code".into(), "name".into(), "customers".into()]);
        sheet.rows.push(vec![Cell::Text("01".into()), Cell::Text("华东, \"重点\"".into()), Cell::Integer(3)]);
        let bytes = sheet.csv().unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
        assert_eq!(
            String::from_utf8(bytes[3..].to_vec()).unwrap(),
            "code,name,customers\r\n01,\"华东, \"\"重点\"\"\",3\r\n"
        );
    }
}
