//! The one write path for a change of customers' categories. Every way a category
//! changes (an assignment or its removal, a batch, a run's batch, an import's new
//! customers, a merge, a re-mapping, a customer's deletion) describes the change to
//! a [`ClassificationWrite`], which writes all that follows from it: the assignment
//! rows, the memberships and their classification vectors, the history with its
//! `classification.changed` events, and at `finish` the customers' snapshots and the
//! category and pair counters. Callers lock the customers first and never write those
//! tables themselves (`custclass audit` checks that they all agree).

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde_json::Value as Json;

use crate::db::schema::{category_members, customer_categories};
use crate::db::{now, DbConnection};
use crate::domain::category::ClassificationVector;
use crate::domain::history::Source;
use crate::error::AppError;

use crate::archive::customer_rows::{self as customer_store, CustomerRow, SnapshotTarget};
use crate::catalogue::attribute_values::{self, MovePlan};
use crate::catalogue::categories::{self as category_store, Ranks};
use crate::catalogue::category_rows::CategoryRow;
use crate::catalogue::schemes::SchemeRow;
use crate::reporting::counts::{self, CategoryDeltas};
use history::{NewHistory, SharedChange};

pub mod assignments;
pub mod explanation;
pub mod history;
mod memberships;
pub mod pending;
pub mod pending_rows;
pub mod rankings;
pub mod reassign;
pub mod run_batches;
pub mod runs;
mod tier_holds;
use memberships::replace_memberships;

/// Customers per statement.
const CHUNK: usize = 1000;

/// Who or what makes a change, as history records it.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub actor: String,
    pub source: Source,
    pub reason: Option<String>,
    pub rule_id: Option<i64>,
    pub run_id: Option<i64>,
}

impl Provenance {
    pub fn new(actor: &str, source: Source, reason: Option<String>) -> Self {
        Self { actor: actor.to_string(), source, reason, rule_id: None, run_id: None }
    }

    fn shared<'a>(
        &'a self,
        ranks: &Ranks,
        scheme_code: &'a str,
        from: Option<&'a str>,
        to: Option<&'a str>,
        at: chrono::NaiveDateTime,
    ) -> SharedChange<'a> {
        SharedChange {
            scheme_code,
            from_category: from,
            to_category: to,
            direction: ranks.direction(from, to),
            at,
            actor: &self.actor,
            source: self.source,
            reason: self.reason.as_deref(),
            rule_id: self.rule_id,
            run_id: self.run_id,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        ranks: &Ranks,
        (customer_id, customer_code): (i64, &str),
        scheme_code: &str,
        from: Option<String>,
        to: Option<String>,
        at: chrono::NaiveDateTime,
        dropped: Option<BTreeMap<String, Json>>,
    ) -> NewHistory {
        NewHistory {
            customer_id: Some(customer_id),
            customer_code: customer_code.to_string(),
            scheme_code: scheme_code.to_string(),
            direction: ranks.direction(from.as_deref(), to.as_deref()),
            from_category: from,
            to_category: to,
            at,
            actor: self.actor.clone(),
            source: self.source,
            reason: self.reason.clone(),
            rule_id: self.rule_id,
            run_id: self.run_id,
            dropped_attributes: dropped
                .filter(|values| !values.is_empty())
                .map(|values| Json::Object(values.into_iter().collect()).to_string()),
        }
    }
}

/// The classification changes of one transaction: each is written as it is
/// described, and `finish` writes what they share last: the customers' snapshots,
/// then the counters (the rows concurrent changes share, held for the shortest time).
#[derive(Debug, Default)]
#[must_use = "nothing of the counts and snapshots is written until `finish`"]
pub struct ClassificationWrite {
    counted: BTreeMap<i64, CategoryDeltas>,
    /// Customers whose snapshot is rewritten whole (assignments and values).
    snapshots: BTreeSet<i64>,
    /// Customers whose assignments changed and whose values did not.
    reassigned: BTreeSet<i64>,
}

/// Customers moving into one category of a scheme.
pub struct Moves<'a> {
    pub scheme: &'a SchemeRow,
    pub to: &'a CategoryRow,
    pub movers: &'a [Mover],
    /// `Some`: the pin they get; `None`: each keeps its own (a new assignment is unpinned).
    pub locked: Option<bool>,
    pub provenance: &'a Provenance,
}

impl ClassificationWrite {
    fn deltas(&mut self, scheme_id: i64) -> &mut CategoryDeltas {
        self.counted.entry(scheme_id).or_insert_with(|| CategoryDeltas::new(scheme_id))
    }

