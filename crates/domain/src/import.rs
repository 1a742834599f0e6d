//! An import of the customer archive (客户档案导入), read a row at a time: which column
//! is what, what a cell asks for (leave the value, clear it, or set it), and each
//! row's fields checked as the single-customer API checks them, every error with its
//! row and column. What needs the database (existing codes, categories, attribute
//! definitions) is the store's.

use serde::Serialize;
use utoipa::ToSchema;

use super::archive::{Field, Value, ATTRIBUTE_PREFIX, CATEGORY_PREFIX};
use super::category::CategoryCode;
use super::customer::{
    parse_email, parse_phone, CustomerCode, CustomerStatus, TaxId, ADDRESS_MAX, CONTACT_MAX, NAME_MAX, NOTE_MAX,
    SHORT_NAME_MAX,
};
use super::{clean_optional_text, clean_text, FieldError};

/// The most data rows one import takes.
pub const MAX_ROWS: u64 = 1_000_000;
/// The largest file one import takes.
pub const MAX_BYTES: u64 = 200 * 1024 * 1024;
/// Errors a report lists; `error_count` counts every one.
pub const ERRORS_LISTED: usize = 10_000;
/// The most columns a file may have: the customer fields, a category column per
/// scheme and the attributes leave room to spare.
pub const MAX_COLUMNS: usize = 200;
/// The largest cell, in bytes of the file: no field or attribute takes more than a
/// few thousand characters.
pub const MAX_CELL_BYTES: u64 = 32 * 1024;
/// The longest NDJSON line (one row).
pub const MAX_ROW_BYTES: u64 = MAX_COLUMNS as u64 * MAX_CELL_BYTES;
/// The most a workbook's parts may unpack to, together.
pub const MAX_WORKBOOK_UNPACKED: u64 = 1024 * 1024 * 1024;
/// The most a workbook part other than a sheet may unpack to: the reader holds the
/// shared strings, styles and the like in memory, where a sheet is read as a stream.
pub const MAX_WORKBOOK_PART: u64 = 32 * 1024 * 1024;
/// The most shared strings a workbook may have (each one is held in memory).
pub const MAX_SHARED_STRINGS: u64 = 1_000_000;
/// The longest message of a row error, in characters; longer ones end in `…`.
pub const MESSAGE_MAX_CHARS: usize = 300;
/// Columns that a refused header lists by name; the detail counts the rest.
pub const COLUMNS_LISTED: usize = 20;
/// The cell that clears a value (an empty cell leaves it as it is).
pub const NULL_CELL: &str = "NULL";

labelled_enum! {
    /// What an import does with a code that exists.
    pub enum ImportMode {
        /// Updates it: empty cells leave its values, `NULL` clears one.
        Upsert = "upsert",
        /// Refuses the row.
        Create = "create",
    }
}

labelled_enum! {
    pub enum ImportStatus {
        /// Rows are being read and written.
        Running = "running",
        /// Done: every good row landed (all rows, when atomic).
        Succeeded = "succeeded",
        /// Atomic, with bad rows: nothing was written; `errors` lists why.
        Rejected = "rejected",
        /// Stopped by a malformed file or a failure; see `failure`.
        Failed = "failed",
    }
}

labelled_enum! {
    pub enum ImportFormat {
        Csv = "csv",
        Ndjson = "ndjson",
        Xlsx = "xlsx",
    }
}

/// The stable codes of row errors that come from reading a row; the store adds its
/// own (`duplicate_code`, `customer_not_found`, `category_not_found`, …).
pub mod codes {
    pub const INVALID_VALUE: &str = "invalid_value";
    pub const REQUIRED: &str = "required";
    pub const CANNOT_CLEAR: &str = "cannot_clear";
    pub const EXTRA_CELLS: &str = "extra_cells";
}

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Field(Field),
    /// The customer's category code in the scheme.
    Category(String),
    /// The customer's value of the attribute.
    Attribute(String),
}

