//! Classification runs: their lifecycle (one running per scheme, claimed, finished,
//! abandoned when its process died) and what they found. The work itself is in
//! `run_batches`, the rules as SQL in `rule_sql`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{classification_runs, run_change_blocks};
use crate::db::{now, set_statement_timeout, transaction, Db, DbConnection, Spare};
use crate::domain::customer::CustomerCode;
use crate::domain::run::{RunStatus, Trigger};
use crate::error::{AppError, ErrorCode};

use crate::catalogue::rules::{self as rule_store, ActiveRule};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::classification::assignments::customer_ids;
use crate::classification::run_batches::{self, Change, RunRequest, Scope, Totals, CHANGES_PER_BLOCK};

/// A run whose heartbeat is older than this is taken for dead (its process stopped).
const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(10);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = classification_runs)]
pub struct RunRow {
    pub id: i64,
    pub scheme_id: i64,
    pub running_scheme_id: Option<i64>,
    #[diesel(deserialize_as = String)]
    pub status: RunStatus,
    pub dry_run: bool,
    #[diesel(deserialize_as = String)]
    pub trigger_source: Trigger,
    pub actor: String,
    pub as_of: NaiveDateTime,
    pub totals: String,
    pub error: Option<String>,
    pub started_at: NaiveDateTime,
    pub heartbeat_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub stop_requested_at: Option<NaiveDateTime>,
}

pub struct RunView {
    pub scheme: String,
    pub row: RunRow,
    pub totals: Totals,
}

fn view(scheme: &SchemeRow, row: RunRow) -> Result<RunView, AppError> {
    let totals = serde_json::from_str(&row.totals)
        .map_err(|e| AppError::corrupt(format!("run {} has unreadable totals: {e}", row.id)))?;
    Ok(RunView { scheme: scheme.code.clone(), row, totals })
}

/// A change and its place in the run: its block's id × `CHANGES_PER_BLOCK` + its index there.
pub struct ChangeRow {
    pub position: i64,
    pub change: Change,
}

pub fn run_not_found(scheme: &str, id: i64) -> AppError {
    AppError::new(ErrorCode::RunNotFound, format!("scheme {scheme} has no classification run {id}"))
}

fn find(conn: &mut DbConnection, scheme: &SchemeRow, id: i64) -> Result<RunRow, AppError> {
    classification_runs::table
        .filter(classification_runs::scheme_id.eq(scheme.id))
        .filter(classification_runs::id.eq(id))
        .select(RunRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| run_not_found(&scheme.code, id))
}

pub fn get(conn: &mut DbConnection, scheme_code: &str, id: i64) -> Result<RunView, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let row = find(conn, &scheme, id)?;
    view(&scheme, row)
}

/// Newest first, of one `trigger` if given; `limit + 1` rows so the caller knows
/// whether more follow.
pub fn list(
    conn: &mut DbConnection,
    scheme_code: &str,
    trigger: Option<Trigger>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RunView>, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let mut query = classification_runs::table
        .filter(classification_runs::scheme_id.eq(scheme.id))
        .filter(classification_runs::id.lt(before.unwrap_or(i64::MAX)))
        .order(classification_runs::id.desc())
        .limit(limit + 1)
        .select(RunRow::as_select())
        .into_boxed();
    if let Some(trigger) = trigger {
        query = query.filter(classification_runs::trigger_source.eq(trigger.as_str()));
    }
    let rows: Vec<RunRow> = query.load(conn)?;
    rows.into_iter().map(|row| view(&scheme, row)).collect()
}

