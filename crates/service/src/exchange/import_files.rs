//! Reading an uploaded archive file a row at a time: CSV in UTF-8 (a BOM or none) or
//! GB18030/GBK, NDJSON, or the first sheet of an .xlsx workbook. The body is spooled
//! to a temporary file first, so that it is checked whole (quoting, encoding, row
//! count) before anything is written, and then read again as a stream: memory holds a
//! buffer and a row, never the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};

use calamine::{DataRef, Reader, Xlsx};
use encoding_rs::GB18030;
use encoding_rs_io::DecodeReaderBytesBuilder;

use crate::domain::archive::Value;
use crate::domain::formula;
use crate::domain::import::{
    read_header, Cell, Column, ImportFormat, Limit, Malformed, QuotingCheck, MAX_BYTES, MAX_CELL_BYTES, MAX_COLUMNS,
    MAX_ROWS, MAX_ROW_BYTES, MAX_SHARED_STRINGS, MAX_WORKBOOK_PART, MAX_WORKBOOK_UNPACKED,
};
use crate::error::{AppError, ErrorCode};

/// Bytes read from the spooled file at a time.
const BLOCK: usize = 64 * 1024;

/// The text encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Gb18030,
}

/// An uploaded body, spooled to an unnamed temporary file.
pub struct Upload {
    file: File,
    pub bytes: u64,
    pub format: ImportFormat,
    /// For CSV: the encoding the content type names (`charset=gb18030`, `gbk`, `gb2312`).
    pub declared: Option<TextEncoding>,
}

pub fn too_large(detail: String) -> AppError {
    AppError::new(ErrorCode::ImportTooLarge, detail)
}

pub fn spool_failed(error: std::io::Error) -> AppError {
    AppError::internal(format!("spooling the upload: {error}"))
}

impl Upload {
    pub fn new(format: ImportFormat, declared: Option<TextEncoding>) -> Result<Self, AppError> {
        Ok(Upload { file: tempfile::tempfile().map_err(spool_failed)?, bytes: 0, format, declared })
    }

    /// Appends a piece of the body; past `MAX_BYTES`, 413.
    pub fn append(&mut self, piece: &[u8]) -> Result<(), AppError> {
        self.bytes += piece.len() as u64;
        if self.bytes > MAX_BYTES {
            return Err(too_large(format!("an import takes at most {} MB", MAX_BYTES / (1024 * 1024))));
        }
        self.file.write_all(piece).map_err(spool_failed)
    }

    fn rewound(&mut self) -> Result<&mut File, AppError> {
        self.file.seek(SeekFrom::Start(0)).map_err(spool_failed)?;
        Ok(&mut self.file)
    }
}

/// The format of an upload that neither its name nor its type told, by its first
/// bytes: a zip (`PK\x03\x04`) is a workbook, a file whose first non-blank byte is `{`
/// NDJSON, anything else CSV, whose check then says whether it is one.
pub fn sniff_format(mut upload: Upload) -> Result<Upload, AppError> {
    let mut start = [0u8; 512];
    let file = upload.rewound()?;
    let read = file.read(&mut start).map_err(spool_failed)?;
    let start = &start[..read];
    upload.format = if start.starts_with(b"PK\x03\x04") {
        ImportFormat::Xlsx
    } else if start.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{') {
        ImportFormat::Ndjson
    } else {
        ImportFormat::Csv
    };
    Ok(upload)
}

/// What the check of a whole file found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Data rows, counted by the check (blank rows included).
    pub rows_total: Option<u64>,
    pub encoding: TextEncoding,
    /// NDJSON: every key, in order of first appearance (its "header").
    keys: Vec<String>,
}

