//! Assignments (客户分类指定) made by a person, through the one write path.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::db::Db;
use crate::domain::category::CategoryCode;
use crate::domain::customer::CustomerCode;
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::archive::customer_rows::CustomerView;
use crate::store::classification::assignments::{self as store, Assignment, BatchOutcome};
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

pub async fn assign(db: &Db, placement: Placement, changer: Changer) -> Result<CustomerView, AppError> {
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
    changer: Changer,
) -> Result<CustomerView, AppError> {
    db.run(move |conn| {
        store::unassign(conn, &customer, &scheme, &changer.provenance, expected, changer.restriction.as_deref())
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

pub async fn assign_batch(db: &Db, batch: BatchPlacement, changer: Changer) -> Result<BatchOutcome, AppError> {
    db.run(move |conn| {
        store::assign_batch(
            conn,
            &batch.scheme,
            batch.category.as_str(),
            &batch.customers,
            batch.locked,
            &changer.provenance,
            changer.restriction.as_deref(),
        )
    })
    .await
}
