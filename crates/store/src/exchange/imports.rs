//! Importing the customer archive (客户档案导入): rows checked as the single-customer
//! API checks them and written a thousand at a time. New customers are written
//! set-based (one insert of customers, one of values, their categories through
//! `assignments::place_new` with history of source `import`, and the counters);
//! customers that exist and change go through the single-customer writes, each in a
//! savepoint, so that a row that fails there undoes only itself. An atomic import is
//! one transaction on one connection. The import's own row in `imports` holds its
//! progress and its report for `GET /imports/{id}`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::db::schema::{
    attribute_definitions, categories, customer_attributes, customer_categories, customers, imports,
};
use crate::db::{now, transaction, transaction_once, DbConnection};
use crate::domain::archive::Field;
use crate::domain::archive::Value;
use crate::domain::attribute::{AttributeValue, ValueType};
use crate::domain::customer::{CustomerStatus, TaxId};
use crate::domain::history::Source;
use crate::domain::import::{
    listed_columns, read_row, shortened, Cell, Column, Edit, ImportFormat, ImportMode, ImportStatus, RowEdit, RowError,
    ERRORS_LISTED,
};
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorCode, ErrorKind};

use crate::access::visibility;
use crate::archive::customer_rows::{new_snapshots, CustomerRow};
use crate::archive::customers::{self as customer_store, CustomerChanges};
use crate::catalogue::attributes::{self, Desired, Effective};
use crate::catalogue::categories::{self as category_store};
use crate::catalogue::category_rows::CategoryRow;
use crate::catalogue::schemes::SchemeRow;
use crate::classification::assignments;
use crate::classification::{ClassificationWrite, Placement, Provenance};
use crate::feed::events;
use crate::reporting::counts;
use crate::{lock_rows, LockMode, LockableTable};

/// Rows checked and written together.
const CHUNK: usize = 1_000;

/// How an import runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportOptions {
    pub mode: ImportMode,
    pub atomic: bool,
    pub dry_run: bool,
    pub ignore_unknown_columns: bool,
}

/// What an import did, or (dry run, or refused) would have done.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Tally {
    /// Data rows read (blank rows are skipped).
    pub rows_done: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows with at least one error.
    pub failed: u64,
    /// Every error, up to 10,000; `error_count` counts them all.
    pub errors: Vec<RowError>,
    pub error_count: u64,
    /// Columns left out with `ignore_unknown_columns=true`.
    pub ignored_columns: Vec<String>,
}

impl Tally {
    fn fail_row(&mut self, errors: Vec<RowError>) {
        self.failed += 1;
        self.error_count += errors.len() as u64;
        let room = ERRORS_LISTED.saturating_sub(self.errors.len());
        self.errors.extend(errors.into_iter().take(room).map(RowError::bounded));
    }
}

fn column(field: Field) -> Column {
    Column::Field(field)
}

fn row_error(row: u64, column: Option<&Column>, code: &str, message: impl Into<String>) -> RowError {
    RowError::new(row, column, code, message)
}

/// An error of the single-customer API as errors of the row: each field becomes its column.
fn errors_of(row: u64, error: &AppError) -> Vec<RowError> {
    if error.errors.is_empty() {
        return vec![RowError {
            row,
            column: None,
            code: error.code.to_string(),
            message: error.detail.clone(),
            byte: None,
        }];
    }
    error
        .errors
        .iter()
        .map(|field| {
            let column = if let Some(key) = field.field.strip_prefix("attributes.") {
                Column::Attribute(key.to_string()).header()
            } else if let Some(scheme) = field.field.strip_prefix("categories.") {
                Column::Category(scheme.to_string()).header()
            } else {
                field.field.clone()
            };
            RowError {
                row,
                column: Some(column),
                code: error.code.to_string(),
                message: field.message.clone(),
                byte: None,
            }
        })
        .collect()
}

/// An error that belongs to one row (its data), not to the import: a concurrent
/// update or a database failure stops the import instead.
fn is_row_error(error: &AppError) -> bool {
    (matches!(error.kind(), ErrorKind::Unprocessable | ErrorKind::Conflict | ErrorKind::NotFound)
        && !error.is_concurrent_update())
        || error.code == ErrorCode::OutsideRestriction
}

/// The errors of a write of one scheme's category, in that scheme's column.
fn in_field(mut error: AppError, field: &str) -> AppError {
    for found in &mut error.errors {
        found.field = field.to_string();
    }
    error
}

/// Schemes, categories and attribute definitions, read once when the header is.
#[derive(Clone)]
struct Catalogue {
    schemes: BTreeMap<String, SchemeRow>,
    /// By scheme id and code, with whether the category has children.
    categories: HashMap<(i64, String), (CategoryRow, bool)>,
    /// Every definition, by scheme id.
    definitions: HashMap<i64, Vec<Effective>>,
    /// Each key's scheme and type (a key belongs to one scheme, with one type).
    keys: HashMap<String, (i64, ValueType)>,
    /// The definitions in force in a leaf, by scheme id and leaf code.
    in_force: HashMap<(i64, String), Vec<Effective>>,
}

impl Catalogue {
    fn load(conn: &mut DbConnection) -> Result<Self, AppError> {
        let schemes: Vec<SchemeRow> = crate::db::schema::schemes::table.select(SchemeRow::as_select()).load(conn)?;
        let rows: Vec<CategoryRow> = categories::table.select(CategoryRow::as_select()).load(conn)?;
        let parents: HashSet<(i64, String)> = rows.iter().map(|row| (row.scheme_id, row.parent_code.clone())).collect();
        let categories = rows
            .into_iter()
            .map(|row| ((row.scheme_id, row.code.clone()), (parents.contains(&(row.scheme_id, row.code.clone())), row)))
            .map(|(key, (parent, row))| (key, (row, parent)))
            .collect();
        let mut definitions: HashMap<i64, Vec<Effective>> = HashMap::new();
        let mut keys = HashMap::new();
        for row in attribute_definitions::table
            .select(attributes::DefinitionRow::as_select())
            .load::<attributes::DefinitionRow>(conn)?
        {
            let definition = row.definition()?;
            keys.insert(row.attr_key.clone(), (row.scheme_id, definition.value_type));
            definitions.entry(row.scheme_id).or_default().push(Effective { row, definition });
        }
        Ok(Catalogue {
            schemes: schemes.into_iter().map(|s| (s.code.clone(), s)).collect(),
            categories,
            definitions,
            keys,
            in_force: HashMap::new(),
        })
    }

