//! Re-mapping a category (分类标准更新): every customer of a category's subtree moved to
//! another leaf of the scheme, so that the old category can then be deactivated or
//! deleted. It works like a classification run: in batches of bounded size, each its
//! own transaction, with history of source `remap`.

use std::collections::BTreeMap;

use diesel::prelude::*;

use crate::db::schema::{categories, customer_categories, customers};
use crate::db::{transaction, DbConnection};
use crate::domain::history::Source;
use crate::error::AppError;

use crate::catalogue::attribute_values;
use crate::catalogue::categories::category_not_found;
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::classification::assignments;
use crate::classification::{ClassificationWrite, Mover, Moves, Provenance};

/// Rejections listed in the outcome; beyond, they are only counted.
const LISTED_REJECTIONS: usize = 100;

/// What re-mapping a subtree asks for.
#[derive(Debug, Clone)]
pub struct Reassignment {
    pub scheme: String,
    /// The category whose subtree is emptied.
    pub from: String,
    /// An active leaf of the same scheme.
    pub to: String,
    /// Move pinned customers too; otherwise they stay, and are counted.
    pub include_locked: bool,
    pub actor: String,
    pub reason: Option<String>,
    pub batch_size: i64,
}

/// A customer the new category's attribute definitions would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub customer: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReassignOutcome {
    pub moved: i64,
    /// Pinned (`locked`) customers left where they are.
    pub skipped_locked: i64,
    /// Customers that stay because their attribute values do not fit `to`.
    pub rejected: i64,
    /// The first of them, by customer id.
    pub rejections: Vec<Rejected>,
    pub batches: i64,
}

/// Moves every customer of `from`'s subtree (but those already in `to`) to `to`.
pub fn reassign(conn: &mut DbConnection, request: &Reassignment) -> Result<ReassignOutcome, AppError> {
    let scheme = scheme_store::get(conn, &request.scheme)?;
    crate::catalogue::category_rows::find_row(conn, scheme.id, &request.from)?
        .ok_or_else(|| category_not_found(&scheme.code, &request.from))?;
    // Checked before the first batch, so that a bad target answers 422 with nothing moved.
    transaction(conn, |conn| assignments::assignable_category(conn, &scheme, &request.to, "to").map(drop))?;
    let upper = crate::prefix_upper_bound(&request.from);
    // Category by category, so that each batch is one range of `(scheme_id, category_code, customer_id)`.
    let codes: Vec<String> = categories::table
        .filter(categories::scheme_id.eq(scheme.id))
        .filter(categories::code.ge(&request.from).and(categories::code.lt(&upper)))
        .filter(categories::code.ne(&request.to))
        .order(categories::code)
        .select(categories::code)
        .load(conn)?;
    let provenance = Provenance::new(&request.actor, Source::Remap, request.reason.clone());
    let mut outcome = ReassignOutcome::default();
    for code in codes {
        let mut after = i64::MIN;
        loop {
            let batch: Vec<(i64, String)> = customer_categories::table
                .inner_join(customers::table)
                .filter(customer_categories::scheme_id.eq(scheme.id))
                .filter(customer_categories::category_code.eq(&code))
                .filter(customer_categories::customer_id.gt(after))
                .order(customer_categories::customer_id)
                .select((customer_categories::customer_id, customers::code))
                .limit(request.batch_size)
                .load(conn)?;
            let Some((last, _)) = batch.last() else { break };
            after = *last;
            outcome.batches += 1;
            let moved = transaction(conn, |conn| move_batch(conn, &scheme, request, &code, &batch, &provenance))?;
            outcome.moved += moved.moved;
            outcome.skipped_locked += moved.skipped_locked;
            outcome.rejected += moved.rejected;
            let room = LISTED_REJECTIONS.saturating_sub(outcome.rejections.len());
            outcome.rejections.extend(moved.rejections.into_iter().take(room));
            if (batch.len() as i64) < request.batch_size {
                break;
            }
        }
    }
    Ok(outcome)
}

/// One batch of the customers of `code`, in its transaction: each customer is locked
/// and read again, and moves only if it is still there (a concurrent request may have
/// moved it).
fn move_batch(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    request: &Reassignment,
    code: &str,
    batch: &[(i64, String)],
    provenance: &Provenance,
) -> Result<ReassignOutcome, AppError> {
    let target = assignments::assignable_category(conn, scheme, &request.to, "to")?;
    let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
    let now_in = assignments::lock_in_scheme(conn, scheme.id, &ids)?;
    let mut outcome = ReassignOutcome::default();
    let mut movers = Vec::new();
    for (id, customer) in batch {
        let Some((category, locked)) = now_in.get(id) else { continue };
        if category != code {
            continue;
        }
        if *locked && !request.include_locked {
            outcome.skipped_locked += 1;
            continue;
        }
        movers.push(Mover { id: *id, code: customer.clone(), from: Some(category.clone()) });
    }
    let members: Vec<(i64, &str)> = movers.iter().map(|m| (m.id, m.code.as_str())).collect();
    let plan = attribute_values::plan_move(conn, scheme, Some(&target.code), &members, &BTreeMap::new())?;
    let (accepted, refused): (Vec<Mover>, Vec<Mover>) =
        movers.into_iter().partition(|m| !plan.rejected.contains_key(&m.id));
    outcome.rejected = refused.len() as i64;
    outcome.rejections = refused
        .iter()
        .map(|mover| Rejected {
            customer: mover.code.clone(),
            detail: plan.rejected.get(&mover.id).map(attribute_values::Rejection::describe).unwrap_or_default(),
        })
        .collect();
    outcome.moved = accepted.len() as i64;
    if accepted.is_empty() {
        return Ok(outcome);
    }
    let mut write = ClassificationWrite::default();
    let moves = Moves { scheme, to: &target, movers: &accepted, locked: None, provenance };
    write.move_customers(conn, moves, plan)?;
    write.finish(conn, true)?;
    Ok(outcome)
}
