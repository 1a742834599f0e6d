//! custclass's database layer, below the store: one connection type over
//! MySQL/MariaDB and SQLite, its pool and admission gate, the migrations, the schema,
//! the SQL fragments both backends share, and the two ways the rest of the code
//! touches the database: `Db::run` (on the blocking pool) and `transaction` (one
//! atomic write with deadlock retries). It also owns the one error type every layer
//! above answers in (`error`), since most errors start as a database's, and the
//! shutdown signal that classification runs obey (`shutdown`).

pub mod error;
pub mod schema;
pub mod shutdown;
pub mod sql;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::mysql::MysqlConnection;
use diesel::r2d2::{ManageConnection, Pool, R2D2Connection};
use diesel::result::DatabaseErrorKind;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{AppError, ErrorKind};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Mysql(MysqlConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection. The multi-backend
/// connection re-serialises a query on every execution and cannot batch inserts;
/// hot paths and multi-row inserts go around it with the same DSL code.
#[macro_export]
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::DbConnection::Mysql($c) => $body,
            $crate::DbConnection::Sqlite($c) => $body,
        }
    };
}

/// A multi-row `INSERT`. Rows must give every column a value
/// (`treat_none_as_default_value = false`), as SQLite takes no `DEFAULT` there.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        $crate::native!($conn, |native| diesel::insert_into($table).values($rows).execute(native))
    };
}

/// Rows a statement of `insert_many!` takes.
pub const INSERT_BATCH: usize = 1000;

/// Inserts a `Vec` of rows (as `insert_rows!` does) `INSERT_BATCH` per statement and
/// the rest in one more. A batch goes as an array of that size, whose statement diesel
/// knows from its type and so prepares once per connection and reuses: a statement of
/// thousands of parameters is otherwise parsed and prepared anew every time, which on
/// MariaDB costs as much as inserting its rows.
#[macro_export]
macro_rules! insert_many {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let mut rows = $rows;
        let mut inserted: diesel::QueryResult<usize> = Ok(0);
        while inserted.is_ok() && rows.len() >= $crate::INSERT_BATCH {
            let rest = rows.split_off($crate::INSERT_BATCH);
            let batch: Box<[_; $crate::INSERT_BATCH]> =
                rows.into_boxed_slice().try_into().unwrap_or_else(|_| unreachable!("split at INSERT_BATCH"));
            inserted = $crate::insert_rows!($conn, $table, batch).map(|n| n + inserted.unwrap_or(0));
            rows = rest;
        }
        match inserted {
            Ok(before) if !rows.is_empty() => $crate::insert_rows!($conn, $table, rows).map(|n| n + before),
            other => other,
        }
    }};
}

/// The SQL backend type of `DbConnection`, for boxed queries.
pub type DbBackend = <DbConnection as Connection>::Backend;

/// `DATABASE_URL` decides the backend: `mysql://…`, or a SQLite path / `sqlite://path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Mysql(String),
    Sqlite(PathBuf),
}

pub const DEFAULT_SQLITE_PATH: &str = "./data/custclass.db";

impl DatabaseUrl {
    pub fn parse(text: &str) -> Self {
        if text.starts_with("mysql://") || text.starts_with("mariadb://") {
            DatabaseUrl::Mysql(text.replacen("mariadb://", "mysql://", 1))
        } else {
            let path = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")).unwrap_or(text);
            DatabaseUrl::Sqlite(PathBuf::from(path))
        }
    }

    /// The URL without its password, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Mysql(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &url[scheme_end + 3..at];
                    let user = credentials.split(':').next().unwrap_or("");
                    format!("mysql://{user}:***@{}", &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// Opens connections of the configured backend and prepares each session.
/// (diesel's generic manager would try every backend in turn, and SQLite accepts any text as a path.)
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
    busy_timeout: Duration,
    statement_timeout: Duration,
}

/// A pooled connection, and whether it failed in a way that may have broken it.
pub struct Session {
    pub conn: DbConnection,
    failed: bool,
}

impl ManageConnection for Manager {
    type Connection = Session;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Session, Self::Error> {
        self.open().map(|conn| Session { conn, failed: false })
    }

