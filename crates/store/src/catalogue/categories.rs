use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;

use crate::db::schema::{categories, customer_categories};
use crate::db::{now, transaction, DbConnection};
use crate::domain::category::{CategoryCode, CategoryName, PlacedCode};
use crate::domain::event::EventType;
use crate::domain::history::Direction;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::catalogue::category_rows::{child_count, find_row, CategoryRow};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::feed::events;
use crate::reporting::counts;
use crate::{lock_current, lock_row, LockableTable};

/// A category with what is derived from the hierarchy and the assignments.
#[derive(Debug, Clone)]
pub struct CategoryView {
    pub scheme: String,
    pub row: CategoryRow,
    pub is_leaf: bool,
    pub customer_count: i64,
    pub subtree_customer_count: i64,
}

impl CategoryView {
    pub fn parent_code(&self) -> Option<&str> {
        Some(self.row.parent_code.as_str()).filter(|p| !p.is_empty())
    }
}

pub struct NewCategory {
    pub code: CategoryCode,
    pub name: CategoryName,
    pub description: Option<String>,
    pub sort_order: i32,
    pub active: bool,
    pub rank: Option<i32>,
}

#[derive(Default)]
pub struct CategoryChanges {
    pub name: Option<CategoryName>,
    pub description: Option<Option<String>>,
    pub sort_order: Option<i32>,
    pub active: Option<bool>,
    pub rank: Option<Option<i32>>,
}

/// Ranks belong to ordered schemes only.
fn ensure_rank_allowed(scheme: &SchemeRow, rank: Option<i32>) -> Result<(), AppError> {
    match rank {
        Some(_) if !scheme.ordered => Err(AppError::validation(
            ErrorCode::SchemeNotOrdered,
            format!(
                "scheme {} is not ordered, so its categories have no rank; PATCH it with \"ordered\": true first",
                scheme.code
            ),
            vec![FieldError::new("rank", "only categories of an ordered scheme have a rank")],
        )),
        _ => Ok(()),
    }
}

/// The rank of each category of `scheme` by code, when the scheme is ordered (none otherwise).
pub fn ranks(conn: &mut DbConnection, scheme: &SchemeRow) -> Result<Ranks, AppError> {
    if !scheme.ordered {
        return Ok(Ranks::default());
    }
    let ranks = categories::table
        .filter(categories::scheme_id.eq(scheme.id))
        .filter(categories::tier_rank.is_not_null())
        .select((categories::code, categories::tier_rank))
        .load::<(String, Option<i32>)>(conn)?;
    Ok(Ranks(ranks.into_iter().filter_map(|(code, rank)| Some((code, rank?))).collect()))
}

/// Category ranks of one scheme, to tell the direction of a move.
#[derive(Debug, Default)]
pub struct Ranks(HashMap<String, i32>);

impl Ranks {
    pub fn direction(&self, from: Option<&str>, to: Option<&str>) -> Direction {
        let rank = |code: &str| self.0.get(code).copied();
        Direction::of(from.map(rank), to.map(rank))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i32)> {
        self.0.iter().map(|(code, rank)| (code.as_str(), *rank))
    }
}

/// The codes from the root down to `code` itself: the categories whose members
/// `code`'s customers are, and whose attribute definitions they inherit.
pub fn path_codes(scheme: &SchemeRow, code: &str) -> Result<Vec<String>, AppError> {
    let code = CategoryCode::parse("category", code)
        .map_err(|_| AppError::corrupt(format!("corrupt category code {code}")))?;
    let mut codes: Vec<String> =
        code.ancestors(&scheme.code_rule).into_iter().map(|c| c.as_str().to_string()).collect();
    codes.push(code.as_str().to_string());
    Ok(codes)
}

pub fn category_not_found(scheme: &str, code: &str) -> AppError {
    AppError::new(ErrorCode::CategoryNotFound, format!("category {code} does not exist in scheme {scheme}"))
}

fn direct_customer_count(conn: &mut DbConnection, scheme_id: i64, code: &str) -> Result<i64, AppError> {
    Ok(customer_categories::table
        .filter(customer_categories::scheme_id.eq(scheme_id))
        .filter(customer_categories::category_code.eq(code))
        .count()
        .get_result(conn)?)
}