/// A run's changes in the order they were made, after position `after`; `limit + 1` of them.
pub fn changes(
    conn: &mut DbConnection,
    scheme_code: &str,
    id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<ChangeRow>, AppError> {
    const BLOCKS_PER_READ: i64 = 8;
    let scheme = scheme_store::get(conn, scheme_code)?;
    find(conn, &scheme, id)?;
    let mut found = Vec::new();
    let mut from_block = after.map_or(0, |after| after / CHANGES_PER_BLOCK);
    loop {
        let blocks: Vec<(i64, String)> = run_change_blocks::table
            .filter(run_change_blocks::run_id.eq(id))
            .filter(run_change_blocks::id.ge(from_block))
            .order(run_change_blocks::id)
            .limit(BLOCKS_PER_READ)
            .select((run_change_blocks::id, run_change_blocks::changes))
            .load(conn)?;
        for (block, text) in &blocks {
            let changes: Vec<Change> = serde_json::from_str(text)
                .map_err(|e| AppError::corrupt(format!("change block {block} of run {id} is corrupt: {e}")))?;
            let positioned = changes
                .into_iter()
                .enumerate()
                .map(|(index, change)| ChangeRow { position: block * CHANGES_PER_BLOCK + index as i64, change });
            found.extend(positioned.filter(|row| after.is_none_or(|after| row.position > after)));
            if found.len() as i64 > limit {
                found.truncate(limit as usize + 1);
                return Ok(found);
            }
        }
        match blocks.last() {
            Some((last, _)) if blocks.len() as i64 == BLOCKS_PER_READ => from_block = last + 1,
            _ => return Ok(found),
        }
    }
}

fn run_in_progress(scheme: &str, holder: Option<i64>) -> AppError {
    let which = holder.map_or("another classification run".to_string(), |id| format!("classification run {id}"));
    AppError::new(ErrorCode::RunInProgress, format!("{which} of scheme {scheme} is in progress; wait for it to finish"))
}

/// Records a new run as the one running for its scheme; the unique index on
/// `running_scheme_id` refuses a second one. A holder without a heartbeat for
/// `STALE_AFTER` died with its process and is marked abandoned.
fn claim(conn: &mut DbConnection, scheme: &SchemeRow, request: &RunRequest) -> Result<i64, AppError> {
    let id = transaction(conn, |conn| {
        let holder: Option<RunRow> = classification_runs::table
            .filter(classification_runs::running_scheme_id.eq(scheme.id))
            .select(RunRow::as_select())
            .first(conn)
            .optional()?;
        let at = now();
        if let Some(holder) = holder {
            if at - holder.heartbeat_at < STALE_AFTER {
                return Err(run_in_progress(&scheme.code, Some(holder.id)));
            }
            diesel::update(classification_runs::table.filter(classification_runs::id.eq(holder.id)))
                .set((
                    classification_runs::running_scheme_id.eq(None::<i64>),
                    classification_runs::status.eq(RunStatus::Abandoned.as_str()),
                    classification_runs::error
                        .eq(Some("the run stopped without finishing (no heartbeat for 10 minutes)")),
                    classification_runs::finished_at.eq(Some(at)),
                ))
                .execute(conn)?;
        }
        let inserted = diesel::insert_into(classification_runs::table)
            .values((
                classification_runs::scheme_id.eq(scheme.id),
                classification_runs::running_scheme_id.eq(Some(scheme.id)),
                classification_runs::status.eq(RunStatus::Running.as_str()),
                classification_runs::dry_run.eq(request.dry_run),
                classification_runs::trigger_source.eq(request.trigger.as_str()),
                classification_runs::actor.eq(&request.actor),
                classification_runs::as_of.eq(request.as_of),
                classification_runs::totals.eq(serde_json::to_string(&Totals::default()).expect("totals serialise")),
                classification_runs::started_at.eq(at),
                classification_runs::heartbeat_at.eq(at),
            ))
            .execute(conn);
        match inserted {
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
                Err(run_in_progress(&scheme.code, None))
            }
            other => other.map_err(AppError::from),
        }?;
        crate::db::last_insert_id(conn)
    })?;
    // On a multi-primary cluster (Galera) another node's claim can win after this one
    // committed locally: the slot is this run's only if it holds it now.
    let holder: Option<i64> = classification_runs::table
        .filter(classification_runs::running_scheme_id.eq(scheme.id))
        .select(classification_runs::id)
        .first(conn)
        .optional()?;
    if holder == Some(id) {
        Ok(id)
    } else {
        Err(run_in_progress(&scheme.code, holder))
    }
}

/// A run recorded as the one running for its scheme, with the rules it evaluates.
pub struct Claimed {
    pub id: i64,
    scheme: SchemeRow,
    rules: Vec<ActiveRule>,
}

/// Runs the scheme's enabled rules over `request.scope` and returns the finished run.
pub fn run(conn: &mut DbConnection, scheme_code: &str, request: &RunRequest) -> Result<RunView, AppError> {
    let claimed = start(conn, scheme_code, request)?;
    finish(conn, None, &claimed, request)
}

/// A run asked for over HTTP: for the listed customers (`codes`) or everyone. It
/// tells `on_start` the run once it holds the scheme's slot. A run over everyone
/// shares its batches with a second connection when `db` has one free at once
/// (MySQL only: SQLite has one writer, so a second would only wait); that one's
/// statements get the same long limit as `conn`'s.
pub fn run_requested(
    conn: &mut DbConnection,
    db: &Db,
    scheme_code: &str,
    codes: Option<Vec<CustomerCode>>,
    request: impl FnOnce(Scope) -> RunRequest,
    on_start: impl FnOnce(RunView),
) -> Result<RunView, AppError> {
    let mut spare = if codes.is_none() && matches!(conn, DbConnection::Mysql(_)) { db.try_spare() } else { None };
    if let Some(spare) = spare.as_mut() {
        set_statement_timeout(spare.conn(), db.timeouts().long_statement)?;
    }
    let scope = match codes {
        Some(codes) => {
            let mut ids: Vec<i64> = customer_ids(conn, &codes, None)?.into_values().collect();
            ids.sort_unstable();
            Scope::Customers(ids)
        }
        None => Scope::Everyone,
    };
    let request = request(scope);
    let claimed = start(conn, scheme_code, &request)?;
    on_start(current(conn, &claimed)?);
    let finished = finish(conn, spare.as_mut().map(Spare::conn), &claimed, &request);
    if let Some(spare) = spare.as_mut() {
        set_statement_timeout(spare.conn(), db.timeouts().statement)?;
    }
    finished
}

