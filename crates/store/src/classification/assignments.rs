//! Putting customers into categories: one at a time, in batches, and by default,
//! through the one write path (`classification`). A customer row lock serialises
//! changes per customer.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use serde_json::Value as Json;

use crate::db::schema::{categories, customers};
use crate::db::{transaction, DbConnection};
use crate::domain::customer::CustomerCode;
use crate::domain::restriction::Restriction;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::access::visibility;
use crate::archive::customer_rows::{self as customer_store, CustomerRow, CustomerView};
use crate::catalogue::attribute_values::{self, EditMode};
use crate::catalogue::category_rows::CategoryRow;
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::classification::pending_rows;
pub use crate::classification::pending_rows::PendingRule;
use crate::classification::{self, AttributeCheck, ClassificationWrite, Mover, Moves, Provenance, Setting};
use crate::{id_list, lock_rows, LockMode, LockableTable};

/// The category `code` of `scheme`, if it can take customers now. A shared lock on it
/// keeps a concurrent request from giving it children until this transaction ends.
pub fn assignable_category(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    code: &str,
    field: &str,
) -> Result<CategoryRow, AppError> {
    let errors = |message: String| vec![FieldError::new(field, message)];
    if !scheme.active {
        return Err(AppError::validation(
            ErrorCode::SchemeInactiveInRequest,
            format!("scheme {} is inactive and takes no new assignments", scheme.code),
            errors("the scheme is inactive".into()),
        ));
    }
    let category: CategoryRow = categories::table
        .filter(categories::scheme_id.eq(scheme.id))
        .filter(categories::code.eq(code))
        .select(CategoryRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            AppError::validation(
                ErrorCode::CategoryNotFoundInRequest,
                format!("category {code} does not exist in scheme {}", scheme.code),
                errors(format!("no category {code} in scheme {}", scheme.code)),
            )
        })?;
    lock_rows(conn, LockableTable::Categories, &[category.id], LockMode::Shared)?;
    let children: i64 = categories::table
        .filter(categories::scheme_id.eq(scheme.id))
        .filter(categories::parent_code.eq(code))
        .count()
        .get_result(conn)?;
    if children > 0 {
        return Err(AppError::validation(
            ErrorCode::CategoryNotLeaf,
            format!("category {code} of scheme {} has {children} child categories; customers are assigned to leaf categories only", scheme.code),
            errors(format!("{code} is not a leaf category")),
        ));
    }
    if !category.active {
        return Err(AppError::validation(
            ErrorCode::CategoryInactive,
            format!("category {code} of scheme {} is inactive and takes no new assignments", scheme.code),
            errors(format!("{code} is inactive")),
        ));
    }
    Ok(category)
}

/// One customer put into a category of a scheme, as a request asks.
pub struct Assignment<'a> {
    pub customer: &'a str,
    pub scheme: &'a str,
    pub category: &'a str,
    /// `Some`: pin or unpin; `None`: keep the pin as it is.
    pub locked: Option<bool>,
    /// Values of the scheme's attributes given with the move.
    pub values: &'a BTreeMap<String, Json>,
    pub provenance: &'a Provenance,
    /// The customer's version the caller read (`If-Match`).
    pub expected: Option<i64>,
    pub restriction: Option<&'a Restriction>,
    pub pending: PendingRule,
}

