//! Candidate duplicates (清理重复数据): customers that share a tax id, or a name, phone
//! or email once normalised (`domain::duplicates`). The normalised forms live in
//! `customer_match_keys`, written with the customer, so that each key is grouped by an
//! index; customers written behind the service's back, and an import's new customers
//! (keyed once the import commits), get theirs before a search.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::schema::{customer_match_keys, customers};
use crate::db::sql::{Bind, Fragment};
use crate::db::{transaction, DbConnection};
use crate::domain::customer::CustomerStatus;
use crate::domain::duplicates::{email_key, name_key, phone_key, DuplicateKey};
use crate::error::AppError;

use crate::archive::customer_filters::Filters;

/// Customers keyed per statement when filling in.
const FILL_BATCH: i64 = 1_000;

/// Members listed per group; `size` counts them all.
pub const MEMBERS_SHOWN: i64 = 100;

/// Writes (or rewrites) a customer's keys, in the caller's transaction.
pub fn write_keys(
    conn: &mut DbConnection,
    customer_id: i64,
    name: &str,
    phone: Option<&str>,
    email: Option<&str>,
) -> Result<(), AppError> {
    diesel::delete(customer_match_keys::table.find(customer_id)).execute(conn)?;
    insert_keys(conn, &[(customer_id, name, phone, email)])
}

/// Writes the keys of customers that have none yet: `(id, name, phone, email)`.
pub fn insert_keys(
    conn: &mut DbConnection,
    customers: &[(i64, &str, Option<&str>, Option<&str>)],
) -> Result<(), AppError> {
    let rows: Vec<_> = customers
        .iter()
        .map(|&(id, name, phone, email)| {
            (
                customer_match_keys::customer_id.eq(id),
                customer_match_keys::name_key.eq(name_key(name)),
                customer_match_keys::phone_key.eq(phone.map(phone_key)),
                customer_match_keys::email_key.eq(email.map(email_key)),
            )
        })
        .collect();
    crate::insert_many!(conn, customer_match_keys::table, rows)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Missing {
    #[diesel(sql_type = BigInt)]
    missing: i64,
}

/// Keys every customer that has none (written before the keys existed, or straight
/// into the table), a thousand per transaction; how many it keyed. Cheap when none
/// is missing: two counts.
pub fn fill_missing(conn: &mut DbConnection) -> Result<u64, AppError> {
    let count: Missing = diesel::sql_query(
        "SELECT (SELECT COUNT(*) FROM customers) - (SELECT COUNT(*) FROM customer_match_keys) AS missing",
    )
    .get_result(conn)?;
    if count.missing <= 0 {
        return Ok(0);
    }
    let mut keyed = 0;
    let mut after = i64::MIN;
    loop {
        let unkeyed: Vec<(i64, String, Option<String>, Option<String>)> = customers::table
            .left_join(customer_match_keys::table)
            .filter(customer_match_keys::customer_id.is_null())
            .filter(customers::id.gt(after))
            .order(customers::id)
            .select((customers::id, customers::name, customers::phone, customers::email))
            .limit(FILL_BATCH)
            .load(conn)?;
        let Some((last, ..)) = unkeyed.last() else { break };
        after = *last;
        let rows: Vec<_> = unkeyed
            .iter()
            .map(|(id, name, phone, email)| {
                (
                    customer_match_keys::customer_id.eq(*id),
                    customer_match_keys::name_key.eq(name_key(name)),
                    customer_match_keys::phone_key.eq(phone.as_deref().map(phone_key)),
                    customer_match_keys::email_key.eq(email.as_deref().map(email_key)),
                )
            })
            .collect();
        // Another replica may be filling in too: a customer keyed meanwhile keeps its keys.
        keyed += transaction(conn, |conn| {
            Ok(crate::native!(conn, |native| diesel::insert_or_ignore_into(customer_match_keys::table)
                .values(rows.clone())
                .execute(native))?)
        })? as u64;
    }
    Ok(keyed)
}

/// [`fill_missing`] on the blocking pool: at start-up (customers written before the
/// keys existed) and after an import, which leaves its new customers' keys to this so
/// that its one transaction holds fewer rows. A search that comes first keys them itself.
pub async fn key_unkeyed_customers(db: &crate::db::Db) {
    match db.run_long(fill_missing).await {
        Ok(0) => {}
        Ok(keyed) => log::info!("computed the duplicate keys of {keyed} customers"),
        Err(error) => {
            log::warn!("the duplicate keys could not be computed (the first duplicates search will): {error}")
        }
    }
}

/// Where a page of groups ends: groups come largest first, then by key (in the order
/// of `DuplicateKey::ALL`), then by value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupPosition {
    pub size: i64,
    pub key: DuplicateKey,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub code: String,
    pub name: String,
    pub tax_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub status: CustomerStatus,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub key: DuplicateKey,
    /// The normalised value they share.
    pub value: String,
    pub size: i64,
    /// The first `MEMBERS_SHOWN`, by code.
    pub members: Vec<Member>,
}

