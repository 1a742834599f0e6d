//! The rows of pending changes that every change of a customer's category touches:
//! a manual change cancels the pending one of its customer and scheme, and the
//! customer's snapshot of its pending changes (`customers.pending`) is rewritten from
//! the table. Kept apart from `pending` (which applies changes through
//! `assignments`), so that `assignments` can use it without an import circle.

use diesel::prelude::*;

use crate::archive::customer_rows::CustomerRow;
use crate::db::schema::pending_changes;
use crate::db::sql::{Bind, Fragment};
use crate::db::{now, DbConnection};
use crate::domain::pending::PendingStatus;
use crate::error::AppError;
use crate::id_list;

/// What a change of a customer in a scheme does to its pending change there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingRule {
    /// A manual change supersedes the change planned for later: it is cancelled.
    Cancel,
    /// The planned change stays (the request says so, or it is not a manual change).
    Keep,
}

/// Cancels the pending changes of these customers in the scheme; the caller holds
/// the customers' rows and refreshes their snapshots. Whether any was cancelled.
pub(crate) fn cancel_for(conn: &mut DbConnection, scheme_code: &str, customer_ids: &[i64]) -> Result<bool, AppError> {
    let at = now();
    let mut cancelled = 0;
    for chunk in customer_ids.chunks(1000) {
        cancelled += diesel::update(
            pending_changes::table
                .filter(pending_changes::customer_id.eq_any(chunk))
                .filter(pending_changes::scheme_code.eq(scheme_code))
                .filter(pending_changes::status.eq(PendingStatus::Pending.as_str())),
        )
        .set((
            pending_changes::status.eq(PendingStatus::Cancelled.as_str()),
            pending_changes::settled_at.eq(Some(at)),
            pending_changes::version.eq(pending_changes::version + 1),
        ))
        .execute(conn)?;
    }
    Ok(cancelled > 0)
}

/// A manual change of these customers in the scheme: cancels their pending changes
/// there (and shows it on them) unless the request keeps them.
pub(crate) fn settle_for_manual_change(
    conn: &mut DbConnection,
    rule: PendingRule,
    scheme_code: &str,
    customer_ids: &[i64],
) -> Result<(), AppError> {
    if rule == PendingRule::Cancel && cancel_for(conn, scheme_code, customer_ids)? {
        refresh(conn, customer_ids)?;
    }
    Ok(())
}

/// A manual change of one customer, whose locked row is at hand: its snapshot says
/// whether it has a pending change at all, so most changes write nothing here.
pub(crate) fn settle_for_manual_change_of(
    conn: &mut DbConnection,
    rule: PendingRule,
    scheme_code: &str,
    customer: &CustomerRow,
) -> Result<(), AppError> {
    if customer.pending.is_none() {
        return Ok(());
    }
    settle_for_manual_change(conn, rule, scheme_code, &[customer.id])
}

/// Rewrites `customers.pending` of these customers from their pending changes, and
/// gives them a new version: their representation changed.
pub(crate) fn refresh(conn: &mut DbConnection, customer_ids: &[i64]) -> Result<(), AppError> {
    let pending = match conn {
        DbConnection::Mysql(_) => {
            "(SELECT JSON_OBJECTAGG(p.scheme_code, JSON_OBJECT('id', p.id, 'category', p.category_code, \
             'effective_at', DATE_FORMAT(p.effective_at, '%Y-%m-%d %H:%i:%s.%f'), 'actor', p.actor, 'reason', p.reason)) \
             FROM pending_changes p WHERE p.customer_id = customers.id AND p.status = 'pending')"
        }
        DbConnection::Sqlite(_) => {
            "(SELECT NULLIF(json_group_object(p.scheme_code, json_object('id', p.id, 'category', p.category_code, \
             'effective_at', p.effective_at, 'actor', p.actor, 'reason', p.reason)), '{}') \
             FROM pending_changes p WHERE p.customer_id = customers.id AND p.status = 'pending')"
        }
    };
    for chunk in customer_ids.chunks(1000) {
        let mut update =
            Fragment::new(&format!("UPDATE customers SET pending = {pending}, version = version + 1, updated_at = "));
        update.bind(Bind::Timestamp(now())).push(&format!(" WHERE id IN ({})", id_list(chunk)));
        update.into_query().execute(conn)?;
    }
    Ok(())
}