impl Column {
    /// The column a header names, if it names one.
    pub fn parse(header: &str) -> Option<Column> {
        let header = header.trim();
        if let Some(scheme) = header.strip_prefix(CATEGORY_PREFIX) {
            return (!scheme.is_empty()).then(|| Column::Category(scheme.to_string()));
        }
        if let Some(key) = header.strip_prefix(ATTRIBUTE_PREFIX) {
            return (!key.is_empty()).then(|| Column::Attribute(key.to_string()));
        }
        Field::ALL.into_iter().find(|field| field.header() == header).map(Column::Field)
    }

    pub fn header(&self) -> String {
        match self {
            Column::Field(field) => field.header().to_string(),
            Column::Category(scheme) => format!("{CATEGORY_PREFIX}{scheme}"),
            Column::Attribute(key) => format!("{ATTRIBUTE_PREFIX}{key}"),
        }
    }
}

/// What a cell asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Empty: the value stays as it is.
    Blank,
    /// `NULL`: the value is cleared.
    Null,
    Given(Value),
}

impl Cell {
    pub fn of_text(text: &str) -> Cell {
        match text.trim() {
            "" => Cell::Blank,
            NULL_CELL => Cell::Null,
            _ => Cell::Given(Value::Text(text.to_string())),
        }
    }
}

/// A change a row asks of one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Edit<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Edit<T> {
    /// The value after the edit, from `current`.
    pub fn applied_to(&self, current: Option<T>) -> Option<T>
    where
        T: Clone,
    {
        match self {
            Edit::Keep => current,
            Edit::Clear => None,
            Edit::Set(value) => Some(value.clone()),
        }
    }
}

/// One error of one row; `row` counts the header as row 1, as a spreadsheet does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct RowError {
    #[schema(example = 7)]
    pub row: u64,
    /// The column's header; absent for an error of the whole row.
    #[schema(example = "tax_id")]
    pub column: Option<String>,
    /// Stable: `invalid_value`, `required`, `cannot_clear`, `extra_cells`, `unknown_column`,
    /// `duplicate_in_file`, `duplicate_code`, `duplicate_tax_id`, `scheme_not_found`,
    /// `category_not_found`, `category_not_leaf`, `category_inactive`, `scheme_inactive`,
    /// `category_required`, `attribute_not_defined`, `attribute_required`, or the code
    /// of the single-customer API's error for the change.
    #[schema(example = "invalid_value")]
    pub code: String,
    #[schema(example = "check character should be 3 (GB 32100-2015)")]
    pub message: String,
    /// For a malformed file: the byte (of the file as UTF-8) where reading broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte: Option<u64>,
}

impl RowError {
    pub fn new(row: u64, column: Option<&Column>, code: &str, message: impl Into<String>) -> Self {
        Self { row, column: column.map(Column::header), code: code.to_string(), message: message.into(), byte: None }
    }

    /// The error with its message and column cut to `MESSAGE_MAX_CHARS`, so that a
    /// report of many errors stays small whatever the file held.
    pub fn bounded(mut self) -> Self {
        self.message = shortened(self.message);
        self.column = self.column.map(shortened);
        self
    }
}

