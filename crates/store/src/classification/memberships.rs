//! Memberships: a customer is a member of its category and of each ancestor, and
//! every membership row carries the customer's whole classification vector.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;

use crate::db::schema::{category_members, customer_categories};
use crate::db::{DbBackend, DbConnection};
use crate::domain::category::ClassificationVector;
use crate::error::AppError;

use super::{Mover, CHUNK};
use crate::catalogue::schemes::SchemeRow;
use crate::id_list;

/// The classification vectors of these customers, as their assignments stand.
fn vectors_of(conn: &mut DbConnection, customer_ids: &[i64]) -> Result<HashMap<i64, ClassificationVector>, AppError> {
    let rows: Vec<(i64, i64, String)> = customer_categories::table
        .filter(customer_categories::customer_id.eq_any(customer_ids))
        .select((customer_categories::customer_id, customer_categories::scheme_id, customer_categories::category_code))
        .load(conn)?;
    let mut assignments: HashMap<i64, Vec<(i64, &str)>> = HashMap::new();
    for (customer_id, scheme_id, code) in &rows {
        assignments.entry(*customer_id).or_default().push((*scheme_id, code.as_str()));
    }
    Ok(assignments
        .into_iter()
        .map(|(customer_id, assignments)| (customer_id, ClassificationVector::of(assignments)))
        .collect())
}

/// Makes `customers` (whose assignments in `scheme` are already written) members of
/// `category` and of each of its ancestors there (none when `category` is `None`),
/// replacing what they were members of, and brings the classification vector of all
/// their memberships up to date.
pub(super) fn replace_memberships(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    customers: &[Mover],
    category: Option<&str>,
) -> Result<(), AppError> {
    use diesel::sql_types::Text;
    let codes: Vec<String> = match category {
        Some(code) => crate::catalogue::categories::path_codes(scheme, code)?,
        None => Vec::new(),
    };
    let entering = category.map_or_else(|| "|".to_string(), |code| ClassificationVector::entry(scheme.id, code));
    let mut by_origin: BTreeMap<Option<&str>, Vec<&Mover>> = BTreeMap::new();
    for mover in customers {
        by_origin.entry(mover.from.as_deref()).or_default().push(mover);
    }
    let mut replaced = Vec::new();
    for (from, movers) in by_origin {
        let old_path = match from {
            Some(from) => crate::catalogue::categories::path_codes(scheme, from)?,
            None => Vec::new(),
        };
        if old_path.is_empty() || old_path.len() != codes.len() {
            replaced.extend(movers);
            continue;
        }
        // A path as long as the new one: the rows in this scheme are relabelled level by
        // level by the statement that swaps the vector entry on all the customer's rows.
        let relabel: String = old_path.iter().map(|_| " WHEN ? THEN ?").collect();
        for chunk in movers.chunks(CHUNK) {
            let list = id_list(&chunk.iter().map(|m| m.id).collect::<Vec<_>>());
            let mut update = diesel::sql_query(format!(
                "UPDATE category_members SET classification_vector = REPLACE(classification_vector, ?, ?), \
                 category_code = CASE WHEN scheme_id = {} THEN CASE category_code{relabel} ELSE category_code END ELSE category_code END \
                 WHERE customer_id IN ({list})",
                scheme.id
            ))
            .into_boxed::<DbBackend>()
            .bind::<Text, _>(ClassificationVector::entry(scheme.id, &old_path[old_path.len() - 1]))
            .bind::<Text, _>(entering.clone());
            for (old, new) in old_path.iter().zip(&codes) {
                update = update.bind::<Text, _>(old.clone()).bind::<Text, _>(new.clone());
            }
            update.execute(conn)?;
        }
    }
    for chunk in replaced.chunks(CHUNK) {
        replace_rows(conn, scheme, chunk, &codes, &entering)?;
    }
    Ok(())
}

/// Deletes the customers' rows in `scheme`, brings the vectors of their other rows up to
/// date, and inserts rows for each of `codes`.
fn replace_rows(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    movers: &[&Mover],
    codes: &[String],
    entering: &str,
) -> Result<(), AppError> {
    use diesel::sql_types::Text;
    let ids: Vec<i64> = movers.iter().map(|m| m.id).collect();
    diesel::delete(
        category_members::table
            .filter(category_members::scheme_id.eq(scheme.id))
            .filter(category_members::customer_id.eq_any(&ids)),
    )
    .execute(conn)?;
    // What is left are their memberships in other schemes. Swapping the entry of the
    // category they leave costs far less than writing each customer's own vector,
    // which only customers new to the scheme need.
    let mut leaving: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut arriving = Vec::new();
    for mover in movers {
        match &mover.from {
            Some(from) => leaving.entry(from.as_str()).or_default().push(mover.id),
            None => arriving.push(mover.id),
        }
    }
    for (from, ids) in leaving {
        diesel::sql_query(format!("UPDATE category_members SET classification_vector = REPLACE(classification_vector, ?, ?) WHERE customer_id IN ({})", id_list(&ids)))
            .bind::<Text, _>(ClassificationVector::entry(scheme.id, from))
            .bind::<Text, _>(entering)
            .execute(conn)?;
    }
    if !arriving.is_empty() {
        let mut vectors = vectors_of(conn, &arriving)?;
        let cases: String = arriving.iter().map(|id| format!(" WHEN {id} THEN ?")).collect();
        let list = id_list(&arriving);
        let mut update =
            diesel::sql_query(format!("UPDATE category_members SET classification_vector = CASE customer_id{cases} END WHERE customer_id IN ({list})")).into_boxed::<DbBackend>();
        for id in &arriving {
            update =
                update.bind::<Text, _>(vectors.remove(id).map_or_else(String::new, ClassificationVector::into_inner));
        }
        update.execute(conn)?;
    }
    if codes.is_empty() {
        return Ok(());
    }
    // All memberships of a customer carry the same vector: the new ones copy it from
    // one in another scheme, and a customer with none has only this category.
    let path = vec!["SELECT ? AS code"; codes.len()].join(" UNION ALL ");
    let list = id_list(&ids);
    let sql = format!(
        "INSERT INTO category_members (customer_id, scheme_id, category_code, customer_code, classification_vector) \
         SELECT c.id, {0}, p.code, c.code, \
         COALESCE((SELECT o.classification_vector FROM category_members o WHERE o.customer_id = c.id AND o.scheme_id <> {0} LIMIT 1), ?) \
         FROM customers c CROSS JOIN ({path}) p WHERE c.id IN ({list})",
        scheme.id
    );
    let mut insert = diesel::sql_query(sql).into_boxed::<DbBackend>().bind::<Text, _>(entering.to_string());
    for code in codes {
        insert = insert.bind::<Text, _>(code.clone());
    }
    insert.execute(conn)?;
    Ok(())
}
