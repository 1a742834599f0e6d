//! The change feed: events written in the transactions of the changes they report,
//! numbered once committed, read by number, pruned after their retention.
//!
//! A change inserts its events without a position. The sequencer (`sequence`, run by
//! every replica in the background) takes the committed events that have none, in the
//! order of their ids, and numbers them after the last number given, under the lock of
//! the one `event_sequence` row. An event whose transaction has yet to commit is not
//! visible to it, so it is numbered later, after everything numbered so far: a reader
//! that saved the last number it saw misses nothing and sees nothing twice, with any
//! number of writers and replicas, and without relying on AUTO_INCREMENT (whose values
//! interleave on a cluster and are taken in insert order, not commit order).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use serde_json::{json, Value as Json};

use super::history::{NewHistory, SharedChange};
use super::{id_list, visibility};
use crate::db::schema::{event_sequence, events};
use crate::db::sql::{Dialect, Fragment, Predicate};
use crate::db::{now, transaction, DbConnection};
use crate::domain::event::{Cursor, EventType, TypeFilter};
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorKind};

/// Events the sequencer numbers in one transaction.
const SEQUENCE_BATCH: i64 = 5_000;
/// Events retention deletes in one transaction.
const PRUNE_BATCH: i64 = 10_000;

/// An event, written with the change it reports.
pub struct NewEvent {
    pub kind: EventType,
    pub at: NaiveDateTime,
    pub data: Json,
}

impl NewEvent {
    pub fn now(kind: EventType, data: Json) -> Self {
        Self { kind, at: now(), data }
    }
}

pub fn record(conn: &mut DbConnection, new: Vec<NewEvent>) -> Result<(), AppError> {
    let rows: Vec<_> = new
        .into_iter()
        .map(|event| (events::position.eq(None::<i64>), events::event_type.eq(event.kind.as_str()), events::occurred_at.eq(event.at), events::data.eq(event.data.to_string())))
        .collect();
    if !rows.is_empty() {
        crate::insert_many!(conn, events::table, rows)?;
    }
    Ok(())
}

/// One event of `kind`, occurring now.
pub fn record_one(conn: &mut DbConnection, kind: EventType, data: Json) -> Result<(), AppError> {
    record(conn, vec![NewEvent::now(kind, data)])
}

