//! A run's work: the customers in batches (`RUN_BATCH_SIZE`), each evaluated in one
//! statement and applied in one transaction, optionally by two connections at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

use crate::db::schema::{classification_runs, run_change_blocks, schemes};
use crate::db::{now, transaction, DbConnection};
use crate::domain::customer::CustomerStatus;
use crate::domain::history::{Direction, Source};
use crate::domain::rule::Condition;
use crate::domain::run::{ChangeOutcome, RunStatus, Trigger};
use crate::domain::tier_policy::TierPolicy;
use crate::error::{AppError, ErrorCode};
use crate::shutdown::Shutdown;

use crate::catalogue::attribute_values;
use crate::catalogue::categories::{self as category_store, Ranks};
use crate::catalogue::category_rows::{self, CategoryRow};
use crate::catalogue::rule_sql::{Evaluation, Selection};
use crate::catalogue::rules::ActiveRule;
use crate::catalogue::schemes::SchemeRow;
use crate::classification::assignments;
use crate::classification::rankings;
use crate::classification::tier_holds;
use crate::classification::{ClassificationWrite, Mover, Moves, Provenance};
use crate::db::sql::Dialect;

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
    /// The service's clock when the run was asked for: a tier policy's minimum stays
    /// are judged by it.
    pub at: NaiveDateTime,
    pub trigger: Trigger,
    pub actor: String,
    /// Customers per statement and per transaction.
    pub batch_size: i64,
    /// Stops the run at a batch boundary once begun.
    pub shutdown: Shutdown,
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
    /// Would move down but the scheme's tier policy keeps them (runs before policies have none).
    #[serde(default)]
    pub held: i64,
    /// Of `changed`: moves to a higher and to a lower rank (runs before ranks existed have none).
    #[serde(default)]
    pub up: i64,
    #[serde(default)]
    pub down: i64,
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    pub from: Option<String>,
    pub to: String,
    pub count: i64,
}

/// One customer a run moved (or, dry, would move), or could not move.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub customer: String,
    pub from: Option<String>,
    pub to: String,
    pub rule_id: i64,
    pub outcome: ChangeOutcome,
    pub detail: Option<String>,
    /// Absent in runs recorded before directions existed; see [`Change::direction`].
    #[serde(default, rename = "direction")]
    pub recorded_direction: Option<Direction>,
}

impl Change {
    /// Which way the move goes (or, rejected, would have gone). Runs recorded before
    /// schemes could be ordered have none stored: theirs is `in` or `lateral`, the rule
    /// the migration applied to history.
    pub fn direction(&self) -> Direction {
        self.recorded_direction.unwrap_or(if self.from.is_none() { Direction::In } else { Direction::Lateral })
    }
}

/// The most changes one `run_change_blocks` row holds.
pub(crate) const CHANGES_PER_BLOCK: i64 = 1000;

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

/// Whether the run is to stop before its next batch, and with what status: the service
/// is shutting down (`interrupted`), or someone asked it to (`cancelled`, on whichever
/// replica the request came to).
fn stop_before_batch(
    conn: &mut DbConnection,
    request: &RunRequest,
    run_id: i64,
) -> Result<Option<RunStatus>, AppError> {
    if request.shutdown.has_begun() {
        return Ok(Some(RunStatus::Interrupted));
    }
    let requested: Option<NaiveDateTime> =
        classification_runs::table.find(run_id).select(classification_runs::stop_requested_at).first(conn)?;
    Ok(requested.map(|_| RunStatus::Cancelled))
}

