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

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::{json, Map, Value as Json};

use crate::access::visibility;
use crate::db::schema::{event_sequence, events};
use crate::db::sql::{Dialect, Fragment, Predicate};
use crate::db::{now, transaction, DbConnection};
use crate::domain::event::{Cursor, EventType, TypeFilter};
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorCode};
use crate::id_list;

/// Events the sequencer numbers in one transaction.
const SEQUENCE_BATCH: i64 = 5_000;
/// Events retention deletes in one transaction.
const PRUNE_BATCH: i64 = 10_000;
/// Most events a group row holds.
pub(crate) const GROUP_LIMIT: usize = 1000;
/// The field naming an event's customer.
pub(crate) const SINGLE_CUSTOMER: &str = "customer";
/// The field of a group row listing its events' customers, in their order.
const GROUP_CUSTOMERS: &str = "customers";

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
        .map(|event| {
            (
                events::position.eq(None::<i64>),
                events::event_type.eq(event.kind.as_str()),
                events::occurred_at.eq(event.at),
                events::data.eq(event.data.to_string()),
            )
        })
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

/// `customer.created` for each of these new customers, as group rows.
pub fn record_customers_created(conn: &mut DbConnection, at: NaiveDateTime, codes: &[&str]) -> Result<(), AppError> {
    for chunk in codes.chunks(GROUP_LIMIT) {
        record_for_customers(
            conn,
            EventType::CustomerCreated,
            at,
            Map::new(),
            chunk.iter().map(|code| code.to_string()).collect(),
        )?;
    }
    Ok(())
}

/// Events of `kind` that say the same (`shared`) of each of these customers (at most
/// `GROUP_LIMIT`): one group row holding `shared` once and the customers' codes,
/// numbered as that many consecutive events and read back one by one.
pub(crate) fn record_for_customers(
    conn: &mut DbConnection,
    kind: EventType,
    at: NaiveDateTime,
    mut shared: Map<String, Json>,
    codes: Vec<String>,
) -> Result<(), AppError> {
    let count = codes.len();
    match count {
        0 => return Ok(()),
        1 => shared.insert(SINGLE_CUSTOMER.into(), json!(codes[0])),
        _ => shared.insert(GROUP_CUSTOMERS.into(), json!(codes)),
    };
    diesel::insert_into(events::table)
        .values((
            events::position.eq(None::<i64>),
            events::event_type.eq(kind.as_str()),
            events::occurred_at.eq(at),
            events::data.eq(Json::Object(shared).to_string()),
            events::event_count.eq(count as i32),
        ))
        .execute(conn)?;
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
    Ok(diesel::sql_query(format!("SELECT last_position, pruned_through FROM event_sequence WHERE id = 1{lock}"))
        .get_result(conn)?)
}

/// Numbers committed events that have no position yet; how many it numbered. A group
/// row takes as many consecutive positions as it holds events, from its `position`.
pub fn sequence(conn: &mut DbConnection) -> Result<usize, AppError> {
    // Looked for first without a transaction, so that an idle feed takes no lock.
    let waiting: Option<i64> =
        events::table.filter(events::position.is_null()).select(events::id).first(conn).optional()?;
    if waiting.is_none() {
        return Ok(0);
    }
    transaction(conn, |conn| {
        let last = sequence_row(conn, true)?.last_position;
        // Found by a plain read, which sees committed events only; the UPDATE's own
        // reads would lock, and so wait for a transaction still holding an event.
        let rows: Vec<(i64, i32)> = events::table
            .filter(events::position.is_null())
            .order(events::id)
            .select((events::id, events::event_count))
            .limit(SEQUENCE_BATCH)
            .load(conn)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let numbered: i64 = rows.iter().map(|(_, count)| i64::from(*count)).sum();
        // One statement numbers them in id order, each after the events of the rows
        // before it; a CASE per id cost a comparison per id for every row.
        let oldest = format!(
            "SELECT id, SUM(event_count) OVER (ORDER BY id) - event_count AS before_it FROM events WHERE id IN ({})",
            id_list(&ids)
        );
        let statement = match Dialect::of(conn) {
            Dialect::Mysql => format!("UPDATE events JOIN ({oldest}) AS numbered ON events.id = numbered.id SET events.position = ? + numbered.before_it + 1"),
            Dialect::Sqlite => format!("UPDATE events SET position = ? + numbered.before_it + 1 FROM ({oldest}) AS numbered WHERE events.id = numbered.id"),
        };
        diesel::sql_query(statement).bind::<BigInt, _>(last).execute(conn)?;
        diesel::update(event_sequence::table.find(1_i64))
            .set(event_sequence::last_position.eq(last + numbered))
            .execute(conn)?;
        Ok(numbered as usize)
    })
}

