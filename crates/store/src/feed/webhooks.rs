//! Webhook endpoints, their delivery state and the log of their deliveries.
//!
//! Each endpoint is delivered by one replica at a time: the one holding its lease
//! (`lease_owner` until `lease_until`). A replica claims endpoints whose lease is free
//! or lapsed, delivers their events in order, and settles each batch with a write that
//! holds only while the lease is still its own; a replica that died is taken over once
//! its lease lapses, from the last event it settled (so at least once, never skipped).
//! Changing an endpoint frees its lease, so that the next batch uses the new settings.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;

use crate::check_version;
use crate::db::schema::{event_sequence, webhook_deliveries, webhooks};
use crate::db::{now, transaction, DbConnection};
use crate::domain::event::{Cursor, EventType, TypeFilter};
use crate::domain::restriction::Restriction;
use crate::domain::webhook::{DeliveryOutcome, RetrySchedule, WebhookSecret, WebhookUrl};
use crate::error::{AppError, ErrorCode};
use crate::feed::events;

/// Deliveries retention deletes in one transaction.
const PRUNE_BATCH: i64 = 10_000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhooks)]
pub struct WebhookRow {
    pub id: i64,
    pub url: String,
    pub description: Option<String>,
    pub types: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<NaiveDateTime>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub delivered_through: i64,
    pub failures: i32,
    pub failing_since: Option<NaiveDateTime>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub created_by: String,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// The restriction of the key that created it, which limits what it is sent.
    pub restriction: Option<String>,
}

impl WebhookRow {
    pub fn restriction(&self) -> Result<Option<Restriction>, AppError> {
        crate::access::visibility::stored(self.restriction.as_deref(), format_args!("webhook {}", self.id))
    }

    pub fn url(&self) -> Result<WebhookUrl, AppError> {
        WebhookUrl::stored(&self.url)
            .ok_or_else(|| AppError::corrupt(format!("webhook {} holds an unreadable URL", self.id)))
    }

    /// The event types it is sent, as they were asked for (`customer.*` stays a family).
    pub fn type_names(&self) -> Vec<String> {
        self.types.as_deref().map(|types| types.split(',').map(str::to_string).collect()).unwrap_or_default()
    }

    pub fn type_filter(&self) -> Result<TypeFilter, AppError> {
        TypeFilter::parse("types", self.types.as_deref().unwrap_or_default())
            .map_err(|e| AppError::corrupt(format!("webhook {}: {}", self.id, e.message)))
    }

    /// The secrets deliveries are signed with at `at`: the current one, and the one it
    /// replaced while that is still honoured.
    pub fn secrets_at(&self, at: NaiveDateTime) -> Result<Vec<WebhookSecret>, AppError> {
        let unreadable = || AppError::corrupt(format!("webhook {} holds an unreadable secret", self.id));
        let mut secrets = vec![WebhookSecret::stored(&self.secret).ok_or_else(unreadable)?];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if until > at {
                secrets.push(WebhookSecret::stored(previous).ok_or_else(unreadable)?);
            }
        }
        Ok(secrets)
    }
}

pub struct NewWebhook<'a> {
    pub url: &'a WebhookUrl,
    pub description: Option<&'a str>,
    /// Comma-separated, as checked by `TypeFilter`; `None`: every type.
    pub types: Option<&'a str>,
    pub secret: &'a WebhookSecret,
    pub created_by: &'a str,
    pub restriction: Option<&'a Restriction>,
}

pub fn webhook_not_found(id: i64) -> AppError {
    AppError::new(ErrorCode::WebhookNotFound, format!("webhook {id} does not exist"))
}

pub fn get(conn: &mut DbConnection, id: i64) -> Result<WebhookRow, AppError> {
    webhooks::table
        .find(id)
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| webhook_not_found(id))
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<WebhookRow>, AppError> {
    Ok(webhooks::table.order(webhooks::id).select(WebhookRow::as_select()).load(conn)?)
}

