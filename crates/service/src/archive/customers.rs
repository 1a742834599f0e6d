//! Customers: the list, one customer, its changes and its history.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::db::Db;
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::access::visibility;
use crate::store::archive::customer_rows::{self, CustomerView};
use crate::store::archive::customer_search::{self, ListPage, ListQuery};
use crate::store::archive::customers::{self as store, CustomerChanges, NewCustomer};
use crate::store::archive::merge;
use crate::store::classification::history::{self, HistoryCursor, HistoryRow};

/// Who asks: the actor recorded on what changes, and the subtree a restricted key is
/// held to.
#[derive(Clone)]
pub struct Asker {
    pub actor: String,
    pub restriction: Option<Arc<Restriction>>,
}

/// A page of the list; `query.filters` already holds the asker's restriction.
pub async fn list(db: &Db, query: ListQuery) -> Result<ListPage, AppError> {
    db.run(move |conn| customer_search::list(conn, &query)).await
}

pub async fn create(db: &Db, new: NewCustomer, asker: Asker) -> Result<CustomerView, AppError> {
    db.run(move |conn| store::create(conn, &new, &asker.actor, asker.restriction.as_deref())).await
}

/// The customer, or the one it was merged into (as `customer_merged`).
pub async fn get(db: &Db, code: String, restriction: Option<Arc<Restriction>>) -> Result<CustomerView, AppError> {
    db.run(move |conn| merge::view_or_merged(conn, &code, restriction.as_deref())).await
}

pub async fn update(
    db: &Db,
    code: String,
    changes: CustomerChanges,
    expected: Option<i64>,
    restriction: Option<Arc<Restriction>>,
) -> Result<CustomerView, AppError> {
    db.run(move |conn| store::update(conn, &code, &changes, expected, restriction.as_deref())).await
}

pub async fn replace_attributes(
    db: &Db,
    code: String,
    values: BTreeMap<String, serde_json::Value>,
    expected: Option<i64>,
    restriction: Option<Arc<Restriction>>,
) -> Result<CustomerView, AppError> {
    db.run(move |conn| store::replace_attributes(conn, &code, &values, expected, restriction.as_deref())).await
}

pub async fn delete(db: &Db, code: String, expected: Option<i64>, asker: Asker) -> Result<(), AppError> {
    db.run(move |conn| store::delete(conn, &code, expected, &asker.actor, asker.restriction.as_deref())).await
}

/// Which page of a customer's history.
pub struct HistoryPage {
    pub scheme: Option<String>,
    pub after: Option<HistoryCursor>,
    pub limit: i64,
}

/// A page of the customer's history, newest first; it stays readable after the
/// customer is deleted, but not to a restricted key, which reads only the history of
/// customers it can see now. `customer_not_found` when there is neither customer nor
/// history.
pub async fn history(
    db: &Db,
    code: String,
    page: HistoryPage,
    restriction: Option<Arc<Restriction>>,
) -> Result<Vec<HistoryRow>, AppError> {
    db.run(move |conn| {
        visibility::ensure_visible(conn, restriction.as_deref(), &code)?;
        let rows = history::page(conn, &code, page.scheme.as_deref(), page.after.as_ref(), page.limit)?;
        if rows.is_empty()
            && page.after.is_none()
            && customer_rows::find(conn, &code)?.is_none()
            && !history::exists_for(conn, &code)?
        {
            return Err(customer_rows::customer_not_found(&code));
        }
        Ok(rows)
    })
    .await
}
