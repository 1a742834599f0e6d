//! A category's row and the checks made on it alone, below both the catalogue's
//! writes (`categories`) and the schemes that name a default category.

use diesel::prelude::*;

use crate::db::schema::categories;
use crate::db::DbConnection;
use crate::domain::category::CategoryCode;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = categories)]
pub struct CategoryRow {
    pub id: i64,
    pub scheme_id: i64,
    pub code: String,
    pub parent_code: String,
    pub level: i32,
    pub name: String,
    pub description: Option<String>,
    pub sort_order: i32,
    pub active: bool,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    /// In an ordered scheme, higher is better.
    #[diesel(column_name = tier_rank)]
    pub rank: Option<i32>,
}

pub fn find_row(conn: &mut DbConnection, scheme_id: i64, code: &str) -> Result<Option<CategoryRow>, AppError> {
    Ok(categories::table
        .filter(categories::scheme_id.eq(scheme_id))
        .filter(categories::code.eq(code))
        .select(CategoryRow::as_select())
        .first(conn)
        .optional()?)
}

pub(crate) fn child_count(conn: &mut DbConnection, scheme_id: i64, code: &str) -> Result<i64, AppError> {
    Ok(categories::table
        .filter(categories::scheme_id.eq(scheme_id))
        .filter(categories::parent_code.eq(code))
        .count()
        .get_result(conn)?)
}

/// A scheme's default category must exist, be active and be a leaf, since new
/// customers are assigned to it.
pub fn ensure_assignable_default(conn: &mut DbConnection, scheme_id: i64, code: &CategoryCode) -> Result<(), AppError> {
    let field = |message: &str| vec![FieldError::new("default_category", message)];
    let row = find_row(conn, scheme_id, code.as_str())?.ok_or_else(|| {
        AppError::validation(
            ErrorCode::CategoryNotFoundInRequest,
            format!("default category {code} does not exist in this scheme"),
            field("must be an existing category"),
        )
    })?;
    if child_count(conn, scheme_id, code.as_str())? > 0 {
        return Err(AppError::validation(
            ErrorCode::CategoryNotLeaf,
            format!("default category {code} has child categories"),
            field("must be a leaf category"),
        ));
    }
    if !row.active {
        return Err(AppError::validation(
            ErrorCode::CategoryInactive,
            format!("default category {code} is inactive"),
            field("must be an active category"),
        ));
    }
    Ok(())
}
