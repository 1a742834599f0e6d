//! The reading side of an import: the header checked against the catalogue, each row on its own,
//! and the codes and tax ids seen so far.

use super::*;

/// Values seen in the file (codes, or tax ids), each with the row that had it first, by
/// a 64-bit hash of the value. The hash is kept as two halves and the row as 32 bits, so
/// that an entry takes 12 bytes instead of 16. The entries are spread over tables of
/// `SHARD_BUCKETS` buckets, as many as the file's row count needs: one table would
/// round its buckets up to a power of two, 2,097,152 for a million rows (27 MB) where
/// eighteen tables have 1,179,648 (15 MB).
pub(super) struct FirstRows(Vec<HashMap<[u32; 2], u32>>);

/// One table that grows, for a file whose row count is not known.
impl Default for FirstRows {
    fn default() -> Self {
        FirstRows(vec![HashMap::new()])
    }
}

/// Buckets of one table of `FirstRows`; it holds seven eighths as many values.
const SHARD_BUCKETS: usize = 65_536;

impl FirstRows {
    fn reserve(&mut self, rows: usize) {
        let per_table = SHARD_BUCKETS / 8 * 7;
        self.0 = (0..rows.div_ceil(per_table).max(1)).map(|_| HashMap::with_capacity(per_table.min(rows))).collect();
    }

    /// The row that had `value` first, or none when `row` is the first.
    fn seen(&mut self, value: &str, row: u64) -> Option<u64> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        let hash = hasher.finish();
        let table = (hash % self.0.len() as u64) as usize;
        match self.0[table].entry([(hash >> 32) as u32, hash as u32]) {
            std::collections::hash_map::Entry::Occupied(first) => Some(u64::from(*first.get())),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(u32::try_from(row).unwrap_or(u32::MAX));
                None
            }
        }
    }
}

/// A refused header: the detail and the row errors name the first `COLUMNS_LISTED`
/// columns and count the rest, so that the answer stays small however wide the file.
fn header_refused(code: ErrorCode, what: &str, hint: &str, columns: &[String]) -> AppError {
    let (listed, more) = listed_columns(columns);
    let more_text = if more > 0 { format!(" and {more} more") } else { String::new() };
    let detail = format!("{what}: {}{more_text}{hint}", listed.join(", "));
    let message = shortened(detail.clone());
    AppError {
        row_errors: listed
            .into_iter()
            .map(|header| RowError {
                row: 1,
                column: Some(header),
                code: code.label().to_string(),
                message: message.clone(),
                byte: None,
            })
            .collect(),
        ..AppError::validation(code, detail, Vec::new())
    }
}