    fn is_valid(&self, session: &mut Session) -> Result<(), Self::Error> {
        session.conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    /// Connections are not pinged on every checkout (that would cost a round trip per
    /// request); one whose query failed with a connection error is dropped on return.
    fn has_broken(&self, session: &mut Session) -> bool {
        session.failed || session.conn.is_broken()
    }
}

impl Manager {
    fn open(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        match &self.url {
            DatabaseUrl::Mysql(url) => {
                let mut conn = MysqlConnection::establish(url).map_err(diesel::r2d2::Error::ConnectionError)?;
                // Strict mode makes MariaDB refuse truncation instead of silently storing less.
                // READ COMMITTED: a read after `lock_row` sees the latest committed data,
                // not a snapshot taken before the lock was granted.
                // No semi-join flattening: every EXISTS in our queries is meant as a
                // primary-key probe of the driving index's rows (see store::customers::list).
                for statement in [
                    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    "SET SESSION optimizer_switch = 'semijoin=off'",
                ] {
                    diesel::sql_query(statement).execute(&mut conn).map_err(diesel::r2d2::Error::QueryError)?;
                }
                // MariaDB (not MySQL) also rewrites EXISTS into IN and materialises it,
                // turns an IN list of 1,000 values into a table that, without
                // semi-joins, is probed once per row of a full scan, and splits a
                // grouped derived table into one lookup per outer row (the metrics
                // of a classification batch aggregate faster in one range scan). Its
                // subquery cache only costs here: every probe is for another customer.
                let mariadb = is_mariadb(&mut conn).map_err(diesel::r2d2::Error::QueryError)?;
                if mariadb {
                    for statement in [
                        "SET SESSION optimizer_switch = 'exists_to_in=off,split_materialized=off,subquery_cache=off'",
                        "SET SESSION in_predicate_conversion_threshold = 0",
                    ] {
                        diesel::sql_query(statement).execute(&mut conn).map_err(diesel::r2d2::Error::QueryError)?;
                    }
                    if is_galera(&mut conn).map_err(diesel::r2d2::Error::QueryError)? {
                        diesel::sql_query(format!("CREATE TEMPORARY TABLE IF NOT EXISTS {ABORT_MARKER} (id TINYINT PRIMARY KEY) ENGINE = InnoDB"))
                            .execute(&mut conn)
                            .map_err(diesel::r2d2::Error::QueryError)?;
                        GALERA.store(true, std::sync::atomic::Ordering::Relaxed);
                        let _ = GALERA_RECONNECT.set(self.clone());
                    }
                }
                let mut conn = DbConnection::Mysql(conn);
                set_statement_timeout(&mut conn, self.statement_timeout).map_err(|e| {
                    diesel::r2d2::Error::QueryError(diesel::result::Error::QueryBuilderError(e.detail.into()))
                })?;
                Ok(conn)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                for pragma in [
                    format!("PRAGMA busy_timeout = {}", self.busy_timeout.as_millis()),
                    "PRAGMA journal_mode = WAL".to_string(),
                    "PRAGMA synchronous = NORMAL".to_string(),
                    "PRAGMA foreign_keys = ON".to_string(),
                ] {
                    diesel::sql_query(pragma).execute(&mut conn).map_err(diesel::r2d2::Error::QueryError)?;
                }
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    flag: bool,
}

pub type DbPool = Pool<Manager>;

/// Builds the pool. `timeouts.wait` bounds how long a request waits for a
/// connection before it answers 503; it doubles as SQLite's lock wait.
pub fn build_pool(url: &DatabaseUrl, size: u32, timeouts: Timeouts) -> Result<DbPool, String> {
    if let DatabaseUrl::Sqlite(path) = url {
        ensure_parent_dir(path)?;
    }
    let connect_timeout = timeouts.wait;
    let manager = Manager { url: url.clone(), busy_timeout: connect_timeout, statement_timeout: timeouts.statement };
    Pool::builder()
        .max_size(size)
        .min_idle(Some(size.min(2)))
        .connection_timeout(connect_timeout)
        .test_on_check_out(false)
        .build(manager)
        .map_err(|e| format!("cannot connect to {}: {e}", url.redacted()))
}

fn ensure_parent_dir(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/mysql");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Applies pending migrations; on MySQL under the migration lease, so that replicas
/// that start together migrate once.
pub fn migrate(conn: &mut DbConnection) -> Result<Vec<String>, String> {
    let applied = match conn {
        DbConnection::Mysql(mysql) => {
            let holder = uuid::Uuid::new_v4().to_string();
            take_migration_lease(mysql, &holder)?;
            let result =
                mysql.run_pending_migrations(MYSQL_MIGRATIONS).map(|v| v.iter().map(ToString::to_string).collect());
            diesel::sql_query(
                "UPDATE custclass_migration_lock SET holder = NULL, taken_at = NULL WHERE id = 1 AND holder = ?",
            )
            .bind::<diesel::sql_types::Text, _>(&holder)
            .execute(mysql)
            .map_err(|e| format!("releasing the migration lease: {e}"))?;
            result
        }
        DbConnection::Sqlite(sqlite) => {
            sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.iter().map(ToString::to_string).collect())
        }
    };
    applied.map_err(|e| format!("migration failed: {e}"))
}

/// How long a migration lease lasts: a replica that died holding it is taken over after this.
const MIGRATION_LEASE_SECONDS: u32 = 600;

/// Takes the migration lease: the one row of `custclass_migration_lock`, written with
/// this replica's id. A lock row, not `GET_LOCK`, which is local to one server and not
/// replicated by a multi-primary cluster (Galera): the lease is taken by an `UPDATE`,
/// a write, so two nodes taking it at once conflict when their transactions are
/// certified and one of them fails and tries again. Waits while another replica holds
/// it, as long as the lease lasts.
fn take_migration_lease(mysql: &mut MysqlConnection, holder: &str) -> Result<(), String> {
    use diesel::sql_types::Text;
    let failed = |what: &str, e: diesel::result::Error| format!("{what} the migration lease: {e}");
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS custclass_migration_lock (id INT NOT NULL PRIMARY KEY, holder VARCHAR(36) NULL, taken_at DATETIME(6) NULL) ENGINE = InnoDB",
    )
    .execute(mysql)
    .map_err(|e| failed("creating", e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(MIGRATION_LEASE_SECONDS) + 60);
    loop {
        // A concurrent insert of the row on another node fails certification; the row is there then.
        let _ = diesel::sql_query("INSERT IGNORE INTO custclass_migration_lock (id) VALUES (1)").execute(mysql);
        let taken = diesel::sql_query(format!(
            "UPDATE custclass_migration_lock SET holder = ?, taken_at = NOW(6) \
             WHERE id = 1 AND (holder IS NULL OR holder = ? OR taken_at < NOW(6) - INTERVAL {MIGRATION_LEASE_SECONDS} SECOND)"
        ))
        .bind::<Text, _>(holder)
        .bind::<Text, _>(holder)
        .execute(mysql);
        match taken {
            Ok(1) => return Ok(()),
            Ok(_) => {}
            Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => {}
            Err(e) => return Err(failed("taking", e)),
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("another replica has held the migration lease for over {MIGRATION_LEASE_SECONDS} s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(diesel::QueryableByName)]
struct Inserted {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// The id the connection's last insert generated: its own, whatever other connections
/// (or, in a cluster, other nodes, whose ids interleave) inserted meanwhile.
pub fn last_insert_id(conn: &mut DbConnection) -> Result<i64, AppError> {
    let sql = match conn {
        DbConnection::Mysql(_) => "SELECT LAST_INSERT_ID() AS id",
        DbConnection::Sqlite(_) => "SELECT last_insert_rowid() AS id",
    };
    Ok(diesel::sql_query(sql).get_result::<Inserted>(conn)?.id)
}

impl DbConnection {
    pub fn ping(&mut self) -> diesel::QueryResult<()> {
        diesel::sql_query("SELECT 1").execute(self).map(drop)
    }
}

/// How often a transaction that hit a deadlock is tried before 409 `concurrent_update`.
const TRANSACTION_ATTEMPTS: usize = 4;

/// Runs `work` in one transaction and retries it on deadlocks. On SQLite the
/// transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front so
/// that two writers queue on `busy_timeout` instead of failing on lock upgrade.
/// Inside a transaction, `work` runs once in a savepoint: an error undoes its writes
/// only, and the outer transaction's retry covers a deadlock.
pub fn transaction<T, F>(conn: &mut DbConnection, work: F) -> Result<T, AppError>
where
    F: FnMut(&mut DbConnection) -> Result<T, AppError>,
{
    transaction_keeping(conn, work, |_| true)
}

/// [`transaction`] that commits only if `keep` says so of the outcome; else it rolls
/// back and still returns the outcome (a dry run that reports what it would do).
pub fn transaction_keeping<T, F>(conn: &mut DbConnection, mut work: F, keep: impl Fn(&T) -> bool) -> Result<T, AppError>
where
    F: FnMut(&mut DbConnection) -> Result<T, AppError>,
{
    if in_transaction(conn)? {
        <DbConnection as Connection>::TransactionManager::begin_transaction(conn)?;
        return finish(conn, work, keep);
    }
    let mut attempt = 1;
    loop {
        match run_once(conn, &mut work, &keep, GALERA_IDLE_LIMIT) {
            Err(error) if error.is_concurrent_update() && attempt < TRANSACTION_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(5 << attempt));
                attempt += 1;
            }
            // The node closed a connection it had stopped answering (see `run_once`):
            // the transaction was rolled back with it, so it runs again on a new one.
            Err(error) if error.is_database_unavailable() && attempt < TRANSACTION_ATTEMPTS => {
                match GALERA_RECONNECT.get() {
                    Some(manager) if is_galera_node(conn) => {
                        log::warn!("a Galera node stopped answering a transaction and closed its connection after {} s; running it again on a new connection", GALERA_IDLE_LIMIT.as_secs());
                        *conn = manager.open().map_err(|error| {
                            AppError::unavailable(format!("the database connection could not be opened again: {error}"))
                        })?;
                        attempt += 1;
                    }
                    _ => return Err(error),
                }
            }
            other => return other,
        }
    }
}

/// How a Galera node's connections are opened again after a node stopped answering
/// one (`transaction`); set when the first connection finds a Galera node.
static GALERA_RECONNECT: std::sync::OnceLock<Manager> = std::sync::OnceLock::new();

/// Runs `work` once in one transaction, for work that cannot be repeated (it consumes
/// a stream), and commits only if `keep` says so of its outcome; else rolls back and
/// still returns the outcome (a dry run, or a refusal that reports what it found).
pub fn transaction_once<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    keep: impl FnOnce(&T) -> bool,
) -> Result<T, AppError> {
    let mut work = Some(work);
    run_once(conn, |conn| work.take().expect("run once")(conn), keep, GALERA_LONG_IDLE_LIMIT)
}

fn in_transaction(conn: &mut DbConnection) -> Result<bool, AppError> {
    let status = <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn);
    Ok(status.transaction_depth()?.is_some())
}

fn run_once<T>(
    conn: &mut DbConnection,
    work: impl FnMut(&mut DbConnection) -> Result<T, AppError>,
    keep: impl FnOnce(&T) -> bool,
    idle_limit: Duration,
) -> Result<T, AppError> {
    if let DbConnection::Sqlite(sqlite) = conn {
        AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        return finish(conn, work, keep);
    }
    <DbConnection as Connection>::TransactionManager::begin_transaction(conn)?;
    if !GALERA.load(std::sync::atomic::Ordering::Relaxed) {
        return finish(conn, work, keep);
    }
    // On Galera, a transaction that an applied write-set aborts (a "brute-force
    // abort") while it is between statements, or in a read, is rolled back on the
    // server, yet the statement may still answer success; what follows would then
    // commit statement by statement, half a change. So the transaction runs with
    // autocommit off, which keeps anything after such an abort in a new transaction,
    // and marks itself in a temporary (transactional, unreplicated) table: a marker
    // gone at the end means the transaction was aborted under it, and what followed
    // is rolled back and retried as a deadlock is.
    // Such an abort now and then also leaves the server waiting for the client's next
    // command while the client waits for the answer to its last one (MDEV-20172 come
    // back); within the transaction the client never idles for long, so a short
    // `wait_timeout` (`idle_limit`) has the server close that connection instead of
    // both waiting for hours, and `transaction` runs the work again on a new
    // connection, as it does after a deadlock. Work that cannot run twice (an import,
    // `transaction_once`) waits longer, as its client may think between statements,
    // and answers 503 `database_unavailable` instead.
    let mut aborted = false;
    let mut work = work;
    let outcome = finish(
        conn,
        |conn| {
            diesel::sql_query(format!("SET autocommit = 0, wait_timeout = {}", idle_limit.as_secs())).execute(conn)?;
            diesel::sql_query(format!("INSERT INTO {ABORT_MARKER} (id) VALUES (1)")).execute(conn)?;
            let outcome = work(conn);
            match (diesel::sql_query(format!("DELETE FROM {ABORT_MARKER}")).execute(conn), outcome) {
                (Ok(1), outcome) => outcome,
                // Gone without a word, or with an error that the abort itself caused (a
                // savepoint that vanished with the transaction); a classified error,
                // such as a write-set limit, is the answer itself.
                (Ok(_), outcome) if outcome.as_ref().err().is_none_or(|error| error.kind() == ErrorKind::Internal) => {
                    aborted = true;
                    Err(AppError::concurrent_update())
                }
                (Ok(_), outcome) => outcome,
                (Err(error), outcome) => outcome.and(Err(error.into())),
            }
        },
        keep,
    );
    if outcome.is_err() {
        // Turning autocommit back on commits whatever is open, and a failed rollback
        // (diesel's bookkeeping breaks when a savepoint vanished with the aborted
        // transaction) may have left something open; after this rollback the
        // server's state is known, and diesel's is reset to match.
        diesel::sql_query("ROLLBACK").execute(conn)?;
        *<DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn) = Default::default();
    }
    let outcome = if aborted { Err(AppError::concurrent_update()) } else { outcome };
    diesel::sql_query("SET autocommit = 1, wait_timeout = DEFAULT").execute(conn)?;
    outcome
}

/// How long a Galera node waits for the next statement of a transaction that can run
/// again; see `run_once`.
const GALERA_IDLE_LIMIT: Duration = Duration::from_secs(2);
/// The same, for a transaction that runs once (an import).
const GALERA_LONG_IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `work` in the transaction just begun and commits or rolls back.
fn finish<T>(
    conn: &mut DbConnection,
    mut work: impl FnMut(&mut DbConnection) -> Result<T, AppError>,
    keep: impl FnOnce(&T) -> bool,
) -> Result<T, AppError> {
    match work(conn) {
        Ok(value) if keep(&value) => <DbConnection as Connection>::TransactionManager::commit_transaction(conn)
            .map(|()| value)
            .map_err(AppError::from),
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            <DbConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(error)
        }
    }
}

/// Whether `conn` is to a node of a Galera cluster.
pub fn is_galera_node(conn: &DbConnection) -> bool {
    matches!(conn, DbConnection::Mysql(_)) && GALERA.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the server is a node of a Galera cluster; see `run_once`.
static GALERA: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The temporary table in which a transaction on Galera marks itself (`run_once`).
const ABORT_MARKER: &str = "custclass_transaction_alive";

fn is_galera(conn: &mut MysqlConnection) -> diesel::QueryResult<bool> {
    let sql = "SELECT COALESCE((SELECT VARIABLE_VALUE = 'ON' FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = 'WSREP_ON'), FALSE) AS flag";
    Ok(diesel::sql_query(sql).get_result::<Flag>(conn)?.flag)
}

/// Runs `work` in one read transaction that sees one snapshot of the database, for
/// a report of several statements that must agree. Nothing is locked: on MySQL the
/// transaction is REPEATABLE READ (the session's READ COMMITTED gives each statement
/// its own snapshot), on SQLite a deferred one, which lets writers go on.
pub fn snapshot<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
) -> Result<T, AppError> {
    if let DbConnection::Mysql(_) = conn {
        diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn)?;
    }
    conn.transaction(work)
}

/// The defaults of `DB_TIMEOUT_MS`, `DB_STATEMENT_TIMEOUT_MS` and
/// `DB_LONG_STATEMENT_TIMEOUT_MS` (see [`Timeouts`]).
pub const DEFAULT_DB_TIMEOUT_MS: u64 = 3000;
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_LONG_STATEMENT_TIMEOUT_MS: u64 = 600_000;

/// How long database work may take, end to end.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Waiting for a connection (`DB_TIMEOUT_MS`): one deadline for the queue at the
    /// gate and the pool together.
    pub wait: Duration,
    /// One statement of an ordinary request (`DB_STATEMENT_TIMEOUT_MS`).
    pub statement: Duration,
    /// One statement of a classification run (`DB_LONG_STATEMENT_TIMEOUT_MS`).
    pub long_statement: Duration,
}

impl Timeouts {
    /// `wait`, with the default statement limits.
    pub fn with_wait(wait: Duration) -> Self {
        Self {
            wait,
            statement: Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MS),
            long_statement: Duration::from_millis(DEFAULT_LONG_STATEMENT_TIMEOUT_MS),
        }
    }
}

/// The pool as request handlers use it: every call runs on the runtime's blocking pool.
///
/// Requests queue for a connection in arrival order on `admission`, a fair
/// semaphore with one permit per pooled connection, before they take a blocking
/// thread. Waiting inside r2d2 instead wakes waiters in no particular order, which
/// under load left a few requests waiting many times longer than the rest.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    admission: std::sync::Arc<tokio::sync::Semaphore>,
    timeouts: Timeouts,
}

