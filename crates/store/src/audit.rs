//! The read model checked against what it is derived from. Every table the service
//! keeps in step with the assignments (memberships and their classification vectors,
//! category and pair counters, customer counts, the customers' snapshots, duplicate
//! keys, sales totals) is recomputed from its sources (`customer_categories`,
//! `customer_attributes`, `pending_changes`, the customer rows, `transactions`) and compared; [`repair`]
//! rewrites what differs. Meant for operators who wrote to the database behind the
//! service (数据清理), and for the tests, which require that it finds nothing.
//!
//! Customers are checked a range of ids at a time, each range in one snapshot, so
//! an audit of a live service never reports a change that was half-seen; a repair
//! locks the range's customers, which every writer of a classification locks first.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::schema::{
    category_members, customer_attributes, customer_categories, customer_match_keys, customers, pending_changes,
};
use crate::db::{snapshot, transaction, DbConnection};
use crate::domain::category::ClassificationVector;
use crate::domain::duplicates::{email_key, name_key, phone_key};
use crate::domain::pending::PendingStatus;
use crate::error::AppError;

use crate::archive::customer_rows::{
    assignments_of, decode_attributes, decode_pending, refresh_snapshot, CustomerRow, SnapshotTarget,
};
use crate::archive::sales_totals::{self, Totals};
use crate::catalogue::schemes::SchemeRow;
use crate::{id_list, lock_rows, LockMode, LockableTable};

/// Customers per range: one snapshot (or one repairing transaction) each.
const RANGE: i64 = 2_000;

/// Differences shown per table; all are counted.
pub const EXAMPLES: usize = 10;

/// A table (or column) derived from the assignments and the customer rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DerivedTable {
    /// `customer_counts`: customers per shard.
    CustomerCounts,
    /// `category_counts`: customers per category and shard.
    CategoryCounts,
    /// `category_pair_counts`: customers per pair of categories of two schemes.
    CategoryPairCounts,
    /// `category_members`: a row per category a customer is in, ancestors included.
    Memberships,
    /// `category_members.classification_vector`: every scheme's category of the customer.
    ClassificationVectors,
    /// `customers.classification` and `customers.attributes`.
    Snapshots,
    /// `customer_match_keys`: normalised name, phone and email.
    MatchKeys,
    /// `sales_totals`: sales summed up to the anchor.
    SalesTotals,
}

impl DerivedTable {
    pub const ALL: [DerivedTable; 8] = [
        DerivedTable::CustomerCounts,
        DerivedTable::CategoryCounts,
        DerivedTable::CategoryPairCounts,
        DerivedTable::Memberships,
        DerivedTable::ClassificationVectors,
        DerivedTable::Snapshots,
        DerivedTable::MatchKeys,
        DerivedTable::SalesTotals,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DerivedTable::CustomerCounts => "customer_counts",
            DerivedTable::CategoryCounts => "category_counts",
            DerivedTable::CategoryPairCounts => "category_pair_counts",
            DerivedTable::Memberships => "memberships",
            DerivedTable::ClassificationVectors => "classification_vectors",
            DerivedTable::Snapshots => "snapshots",
            DerivedTable::MatchKeys => "match_keys",
            DerivedTable::SalesTotals => "sales_totals",
        }
    }
}

/// One row (or value) that is not what its sources say.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Difference {
    pub key: String,
    pub expected: String,
    pub found: String,
}

/// What one table's check found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableFindings {
    pub table: DerivedTable,
    pub differences: u64,
    /// The first [`EXAMPLES`].
    pub examples: Vec<Difference>,
}

/// What an audit (or a repair) found, per table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Findings {
    pub tables: Vec<TableFindings>,
}

impl Default for Findings {
    fn default() -> Self {
        Self {
            tables: DerivedTable::ALL
                .into_iter()
                .map(|table| TableFindings { table, differences: 0, examples: Vec::new() })
                .collect(),
        }
    }
}

impl Findings {
    pub fn differences(&self) -> u64 {
        self.tables.iter().map(|table| table.differences).sum()
    }

    fn record(&mut self, table: DerivedTable, key: String, expected: impl ToString, found: impl ToString) {
        let findings = self.table_mut(table);
        findings.differences += 1;
        if findings.examples.len() < EXAMPLES {
            findings.examples.push(Difference { key, expected: expected.to_string(), found: found.to_string() });
        }
    }

