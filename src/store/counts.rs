//! Customer counts per category and in all, kept in the same transactions as the
//! assignments and the archive, so that the distribution report and the category
//! tree read a few rows instead of counting a million.
//!
//! Every count is spread over [`SHARDS`] rows chosen by customer id and summed when
//! read: two assignments to the same category in parallel usually write different
//! rows, so no single row serialises every assignment under a root. Each statement
//! touches its rows in key order, which keeps concurrent writers from deadlocking.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::DbConnection;
use crate::error::AppError;

pub const SHARDS: i64 = 16;

fn shard_of(customer_id: i64) -> i64 {
    customer_id.rem_euclid(SHARDS)
}

/// Changes to the counts of one scheme's categories: `(category, shard) → delta`.
#[derive(Debug, Default)]
pub struct CategoryDeltas(BTreeMap<(String, i64), i64>);

impl CategoryDeltas {
    /// A customer left `from` (if any) for `to` (if any).
    pub fn moved(&mut self, customer_id: i64, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        let shard = shard_of(customer_id);
        if let Some(from) = from {
            *self.0.entry((from.to_string(), shard)).or_default() -= 1;
        }
        if let Some(to) = to {
            *self.0.entry((to.to_string(), shard)).or_default() += 1;
        }
    }

    /// Writes the changes in one statement.
    pub fn apply(self, conn: &mut DbConnection, scheme_id: i64) -> Result<(), AppError> {
        let changes: Vec<((String, i64), i64)> = self.0.into_iter().filter(|(_, delta)| *delta != 0).collect();
        if changes.is_empty() {
            return Ok(());
        }
        let mut statement = Fragment::new("INSERT INTO category_counts (scheme_id, category_code, shard, customers) VALUES ");
        for (index, ((code, shard), delta)) in changes.into_iter().enumerate() {
            statement.push(if index == 0 { "(" } else { ", (" });
            statement.bind(Bind::BigInt(scheme_id)).push(", ").bind(Bind::Text(code)).push(", ").bind(Bind::BigInt(shard)).push(", ").bind(Bind::BigInt(delta)).push(")");
        }
        statement.push(&upsert_adding(Dialect::of(conn), "scheme_id, category_code, shard"));
        statement.into_query().execute(conn)?;
        Ok(())
    }
}

/// The clause that adds a conflicting row's `customers` to the stored one.
fn upsert_adding(dialect: Dialect, key: &str) -> String {
    match dialect {
        Dialect::Mysql => " ON DUPLICATE KEY UPDATE customers = customers + VALUES(customers)".to_string(),
        Dialect::Sqlite => format!(" ON CONFLICT ({key}) DO UPDATE SET customers = customers + excluded.customers"),
    }
}

/// A customer was created (`+1`) or deleted (`-1`).
pub fn customer_added(conn: &mut DbConnection, customer_id: i64, delta: i64) -> Result<(), AppError> {
    let mut statement = Fragment::new("INSERT INTO customer_counts (shard, customers) VALUES (");
    statement.bind(Bind::BigInt(shard_of(customer_id))).push(", ").bind(Bind::BigInt(delta)).push(")").push(&upsert_adding(Dialect::of(conn), "shard"));
    statement.into_query().execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct CodeCount {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    category_code: Option<String>,
    #[diesel(sql_type = BigInt)]
    customers: i64,
}

/// Customers assigned to each category of a scheme (categories without any are
/// absent), and customers in the archive: one statement, so one snapshot, in which
/// the two always agree.
pub fn of_scheme(conn: &mut DbConnection, scheme_id: i64) -> Result<(HashMap<String, i64>, i64), AppError> {
    let int = Dialect::of(conn).integer();
    let mut query = Fragment::new(&format!("SELECT category_code, CAST(SUM(customers) AS {int}) AS customers FROM category_counts WHERE scheme_id = "));
    query.bind(Bind::BigInt(scheme_id)).push(&format!(
        " GROUP BY category_code UNION ALL SELECT NULL AS category_code, CAST(COALESCE(SUM(customers), 0) AS {int}) AS customers FROM customer_counts"
    ));
    let mut by_category = HashMap::new();
    let mut population = 0;
    for row in query.into_query().load::<CodeCount>(conn)? {
        match row.category_code {
            Some(code) if row.customers != 0 => {
                by_category.insert(code, row.customers);
            }
            Some(_) => {}
            None => population = row.customers,
        }
    }
    Ok((by_category, population))
}

/// Counts the archive and every category again, for programs that load customers
/// around the service (benchmarks, test fixtures); the service itself keeps the
/// counts as it goes.
pub fn recount(conn: &mut DbConnection) -> Result<(), AppError> {
    crate::db::transaction(conn, |conn| {
        diesel::sql_query("DELETE FROM customer_counts").execute(conn)?;
        diesel::sql_query(format!("INSERT INTO customer_counts (shard, customers) SELECT id % {SHARDS}, COUNT(*) FROM customers GROUP BY id % {SHARDS}")).execute(conn)?;
        diesel::sql_query("DELETE FROM category_counts").execute(conn)?;
        diesel::sql_query(format!(
            "INSERT INTO category_counts (scheme_id, category_code, shard, customers) \
             SELECT scheme_id, category_code, customer_id % {SHARDS}, COUNT(*) FROM customer_categories GROUP BY scheme_id, category_code, customer_id % {SHARDS}"
        ))
        .execute(conn)?;
        Ok(())
    })
}
