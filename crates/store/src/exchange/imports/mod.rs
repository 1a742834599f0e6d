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
use crate::catalogue::attribute_values::{self, Desired};
use crate::catalogue::attributes::{self, Effective};
use crate::catalogue::categories::{self as category_store};
use crate::catalogue::category_rows::CategoryRow;
use crate::catalogue::schemes::SchemeRow;
use crate::classification::assignments;
use crate::classification::{ClassificationWrite, Placement, Provenance};
use crate::feed::events;
use crate::reporting::counts;
use crate::{lock_rows, LockMode, LockableTable};

mod importer;
mod planner;
mod writer;

use importer::FirstRows;

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
