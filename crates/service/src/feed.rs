//! The change feed as clients and webhook receivers see it: one JSON form of an event
//! (`Event`, documented by `EventData`), and the signal that wakes the feed's long polls
//! once this replica's sequencer has numbered events.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::Notify;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

use crate::db::Db;
use crate::domain::event::{Cursor, TypeFilter};
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::feed::events::{self as store, FeedEvent, Page};

/// How often a waiting reader looks again, for events another replica numbered.
const RECHECK: Duration = Duration::from_millis(250);

/// Wakes the readers waiting on this replica once its sequencer has numbered events.
#[derive(Clone, Default)]
pub struct FeedSignal(Arc<Notify>);

impl FeedSignal {
    pub fn numbered(&self) {
        self.0.notify_waiters();
    }

    /// Completes at this replica's next numbering. Take it before reading the feed, so
    /// that a numbering between the read and the wait still wakes the reader.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.notified()
    }

    /// Returns once this replica numbers events, or after `at_most`.
    pub async fn wait_for_numbering(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.0.notified()).await;
    }
}

/// What a reader asks of the feed.
pub struct Reading {
    pub from: Cursor,
    pub types: TypeFilter,
    pub limit: i64,
    /// How long to wait for an event when there is none yet (a long poll).
    pub wait: Duration,
    pub restriction: Option<Arc<Restriction>>,
}

/// The events after `reading.from` that the reader may see; with none yet, waits up to
/// `reading.wait` for the next one numbered here or on another replica.
pub async fn read(db: &Db, signal: &FeedSignal, reading: Reading) -> Result<Page, AppError> {
    let Reading { mut from, types, limit, wait, restriction } = reading;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Taken before reading, so that a numbering between the read and the wait still wakes it.
        let numbered = signal.notified();
        let (filter, restriction) = (types.clone(), restriction.clone());
        let page = db.run(move |conn| store::page(conn, from, &filter, limit, restriction.as_deref())).await?;
        let now = tokio::time::Instant::now();
        if !page.events.is_empty() || now >= deadline {
            return Ok(page);
        }
        from = Cursor::After(page.next_cursor);
        let _ = tokio::time::timeout((deadline - now).min(RECHECK), numbered).await;
    }
}

/// One change, as the feed reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// The event's place in the feed: increasing, never reused; also its idempotency key.
    #[schema(example = "1042")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(example = "classification.changed")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// What happened; its fields depend on the type.
    #[schema(value_type = EventData)]
    pub data: Json,
}

impl From<FeedEvent> for Event {
    fn from(event: FeedEvent) -> Self {
        Event {
            id: event.position.to_string(),
            event_type: event.event_type,
            occurred_at: DateTime::from_naive_utc_and_offset(event.occurred_at, Utc),
            data: event.data,
        }
    }
}

/// What an event reports: which fields it has depends on its `type` (the change feed's
/// table in docs/api/feed-and-webhooks.md); each field means the same in every type that has it.
pub struct EventData;

impl utoipa::PartialSchema for EventData {
    fn schema() -> RefOr<Schema> {
        let text =
            |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description)).build();
        let nullable_text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(description))
                .build()
        };
        let integer = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .description(Some(description))
                .build()
        };
        let nullable_integer = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .description(Some(description))
                .build()
        };
        let moment = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(description))
                .build()
        };
        ObjectBuilder::new()
            .description(Some("The event's details; which fields an event has depends on its `type`"))
            .property("customer", text("`customer.*`, `classification.changed`, `pending_change.failed`: the customer's code (for `customer.merged`, the survivor)"))
            .property("scheme", text("`classification.changed`, `scheme.*`, `category.*`, `classification_run.finished`, `pending_change.failed`: the scheme's code"))
            .property("category", text("`category.*`: the category's code; `pending_change.failed`: the category it was to move to"))
            .property("from", nullable_text("`classification.changed`: the category before (null: none)"))
            .property("to", nullable_text("`classification.changed`: the category after (null: none)"))
            .property("direction", text("`classification.changed`: `up`, `down`, `lateral`, `in` or `out`"))
            .property("source", text("`classification.changed`: `manual`, `rule`, `import`, `merge`, `default`, `remap`, `scheduled`, …"))
            .property("rule_id", nullable_integer("`classification.changed`: the rule that decided a run's move"))
            .property("run_id", nullable_integer("`classification.changed`, `classification_run.finished`: the run"))
            .property("reason", nullable_text("the reason given with the change (`webhook.disabled`: why it was disabled)"))
            .property("at", moment("`classification.changed`: when the change took effect"))
            .property("version", integer("`customer.updated`, `customer.merged`, `*.updated`: the version the change made"))
            .property("merged", ArrayBuilder::new().items(text("a merged customer's code")).description(Some("`customer.merged`: the codes merged into the customer (empty for a restricted key)")))
            .property("status", text("`classification_run.finished`: how the run ended"))
            .property("dry_run", ObjectBuilder::new().schema_type(Type::Boolean).description(Some("`classification_run.finished`: whether it only reported")))
            .property("trigger", text("`classification_run.finished`: `manual` or `schedule`"))
            .property("totals", {
                let counts = ["evaluated", "changed", "unchanged", "skipped_locked", "skipped_inactive", "rejected", "up", "down"]
                    .into_iter()
                    .fold(ObjectBuilder::new().schema_type(Type::Object), |totals, name| totals.property(name, ObjectBuilder::new().schema_type(Type::Integer)));
                counts
                    .property("transitions", ArrayBuilder::new().items(Ref::from_schema_name("TransitionCount")))
                    .description(Some("`classification_run.finished`: the run's counts, as `GET …/classification-runs/{id}` shows them"))
            })
            .property("error", nullable_text("`classification_run.finished`: why it failed"))
            .property("webhook_id", integer("`webhook.disabled`: the webhook"))
            .property("url", text("`webhook.disabled`: its URL"))
            .property("failing_since", moment("`webhook.disabled`: its first failure in a row"))
            .property("failures", integer("`webhook.disabled`: failures in a row"))
            .property("pending_change", integer("`pending_change.failed`: the pending change (`GET /pending-changes/{id}`)"))
            .property("effective_at", moment("`pending_change.failed`: when it was to take effect"))
            .property("failure", text("`pending_change.failed`: why it was not applied (the refusal's code and detail)"))
            .into()
    }
}

impl utoipa::ToSchema for EventData {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventData")
    }
}