/// A new endpoint, sent the events numbered from now on.
pub fn create(conn: &mut DbConnection, new: NewWebhook) -> Result<WebhookRow, AppError> {
    transaction(conn, |conn| {
        let at = now();
        let from = events::position_of(conn, Cursor::Latest)?;
        diesel::insert_into(webhooks::table)
            .values((
                webhooks::url.eq(new.url.as_str()),
                webhooks::description.eq(new.description),
                webhooks::types.eq(new.types),
                webhooks::secret.eq(new.secret.expose()),
                webhooks::previous_secret.eq(None::<String>),
                webhooks::previous_secret_until.eq(None::<NaiveDateTime>),
                webhooks::enabled.eq(true),
                webhooks::disabled_reason.eq(None::<String>),
                webhooks::delivered_through.eq(from),
                webhooks::failures.eq(0),
                webhooks::failing_since.eq(None::<NaiveDateTime>),
                webhooks::next_attempt_at.eq(None::<NaiveDateTime>),
                webhooks::lease_owner.eq(None::<String>),
                webhooks::lease_until.eq(None::<NaiveDateTime>),
                webhooks::created_by.eq(new.created_by),
                webhooks::version.eq(1_i64),
                webhooks::created_at.eq(at),
                webhooks::updated_at.eq(at),
                webhooks::restriction.eq(crate::access::visibility::column(new.restriction)),
            ))
            .execute(conn)?;
        let id = crate::db::last_insert_id(conn)?;
        get(conn, id)
    })
}

/// What a PATCH changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct WebhookChange {
    pub url: Option<WebhookUrl>,
    pub description: Option<Option<String>>,
    pub types: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// Reads the endpoint for a change under `If-Match`; every change frees the lease, so
