//! What a key restricted by category (记录级数据权限) may see and change, enforced
//! where customers are read: as an SQL condition on a page's rows, and as a check of
//! one customer's classification snapshot on point reads and writes.

use crate::db::sql::{Bind, Fragment};
use crate::db::DbConnection;
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorCode};

use crate::archive::customer_rows::{self, AssignmentView, CustomerRow, CustomerView};

/// A restriction as its holder's column stores it (JSON, or NULL for none).
pub fn stored(column: Option<&str>, holder: impl std::fmt::Display) -> Result<Option<Restriction>, AppError> {
    column
        .map(|text| {
            Restriction::stored(text).ok_or_else(|| AppError::corrupt(format!("{holder} holds a corrupt restriction")))
        })
        .transpose()
}

/// A restriction as a holder's column stores it.
pub fn column(restriction: Option<&Restriction>) -> Option<String> {
    restriction.map(|restriction| restriction.to_json().to_string())
}

/// The customer whose id is `id_column` is inside: in every restricted scheme it is a
/// member (`category_members`, which lists each ancestor too) of a subtree's root.
/// A primary-key probe per scheme.
pub fn condition(restriction: &Restriction, id_column: &str) -> Fragment {
    let mut sql = Fragment::new("(");
    for (index, (scheme, roots)) in restriction.schemes().enumerate() {
        if index > 0 {
            sql.push(" AND ");
        }
        sql.push(&format!(
            "EXISTS (SELECT 1 FROM category_members rm JOIN schemes rs ON rs.id = rm.scheme_id WHERE rm.customer_id = {id_column} AND rs.code = "
        ));
        sql.bind(Bind::Text(scheme.to_string())).push(" AND rm.category_code IN (");
        sql.bind_texts(roots.iter().map(|root| root.as_str())).push("))");
    }
    sql.push(")");
    sql
}

fn admits(restriction: Option<&Restriction>, assignments: &[AssignmentView]) -> bool {
    restriction.is_none_or(|restriction| {
        restriction.admits(assignments.iter().map(|a| (a.scheme.as_str(), a.category.as_str())))
    })
}

/// The customer as the caller may see it: one outside its restriction answers 404,
/// exactly as one that does not exist.
pub fn visible(restriction: Option<&Restriction>, view: CustomerView) -> Result<CustomerView, AppError> {
    if admits(restriction, &view.assignments) {
        Ok(view)
    } else {
        Err(customer_rows::customer_not_found(&view.row.code))
    }
}

/// Whether the caller may see this customer row.
pub fn admits_row(restriction: Option<&Restriction>, row: &CustomerRow) -> Result<bool, AppError> {
    Ok(restriction.is_none() || admits(restriction, &customer_rows::assignments_of(row)?))
}

/// 404 unless the caller may see the customer `code`.
pub fn ensure_visible(conn: &mut DbConnection, restriction: Option<&Restriction>, code: &str) -> Result<(), AppError> {
    if restriction.is_some() {
        visible(restriction, customer_rows::view(conn, code)?)?;
    }
    Ok(())
}

pub fn outside_restriction(detail: String) -> AppError {
    AppError::new(ErrorCode::OutsideRestriction, detail)
}

/// 403 `outside_restriction` unless a customer may be put in `category` of `scheme`
/// (`None`: left unclassified there) by the caller.
pub fn ensure_allowed(restriction: Option<&Restriction>, scheme: &str, category: Option<&str>) -> Result<(), AppError> {
    let Some(restriction) = restriction else { return Ok(()) };
    match category {
        Some(category) if restriction.allows(scheme, category) => Ok(()),
        None if !restriction.restricts(scheme) => Ok(()),
        Some(category) => Err(outside_restriction(format!(
            "category {category} of scheme {scheme} is outside the subtrees this key may use"
        ))),
        None => {
            Err(outside_restriction(format!("this key may not leave a customer without a category of scheme {scheme}")))
        }
    }
}

/// After a write in its transaction: 403 `outside_restriction` (and so a rollback)
/// when the customer ended up outside what the caller may see.
pub fn ensure_still_inside(restriction: Option<&Restriction>, view: &CustomerView) -> Result<(), AppError> {
    if admits(restriction, &view.assignments) {
        Ok(())
    } else {
        Err(outside_restriction(format!(
            "customer {} would end up outside the categories this key may use",
            view.row.code
        )))
    }
}

/// Locks the customer `code` for a change by a caller with `restriction` (one it may
/// not see answers 404, as if it did not exist), then checks the caller's `If-Match`.
pub(crate) fn locked_customer(
    conn: &mut DbConnection,
    code: &str,
    expected: Option<i64>,
    restriction: Option<&Restriction>,
) -> Result<CustomerRow, AppError> {
    let current =
        crate::lock_current(conn, crate::LockableTable::Customers, None, |conn| customer_rows::get_row(conn, code))?;
    if !admits_row(restriction, &current)? {
        return Err(customer_rows::customer_not_found(code));
    }
    crate::check_version(expected, current.version)?;
    Ok(current)
}