    /// Customers staying in their category of `scheme` whose pin becomes `locked`.
    pub fn repin(
        &mut self,
        conn: &mut DbConnection,
        scheme: &SchemeRow,
        customer_ids: &[i64],
        locked: bool,
    ) -> Result<(), AppError> {
        for chunk in customer_ids.chunks(CHUNK) {
            let target = customer_categories::table
                .filter(customer_categories::scheme_id.eq(scheme.id))
                .filter(customer_categories::customer_id.eq_any(chunk));
            diesel::update(target).set(customer_categories::locked.eq(locked)).execute(conn)?;
        }
        self.reassigned.extend(customer_ids);
        Ok(())
    }

    /// A customer whose attribute values the caller changed in the same transaction:
    /// its snapshot is rewritten whole.
    pub fn values_changed(&mut self, customer_id: i64) {
        self.snapshots.insert(customer_id);
    }

    /// How many customers' classification or values changed.
    pub fn customers_changed(&self) -> usize {
        self.snapshots.union(&self.reassigned).count()
    }

    /// Writes the snapshots of every customer changed (with a new version when
    /// `bump_version`: their representation changed), then the counters.
    pub fn finish(self, conn: &mut DbConnection, bump_version: bool) -> Result<(), AppError> {
        let whole: Vec<i64> = self.snapshots.iter().copied().collect();
        let reassigned: Vec<i64> = self.reassigned.difference(&self.snapshots).copied().collect();
        customer_store::refresh_snapshot(conn, SnapshotTarget::Ids(&whole), bump_version)?;
        customer_store::refresh_snapshot(conn, SnapshotTarget::Reassigned(&reassigned), bump_version)?;
        for deltas in self.counted.into_values() {
            deltas.apply(conn)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOutcome {
    pub category_changed: bool,
    pub lock_changed: bool,
}

impl SetOutcome {
    pub fn any(self) -> bool {
        self.category_changed || self.lock_changed
    }
}

pub(crate) fn current(
    conn: &mut DbConnection,
    customer_id: i64,
    scheme_id: i64,
) -> Result<Option<(String, bool)>, AppError> {
    Ok(customer_categories::table
        .filter(customer_categories::customer_id.eq(customer_id))
        .filter(customer_categories::scheme_id.eq(scheme_id))
        .select((customer_categories::category_code, customer_categories::locked))
        .first(conn)
        .optional()?)
}

/// The customer's assignment in a scheme, provided it still holds the category read.
///
/// Every change of an assignment names the category it read in its `WHERE`, and
/// `still_as_read` checks that it found the row. On one server the customer's row
/// lock already keeps the read true; on a multi-primary cluster (Galera) a commit
/// from another node can land between the read and the write without meeting that
/// lock, and certification does not refuse the write ("first committer wins" is not
/// enforced), so only the write's own condition sees it.
fn as_read(customer_id: i64, scheme_id: i64, category_code: &str) -> AsRead<'_> {
    customer_categories::table
        .find((customer_id, scheme_id))
        .filter(customer_categories::category_code.eq(category_code))
}

type AsRead<'a> = diesel::dsl::Filter<
    diesel::dsl::Find<customer_categories::table, (i64, i64)>,
    diesel::dsl::Eq<customer_categories::category_code, &'a str>,
>;

/// 409 `concurrent_update` (which the transaction retries) when a write guarded by
/// what was read (`as_read`) found fewer rows than it expected.
fn still_as_read(found: usize, expected: usize) -> Result<(), AppError> {
    if found == expected {
        Ok(())
    } else {
        Err(AppError::concurrent_update())
    }
}

/// An assignment inserted for a customer that held none when read: a duplicate key
/// means another transaction assigned it meanwhile, which a retry sees.
fn assigned_meanwhile(error: diesel::result::Error) -> AppError {
    match error {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
            AppError::concurrent_update()
        }
        other => other.into(),
    }
}

/// What a change of category does about the customer's attribute values.
#[derive(Debug, Clone, Copy)]
pub enum AttributeCheck<'a> {
    /// The caller checks all values afterwards (a new customer).
    Deferred,
    /// Bring the scheme's values in line with the new category, with these values
    /// given for it (see `attribute_values::reconcile_move`).
    Reconcile(&'a BTreeMap<String, Json>),
}

impl AttributeCheck<'_> {
    fn dropped(
        self,
        conn: &mut DbConnection,
        scheme: &SchemeRow,
        category: Option<&str>,
        customer: &CustomerRow,
    ) -> Result<Option<BTreeMap<String, Json>>, AppError> {
        match self {
            AttributeCheck::Deferred => Ok(None),
            AttributeCheck::Reconcile(supplied) => Ok(attribute_values::reconcile_move(
                conn,
                scheme,
                category,
                &[(customer.id, &customer.code)],
                supplied,
            )?
            .remove(&customer.id)),
        }
    }
}