impl Group {
    pub fn position(&self) -> GroupPosition {
        GroupPosition { size: self.size, key: self.key, value: self.value.clone() }
    }
}

#[derive(QueryableByName)]
struct Shared {
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = BigInt)]
    size: i64,
}

/// The table, column and customer id column a key groups on.
fn source(key: DuplicateKey) -> (&'static str, &'static str, &'static str) {
    match key {
        DuplicateKey::TaxId => ("customers", "tax_id", "id"),
        DuplicateKey::Name => ("customer_match_keys", "name_key", "customer_id"),
        DuplicateKey::Phone => ("customer_match_keys", "phone_key", "customer_id"),
        DuplicateKey::Email => ("customer_match_keys", "email_key", "customer_id"),
    }
}

/// How many groups of two or more customers share `key`.
pub fn group_count(conn: &mut DbConnection, key: DuplicateKey) -> Result<i64, AppError> {
    fill_missing(conn)?;
    let (table, column, _) = source(key);
    let sql = format!(
        "SELECT COUNT(*) AS customers FROM (SELECT {column} FROM {table} WHERE {column} IS NOT NULL AND {column} <> '' GROUP BY {column} HAVING COUNT(*) > 1) g"
    );
    Ok(diesel::sql_query(sql).get_result::<crate::reporting::counts::Count>(conn)?.customers)
}

/// Up to `limit` groups of two or more customers sharing one of `keys`, after `after`.
/// The ids of the customers `filters` select, as a subquery (`None` without filters).
/// Category filters take the subtree (the member index lists each ancestor),
/// `unclassified` customers without a category in the scheme, and the filters on the
/// row (`q`, `status`, `attr`, …) as the reports read them.
fn selection(conn: &mut DbConnection, filters: &Filters) -> Result<Option<Fragment>, AppError> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut conditions = Vec::new();
    for filter in &filters.categories {
        let membership = crate::archive::customer_search::resolve(conn, filter)?;
        let mut within =
            Fragment::new("EXISTS (SELECT 1 FROM category_members fm WHERE fm.customer_id = p.id AND fm.scheme_id = ");
        within
            .bind(Bind::BigInt(membership.scheme_id))
            .push(" AND fm.category_code = ")
            .bind(Bind::Text(membership.code))
            .push(")");
        conditions.push(within);
    }
    for scheme_code in &filters.unclassified {
        let scheme = crate::archive::customer_search::filter_scheme(conn, scheme_code, "unclassified")?;
        conditions.push(Fragment::new(&format!(
            "NOT EXISTS (SELECT 1 FROM customer_categories fu WHERE fu.customer_id = p.id AND fu.scheme_id = {})",
            scheme.id
        )));
    }
    conditions.extend(crate::reporting::grouping::row_conditions(conn, filters)?);
    let mut sql = Fragment::new("SELECT p.id FROM customers p WHERE ");
    for (index, condition) in conditions.into_iter().enumerate() {
        sql.push(if index == 0 { "" } else { " AND " }).append(condition);
    }
    Ok(Some(sql))
}

