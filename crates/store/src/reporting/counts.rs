//! Customer counts per category and in all, kept in the same transactions as the
//! assignments and the archive, so that the distribution report and the category
//! tree read a few rows instead of counting a million.
//!
//! Every count is spread over [`SHARDS`] rows chosen by customer id and summed when
//! read: two assignments to the same category in parallel usually write different
//! rows, so no single row serialises every assignment under a root (a batch writes
//! all its changes to the shard of its first customer). Each statement touches its
//! rows in key order, which keeps concurrent writers from deadlocking.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::sql::{Bind, Dialect, Fragment};
use crate::db::DbConnection;
use crate::error::AppError;

pub const SHARDS: i64 = 16;

/// A number of customers, as `COUNT(*) AS customers` reads it.
#[derive(QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) customers: i64,
}

fn shard_of(customer_id: i64) -> i64 {
    customer_id.rem_euclid(SHARDS)
}

/// A pair count's key: `(scheme, category, other scheme, other category)`, the
/// scheme with the smaller id first.
type PairKey = (i64, String, i64, String);

/// Changes to the counts of one scheme's categories, and to the counts of the pairs
/// they form with the categories the customers hold in other schemes (what a
/// cross-tab of two schemes reads).
///
/// They are all written to one shard, that of the first customer recorded: a single
/// assignment writes its customer's rows, so concurrent ones mostly write different
/// rows, and a batch of thousands writes one row per key rather than sixteen. A
/// shard's row is only a part of a sum, so it may go below zero.
#[derive(Debug)]
pub struct CategoryDeltas {
    scheme_id: i64,
    shard: Option<i64>,
    singles: BTreeMap<String, i64>,
    pairs: BTreeMap<PairKey, i64>,
}

impl CategoryDeltas {
    pub fn new(scheme_id: i64) -> Self {
        Self { scheme_id, shard: None, singles: BTreeMap::new(), pairs: BTreeMap::new() }
    }

    /// A customer holding `others` (scheme id, category) in other schemes left `from`
    /// (if any) for `to` (if any).
    pub fn moved(&mut self, customer_id: i64, from: Option<&str>, to: Option<&str>, others: &[(i64, String)]) {
        if from == to {
            return;
        }
        self.shard.get_or_insert(shard_of(customer_id));
        for (code, delta) in [(from, -1), (to, 1)] {
            let Some(code) = code else { continue };
            *self.singles.entry(code.to_string()).or_default() += delta;
            for (other_scheme, other_code) in others {
                let key = if self.scheme_id < *other_scheme {
                    (self.scheme_id, code.to_string(), *other_scheme, other_code.clone())
                } else {
                    (*other_scheme, other_code.clone(), self.scheme_id, code.to_string())
                };
                *self.pairs.entry(key).or_default() += delta;
            }
        }
    }

    /// Writes the changes, one statement per table, in key order.
    pub fn apply(self, conn: &mut DbConnection) -> Result<(), AppError> {
        let Some(shard) = self.shard else { return Ok(()) };
        let dialect = Dialect::of(conn);
        let singles: Vec<_> = self.singles.into_iter().filter(|(_, delta)| *delta != 0).collect();
        if !singles.is_empty() {
            let mut statement =
                Fragment::new("INSERT INTO category_counts (scheme_id, category_code, shard, customers) VALUES ");
            for (index, (code, delta)) in singles.into_iter().enumerate() {
                statement.push(if index == 0 { "(" } else { ", (" });
                statement
                    .bind(Bind::BigInt(self.scheme_id))
                    .push(", ")
                    .bind(Bind::Text(code))
                    .push(", ")
                    .bind(Bind::BigInt(shard))
                    .push(", ")
                    .bind(Bind::BigInt(delta))
                    .push(")");
            }
            statement.push(&upsert_adding(dialect, "scheme_id, category_code, shard"));
            statement.into_query().execute(conn)?;
        }
        let pairs: Vec<_> = self.pairs.into_iter().filter(|(_, delta)| *delta != 0).collect();
        for chunk in pairs.chunks(1000) {
            let mut statement = Fragment::new("INSERT INTO category_pair_counts (scheme_id, category_code, other_scheme_id, other_code, shard, customers) VALUES ");
            for (index, ((scheme, code, other_scheme, other_code), delta)) in chunk.iter().enumerate() {
                statement.push(if index == 0 { "(" } else { ", (" });
                statement
                    .bind(Bind::BigInt(*scheme))
                    .push(", ")
                    .bind(Bind::Text(code.clone()))
                    .push(", ")
                    .bind(Bind::BigInt(*other_scheme))
                    .push(", ")
                    .bind(Bind::Text(other_code.clone()))
                    .push(", ")
                    .bind(Bind::BigInt(shard))
                    .push(", ")
                    .bind(Bind::BigInt(*delta))
                    .push(")");
            }
            statement.push(&upsert_adding(dialect, "scheme_id, category_code, other_scheme_id, other_code, shard"));
            statement.into_query().execute(conn)?;
        }
        Ok(())
    }
}

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = BigInt)]
    scheme_id: i64,
    #[diesel(sql_type = Text)]
    category_code: String,
}

/// The categories these customers hold in schemes other than `scheme_id`.
pub fn other_categories(
    conn: &mut DbConnection,
    scheme_id: i64,
    customer_ids: &[i64],
) -> Result<HashMap<i64, Vec<(i64, String)>>, AppError> {
    let mut held: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for chunk in customer_ids.chunks(1000) {
        let rows: Vec<Held> = diesel::sql_query(format!(
            "SELECT customer_id, scheme_id, category_code FROM customer_categories WHERE customer_id IN ({}) AND scheme_id <> {scheme_id}",
            crate::id_list(chunk)
        ))
        .load(conn)?;
        for row in rows {
            held.entry(row.customer_id).or_default().push((row.scheme_id, row.category_code));
        }
    }
    Ok(held)
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
    customers_added(conn, &[customer_id], delta)
}