/// One customer's category in one scheme, as a caller sets it.
pub struct Setting<'a> {
    pub scheme: &'a SchemeRow,
    pub category: &'a CategoryRow,
    /// `Some`: the pin it gets; `None`: it keeps its own (a new assignment is unpinned).
    pub locked: Option<bool>,
    pub provenance: &'a Provenance,
    pub check: AttributeCheck<'a>,
}

impl ClassificationWrite {
    /// Puts one customer (already locked) into a category.
    pub fn set(
        &mut self,
        conn: &mut DbConnection,
        customer: &CustomerRow,
        setting: Setting,
    ) -> Result<SetOutcome, AppError> {
        let Setting { scheme, category, locked, provenance, check } = setting;
        let at = now();
        match current(conn, customer.id, scheme.id)? {
            Some((code, was_locked)) if code == category.code => {
                let lock = locked.unwrap_or(was_locked);
                if lock != was_locked {
                    let updated = diesel::update(as_read(customer.id, scheme.id, &code))
                        .set(customer_categories::locked.eq(lock))
                        .execute(conn)?;
                    still_as_read(updated, 1)?;
                }
                if lock != was_locked {
                    self.snapshots.insert(customer.id);
                }
                Ok(SetOutcome { category_changed: false, lock_changed: lock != was_locked })
            }
            Some((code, was_locked)) => {
                let lock = locked.unwrap_or(was_locked);
                let updated = diesel::update(as_read(customer.id, scheme.id, &code))
                    .set((
                        customer_categories::category_id.eq(category.id),
                        customer_categories::category_code.eq(&category.code),
                        customer_categories::locked.eq(lock),
                        customer_categories::assigned_at.eq(at),
                    ))
                    .execute(conn)?;
                still_as_read(updated, 1)?;
                replace_memberships(conn, scheme, &[Mover::of(customer, Some(code.clone()))], Some(&category.code))?;
                self.count_move(conn, scheme, customer.id, Some(&code), Some(&category.code))?;
                let dropped = check.dropped(conn, scheme, Some(&category.code), customer)?;
                let ranks = category_store::ranks(conn, scheme)?;
                history::record(
                    conn,
                    &[provenance.entry(
                        &ranks,
                        (customer.id, &customer.code),
                        &scheme.code,
                        Some(code),
                        Some(category.code.clone()),
                        at,
                        dropped,
                    )],
                )?;
                self.snapshots.insert(customer.id);
                Ok(SetOutcome { category_changed: true, lock_changed: lock != was_locked })
            }
            None => {
                diesel::insert_into(customer_categories::table)
                    .values((
                        customer_categories::customer_id.eq(customer.id),
                        customer_categories::scheme_id.eq(scheme.id),
                        customer_categories::category_id.eq(category.id),
                        customer_categories::category_code.eq(&category.code),
                        customer_categories::locked.eq(locked.unwrap_or(false)),
                        customer_categories::assigned_at.eq(at),
                    ))
                    .execute(conn)
                    .map_err(assigned_meanwhile)?;
                replace_memberships(conn, scheme, &[Mover::of(customer, None)], Some(&category.code))?;
                self.count_move(conn, scheme, customer.id, None, Some(&category.code))?;
                let dropped = check.dropped(conn, scheme, Some(&category.code), customer)?;
                history::record(
                    conn,
                    &[provenance.entry(
                        &Ranks::default(),
                        (customer.id, &customer.code),
                        &scheme.code,
                        None,
                        Some(category.code.clone()),
                        at,
                        dropped,
                    )],
                )?;
                self.snapshots.insert(customer.id);
                Ok(SetOutcome { category_changed: true, lock_changed: locked.unwrap_or(false) })
            }
        }
    }

