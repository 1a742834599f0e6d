//! The assignment history: append-only, read newest first by customer code.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::{json, Map, Value as Json};

use crate::db::schema::{assignment_history, customers};
use crate::db::DbConnection;
use crate::domain::event::EventType;
use crate::domain::history::{Direction, Source};
use crate::error::AppError;

use crate::feed::events;

/// One change of a customer's category in a scheme.
#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = assignment_history, treat_none_as_default_value = false)]
pub struct NewHistory {
    pub customer_code: String,
    pub scheme_code: String,
    pub from_category: Option<String>,
    pub to_category: Option<String>,
    pub at: chrono::NaiveDateTime,
    pub actor: String,
    #[diesel(serialize_as = String, deserialize_as = String)]
    pub source: Source,
    pub reason: Option<String>,
    pub rule_id: Option<i64>,
    pub run_id: Option<i64>,
    /// Values (JSON object) the change dropped because the new category does not define them.
    pub dropped_attributes: Option<String>,
    #[diesel(serialize_as = String, deserialize_as = String)]
    pub direction: Direction,
    /// Whose entry it is, beside the code; none on entries of customers deleted before
    /// history carried ids.
    pub customer_id: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = assignment_history)]
pub struct HistoryRow {
    pub id: i64,
    #[diesel(embed)]
    pub change: NewHistory,
}

impl HistoryRow {
    pub fn dropped_values(&self) -> Result<Option<serde_json::Value>, AppError> {
        let Some(text) = &self.change.dropped_attributes else { return Ok(None) };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| AppError::corrupt(format!("history entry {} has unreadable dropped attributes: {e}", self.id)))
    }
}

/// Records the entries, and a `classification.changed` event for each in the feed.
pub fn record(conn: &mut DbConnection, entries: &[NewHistory]) -> Result<(), AppError> {
    // Rows that serialise a field through another type insert by value only.
    crate::insert_many!(conn, assignment_history::table, entries.to_vec())?;
    record_classification_changes(conn, entries)
}

/// One change made to many customers alike: the same scheme, categories, time and
/// provenance, and no attribute values dropped.
pub struct SharedChange<'a> {
    pub scheme_code: &'a str,
    pub from_category: Option<&'a str>,
    pub to_category: Option<&'a str>,
    pub direction: Direction,
    pub at: chrono::NaiveDateTime,
    pub actor: &'a str,
    pub source: Source,
    pub reason: Option<&'a str>,
    pub rule_id: Option<i64>,
    pub run_id: Option<i64>,
}

impl NewHistory {
    /// The change this entry records, as entries of many customers share it.
    pub fn shared(&self) -> SharedChange<'_> {
        SharedChange {
            scheme_code: &self.scheme_code,
            from_category: self.from_category.as_deref(),
            to_category: self.to_category.as_deref(),
            direction: self.direction,
            at: self.at,
            actor: &self.actor,
            source: self.source,
            reason: self.reason.as_deref(),
            rule_id: self.rule_id,
            run_id: self.run_id,
        }
    }
}

/// Records `change` for each of these customers, taking their codes from `customers`:
/// a statement per thousand that carries the change once instead of once per row; and
/// their `classification.changed` events likewise.
pub fn record_shared(conn: &mut DbConnection, customer_ids: &[i64], change: &SharedChange) -> Result<(), AppError> {
    use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
    for chunk in customer_ids.chunks(1000) {
        let list = crate::id_list(chunk);
        diesel::sql_query(format!(
            "INSERT INTO assignment_history (customer_id, customer_code, scheme_code, from_category, to_category, direction, at, actor, source, reason, rule_id, run_id) \
             SELECT id, code, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM customers WHERE id IN ({list}) ORDER BY id"
        ))
        .bind::<Text, _>(change.scheme_code)
        .bind::<Nullable<Text>, _>(change.from_category)
        .bind::<Nullable<Text>, _>(change.to_category)
        .bind::<Text, _>(change.direction.as_str())
        .bind::<Timestamp, _>(change.at)
        .bind::<Text, _>(change.actor)
        .bind::<Text, _>(change.source.as_str())
        .bind::<Nullable<Text>, _>(change.reason)
        .bind::<Nullable<BigInt>, _>(change.rule_id)
        .bind::<Nullable<BigInt>, _>(change.run_id)
        .execute(conn)?;
    }
    record_shared_classification_change(conn, customer_ids, change)
}