fn malformed(format: ImportFormat, broken: Malformed) -> AppError {
    let what = match format {
        ImportFormat::Csv => "CSV",
        ImportFormat::Ndjson => "NDJSON",
        ImportFormat::Xlsx => ".xlsx",
    };
    if let Some(limit) = broken.limit {
        let code = match limit {
            Limit::Columns => ErrorCode::TooManyColumns,
            Limit::CellBytes => ErrorCode::CellTooLarge,
            Limit::RowBytes => ErrorCode::RowTooLarge,
        };
        return AppError::new(
            code,
            format!("the {what} file is refused at row {}, byte {}: {}", broken.row, broken.byte, broken.message),
        );
    }
    AppError {
        row_errors: Box::new([crate::domain::import::RowError {
            row: broken.row,
            column: None,
            code: ErrorCode::MalformedFile.label().into(),
            message: broken.message.clone(),
            byte: Some(broken.byte),
        }]),
        ..AppError::new(
            ErrorCode::MalformedFile,
            format!("the {what} file breaks at row {}, byte {}: {}", broken.row, broken.byte, broken.message),
        )
    }
}

fn too_many_rows(rows: u64) -> AppError {
    too_large(format!("the file has {rows} data rows; an import takes at most {MAX_ROWS}"))
}

/// Checks the whole file before any row is used: its encoding and quoting (CSV), its
/// lines (NDJSON) or that it is a workbook, and that it holds at most `MAX_ROWS`.
pub fn check(upload: &mut Upload) -> Result<Checked, AppError> {
    let format = upload.format;
    let declared = upload.declared;
    let file = upload.rewound()?;
    let checked = match format {
        ImportFormat::Csv => check_csv(file, declared)?,
        ImportFormat::Ndjson => check_ndjson(file)?,
        ImportFormat::Xlsx => {
            Checked { rows_total: workbook_rows(file)?, encoding: TextEncoding::Utf8, keys: Vec::new() }
        }
    };
    match checked.rows_total {
        Some(rows) if rows > MAX_ROWS => Err(too_many_rows(rows)),
        _ => Ok(checked),
    }
}

fn read_block(file: &mut File, buffer: &mut [u8]) -> Result<usize, AppError> {
    file.read(buffer).map_err(spool_failed)
}

/// Quoting and rows in one pass over the raw bytes (the quotes, commas and line ends
/// of GB18030 are the ASCII bytes, never inside a multi-byte character), with the
/// first byte that is not UTF-8; then, when one is found and no charset was named,
/// a pass that checks the file is GB18030.
fn check_csv(file: &mut File, declared: Option<TextEncoding>) -> Result<Checked, AppError> {
    let mut quoting = QuotingCheck::default();
    let mut buffer = vec![0u8; BLOCK];
    let mut carried: Vec<u8> = Vec::new();
    let mut offset = 0u64;
    let mut not_utf8: Option<(u64, u64)> = None;
    loop {
        let read = read_block(file, &mut buffer)?;
        if read == 0 {
            break;
        }
        let block = &buffer[..read];
        let rows_before = quoting.rows_started();
        quoting.feed(block).map_err(|broken| malformed(ImportFormat::Csv, broken))?;
        if not_utf8.is_none() {
            carried.extend_from_slice(block);
            match std::str::from_utf8(&carried) {
                Ok(_) => carried.clear(),
                Err(error) if error.error_len().is_none() => {
                    carried.drain(..error.valid_up_to());
                }
                Err(error) => {
                    let at = offset + read as u64 - carried.len() as u64 + error.valid_up_to() as u64;
                    not_utf8 = Some((rows_before.max(1), at));
                }
            }
        }
        offset += read as u64;
    }
    if not_utf8.is_none() && !carried.is_empty() {
        not_utf8 = Some((quoting.rows_started(), offset - carried.len() as u64));
    }
    let rows = quoting.finish().map_err(|broken| malformed(ImportFormat::Csv, broken))?;
    let encoding = match (declared, not_utf8) {
        (Some(encoding), _) => encoding,
        (None, None) => TextEncoding::Utf8,
        (None, Some((row, byte))) => {
            file.seek(SeekFrom::Start(0)).map_err(spool_failed)?;
            check_gb18030(file).map_err(|_| {
                malformed(
                    ImportFormat::Csv,
                    Malformed::at(
                        row,
                        byte,
                        "the bytes are neither UTF-8 nor GB18030; save the file as CSV UTF-8 or CSV (GB18030)",
                    ),
                )
            })?;
            TextEncoding::Gb18030
        }
    };
    Ok(Checked { rows_total: Some(rows.saturating_sub(1)), encoding, keys: Vec::new() })
}