    fn table_mut(&mut self, table: DerivedTable) -> &mut TableFindings {
        let index = DerivedTable::ALL.iter().position(|t| *t == table).expect("every table has its findings");
        &mut self.tables[index]
    }

    fn absorb(&mut self, other: Findings) {
        for found in other.tables {
            let findings = self.table_mut(found.table);
            findings.differences += found.differences;
            let room = EXAMPLES.saturating_sub(findings.examples.len());
            findings.examples.extend(found.examples.into_iter().take(room));
        }
    }
}

/// Checks every derived table; changes nothing.
pub fn audit(conn: &mut DbConnection) -> Result<Findings, AppError> {
    let mut findings = snapshot(conn, check_counters)?;
    let schemes = schemes_by_id(conn)?;
    for (low, high) in ranges(conn)? {
        findings.absorb(snapshot(conn, |conn| {
            let anchor = sales_totals::anchor(conn)?;
            let mut found = Findings::default();
            CustomerRange::load(conn, &schemes, anchor, low, high)?.compare(&mut found);
            Ok(found)
        })?);
    }
    Ok(findings)
}

/// Rewrites every derived row that differs from its sources, a range of customers
/// per transaction and the counters in one; what it rewrote.
pub fn repair(conn: &mut DbConnection) -> Result<Findings, AppError> {
    let schemes = schemes_by_id(conn)?;
    let mut repaired = Findings::default();
    for (low, high) in ranges(conn)? {
        repaired.absorb(transaction(conn, |conn| {
            let anchor = sales_totals::hold_anchor(conn)?;
            let ids: Vec<i64> =
                customers::table.filter(customers::id.between(low, high)).select(customers::id).load(conn)?;
            lock_rows(conn, LockableTable::Customers, &ids, LockMode::Exclusive)?;
            let range = CustomerRange::load(conn, &schemes, anchor, low, high)?;
            let mut found = Findings::default();
            let stale = range.compare(&mut found);
            range.rewrite(conn, &stale)?;
            Ok(found)
        })?);
    }
    let counters = snapshot(conn, check_counters)?;
    if counters.differences() > 0 {
        crate::reporting::counts::recount(conn)?;
        repaired.absorb(counters);
    }
    Ok(repaired)
}

fn schemes_by_id(conn: &mut DbConnection) -> Result<BTreeMap<i64, SchemeRow>, AppError> {
    use crate::db::schema::schemes;
    let rows: Vec<SchemeRow> = schemes::table.select(SchemeRow::as_select()).load(conn)?;
    Ok(rows.into_iter().map(|scheme| (scheme.id, scheme)).collect())
}

#[derive(QueryableByName)]
struct Bounds {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    low: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    high: Option<i64>,
}

