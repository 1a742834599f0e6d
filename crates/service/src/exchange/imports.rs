//! Imports of the customer archive: one is started once its file is checked, runs on
//! one connection to its end and records how it ended; the imports this process runs
//! are known in memory, as the HTTP layer (which starts them and reads their progress)
//! and the import watch (`jobs`) share them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::{Db, DbConnection};
use crate::domain::history::Source;
use crate::domain::import::{ImportFormat, ImportStatus};
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::exchange::import_files::{self, Checked, Event, Upload};
use crate::store::classification::Provenance;
use crate::store::exchange::imports::{self as store, ImportOptions, ImportRow, Importer, Report, Tally};

/// How often an import in one transaction runs when it meets deadlocks.
const IMPORT_ATTEMPTS: u64 = 3;

/// Rows done of the imports this process is running, fresher than their stored rows
/// while an atomic import's transaction keeps its progress from being written (SQLite).
#[derive(Clone, Default)]
pub struct RunningImports(Arc<Mutex<HashMap<String, u64>>>);

impl RunningImports {
    pub fn set(&self, id: &str, rows_done: u64) {
        self.0.lock().expect("not poisoned").insert(id.to_string(), rows_done);
    }

    pub fn end(&self, id: &str) {
        self.0.lock().expect("not poisoned").remove(id);
    }

    pub fn rows_done(&self, id: &str) -> Option<u64> {
        self.0.lock().expect("not poisoned").get(id).copied()
    }

    /// The imports this process runs now.
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").keys().cloned().collect()
    }
}

/// A checked file and what to do with it.
pub struct ImportJob {
    pub id: String,
    pub options: ImportOptions,
    pub actor: String,
    pub restriction: Option<Arc<Restriction>>,
    pub upload: Upload,
    pub checked: Checked,
}

/// Records the import as running. It is known to run here before its row exists, so
/// that no sweep takes it for abandoned.
pub async fn begin(db: &Db, running: &RunningImports, job: &ImportJob) -> Result<ImportRow, AppError> {
    running.set(&job.id, 0);
    let (id, format, options, actor, rows_total): (String, ImportFormat, ImportOptions, String, Option<u64>) =
        (job.id.clone(), job.upload.format, job.options.clone(), job.actor.clone(), job.checked.rows_total);
    db.run(move |conn| store::start(conn, &id, format, &options, &actor, rows_total))
        .await
        .inspect_err(|_| running.end(&job.id))
}

/// Runs a begun import to its end and records how it ended; after one that wrote new
/// customers, keys them for the duplicate search in the background.
pub async fn run(db: &Db, running: &RunningImports, job: ImportJob) -> Result<ImportRow, AppError> {
    let id = job.id.clone();
    let (spares, progress) = (db.clone(), running.clone());
    let finished = db.run_long(move |conn| write(conn, &spares, &progress, job)).await;
    // `write` ends it itself; this covers an import that never got a connection, which
    // the next sweep then records as interrupted.
    running.end(&id);
    if finished.as_ref().is_ok_and(|row| row.status == ImportStatus::Succeeded && !row.dry_run) {
        let db = db.clone();
        tokio::spawn(async move { crate::store::archive::duplicates::key_unkeyed_customers(&db).await });
    }
    finished
}

/// The import as stored. A running import that no process runs is recorded as
/// interrupted before it is shown, so that it never shows `running` for nobody.
pub async fn get(db: &Db, running: &RunningImports, id: String) -> Result<ImportRow, AppError> {
    let runs_here = running.rows_done(&id).is_some();
    let running = running.clone();
    db.run(move |conn| {
        let row = store::get(conn, &id)?;
        if row.status == ImportStatus::Running
            && !runs_here
            && !store::settle_interrupted(conn, || running.ids())?.is_empty()
        {
            return store::get(conn, &id);
        }
        Ok(row)
    })
    .await
}

fn write(conn: &mut DbConnection, db: &Db, running: &RunningImports, job: ImportJob) -> Result<ImportRow, AppError> {
    let ImportJob { id, options, actor, restriction, mut upload, checked } = job;
    let id = id.as_str();
    let provenance = Provenance::new(&actor, Source::Import, Some(format!("import {id}")));
    let progress_pool = matches!(conn, DbConnection::Mysql(_)).then(|| db.pool().clone());
    let shown = running.clone();
    let mut written_at = Instant::now();
    let mut progress = move |tally: &Tally| {
        shown.set(id, tally.rows_done);
        // MySQL takes the progress on another connection while the import's own
        // transaction is open, once a second; SQLite has one writer, so it stays in
        // memory there.
        if let Some(pool) = progress_pool.as_ref().filter(|_| written_at.elapsed() >= Duration::from_secs(1)) {
            if let Ok(mut other) = pool.get_timeout(Duration::from_millis(200)) {
                let _ = store::progress(&mut other.conn, id, tally.rows_done);
                written_at = Instant::now();
            }
        }
    };
    // MySQL plans the next chunk on a spare connection, when half of the pool is free,
    // while the import's writes the one before (SQLite has one writer, and plans on
    // the import's connection between writes).
    let mut planning = if matches!(conn, DbConnection::Mysql(_)) { db.try_spare() } else { None };
    // An import in one transaction (atomic, or a dry run) that met a deadlock wrote
    // nothing, and its file is spooled: it runs again after a pause that lets a killed
    // import's rollback, still under way on the server, end (such a rollback has been
    // seen to deadlock a file sent again on the code index).
    let mut attempt = 1;
    let outcome = loop {
        let outcome = store::import(
            conn,
            planning.as_mut().map(|spare| spare.conn()),
            &options,
            provenance.clone(),
            restriction.as_deref(),
            &mut progress,
            |importer: &mut Importer| {
                importer.expect_rows(checked.rows_total);
                import_files::read_rows(&mut upload, &checked, |event| match event {
                    Event::Header { columns, unknown } => importer.header(columns, unknown),
                    Event::Row { row, cells } => importer.row(row, cells),
                })
            },
        );
        match outcome {
            Err(error)
                if error.is_concurrent_update() && (options.atomic || options.dry_run) && attempt < IMPORT_ATTEMPTS =>
            {
                log::warn!("import {id} met a deadlock and wrote nothing; it runs again");
                std::thread::sleep(Duration::from_secs(attempt));
                attempt += 1;
            }
            outcome => break outcome,
        }
    };
    let (status, report) = match &outcome {
        Ok(tally) if options.atomic && !options.dry_run && tally.error_count > 0 => {
            (ImportStatus::Rejected, Report { tally: tally.clone(), failure: None })
        }
        Ok(tally) => (ImportStatus::Succeeded, Report { tally: tally.clone(), failure: None }),
        Err(error) => (
            ImportStatus::Failed,
            Report {
                tally: Tally { errors: error.row_errors.to_vec(), ..Tally::default() },
                failure: Some(format!("{}: {}", error.code, error.detail)),
            },
        ),
    };
    // The stored row takes over from the progress in memory only once it holds the end.
    let row = store::finish(conn, id, status, &report);
    running.end(id);
    let row = row?;
    outcome.map(|_| row)
}