/// `PUT /customers/{code}/categories/{scheme}`: assign or re-assign. With a
/// `restriction`, the category must be one it allows (403 `outside_restriction`).
pub fn assign(conn: &mut DbConnection, assignment: Assignment) -> Result<CustomerView, AppError> {
    let Assignment {
        customer: customer_code,
        scheme: scheme_code,
        category: category_code,
        locked,
        values,
        provenance,
        expected,
        restriction,
        pending,
    } = assignment;
    transaction(conn, |conn| {
        let customer = crate::access::visibility::locked_customer(conn, customer_code, expected, restriction)?;
        visibility::ensure_allowed(restriction, scheme_code, Some(category_code))?;
        let scheme = scheme_store::get(conn, scheme_code)?;
        let category = assignable_category(conn, &scheme, category_code, "category")?;
        pending_rows::settle_for_manual_change_of(conn, pending, scheme_code, &customer)?;
        let mut write = ClassificationWrite::default();
        let outcome = write.set(
            conn,
            &customer,
            Setting {
                scheme: &scheme,
                category: &category,
                locked,
                provenance,
                check: AttributeCheck::Reconcile(values),
            },
        )?;
        // Values given with a category the customer already has are an ordinary edit.
        if !outcome.category_changed
            && !values.is_empty()
            && attribute_values::edit_values(conn, &customer, values, EditMode::Merge)?
        {
            write.values_changed(customer.id);
        }
        write.finish(conn, true)?;
        customer_store::view_by_id(conn, customer.id)
    })
}

/// `DELETE /customers/{code}/categories/{scheme}`: unassign. A required scheme keeps its category.
pub fn unassign(
    conn: &mut DbConnection,
    customer_code: &str,
    scheme_code: &str,
    provenance: &Provenance,
    expected: Option<i64>,
    restriction: Option<&Restriction>,
    pending: PendingRule,
) -> Result<CustomerView, AppError> {
    transaction(conn, |conn| {
        let customer = crate::access::visibility::locked_customer(conn, customer_code, expected, restriction)?;
        visibility::ensure_allowed(restriction, scheme_code, None)?;
        let scheme = scheme_store::get(conn, scheme_code)?;
        if scheme.required && classification::current(conn, customer.id, scheme.id)?.is_some() {
            return Err(AppError::new(
                ErrorCode::CategoryRequired,
                format!("scheme {scheme_code} is required, so customer {customer_code} must keep a category in it; re-assign instead"),
            ));
        }
        pending_rows::settle_for_manual_change_of(conn, pending, scheme_code, &customer)?;
        let mut write = ClassificationWrite::default();
        write.clear(conn, &customer, &scheme, provenance)?;
        write.finish(conn, true)?;
        customer_store::view_by_id(conn, customer.id)
    })
}

/// The most customers one batch takes.
pub const MAX_BATCH: usize = 10_000;
/// Customers per statement inside a batch.
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub requested: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// Many customers put into one category of a scheme.
pub struct Batch<'a> {
    pub scheme: &'a str,
    pub category: &'a str,
    pub customers: &'a [CustomerCode],
    pub locked: Option<bool>,
    pub pending: PendingRule,
}

/// `POST /assignments/batch`: all customers move, or none does. With a
/// `restriction`, customers outside it count as unknown, and the category must be
/// one it allows.
pub fn assign_batch(
    conn: &mut DbConnection,
    batch: Batch,
    provenance: &Provenance,
    restriction: Option<&Restriction>,
) -> Result<BatchOutcome, AppError> {
    let Batch { scheme: scheme_code, category: category_code, customers: codes, locked, pending } = batch;
    transaction(conn, |conn| {
        visibility::ensure_allowed(restriction, scheme_code, Some(category_code))?;
        let scheme = scheme_in_body(conn, scheme_code)?;
        let category = assignable_category(conn, &scheme, category_code, "category")?;
        let ids = customer_ids(conn, codes, restriction)?;
        let customer_ids: Vec<i64> = ids.values().copied().collect();
        let current = lock_in_scheme(conn, scheme.id, &customer_ids)?;
        pending_rows::settle_for_manual_change(conn, pending, scheme_code, &customer_ids)?;

        let mut movers = Vec::new();
        let mut relocked = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for code in codes {
            let id = ids[code.as_str()];
            if !seen.insert(id) {
                continue;
            }
            match current.get(&id) {
                Some((from, was_locked)) if *from == category.code => {
                    if locked.is_some_and(|lock| lock != *was_locked) {
                        relocked.push(id);
                    }
                }
                from => {
                    movers.push(Mover { id, code: code.as_str().to_string(), from: from.map(|(code, _)| code.clone()) })
                }
            }
        }
        let members: Vec<(i64, &str)> = movers.iter().map(|m| (m.id, m.code.as_str())).collect();
        let plan = attribute_values::plan_move(conn, &scheme, Some(&category.code), &members, &BTreeMap::new())?
            .refusing_rejections()?;
        let mut write = ClassificationWrite::default();
        let moves = Moves { scheme: &scheme, to: &category, movers: &movers, locked, provenance };
        write.move_customers(conn, moves, plan)?;
        if let Some(lock) = locked {
            write.repin(conn, &scheme, &relocked, lock)?;
        }
        let changed = write.customers_changed();
        write.finish(conn, true)?;
        Ok(BatchOutcome { requested: seen.len(), changed, unchanged: seen.len() - changed })
    })
}

