//! What every replica runs in the background, beside serving requests: the feed's
//! sequencer and retention, the sales totals' anchor, the webhook deliveries, the
//! schedules of classification runs, the pending changes that come due, and the
//! watch over imports. Replicas race
//! harmlessly in each (see every job's comment), so any number may run.

use std::time::Duration;

use crate::classification::pending;
use crate::db::{self, Clock, Db};
use crate::domain::run::Trigger;
use crate::exchange::imports::RunningImports;
use crate::feed::FeedSignal;
use crate::shutdown::Shutdown;
use crate::store::archive::{duplicates, sales_totals};
use crate::store::catalogue::schemes::{self, Firing};
use crate::store::classification::pending::Settled;
use crate::store::classification::run_batches::RunRequest;
use crate::store::classification::runs;
use crate::store::exchange::imports;
use crate::store::feed::{events, webhooks};
use crate::webhook_sender::{deliver_webhooks, WebhookSettings};

/// How often a replica checks whether the sales totals' anchor is behind today.
const SALES_TOTALS_CHECK: Duration = Duration::from_secs(3600);
/// How long the sequencer rests when it found no event to number.
const SEQUENCER_REST: Duration = Duration::from_millis(100);
/// How often a replica looks for schedules that are due.
const SCHEDULE_CHECK: Duration = Duration::from_secs(1);
/// Who the runs that schedules start are recorded as started by.
const SCHEDULE_ACTOR: &str = "schedule";
/// How often a replica looks for pending changes that have come due.
const PENDING_CHECK: Duration = Duration::from_secs(1);
/// How often a replica deletes the events past their retention.
const EVENT_PRUNING: Duration = Duration::from_secs(3600);

/// The background jobs of one replica, with what they share with its requests.
pub struct Jobs {
    pub db: Db,
    pub feed: FeedSignal,
    pub shutdown: Shutdown,
    /// Customers a scheduled run classifies per transaction.
    pub run_batch_size: i64,
    /// How long the change feed keeps events.
    pub event_retention: Duration,
    pub webhooks: WebhookSettings,
    pub imports: RunningImports,
    /// When pending changes take effect.
    pub clock: Clock,
}

impl Jobs {
    /// Runs every job; they loop until the process ends (the schedules stop starting
    /// runs once the shutdown has begun).
    pub async fn run(self) {
        futures_util::future::join4(
            maintain(self.db.clone(), self.feed, self.event_retention, self.webhooks),
            fire_schedules(self.db.clone(), self.clock.clone(), self.run_batch_size, self.shutdown.clone()),
            apply_pending_changes(self.db.clone(), self.clock, self.shutdown),
            watch_imports(self.db, self.imports),
        )
        .await;
    }
}

/// What every replica keeps up in the background: the duplicate keys of customers that
/// have none (after the migration that added them), once; then the sales totals,
/// the numbering of the feed's events, their delivery to webhooks, and their retention.
async fn maintain(db: Db, feed: FeedSignal, event_retention: Duration, webhook_settings: WebhookSettings) {
    duplicates::key_unkeyed_customers(&db).await;
    futures_util::future::join4(
        keep_sales_totals_current(db.clone()),
        number_events(db.clone(), feed.clone()),
        deliver_webhooks(db.clone(), feed, webhook_settings),
        prune_events(db, event_retention),
    )
    .await;
}

/// Keeps the imports' rows true to who runs them: refreshes the heartbeat of the
/// imports this process runs (MySQL; SQLite's one writer is busy with them, and one
/// process serves its file), and records `failed` (interrupted) for those no process
/// runs: at start-up, so that imports of a process that died are settled by the next
/// replica to start, and every `imports::HEARTBEAT` after.
async fn watch_imports(db: Db, running: RunningImports) {
    loop {
        let here = running.clone();
        let outcome = db
            .run(move |conn| {
                if matches!(conn, db::DbConnection::Mysql(_)) {
                    imports::beat(conn, &here.ids())?;
                }
                imports::settle_interrupted(conn, || here.ids())
            })
            .await;
        match outcome {
            Ok(settled) if settled.is_empty() => {}
            Ok(settled) => log::warn!(
                "recorded {} imports as interrupted (their service stopped before they finished): {}",
                settled.len(),
                settled.join(", ")
            ),
            Err(error) => log::warn!("the running imports could not be checked now: {error}"),
        }
        tokio::time::sleep(imports::HEARTBEAT).await;
    }
}