/// `text` cut to `MESSAGE_MAX_CHARS` characters, ending in `…` when it was longer.
pub fn shortened(text: String) -> String {
    match text.char_indices().nth(MESSAGE_MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// At most `COLUMNS_LISTED` column names, each shortened, and how many were left out.
pub fn listed_columns(columns: &[String]) -> (Vec<String>, usize) {
    let listed = columns.iter().take(COLUMNS_LISTED).map(|column| shortened(column.clone())).collect();
    (listed, columns.len().saturating_sub(COLUMNS_LISTED))
}

/// A row read and checked on its own: what it asks of one customer.
#[derive(Debug, Clone, Default)]
pub struct RowEdit {
    pub row: u64,
    pub code: Option<CustomerCode>,
    /// A name cannot be cleared, only kept or set.
    pub name: Option<String>,
    pub short_name: Edit<String>,
    pub tax_id: Edit<TaxId>,
    pub contact_name: Edit<String>,
    pub phone: Edit<String>,
    pub email: Edit<String>,
    pub address: Edit<String>,
    pub status: Option<CustomerStatus>,
    pub note: Edit<String>,
    /// By scheme code; `Clear` takes the customer out of the scheme.
    pub categories: Vec<(String, Edit<CategoryCode>)>,
    /// By attribute key, cells that are not blank: their type is the store's to know.
    pub attributes: Vec<(String, Cell)>,
}

/// Reads one row's cells against their columns; every bad cell is an error.
pub fn read_row<'a>(row: u64, cells: impl IntoIterator<Item = (&'a Column, Cell)>) -> Result<RowEdit, Vec<RowError>> {
    let mut edit = RowEdit { row, ..RowEdit::default() };
    let mut errors = Vec::new();
    for (column, cell) in cells {
        let mut fail = |code: &str, message: String| errors.push(RowError::new(row, Some(column), code, message));
        match column {
            Column::Field(field) => {
                if let Err(error) = read_field(&mut edit, *field, &cell) {
                    fail(
                        if error.field == "clear" { codes::CANNOT_CLEAR } else { codes::INVALID_VALUE },
                        error.message,
                    );
                }
            }
            Column::Category(scheme) => match cell {
                Cell::Blank => {}
                Cell::Null => edit.categories.push((scheme.clone(), Edit::Clear)),
                Cell::Given(value) => match CategoryCode::parse(&column.header(), value.text().trim()) {
                    Ok(code) => edit.categories.push((scheme.clone(), Edit::Set(code))),
                    Err(error) => fail(codes::INVALID_VALUE, error.message),
                },
            },
            Column::Attribute(key) => {
                if cell != Cell::Blank {
                    edit.attributes.push((key.clone(), cell));
                }
            }
        }
    }
    if edit.code.is_none() && !errors.iter().any(|e| e.column.as_deref() == Some(Field::Code.header())) {
        errors.push(RowError::new(
            row,
            Some(&Column::Field(Field::Code)),
            codes::REQUIRED,
            "every row needs the customer's code",
        ));
    }
    if errors.is_empty() {
        Ok(edit)
    } else {
        Err(errors)
    }
}

/// A text edit of an optional field, checked by `parse`.
fn text_edit(
    cell: &Cell,
    parse: impl FnOnce(&str) -> Result<Option<String>, FieldError>,
) -> Result<Edit<String>, FieldError> {
    match cell {
        Cell::Blank => Ok(Edit::Keep),
        Cell::Null => Ok(Edit::Clear),
        Cell::Given(value) => Ok(parse(&value.text())?.map_or(Edit::Keep, Edit::Set)),
    }
}

fn cannot_clear(what: &str) -> FieldError {
    FieldError::new("clear", format!("{what} cannot be cleared"))
}

fn read_field(edit: &mut RowEdit, field: Field, cell: &Cell) -> Result<(), FieldError> {
    let name = field.header();
    let optional = |max: usize| move |text: &str| clean_optional_text(name, Some(text), max);
    match field {
        Field::Code => match cell {
            Cell::Blank => {}
            Cell::Null => return Err(cannot_clear("the code")),
            Cell::Given(value) => edit.code = Some(CustomerCode::parse(name, value.text().trim())?),
        },
        Field::Name => match cell {
            Cell::Blank => {}
            Cell::Null => return Err(cannot_clear("the name")),
            Cell::Given(value) => edit.name = Some(clean_text(name, &value.text(), 1, NAME_MAX)?),
        },
        Field::Status => match cell {
            Cell::Blank => {}
            Cell::Null => return Err(cannot_clear("the status")),
            Cell::Given(value) => edit.status = Some(value.text().trim().parse()?),
        },
        Field::TaxId => {
            edit.tax_id = match cell {
                Cell::Blank => Edit::Keep,
                Cell::Null => Edit::Clear,
                Cell::Given(value) => Edit::Set(TaxId::parse(name, &value.text())?),
            }
        }
        Field::ShortName => edit.short_name = text_edit(cell, optional(SHORT_NAME_MAX))?,
        Field::ContactName => edit.contact_name = text_edit(cell, optional(CONTACT_MAX))?,
        Field::Address => edit.address = text_edit(cell, optional(ADDRESS_MAX))?,
        Field::Note => edit.note = text_edit(cell, optional(NOTE_MAX))?,
        Field::Phone => edit.phone = text_edit(cell, |text| parse_phone(name, Some(text)))?,
        Field::Email => edit.email = text_edit(cell, |text| parse_email(name, Some(text)))?,
    }
    Ok(())
}