/// A category with its customers and its subtree's, from the counters the
/// distribution report reads (`direct`: each category's own customers).
pub(crate) fn counted_view(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    row: CategoryRow,
    direct: &HashMap<String, i64>,
) -> Result<CategoryView, AppError> {
    let is_leaf = child_count(conn, scheme.id, &row.code)? == 0;
    let customer_count = direct.get(&row.code).copied().unwrap_or(0);
    let upper = crate::prefix_upper_bound(&row.code);
    let subtree_customer_count = direct
        .iter()
        .filter(|(other, _)| other.as_str() >= row.code.as_str() && other.as_str() < upper.as_str())
        .map(|(_, count)| count)
        .sum();
    Ok(CategoryView { scheme: scheme.code.clone(), row, is_leaf, customer_count, subtree_customer_count })
}

/// A category as a write left it, counted from the counters.
fn written(conn: &mut DbConnection, scheme_code: &str, code: &str) -> Result<CategoryView, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let row = find_row(conn, scheme.id, code)?.ok_or_else(|| category_not_found(scheme_code, code))?;
    let direct = counts::of_schemes(conn, scheme.id, None)?.first;
    counted_view(conn, &scheme, row, &direct)
}

pub fn create(conn: &mut DbConnection, scheme_code: &str, new: NewCategory) -> Result<CategoryView, AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        lock_row(conn, LockableTable::Schemes, scheme.id)?;
        let scheme = scheme_store::get(conn, scheme_code)?;
        ensure_rank_allowed(&scheme, new.rank)?;
        let placed = PlacedCode::place(new.code.clone(), &scheme.code_rule).map_err(|off| {
            AppError::validation(
                ErrorCode::InvalidCodeLength,
                format!(
                    "code {} has {} characters, but the code rule {} of scheme {} allows only {:?}",
                    new.code,
                    new.code.as_str().len(),
                    scheme.code_rule,
                    scheme.code,
                    off.allowed_lengths
                ),
                vec![FieldError::new("code", format!("length must be one of {:?}", off.allowed_lengths))],
            )
        })?;
        if find_row(conn, scheme.id, new.code.as_str())?.is_some() {
            return Err(duplicate_code(scheme_code, new.code.as_str()));
        }
        if let Some(parent_code) = &placed.parent {
            let parent = find_row(conn, scheme.id, parent_code.as_str())?.ok_or_else(|| {
                AppError::validation(
                    ErrorCode::ParentNotFound,
                    format!("the parent {parent_code} of category {} does not exist in scheme {scheme_code}", new.code),
                    vec![FieldError::new("code", format!("parent category {parent_code} must exist first"))],
                )
            })?;
            lock_row(conn, LockableTable::Categories, parent.id)?;
            let holders = direct_customer_count(conn, scheme.id, parent_code.as_str())?;
            if holders > 0 {
                return Err(AppError::new(
                    ErrorCode::CategoryInUse,
                    format!("category {parent_code} holds {holders} customers, so it cannot get child categories; move them first"),
                ));
            }
            if scheme.default_category.as_deref() == Some(parent_code.as_str()) {
                return Err(AppError::new(
                    ErrorCode::CategoryIsDefault,
                    format!(
                        "category {parent_code} is the default category of scheme {scheme_code} and must stay a leaf"
                    ),
                ));
            }
        }
        let name = new.name.clone().into_inner();
        let parent_code = placed.parent.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default();
        ensure_unique_sibling_name(conn, scheme.id, &parent_code, &name, None)?;
        let at = now();
        diesel::insert_into(categories::table)
            .values((
                categories::scheme_id.eq(scheme.id),
                categories::code.eq(new.code.as_str()),
                categories::parent_code.eq(&parent_code),
                categories::level.eq(placed.level as i32),
                categories::name.eq(&name),
                categories::description.eq(&new.description),
                categories::sort_order.eq(new.sort_order),
                categories::active.eq(new.active),
                categories::tier_rank.eq(new.rank),
                categories::version.eq(1),
                categories::created_at.eq(at),
                categories::updated_at.eq(at),
            ))
            .execute(conn)
            .map_err(|e| unique_violation_to_conflict(e, scheme_code, new.code.as_str(), &name))?;
        events::record_one(
            conn,
            EventType::CategoryCreated,
            json!({"scheme": scheme_code, "category": new.code.as_str()}),
        )?;
        written(conn, scheme_code, new.code.as_str())
    })
}

fn duplicate_code(scheme: &str, code: &str) -> AppError {
    AppError::new(ErrorCode::DuplicateCode, format!("category {code} already exists in scheme {scheme}"))
}