/// Appends ` AND {id} IN (selection)` to `sql`, when there is a selection.
fn within_selection(sql: &mut Fragment, id: &str, selection: Option<&Fragment>) {
    if let Some(selection) = selection {
        sql.push(&format!(" AND {id} IN (")).append(selection.clone()).push(")");
    }
}

/// Groups of two or more of the customers `filters` select that share a key, largest
/// first, after `after`.
pub fn groups(
    conn: &mut DbConnection,
    keys: &[DuplicateKey],
    filters: &Filters,
    after: Option<&GroupPosition>,
    limit: i64,
) -> Result<Vec<Group>, AppError> {
    fill_missing(conn)?;
    let selection = selection(conn, filters)?;
    let mut found: Vec<(DuplicateKey, Shared)> = Vec::new();
    for key in keys {
        let (table, column, id) = source(*key);
        let mut sql = Fragment::new(&format!(
            "SELECT {column} AS value, COUNT(*) AS size FROM {table} WHERE {column} IS NOT NULL AND {column} <> ''"
        ));
        within_selection(&mut sql, &format!("{table}.{id}"), selection.as_ref());
        sql.push(&format!(" GROUP BY {column} HAVING COUNT(*) > 1"));
        if let Some(after) = after {
            sql.push(" AND (COUNT(*) < ").bind(Bind::BigInt(after.size));
            if key.order() > after.key.order() {
                sql.push(" OR COUNT(*) = ").bind(Bind::BigInt(after.size));
            } else if *key == after.key {
                sql.push(" OR (COUNT(*) = ")
                    .bind(Bind::BigInt(after.size))
                    .push(&format!(" AND {column} > "))
                    .bind(Bind::Text(after.value.clone()))
                    .push(")");
            }
            sql.push(")");
        }
        sql.push(&format!(" ORDER BY COUNT(*) DESC, {column} LIMIT {limit}"));
        found.extend(sql.into_query().load::<Shared>(conn)?.into_iter().map(|shared| (*key, shared)));
    }
    found.sort_by(|(a_key, a), (b_key, b)| {
        b.size.cmp(&a.size).then(a_key.order().cmp(&b_key.order())).then_with(|| a.value.cmp(&b.value))
    });
    found.truncate(limit as usize);
    found
        .into_iter()
        .map(|(key, shared)| {
            Ok(Group {
                members: members(conn, key, selection.as_ref(), &shared.value)?,
                key,
                value: shared.value,
                size: shared.size,
            })
        })
        .collect()
}

fn members(
    conn: &mut DbConnection,
    key: DuplicateKey,
    selection: Option<&Fragment>,
    value: &str,
) -> Result<Vec<Member>, AppError> {
    let (table, column, id) = source(key);
    let mut sql = Fragment::new(&format!(
        "SELECT c.code, c.name, c.tax_id, c.phone, c.email, c.status FROM {table} k JOIN customers c ON c.id = k.{id} WHERE k.{column} = "
    ));
    sql.bind(Bind::Text(value.to_string()));
    within_selection(&mut sql, &format!("k.{id}"), selection);
    sql.push(&format!(" ORDER BY c.code LIMIT {MEMBERS_SHOWN}"));
    let rows: Vec<MemberRow> = sql.into_query().load(conn)?;
    rows.into_iter()
        .map(|row| {
            let status = row.status.parse::<CustomerStatus>().map_err(|_| {
                AppError::corrupt(format!("customer {} has the unknown status {:?}", row.code, row.status))
            })?;
            Ok(Member {
                code: row.code,
                name: row.name,
                tax_id: row.tax_id,
                phone: row.phone,
                email: row.email,
                status,
            })
        })
        .collect()
}

#[derive(QueryableByName)]
struct MemberRow {
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    tax_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    phone: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
}