    fn scheme_by_id(&self, id: i64) -> Option<&SchemeRow> {
        self.schemes.values().find(|scheme| scheme.id == id)
    }

    /// The definitions along the path to `leaf`.
    fn in_force(&mut self, scheme: &SchemeRow, leaf: &str) -> Result<&[Effective], AppError> {
        let key = (scheme.id, leaf.to_string());
        if !self.in_force.contains_key(&key) {
            let path = category_store::path_codes(scheme, leaf)?;
            let found = self.definitions.get(&scheme.id).map_or_else(Vec::new, |all| {
                all.iter().filter(|e| path.contains(&e.row.category_code)).cloned().collect()
            });
            self.in_force.insert(key.clone(), found);
        }
        Ok(&self.in_force[&key])
    }

    /// Why `code` of `scheme` cannot take a customer now, if it cannot.
    fn refuse_category(&self, scheme: &SchemeRow, code: &str) -> Option<(&'static str, String)> {
        if !scheme.active {
            return Some((
                "scheme_inactive",
                format!("scheme {} is inactive and takes no new assignments", scheme.code),
            ));
        }
        match self.categories.get(&(scheme.id, code.to_string())) {
            None => Some(("category_not_found", format!("no category {code} in scheme {}", scheme.code))),
            Some((_, true)) => Some((
                "category_not_leaf",
                format!("{code} is not a leaf category; customers are assigned to leaf categories only"),
            )),
            Some((row, false)) if !row.active => Some(("category_inactive", format!("{code} is inactive"))),
            Some(_) => None,
        }
    }
}

/// Runs `work` with MySQL's foreign-key checks off. For the rows of new customers
/// only: every row they write refers to a customer inserted just before in the same
/// transaction, or to a category or scheme the writer holds a shared lock on, so the
/// checks (a parent lookup and lock for each of some dozen rows a customer) cannot
/// fail, and skipping them takes some 5 % off an import. Not on Galera: a node's
/// shared lock does not reach the other nodes, where a category may be deleted at the
/// same moment, and only the foreign-key check puts the category into the write set
/// that certification compares.
fn without_foreign_key_checks<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
) -> Result<T, AppError> {
    if !matches!(conn, DbConnection::Mysql(_)) || crate::db::is_galera_node(conn) {
        return work(conn);
    }
    diesel::sql_query("SET foreign_key_checks = 0").execute(conn)?;
    let result = work(conn);
    diesel::sql_query("SET foreign_key_checks = 1").execute(conn)?;
    result
}

/// An attribute cell as the JSON value of the key's type.
fn attribute_json(value_type: ValueType, value: &Value) -> Result<Json, String> {
    AttributeValue::from_text(value_type, value.text().trim()).map(|value| value.to_json())
}

/// A new customer, checked: its fields, where it goes, its values.
struct NewCustomer {
    code: String,
    name: String,
    short_name: Option<String>,
    tax_id: Option<String>,
    contact_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    address: Option<String>,
    status: CustomerStatus,
    note: Option<String>,
    /// Scheme id, category code, and whether the row named it (else the default).
    placements: Vec<(i64, String, bool)>,
    values: Desired,
    /// Its classification and attribute snapshots, as of the plan's moment.
    snapshots: (String, Option<String>),
}

/// A change of an existing customer, worked out against what it holds.
struct Change {
    row: u64,
    code: String,
    fields: CustomerChanges,
    /// Scheme code → new category (or out of the scheme), where it differs.
    moves: Vec<(String, Option<String>)>,
    /// Values that differ from the explicit ones it holds (`null` removes one).
    values: BTreeMap<String, Json>,
}

/// What a row that passed its checks asks for.
enum Planned {
    New(NewCustomer),
    Change(Change),
    Nothing,
}

/// What a chunk did.
#[derive(Default)]
struct ChunkOutcome {
    created: u64,
    updated: u64,
    unchanged: u64,
    failed: Vec<Vec<RowError>>,
}

impl ChunkOutcome {
    fn add(&mut self, other: ChunkOutcome) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed.extend(other.failed);
    }
}

/// What a chunk asks for, worked out against what the archive holds: the customers to
/// create and to change, and the rows that change nothing or fail.
struct Plan {
    /// When the chunk's customers are created and placed.
    at: chrono::NaiveDateTime,
    creating: Vec<NewCustomer>,
    changing: Vec<Change>,
    /// The rows left unchanged and the rows that failed.
    settled: ChunkOutcome,
}

/// A chunk with its plan (none when every row failed its own checks), for the writer;
/// its rows only where it commits on its own.
struct PlannedChunk {
    chunk: Chunk,
    plan: Option<Plan>,
}

/// The reading side of an import: checks the header against the catalogue and each row
/// on its own, and hands full chunks to the planner, which works out what each asks for
/// and hands it to the writer. Each of the three has a thread of its own, so that
/// reading and planning the next rows overlap writing.
pub struct Importer<'a> {
    options: &'a ImportOptions,
    schemes: HashSet<String>,
    keys: HashSet<String>,
    columns: Vec<Option<Column>>,
    pending: Chunk,
    seen_codes: FirstRows,
    seen_tax_ids: FirstRows,
    ignored_columns: Vec<String>,
    rows_done: u64,
    chunks: SyncSender<Chunk>,
    /// The planner stopped taking chunks (a later stage failed, and its error is the
    /// import's); reading stops with an error that is not.
    planner_stopped: bool,
}

/// Rows read and checked on their own, for the writer; with the rows that failed
/// already, so that the writer's tally keeps them in file order.
#[derive(Default)]
struct Chunk {
    rows: Vec<RowEdit>,
    failures: Vec<Vec<RowError>>,
    /// Rows read up to the end of this chunk.
    rows_done: u64,
}

/// How the planner ended without an error of its own.
enum PlannerEnd {
    /// Every chunk the reader handed over went to the writer.
    All,
    /// The writer stopped taking chunks (its outcome is the import's).
    WriterStopped,
}

/// The planning side: looks up what the archive holds of a chunk's customers and works
/// out what each row asks for. On MySQL it has a connection of its own, so that
/// planning a chunk overlaps writing the one before; its reads see what others
/// committed, not the import's own earlier chunks. Codes are unique in a file, so that
/// matters only for a tax id one row gives up and a later row takes: the later row is
/// refused, as it is when both are in one chunk. On SQLite the planner takes turns with
/// the writer on the import's connection.
#[derive(Clone)]
struct Planner<'p> {
    options: ImportOptions,
    /// The importing key's restriction: it changes and creates customers inside only.
    restriction: Option<&'p Restriction>,
    catalogue: Catalogue,
}