/// The scheme a request body names (`scheme`): 422 `scheme_not_found` when it does not exist.
pub(crate) fn scheme_in_body(conn: &mut DbConnection, scheme_code: &str) -> Result<SchemeRow, AppError> {
    scheme_store::find(conn, scheme_code)?.ok_or_else(|| {
        AppError::validation(
            ErrorCode::SchemeNotFoundInRequest,
            format!("scheme {scheme_code} does not exist"),
            vec![FieldError::new("scheme", format!("no scheme {scheme_code}"))],
        )
    })
}

/// Customer ids by code; every unknown code, and with a `restriction` every customer
/// outside it, is listed in one 422 `customers_not_found`.
pub fn customer_ids(
    conn: &mut DbConnection,
    codes: &[CustomerCode],
    restriction: Option<&Restriction>,
) -> Result<HashMap<String, i64>, AppError> {
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(codes.len());
    for chunk in codes.chunks(CHUNK) {
        let wanted = customers::table.filter(customers::code.eq_any(chunk.iter().map(CustomerCode::as_str)));
        if restriction.is_some() {
            for row in wanted.select(CustomerRow::as_select()).load::<CustomerRow>(conn)? {
                if visibility::admits_row(restriction, &row)? {
                    ids.insert(row.code, row.id);
                }
            }
        } else {
            let found: Vec<(i64, String)> = wanted.select((customers::id, customers::code)).load(conn)?;
            ids.extend(found.into_iter().map(|(id, code)| (code, id)));
        }
    }
    let missing: Vec<FieldError> = codes
        .iter()
        .enumerate()
        .filter(|(_, code)| !ids.contains_key(code.as_str()))
        .map(|(i, code)| FieldError::new(format!("customers[{i}]"), format!("customer {code} does not exist")))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::validation(
            ErrorCode::CustomersNotFound,
            format!("{} of {} customers do not exist; nothing was changed", missing.len(), codes.len()),
            missing,
        ));
    }
    Ok(ids)
}

/// A customer's row as `lock_in_scheme` reads it.
#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    category_code: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
    locked: Option<bool>,
}

/// Locks these customers for the rest of the transaction, in id order (MySQL; SQLite
/// has one writer), and reads their current category and pin in a scheme, in one
/// statement per thousand.
pub fn lock_in_scheme(
    conn: &mut DbConnection,
    scheme_id: i64,
    customer_ids: &[i64],
) -> Result<HashMap<i64, (String, bool)>, AppError> {
    let mut ids = customer_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let lock = if matches!(conn, DbConnection::Mysql(_)) { " FOR UPDATE" } else { "" };
    let mut current = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let list = id_list(chunk);
        let rows: Vec<Held> = diesel::sql_query(format!(
            "SELECT c.id AS id, cc.category_code AS category_code, cc.locked AS locked FROM customers c \
             LEFT JOIN customer_categories cc ON cc.customer_id = c.id AND cc.scheme_id = {scheme_id} WHERE c.id IN ({list}) ORDER BY c.id{lock}"
        ))
        .load(conn)?;
        current.extend(
            rows.into_iter().filter_map(|row| Some((row.id, (row.category_code?, row.locked.unwrap_or(false))))),
        );
    }
    Ok(current)
}