impl Importer<'_> {
    /// Makes room for the rows the file holds, when its check counted them, so that the
    /// tables of codes and tax ids seen are not copied while they grow.
    pub fn expect_rows(&mut self, rows: Option<u64>) {
        let rows = rows.map_or(0, |rows| rows.min(crate::domain::import::MAX_ROWS) as usize);
        self.seen_codes.reserve(rows);
        self.seen_tax_ids.reserve(rows);
    }

    /// The header: unknown columns refuse the import unless ignored; a `category:` of no
    /// scheme and an `attr:` of no attribute are unknown too.
    pub fn header(&mut self, columns: &[Option<Column>], unknown: &[String]) -> Result<(), AppError> {
        let mut columns = columns.to_vec();
        let mut unknown = unknown.to_vec();
        for column in columns.iter_mut() {
            let known = match column {
                Some(Column::Category(scheme)) => self.schemes.contains(scheme),
                Some(Column::Attribute(key)) => self.keys.contains(key),
                _ => true,
            };
            if !known {
                unknown.push(column.take().expect("checked").header());
            }
        }
        if !unknown.is_empty() && !self.options.ignore_unknown_columns {
            let hint = "; columns are the customer fields, category:SCHEME for an existing scheme and attr:KEY for a defined attribute (or send ignore_unknown_columns=true)";
            return Err(header_refused(ErrorCode::UnknownColumns, "unknown columns", hint, &unknown));
        }
        let repeated = crate::domain::import::repeated_columns(&columns);
        if !repeated.is_empty() {
            return Err(header_refused(ErrorCode::RepeatedColumns, "columns named twice", "", &repeated));
        }
        if !columns.contains(&Some(column(Field::Code))) {
            return Err(header_refused(
                ErrorCode::CodeColumnMissing,
                "the file needs a code column (row 1 holds the column names); missing",
                "",
                &["code".to_string()],
            ));
        }
        self.ignored_columns = unknown.into_iter().map(shortened).collect();
        self.columns = columns;
        Ok(())
    }

    /// One data row; hands a chunk to the writer when one is full.
    pub fn row(&mut self, row: u64, cells: Vec<(usize, Cell)>) -> Result<(), AppError> {
        if cells.iter().all(|(_, cell)| *cell == Cell::Blank) {
            return Ok(());
        }
        self.rows_done += 1;
        let mut extra = Vec::new();
        let mut known = Vec::new();
        for (index, cell) in cells {
            match self.columns.get(index) {
                Some(Some(column)) => known.push((column, cell)),
                Some(None) => {}
                None if cell != Cell::Blank => extra.push(row_error(
                    row,
                    None,
                    crate::domain::import::codes::EXTRA_CELLS,
                    format!("cell {} is right of the last column", index + 1),
                )),
                None => {}
            }
        }
        let edit = match read_row(row, known) {
            Ok(edit) if extra.is_empty() => edit,
            Ok(_) => return self.fail(extra),
            Err(mut errors) => {
                errors.extend(extra);
                return self.fail(errors);
            }
        };
        let mut errors = Vec::new();
        let code = edit.code.as_ref().expect("read_row requires a code").as_str();
        if let Some(first) = self.seen_codes.seen(code, row) {
            errors.push(row_error(
                row,
                Some(&column(Field::Code)),
                "duplicate_in_file",
                format!("code {code} is also on row {first}"),
            ));
        }
        if let Edit::Set(tax_id) = &edit.tax_id {
            if let Some(first) = self.seen_tax_ids.seen(tax_id.as_str(), row) {
                errors.push(row_error(
                    row,
                    Some(&column(Field::TaxId)),
                    "duplicate_in_file",
                    format!("tax id {} is also on row {first}", tax_id.as_str()),
                ));
            }
        }
        if !errors.is_empty() {
            return self.fail(errors);
        }
        self.pending.rows.push(edit);
        if self.pending.rows.len() >= CHUNK {
            self.hand_over()?;
        }
        Ok(())
    }

    fn fail(&mut self, errors: Vec<RowError>) -> Result<(), AppError> {
        self.pending.failures.push(errors);
        Ok(())
    }

    pub(super) fn hand_over(&mut self) -> Result<(), AppError> {
        let chunk = Chunk { rows_done: self.rows_done, ..std::mem::take(&mut self.pending) };
        self.chunks.send(chunk).map_err(|_| {
            self.planner_stopped = true;
            AppError::internal("the import's planner stopped taking chunks")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::FirstRows;

    #[test]
    fn a_value_seen_again_names_the_row_that_had_it_first_in_whichever_table_it_is() {
        let mut seen = FirstRows::default();
        seen.reserve(200_000);
        assert_eq!(seen.0.len(), 4, "57,344 values a table");
        assert!(seen.0.iter().all(|table| table.capacity() == 57_344));
        for row in 1..=200_000 {
            assert_eq!(seen.seen(&format!("C{row:07}"), row), None);
        }
        assert!(seen.0.iter().all(|table| table.len() > 45_000), "the values spread over every table");
        assert_eq!(seen.seen("C0000007", 200_001), Some(7));
        assert_eq!(seen.seen("C0200000", 200_002), Some(200_000));
        let mut unknown_length = FirstRows::default();
        assert_eq!(
            (unknown_length.seen("A", 1), unknown_length.seen("A", 2)),
            (None, Some(1)),
            "a file of unknown length"
        );
    }
}