/// Starts the classification runs whose schedules are due, one after another; at
/// start-up, once for firings missed while no replica ran. Replicas race harmlessly:
/// each firing is taken by one (`schemes::take_due_firings`), and its run takes the
/// scheme's slot like any run (a firing that finds a run in progress is skipped).
async fn fire_schedules(db: Db, clock: Clock, batch_size: i64, shutdown: Shutdown) {
    while !shutdown.has_begun() {
        let firings = match db.run(|conn| schemes::take_due_firings(conn, db::now())).await {
            Ok(firings) => firings,
            Err(error) => {
                log::warn!("the due schedules could not be read: {error}");
                Vec::new()
            }
        };
        for Firing { scheme, dry_run } in firings {
            let (pool, shutdown) = (db.clone(), shutdown.clone());
            let started = scheme.clone();
            let at = clock.now();
            let outcome = db
                .run_long(move |conn| {
                    let request = |scope| RunRequest {
                        dry_run,
                        scope,
                        as_of: db::now(),
                        at,
                        trigger: Trigger::Schedule,
                        actor: SCHEDULE_ACTOR.to_string(),
                        batch_size,
                        shutdown,
                    };
                    runs::run_requested(conn, &pool, &started, None, request, |_| {})
                })
                .await;
            match outcome {
                Ok(run) => {
                    log::info!("scheduled run {} of scheme {scheme} ended {}", run.row.id, run.row.status.as_str())
                }
                Err(error) => log::warn!("the scheduled run of scheme {scheme} did not run: {error}"),
            }
        }
        tokio::time::sleep(SCHEDULE_CHECK).await;
    }
}

/// Applies the pending changes that have come due. Replicas race harmlessly: a change
/// leaves `pending` in the transaction that applies it, so one replica applies it and
/// the others find it settled (`store::classification::pending`).
async fn apply_pending_changes(db: Db, clock: Clock, shutdown: Shutdown) {
    while !shutdown.has_begun() {
        match pending::apply_due(&db, &clock).await {
            Ok(settled) => {
                for (id, outcome) in settled {
                    match outcome {
                        Settled::Applied => log::info!("pending change {id} applied"),
                        Settled::Failed => log::warn!("pending change {id} could not be applied; it is marked failed"),
                        Settled::Elsewhere => {}
                    }
                }
            }
            Err(error) => log::warn!("the due pending changes could not be applied now: {error}"),
        }
        tokio::time::sleep(PENDING_CHECK).await;
    }
}

/// Numbers committed events as they come (`store::feed::events::sequence`), and wakes the
/// feed's long polls. Replicas race harmlessly: the sequence row's lock lets one at a
/// time number.
async fn number_events(db: Db, feed: FeedSignal) {
    loop {
        match db.run(events::sequence).await {
            Ok(0) => tokio::time::sleep(SEQUENCER_REST).await,
            Ok(_) => feed.numbered(),
            Err(error) if error.is_concurrent_update() => tokio::time::sleep(SEQUENCER_REST).await,
            Err(error) => {
                log::warn!(
                    "the feed's events could not be numbered: {error} ({})",
                    error.cause.as_deref().unwrap_or("no cause")
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Deletes the events and the webhook deliveries logged past their retention, at
/// start-up and then every hour.
async fn prune_events(db: Db, retention: Duration) {
    loop {
        let cutoff = db::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match db.run_long(move |conn| events::prune(conn, cutoff)).await {
            Ok(0) => {}
            Ok(pruned) => log::info!("deleted {pruned} events past their retention"),
            Err(error) => log::warn!("the events past their retention could not be deleted: {error}"),
        }
        match db.run_long(move |conn| webhooks::prune_deliveries(conn, cutoff)).await {
            Ok(0) => {}
            Ok(pruned) => log::info!("deleted {pruned} webhook deliveries past their retention"),
            Err(error) => log::warn!("the webhook deliveries past their retention could not be deleted: {error}"),
        }
        tokio::time::sleep(EVENT_PRUNING).await;
    }
}

/// Moves the sales totals' anchor to the start of the current UTC day, at start-up
/// and then every hour, so that reports read at most a day of transactions besides
/// the totals. Replicas race harmlessly: the anchor row's lock lets one move it.
async fn keep_sales_totals_current(db: Db) {
    loop {
        match db.run_long(sales_totals::advance).await {
            Ok(true) => log::info!("sales totals now stand at the start of today (UTC)"),
            Ok(false) => {}
            Err(error) => log::warn!("the sales totals could not be brought up to today: {error}"),
        }
        tokio::time::sleep(SALES_TOTALS_CHECK).await;
    }
}