/// Ranges of [`RANGE`] ids over every id that a customer or a derived row carries
/// (a derived row may have outlived its customer).
fn ranges(conn: &mut DbConnection) -> Result<Vec<(i64, i64)>, AppError> {
    let tables = ["customers", "category_members", "customer_match_keys", "sales_totals", "customer_categories"];
    let union = tables
        .iter()
        .map(|table| {
            let id = if *table == "customers" { "id" } else { "customer_id" };
            format!("SELECT MIN({id}) AS low, MAX({id}) AS high FROM {table}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let bounds: Bounds =
        diesel::sql_query(format!("SELECT MIN(low) AS low, MAX(high) AS high FROM ({union}) b")).get_result(conn)?;
    let (Some(low), Some(high)) = (bounds.low, bounds.high) else { return Ok(Vec::new()) };
    Ok((0..)
        .map(|i| low + i * RANGE)
        .take_while(|start| *start <= high)
        .map(|start| (start, start + RANGE - 1))
        .collect())
}

#[derive(QueryableByName, PartialEq, Eq, PartialOrd, Ord)]
struct Counter {
    #[diesel(sql_type = Text)]
    counter_key: String,
    #[diesel(sql_type = BigInt)]
    customers: i64,
}

/// Compares the three counter tables with counts of the assignments and customers
/// (in one snapshot).
fn check_counters(conn: &mut DbConnection) -> Result<Findings, AppError> {
    let mysql = matches!(conn, DbConnection::Mysql(_));
    let key = |parts: &[&str]| {
        let parts: Vec<String> = parts.iter().map(|part| format!("({part})")).collect();
        if mysql {
            format!("CONCAT_WS(' ', {})", parts.join(", "))
        } else {
            parts.join(" || ' ' || ")
        }
    };
    let sum = |column: &str| if mysql { format!("CAST(SUM({column}) AS SIGNED)") } else { format!("SUM({column})") };
    // A count is the sum of its shards' rows; which shard holds which part is only a
    // way to spread concurrent writes (see `counts`), so sums are compared.
    let checks = [
        (
            DerivedTable::CustomerCounts,
            format!("SELECT {} AS counter_key, COUNT(*) AS customers FROM customers", key(&["'all'"])),
            format!("SELECT {} AS counter_key, COALESCE({}, 0) AS customers FROM customer_counts", key(&["'all'"]), sum("customers")),
        ),
        (
            DerivedTable::CategoryCounts,
            format!(
                "SELECT {} AS counter_key, COUNT(*) AS customers FROM customer_categories GROUP BY scheme_id, category_code",
                key(&["scheme_id", "category_code"])
            ),
            format!(
                "SELECT {} AS counter_key, {} AS customers FROM category_counts GROUP BY scheme_id, category_code",
                key(&["scheme_id", "category_code"]),
                sum("customers")
            ),
        ),
        (
            DerivedTable::CategoryPairCounts,
            format!(
                "SELECT {} AS counter_key, COUNT(*) AS customers FROM customer_categories a \
                 JOIN customer_categories b ON b.customer_id = a.customer_id AND b.scheme_id > a.scheme_id \
                 GROUP BY a.scheme_id, a.category_code, b.scheme_id, b.category_code",
                key(&["a.scheme_id", "a.category_code", "b.scheme_id", "b.category_code"])
            ),
            format!(
                "SELECT {} AS counter_key, {} AS customers FROM category_pair_counts \
                 GROUP BY scheme_id, category_code, other_scheme_id, other_code",
                key(&["scheme_id", "category_code", "other_scheme_id", "other_code"]),
                sum("customers")
            ),
        ),
    ];
    let mut findings = Findings::default();
    for (table, expected, found) in checks {
        let counted = |conn: &mut DbConnection, sql: &str| -> Result<BTreeMap<String, i64>, AppError> {
            let rows: Vec<Counter> = diesel::sql_query(sql).load(conn)?;
            Ok(rows.into_iter().filter(|row| row.customers != 0).map(|row| (row.counter_key, row.customers)).collect())
        };
        let (expected, found) = (counted(conn, &expected)?, counted(conn, &found)?);
        for key in expected.keys().chain(found.keys()).collect::<BTreeSet<_>>() {
            let (want, have) = (expected.get(key).copied().unwrap_or(0), found.get(key).copied().unwrap_or(0));
            if want != have {
                findings.record(table, key.clone(), want, have);
            }
        }
    }
    Ok(findings)
}

/// A membership row's key: customer, scheme, category.
type MemberKey = (i64, i64, String);

/// What a membership row carries besides its key: the customer's code and vector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    customer_code: String,
    vector: String,
}

type MatchKeys = (String, Option<String>, Option<String>);

/// An assignment as the snapshot shows it: scheme code, category, pinned, since.
type SnapshotAssignment = (String, String, bool, chrono::NaiveDateTime);

type SnapshotValues = BTreeMap<String, (serde_json::Value, bool)>;

/// A customer's pending changes as its snapshot shows them: by scheme, the change's
/// id, category, moment, actor and reason.
type SnapshotPending = BTreeMap<String, PendingShown>;
type PendingShown = (i64, String, chrono::NaiveDateTime, String, Option<String>);

/// What the derived tables hold for a range of customer ids, and what they should.
struct CustomerRange {
    customers: BTreeMap<i64, CustomerRow>,
    expected_members: BTreeMap<MemberKey, Member>,
    found_members: BTreeMap<MemberKey, Member>,
    expected_assignments: BTreeMap<i64, Vec<SnapshotAssignment>>,
    expected_values: BTreeMap<i64, SnapshotValues>,
    expected_pending: BTreeMap<i64, SnapshotPending>,
    found_keys: BTreeMap<i64, MatchKeys>,
    expected_totals: BTreeMap<i64, Totals>,
    found_totals: BTreeMap<i64, Totals>,
}

/// The customers of a range whose rows differ, per kind of row.
#[derive(Default)]
struct Stale {
    members: BTreeSet<i64>,
    snapshots: BTreeSet<i64>,
    pending: BTreeSet<i64>,
    keys: BTreeSet<i64>,
    totals: BTreeSet<i64>,
}

impl CustomerRange {
    fn load(
        conn: &mut DbConnection,
        schemes: &BTreeMap<i64, SchemeRow>,
        anchor: chrono::NaiveDateTime,
        low: i64,
        high: i64,
    ) -> Result<Self, AppError> {
        let customers: BTreeMap<i64, CustomerRow> = customers::table
            .filter(customers::id.between(low, high))
            .select(CustomerRow::as_select())
            .load(conn)?
            .into_iter()
            .map(|row: CustomerRow| (row.id, row))
            .collect();
        let assignments: Vec<(i64, i64, String, bool, chrono::NaiveDateTime)> = customer_categories::table
            .filter(customer_categories::customer_id.between(low, high))
            .select((
                customer_categories::customer_id,
                customer_categories::scheme_id,
                customer_categories::category_code,
                customer_categories::locked,
                customer_categories::assigned_at,
            ))
            .load(conn)?;
        let mut per_customer: BTreeMap<i64, Vec<(i64, String, bool, chrono::NaiveDateTime)>> = BTreeMap::new();
        for (customer_id, scheme_id, code, locked, at) in assignments {
            per_customer.entry(customer_id).or_default().push((scheme_id, code, locked, at));
        }
        let mut expected_members = BTreeMap::new();
        let mut expected_assignments = BTreeMap::new();
        for (customer_id, held) in &per_customer {
            let Some(customer) = customers.get(customer_id) else { continue };
            let vector = ClassificationVector::of(held.iter().map(|(scheme, code, ..)| (*scheme, code.as_str())));
            let mut shown = Vec::new();
            for (scheme_id, code, locked, at) in held {
                let Some(scheme) = schemes.get(scheme_id) else { continue };
                for path_code in crate::catalogue::categories::path_codes(scheme, code)? {
                    let member = Member { customer_code: customer.code.clone(), vector: vector.clone().into_inner() };
                    expected_members.insert((*customer_id, *scheme_id, path_code), member);
                }
                shown.push((scheme.code.clone(), code.clone(), *locked, *at));
            }
            shown.sort();
            expected_assignments.insert(*customer_id, shown);
        }
        let found_members = category_members::table
            .filter(category_members::customer_id.between(low, high))
            .select((
                category_members::customer_id,
                category_members::scheme_id,
                category_members::category_code,
                category_members::customer_code,
                category_members::classification_vector,
            ))
            .load::<(i64, i64, String, String, String)>(conn)?
            .into_iter()
            .map(|(customer, scheme, code, customer_code, vector)| {
                ((customer, scheme, code), Member { customer_code, vector })
            })
            .collect();
        let mut expected_values: BTreeMap<i64, SnapshotValues> = BTreeMap::new();
        let values: Vec<(i64, String, String, bool)> = customer_attributes::table
            .filter(customer_attributes::customer_id.between(low, high))
            .select((
                customer_attributes::customer_id,
                customer_attributes::attr_key,
                customer_attributes::value_json,
                customer_attributes::from_default,
            ))
            .load(conn)?;
        for (customer_id, key, json, from_default) in values {
            let value = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
            expected_values.entry(customer_id).or_default().insert(key, (value, from_default));
        }
        let mut expected_pending: BTreeMap<i64, SnapshotPending> = BTreeMap::new();
        let pending: Vec<(i64, String, PendingShown)> = pending_changes::table
            .filter(pending_changes::customer_id.between(low, high))
            .filter(pending_changes::status.eq(PendingStatus::Pending.as_str()))
            .select((
                pending_changes::customer_id,
                pending_changes::scheme_code,
                (
                    pending_changes::id,
                    pending_changes::category_code,
                    pending_changes::effective_at,
                    pending_changes::actor,
                    pending_changes::reason,
                ),
            ))
            .load(conn)?;
        for (customer_id, scheme, shown) in pending {
            expected_pending.entry(customer_id).or_default().insert(scheme, shown);
        }
        let found_keys = customer_match_keys::table
            .filter(customer_match_keys::customer_id.between(low, high))
            .select((
                customer_match_keys::customer_id,
                customer_match_keys::name_key,
                customer_match_keys::phone_key,
                customer_match_keys::email_key,
            ))
            .load::<(i64, String, Option<String>, Option<String>)>(conn)?
            .into_iter()
            .map(|(id, name, phone, email)| (id, (name, phone, email)))
            .collect();
        Ok(Self {
            customers,
            expected_members,
            found_members,
            expected_assignments,
            expected_values,
            expected_pending,
            found_keys,
            expected_totals: sales_totals::recomputed(conn, anchor, low, high)?,
            found_totals: sales_totals::stored(conn, low, high)?,
        })
    }

    /// Records each difference; the customers whose rows must be rewritten.
    fn compare(&self, findings: &mut Findings) -> Stale {
        let mut stale = Stale::default();
        let member_keys: BTreeSet<&MemberKey> = self.expected_members.keys().chain(self.found_members.keys()).collect();
        for key in member_keys {
            let (customer, scheme, code) = key;
            let name = format!("customer {customer} scheme {scheme} category {code}");
            match (self.expected_members.get(key), self.found_members.get(key)) {
                (Some(want), Some(have)) => {
                    if want.customer_code != have.customer_code {
                        findings.record(
                            DerivedTable::Memberships,
                            name.clone(),
                            &want.customer_code,
                            &have.customer_code,
                        );
                        stale.members.insert(*customer);
                    }
                    if want.vector != have.vector {
                        findings.record(DerivedTable::ClassificationVectors, name, &want.vector, &have.vector);
                        stale.members.insert(*customer);
                    }
                }
                (Some(_), None) => {
                    findings.record(DerivedTable::Memberships, name, "a member", "none");
                    stale.members.insert(*customer);
                }
                (None, Some(_)) => {
                    findings.record(DerivedTable::Memberships, name, "none", "a member");
                    stale.members.insert(*customer);
                }
                (None, None) => {}
            }
        }
        for (id, row) in &self.customers {
            let want = self.expected_assignments.get(id).cloned().unwrap_or_default();
            let have = assignments_of(row).map(|shown| {
                shown.into_iter().map(|a| (a.scheme, a.category, a.locked, a.assigned_at)).collect::<Vec<_>>()
            });
            if have.as_ref().ok() != Some(&want) {
                let found = have.map_or_else(|_| "unreadable".to_string(), |have| show_assignments(&have));
                findings.record(
                    DerivedTable::Snapshots,
                    format!("customer {} classification", row.code),
                    show_assignments(&want),
                    found,
                );
                stale.snapshots.insert(*id);
            }
            let want = self.expected_values.get(id).cloned().unwrap_or_default();
            let have = decode_attributes(row).map(|shown| {
                shown.into_iter().map(|(key, view)| (key, (view.value, view.from_default))).collect::<SnapshotValues>()
            });
            if have.as_ref().ok() != Some(&want) {
                let found = have.map_or_else(|_| "unreadable".to_string(), |have| show_values(&have));
                findings.record(
                    DerivedTable::Snapshots,
                    format!("customer {} attributes", row.code),
                    show_values(&want),
                    found,
                );
                stale.snapshots.insert(*id);
            }
        }
        for (id, row) in &self.customers {
            let want = self.expected_pending.get(id).cloned().unwrap_or_default();
            let have = decode_pending(row).map(|shown| {
                shown
                    .into_iter()
                    .map(|(scheme, p)| (scheme, (p.id, p.category, p.effective_at, p.actor, p.reason)))
                    .collect::<SnapshotPending>()
            });
            if have.as_ref().ok() != Some(&want) {
                let show = |pending: &SnapshotPending| format!("{pending:?}");
                let found = have.map_or_else(|_| "unreadable".to_string(), |have| show(&have));
                findings.record(
                    DerivedTable::Snapshots,
                    format!("customer {} pending changes", row.code),
                    show(&want),
                    found,
                );
                stale.pending.insert(*id);
            }
        }
        // A customer without keys is keyed before the next duplicate search (an
        // import's new customers are keyed once it commits): only keys that exist
        // and disagree, or outlived their customer, are wrong.
        for (&id, have) in &self.found_keys {
            let want = self.customers.get(&id).map(expected_keys);
            if want.as_ref() != Some(have) {
                findings.record(
                    DerivedTable::MatchKeys,
                    format!("customer {id}"),
                    show_keys(want.as_ref()),
                    show_keys(Some(have)),
                );
                stale.keys.insert(id);
            }
        }
        let total_ids: BTreeSet<i64> = self.expected_totals.keys().chain(self.found_totals.keys()).copied().collect();
        for id in total_ids {
            let (want, have) = (self.expected_totals.get(&id), self.found_totals.get(&id));
            if want != have {
                let show = |totals: Option<&Totals>| totals.map_or_else(|| "none".to_string(), Totals::to_string);
                findings.record(DerivedTable::SalesTotals, format!("customer {id}"), show(want), show(have));
                stale.totals.insert(id);
            }
        }
        stale
    }

    /// Rewrites the stale rows from their sources, in the caller's transaction.
    fn rewrite(&self, conn: &mut DbConnection, stale: &Stale) -> Result<(), AppError> {
        let members: Vec<i64> = stale.members.iter().copied().collect();
        for chunk in members.chunks(1000) {
            diesel::sql_query(format!("DELETE FROM category_members WHERE customer_id IN ({})", id_list(chunk)))
                .execute(conn)?;
        }
        let rows: Vec<_> = self
            .expected_members
            .iter()
            .filter(|((customer, ..), _)| stale.members.contains(customer))
            .map(|((customer, scheme, code), member)| {
                (
                    category_members::customer_id.eq(*customer),
                    category_members::scheme_id.eq(*scheme),
                    category_members::category_code.eq(code.clone()),
                    category_members::customer_code.eq(member.customer_code.clone()),
                    category_members::classification_vector.eq(member.vector.clone()),
                )
            })
            .collect();
        if !rows.is_empty() {
            crate::insert_many!(conn, category_members::table, rows)?;
        }
        let snapshots: Vec<i64> = stale.snapshots.iter().copied().collect();
        refresh_snapshot(conn, SnapshotTarget::Ids(&snapshots), true)?;
        let pending: Vec<i64> = stale.pending.iter().copied().collect();
        crate::classification::pending_rows::refresh(conn, &pending)?;
        let keys: Vec<i64> = stale.keys.iter().copied().collect();
        for chunk in keys.chunks(1000) {
            diesel::sql_query(format!("DELETE FROM customer_match_keys WHERE customer_id IN ({})", id_list(chunk)))
                .execute(conn)?;
        }
        let keyed: Vec<(i64, &str, Option<&str>, Option<&str>)> = keys
            .iter()
            .filter_map(|id| self.customers.get(id))
            .map(|row| (row.id, row.name.as_str(), row.phone.as_deref(), row.email.as_deref()))
            .collect();
        if !keyed.is_empty() {
            crate::archive::duplicates::insert_keys(conn, &keyed)?;
        }
        let totals: Vec<i64> = stale.totals.iter().copied().collect();
        sales_totals::replace(conn, &totals, &self.expected_totals)
    }
}

fn expected_keys(row: &CustomerRow) -> MatchKeys {
    (name_key(&row.name), row.phone.as_deref().map(phone_key), row.email.as_deref().map(email_key))
}

fn show_assignments(assignments: &[SnapshotAssignment]) -> String {
    let shown: Vec<String> = assignments
        .iter()
        .map(|(scheme, category, locked, at)| {
            format!("{scheme} {category}{} since {at}", if *locked { " pinned" } else { "" })
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

fn show_values(values: &SnapshotValues) -> String {
    let shown: Vec<String> = values
        .iter()
        .map(|(key, (value, from_default))| format!("{key} = {value}{}", if *from_default { " (default)" } else { "" }))
        .collect();
    format!("{{{}}}", shown.join(", "))
}

fn show_keys(keys: Option<&MatchKeys>) -> String {
    match keys {
        None => "none".to_string(),
        Some((name, phone, email)) => {
            format!("name {name}, phone {}, email {}", phone.as_deref().unwrap_or("-"), email.as_deref().unwrap_or("-"))
        }
    }
}
