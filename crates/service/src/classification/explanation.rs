//! Why a customer stands where it does in a scheme (`store::classification::explanation`).

use std::sync::Arc;

use chrono::NaiveDateTime;

use crate::db::Db;
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::classification::explanation::{self as store, Explanation};

pub async fn explain(
    db: &Db,
    customer: String,
    scheme: String,
    restriction: Option<Arc<Restriction>>,
    clock_now: NaiveDateTime,
) -> Result<Explanation, AppError> {
    db.run(move |conn| store::explain(conn, &customer, &scheme, restriction.as_deref(), clock_now)).await
}