/// Evaluates and applies the run batch by batch, one transaction each; with a
/// `helper` connection two workers share the batches (worth it where the database
/// runs writers side by side: MySQL, not SQLite). How it ended: `completed`, or
/// stopped between batches (`cancelled`, `interrupted`).
pub(crate) fn execute(
    conn: &mut DbConnection,
    helper: Option<&mut DbConnection>,
    scheme: &SchemeRow,
    rules: &[ActiveRule],
    request: &RunRequest,
    run_id: i64,
) -> Result<RunStatus, AppError> {
    let targets: Vec<CategoryRow> = rules
        .iter()
        .map(|rule| {
            // Deleted since `rules::enabled` checked it, as the run began.
            let deleted = || {
                AppError::new(
                    ErrorCode::RuleInvalid,
                    format!(
                        "rule {} ({}) targets {}, which was just deleted; fix or disable it",
                        rule.row.id, rule.row.name, rule.row.target_category
                    ),
                )
            };
            category_rows::find_row(conn, scheme.id, &rule.row.target_category)?.ok_or_else(deleted)
        })
        .collect::<Result<_, _>>()?;
    let selections: Vec<Selection> = match &request.scope {
        Scope::Customers(ids) => ids.chunks(request.batch_size as usize).map(Selection::Ids).collect(),
        Scope::Everyone => crate::customer_id_ranges(conn, request.batch_size)?
            .into_iter()
            .map(|(low, high)| Selection::Range(low, high))
            .collect(),
    };
    // Conditions name schemes by code; their ids are read once per run.
    let scheme_ids: HashMap<String, i64> =
        schemes::table.select((schemes::code, schemes::id)).load::<(String, i64)>(conn)?.into_iter().collect();
    let ranks = category_store::ranks(conn, scheme)?;
    // Relative fields rank each customer against the whole population, once per run.
    let conditions = rankings::resolve(conn, rules, &scheme_ids, request.as_of)?;
    // Only an ordered scheme's runs move anyone down; its policy is read once per run.
    let tier_policy = if scheme.ordered { scheme.tier_policy()? } else { None };
    let batches = Batches { scheme, rules, conditions, targets, ranks, tier_policy, scheme_ids, request, run_id };
    let progress = Mutex::new(Progress::default());
    // The batches not yet taken. The worker of the helper connection takes them from the
    // end, so that the two write to far-apart pages of every index ordered by customer.
    let pending = Mutex::new(0..selections.len());
    let stop = AtomicBool::new(false);
    let stopped_as = Mutex::new(None);
    // Each worker takes a batch until none is left, the other one failed, or the run
    // is to stop.
    let work = |conn: &mut DbConnection, from_the_end: bool| -> Result<(), AppError> {
        while !stop.load(Ordering::Relaxed) {
            match stop_before_batch(conn, request, run_id) {
                Ok(None) => {}
                Ok(Some(status)) => {
                    *stopped_as.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(status);
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                Err(error) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
            let taken = {
                let mut pending = pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if from_the_end {
                    pending.next_back()
                } else {
                    pending.next()
                }
            };
            let Some(selection) = taken.and_then(|index| selections.get(index)) else { break };
            let batch = transaction(conn, |conn| evaluate_batch(conn, &batches, *selection));
            let recorded = batch.and_then(|batch| {
                // Counted only once the batch committed, so a retried batch counts once;
                // written under the lock, so the stored totals never go back.
                let mut progress = progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                progress.add(&batch);
                diesel::update(classification_runs::table.filter(classification_runs::id.eq(run_id)))
                    .set((
                        classification_runs::totals.eq(progress.totals_json()),
                        classification_runs::heartbeat_at.eq(now()),
                    ))
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
            let helped =
                helping.join().unwrap_or_else(|_| Err(AppError::internal("a classification run worker stopped")));
            own.and(helped)
        }),
        None => work(conn, false),
    }?;
    Ok(stopped_as.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).unwrap_or(RunStatus::Completed))
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
        totals.transitions = self
            .transitions
            .iter()
            .map(|((from, to), count)| Transition { from: from.clone(), to: to.clone(), count: *count })
            .collect();
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
        self.held += other.held;
        self.up += other.up;
        self.down += other.down;
    }
}

/// What every batch of a run shares.
struct Batches<'a> {
    scheme: &'a SchemeRow,
    rules: &'a [ActiveRule],
    /// The rules' conditions, relative fields resolved, in the order of `rules`.
    conditions: Vec<Condition>,
    /// The category of each rule's target, in the order of `rules`.
    targets: Vec<CategoryRow>,
    ranks: Ranks,
    tier_policy: Option<TierPolicy>,
    scheme_ids: HashMap<String, i64>,
    request: &'a RunRequest,
    run_id: i64,
}