fn check_gb18030(file: &mut File) -> Result<(), ()> {
    let mut decoder = GB18030.new_decoder_without_bom_handling();
    let mut buffer = vec![0u8; BLOCK];
    let mut text = String::with_capacity(BLOCK * 2);
    loop {
        let read = file.read(&mut buffer).map_err(drop)?;
        let last = read == 0;
        text.clear();
        let (result, _) = decoder.decode_to_string_without_replacement(&buffer[..read], &mut text, last);
        if let encoding_rs::DecoderResult::Malformed(..) = result {
            return Err(());
        }
        if last {
            return Ok(());
        }
    }
}

fn ndjson_error(row: u64, byte: u64, error: &serde_json::Error) -> AppError {
    malformed(
        ImportFormat::Ndjson,
        Malformed::at(
            row,
            byte + error.column().saturating_sub(1) as u64,
            format!("each line must be one JSON object: {error}"),
        ),
    )
}

/// Reads one line of at most `MAX_ROW_BYTES` into `line`; 413 for a longer one.
fn read_line(reader: &mut BufReader<&mut File>, line: &mut Vec<u8>, row: u64, byte: u64) -> Result<usize, AppError> {
    line.clear();
    let read = reader.by_ref().take(MAX_ROW_BYTES + 1).read_until(b'\n', line).map_err(spool_failed)?;
    if read as u64 > MAX_ROW_BYTES {
        return Err(malformed(ImportFormat::Ndjson, Malformed::beyond(Limit::RowBytes, row, byte)));
    }
    Ok(read)
}

/// Each line one JSON object; the keys, in order, stand for the header: at most
/// `MAX_COLUMNS` of them, each value at most `MAX_CELL_BYTES` as text.
fn check_ndjson(file: &mut File) -> Result<Checked, AppError> {
    let mut reader = BufReader::with_capacity(BLOCK, file);
    let (mut keys, mut known): (Vec<String>, std::collections::HashSet<String>) = Default::default();
    let (mut line, mut row, mut byte, mut rows) = (Vec::new(), 0u64, 0u64, 0u64);
    loop {
        let read = read_line(&mut reader, &mut line, row + 1, byte)?;
        if read == 0 {
            break;
        }
        row += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&line).map_err(|e| ndjson_error(row, byte, &e))?;
            rows += 1;
            for (key, value) in &object {
                let text_bytes = match value {
                    serde_json::Value::String(text) => text.len(),
                    other => other.to_string().len(),
                };
                if text_bytes as u64 > MAX_CELL_BYTES {
                    return Err(malformed(ImportFormat::Ndjson, Malformed::beyond(Limit::CellBytes, row, byte)));
                }
                if !known.contains(key) {
                    if keys.len() == MAX_COLUMNS {
                        return Err(malformed(ImportFormat::Ndjson, Malformed::beyond(Limit::Columns, row, byte)));
                    }
                    known.insert(key.clone());
                    keys.push(key.clone());
                }
            }
        }
        byte += read as u64;
    }
    Ok(Checked { rows_total: Some(rows), encoding: TextEncoding::Utf8, keys })
}

fn not_a_workbook(error: impl std::fmt::Display) -> AppError {
    malformed(ImportFormat::Xlsx, Malformed::at(0, 0, format!("not a readable .xlsx workbook: {error}")))
}

fn open_workbook(file: &mut File) -> Result<(Xlsx<BufReader<&mut File>>, String), AppError> {
    let workbook: Xlsx<_> = Xlsx::new(BufReader::with_capacity(BLOCK, file)).map_err(not_a_workbook)?;
    let sheet = workbook.sheet_names().first().cloned().ok_or_else(|| not_a_workbook("it has no sheet"))?;
    Ok((workbook, sheet))
}