/// Checks the scheme and its rules and claims the scheme's running slot; every
/// refusal (`scheme_inactive`, `rule_invalid`, `run_in_progress`) comes from here.
pub fn start(conn: &mut DbConnection, scheme_code: &str, request: &RunRequest) -> Result<Claimed, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    if !scheme.active {
        return Err(AppError::new(
            ErrorCode::SchemeInactive,
            format!("scheme {scheme_code} is inactive and takes no new assignments"),
        ));
    }
    let rules = rule_store::enabled(conn, &scheme)?;
    let id = claim(conn, &scheme, request)?;
    Ok(Claimed { id, scheme, rules })
}

/// The run as it stands (just claimed: `running` with zero counts).
pub fn current(conn: &mut DbConnection, claimed: &Claimed) -> Result<RunView, AppError> {
    let row = find(conn, &claimed.scheme, claimed.id)?;
    view(&claimed.scheme, row)
}

/// Evaluates and applies a claimed run batch by batch (sharing the batches with
/// `helper`, when given), then records how it ended and frees the scheme's running slot.
pub fn finish(
    conn: &mut DbConnection,
    helper: Option<&mut DbConnection>,
    claimed: &Claimed,
    request: &RunRequest,
) -> Result<RunView, AppError> {
    let Claimed { id, scheme, rules } = claimed;
    let _going = request.shutdown.track_run();
    let outcome = run_batches::execute(conn, helper, scheme, rules, request, *id);
    let (status, error) = match &outcome {
        Ok(status) => (*status, None),
        Err(error) => (RunStatus::Failed, Some(error.detail.clone())),
    };
    transaction(conn, |conn| record_ending(conn, scheme, *id, status, error.as_deref()))?;
    outcome?;
    current(conn, claimed)
}

/// Records how a run ended, frees its scheme's running slot, and tells the feed.
fn record_ending(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    id: i64,
    status: RunStatus,
    error: Option<&str>,
) -> Result<(), AppError> {
    diesel::update(classification_runs::table.filter(classification_runs::id.eq(id)))
        .set((
            classification_runs::running_scheme_id.eq(None::<i64>),
            classification_runs::status.eq(status.as_str()),
            classification_runs::error.eq(error),
            classification_runs::finished_at.eq(Some(now())),
        ))
        .execute(conn)?;
    let run = find(conn, scheme, id)?;
    let totals: serde_json::Value = serde_json::from_str(&run.totals)
        .map_err(|e| AppError::corrupt(format!("run {id} holds unreadable totals: {e}")))?;
    let finished = serde_json::json!({
        "scheme": scheme.code, "run_id": id, "status": status.as_str(), "dry_run": run.dry_run,
        "trigger": run.trigger_source.as_str(), "totals": totals, "error": error,
    });
    crate::feed::events::record_one(conn, crate::domain::event::EventType::ClassificationRunFinished, finished)
}

fn run_not_running(scheme: &str, run: &RunRow) -> AppError {
    AppError::new(
        ErrorCode::RunNotRunning,
        format!("classification run {} of scheme {scheme} has already ended ({})", run.id, run.status.as_str()),
    )
}

/// Asks a running run to stop before its next batch, on whichever replica runs it; it
/// then records `cancelled` with the counts of the batches it committed. A run whose
/// process died (no heartbeat for `STALE_AFTER`) is recorded `cancelled` at once.
pub fn request_stop(conn: &mut DbConnection, scheme_code: &str, id: i64) -> Result<RunView, AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        let run = find(conn, &scheme, id)?;
        if run.status != RunStatus::Running {
            return Err(run_not_running(&scheme.code, &run));
        }
        let at = now();
        if at - run.heartbeat_at >= STALE_AFTER {
            record_ending(
                conn,
                &scheme,
                id,
                RunStatus::Cancelled,
                Some("the run had stopped without finishing (no heartbeat for 10 minutes)"),
            )?;
        } else if run.stop_requested_at.is_none() {
            diesel::update(classification_runs::table.find(id))
                .set(classification_runs::stop_requested_at.eq(Some(at)))
                .execute(conn)?;
        }
        view(&scheme, find(conn, &scheme, id)?)
    })
}