/// The columns a header names, and the headers that name none.
pub fn read_header(headers: &[String]) -> (Vec<Option<Column>>, Vec<String>) {
    let columns: Vec<Option<Column>> = headers.iter().map(|header| Column::parse(header)).collect();
    let unknown =
        headers.iter().zip(&columns).filter(|(_, column)| column.is_none()).map(|(header, _)| header.clone()).collect();
    (columns, unknown)
}

/// Headers named twice, which would make a row say two things of one value.
pub fn repeated_columns(columns: &[Option<Column>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut repeated: Vec<String> =
        columns.iter().flatten().filter(|column| !seen.insert(column.header())).map(Column::header).collect();
    repeated.dedup();
    repeated
}

/// Where a CSV file breaks the quoting of RFC 4180 (a quoted field with text after
/// its closing quote, or a quote never closed) or a limit (more than `MAX_COLUMNS`
/// fields in a row, a field over `MAX_CELL_BYTES`). Fed the file in pieces; bare quotes
/// inside an unquoted field are taken literally, as Excel and the `csv` crate do.
#[derive(Debug, Default)]
pub struct QuotingCheck {
    state: QuoteState,
    /// Rows started, counting the header; the row of the current byte.
    row: u64,
    byte: u64,
    /// Where the open quote of the current field is.
    opened_at: (u64, u64),
    /// Whether the current row has any byte (an empty last line is no row).
    row_has_bytes: bool,
    /// Fields of the current row before the current one.
    fields_before: usize,
    /// Bytes of the current field so far.
    field_bytes: u64,
}

/// A limit of `domain::import` that a file goes past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More than `MAX_COLUMNS` columns.
    Columns,
    /// A cell over `MAX_CELL_BYTES`.
    CellBytes,
    /// An NDJSON line over `MAX_ROW_BYTES`.
    RowBytes,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// A break in a file, and where; `limit` when the file is well formed but too large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub row: u64,
    pub byte: u64,
    pub message: String,
    pub limit: Option<Limit>,
}

impl Malformed {
    pub fn at(row: u64, byte: u64, message: impl Into<String>) -> Self {
        Malformed { row, byte, message: message.into(), limit: None }
    }

    pub fn beyond(limit: Limit, row: u64, byte: u64) -> Self {
        let message = match limit {
            Limit::Columns => {
                format!("the row has more than {MAX_COLUMNS} columns; an import takes at most {MAX_COLUMNS}")
            }
            Limit::CellBytes => format!("a cell is longer than {} KB; no field takes that much", MAX_CELL_BYTES / 1024),
            Limit::RowBytes => format!("the line is longer than {} MB", MAX_ROW_BYTES / (1024 * 1024)),
        };
        Malformed { row, byte, message, limit: Some(limit) }
    }
}