/// A row of the feed as stored: one event, or a group of `event_count` (see the
/// migration `event_groups`).
#[derive(Queryable)]
struct StoredEvents {
    position: Option<i64>,
    event_count: i32,
    event_type: String,
    occurred_at: NaiveDateTime,
    data: String,
}

impl StoredEvents {
    fn first(&self) -> Result<i64, AppError> {
        self.position.ok_or_else(|| AppError::corrupt("the feed read an event without a position"))
    }

    fn last(&self) -> Result<i64, AppError> {
        Ok(self.first()? + i64::from(self.event_count) - 1)
    }

    /// Its events after position `after`, in order.
    fn events_after(self, after: i64) -> Result<Vec<FeedEvent>, AppError> {
        let first = self.first()?;
        let data: Json = serde_json::from_str(&self.data)
            .map_err(|e| AppError::corrupt(format!("event {first} holds unreadable data: {e}")))?;
        let Json::Object(mut shared) = data else {
            return Err(AppError::corrupt(format!("event {first} holds no JSON object")));
        };
        let Some(customers) = shared.remove(GROUP_CUSTOMERS) else {
            let event = FeedEvent {
                position: first,
                event_type: self.event_type,
                occurred_at: self.occurred_at,
                data: Json::Object(shared),
            };
            return Ok(if first > after { vec![event] } else { Vec::new() });
        };
        let Json::Array(customers) = customers else {
            return Err(AppError::corrupt(format!("event group {first} lists its customers in no array")));
        };
        Ok(customers
            .into_iter()
            .zip(first..)
            .filter(|(_, position)| *position > after)
            .map(|(customer, position)| {
                let mut data = shared.clone();
                data.insert(SINGLE_CUSTOMER.into(), customer);
                FeedEvent {
                    position,
                    event_type: self.event_type.clone(),
                    occurred_at: self.occurred_at,
                    data: Json::Object(data),
                }
            })
            .collect())
    }
}

/// One event of the feed.
#[derive(Debug)]
pub struct FeedEvent {
    pub position: i64,
    pub event_type: String,
    pub occurred_at: NaiveDateTime,
    pub data: Json,
}

/// Events after a cursor, and the cursor to ask with next.
pub struct Page {
    pub events: Vec<FeedEvent>,
    pub next_cursor: i64,
}