fn workbook_too_large(detail: String) -> AppError {
    AppError::new(ErrorCode::WorkbookTooLarge, detail)
}

/// The most parts a workbook may have (one with a sheet has a dozen or so).
const MAX_WORKBOOK_PARTS: u64 = 1_000;
/// The largest central directory (the list of parts) a workbook may have.
const MAX_CENTRAL_DIRECTORY: u64 = 1024 * 1024;
/// How far from the end of a zip file its end record may be (22 bytes and a comment).
const END_RECORD_REACH: u64 = 22 + 65_535;

fn le_u16(bytes: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn le_u32(bytes: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes")))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// The number of parts and the size of the central directory that a zip file's end
/// record (and its zip64 record, when there is one) announces. The zip reader loads
/// the whole central directory into memory before anything can be asked of it, so
/// this is read first; a file without an end record is left to the zip reader to
/// refuse.
fn central_directory(file: &mut File) -> Result<Option<(u64, u64)>, AppError> {
    let length = file.seek(SeekFrom::End(0)).map_err(spool_failed)?;
    let start = length.saturating_sub(END_RECORD_REACH);
    file.seek(SeekFrom::Start(start)).map_err(spool_failed)?;
    let mut tail = Vec::with_capacity((length - start) as usize);
    file.read_to_end(&mut tail).map_err(spool_failed)?;
    let Some(end) = (0..tail.len().saturating_sub(21)).rev().find(|&at| tail[at..at + 4] == [0x50, 0x4b, 0x05, 0x06])
    else {
        return Ok(None);
    };
    let (mut parts, mut size) = (le_u16(&tail, end + 10), le_u32(&tail, end + 12));
    // A zip64 locator, 20 bytes before the end record, points at the zip64 record.
    let locator = end.checked_sub(20).filter(|&at| tail[at..at + 4] == [0x50, 0x4b, 0x06, 0x07]);
    if let Some(locator) = locator {
        let record_at = le_u64(&tail, locator + 8);
        let mut record = [0u8; 56];
        file.seek(SeekFrom::Start(record_at)).map_err(spool_failed)?;
        file.read_exact(&mut record).map_err(|_| not_a_workbook("its zip64 end record is cut off"))?;
        if record[..4] != [0x50, 0x4b, 0x06, 0x06] {
            return Err(not_a_workbook("its zip64 end record is not where its locator says"));
        }
        (parts, size) = (parts.max(le_u64(&record, 32)), size.max(le_u64(&record, 40)));
    }
    Ok(Some((parts, size)))
}

/// What a scan of one XML part of a workbook found.
#[derive(Default)]
struct PartScan {
    bytes: u64,
    /// Bytes since the last `<` or `>`: the text of a cell, or one tag.
    run: u64,
    longest_run: u64,
    /// The element name being read after a `<`, while it is short.
    name: Vec<u8>,
    in_name: bool,
    /// Elements named `si` (a shared string), with any namespace prefix.
    shared_strings: u64,
}

impl PartScan {
    fn feed(&mut self, block: &[u8]) {
        self.bytes += block.len() as u64;
        for &byte in block {
            if byte == b'<' || byte == b'>' {
                self.longest_run = self.longest_run.max(self.run);
                self.run = 0;
            } else {
                self.run += 1;
            }
            if self.in_name {
                if byte.is_ascii_whitespace() || byte == b'>' || byte == b'/' {
                    self.in_name = false;
                    if self.name == b"si" || self.name.ends_with(b":si") {
                        self.shared_strings += 1;
                    }
                } else if self.name.len() < 16 {
                    self.name.push(byte);
                } else {
                    self.in_name = false;
                }
            }
            if byte == b'<' {
                self.in_name = true;
                self.name.clear();
            }
        }
    }
}

/// Unpacks every part of the workbook once, as a stream, before the reader holds any
/// of them: the parts together unpack to at most `MAX_WORKBOOK_UNPACKED`; a part the
/// reader holds in memory (all but the sheets) to `MAX_WORKBOOK_PART`, with at most
/// `MAX_SHARED_STRINGS` shared strings; and no cell or tag of an XML part is longer
/// than a cell may be, once its characters are escaped.
fn check_workbook_parts(file: &mut File) -> Result<(), AppError> {
    if let Some((parts, size)) = central_directory(file)? {
        if parts > MAX_WORKBOOK_PARTS || size > MAX_CENTRAL_DIRECTORY {
            return Err(workbook_too_large(format!(
                "the workbook lists {parts} parts in {size} bytes; a workbook takes at most {MAX_WORKBOOK_PARTS} parts"
            )));
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(spool_failed)?;
    let mut archive = zip::ZipArchive::new(BufReader::with_capacity(BLOCK, &mut *file)).map_err(not_a_workbook)?;
    let mut buffer = vec![0u8; BLOCK];
    let mut unpacked = 0u64;
    for index in 0..archive.len() {
        let mut part = archive.by_index(index).map_err(not_a_workbook)?;
        let name = part.name().map_err(not_a_workbook)?.into_owned();
        let limit = if name.starts_with("xl/worksheets/") { MAX_WORKBOOK_UNPACKED } else { MAX_WORKBOOK_PART };
        let is_xml = name.ends_with(".xml") || name.ends_with(".rels");
        let mut scan = PartScan::default();
        loop {
            let read = part.read(&mut buffer).map_err(not_a_workbook)?;
            if read == 0 {
                break;
            }
            unpacked += read as u64;
            if is_xml {
                scan.feed(&buffer[..read]);
            } else {
                scan.bytes += read as u64;
            }
            if scan.bytes > limit || unpacked > MAX_WORKBOOK_UNPACKED {
                let mb = |bytes: u64| bytes / (1024 * 1024);
                return Err(workbook_too_large(format!(
                    "the workbook unpacks to more than it may: part {} to over {} MB (a sheet may take {} MB, every other part {} MB, all together {} MB); save it as CSV",
                    crate::domain::import::shortened(name),
                    mb(scan.bytes),
                    mb(MAX_WORKBOOK_UNPACKED),
                    mb(MAX_WORKBOOK_PART),
                    mb(MAX_WORKBOOK_UNPACKED)
                )));
            }
        }
        // A character escaped as `&#x10FFFF;` takes ten bytes; a cell of the most
        // characters, all escaped, is still shorter than this.
        if scan.longest_run.max(scan.run) > MAX_CELL_BYTES * 10 {
            return Err(AppError::new(
                ErrorCode::CellTooLarge,
                format!(
                    "part {} of the workbook holds a cell longer than {} KB; no field takes that much",
                    crate::domain::import::shortened(name),
                    MAX_CELL_BYTES / 1024
                ),
            ));
        }
        if scan.shared_strings > MAX_SHARED_STRINGS {
            return Err(workbook_too_large(format!(
                "the workbook has over {MAX_SHARED_STRINGS} shared strings; save it as CSV, which has no such limit"
            )));
        }
    }
    Ok(())
}

/// Data rows of the first sheet, counted cell by cell (its `dimension` may say
/// anything): at most `MAX_ROWS`, each at most `MAX_COLUMNS` wide, no text cell over
/// `MAX_CELL_BYTES`.
fn workbook_rows(file: &mut File) -> Result<Option<u64>, AppError> {
    check_workbook_parts(file)?;
    file.seek(SeekFrom::Start(0)).map_err(spool_failed)?;
    let (mut workbook, sheet) = open_workbook(file)?;
    let mut cells = workbook.worksheet_cells_reader(&sheet).map_err(not_a_workbook)?;
    let (mut rows, mut last_row, mut cells_in_row) = (0u64, None, 0usize);
    loop {
        let next = cells.next_cell().map_err(|error| {
            malformed(ImportFormat::Xlsx, Malformed::at(rows + 1, 0, format!("the sheet cannot be read: {error}")))
        })?;
        let Some(cell) = next else { break };
        let (row, column) = cell.get_position();
        if last_row != Some(row) {
            last_row = Some(row);
            cells_in_row = 0;
            rows += 1;
            // The header is row 1; `rows` counts it until the end.
            if rows > MAX_ROWS + 1 {
                return Err(too_many_rows(rows - 1));
            }
        }
        cells_in_row += 1;
        // A cell may name a column twice; the count bounds what the reader gathers.
        if column as usize >= MAX_COLUMNS || cells_in_row > MAX_COLUMNS {
            return Err(malformed(ImportFormat::Xlsx, Malformed::beyond(Limit::Columns, u64::from(row) + 1, 0)));
        }
        if let DataRef::String(text) = cell.get_value() {
            if text.len() as u64 > MAX_CELL_BYTES {
                return Err(malformed(ImportFormat::Xlsx, Malformed::beyond(Limit::CellBytes, u64::from(row) + 1, 0)));
            }
        }
    }
    Ok(Some(rows.saturating_sub(1)))
}

/// What reading a file yields: first the header, then each row's cells by column index.
pub enum Event<'a> {
    Header { columns: &'a [Option<Column>], unknown: &'a [String] },
    Row { row: u64, cells: Vec<(usize, Cell)> },
}

/// Reads every row of a checked file into `visit`, which may stop it with an error.
pub fn read_rows(
    upload: &mut Upload,
    checked: &Checked,
    mut visit: impl FnMut(Event) -> Result<(), AppError>,
) -> Result<(), AppError> {
    let format = upload.format;
    let file = upload.rewound()?;
    match format {
        ImportFormat::Csv => read_csv(file, checked.encoding, &mut visit),
        ImportFormat::Ndjson => read_ndjson(file, &checked.keys, &mut visit),
        ImportFormat::Xlsx => read_workbook(file, &mut visit),
    }
}

fn header_event(headers: &[String], visit: &mut impl FnMut(Event) -> Result<(), AppError>) -> Result<(), AppError> {
    let (columns, unknown) = read_header(headers);
    visit(Event::Header { columns: &columns, unknown: &unknown })
}

fn read_csv(
    file: &mut File,
    encoding: TextEncoding,
    visit: &mut impl FnMut(Event) -> Result<(), AppError>,
) -> Result<(), AppError> {
    let mut decoding = DecodeReaderBytesBuilder::new();
    decoding.strip_bom(true).bom_override(true);
    match encoding {
        TextEncoding::Utf8 => decoding.utf8_passthru(true),
        TextEncoding::Gb18030 => decoding.encoding(Some(GB18030)),
    };
    let text = decoding.build(BufReader::with_capacity(BLOCK, file));
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let broken = |row: u64, error: csv::Error| {
        let byte = error.position().map_or(0, |position| position.byte());
        malformed(ImportFormat::Csv, Malformed::at(row, byte, error.to_string()))
    };
    while reader.read_record(&mut record).map_err(|e| broken(row + 1, e))? {
        row += 1;
        if row == 1 {
            let headers: Vec<String> = record.iter().map(str::to_string).collect();
            header_event(&headers, visit)?;
            continue;
        }
        // An export guards formula-like texts with a leading `'` (`domain::formula`).
        visit(Event::Row {
            row,
            cells: record.iter().map(|field| Cell::of_text(formula::unguard(field))).enumerate().collect(),
        })?;
    }
    if row == 0 {
        header_event(&[], visit)?;
    }
    Ok(())
}

fn json_cell(value: serde_json::Value) -> Cell {
    match value {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::String(text) => Cell::of_text(&text),
        serde_json::Value::Number(number) => Cell::Given(Value::Number(number)),
        serde_json::Value::Bool(flag) => Cell::Given(Value::Boolean(flag)),
        other => Cell::Given(Value::Text(other.to_string())),
    }
}

fn read_ndjson(
    file: &mut File,
    keys: &[String],
    visit: &mut impl FnMut(Event) -> Result<(), AppError>,
) -> Result<(), AppError> {
    header_event(keys, visit)?;
    let index: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, key)| (key.as_str(), i)).collect();
    let mut reader = BufReader::with_capacity(BLOCK, file);
    let (mut line, mut row, mut byte) = (Vec::new(), 1u64, 0u64);
    loop {
        let read = read_line(&mut reader, &mut line, row, byte)?;
        if read == 0 {
            return Ok(());
        }
        // Row 1 is the header a spreadsheet would have, so line n is row n + 1.
        row += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&line).map_err(|e| ndjson_error(row - 1, byte, &e))?;
            let cells = object
                .into_iter()
                .filter_map(|(key, value)| Some((*index.get(key.as_str())?, json_cell(value))))
                .collect();
            visit(Event::Row { row, cells })?;
        }
        byte += read as u64;
    }
}