impl QuotingCheck {
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Malformed> {
        for &b in bytes {
            if !self.row_has_bytes {
                self.row_has_bytes = true;
                self.row += 1;
                self.fields_before = 0;
            }
            let in_field = !matches!(
                (self.state, b),
                (QuoteState::FieldStart | QuoteState::Unquoted | QuoteState::QuoteInQuoted, b',' | b'\r' | b'\n')
            );
            if in_field {
                self.field_bytes += 1;
                if self.field_bytes > MAX_CELL_BYTES {
                    return Err(Malformed::beyond(Limit::CellBytes, self.row, self.byte));
                }
            } else {
                if b == b',' {
                    self.fields_before += 1;
                    if self.fields_before >= MAX_COLUMNS {
                        return Err(Malformed::beyond(Limit::Columns, self.row, self.byte));
                    }
                }
                self.field_bytes = 0;
            }
            self.state = match (self.state, b) {
                (QuoteState::FieldStart, b'"') => {
                    self.opened_at = (self.row, self.byte);
                    QuoteState::Quoted
                }
                (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                (QuoteState::FieldStart | QuoteState::Unquoted | QuoteState::QuoteInQuoted, b',') => {
                    QuoteState::FieldStart
                }
                (QuoteState::FieldStart | QuoteState::Unquoted | QuoteState::QuoteInQuoted, b'\r') => {
                    QuoteState::FieldStart
                }
                (QuoteState::FieldStart | QuoteState::Unquoted | QuoteState::QuoteInQuoted, b'\n') => {
                    self.row_has_bytes = false;
                    QuoteState::FieldStart
                }
                (QuoteState::QuoteInQuoted, _) => return Err(Malformed::at(
                    self.row,
                    self.byte,
                    "text after the closing quote of a field; a quote inside a quoted field is written twice (\"\")",
                )),
                (QuoteState::FieldStart | QuoteState::Unquoted, _) => QuoteState::Unquoted,
            };
            self.byte += 1;
        }
        Ok(())
    }

    /// Rows begun so far, the header included.
    pub fn rows_started(&self) -> u64 {
        self.row
    }

    /// The end of the file: a quote still open is an error. Returns the rows, header included.
    pub fn finish(self) -> Result<u64, Malformed> {
        if self.state == QuoteState::Quoted {
            let (row, byte) = self.opened_at;
            return Err(Malformed::at(row, byte, "a quoted field is never closed"));
        }
        Ok(self.row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(headers: &[&str]) -> Vec<Column> {
        headers.iter().map(|h| Column::parse(h).unwrap()).collect()
    }

    #[test]
    fn headers_name_fields_categories_and_attributes() {
        assert_eq!(Column::parse(" tax_id "), Some(Column::Field(Field::TaxId)));
        assert_eq!(Column::parse("category:REGION"), Some(Column::Category("REGION".into())));
        assert_eq!(Column::parse("attr:credit_limit"), Some(Column::Attribute("credit_limit".into())));
        assert_eq!(Column::parse("category:"), None);
        assert_eq!(Column::parse("客户名称"), None);
        let (read, unknown) = read_header(&["code".into(), "名称".into(), "code".into()]);
        assert_eq!(unknown, ["名称"]);
        assert_eq!(repeated_columns(&read), ["code"]);
    }

    #[test]
    fn empty_keeps_null_clears_text_sets() {
        let columns = columns(&["code", "phone", "email", "note", "category:REGION"]);
        let cells = [
            Cell::of_text("C1"),
            Cell::of_text(""),
            Cell::of_text("NULL"),
            Cell::of_text(" 说明 "),
            Cell::of_text("0101"),
        ];
        let edit = read_row(2, columns.iter().zip(cells)).unwrap();
        assert_eq!(edit.code.unwrap().as_str(), "C1");
        assert_eq!((edit.phone, edit.email, edit.note), (Edit::Keep, Edit::Clear, Edit::Set("说明".into())));
        assert_eq!(edit.categories.len(), 1);
    }

    #[test]
    fn every_bad_cell_is_an_error_with_its_row_and_column() {
        let columns = columns(&["code", "name", "tax_id", "phone", "status"]);
        let cells = [
            Cell::of_text(""),
            Cell::of_text("NULL"),
            Cell::of_text("91350100M000100Y44"),
            Cell::of_text("12"),
            Cell::of_text("gone"),
        ];
        let errors = read_row(9, columns.iter().zip(cells)).unwrap_err();
        let found: Vec<(u64, &str, &str)> =
            errors.iter().map(|e| (e.row, e.column.as_deref().unwrap(), e.code.as_str())).collect();
        assert_eq!(
            found,
            [
                (9, "name", "cannot_clear"),
                (9, "tax_id", "invalid_value"),
                (9, "phone", "invalid_value"),
                (9, "status", "invalid_value"),
                (9, "code", "required")
            ]
        );
        assert!(errors[1].message.contains("check character should be 3"));
    }

    #[test]
    fn edits_apply_to_current_values() {
        assert_eq!(Edit::Keep.applied_to(Some(1)), Some(1));
        assert_eq!(Edit::<i32>::Clear.applied_to(Some(1)), None);
        assert_eq!(Edit::Set(2).applied_to(None), Some(2));
    }

    fn check(text: &str) -> Result<u64, Malformed> {
        let mut check = QuotingCheck::default();
        // In two pieces, split inside the text, as reads from a file split it.
        let (first, second) = text.as_bytes().split_at(text.len() / 2);
        check.feed(first)?;
        check.feed(second)?;
        check.finish()
    }

    #[test]
    fn quoting_is_checked_with_row_and_byte() {
        assert_eq!(check("code,name\r\nC1,\"A, \"\"B\"\"\"\r\nC2,\"two\nlines\"\r\n"), Ok(3));
        assert_eq!(check("code,name\nC1,5\" pipe\n"), Ok(2), "a bare quote in an unquoted field is literal");
        assert_eq!(check("code,name\nC1,x"), Ok(2), "no newline at the end");
        let broken = check("code,name\nC1,\"A\"B\nC2,x\n").unwrap_err();
        assert_eq!((broken.row, broken.byte), (2, 16));
        let unclosed = check("code,name\nC1,ok\nC2,\"never\n").unwrap_err();
        assert_eq!((unclosed.row, unclosed.byte), (3, 19));
        assert!(unclosed.message.contains("never closed"));
    }

    #[test]
    fn rows_and_cells_are_bounded_before_they_are_read() {
        let widest = format!("{}\n", vec!["c"; MAX_COLUMNS].join(","));
        assert_eq!(check(&widest), Ok(1));
        let wider = format!("code\nC1\n{}\n", vec!["c"; MAX_COLUMNS + 1].join(","));
        let refused = check(&wider).unwrap_err();
        assert_eq!((refused.limit, refused.row), (Some(Limit::Columns), 3));
        let quoted_commas = format!("code,note\nC1,\"{}\"\n", ",".repeat(MAX_COLUMNS * 2));
        assert_eq!(check(&quoted_commas), Ok(2), "commas inside quotes are text");
        let largest = format!("code,note\nC1,{}\n", "x".repeat(MAX_CELL_BYTES as usize));
        assert_eq!(check(&largest), Ok(2));
        let larger = format!("code,note\nC1,\"{}\"\n", "x".repeat(MAX_CELL_BYTES as usize));
        let refused = check(&larger).unwrap_err();
        assert_eq!((refused.limit, refused.row), (Some(Limit::CellBytes), 2));
    }

    #[test]
    fn long_messages_and_headers_are_cut() {
        let error = RowError::new(2, None, codes::INVALID_VALUE, "长".repeat(MESSAGE_MAX_CHARS + 5)).bounded();
        assert_eq!(error.message.chars().count(), MESSAGE_MAX_CHARS + 1);
        assert!(error.message.ends_with('…'));
        let columns: Vec<String> = (0..25).map(|n| format!("x{n}")).collect();
        let (listed, more) = listed_columns(&columns);
        assert_eq!((listed.len(), more), (COLUMNS_LISTED, 5));
    }
}