/// The writing side: what the chunks written so far did; a planner of its own to plan
/// again, row by row, a chunk whose write failed (`atomic=false`).
struct Writer<'p> {
    options: ImportOptions,
    provenance: Provenance,
    planner: Planner<'p>,
    tally: Tally,
    progress: &'p mut (dyn FnMut(&Tally) + Send),
}

/// The connection a stage uses, taken for each chunk: the planner and the writer share
/// the import's on SQLite.
type Shared<'c> = Mutex<&'c mut DbConnection>;

fn lock<'a, 'c>(shared: &'a Shared<'c>) -> Result<std::sync::MutexGuard<'a, &'c mut DbConnection>, AppError> {
    shared.lock().map_err(|_| AppError::internal("the import's connection was poisoned"))
}

/// Values seen in the file (codes, or tax ids), each with the row that had it first, by
/// a 64-bit hash of the value. The hash is kept as two halves and the row as 32 bits, so
/// that an entry takes 12 bytes instead of 16. The entries are spread over tables of
/// `SHARD_BUCKETS` buckets, as many as the file's row count needs: one table would
/// round its buckets up to a power of two, 2,097,152 for a million rows (27 MB) where
/// eighteen tables have 1,179,648 (15 MB).
struct FirstRows(Vec<HashMap<[u32; 2], u32>>);

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

    fn hand_over(&mut self) -> Result<(), AppError> {
        let chunk = Chunk { rows_done: self.rows_done, ..std::mem::take(&mut self.pending) };
        self.chunks.send(chunk).map_err(|_| {
            self.planner_stopped = true;
            AppError::internal("the import's planner stopped taking chunks")
        })
    }
}