    /// Takes one customer (already locked) out of `scheme`; false when it was in none.
    pub fn clear(
        &mut self,
        conn: &mut DbConnection,
        customer: &CustomerRow,
        scheme: &SchemeRow,
        provenance: &Provenance,
    ) -> Result<bool, AppError> {
        let Some((code, _)) = current(conn, customer.id, scheme.id)? else { return Ok(false) };
        still_as_read(diesel::delete(as_read(customer.id, scheme.id, &code)).execute(conn)?, 1)?;
        replace_memberships(conn, scheme, &[Mover::of(customer, Some(code.clone()))], None)?;
        self.count_move(conn, scheme, customer.id, Some(&code), None)?;
        let dropped = AttributeCheck::Reconcile(&BTreeMap::new()).dropped(conn, scheme, None, customer)?;
        history::record(
            conn,
            &[provenance.entry(
                &Ranks::default(),
                (customer.id, &customer.code),
                &scheme.code,
                Some(code),
                None,
                now(),
                dropped,
            )],
        )?;
        self.snapshots.insert(customer.id);
        Ok(true)
    }

    fn count_move(
        &mut self,
        conn: &mut DbConnection,
        scheme: &SchemeRow,
        customer_id: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(), AppError> {
        let others =
            counts::other_categories(conn, scheme.id, &[customer_id])?.remove(&customer_id).unwrap_or_default();
        self.deltas(scheme.id).moved(customer_id, from, to, &others);
        Ok(())
    }
}

/// A customer (locked by the caller) leaving `from` for another category.
#[derive(Debug, Clone)]
pub struct Mover {
    pub id: i64,
    pub code: String,
    pub from: Option<String>,
}

impl Mover {
    fn of(customer: &CustomerRow, from: Option<String>) -> Self {
        Self { id: customer.id, code: customer.code.clone(), from }
    }
}

impl ClassificationWrite {
    /// Moves customers into a category set-based, a thousand per statement: their values
    /// as `plan` says (customers it rejects must not be among them), their assignments,
    /// memberships and history (with the values dropped on the way); their snapshots
    /// and counts are written by `finish`.
    pub fn move_customers(&mut self, conn: &mut DbConnection, moves: Moves, plan: MovePlan) -> Result<(), AppError> {
        let Moves { scheme, to: category, movers, locked, provenance } = moves;
        let rewritten = plan.rewrites();
        let mut dropped = plan.apply(conn)?;
        for mover in movers {
            if rewritten.contains(&mover.id) {
                self.snapshots.insert(mover.id);
            } else {
                self.reassigned.insert(mover.id);
            }
        }
        let at = now();
        let moved: Vec<i64> = movers.iter().filter(|m| m.from.is_some()).map(|m| m.id).collect();
        let added: Vec<i64> = movers.iter().filter(|m| m.from.is_none()).map(|m| m.id).collect();
        let mut leaving: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for mover in movers {
            if let Some(from) = &mover.from {
                leaving.entry(from.as_str()).or_default().push(mover.id);
            }
        }
        for (from, ids) in &leaving {
            for chunk in ids.chunks(CHUNK) {
                // Guarded by the category the caller read, as `as_read` explains.
                let target = customer_categories::table
                    .filter(customer_categories::scheme_id.eq(scheme.id))
                    .filter(customer_categories::customer_id.eq_any(chunk))
                    .filter(customer_categories::category_code.eq(*from));
                let updated = diesel::update(target)
                    .set((
                        customer_categories::category_id.eq(category.id),
                        customer_categories::category_code.eq(&category.code),
                        customer_categories::assigned_at.eq(at),
                    ))
                    .execute(conn)?;
                still_as_read(updated, chunk.len())?;
            }
        }
        for chunk in moved.chunks(CHUNK) {
            if let Some(lock) = locked {
                let target = customer_categories::table
                    .filter(customer_categories::scheme_id.eq(scheme.id))
                    .filter(customer_categories::customer_id.eq_any(chunk));
                diesel::update(target).set(customer_categories::locked.eq(lock)).execute(conn)?;
            }
        }
        for chunk in added.chunks(CHUNK) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|id| {
                    (
                        customer_categories::customer_id.eq(*id),
                        customer_categories::scheme_id.eq(scheme.id),
                        customer_categories::category_id.eq(category.id),
                        customer_categories::category_code.eq(category.code.clone()),
                        customer_categories::locked.eq(locked.unwrap_or(false)),
                        customer_categories::assigned_at.eq(at),
                    )
                })
                .collect();
            crate::insert_rows!(conn, customer_categories::table, rows).map_err(assigned_meanwhile)?;
        }
        replace_memberships(conn, scheme, movers, Some(&category.code))?;
        let ids: Vec<i64> = movers.iter().map(|mover| mover.id).collect();
        let others = counts::other_categories(conn, scheme.id, &ids)?;
        let counted = self.deltas(scheme.id);
        for mover in movers {
            counted.moved(
                mover.id,
                mover.from.as_deref(),
                Some(&category.code),
                others.get(&mover.id).map_or(&[][..], Vec::as_slice),
            );
        }
        // Customers that lost attribute values have them in their own entries; the rest
        // share theirs, one per category they come from.
        let ranks = category_store::ranks(conn, scheme)?;
        let mut alike: BTreeMap<Option<&str>, Vec<i64>> = BTreeMap::new();
        let mut entries: Vec<NewHistory> = Vec::new();
        for mover in movers {
            match dropped.remove(&mover.id).filter(|values| !values.is_empty()) {
                Some(values) => entries.push(provenance.entry(
                    &ranks,
                    (mover.id, &mover.code),
                    &scheme.code,
                    mover.from.clone(),
                    Some(category.code.clone()),
                    at,
                    Some(values),
                )),
                None => alike.entry(mover.from.as_deref()).or_default().push(mover.id),
            }
        }
        for (from, ids) in alike {
            history::record_shared(
                conn,
                &ids,
                &provenance.shared(&ranks, &scheme.code, from, Some(&category.code), at),
            )?;
        }
        history::record(conn, &entries)
    }
}