/// A whole number as an integer, so that a phone or code typed as a number in Excel
/// reads as its digits.
fn number_cell(number: f64) -> Cell {
    if number.fract() == 0.0 && number.abs() < 9.0e15 {
        Cell::Given(Value::Number((number as i64).into()))
    } else {
        serde_json::Number::from_f64(number).map_or(Cell::Blank, |n| Cell::Given(Value::Number(n)))
    }
}

fn workbook_cell(data: DataRef) -> Cell {
    match data {
        DataRef::Empty => Cell::Blank,
        DataRef::String(text) => Cell::of_text(&text),
        DataRef::SharedString(text) => Cell::of_text(text),
        DataRef::Int(number) => Cell::Given(Value::Number(number.into())),
        DataRef::Float(number) => number_cell(number),
        DataRef::Bool(flag) => Cell::Given(Value::Boolean(flag)),
        DataRef::DateTime(moment) => match moment.as_datetime() {
            Some(at) if at.time() == chrono::NaiveTime::MIN => {
                Cell::Given(Value::Text(at.format("%Y-%m-%d").to_string()))
            }
            Some(at) => Cell::Given(Value::Text(at.format("%Y-%m-%d %H:%M:%S").to_string())),
            None => number_cell(moment.as_f64()),
        },
        DataRef::DateTimeIso(text) | DataRef::DurationIso(text) => Cell::of_text(&text),
        DataRef::Error(error) => Cell::Given(Value::Text(error.to_string())),
    }
}