/// Customers were created (`+1` each) or deleted (`-1`): one statement, a row per shard.
pub fn customers_added(conn: &mut DbConnection, customer_ids: &[i64], delta: i64) -> Result<(), AppError> {
    let mut deltas = CustomerDeltas::default();
    deltas.add(customer_ids, delta);
    deltas.apply(conn)
}

/// Customers added (or removed) by shard, gathered over many writes (an import's
/// chunks) and written in one statement.
#[derive(Debug, Default)]
pub struct CustomerDeltas(BTreeMap<i64, i64>);

impl CustomerDeltas {
    pub fn add(&mut self, customer_ids: &[i64], delta: i64) {
        for id in customer_ids {
            *self.0.entry(shard_of(*id)).or_default() += delta;
        }
    }

    pub fn apply(self, conn: &mut DbConnection) -> Result<(), AppError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut statement = Fragment::new("INSERT INTO customer_counts (shard, customers) VALUES ");
        for (index, (shard, delta)) in self.0.into_iter().enumerate() {
            statement
                .push(if index == 0 { "(" } else { ", (" })
                .bind(Bind::BigInt(shard))
                .push(", ")
                .bind(Bind::BigInt(delta))
                .push(")");
        }
        statement.push(&upsert_adding(Dialect::of(conn), "shard"));
        statement.into_query().execute(conn)?;
        Ok(())
    }
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    kind: i64,
    #[diesel(sql_type = BigInt)]
    scheme_id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    category_code: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    other_code: Option<String>,
    #[diesel(sql_type = BigInt)]
    customers: i64,
}

/// What the counters say about one scheme, or two.
#[derive(Debug, Default)]
pub struct Counted {
    /// Customers per category of the first scheme (categories without any are absent).
    pub first: HashMap<String, i64>,
    /// Customers per category of the second scheme.
    pub second: HashMap<String, i64>,
    /// Customers per (category of the first, category of the second).
    pub pairs: HashMap<(String, String), i64>,
    /// Customers in the archive.
    pub population: i64,
}

/// Customers in the archive, from the counters.
pub fn population(conn: &mut DbConnection) -> Result<i64, AppError> {
    let int = Dialect::of(conn).integer();
    let total: Count = diesel::sql_query(format!(
        "SELECT CAST(COALESCE(SUM(customers), 0) AS {int}) AS customers FROM customer_counts"
    ))
    .get_result(conn)?;
    Ok(total.customers)
}

/// The counts of one scheme (and, with `second`, of another and of their pairs), and
/// the archive's size: one statement, so one snapshot, in which they all agree.
pub fn of_schemes(conn: &mut DbConnection, first: i64, second: Option<i64>) -> Result<Counted, AppError> {
    let int = Dialect::of(conn).integer();
    let other = second.unwrap_or(first);
    let mut query = Fragment::new(&format!(
        "SELECT CAST(1 AS {int}) AS kind, scheme_id, category_code, NULL AS other_code, CAST(SUM(customers) AS {int}) AS customers \
         FROM category_counts WHERE scheme_id IN ("
    ));
    query.bind(Bind::BigInt(first)).push(", ").bind(Bind::BigInt(other)).push(") GROUP BY scheme_id, category_code");
    if let Some(second) = second {
        let (low, high) = (first.min(second), first.max(second));
        query
            .push(&format!(
                " UNION ALL SELECT CAST(2 AS {int}) AS kind, scheme_id, category_code, other_code, CAST(SUM(customers) AS {int}) AS customers \
                 FROM category_pair_counts WHERE scheme_id = "
            ))
            .bind(Bind::BigInt(low))
            .push(" AND other_scheme_id = ")
            .bind(Bind::BigInt(high))
            .push(" GROUP BY scheme_id, category_code, other_code");
    }
    query.push(&format!(
        " UNION ALL SELECT CAST(0 AS {int}) AS kind, CAST(0 AS {int}) AS scheme_id, NULL AS category_code, NULL AS other_code, \
         CAST(COALESCE(SUM(customers), 0) AS {int}) AS customers FROM customer_counts"
    ));
    let mut counted = Counted::default();
    for row in query.into_query().load::<CountRow>(conn)? {
        match (row.kind, row.category_code, row.other_code) {
            (0, _, _) => counted.population = row.customers,
            (_, _, _) if row.customers == 0 => {}
            (1, Some(code), _) if row.scheme_id == first => {
                counted.first.insert(code, row.customers);
            }
            (1, Some(code), _) => {
                counted.second.insert(code, row.customers);
            }
            (2, Some(code), Some(other_code)) => {
                let key = if row.scheme_id == first { (code, other_code) } else { (other_code, code) };
                counted.pairs.insert(key, row.customers);
            }
            _ => return Err(AppError::corrupt("a counter row without its category")),
        }
    }
    Ok(counted)
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
        diesel::sql_query("DELETE FROM category_pair_counts").execute(conn)?;
        diesel::sql_query(format!(
            "INSERT INTO category_pair_counts (scheme_id, category_code, other_scheme_id, other_code, shard, customers) \
             SELECT a.scheme_id, a.category_code, b.scheme_id, b.category_code, a.customer_id % {SHARDS}, COUNT(*) FROM customer_categories a \
             JOIN customer_categories b ON b.customer_id = a.customer_id AND b.scheme_id > a.scheme_id \
             GROUP BY a.scheme_id, a.category_code, b.scheme_id, b.category_code, a.customer_id % {SHARDS}"
        ))
        .execute(conn)?;
        Ok(())
    })
}