impl Planner<'_> {
    /// Plans each chunk as it comes and hands it to the writer.
    fn run(
        mut self,
        conn: &Shared,
        chunks: Receiver<Chunk>,
        planned: SyncSender<PlannedChunk>,
    ) -> Result<PlannerEnd, AppError> {
        for mut chunk in chunks {
            let plan = if chunk.rows.is_empty() { None } else { Some(self.plan(&mut **lock(conn)?, &chunk.rows)?) };
            // The rows are planned again only where a chunk commits on its own.
            if self.options.atomic || self.options.dry_run {
                chunk.rows = Vec::new();
            }
            if planned.send(PlannedChunk { chunk, plan }).is_err() {
                return Ok(PlannerEnd::WriterStopped);
            }
        }
        Ok(PlannerEnd::All)
    }

    /// Looks up what the archive holds of the chunk's customers and works out what each row asks for.
    fn plan(&mut self, conn: &mut DbConnection, rows: &[RowEdit]) -> Result<Plan, AppError> {
        let codes: Vec<&str> = rows.iter().map(|row| row.code.as_ref().expect("checked").as_str()).collect();
        let existing: HashMap<String, CustomerRow> = customers::table
            .filter(customers::code.eq_any(&codes))
            .select(CustomerRow::as_select())
            .load::<CustomerRow>(conn)?
            .into_iter()
            .map(|row| (row.code.clone(), row))
            .collect();
        let tax_ids: Vec<&str> = rows
            .iter()
            .filter_map(|row| if let Edit::Set(t) = &row.tax_id { Some(t.as_str()) } else { None })
            .collect();
        let holders: HashMap<String, String> = if tax_ids.is_empty() {
            HashMap::new()
        } else {
            customers::table
                .filter(customers::tax_id.eq_any(&tax_ids))
                .select((customers::tax_id.assume_not_null(), customers::code))
                .load::<(String, String)>(conn)?
                .into_iter()
                .collect()
        };
        let ids: Vec<i64> = existing.values().map(|row| row.id).collect();
        let mut held: HashMap<i64, HashMap<i64, String>> = HashMap::new();
        let mut explicit: HashMap<i64, HashMap<String, String>> = HashMap::new();
        if !ids.is_empty() {
            for (customer, scheme, code) in customer_categories::table
                .filter(customer_categories::customer_id.eq_any(&ids))
                .select((
                    customer_categories::customer_id,
                    customer_categories::scheme_id,
                    customer_categories::category_code,
                ))
                .load::<(i64, i64, String)>(conn)?
            {
                held.entry(customer).or_default().insert(scheme, code);
            }
            for (customer, key, json) in customer_attributes::table
                .filter(customer_attributes::customer_id.eq_any(&ids))
                .filter(customer_attributes::from_default.eq(false))
                .select((
                    customer_attributes::customer_id,
                    customer_attributes::attr_key,
                    customer_attributes::value_json,
                ))
                .load::<(i64, String, String)>(conn)?
            {
                explicit.entry(customer).or_default().insert(key, json);
            }
        }

        let mut outcome = ChunkOutcome::default();
        let mut creating = Vec::new();
        let mut changing = Vec::new();
        let (no_categories, no_values) = (HashMap::new(), HashMap::new());
        for row in rows {
            let code = row.code.as_ref().expect("checked").as_str();
            let current = existing.get(code);
            let mut errors = Vec::new();
            if let Edit::Set(tax_id) = &row.tax_id {
                if holders.get(tax_id.as_str()).is_some_and(|holder| holder != code) {
                    errors.push(row_error(
                        row.row,
                        Some(&column(Field::TaxId)),
                        "duplicate_tax_id",
                        format!("another customer already has tax id {}", tax_id.as_str()),
                    ));
                }
            }
            let checked = match current {
                Some(current) if !visibility::admits_row(self.restriction, current)? => Err(vec![row_error(
                    row.row,
                    Some(&column(Field::Code)),
                    "outside_restriction",
                    format!("customer {code} is outside the categories this key may use"),
                )]),
                Some(_) if self.options.mode == ImportMode::Create => Err(vec![row_error(
                    row.row,
                    Some(&column(Field::Code)),
                    "duplicate_code",
                    format!("customer {code} already exists (mode=create)"),
                )]),
                Some(current) => self
                    .change(
                        row,
                        current,
                        held.get(&current.id).unwrap_or(&no_categories),
                        explicit.get(&current.id).unwrap_or(&no_values),
                    )
                    .map(|change| change.map(Planned::Change).unwrap_or(Planned::Nothing)),
                None => self.new_customer(row).map(Planned::New),
            };
            let checked = checked.and_then(|planned| match self.outside_restriction(row.row, &planned) {
                refused if refused.is_empty() => Ok(planned),
                refused => Err(refused),
            });
            match checked {
                Err(mut found) => {
                    errors.append(&mut found);
                    outcome.failed.push(errors);
                }
                Ok(_) if !errors.is_empty() => outcome.failed.push(errors),
                Ok(Planned::New(new)) => creating.push(new),
                Ok(Planned::Change(change)) => changing.push(change),
                Ok(Planned::Nothing) => outcome.unchanged += 1,
            }
        }
        let at = now();
        for new in &mut creating {
            let categories = new.placements.iter().filter_map(|(scheme_id, code, _)| {
                Some((self.catalogue.scheme_by_id(*scheme_id)?.code.as_str(), code.as_str()))
            });
            let values =
                new.values.iter().map(|(key, (value, from_default))| (key.as_str(), value.to_json(), *from_default));
            new.snapshots = new_snapshots(categories, at, values);
        }
        Ok(Plan { at, creating, changing, settled: outcome })
    }

    /// Where a row would put a customer outside the importing key's restriction: a new
    /// one without a category inside in a restricted scheme, a move out of the subtrees.
    fn outside_restriction(&self, row: u64, planned: &Planned) -> Vec<RowError> {
        let Some(restriction) = self.restriction else { return Vec::new() };
        let refused = |scheme: &str| {
            row_error(
                row,
                Some(&Column::Category(scheme.to_string())),
                "outside_restriction",
                format!("this key may only put customers in its subtrees of scheme {scheme}"),
            )
        };
        match planned {
            Planned::New(new) => {
                let held: Vec<(&str, &str)> = new
                    .placements
                    .iter()
                    .filter_map(|(id, code, _)| Some((self.catalogue.scheme_by_id(*id)?.code.as_str(), code.as_str())))
                    .collect();
                restriction
                    .schemes()
                    .filter(|(scheme, _)| {
                        !held
                            .iter()
                            .any(|(held_scheme, code)| held_scheme == scheme && restriction.allows(scheme, code))
                    })
                    .map(|(scheme, _)| refused(scheme))
                    .collect()
            }
            Planned::Change(change) => change
                .moves
                .iter()
                .filter(|(scheme, target)| {
                    visibility::ensure_allowed(Some(restriction), scheme, target.as_deref()).is_err()
                })
                .map(|(scheme, _)| refused(scheme))
                .collect(),
            Planned::Nothing => Vec::new(),
        }
    }

    fn catalogue(&mut self) -> &mut Catalogue {
        &mut self.catalogue
    }

    /// A new customer: a name, categories that take customers (named, or each active
    /// scheme's default), required schemes filled, and values that fit the definitions
    /// of where it goes.
    fn new_customer(&mut self, row: &RowEdit) -> Result<NewCustomer, Vec<RowError>> {
        let at = row.row;
        let mut errors = Vec::new();
        if row.name.is_none() {
            errors.push(row_error(
                at,
                Some(&column(Field::Name)),
                crate::domain::import::codes::REQUIRED,
                "a new customer needs a name",
            ));
        }
        let catalogue = &self.catalogue;
        let mut placements = Vec::new();
        for scheme in catalogue.schemes.values() {
            let named = row.categories.iter().find(|(code, _)| *code == scheme.code).map(|(_, edit)| edit);
            let category_column = Column::Category(scheme.code.clone());
            match named {
                Some(Edit::Set(code)) => match catalogue.refuse_category(scheme, code.as_str()) {
                    Some((problem, message)) => errors.push(row_error(at, Some(&category_column), problem, message)),
                    None => placements.push((scheme.id, code.as_str().to_string(), true)),
                },
                Some(Edit::Clear) | None if !scheme.active => {}
                Some(Edit::Keep) | None if scheme.default_category.is_some() => {
                    let default = scheme.default_category.clone().expect("checked");
                    match catalogue.refuse_category(scheme, &default) {
                        Some((problem, message)) => errors.push(row_error(
                            at,
                            Some(&category_column),
                            problem,
                            format!("the scheme's default category: {message}"),
                        )),
                        None => placements.push((scheme.id, default, false)),
                    }
                }
                _ if scheme.required => errors.push(row_error(
                    at,
                    Some(&category_column),
                    "category_required",
                    format!("scheme {} is required and has no default category", scheme.code),
                )),
                _ => {}
            }
        }
        let values = match self.values_of_new(row, &placements) {
            Ok(values) => values,
            Err(mut found) => {
                errors.append(&mut found);
                Desired::new()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let text = |edit: &Edit<String>| edit.applied_to(None);
        Ok(NewCustomer {
            code: row.code.as_ref().expect("checked").as_str().to_string(),
            name: row.name.clone().expect("checked"),
            short_name: text(&row.short_name),
            tax_id: row.tax_id.applied_to(None).map(|t: TaxId| t.as_str().to_string()),
            contact_name: text(&row.contact_name),
            phone: text(&row.phone),
            email: text(&row.email),
            address: text(&row.address),
            status: row.status.unwrap_or(CustomerStatus::Active),
            note: text(&row.note),
            placements,
            values,
            snapshots: Default::default(),
        })
    }

    fn values_of_new(&mut self, row: &RowEdit, placements: &[(i64, String, bool)]) -> Result<Desired, Vec<RowError>> {
        let at = row.row;
        let fail = |e: AppError| {
            vec![RowError { row: at, column: None, code: e.code.to_string(), message: e.detail, byte: None }]
        };
        let mut in_force: BTreeMap<String, Effective> = BTreeMap::new();
        for (scheme_id, code, _) in placements {
            let scheme = self.catalogue().scheme_by_id(*scheme_id).cloned().expect("placed in a known scheme");
            for effective in self.catalogue().in_force(&scheme, code).map_err(fail)? {
                in_force.insert(effective.row.attr_key.clone(), effective.clone());
            }
        }
        let mut errors = Vec::new();
        let mut desired = Desired::new();
        for (key, cell) in &row.attributes {
            let attribute_column = Column::Attribute(key.clone());
            let Some(effective) = in_force.get(key) else {
                errors.push(row_error(
                    at,
                    Some(&attribute_column),
                    "attribute_not_defined",
                    format!("no category of the customer defines attribute {key}"),
                ));
                continue;
            };
            let Cell::Given(value) = cell else { continue };
            match attribute_json(effective.definition.value_type, value)
                .and_then(|json| effective.definition.check(&json))
            {
                Ok(value) => {
                    desired.insert(key.clone(), (value, false));
                }
                Err(message) => errors.push(row_error(
                    at,
                    Some(&attribute_column),
                    crate::domain::import::codes::INVALID_VALUE,
                    message,
                )),
            }
        }
        for (key, effective) in &in_force {
            if desired.contains_key(key)
                || errors.iter().any(|e| e.column.as_deref() == Some(&Column::Attribute(key.clone()).header()))
            {
                continue;
            }
            match &effective.definition.default {
                Some(default) => {
                    desired.insert(key.clone(), (default.clone(), true));
                }
                None if effective.definition.required => errors.push(row_error(
                    at,
                    Some(&Column::Attribute(key.clone())),
                    "attribute_required",
                    format!("required by category {}, and it has no default", effective.row.category_code),
                )),
                None => {}
            }
        }
        if errors.is_empty() {
            Ok(desired)
        } else {
            Err(errors)
        }
    }

    /// What a row changes of an existing customer; `None` when nothing.
    fn change(
        &mut self,
        row: &RowEdit,
        current: &CustomerRow,
        held: &HashMap<i64, String>,
        explicit: &HashMap<String, String>,
    ) -> Result<Option<Change>, Vec<RowError>> {
        fn differs<T: Clone + PartialEq>(edit: &Edit<T>, current: Option<T>) -> Option<Option<T>> {
            let after = edit.applied_to(current.clone());
            (after != current).then_some(after)
        }
        let text = |edit: &Edit<String>, current: &Option<String>| differs(edit, current.clone());
        let fields = CustomerChanges {
            name: row.name.clone().filter(|name| *name != current.name),
            short_name: text(&row.short_name, &current.short_name),
            tax_id: differs(
                &row.tax_id.clone(),
                current.tax_id.as_deref().map(|t| TaxId::parse("tax_id", t)).and_then(Result::ok),
            ),
            contact_name: text(&row.contact_name, &current.contact_name),
            phone: text(&row.phone, &current.phone),
            email: text(&row.email, &current.email),
            address: text(&row.address, &current.address),
            status: row.status.filter(|status| *status != current.status),
            note: text(&row.note, &current.note),
            attributes: None,
        };
        let catalogue = &self.catalogue;
        let mut moves = Vec::new();
        for (scheme_code, edit) in &row.categories {
            let Some(scheme) = catalogue.schemes.get(scheme_code) else { continue };
            let now_in = held.get(&scheme.id);
            match edit {
                Edit::Set(code) if now_in.map(String::as_str) != Some(code.as_str()) => {
                    moves.push((scheme_code.clone(), Some(code.as_str().to_string())))
                }
                Edit::Clear if now_in.is_some() => moves.push((scheme_code.clone(), None)),
                _ => {}
            }
        }
        let mut errors = Vec::new();
        let mut values = BTreeMap::new();
        for (key, cell) in &row.attributes {
            let Some((_, value_type)) = catalogue.keys.get(key) else { continue };
            let stored = explicit.get(key).and_then(|json| serde_json::from_str::<Json>(json).ok());
            match cell {
                Cell::Null if stored.is_some() => {
                    values.insert(key.clone(), Json::Null);
                }
                Cell::Given(value) => match attribute_json(*value_type, value) {
                    Ok(json) if Some(&json) != stored.as_ref() => {
                        values.insert(key.clone(), json);
                    }
                    Ok(_) => {}
                    Err(message) => errors.push(row_error(
                        row.row,
                        Some(&Column::Attribute(key.clone())),
                        crate::domain::import::codes::INVALID_VALUE,
                        message,
                    )),
                },
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let unchanged = !fields.any() && moves.is_empty() && values.is_empty();
        Ok((!unchanged).then(|| Change { row: row.row, code: current.code.clone(), fields, moves, values }))
    }
}

impl Writer<'_> {
    /// Writes each chunk as it comes: in the import's transaction when atomic (and then
    /// the counts once, at the end), else in its own.
    fn run(mut self, conn: &Shared, chunks: Receiver<PlannedChunk>) -> Result<Tally, AppError> {
        let in_one = self.options.atomic || self.options.dry_run;
        let mut counted = Counted::default();
        for PlannedChunk { chunk, plan } in chunks {
            self.tally.rows_done = chunk.rows_done;
            for errors in chunk.failures {
                self.tally.fail_row(errors);
            }
            let Some(plan) = plan else { continue };
            let conn = &mut **lock(conn)?;
            let outcome = if in_one {
                self.write_planned(conn, plan, &mut counted)?
            } else {
                self.write_alone(conn, plan, &chunk.rows)?
            };
            self.tally.created += outcome.created;
            self.tally.updated += outcome.updated;
            self.tally.unchanged += outcome.unchanged;
            for errors in outcome.failed {
                self.tally.fail_row(errors);
            }
            (self.progress)(&self.tally);
        }
        if in_one {
            counted.apply(&mut **lock(conn)?)?;
        }
        Ok(self.tally)
    }

    /// A chunk in its own transaction; when a write fails there (a race with another
    /// writer), each of its rows in its own, planned again, so that only the rows that
    /// fail are lost.
    fn write_alone(&mut self, conn: &mut DbConnection, plan: Plan, rows: &[RowEdit]) -> Result<ChunkOutcome, AppError> {
        match transaction(conn, |conn| self.write_counted(conn, &plan)) {
            Ok(mut outcome) => {
                outcome.add(plan.settled);
                Ok(outcome)
            }
            Err(error) if !is_row_error(&error) && !error.is_concurrent_update() => Err(error),
            Err(_) => {
                let mut all = ChunkOutcome::default();
                for row in rows {
                    all.add(self.write_row_alone(conn, row)?);
                }
                Ok(all)
            }
        }
    }

    /// One row, planned and written in its own transaction; tried again after a race.
    fn write_row_alone(&mut self, conn: &mut DbConnection, row: &RowEdit) -> Result<ChunkOutcome, AppError> {
        let written = transaction(conn, |conn| {
            let plan = self.planner.plan(conn, std::slice::from_ref(row))?;
            let mut outcome = self.write_counted(conn, &plan)?;
            outcome.add(plan.settled);
            Ok(outcome)
        });
        match written {
            Ok(outcome) => Ok(outcome),
            Err(error) if is_row_error(&error) => {
                Ok(ChunkOutcome { failed: vec![errors_of(row.row, &error)], ..ChunkOutcome::default() })
            }
            Err(error) if error.is_concurrent_update() => self.write_row_alone(conn, row),
            Err(error) => Err(error),
        }
    }

    /// A plan written with its counts, in a transaction of its own.
    fn write_counted(&mut self, conn: &mut DbConnection, plan: &Plan) -> Result<ChunkOutcome, AppError> {
        let mut counted = Counted::default();
        let outcome = self.write(conn, plan, &mut counted)?;
        counted.apply(conn)?;
        Ok(outcome)
    }

    /// A plan written, with the rows it settled.
    fn write_planned(
        &mut self,
        conn: &mut DbConnection,
        plan: Plan,
        counted: &mut Counted,
    ) -> Result<ChunkOutcome, AppError> {
        let mut outcome = self.write(conn, &plan, counted)?;
        outcome.add(plan.settled);
        Ok(outcome)
    }

    /// Creates the plan's new customers and changes the others.
    fn write(&mut self, conn: &mut DbConnection, plan: &Plan, counted: &mut Counted) -> Result<ChunkOutcome, AppError> {
        let mut outcome = ChunkOutcome::default();
        lock_placements(conn, &self.planner.catalogue, &plan.creating)?;
        create(conn, &self.planner.catalogue, &self.provenance, &plan.creating, plan.at, counted)?;
        outcome.created += plan.creating.len() as u64;
        for change in &plan.changing {
            match self.apply(conn, change) {
                Ok(()) => outcome.updated += 1,
                Err(error) if is_row_error(&error) => outcome.failed.push(errors_of(change.row, &error)),
                Err(error) => return Err(error),
            }
        }
        Ok(outcome)
    }

    /// Changes one customer through the single-customer writes, in a savepoint: its
    /// moves (with the values of the scheme each move is in), then its fields and the
    /// rest of its values.
    fn apply(&self, conn: &mut DbConnection, change: &Change) -> Result<(), AppError> {
        let Catalogue { keys, schemes, .. } = &self.planner.catalogue;
        let provenance = &self.provenance;
        let restriction = self.planner.restriction;
        transaction(conn, |conn| {
            let mut rest = change.values.clone();
            for (scheme_code, target) in &change.moves {
                let scheme_id = schemes.get(scheme_code).map(|s| s.id);
                match target {
                    Some(category) => {
                        let of_scheme: BTreeMap<String, Json> = change
                            .values
                            .iter()
                            .filter(|(key, _)| keys.get(*key).map(|(id, _)| Some(*id)) == Some(scheme_id))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        rest.retain(|key, _| !of_scheme.contains_key(key));
                        let field = format!("categories.{scheme_code}");
                        let assignment = assignments::Assignment {
                            customer: &change.code,
                            scheme: scheme_code,
                            category,
                            locked: None,
                            values: &of_scheme,
                            provenance,
                            expected: None,
                            restriction,
                        };
                        assignments::assign(conn, assignment).map_err(|e| in_field(e, &field))?;
                    }
                    None => {
                        assignments::unassign(conn, &change.code, scheme_code, provenance, None, restriction)?;
                    }
                }
            }
            let mut fields = change.fields.clone();
            if !rest.is_empty() {
                fields.attributes = Some(rest);
            }
            if fields.any() {
                customer_store::update(conn, &change.code, &fields, None, restriction)?;
            }
            Ok(())
        })
    }
}

/// The counts that an import's new customers add, gathered over chunks: an atomic
/// import writes them once, at its end (its chunks may be written on two connections,
/// and every chunk adds to the same few rows); a chunk that commits on its own, with
/// itself.
#[derive(Default)]
struct Counted {
    customers: counts::CustomerDeltas,
    classification: ClassificationWrite,
}

impl Counted {
    fn apply(self, conn: &mut DbConnection) -> Result<(), AppError> {
        self.customers.apply(conn)?;
        self.classification.finish(conn, false)
    }
}

/// Locks, for the rest of the transaction on `conn`, the categories and schemes that
/// these new customers are placed in, as `assignments::assignable_category` and
/// `attributes::plan_move` do: no category gains children, and no definition changes,
/// until the import ends. The import's own connection takes them for the chunks its
/// branch writes too, so that the branch never waits for a lock.
fn lock_placements(conn: &mut DbConnection, catalogue: &Catalogue, new: &[NewCustomer]) -> Result<(), AppError> {
    let mut category_ids = BTreeSet::new();
    let mut scheme_ids = BTreeSet::new();
    for (scheme_id, code, _) in new.iter().flat_map(|customer| &customer.placements) {
        let (category, _) = catalogue
            .categories
            .get(&(*scheme_id, code.clone()))
            .ok_or_else(|| AppError::internal(format!("category {code} went missing")))?;
        category_ids.insert(category.id);
        scheme_ids.insert(*scheme_id);
    }
    let category_ids: Vec<i64> = category_ids.into_iter().collect();
    lock_rows(conn, LockableTable::Categories, &category_ids, LockMode::Shared)?;
    lock_rows(conn, LockableTable::Schemes, &scheme_ids.into_iter().collect::<Vec<_>>(), LockMode::Shared)?;
    // The catalogue was read when the import began: a category deleted or stopped since
    // (committed before the lock above) must not take these customers. The rows of new
    // customers are written without foreign-key checks on MySQL, so nothing else would
    // notice; once locked, no delete or deactivation can come until the import ends.
    let taking: BTreeSet<i64> = categories::table
        .filter(categories::id.eq_any(&category_ids))
        .filter(categories::active.eq(true))
        .select(categories::id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    if taking.len() == category_ids.len() {
        return Ok(());
    }
    if let Some(gone) = catalogue
        .categories
        .values()
        .map(|(category, _)| category)
        .find(|category| category_ids.contains(&category.id) && !taking.contains(&category.id))
    {
        let scheme = catalogue
            .scheme_by_id(gone.scheme_id)
            .map_or_else(|| gone.scheme_id.to_string(), |scheme| scheme.code.clone());
        return Err(AppError::new(
            ErrorCode::CategoryChanged,
            format!("category {} of scheme {scheme} was deleted or stopped taking customers while the import ran; nothing more was written (send the file again)", gone.code),
        ));
    }
    Ok(())
}

/// New customers, set-based, in categories locked already (`lock_placements`); what
/// they add to the counts goes to `counted`.
fn create(
    conn: &mut DbConnection,
    catalogue: &Catalogue,
    provenance: &Provenance,
    new: &[NewCustomer],
    at: chrono::NaiveDateTime,
    counted: &mut Counted,
) -> Result<(), AppError> {
    if new.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = new
        .iter()
        .map(|c| {
            let (classification, attributes) = c.snapshots.clone();
            (
                customers::code.eq(c.code.clone()),
                customers::name.eq(c.name.clone()),
                customers::short_name.eq(c.short_name.clone()),
                customers::tax_id.eq(c.tax_id.clone()),
                customers::contact_name.eq(c.contact_name.clone()),
                customers::phone.eq(c.phone.clone()),
                customers::email.eq(c.email.clone()),
                customers::address.eq(c.address.clone()),
                customers::status.eq(c.status.as_str()),
                customers::note.eq(c.note.clone()),
                customers::classification.eq(classification),
                customers::attributes.eq(attributes),
                customers::version.eq(1i64),
                customers::created_at.eq(at),
                customers::updated_at.eq(at),
            )
        })
        .collect();
    without_foreign_key_checks(conn, |conn| {
        crate::insert_many!(conn, customers::table, rows)?;
        let codes: Vec<&str> = new.iter().map(|c| c.code.as_str()).collect();
        events::record_customers_created(conn, at, &codes)?;
        let ids: HashMap<String, i64> = customers::table
            .filter(customers::code.eq_any(&codes))
            .select((customers::code, customers::id))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();
        let id_of = |code: &str| {
            ids.get(code)
                .copied()
                .ok_or_else(|| AppError::internal(format!("customer {code} was inserted and is not there")))
        };
        let all_ids: Vec<i64> = new.iter().map(|c| id_of(&c.code)).collect::<Result<_, _>>()?;
        counted.customers.add(&all_ids, 1);

        let by_default =
            Provenance::new(&provenance.actor, Source::Default, Some("default category of the scheme".into()));
        let mut placements = Vec::new();
        for (customer, id) in new.iter().zip(&all_ids) {
            for (scheme_id, code, named) in &customer.placements {
                let scheme = catalogue
                    .scheme_by_id(*scheme_id)
                    .ok_or_else(|| AppError::internal(format!("scheme {scheme_id} went missing")))?;
                let (category, _) = catalogue
                    .categories
                    .get(&(*scheme_id, code.clone()))
                    .ok_or_else(|| AppError::internal(format!("category {code} went missing")))?;
                let provenance = if *named { provenance } else { &by_default };
                placements.push(Placement {
                    customer_id: *id,
                    customer_code: &customer.code,
                    scheme,
                    category,
                    provenance,
                });
            }
        }
        counted.classification.place_new(conn, &placements, at)?;
        let values: Vec<(i64, &str, &Desired)> = new
            .iter()
            .zip(&all_ids)
            .filter(|(c, _)| !c.values.is_empty())
            .map(|(c, id)| (*id, c.code.as_str(), &c.values))
            .collect();
        attributes::insert_values(conn, &values)
    })
}

/// Runs an import: `feed` gives the importer the header and the rows, which a planner
/// thread plans and a writer thread writes, a chunk at a time; the planner reads on
/// `planning` where there is such a connection, else on the import's. Atomic (or a dry
/// run): one transaction, committed only when every row is good and it is no dry run.
/// Otherwise each chunk commits on its own.
pub fn import(
    conn: &mut DbConnection,
    planning: Option<&mut DbConnection>,
    options: &ImportOptions,
    provenance: Provenance,
    restriction: Option<&Restriction>,
    mut progress: impl FnMut(&Tally) + Send,
    feed: impl FnOnce(&mut Importer) -> Result<(), AppError>,
) -> Result<Tally, AppError> {
    let dry_run = options.dry_run;
    let in_one = options.atomic || dry_run;
    let keep = move |tally: &Tally| !dry_run && tally.error_count == 0;
    let run = move |conn: &mut DbConnection| {
        let catalogue = Catalogue::load(conn)?;
        // One chunk waits between each two stages: enough to keep the writer busy,
        // and memory to a few chunks.
        let (sender, read_chunks) = sync_channel::<Chunk>(1);
        let (planned_sender, planned_chunks) = sync_channel::<PlannedChunk>(1);
        let mut importer = Importer {
            options,
            schemes: catalogue.schemes.keys().cloned().collect(),
            keys: catalogue.keys.keys().cloned().collect(),
            columns: Vec::new(),
            pending: Chunk::default(),
            seen_codes: FirstRows::default(),
            seen_tax_ids: FirstRows::default(),
            ignored_columns: Vec::new(),
            rows_done: 0,
            chunks: sender,
            planner_stopped: false,
        };
        let planner = Planner { options: options.clone(), restriction, catalogue };
        let writer = Writer {
            options: options.clone(),
            provenance,
            planner: planner.clone(),
            tally: Tally::default(),
            progress: &mut progress,
        };
        let own = Mutex::new(conn);
        let other = planning.map(Mutex::new);
        let planning = other.as_ref().unwrap_or(&own);
        std::thread::scope(|scope| {
            let planned = scope.spawn(|| planner.run(planning, read_chunks, planned_sender));
            let written = scope.spawn(|| writer.run(&own, planned_chunks));
            let read = feed(&mut importer).and_then(|()| importer.hand_over());
            let ignored_columns = std::mem::take(&mut importer.ignored_columns);
            let reading_stopped = importer.planner_stopped;
            // The planner ends once the last chunk is handed over and the channel closes,
            // and the writer once the planner has ended.
            drop(importer);
            let planned = planned.join().unwrap_or_else(|_| Err(AppError::internal("the import's planner stopped")));
            let written = written.join().unwrap_or_else(|_| Err(AppError::internal("the import's writer stopped")));
            // A stage stopped by a later one's failure: the failure itself is the import's.
            match (read, planned, written) {
                (Err(error), _, _) if !reading_stopped => Err(error),
                (_, _, Err(error)) => Err(error),
                (_, Err(error), _) => Err(error),
                (Err(_), _, Ok(_)) | (_, Ok(PlannerEnd::WriterStopped), Ok(_)) => {
                    Err(AppError::internal("the import's writer stopped early"))
                }
                (Ok(()), Ok(PlannerEnd::All), Ok(mut tally)) => {
                    // A row's own errors are found as it is read, those against the
                    // archive as its chunk is written: sorted, the report reads in file order.
                    tally.errors.sort_by_key(|error| error.row);
                    Ok(Tally { ignored_columns, ..tally })
                }
            }
        })
    };
    if in_one {
        transaction_once(conn, run, keep)
    } else {
        run(conn)
    }
}

/// An import as `GET /imports/{id}` shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = imports)]
pub struct ImportRow {
    pub id: String,
    #[diesel(deserialize_as = String)]
    pub status: ImportStatus,
    #[diesel(deserialize_as = String)]
    pub format: ImportFormat,
    #[diesel(deserialize_as = String)]
    pub mode: ImportMode,
    pub atomic: bool,
    pub dry_run: bool,
    pub actor: String,
    pub rows_total: Option<i64>,
    pub rows_done: i64,
    pub report: Option<String>,
    pub started_at: chrono::NaiveDateTime,
    pub heartbeat_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
}

/// The report of a finished import, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tally: Tally,
    /// Why a failed import stopped.
    pub failure: Option<String>,
}

impl ImportRow {
    pub fn report(&self) -> Result<Option<Report>, AppError> {
        self.report
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| AppError::corrupt(format!("import {} has a corrupt report", self.id)))
    }
}

pub fn import_not_found(id: &str) -> AppError {
    AppError::new(ErrorCode::ImportNotFound, format!("no import {id}"))
}

pub fn start(
    conn: &mut DbConnection,
    id: &str,
    format: ImportFormat,
    options: &ImportOptions,
    actor: &str,
    rows_total: Option<u64>,
) -> Result<ImportRow, AppError> {
    let at = now();
    diesel::insert_into(imports::table)
        .values((
            imports::id.eq(id),
            imports::status.eq(ImportStatus::Running.as_str()),
            imports::format.eq(format.as_str()),
            imports::mode.eq(options.mode.as_str()),
            imports::atomic.eq(options.atomic),
            imports::dry_run.eq(options.dry_run),
            imports::actor.eq(actor),
            imports::rows_total.eq(rows_total.map(|n| n as i64)),
            imports::rows_done.eq(0i64),
            imports::started_at.eq(at),
            imports::heartbeat_at.eq(at),
        ))
        .execute(conn)?;
    get(conn, id)
}

/// How often a process refreshes the heartbeat of the imports it runs (MySQL).
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(3);
/// An import whose heartbeat is this old is taken for one whose process stopped.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15);
/// The failure of an import whose process stopped before it finished.
pub const INTERRUPTED: &str =
    "interrupted: the service running the import stopped before it finished; an atomic import wrote nothing, \
    a partial one kept the chunks it had committed (send the file again)";

/// Refreshes the heartbeat of the imports this process runs.
pub fn beat(conn: &mut DbConnection, running_here: &[String]) -> Result<(), AppError> {
    if !running_here.is_empty() {
        diesel::update(
            imports::table
                .filter(imports::id.eq_any(running_here))
                .filter(imports::status.eq(ImportStatus::Running.as_str())),
        )
        .set(imports::heartbeat_at.eq(now()))
        .execute(conn)?;
    }
    Ok(())
}

/// Records `failed` (interrupted) for every running import that no process runs, and
/// returns their ids: on SQLite, whose file one process serves, every import that
/// process does not run (`running_here`, asked after the read); on MySQL, where replicas share the database,
/// those whose heartbeat is older than `STALE_AFTER` as well. Called at start-up, every
/// `HEARTBEAT`, and by `GET /imports/{id}` for a running import not run here.
pub fn settle_interrupted(
    conn: &mut DbConnection,
    running_here: impl Fn() -> Vec<String>,
) -> Result<Vec<String>, AppError> {
    let stale_before = match conn {
        DbConnection::Mysql(_) => Some(now() - chrono::Duration::from_std(STALE_AFTER).expect("a short duration")),
        DbConnection::Sqlite(_) => None,
    };
    fail_interrupted(conn, running_here, stale_before)
}

/// Reads first, so that it writes (and on SQLite waits for the write lock) only when
/// there is such an import.
fn fail_interrupted(
    conn: &mut DbConnection,
    running_here: impl Fn() -> Vec<String>,
    stale_before: Option<chrono::NaiveDateTime>,
) -> Result<Vec<String>, AppError> {
    // Without a bound every heartbeat counts as stale.
    let cutoff = stale_before.unwrap_or_else(|| now() + chrono::Duration::days(1));
    let running = || {
        imports::table
            .filter(imports::status.eq(ImportStatus::Running.as_str()))
            .filter(imports::heartbeat_at.lt(cutoff))
    };
    let candidates = running().select(imports::id).load::<String>(conn)?;
    // Asked after the read: a process notes an import as its own before it inserts its
    // row, so every import read here that runs is in the answer.
    let running_here = running_here();
    let abandoned: Vec<String> = candidates.into_iter().filter(|id| !running_here.contains(id)).collect();
    if abandoned.is_empty() {
        return Ok(abandoned);
    }
    let report = serde_json::to_string(&Report { tally: Tally::default(), failure: Some(INTERRUPTED.to_string()) })
        .map_err(|e| AppError::internal(format!("writing the import report: {e}")))?;
    // A heartbeat written since the read means its process lives after all.
    diesel::update(running().filter(imports::id.eq_any(&abandoned)))
        .set((
            imports::status.eq(ImportStatus::Failed.as_str()),
            imports::report.eq(report),
            imports::finished_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(abandoned)
}

pub fn progress(conn: &mut DbConnection, id: &str, rows_done: u64) -> Result<(), AppError> {
    diesel::update(imports::table.find(id))
        .set((imports::rows_done.eq(rows_done as i64), imports::heartbeat_at.eq(now())))
        .execute(conn)?;
    Ok(())
}

pub fn finish(conn: &mut DbConnection, id: &str, status: ImportStatus, report: &Report) -> Result<ImportRow, AppError> {
    let text =
        serde_json::to_string(report).map_err(|e| AppError::internal(format!("writing the import report: {e}")))?;
    let at = now();
    diesel::update(imports::table.find(id))
        .set((
            imports::status.eq(status.as_str()),
            imports::rows_done.eq(report.tally.rows_done as i64),
            imports::report.eq(text),
            imports::heartbeat_at.eq(at),
            imports::finished_at.eq(at),
        ))
        .execute(conn)?;
    get(conn, id)
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<ImportRow, AppError> {
    imports::table.find(id).select(ImportRow::as_select()).first(conn).optional()?.ok_or_else(|| import_not_found(id))
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
