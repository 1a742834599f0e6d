//! What an ordered scheme's tier policy holds back in a run: the downgrades of customers
//! that have not yet stayed long enough in their tier or failed it in enough
//! consecutive applied runs, counted in `tier_holds`.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::catalogue::rule_sql::Selection;
use crate::classification::Mover;
use crate::db::schema::{customer_categories, tier_holds};
use crate::db::DbConnection;
use crate::domain::tier_policy::{Hold, TierPolicy};
use crate::error::AppError;

const CHUNK: usize = 1000;

/// A downgrade the policy holds back: the customer, the rule that would have moved it
/// (its index in the run's rules), and what the count becomes.
pub(crate) struct HeldBack {
    pub rule_index: usize,
    pub mover: Mover,
    pub hold: Hold,
    category_code: String,
    assigned_at: NaiveDateTime,
}

/// Takes out of `groups` (movers by rule index) the downgrades (`is_down`) that the
/// policy holds at `now`, by the failed runs counted so far plus this one. The movers'
/// assignments must be locked (or, dry, merely read) by the caller.
pub(crate) fn hold_back(
    conn: &mut DbConnection,
    scheme_id: i64,
    policy: &TierPolicy,
    now: NaiveDateTime,
    groups: &mut BTreeMap<usize, Vec<Mover>>,
    is_down: impl Fn(usize, &Mover) -> bool,
) -> Result<Vec<HeldBack>, AppError> {
    let downgrades: Vec<i64> =
        groups.iter().flat_map(|(index, movers)| movers.iter().filter(|m| is_down(*index, m)).map(|m| m.id)).collect();
    if downgrades.is_empty() {
        return Ok(Vec::new());
    }
    let mut entered: HashMap<i64, (String, NaiveDateTime)> = HashMap::new();
    let mut counted: HashMap<i64, (String, NaiveDateTime, i32)> = HashMap::new();
    for chunk in downgrades.chunks(CHUNK) {
        let assignments: Vec<(i64, String, NaiveDateTime)> = customer_categories::table
            .filter(customer_categories::scheme_id.eq(scheme_id))
            .filter(customer_categories::customer_id.eq_any(chunk))
            .select((
                customer_categories::customer_id,
                customer_categories::category_code,
                customer_categories::assigned_at,
            ))
            .load(conn)?;
        entered.extend(assignments.into_iter().map(|(id, code, at)| (id, (code, at))));
        let holds: Vec<(i64, String, NaiveDateTime, i32)> = tier_holds::table
            .filter(tier_holds::scheme_id.eq(scheme_id))
            .filter(tier_holds::customer_id.eq_any(chunk))
            .select((
                tier_holds::customer_id,
                tier_holds::category_code,
                tier_holds::assigned_at,
                tier_holds::failed_runs,
            ))
            .load(conn)?;
        counted.extend(holds.into_iter().map(|(id, code, at, failed)| (id, (code, at, failed))));
    }
    let mut held = Vec::new();
    for (index, movers) in groups.iter_mut() {
        let mut moving = Vec::with_capacity(movers.len());
        for mover in movers.drain(..) {
            let Some((category_code, assigned_at)) = entered.get(&mover.id).filter(|_| is_down(*index, &mover)) else {
                moving.push(mover);
                continue;
            };
            // A count kept for another stay (the customer has moved since) counts as none.
            let before = counted
                .get(&mover.id)
                .filter(|(code, at, _)| code == category_code && at == assigned_at)
                .map_or(0, |(_, _, failed)| u32::try_from(*failed).unwrap_or(0));
            match policy.hold(before.saturating_add(1), *assigned_at, now) {
                Some(hold) => held.push(HeldBack {
                    rule_index: *index,
                    mover,
                    hold,
                    category_code: category_code.clone(),
                    assigned_at: *assigned_at,
                }),
                None => moving.push(mover),
            }
        }
        *movers = moving;
    }
    groups.retain(|_, movers| !movers.is_empty());
    Ok(held)
}

/// Records an applied run's counts for one batch: the customers held back keep theirs
/// (one more), everyone else the batch evaluated starts again from none.
pub(crate) fn record(
    conn: &mut DbConnection,
    scheme_id: i64,
    run_id: i64,
    selection: Selection,
    held: &[HeldBack],
) -> Result<(), AppError> {
    diesel::sql_query(format!(
        "DELETE FROM tier_holds WHERE scheme_id = {scheme_id} AND {}",
        selection.on("customer_id")
    ))
    .execute(conn)?;
    let rows: Vec<_> = held
        .iter()
        .map(|held| {
            (
                tier_holds::scheme_id.eq(scheme_id),
                tier_holds::customer_id.eq(held.mover.id),
                tier_holds::category_code.eq(held.category_code.clone()),
                tier_holds::assigned_at.eq(held.assigned_at),
                tier_holds::failed_runs.eq(i32::try_from(held.hold.failed_runs).unwrap_or(i32::MAX)),
                tier_holds::run_id.eq(run_id),
            )
        })
        .collect();
    crate::insert_many!(conn, tier_holds::table, rows)?;
    Ok(())
}
