//! Access: the API keys, and the readiness of the database behind them.

use std::time::Duration;

use crate::db::Db;
use crate::domain::api_key::{ApiKeySecret, KeyName, Scope};
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorKind};
use crate::store::access::api_keys::{self as store, ApiKeyRow};

/// Every key, revoked ones included.
pub async fn list(db: &Db) -> Result<Vec<ApiKeyRow>, AppError> {
    db.run(store::list).await
}

/// A new key; only its secret's digest is stored.
pub struct NewKey {
    pub name: KeyName,
    pub scope: Scope,
    pub secret: ApiKeySecret,
    pub restriction: Option<Restriction>,
}

pub async fn create(db: &Db, key: NewKey) -> Result<ApiKeyRow, AppError> {
    db.run(move |conn| store::create(conn, &key.name, key.scope, &key.secret, key.restriction.as_ref())).await
}

pub async fn revoke(db: &Db, id: i64) -> Result<(), AppError> {
    db.run(move |conn| store::revoke(conn, id)).await
}

/// The key whose secret has this digest, unless it is revoked.
pub async fn find_active(db: &Db, digest: String) -> Result<Option<ApiKeyRow>, AppError> {
    db.run(move |conn| store::find_active(conn, &digest)).await
}

/// Whether the database answers within `within`, whatever it does (down, hung, or
/// every connection busy): `database_unavailable` when it does not.
pub async fn ready(db: &Db, within: Duration) -> Result<(), AppError> {
    db.run_within(within, Some(within), |conn| conn.ping().map_err(AppError::from)).await.map_err(|e| {
        if e.kind() == ErrorKind::Unavailable {
            AppError::unavailable(format!("not ready: {}", e.detail))
        } else {
            e
        }
    })
}
