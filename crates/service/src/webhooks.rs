//! Webhook endpoints as their owners manage them: subscribe, change, rotate the
//! secret, replay from a cursor, read the deliveries. A restricted key manages the
//! endpoints it created only; to it the others do not exist.

use std::sync::Arc;

use crate::db::{Db, DbConnection};
use crate::domain::event::Cursor;
use crate::domain::restriction::Restriction;
use crate::domain::webhook::{WebhookSecret, WebhookUrl};
use crate::error::AppError;
use crate::store::feed::webhooks::{self as store, DeliveryRow, NewWebhook, WebhookChange, WebhookRow};

/// The key that manages endpoints.
#[derive(Clone)]
pub struct Manager {
    pub name: String,
    pub restriction: Option<Arc<Restriction>>,
}

impl Manager {
    pub fn may_manage(&self, row: &WebhookRow) -> bool {
        self.restriction.is_none() || row.created_by == self.name
    }

    /// The endpoint `id`, if this key may manage it (else 404, as if it did not exist).
    fn managed(&self, conn: &mut DbConnection, id: i64) -> Result<WebhookRow, AppError> {
        let row = store::get(conn, id)?;
        if self.may_manage(&row) {
            Ok(row)
        } else {
            Err(store::webhook_not_found(id))
        }
    }

    /// Runs `work` if this key may manage endpoint `id` (else 404 `webhook_not_found`).
    async fn on_managed<T: Send + 'static>(
        self,
        db: &Db,
        id: i64,
        work: impl FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        db.run(move |conn| {
            self.managed(conn, id)?;
            work(conn)
        })
        .await
    }
}

/// A new endpoint; it is sent what its creator's restriction lets it see.
pub struct Subscription {
    pub url: WebhookUrl,
    pub description: Option<String>,
    /// Comma-separated event types; `None`: every type.
    pub types: Option<String>,
    pub secret: WebhookSecret,
}

pub async fn create(db: &Db, manager: Manager, new: Subscription) -> Result<WebhookRow, AppError> {
    db.run(move |conn| {
        let endpoint = NewWebhook {
            url: &new.url,
            description: new.description.as_deref(),
            types: new.types.as_deref(),
            secret: &new.secret,
            created_by: &manager.name,
            restriction: manager.restriction.as_deref(),
        };
        store::create(conn, endpoint)
    })
    .await
}

/// Every endpoint the key may manage.
pub async fn list(db: &Db, manager: Manager) -> Result<Vec<WebhookRow>, AppError> {
    let rows = db.run(store::list).await?;
    Ok(rows.into_iter().filter(|row| manager.may_manage(row)).collect())
}

pub async fn get(db: &Db, manager: Manager, id: i64) -> Result<WebhookRow, AppError> {
    db.run(move |conn| manager.managed(conn, id)).await
}

pub async fn update(
    db: &Db,
    manager: Manager,
    id: i64,
    expected: Option<i64>,
    change: WebhookChange,
) -> Result<WebhookRow, AppError> {
    let actor = manager.name.clone();
    manager.on_managed(db, id, move |conn| store::update(conn, id, expected, change, &actor)).await
}

pub async fn delete(db: &Db, manager: Manager, id: i64, expected: Option<i64>) -> Result<(), AppError> {
    manager.on_managed(db, id, move |conn| store::delete(conn, id, expected)).await
}

pub async fn rotate_secret(
    db: &Db,
    manager: Manager,
    id: i64,
    expected: Option<i64>,
    secret: WebhookSecret,
) -> Result<WebhookRow, AppError> {
    manager.on_managed(db, id, move |conn| store::rotate_secret(conn, id, expected, &secret)).await
}

/// Sends the endpoint the events from `cursor` on again.
pub async fn replay(
    db: &Db,
    manager: Manager,
    id: i64,
    expected: Option<i64>,
    cursor: Cursor,
) -> Result<WebhookRow, AppError> {
    manager.on_managed(db, id, move |conn| store::replay(conn, id, expected, cursor)).await
}

/// Up to `limit` deliveries before the one numbered `before`, newest first.
pub async fn deliveries(
    db: &Db,
    manager: Manager,
    id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, AppError> {
    manager.on_managed(db, id, move |conn| store::deliveries(conn, id, before, limit)).await
}