fn read_workbook(file: &mut File, visit: &mut impl FnMut(Event) -> Result<(), AppError>) -> Result<(), AppError> {
    let (mut workbook, sheet) = open_workbook(file)?;
    let mut cells = workbook.worksheet_cells_reader(&sheet).map_err(not_a_workbook)?;
    let mut current: Option<(u32, Vec<(usize, Cell)>)> = None;
    let mut headers: Option<Vec<String>> = None;
    let mut flush = |row: u32, cells: Vec<(usize, Cell)>, headers: &mut Option<Vec<String>>| -> Result<(), AppError> {
        match headers {
            None => {
                let mut names = Vec::new();
                for (column, cell) in cells {
                    names.resize(column + 1, String::new());
                    if let Cell::Given(value) = cell {
                        names[column] = value.text();
                    }
                }
                header_event(&names, visit)?;
                *headers = Some(names);
                Ok(())
            }
            Some(_) => visit(Event::Row { row: u64::from(row) + 1, cells }),
        }
    };
    loop {
        let next = cells.next_cell().map_err(|error| {
            let row = current.as_ref().map_or(0, |(row, _)| u64::from(*row) + 1);
            malformed(ImportFormat::Xlsx, Malformed::at(row, 0, format!("the sheet cannot be read: {error}")))
        })?;
        let Some(cell) = next else { break };
        let (row, column) = cell.get_position();
        let value = workbook_cell(cell.get_value().clone());
        match &mut current {
            Some((at, row_cells)) if *at == row => row_cells.push((column as usize, value)),
            _ => {
                if let Some((at, row_cells)) = current.take() {
                    flush(at, row_cells, &mut headers)?;
                }
                current = Some((row, vec![(column as usize, value)]));
            }
        }
    }
    if let Some((at, row_cells)) = current.take() {
        flush(at, row_cells, &mut headers)?;
    }
    if headers.is_none() {
        header_event(&[], visit)?;
    }
    Ok(())
}