fn cursor_expired(after: i64, pruned_through: i64) -> AppError {
    AppError::new(
        ErrorCode::CursorExpired,
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

/// `resolve` against the feed as it stands.
pub fn position_of(conn: &mut DbConnection, cursor: Cursor) -> Result<i64, AppError> {
    resolve(&sequence_row(conn, false)?, cursor)
}

/// What a key restricted by category reads of the feed: the events of the customers
/// it may see now (so none of deleted ones), and the changes of schemes and categories;
/// not the runs' and webhooks' events, which speak of the whole archive. A group row is
/// let through, and its customers are checked once it is read (`visible_codes`).
fn visible_to(conn: &DbConnection, restriction: &Restriction) -> Predicate {
    let customer_types: Vec<&str> =
        EventType::ALL.into_iter().filter(|kind| kind.names_customer()).map(EventType::as_str).collect();
    let structure_types: Vec<&str> =
        EventType::ALL.into_iter().filter(|kind| kind.is_structure()).map(EventType::as_str).collect();
    let customer = match Dialect::of(conn) {
        Dialect::Mysql => "JSON_UNQUOTE(JSON_EXTRACT(events.data, '$.customer'))",
        Dialect::Sqlite => "json_extract(events.data, '$.customer')",
    };
    let quoted = |names: &[&str]| names.iter().map(|name| format!("'{name}'")).collect::<Vec<_>>().join(", ");
    let mut sql = Fragment::new(&format!(
        "(events.event_type IN ({}) OR (events.event_type IN ({}) AND (events.event_count > 1 OR EXISTS (SELECT 1 FROM customers vc WHERE vc.code = {customer} AND ",
        quoted(&structure_types),
        quoted(&customer_types)
    ));
    sql.append(visibility::condition(restriction, "vc.id")).push("))))");
    Predicate(sql)
}

#[derive(QueryableByName)]
struct Code {
    #[diesel(sql_type = Text)]
    code: String,
}

/// Which of the customers of these events a restricted key may see.
fn visible_codes(
    conn: &mut DbConnection,
    restriction: &Restriction,
    events: &[FeedEvent],
) -> Result<HashSet<String>, AppError> {
    let codes: Vec<&str> =
        events.iter().filter_map(|event| event.data.get(SINGLE_CUSTOMER).and_then(Json::as_str)).collect();
    let mut visible = HashSet::new();
    for chunk in codes.chunks(GROUP_LIMIT) {
        let mut sql = Fragment::new("SELECT vc.code FROM customers vc WHERE vc.code IN (");
        sql.bind_texts(chunk.iter().copied()).push(") AND ").append(visibility::condition(restriction, "vc.id"));
        visible.extend(sql.into_query().load::<Code>(conn)?.into_iter().map(|row| row.code));
    }
    Ok(visible)
}

/// What a restricted key may not read of an event it may see: the codes of the
/// customers merged into one inside its subtree. Merged customers exist no more, and a
/// restricted key sees no customer that does not exist (as it reads no
/// `customer.deleted`), so none of their codes is left; the event still says its
/// customer absorbed others.
fn redact_for_restricted(event: &mut FeedEvent) {
    if event.event_type == EventType::CustomerMerged.as_str() {
        if let Some(merged) = event.data.get_mut("merged") {
            *merged = Json::Array(Vec::new());
        }
    }
}

/// Up to `limit` events of `types` after `cursor`, oldest first; with a
/// `restriction`, only those it may see, redacted (`redact_for_restricted`).
pub fn page(
    conn: &mut DbConnection,
    cursor: Cursor,
    types: &TypeFilter,
    limit: i64,
    restriction: Option<&Restriction>,
) -> Result<Page, AppError> {
    let sequence = sequence_row(conn, false)?;
    let after = resolve(&sequence, cursor)?;
    // The row holding the event after the cursor may begin before it (a group).
    let mut from: i64 = events::table
        .filter(events::position.le(after.saturating_add(1)))
        .order(events::position.desc())
        .select(events::position.assume_not_null())
        .first(conn)
        .optional()?
        .unwrap_or(after.saturating_add(1));
    let mut found = Vec::new();
    loop {
        // Everything numbered up to `last_position` was committed when it was read, so
        // rows that end short of `limit` have shown all of it.
        let mut query = events::table
            .filter(events::position.ge(from))
            .filter(events::position.le(sequence.last_position))
            .order(events::position)
            .select((events::position, events::event_count, events::event_type, events::occurred_at, events::data))
            .limit(limit)
            .into_boxed();
        if let Some(names) = types.names() {
            query = query.filter(events::event_type.eq_any(names));
        }
        if let Some(restriction) = restriction {
            query = query.filter(visible_to(conn, restriction));
        }
        let rows: Vec<StoredEvents> = query.load(conn)?;
        let read_all = (rows.len() as i64) < limit;
        let mut read = Vec::new();
        for row in rows {
            from = row.last()? + 1;
            let grouped = row.event_count > 1;
            let events = row.events_after(after)?;
            match restriction {
                Some(restriction) if grouped => {
                    let visible = visible_codes(conn, restriction, &events)?;
                    read.extend(events.into_iter().filter(|event| {
                        event
                            .data
                            .get(SINGLE_CUSTOMER)
                            .and_then(Json::as_str)
                            .is_some_and(|code| visible.contains(code))
                    }));
                }
                _ => read.extend(events),
            }
        }
        for mut event in read {
            if restriction.is_some() {
                redact_for_restricted(&mut event);
            }
            found.push(event);
            if found.len() as i64 == limit {
                let next_cursor = found.last().map_or(after, |event| event.position);
                return Ok(Page { events: found, next_cursor });
            }
        }
        if read_all {
            return Ok(Page { events: found, next_cursor: after.max(sequence.last_position) });
        }
    }
}

/// Deletes numbered events that occurred before `cutoff`, oldest first, in bounded
/// transactions; how many it deleted. Readers holding a cursor among them get
/// `cursor_expired`.
pub fn prune(conn: &mut DbConnection, cutoff: NaiveDateTime) -> Result<usize, AppError> {
    let mut deleted = 0;
    loop {
        let removed = transaction(conn, |conn| {
            let sequence = sequence_row(conn, true)?;
            // The oldest numbered rows; those before the cutoff go.
            let oldest: Vec<(Option<i64>, i32, NaiveDateTime)> = events::table
                .filter(events::position.gt(sequence.pruned_through))
                .order(events::position)
                .select((events::position, events::event_count, events::occurred_at))
                .limit(PRUNE_BATCH)
                .load(conn)?;
            let Some((Some(through), count, _)) = oldest.iter().take_while(|(_, _, at)| *at < cutoff).last().copied()
            else {
                return Ok(0);
            };
            let pruned_through = through + i64::from(count) - 1;
            diesel::delete(events::table.filter(events::position.le(through))).execute(conn)?;
            diesel::update(event_sequence::table.find(1_i64))
                .set(event_sequence::pruned_through.eq(pruned_through))
                .execute(conn)?;
            Ok((pruned_through - sequence.pruned_through) as usize)
        })?;
        if removed == 0 {
            return Ok(deleted);
        }
        deleted += removed;
    }
}