impl Db {
    pub fn new(pool: DbPool, timeouts: Timeouts) -> Self {
        let admission = std::sync::Arc::new(tokio::sync::Semaphore::new(pool.max_size() as usize));
        Self { pool, admission, timeouts }
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// A second connection for work that can share itself out (a full classification
    /// run, a report's two halves), taken only when at least half of the pool is free
    /// at once, so that concurrent heavy requests do not take every connection and
    /// make the next request wait.
    pub fn try_spare(&self) -> Option<Spare> {
        if self.admission.available_permits() * 2 < self.pool.max_size() as usize {
            return None;
        }
        let permit = self.admission.clone().try_acquire_owned().ok()?;
        let session = self.pool.try_get()?;
        Some(Spare { session, _permit: permit })
    }

    /// Ordinary request work: its statements are limited to `statement` on the server.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.run_within(self.timeouts.wait, Some(self.timeouts.wait + self.timeouts.statement), work).await
    }

    /// Work of many statements that may take minutes (a classification run): each
    /// statement may take `long_statement`, and nothing bounds the whole.
    pub async fn run_long<T, F>(&self, work: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let long = self.timeouts.long_statement;
        let ordinary = self.timeouts.statement;
        self.run_within(self.timeouts.wait, None, move |conn| {
            set_statement_timeout(conn, long)?;
            let result = work(conn);
            set_statement_timeout(conn, ordinary)?;
            result
        })
        .await
    }

