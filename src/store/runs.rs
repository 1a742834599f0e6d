//! Classification runs: a scheme's enabled rules evaluated set-based, a batch of
//! customers (`RUN_BATCH_SIZE`) per statement and per transaction, first matching rule by priority.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text, Timestamp};

use crate::db::schema::{classification_runs, customers, run_change_blocks};
use crate::db::{now, set_statement_timeout, transaction, Db, DbBackend, DbConnection, Spare};
use crate::domain::customer::CustomerCode;
use crate::domain::rule::{Condition, CustomerField, Field, Metric, Op, Operand, Scalar};
use crate::error::AppError;

use super::assignments::{self, customer_ids, Mover, Provenance};
use super::attributes;
use super::categories::{self as category_store, CategoryRow};
use super::customers::{self as customer_store, SnapshotTarget};
use super::history::Source;
use super::rules::{self as rule_store, ActiveRule};
use super::schemes::{self as scheme_store, SchemeRow};
use super::transactions::{metric_columns, window_start};

/// A run whose heartbeat is older than this is taken for dead (its process stopped).
const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST …/classification-runs`.
    Request,
    /// New transactions for a scheme with `auto_classify`.
    Ingestion,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Request => "request",
            Trigger::Ingestion => "ingestion",
        }
    }
}

/// Whom a run evaluates.
#[derive(Debug, Clone)]
pub enum Scope {
    Everyone,
    Customers(Vec<i64>),
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub dry_run: bool,
    pub scope: Scope,
    pub as_of: NaiveDateTime,
    pub trigger: Trigger,
    pub actor: String,
    /// Customers per statement and per transaction.
    pub batch_size: i64,
}

/// Counters of a run, and its from → to table (`null` from: had no category).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub evaluated: i64,
    pub changed: i64,
    pub unchanged: i64,
    pub skipped_locked: i64,
    pub skipped_inactive: i64,
    pub rejected: i64,
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    pub from: Option<String>,
    pub to: String,
    pub count: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = classification_runs)]
pub struct RunRow {
    pub id: i64,
    pub scheme_id: i64,
    pub running_scheme_id: Option<i64>,
    pub status: String,
    pub dry_run: bool,
    pub trigger_source: String,
    pub actor: String,
    pub as_of: NaiveDateTime,
    pub totals: String,
    pub error: Option<String>,
    pub started_at: NaiveDateTime,
    pub heartbeat_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

pub struct RunView {
    pub scheme: String,
    pub row: RunRow,
    pub totals: Totals,
}

fn view(scheme: &SchemeRow, row: RunRow) -> RunView {
    let totals = serde_json::from_str(&row.totals).unwrap_or_default();
    RunView { scheme: scheme.code.clone(), row, totals }
}

/// One customer a run moved (or, dry, would move), or could not move.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub customer: String,
    pub from: Option<String>,
    pub to: String,
    pub rule_id: i64,
    /// `changed` or `rejected`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// The most changes one `run_change_blocks` row holds.
const CHANGES_PER_BLOCK: i64 = 1000;

/// A change and its place in the run: its block's id × `CHANGES_PER_BLOCK` + its index there.
pub struct ChangeRow {
    pub position: i64,
    pub change: Change,
}

pub fn run_not_found(scheme: &str, id: i64) -> AppError {
    AppError::not_found("run_not_found", format!("scheme {scheme} has no classification run {id}"))
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
    Ok(view(&scheme, row))
}

/// Newest first; `limit + 1` rows so the caller knows whether more follow.
pub fn list(conn: &mut DbConnection, scheme_code: &str, before: Option<i64>, limit: i64) -> Result<Vec<RunView>, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let rows: Vec<RunRow> = classification_runs::table
        .filter(classification_runs::scheme_id.eq(scheme.id))
        .filter(classification_runs::id.lt(before.unwrap_or(i64::MAX)))
        .order(classification_runs::id.desc())
        .limit(limit + 1)
        .select(RunRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(|row| view(&scheme, row)).collect())
}

/// A run's changes in the order they were made, after position `after`; `limit + 1` of them.
pub fn changes(conn: &mut DbConnection, scheme_code: &str, id: i64, after: Option<i64>, limit: i64) -> Result<Vec<ChangeRow>, AppError> {
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
            let changes: Vec<Change> = serde_json::from_str(text).map_err(|e| AppError::corrupt(format!("change block {block} of run {id} is corrupt: {e}")))?;
            let positioned = changes.into_iter().enumerate().map(|(index, change)| ChangeRow { position: block * CHANGES_PER_BLOCK + index as i64, change });
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
    AppError::conflict("run_in_progress", format!("{which} of scheme {scheme} is in progress; wait for it to finish"))
}

/// Records a new run as the one running for its scheme; the unique index on
/// `running_scheme_id` refuses a second one. A holder without a heartbeat for
/// `STALE_AFTER` died with its process and is marked abandoned.
fn claim(conn: &mut DbConnection, scheme: &SchemeRow, request: &RunRequest) -> Result<i64, AppError> {
    transaction(conn, |conn| {
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
                    classification_runs::status.eq("abandoned"),
                    classification_runs::error.eq(Some("the run stopped without finishing (no heartbeat for 10 minutes)")),
                    classification_runs::finished_at.eq(Some(at)),
                ))
                .execute(conn)?;
        }
        let inserted = diesel::insert_into(classification_runs::table)
            .values((
                classification_runs::scheme_id.eq(scheme.id),
                classification_runs::running_scheme_id.eq(Some(scheme.id)),
                classification_runs::status.eq("running"),
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
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Err(run_in_progress(&scheme.code, None)),
            other => other.map_err(AppError::from),
        }?;
        Ok(classification_runs::table
            .filter(classification_runs::running_scheme_id.eq(scheme.id))
            .select(classification_runs::id)
            .first(conn)?)
    })
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
            let mut ids: Vec<i64> = customer_ids(conn, &codes)?.into_values().collect();
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
        return Err(AppError::conflict("scheme_inactive", format!("scheme {scheme_code} is inactive and takes no new assignments")));
    }
    let rules = rule_store::enabled(conn, &scheme)?;
    let id = claim(conn, &scheme, request)?;
    Ok(Claimed { id, scheme, rules })
}

/// The run as it stands (just claimed: `running` with zero counts).
pub fn current(conn: &mut DbConnection, claimed: &Claimed) -> Result<RunView, AppError> {
    let row = find(conn, &claimed.scheme, claimed.id)?;
    Ok(view(&claimed.scheme, row))
}

/// Evaluates and applies a claimed run batch by batch (sharing the batches with
/// `helper`, when given), then records how it ended and frees the scheme's running slot.
pub fn finish(conn: &mut DbConnection, helper: Option<&mut DbConnection>, claimed: &Claimed, request: &RunRequest) -> Result<RunView, AppError> {
    let Claimed { id, scheme, rules } = claimed;
    let outcome = execute(conn, helper, scheme, rules, request, *id);
    let (status, error) = match &outcome {
        Ok(()) => ("completed", None),
        Err(error) => ("failed", Some(error.detail.clone())),
    };
    transaction(conn, |conn| {
        diesel::update(classification_runs::table.filter(classification_runs::id.eq(*id)))
            .set((
                classification_runs::running_scheme_id.eq(None::<i64>),
                classification_runs::status.eq(status),
                classification_runs::error.eq(&error),
                classification_runs::finished_at.eq(Some(now())),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    outcome?;
    current(conn, claimed)
}

/// One customer as a batch statement evaluated it.
#[derive(Debug, QueryableByName)]
struct Evaluated {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    current_category: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    locked: Option<bool>,
    /// 1-based index of the first matching rule, 0 for none.
    #[diesel(sql_type = BigInt)]
    matched: i64,
}

/// Evaluates and applies the run batch by batch, one transaction each; with a
/// `helper` connection two workers share the batches (worth it where the database
/// runs writers side by side: MySQL, not SQLite).
fn execute(
    conn: &mut DbConnection,
    helper: Option<&mut DbConnection>,
    scheme: &SchemeRow,
    rules: &[ActiveRule],
    request: &RunRequest,
    run_id: i64,
) -> Result<(), AppError> {
    let targets: Vec<CategoryRow> = rules
        .iter()
        .map(|rule| category_store::find_row(conn, scheme.id, &rule.row.target_category)?.ok_or_else(|| AppError::internal("a rule's target vanished")))
        .collect::<Result<_, _>>()?;
    let selections: Vec<Selection> = match &request.scope {
        Scope::Customers(ids) => ids.chunks(request.batch_size as usize).map(Selection::Ids).collect(),
        Scope::Everyone => {
            let (low, high): (Option<i64>, Option<i64>) = customers::table.select((diesel::dsl::min(customers::id), diesel::dsl::max(customers::id))).first(conn)?;
            match (low, high) {
                (Some(low), Some(high)) => {
                    let size = request.batch_size;
                    (0..).map(|i| low + i * size).take_while(|start| *start <= high).map(|start| Selection::Range(start, start + size - 1)).collect()
                }
                _ => Vec::new(),
            }
        }
    };
    // Conditions name schemes by code; their ids are read once per run.
    let scheme_ids: HashMap<String, i64> = crate::db::schema::schemes::table
        .select((crate::db::schema::schemes::code, crate::db::schema::schemes::id))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let progress = Mutex::new(Progress::default());
    // The batches not yet taken. The worker of the helper connection takes them from the
    // end, so that the two write to far-apart pages of every index ordered by customer.
    let pending = Mutex::new(0..selections.len());
    let stop = AtomicBool::new(false);
    // Each worker takes a batch until none is left or the other one failed.
    let work = |conn: &mut DbConnection, from_the_end: bool| -> Result<(), AppError> {
        while !stop.load(Ordering::Relaxed) {
            let taken = {
                let mut pending = pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if from_the_end {
                    pending.next_back()
                } else {
                    pending.next()
                }
            };
            let Some(selection) = taken.and_then(|index| selections.get(index)) else { break };
            let batch = transaction(conn, |conn| {
                let mut batch = Progress::default();
                evaluate_batch(conn, scheme, rules, &targets, &scheme_ids, request, run_id, selection, &mut batch.totals, &mut batch.transitions)?;
                Ok(batch)
            });
            let recorded = batch.and_then(|batch| {
                // Counted only once the batch committed, so a retried batch counts once;
                // written under the lock, so the stored totals never go back.
                let mut progress = progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                progress.add(&batch);
                diesel::update(classification_runs::table.filter(classification_runs::id.eq(run_id)))
                    .set((classification_runs::totals.eq(progress.totals_json()), classification_runs::heartbeat_at.eq(now())))
                    .execute(conn)?;
                Ok(())
            });
            if recorded.is_err() {
                stop.store(true, Ordering::Relaxed);
                return recorded;
            }
        }
        Ok(())
    };
    match helper {
        Some(helper) => std::thread::scope(|scope| {
            let helping = scope.spawn(|| work(helper, true));
            let own = work(conn, false);
            let helped = helping.join().unwrap_or_else(|_| Err(AppError::internal("a classification run worker stopped")));
            own.and(helped)
        }),
        None => work(conn, false),
    }
}

/// What a run's committed batches found.
#[derive(Default)]
struct Progress {
    totals: Totals,
    transitions: BTreeMap<(Option<String>, String), i64>,
}

impl Progress {
    fn add(&mut self, batch: &Progress) {
        self.totals.add(&batch.totals);
        for (key, count) in &batch.transitions {
            *self.transitions.entry(key.clone()).or_insert(0) += count;
        }
    }

    fn totals_json(&self) -> String {
        let mut totals = self.totals.clone();
        totals.transitions = self.transitions.iter().map(|((from, to), count)| Transition { from: from.clone(), to: to.clone(), count: *count }).collect();
        serde_json::to_string(&totals).expect("totals serialise")
    }
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.evaluated += other.evaluated;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.skipped_locked += other.skipped_locked;
        self.skipped_inactive += other.skipped_inactive;
        self.rejected += other.rejected;
    }
}

enum Selection<'a> {
    Range(i64, i64),
    Ids(&'a [i64]),
}

impl Selection<'_> {
    /// The SQL condition on `column`; ids come from the database, never from a request.
    fn on(&self, column: &str) -> String {
        match self {
            Selection::Range(low, high) => format!("{column} BETWEEN {low} AND {high}"),
            Selection::Ids(ids) => format!("{column} IN ({})", super::id_list(ids)),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate_batch(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    rules: &[ActiveRule],
    targets: &[CategoryRow],
    scheme_ids: &HashMap<String, i64>,
    request: &RunRequest,
    run_id: i64,
    selection: &Selection,
    totals: &mut Totals,
    transitions: &mut BTreeMap<(Option<String>, String), i64>,
) -> Result<(), AppError> {
    let rows = evaluate(conn, scheme, rules, scheme_ids, request.as_of, selection)?;
    let mut groups: BTreeMap<usize, Vec<Mover>> = BTreeMap::new();
    for row in rows {
        if row.status != "active" {
            totals.skipped_inactive += 1;
            continue;
        }
        totals.evaluated += 1;
        if row.locked == Some(true) {
            totals.skipped_locked += 1;
            continue;
        }
        let Some(index) = usize::try_from(row.matched).ok().and_then(|m| m.checked_sub(1)) else {
            totals.unchanged += 1;
            continue;
        };
        if row.current_category.as_deref() == Some(rules[index].row.target_category.as_str()) {
            totals.unchanged += 1;
            continue;
        }
        groups.entry(index).or_default().push(Mover { id: row.id, code: row.code, from: row.current_category });
    }

    if !request.dry_run {
        // Only the customers about to move are locked; one that a concurrent request
        // moved or pinned since the evaluation is left to that request.
        let ids: Vec<i64> = groups.values().flatten().map(|m| m.id).collect();
        let now_in = assignments::lock_in_scheme(conn, scheme.id, &ids)?;
        for movers in groups.values_mut() {
            movers.retain(|m| {
                let still = match now_in.get(&m.id) {
                    Some((code, locked)) => !locked && m.from.as_deref() == Some(code.as_str()),
                    None => m.from.is_none(),
                };
                if !still {
                    totals.unchanged += 1;
                }
                still
            });
        }
    }
    let mut records = Vec::new();
    // Customers moved with their values rewritten, and moved with their values as they were.
    let (mut revalued, mut reassigned) = (Vec::new(), Vec::new());
    for (index, movers) in groups {
        let rule = &rules[index].row;
        let target = &targets[index];
        let members: Vec<(i64, &str)> = movers.iter().map(|m| (m.id, m.code.as_str())).collect();
        let plan = attributes::plan_move(conn, scheme, Some(&target.code), &members, &BTreeMap::new())?;
        let (accepted, refused): (Vec<Mover>, Vec<Mover>) = movers.into_iter().partition(|m| !plan.rejected.contains_key(&m.id));
        for mover in &refused {
            totals.rejected += 1;
            let detail = plan.rejected.get(&mover.id).map(attributes::Rejection::describe);
            records.push(Change { customer: mover.code.clone(), from: mover.from.clone(), to: rule.target_category.clone(), rule_id: rule.id, outcome: "rejected".into(), detail });
        }
        for mover in &accepted {
            totals.changed += 1;
            *transitions.entry((mover.from.clone(), rule.target_category.clone())).or_insert(0) += 1;
            records.push(Change { customer: mover.code.clone(), from: mover.from.clone(), to: rule.target_category.clone(), rule_id: rule.id, outcome: "changed".into(), detail: None });
        }
        if request.dry_run || accepted.is_empty() {
            continue;
        }
        let rewritten = plan.rewrites();
        let mut dropped = plan.apply(conn)?;
        let provenance = Provenance {
            rule_id: Some(rule.id),
            run_id: Some(run_id),
            ..Provenance::new(&request.actor, Source::Rule, Some(format!("rule {}: {}", rule.id, rule.name)))
        };
        assignments::move_many(conn, scheme, target, &accepted, None, &provenance, &mut dropped)?;
        let (with_values, as_they_were): (Vec<i64>, Vec<i64>) = accepted.iter().map(|m| m.id).partition(|id| rewritten.contains(id));
        revalued.extend(with_values);
        reassigned.extend(as_they_were);
    }
    customer_store::refresh_snapshot(conn, SnapshotTarget::Ids(&revalued), true)?;
    customer_store::refresh_snapshot(conn, SnapshotTarget::Reassigned(&reassigned), true)?;
    let blocks: Vec<_> = records
        .chunks(CHANGES_PER_BLOCK as usize)
        .map(|block| (run_change_blocks::run_id.eq(run_id), run_change_blocks::changes.eq(serde_json::to_string(block).expect("changes serialise"))))
        .collect();
    if !blocks.is_empty() {
        crate::insert_rows!(conn, run_change_blocks::table, blocks)?;
    }
    Ok(())
}

/// A value bound into a compiled statement.
#[derive(Debug, Clone)]
enum Bind {
    BigInt(i64),
    Double(f64),
    Text(String),
    Timestamp(NaiveDateTime),
}

/// Compiles conditions to SQL text with `?` placeholders and their values, in order.
/// Only field expressions and operators come from code; every value is bound.
struct Compiler<'a> {
    mysql: bool,
    as_of: NaiveDateTime,
    scheme_ids: &'a HashMap<String, i64>,
    /// Schemes whose assignment a condition reads; each is joined once as `k<id>`.
    joined_schemes: std::collections::BTreeSet<i64>,
    sql: String,
    binds: Vec<Bind>,
}

impl Compiler<'_> {
    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    fn bind(&mut self, bind: Bind) {
        self.sql.push('?');
        self.binds.push(bind);
    }

    fn scalar(&mut self, scalar: &Scalar) {
        self.bind(match scalar {
            Scalar::Money(money) => Bind::BigInt(money.cents()),
            Scalar::Integer(n) => Bind::BigInt(*n),
            Scalar::Decimal(n) => Bind::Double(*n),
            Scalar::Boolean(flag) => Bind::BigInt(i64::from(*flag)),
            Scalar::Moment(moment) => Bind::Timestamp(*moment),
            Scalar::Text(text) => Bind::Text(text.clone()),
        });
    }

    fn field(&mut self, field: &Field) {
        match field {
            Field::Metric(Metric::Spend12m) => self.push("COALESCE(m.spend_12m, 0)"),
            Field::Metric(Metric::Orders12m) => self.push("COALESCE(m.orders_12m, 0)"),
            Field::Metric(Metric::LifetimeSpend) => self.push("COALESCE(m.lifetime_spend, 0)"),
            Field::Metric(Metric::LastOrderAt) => self.push("m.last_order_at"),
            Field::Metric(Metric::DaysSinceLastOrder) => {
                if self.mysql {
                    self.push("DATEDIFF(");
                    self.bind(Bind::Timestamp(self.as_of));
                    self.push(", m.last_order_at)");
                } else {
                    self.push("CAST(julianday(date(");
                    self.bind(Bind::Timestamp(self.as_of));
                    self.push(")) - julianday(date(m.last_order_at)) AS INTEGER)");
                }
            }
            Field::Customer(field) => self.push(match field {
                CustomerField::Code => "c.code",
                CustomerField::Name => "c.name",
                CustomerField::ShortName => "c.short_name",
                CustomerField::Status => "c.status",
                CustomerField::CreatedAt => "c.created_at",
                CustomerField::TaxId => "c.tax_id",
            }),
            Field::Attribute { key, value_type } => {
                let column = if value_type.is_numeric() { "value_number" } else { "value_text" };
                self.push(&format!("(SELECT a.{column} FROM customer_attributes a WHERE a.customer_id = c.id AND a.attr_key = "));
                self.bind(Bind::Text(key.clone()));
                self.push(")");
            }
            Field::Category { scheme } => {
                let scheme_id = self.scheme_ids.get(scheme).copied().unwrap_or(-1);
                self.joined_schemes.insert(scheme_id);
                self.push(&format!("k{}.category_code", scheme_id.max(0)));
            }
        }
    }

    /// A condition as a 0/1 expression: a comparison with a missing value is false,
    /// so `not` means what it says.
    fn condition(&mut self, condition: &Condition) {
        match condition {
            Condition::All(items) | Condition::Any(items) => {
                let joiner = if matches!(condition, Condition::All(_)) { " AND " } else { " OR " };
                self.push("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(joiner);
                    }
                    self.condition(item);
                }
                self.push(")");
            }
            Condition::Not(inner) => {
                self.push("(NOT ");
                self.condition(inner);
                self.push(")");
            }
            Condition::Leaf { field, op, value } => {
                self.push("COALESCE((");
                match (op, value) {
                    (_, Operand::Null(true)) => {
                        self.field(field);
                        self.push(" IS NULL");
                    }
                    (_, Operand::Null(false)) => {
                        self.field(field);
                        self.push(" IS NOT NULL");
                    }
                    (Op::Under, Operand::One(Scalar::Text(code))) => {
                        self.field(field);
                        self.push(" >= ");
                        self.bind(Bind::Text(code.clone()));
                        self.push(" AND ");
                        self.field(field);
                        self.push(" < ");
                        self.bind(Bind::Text(super::prefix_upper_bound(code)));
                    }
                    (_, Operand::One(scalar)) => {
                        self.field(field);
                        self.push(&format!(" {} ", op.sql()));
                        self.scalar(scalar);
                    }
                    (_, Operand::List(scalars)) => {
                        self.field(field);
                        self.push(&format!(" {} (", op.sql()));
                        for (i, scalar) in scalars.iter().enumerate() {
                            if i > 0 {
                                self.push(", ");
                            }
                            self.scalar(scalar);
                        }
                        self.push(")");
                    }
                    (_, Operand::Range(low, high)) => {
                        self.field(field);
                        self.push(" BETWEEN ");
                        self.scalar(low);
                        self.push(" AND ");
                        self.scalar(high);
                    }
                }
                self.push("), 0)");
            }
        }
    }
}

/// One statement for a batch: each customer with its assignment in the scheme, its
/// metrics from its transactions, and the first rule whose condition holds.
fn evaluate(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    rules: &[ActiveRule],
    scheme_ids: &HashMap<String, i64>,
    as_of: NaiveDateTime,
    selection: &Selection,
) -> Result<Vec<Evaluated>, AppError> {
    let mysql = matches!(conn, DbConnection::Mysql(_));
    let mut compiler = Compiler { mysql, as_of, scheme_ids, joined_schemes: Default::default(), sql: String::new(), binds: Vec::new() };
    let int = if mysql { "SIGNED" } else { "INTEGER" };
    compiler.push("SELECT c.id AS id, c.code AS code, c.status AS status, cc.category_code AS current_category, cc.locked AS locked, CAST(");
    if rules.is_empty() {
        compiler.push("0");
    } else {
        compiler.push("CASE");
        for (i, rule) in rules.iter().enumerate() {
            compiler.push(" WHEN ");
            compiler.condition(&rule.condition);
            compiler.push(&format!(" THEN {}", i + 1));
        }
        compiler.push(" ELSE 0 END");
    }
    compiler.push(&format!(" AS {int}) AS matched FROM customers c LEFT JOIN customer_categories cc ON cc.customer_id = c.id AND cc.scheme_id = {} ", scheme.id));
    for scheme_id in compiler.joined_schemes.clone() {
        compiler.push(&format!("LEFT JOIN customer_categories k{0} ON k{0}.customer_id = c.id AND k{0}.scheme_id = {scheme_id} ", scheme_id.max(0)));
    }
    let start = window_start(as_of);
    compiler.push(&format!("LEFT JOIN (SELECT t.customer_id, {} FROM transactions t WHERE {} AND t.occurred_at <= ", metric_columns(conn), selection.on("t.customer_id")));
    // The two placeholders of metric_columns: the window start.
    compiler.binds.push(Bind::Timestamp(start));
    compiler.binds.push(Bind::Timestamp(start));
    compiler.bind(Bind::Timestamp(as_of));
    compiler.push(&format!(" GROUP BY t.customer_id) m ON m.customer_id = c.id WHERE {} ORDER BY c.id", selection.on("c.id")));

    let mut query = diesel::sql_query(compiler.sql).into_boxed::<DbBackend>();
    for bind in compiler.binds {
        query = match bind {
            Bind::BigInt(value) => query.bind::<BigInt, _>(value),
            Bind::Double(value) => query.bind::<Double, _>(value),
            Bind::Text(value) => query.bind::<Text, _>(value),
            Bind::Timestamp(value) => query.bind::<Timestamp, _>(value),
        };
    }
    Ok(query.load(conn)?)
}
