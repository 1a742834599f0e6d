//! Attribute definitions on categories (分类属性).

use crate::db::Db;
use crate::domain::attribute::{Definition, DefinitionDraft};
use crate::error::AppError;
use crate::store::catalogue::attributes::{self as store, DefinitionView};

/// Where an attribute is defined: scheme, category, key.
pub struct DefinitionAt {
    pub scheme: String,
    pub category: String,
    pub key: String,
}

pub async fn list(db: &Db, scheme: String, category: String, effective: bool) -> Result<Vec<DefinitionView>, AppError> {
    db.run(move |conn| store::list(conn, &scheme, &category, effective)).await
}

pub async fn get(db: &Db, at: DefinitionAt) -> Result<DefinitionView, AppError> {
    db.run(move |conn| store::get(conn, &at.scheme, &at.category, &at.key)).await
}

pub async fn create(
    db: &Db,
    scheme: String,
    category: String,
    definition: Definition,
    force: bool,
) -> Result<DefinitionView, AppError> {
    db.run(move |conn| store::create(conn, &scheme, &category, definition, force)).await
}

/// `change` turns the stored definition into the new one; it runs inside the write's
/// transaction, so that it sees what it replaces.
pub async fn update<F>(
    db: &Db,
    at: DefinitionAt,
    change: F,
    expected: Option<i64>,
    force: bool,
) -> Result<DefinitionView, AppError>
where
    F: Fn(DefinitionDraft) -> Result<Definition, AppError> + Send + 'static,
{
    db.run(move |conn| store::update(conn, &at.scheme, &at.category, &at.key, change, expected, force)).await
}

pub async fn delete(db: &Db, at: DefinitionAt, expected: Option<i64>, force: bool) -> Result<(), AppError> {
    db.run(move |conn| store::delete(conn, &at.scheme, &at.category, &at.key, expected, force)).await
}