/// Where a page of history continues: after the entry at `(at, id)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryCursor {
    pub at: chrono::NaiveDateTime,
    pub id: i64,
}

/// Newest first; `limit + 1` rows are read so the caller knows whether more follow.
pub fn page(
    conn: &mut DbConnection,
    customer_code: &str,
    scheme_code: Option<&str>,
    after: Option<&HistoryCursor>,
    limit: i64,
) -> Result<Vec<HistoryRow>, AppError> {
    let mut query = assignment_history::table
        .filter(assignment_history::customer_code.eq(customer_code))
        .select(HistoryRow::as_select())
        .into_boxed();
    if let Some(scheme) = scheme_code {
        query = query.filter(assignment_history::scheme_code.eq(scheme.to_string()));
    }
    if let Some(cursor) = after {
        query = query.filter(
            assignment_history::at
                .lt(cursor.at)
                .or(assignment_history::at.eq(cursor.at).and(assignment_history::id.lt(cursor.id))),
        );
    }
    Ok(query.order((assignment_history::at.desc(), assignment_history::id.desc())).limit(limit + 1).load(conn)?)
}

pub fn exists_for(conn: &mut DbConnection, customer_code: &str) -> Result<bool, AppError> {
    let found: Option<i64> = assignment_history::table
        .filter(assignment_history::customer_code.eq(customer_code))
        .select(assignment_history::id)
        .first(conn)
        .optional()?;
    Ok(found.is_some())
}

/// What `classification.changed` says of a change, but for the customer.
fn classification_change(change: &SharedChange) -> Map<String, Json> {
    let Json::Object(data) = json!({
        "scheme": change.scheme_code,
        "from": change.from_category,
        "to": change.to_category,
        "direction": change.direction.as_str(),
        "source": change.source.as_str(),
        "rule_id": change.rule_id,
        "run_id": change.run_id,
        "reason": change.reason,
        "at": events::rfc3339(change.at),
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    data
}

/// `classification.changed` for each history entry. Entries that differ only in their
/// customer (new customers placed by an import, a scheme at a time) share group rows.
/// Grouping puts the changes in the order of their first entry, so it is done only
/// when no customer changes twice in one scheme among the entries; otherwise every
/// entry is an event of its own, in order.
fn record_classification_changes(conn: &mut DbConnection, entries: &[NewHistory]) -> Result<(), AppError> {
    let mut seen = HashSet::new();
    if !entries.iter().all(|entry| seen.insert((entry.customer_code.as_str(), entry.scheme_code.as_str()))) {
        let single = |entry: &NewHistory| {
            let mut data = classification_change(&entry.shared());
            data.insert(events::SINGLE_CUSTOMER.into(), json!(entry.customer_code));
            events::NewEvent { kind: EventType::ClassificationChanged, at: entry.at, data: Json::Object(data) }
        };
        return events::record(conn, entries.iter().map(single).collect());
    }
    let mut groups: Vec<(Map<String, Json>, NaiveDateTime, Vec<String>)> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let shared = classification_change(&entry.shared());
        let key = Json::Object(shared.clone()).to_string();
        match open.get(&key) {
            Some(&group) if groups[group].2.len() < events::GROUP_LIMIT => {
                groups[group].2.push(entry.customer_code.clone())
            }
            _ => {
                open.insert(key, groups.len());
                groups.push((shared, entry.at, vec![entry.customer_code.clone()]));
            }
        }
    }
    for (shared, at, codes) in groups {
        events::record_for_customers(conn, EventType::ClassificationChanged, at, shared, codes)?;
    }
    Ok(())
}

/// `classification.changed` for each of these customers making the same change (the
/// chunks of `record_shared`), as group rows.
fn record_shared_classification_change(
    conn: &mut DbConnection,
    customer_ids: &[i64],
    change: &SharedChange,
) -> Result<(), AppError> {
    for chunk in customer_ids.chunks(events::GROUP_LIMIT) {
        let codes: Vec<String> = customers::table
            .filter(customers::id.eq_any(chunk))
            .order(customers::id)
            .select(customers::code)
            .load(conn)?;
        events::record_for_customers(
            conn,
            EventType::ClassificationChanged,
            change.at,
            classification_change(change),
            codes,
        )?;
    }
    Ok(())
}