    /// Waits at most `wait` for a connection (gate and pool together), then runs
    /// `work`. With `deadline`, the caller is answered 503 once it has passed even if
    /// the database does not answer at all (a hung server, which no server-side
    /// limit stops); the blocked thread then gives its connection back whenever
    /// the database lets go of it.
    pub async fn run_within<T, F>(&self, wait: Duration, deadline: Option<Duration>, work: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let started = tokio::time::Instant::now();
        let permit = tokio::time::timeout_at(started + wait, self.admission.clone().acquire_owned())
            .await
            .map_err(|_| AppError::unavailable("no database connection became free in time"))?
            .map_err(|_| AppError::internal("the database gate is closed"))?;
        let pool = self.pool.clone();
        let give_up_at = (started + wait).into_std();
        // What actix-web's `web::block` does, without the HTTP crate: the runtime's
        // blocking pool.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let left = give_up_at.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(1));
            let mut session = pool.get_timeout(left)?;
            let result = work(&mut session.conn);
            if matches!(&result, Err(error) if error.kind() == ErrorKind::Unavailable) {
                session.failed = true;
            }
            result
        });
        let joined = match deadline {
            Some(limit) => {
                tokio::time::timeout_at(started + limit, task).await.map_err(|_| AppError::database_timeout())?
            }
            None => task.await,
        };
        joined.map_err(|_| AppError::internal("the blocking task pool is shutting down"))?
    }
}