/// Evaluates one batch in one statement and applies what it found (unless dry):
/// moves, rejections, history, snapshots and the change records.
fn evaluate_batch(conn: &mut DbConnection, batches: &Batches, selection: Selection) -> Result<Progress, AppError> {
    let Batches { scheme, rules, conditions, targets, ranks, tier_policy, scheme_ids, request, run_id } = batches;
    let (scheme, rules, request, run_id) = (*scheme, *rules, *request, *run_id);
    let mut progress = Progress::default();
    let Progress { totals, transitions } = &mut progress;
    let conditions: Vec<&Condition> = conditions.iter().collect();
    let evaluation = Evaluation { dialect: Dialect::of(conn), as_of: request.as_of, scheme_ids };
    let rows: Vec<Evaluated> = evaluation.statement(scheme.id, &conditions, selection).into_query().load(conn)?;
    let mut groups: BTreeMap<usize, Vec<Mover>> = BTreeMap::new();
    for row in rows {
        if row.status != CustomerStatus::Active.as_str() {
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
    if let Some(policy) = tier_policy {
        let is_down = |index: usize, mover: &Mover| {
            ranks.direction(mover.from.as_deref(), Some(&rules[index].row.target_category)) == Direction::Down
        };
        let held = tier_holds::hold_back(conn, scheme.id, policy, request.at, &mut groups, is_down)?;
        for held in &held {
            totals.held += 1;
            let rule = &rules[held.rule_index].row;
            records.push(Change {
                customer: held.mover.code.clone(),
                from: held.mover.from.clone(),
                to: rule.target_category.clone(),
                rule_id: rule.id,
                outcome: ChangeOutcome::Held,
                detail: Some(held.hold.describe(policy)),
                recorded_direction: Some(Direction::Down),
            });
        }
        if !request.dry_run {
            tier_holds::record(conn, scheme.id, run_id, selection, &held)?;
        }
    }
    let mut write = ClassificationWrite::default();
    for (index, movers) in groups {
        let rule = &rules[index].row;
        let target = &targets[index];
        let members: Vec<(i64, &str)> = movers.iter().map(|m| (m.id, m.code.as_str())).collect();
        let plan = attribute_values::plan_move(conn, scheme, Some(&target.code), &members, &BTreeMap::new())?;
        let (accepted, refused): (Vec<Mover>, Vec<Mover>) =
            movers.into_iter().partition(|m| !plan.rejected.contains_key(&m.id));
        let change = |mover: &Mover, outcome, detail| Change {
            customer: mover.code.clone(),
            from: mover.from.clone(),
            to: rule.target_category.clone(),
            rule_id: rule.id,
            outcome,
            detail,
            recorded_direction: Some(ranks.direction(mover.from.as_deref(), Some(&rule.target_category))),
        };
        for mover in &refused {
            totals.rejected += 1;
            let detail = plan.rejected.get(&mover.id).map(attribute_values::Rejection::describe);
            records.push(change(mover, ChangeOutcome::Rejected, detail));
        }
        for mover in &accepted {
            totals.changed += 1;
            let record = change(mover, ChangeOutcome::Changed, None);
            match record.direction() {
                Direction::Up => totals.up += 1,
                Direction::Down => totals.down += 1,
                _ => {}
            }
            *transitions.entry((mover.from.clone(), rule.target_category.clone())).or_insert(0) += 1;
            records.push(record);
        }
        if request.dry_run || accepted.is_empty() {
            continue;
        }
        let provenance = Provenance {
            rule_id: Some(rule.id),
            run_id: Some(run_id),
            ..Provenance::new(&request.actor, Source::Rule, Some(format!("rule {}: {}", rule.id, rule.name)))
        };
        let moves = Moves { scheme, to: target, movers: &accepted, locked: None, provenance: &provenance };
        write.move_customers(conn, moves, plan)?;
    }
    let blocks: Vec<_> = records
        .chunks(CHANGES_PER_BLOCK as usize)
        .map(|block| {
            (
                run_change_blocks::run_id.eq(run_id),
                run_change_blocks::changes.eq(serde_json::to_string(block).expect("changes serialise")),
            )
        })
        .collect();
    if !blocks.is_empty() {
        crate::insert_rows!(conn, run_change_blocks::table, blocks)?;
    }
    write.finish(conn, true)?;
    Ok(progress)
}
