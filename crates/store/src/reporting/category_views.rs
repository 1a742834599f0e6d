//! Categories as a client reads them: the catalogue's rows with their customers and
//! their subtree's, from the counters, or for a restricted key counted as the
//! distribution report counts what it may see.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use diesel::prelude::*;

use crate::db::schema::categories;
use crate::db::DbConnection;
use crate::domain::report::{tree_tallies, Tally};
use crate::domain::restriction::Restriction;
use crate::error::AppError;

use crate::archive::customer_filters::Filters;
use crate::catalogue::categories::{category_not_found, counted_view, CategoryView};
use crate::catalogue::category_rows::{find_row, CategoryRow};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::reporting::counts;

/// Customers per category of the scheme (its own members): all of them from the
/// counters, or, for a restricted key, those it may see, counted as the distribution
/// report counts them.
fn direct_counts(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    restriction: Option<&Arc<Restriction>>,
) -> Result<HashMap<String, i64>, AppError> {
    match restriction {
        None => Ok(counts::of_schemes(conn, scheme.id, None)?.first),
        Some(restriction) => {
            let visible = Filters { restriction: Some(restriction.clone()), ..Filters::default() };
            let cells = crate::reporting::reports::tally(conn, None, &[scheme], &visible, &[], None)?;
            Ok(cells.into_iter().filter_map(|((code, _), tally)| Some((code?, tally.customers))).collect())
        }
    }
}

/// With a `restriction`, the counts are of the customers it admits.
pub fn get(
    conn: &mut DbConnection,
    scheme_code: &str,
    code: &str,
    restriction: Option<&Arc<Restriction>>,
) -> Result<CategoryView, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let row = find_row(conn, scheme.id, code)?.ok_or_else(|| category_not_found(scheme_code, code))?;
    let direct = direct_counts(conn, &scheme, restriction)?;
    counted_view(conn, &scheme, row, &direct)
}

/// Every category of a scheme ordered by code, which is the tree's pre-order, with
/// counts from the counters the distribution report reads (with a `restriction`, of
/// the customers it admits).
pub fn list(
    conn: &mut DbConnection,
    scheme_code: &str,
    restriction: Option<&Arc<Restriction>>,
) -> Result<Vec<CategoryView>, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let rows: Vec<CategoryRow> = categories::table
        .filter(categories::scheme_id.eq(scheme.id))
        .order(categories::code.asc())
        .select(CategoryRow::as_select())
        .load(conn)?;
    let direct = direct_counts(conn, &scheme, restriction)?;
    let codes: Vec<&str> = rows.iter().map(|row| row.code.as_str()).collect();
    let tallies: BTreeMap<String, Tally> =
        direct.into_iter().map(|(code, customers)| (code, Tally { customers, sums: Vec::new() })).collect();
    let tallies = tree_tallies(&scheme.code_rule, &codes, &tallies, 0);
    let parents: HashSet<&str> = rows.iter().map(|r| r.parent_code.as_str()).filter(|p| !p.is_empty()).collect();
    let views = rows
        .iter()
        .map(|row| CategoryView {
            scheme: scheme.code.clone(),
            is_leaf: !parents.contains(row.code.as_str()),
            customer_count: tallies.get(&row.code).map_or(0, |tally| tally.direct.customers),
            subtree_customer_count: tallies.get(&row.code).map_or(0, |tally| tally.subtree.customers),
            row: row.clone(),
        })
        .collect();
    Ok(views)
}