/// that a delivery in flight stops at its next batch and the next uses the new state.
fn change(
    conn: &mut DbConnection,
    id: i64,
    expected: Option<i64>,
    apply: impl Fn(&mut DbConnection, &WebhookRow) -> Result<(), AppError>,
) -> Result<WebhookRow, AppError> {
    transaction(conn, |conn| {
        let current = get(conn, id)?;
        check_version(expected, current.version)?;
        apply(conn, &current)?;
        let bumped = diesel::update(webhooks::table.find(id).filter(webhooks::version.eq(current.version)))
            .set((
                webhooks::version.eq(current.version + 1),
                webhooks::updated_at.eq(now()),
                webhooks::lease_owner.eq(None::<String>),
                webhooks::lease_until.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        if bumped == 0 {
            return Err(AppError::concurrent_update());
        }
        get(conn, id)
    })
}

/// Starts delivering again after failures or a disabling: from where it stopped.
type ClearFailures = (
    diesel::dsl::Eq<webhooks::failures, i32>,
    diesel::dsl::Eq<webhooks::failing_since, Option<NaiveDateTime>>,
    diesel::dsl::Eq<webhooks::next_attempt_at, Option<NaiveDateTime>>,
    diesel::dsl::Eq<webhooks::disabled_reason, Option<String>>,
);

fn clear_failures() -> ClearFailures {
    (
        webhooks::failures.eq(0),
        webhooks::failing_since.eq(None),
        webhooks::next_attempt_at.eq(None),
        webhooks::disabled_reason.eq(None),
    )
}

pub fn update(
    conn: &mut DbConnection,
    id: i64,
    expected: Option<i64>,
    change_to: WebhookChange,
    actor: &str,
) -> Result<WebhookRow, AppError> {
    change(conn, id, expected, |conn, current| {
        let target = webhooks::table.find(id);
        if let Some(url) = &change_to.url {
            diesel::update(target).set(webhooks::url.eq(url.as_str())).execute(conn)?;
        }
        if let Some(description) = &change_to.description {
            diesel::update(target).set(webhooks::description.eq(description)).execute(conn)?;
        }
        if let Some(types) = &change_to.types {
            diesel::update(target).set(webhooks::types.eq(types)).execute(conn)?;
        }
        match change_to.enabled {
            Some(true) if !current.enabled => {
                diesel::update(target).set((webhooks::enabled.eq(true), clear_failures())).execute(conn)?;
            }
            Some(false) if current.enabled => {
                diesel::update(target)
                    .set((webhooks::enabled.eq(false), webhooks::disabled_reason.eq(format!("disabled by {actor}"))))
                    .execute(conn)?;
            }
            _ => {}
        }
        Ok(())
    })
}

/// How long a receiver may keep checking with the secret a rotation replaced.
pub const PREVIOUS_SECRET_HONOURED: Duration = Duration::from_secs(24 * 3600);

pub fn rotate_secret(
    conn: &mut DbConnection,
    id: i64,
    expected: Option<i64>,
    secret: &WebhookSecret,
) -> Result<WebhookRow, AppError> {
    change(conn, id, expected, |conn, current| {
        let until = now() + chrono::Duration::from_std(PREVIOUS_SECRET_HONOURED).expect("a day");
        diesel::update(webhooks::table.find(id))
            .set((
                webhooks::secret.eq(secret.expose()),
                webhooks::previous_secret.eq(&current.secret),
                webhooks::previous_secret_until.eq(until),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Delivers again every event after `cursor` (410 `cursor_expired` when retention
/// deleted some of them), clearing the failures.
pub fn replay(conn: &mut DbConnection, id: i64, expected: Option<i64>, cursor: Cursor) -> Result<WebhookRow, AppError> {
    change(conn, id, expected, |conn, _| {
        let from = events::position_of(conn, cursor)?;
        diesel::update(webhooks::table.find(id))
            .set((webhooks::delivered_through.eq(from), clear_failures()))
            .execute(conn)?;
        Ok(())
    })
}

pub fn delete(conn: &mut DbConnection, id: i64, expected: Option<i64>) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let current = get(conn, id)?;
        check_version(expected, current.version)?;
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id))).execute(conn)?;
        diesel::delete(webhooks::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// One attempt to deliver one event, as logged.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook_id: i64,
    pub event_position: i64,
    pub event_type: String,
    pub attempt: i32,
    pub outcome: String,
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub attempted_at: NaiveDateTime,
}

impl DeliveryRow {
    pub fn outcome(&self) -> Result<DeliveryOutcome, AppError> {
        DeliveryOutcome::try_from(self.outcome.clone()).map_err(AppError::corrupt)
    }
}

/// The endpoint's deliveries, newest first, older than delivery `before` if given.
pub fn deliveries(
    conn: &mut DbConnection,
    id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, AppError> {
    get(conn, id)?;
    let mut query = webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id)).into_boxed();
    if let Some(before) = before {
        query = query.filter(webhook_deliveries::id.lt(before));
    }
    Ok(query.order(webhook_deliveries::id.desc()).limit(limit).select(DeliveryRow::as_select()).load(conn)?)
}

/// An attempt made, to be logged when its batch is settled.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub event_position: i64,
    pub event_type: String,
    pub attempt: i32,
    pub outcome: DeliveryOutcome,
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub at: NaiveDateTime,
}

fn lapsed_or_mine(
    owner: &str,
    at: NaiveDateTime,
) -> Box<dyn BoxableExpression<webhooks::table, crate::db::DbBackend, SqlType = diesel::sql_types::Bool>> {
    Box::new(
        webhooks::lease_until
            .is_null()
            .or(webhooks::lease_until.lt(at))
            .or(webhooks::lease_owner.eq(owner.to_string()))
            .assume_not_null(),
    )
}

/// Takes the lease of up to `limit` enabled endpoints that have events to be sent
/// and are not waiting for a retry, and whose lease is free or lapsed (or already
/// `owner`'s); of those whose last delivery failed when `failing`, else of the others;
/// returns them.
pub fn claim_due(
    conn: &mut DbConnection,
    owner: &str,
    lease: Duration,
    limit: i64,
    skip: &[i64],
    failing: bool,
) -> Result<Vec<WebhookRow>, AppError> {
    let at = now();
    let last: i64 = event_sequence::table.find(1_i64).select(event_sequence::last_position).first(conn)?;
    let due: Vec<i64> = webhooks::table
        .filter(webhooks::failures.gt(0).eq(failing))
        .filter(webhooks::enabled.eq(true))
        .filter(webhooks::delivered_through.lt(last))
        .filter(webhooks::next_attempt_at.is_null().or(webhooks::next_attempt_at.le(at)))
        .filter(lapsed_or_mine(owner, at))
        .filter(webhooks::id.ne_all(skip))
        .order(webhooks::next_attempt_at)
        .select(webhooks::id)
        .limit(limit)
        .load(conn)?;
    let until = at + chrono::Duration::from_std(lease).expect("a short lease");
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        let taken = diesel::update(webhooks::table.find(id).filter(lapsed_or_mine(owner, at)))
            .set((webhooks::lease_owner.eq(owner), webhooks::lease_until.eq(until)))
            .execute(conn)?;
        if taken == 1 {
            claimed.push(get(conn, id)?);
        }
    }
    Ok(claimed)
}

/// How a batch of deliveries ended.
pub enum BatchEnd {
    /// Every event up to `through` was delivered (or skipped); the lease is renewed
    /// for the next batch when `more`, else freed.
    Delivered { through: i64, more: bool },
    /// The events up to `through` were delivered; the next one failed.
    Failed { through: i64, error: String },
}

/// Who holds an endpoint's lease, and for how long a batch's lease is taken.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub owner: &'a str,
    pub lease: Duration,
}

/// Logs a batch's attempts and moves the endpoint on, if `owner` still holds its
/// lease (and so no change or other replica took it meanwhile); whether it did.
/// A failure schedules the retry, or disables an endpoint failing for too long and
/// records `webhook.disabled`.
pub fn settle(
    conn: &mut DbConnection,
    id: i64,
    held: Held,
    attempts: &[Attempt],
    end: BatchEnd,
    schedule: RetrySchedule,
    spread: f64,
) -> Result<bool, AppError> {
    let Held { owner, lease } = held;
    transaction(conn, |conn| {
        // Deleted meanwhile: nothing to log against.
        let Some(current) = webhooks::table.find(id).select(WebhookRow::as_select()).first(conn).optional()? else {
            return Ok(false);
        };
        let rows: Vec<_> = attempts
            .iter()
            .map(|attempt| {
                (
                    webhook_deliveries::webhook_id.eq(id),
                    webhook_deliveries::event_position.eq(attempt.event_position),
                    webhook_deliveries::event_type.eq(attempt.event_type.clone()),
                    webhook_deliveries::attempt.eq(attempt.attempt),
                    webhook_deliveries::outcome.eq(attempt.outcome.as_str()),
                    webhook_deliveries::response_status.eq(attempt.response_status),
                    webhook_deliveries::duration_ms.eq(attempt.duration_ms),
                    webhook_deliveries::error.eq(attempt.error.clone()),
                    webhook_deliveries::attempted_at.eq(attempt.at),
                )
            })
            .collect();
        // The attempts were made, so they are logged even when the lease was lost.
        if !rows.is_empty() {
            crate::insert_many!(conn, webhook_deliveries::table, rows)?;
        }
        if current.lease_owner.as_deref() != Some(owner) {
            return Ok(false);
        }
        let at = now();
        // Only while the lease is still ours: a change made meanwhile freed it.
        let mine = webhooks::table.find(id).filter(webhooks::lease_owner.eq(owner));
        match &end {
            &BatchEnd::Delivered { through, more } => {
                let lease_until = more.then(|| at + chrono::Duration::from_std(lease).expect("a short lease"));
                let moved = diesel::update(mine)
                    .set((
                        webhooks::delivered_through.eq(through),
                        clear_failures(),
                        webhooks::lease_owner.eq(lease_until.map(|_| owner)),
                        webhooks::lease_until.eq(lease_until),
                    ))
                    .execute(conn)?;
                Ok(moved == 1)
            }
            BatchEnd::Failed { through, error } => {
                let through = *through;
                let failures = current.failures + 1;
                let failing_since = current.failing_since.unwrap_or(at);
                let failing_for = at.signed_duration_since(failing_since).to_std().unwrap_or_default();
                let freed = (webhooks::lease_owner.eq(None::<String>), webhooks::lease_until.eq(None::<NaiveDateTime>));
                let progress = (
                    webhooks::delivered_through.eq(through),
                    webhooks::failures.eq(failures),
                    webhooks::failing_since.eq(failing_since),
                );
                if schedule.gives_up(failing_for) {
                    let reason =
                        format!("failing since {failing_since} UTC ({failures} attempts); last error: {error}");
                    let disabled = diesel::update(mine)
                        .set((
                            progress,
                            freed,
                            webhooks::enabled.eq(false),
                            webhooks::next_attempt_at.eq(None::<NaiveDateTime>),
                            webhooks::disabled_reason.eq(&reason),
                        ))
                        .execute(conn)?;
                    if disabled == 0 {
                        return Ok(false);
                    }
                    events::record_one(
                        conn,
                        EventType::WebhookDisabled,
                        json!({"webhook_id": id, "url": current.url, "failing_since": events::rfc3339(failing_since), "failures": failures, "reason": reason}),
                    )?;
                    Ok(true)
                } else {
                    let retry_at = at
                        + chrono::Duration::from_std(schedule.wait_after(failures as u32, spread))
                            .unwrap_or(chrono::Duration::MAX);
                    Ok(diesel::update(mine)
                        .set((progress, freed, webhooks::next_attempt_at.eq(retry_at)))
                        .execute(conn)?
                        == 1)
                }
            }
        }
    })
}

/// Deletes the deliveries logged before `cutoff`, in bounded transactions.
pub fn prune_deliveries(conn: &mut DbConnection, cutoff: NaiveDateTime) -> Result<usize, AppError> {
    let mut deleted = 0;
    loop {
        let ids: Vec<i64> = webhook_deliveries::table
            .filter(webhook_deliveries::attempted_at.lt(cutoff))
            .select(webhook_deliveries::id)
            .limit(PRUNE_BATCH)
            .load(conn)?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        deleted +=
            diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids))).execute(conn)?;
    }
}