/// A moment as events show it: RFC 3339 in UTC, to the microsecond.
pub(crate) fn rfc3339(at: NaiveDateTime) -> String {
    DateTime::<Utc>::from_naive_utc_and_offset(at, Utc).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `classification.changed` for each history entry.
pub fn record_classification_changes(conn: &mut DbConnection, entries: &[NewHistory]) -> Result<(), AppError> {
    let new = entries
        .iter()
        .map(|entry| NewEvent {
            kind: EventType::ClassificationChanged,
            at: entry.at,
            data: json!({
                "customer": entry.customer_code,
                "scheme": entry.scheme_code,
                "from": entry.from_category,
                "to": entry.to_category,
                "direction": entry.direction.as_str(),
                "source": entry.source.as_str(),
                "rule_id": entry.rule_id,
                "run_id": entry.run_id,
                "reason": entry.reason,
                "at": rfc3339(entry.at),
            }),
        })
        .collect();
    record(conn, new)
}

/// `classification.changed` for each of these customers making the same change: a
/// statement per thousand, as the history entries are written (`history::record_shared`).
pub fn record_shared_classification_change(conn: &mut DbConnection, customer_ids: &[i64], change: &SharedChange) -> Result<(), AppError> {
    for chunk in customer_ids.chunks(1000) {
        diesel::sql_query(format!(
            "INSERT INTO events (position, event_type, occurred_at, data) \
             SELECT NULL, ?, ?, json_object('customer', code, 'scheme', ?, 'from', ?, 'to', ?, 'direction', ?, 'source', ?, \
             'rule_id', ?, 'run_id', ?, 'reason', ?, 'at', ?) FROM customers WHERE id IN ({}) ORDER BY id",
            id_list(chunk)
        ))
        .bind::<Text, _>(EventType::ClassificationChanged.as_str())
        .bind::<diesel::sql_types::Timestamp, _>(change.at)
        .bind::<Text, _>(change.scheme_code)
        .bind::<Nullable<Text>, _>(change.from_category)
        .bind::<Nullable<Text>, _>(change.to_category)
        .bind::<Text, _>(change.direction.as_str())
        .bind::<Text, _>(change.source.as_str())
        .bind::<Nullable<BigInt>, _>(change.rule_id)
        .bind::<Nullable<BigInt>, _>(change.run_id)
        .bind::<Nullable<Text>, _>(change.reason)
        .bind::<Text, _>(rfc3339(change.at))
        .execute(conn)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Sequence {
    #[diesel(sql_type = BigInt)]
    last_position: i64,
    #[diesel(sql_type = BigInt)]
    pruned_through: i64,
}

/// The sequence row; `locked`: for the rest of the transaction (on MySQL; SQLite's
/// writer lock already serialises).
fn sequence_row(conn: &mut DbConnection, locked: bool) -> Result<Sequence, AppError> {
    let lock = if locked && matches!(conn, DbConnection::Mysql(_)) { " FOR UPDATE" } else { "" };
    Ok(diesel::sql_query(format!("SELECT last_position, pruned_through FROM event_sequence WHERE id = 1{lock}")).get_result(conn)?)
}

/// Numbers committed events that have no position yet; how many it numbered.
pub fn sequence(conn: &mut DbConnection) -> Result<usize, AppError> {
    // Looked for first without a transaction, so that an idle feed takes no lock.
    let waiting: Option<i64> = events::table.filter(events::position.is_null()).select(events::id).first(conn).optional()?;
    if waiting.is_none() {
        return Ok(0);
    }
    transaction(conn, |conn| {
        let last = sequence_row(conn, true)?.last_position;
        // Found by a plain read, which sees committed events only; the UPDATE's own
        // reads would lock, and so wait for a transaction still holding an event.
        let ids: Vec<i64> = events::table.filter(events::position.is_null()).order(events::id).select(events::id).limit(SEQUENCE_BATCH).load(conn)?;
        if ids.is_empty() {
            return Ok(0);
        }
        // One statement numbers them in id order; a CASE per id cost a comparison per
        // id for every row.
        let oldest = format!("SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM events WHERE id IN ({})", id_list(&ids));
        let statement = match Dialect::of(conn) {
            Dialect::Mysql => format!("UPDATE events JOIN ({oldest}) AS numbered ON events.id = numbered.id SET events.position = ? + numbered.n"),
            Dialect::Sqlite => format!("UPDATE events SET position = ? + numbered.n FROM ({oldest}) AS numbered WHERE events.id = numbered.id"),
        };
        let numbered = diesel::sql_query(statement).bind::<BigInt, _>(last).execute(conn)?;
        diesel::update(event_sequence::table.find(1_i64)).set(event_sequence::last_position.eq(last + numbered as i64)).execute(conn)?;
        Ok(numbered)
    })
}

/// One stored event, numbered.
#[derive(Debug, Queryable)]
pub struct EventRow {
    pub position: Option<i64>,
    pub event_type: String,
    pub occurred_at: NaiveDateTime,
    pub data: String,
}

impl EventRow {
    pub fn data(&self) -> Result<Json, AppError> {
        serde_json::from_str(&self.data).map_err(|e| AppError::corrupt(format!("event {:?} holds unreadable data: {e}", self.position)))
    }
}

/// Events after a cursor, and the cursor to ask with next.
pub struct Page {
    pub events: Vec<EventRow>,
    pub next_cursor: i64,
}

fn cursor_expired(after: i64, pruned_through: i64) -> AppError {
    AppError::new(
        ErrorKind::Gone,
        "cursor_expired",
        format!("events up to {pruned_through} are past their retention and deleted; cursor {after} cannot go on. Start again without `after` (the oldest kept) or with `after=latest`"),
    )
}

/// The position a cursor stands after; 410 `cursor_expired` when retention deleted
/// events after it.
fn resolve(sequence: &Sequence, cursor: Cursor) -> Result<i64, AppError> {
    match cursor {
        Cursor::Start => Ok(sequence.pruned_through),
        Cursor::Latest => Ok(sequence.last_position),
        Cursor::After(after) if after < sequence.pruned_through => Err(cursor_expired(after, sequence.pruned_through)),
        // A cursor beyond what this node has numbered (given by a node further along)
        // reads nothing until this one catches up.
        Cursor::After(after) => Ok(after),
    }
}

/// [`resolve`] against the feed as it stands.
pub fn position_of(conn: &mut DbConnection, cursor: Cursor) -> Result<i64, AppError> {
    resolve(&sequence_row(conn, false)?, cursor)
}

/// What a key restricted by category reads of the feed: the events of the customers
/// it may see now (so none of deleted ones), and the changes of schemes and categories;
/// not the runs' and webhooks' events, which speak of the whole archive.
fn visible_to(conn: &DbConnection, restriction: &Restriction) -> Predicate {
    let customer_types: Vec<&str> = EventType::ALL.into_iter().filter(|kind| kind.names_customer()).map(EventType::as_str).collect();
    let structure_types: Vec<&str> = EventType::ALL.into_iter().filter(|kind| kind.is_structure()).map(EventType::as_str).collect();
    let customer = match Dialect::of(conn) {
        Dialect::Mysql => "JSON_UNQUOTE(JSON_EXTRACT(events.data, '$.customer'))",
        Dialect::Sqlite => "json_extract(events.data, '$.customer')",
    };
    let quoted = |names: &[&str]| names.iter().map(|name| format!("'{name}'")).collect::<Vec<_>>().join(", ");
    let mut sql = Fragment::new(&format!(
        "(events.event_type IN ({}) OR (events.event_type IN ({}) AND EXISTS (SELECT 1 FROM customers vc WHERE vc.code = {customer} AND ",
        quoted(&structure_types),
        quoted(&customer_types)
    ));
    sql.append(visibility::condition(restriction, "vc.id")).push(")))");
    Predicate(sql)
}

/// Up to `limit` events of `types` after `cursor`, oldest first; with a
/// `restriction`, only those it may see.
pub fn page(conn: &mut DbConnection, cursor: Cursor, types: &TypeFilter, limit: i64, restriction: Option<&Restriction>) -> Result<Page, AppError> {
    let sequence = sequence_row(conn, false)?;
    let after = resolve(&sequence, cursor)?;
    // Everything numbered up to `last_position` was committed when it was read, so
    // a page that ends short of `limit` has seen all of it.
    let mut query = events::table
        .filter(events::position.gt(after))
        .filter(events::position.le(sequence.last_position))
        .order(events::position)
        .select((events::position, events::event_type, events::occurred_at, events::data))
        .limit(limit)
        .into_boxed();
    if let Some(names) = types.names() {
        query = query.filter(events::event_type.eq_any(names));
    }
    if let Some(restriction) = restriction {
        query = query.filter(visible_to(conn, restriction));
    }
    let rows: Vec<EventRow> = query.load(conn)?;
    let next_cursor = match rows.last() {
        Some(last) if rows.len() as i64 == limit => last.position.unwrap_or(after),
        _ => after.max(sequence.last_position),
    };
    Ok(Page { events: rows, next_cursor })
}

/// Deletes numbered events that occurred before `cutoff`, oldest first, in bounded
/// transactions; how many it deleted. Readers holding a cursor among them get
/// `cursor_expired`.
pub fn prune(conn: &mut DbConnection, cutoff: NaiveDateTime) -> Result<usize, AppError> {
    let mut deleted = 0;
    loop {
        let removed = transaction(conn, |conn| {
            let sequence = sequence_row(conn, true)?;
            // The oldest numbered events; those before the cutoff go.
            let oldest: Vec<(Option<i64>, NaiveDateTime)> = events::table
                .filter(events::position.gt(sequence.pruned_through))
                .order(events::position)
                .select((events::position, events::occurred_at))
                .limit(PRUNE_BATCH)
                .load(conn)?;
            let Some(through) = oldest.iter().take_while(|(_, at)| *at < cutoff).filter_map(|(position, _)| *position).last() else { return Ok(0) };
            let removed = diesel::delete(events::table.filter(events::position.le(through))).execute(conn)?;
            diesel::update(event_sequence::table.find(1_i64)).set(event_sequence::pruned_through.eq(through)).execute(conn)?;
            Ok(removed)
        })?;
        if removed == 0 {
            return Ok(deleted);
        }
        deleted += removed;
    }
}