/// A new customer's category in one scheme, and who or what put it there.
pub struct Placement<'a> {
    pub customer_id: i64,
    pub customer_code: &'a str,
    pub scheme: &'a SchemeRow,
    pub category: &'a CategoryRow,
    pub provenance: &'a Provenance,
}

impl ClassificationWrite {
    /// Puts customers created in this transaction, which hold no category anywhere yet,
    /// into their categories in every scheme at once: assignments, memberships (each
    /// carrying the customer's whole classification vector, known here) and history, a
    /// statement per table and thousand rows, where `move_customers` takes one category
    /// at a time. All are assigned `at`. Their snapshots were written with their rows
    /// (`customer_rows::new_snapshots`); their counts are written by `finish`.
    pub fn place_new(
        &mut self,
        conn: &mut DbConnection,
        placements: &[Placement],
        at: chrono::NaiveDateTime,
    ) -> Result<(), AppError> {
        let counted = &mut self.counted;
        let mut by_customer: BTreeMap<i64, Vec<&Placement>> = BTreeMap::new();
        for placement in placements {
            by_customer.entry(placement.customer_id).or_default().push(placement);
        }
        let assignments: Vec<_> = placements
            .iter()
            .map(|p| {
                (
                    customer_categories::customer_id.eq(p.customer_id),
                    customer_categories::scheme_id.eq(p.scheme.id),
                    customer_categories::category_id.eq(p.category.id),
                    customer_categories::category_code.eq(p.category.code.clone()),
                    customer_categories::locked.eq(false),
                    customer_categories::assigned_at.eq(at),
                )
            })
            .collect();
        crate::insert_many!(conn, customer_categories::table, assignments)?;
        let mut memberships = Vec::new();
        let mut entries = Vec::new();
        for (customer_id, mut held) in by_customer {
            held.sort_by_key(|p| p.scheme.id);
            let vector =
                ClassificationVector::of(held.iter().map(|p| (p.scheme.id, p.category.code.as_str()))).into_inner();
            let mut earlier: Vec<(i64, String)> = Vec::new();
            for p in held {
                for code in crate::catalogue::categories::path_codes(p.scheme, &p.category.code)? {
                    memberships.push((
                        category_members::customer_id.eq(customer_id),
                        category_members::scheme_id.eq(p.scheme.id),
                        category_members::category_code.eq(code),
                        category_members::customer_code.eq(p.customer_code.to_string()),
                        category_members::classification_vector.eq(vector.clone()),
                    ));
                }
                // Each pair of schemes is counted once: by the later scheme, with the earlier as other.
                counted.entry(p.scheme.id).or_insert_with(|| CategoryDeltas::new(p.scheme.id)).moved(
                    customer_id,
                    None,
                    Some(&p.category.code),
                    &earlier,
                );
                earlier.push((p.scheme.id, p.category.code.clone()));
                entries.push(NewHistory {
                    customer_id: Some(customer_id),
                    customer_code: p.customer_code.to_string(),
                    scheme_code: p.scheme.code.clone(),
                    from_category: None,
                    to_category: Some(p.category.code.clone()),
                    at,
                    actor: p.provenance.actor.clone(),
                    source: p.provenance.source,
                    reason: p.provenance.reason.clone(),
                    rule_id: p.provenance.rule_id,
                    run_id: p.provenance.run_id,
                    dropped_attributes: None,
                    direction: crate::domain::history::Direction::In,
                });
            }
        }
        crate::insert_many!(conn, category_members::table, memberships)?;
        history::record(conn, &entries)
    }
}