fn duplicate_name(name: &str) -> AppError {
    AppError::new(ErrorCode::DuplicateName, format!("a sibling category is already named {name:?}"))
}

/// A unique index that fired under a race tells which rule was broken by its name.
fn unique_violation_to_conflict(error: diesel::result::Error, scheme: &str, code: &str, name: &str) -> AppError {
    match &error {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info) => {
            if info.message().contains("name") {
                duplicate_name(name)
            } else {
                duplicate_code(scheme, code)
            }
        }
        _ => error.into(),
    }
}

fn ensure_unique_sibling_name(
    conn: &mut DbConnection,
    scheme_id: i64,
    parent_code: &str,
    name: &str,
    except_id: Option<i64>,
) -> Result<(), AppError> {
    let clash: Option<i64> = categories::table
        .filter(categories::scheme_id.eq(scheme_id))
        .filter(categories::parent_code.eq(parent_code))
        .filter(categories::name.eq(name))
        .filter(categories::id.ne(except_id.unwrap_or(-1)))
        .select(categories::id)
        .first(conn)
        .optional()?;
    match clash {
        Some(_) => Err(duplicate_name(name)),
        None => Ok(()),
    }
}

pub fn update(
    conn: &mut DbConnection,
    scheme_code: &str,
    code: &str,
    changes: &CategoryChanges,
    expected: Option<i64>,
) -> Result<CategoryView, AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        let current = lock_current(conn, LockableTable::Categories, expected, |conn| {
            find_row(conn, scheme.id, code)?.ok_or_else(|| category_not_found(scheme_code, code))
        })?;
        if let Some(rank) = changes.rank {
            ensure_rank_allowed(&scheme, rank)?;
        }
        let name = changes.name.clone().map(CategoryName::into_inner).unwrap_or(current.name.clone());
        if name != current.name {
            ensure_unique_sibling_name(conn, scheme.id, &current.parent_code, &name, Some(current.id))?;
        }
        if changes.active == Some(false) && scheme.default_category.as_deref() == Some(code) {
            return Err(AppError::new(
                ErrorCode::CategoryIsDefault,
                format!("category {code} is the default category of scheme {scheme_code}; choose another default before deactivating it"),
            ));
        }
        let updated = diesel::update(
            categories::table.filter(categories::id.eq(current.id)).filter(categories::version.eq(current.version)),
        )
        .set((
            categories::name.eq(&name),
            categories::description.eq(changes.description.clone().unwrap_or(current.description.clone())),
            categories::sort_order.eq(changes.sort_order.unwrap_or(current.sort_order)),
            categories::active.eq(changes.active.unwrap_or(current.active)),
            categories::tier_rank.eq(changes.rank.unwrap_or(current.rank)),
            categories::version.eq(current.version + 1),
            categories::updated_at.eq(now()),
        ))
        .execute(conn)
        .map_err(|e| unique_violation_to_conflict(e, scheme_code, code, &name))?;
        if updated == 0 {
            return Err(AppError::concurrent_update());
        }
        events::record_one(
            conn,
            EventType::CategoryUpdated,
            json!({"scheme": scheme_code, "category": code, "version": current.version + 1}),
        )?;
        written(conn, scheme_code, code)
    })
}

pub fn delete(conn: &mut DbConnection, scheme_code: &str, code: &str, expected: Option<i64>) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        let current = lock_current(conn, LockableTable::Categories, expected, |conn| {
            find_row(conn, scheme.id, code)?.ok_or_else(|| category_not_found(scheme_code, code))
        })?;
        let children = child_count(conn, scheme.id, code)?;
        if children > 0 {
            return Err(AppError::new(
                ErrorCode::CategoryInUse,
                format!("category {code} has {children} child categories; delete them first"),
            ));
        }
        let holders = direct_customer_count(conn, scheme.id, code)?;
        if holders > 0 {
            return Err(AppError::new(
                ErrorCode::CategoryInUse,
                format!("category {code} holds {holders} customers; move them first"),
            ));
        }
        if scheme.default_category.as_deref() == Some(code) {
            return Err(AppError::new(
                ErrorCode::CategoryIsDefault,
                format!(
                    "category {code} is the default category of scheme {scheme_code}; choose another default first"
                ),
            ));
        }
        diesel::delete(categories::table.filter(categories::id.eq(current.id))).execute(conn)?;
        events::record_one(conn, EventType::CategoryDeleted, json!({"scheme": scheme_code, "category": code}))
    })
}
