//! Assignments (客户分类指定) made by a person, through the one write path.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDateTime;
use serde_json::Value as Json;

use crate::db::Db;
use crate::domain::category::CategoryCode;
use crate::domain::customer::CustomerCode;
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::archive::customer_rows::CustomerView;
use crate::store::classification::assignments::{self as store, Assignment, Batch, BatchOutcome, PendingRule};
use crate::store::classification::pending::{self, BatchScheduling, PendingRow, Scheduling};
use crate::store::classification::Provenance;

/// Who changes a category, why, and the subtree a restricted key is held to.
pub struct Changer {
    pub provenance: Provenance,
    pub restriction: Option<Arc<Restriction>>,
}

/// One customer into one category of a scheme.
pub struct Placement {
    pub customer: String,
    pub scheme: String,
    pub category: CategoryCode,
    /// `Some`: pin or unpin; `None`: keep the pin as it is.
    pub locked: Option<bool>,
    /// Values of the new category's attributes given with the move.
    pub values: BTreeMap<String, Json>,
    /// The customer's version the caller read (`If-Match`).
    pub expected: Option<i64>,
}

/// The change now; `pending` says what becomes of the customer's pending change in
/// the scheme.
pub async fn assign(
    db: &Db,
    placement: Placement,
    pending: PendingRule,
    changer: Changer,
) -> Result<CustomerView, AppError> {
    db.run(move |conn| {
        store::assign(
            conn,
            Assignment {
                customer: &placement.customer,
                scheme: &placement.scheme,
                category: placement.category.as_str(),
                locked: placement.locked,
                values: &placement.values,
                provenance: &changer.provenance,
                expected: placement.expected,
                restriction: changer.restriction.as_deref(),
                pending,
            },
        )
    })
    .await
}

/// The change stored as pending, to take effect at `effective_at` (a moment ahead).
pub async fn schedule(
    db: &Db,
    placement: Placement,
    effective_at: NaiveDateTime,
    changer: Changer,
) -> Result<PendingRow, AppError> {
    db.run(move |conn| {
        pending::schedule(
            conn,
            Scheduling {
                customer: &placement.customer,
                scheme: &placement.scheme,
                category: placement.category.as_str(),
                locked: placement.locked,
                values: &placement.values,
                effective_at,
                provenance: &changer.provenance,
                expected: placement.expected,
                restriction: changer.restriction.as_deref(),
            },
        )
    })
    .await
}

/// Takes the customer out of the scheme.
pub async fn unassign(
    db: &Db,
    customer: String,
    scheme: String,
    expected: Option<i64>,
    pending: PendingRule,
    changer: Changer,
) -> Result<CustomerView, AppError> {
    db.run(move |conn| {
        store::unassign(
            conn,
            &customer,
            &scheme,
            &changer.provenance,
            expected,
            changer.restriction.as_deref(),
            pending,
        )
    })
    .await
}

/// Many customers into one category, all or nothing.
pub struct BatchPlacement {
    pub scheme: String,
    pub category: CategoryCode,
    pub customers: Vec<CustomerCode>,
    pub locked: Option<bool>,
}

pub async fn assign_batch(
    db: &Db,
    batch: BatchPlacement,
    pending: PendingRule,
    changer: Changer,
) -> Result<BatchOutcome, AppError> {
    db.run(move |conn| {
        let asked = Batch {
            scheme: &batch.scheme,
            category: batch.category.as_str(),
            customers: &batch.customers,
            locked: batch.locked,
            pending,
        };
        store::assign_batch(conn, asked, &changer.provenance, changer.restriction.as_deref())
    })
    .await
}

/// The batch stored as pending changes, all or none, to take effect at `effective_at`;
/// how many customers it names.
pub async fn schedule_batch(
    db: &Db,
    batch: BatchPlacement,
    effective_at: NaiveDateTime,
    changer: Changer,
) -> Result<usize, AppError> {
    db.run(move |conn| {
        pending::schedule_batch(
            conn,
            BatchScheduling {
                scheme: &batch.scheme,
                category: batch.category.as_str(),
                customers: &batch.customers,
                locked: batch.locked,
                effective_at,
                provenance: &changer.provenance,
                restriction: changer.restriction.as_deref(),
            },
        )
    })
    .await
}