/// Sets how long one statement may run on the server before it is stopped (MariaDB
/// `max_statement_time`, every statement; MySQL `max_execution_time`, reads only).
/// SQLite has no such limit; its lock waits are bounded by `busy_timeout`.
pub fn set_statement_timeout(conn: &mut DbConnection, limit: Duration) -> Result<(), AppError> {
    if let DbConnection::Mysql(mysql) = conn {
        let statement = if is_mariadb(mysql)? {
            format!("SET SESSION max_statement_time = {:.3}", limit.as_secs_f64())
        } else {
            format!("SET SESSION max_execution_time = {}", limit.as_millis())
        };
        diesel::sql_query(statement).execute(mysql)?;
    }
    Ok(())
}

fn is_mariadb(conn: &mut MysqlConnection) -> diesel::QueryResult<bool> {
    Ok(diesel::sql_query("SELECT @@optimizer_switch LIKE '%exists_to_in=%' AS flag").get_result::<Flag>(conn)?.flag)
}

/// A connection held outside `Db::run`, with its place at the gate.
pub struct Spare {
    session: diesel::r2d2::PooledConnection<Manager>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Spare {
    pub fn conn(&mut self) -> &mut DbConnection {
        &mut self.session.conn
    }
}

/// `now()` truncated to microseconds, the precision both backends store.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}

/// The clock that decides when changes take effect: the system's, moved forward by
/// an offset that only tests set (`advance`), so that they need not wait for a date.
/// Replicas of one test share it.
#[derive(Debug, Clone, Default)]
pub struct Clock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Clock {
    pub fn now(&self) -> chrono::NaiveDateTime {
        now() + chrono::Duration::microseconds(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
    }
}
