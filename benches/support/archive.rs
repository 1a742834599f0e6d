//! The customer archive the benchmarks run on: three schemes (INDUSTRY, REGION,
//! TIER), every customer in a leaf of each, and two attributes per customer, loaded
//! straight into MariaDB.

use std::collections::HashMap;
use std::time::Instant;

use custclass::db::schema::{
    assignment_history, attribute_definitions, categories, category_members, customer_attributes, customer_categories,
    customers, schemes,
};
use custclass::db::{migrate, DbConnection};
use custclass::domain::category::ClassificationVector;
use diesel::prelude::*;

use super::{connect, execute};

/// The database of the 1,000,000-customer archive; other sizes get their own.
pub const DATABASE: &str = "custclass_bench";
const CHUNK: usize = 2000;

/// A small deterministic generator, so that every load is the same.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Scheme, code rule and leaves with their weights (out of 100).
type SchemeSpec = (&'static str, &'static str, Vec<(String, u64)>);

fn schemes_spec() -> Vec<SchemeSpec> {
    let industry: Vec<(String, u64)> =
        (1..=5).map(|i| (format!("01{i:02}"), 14)).chain((1..=5).map(|i| (format!("02{i:02}"), 6))).collect();
    let region: Vec<(String, u64)> = (1..=6).flat_map(|r| (1..=5).map(move |p| (format!("{r:02}{p:02}"), 0))).collect();
    let tier = vec![("01".to_string(), 5), ("02".to_string(), 35), ("03".to_string(), 60)];
    vec![("INDUSTRY", "2-2", industry), ("REGION", "2-2", region), ("TIER", "2", tier)]
}

/// Every customer holds two attributes, defined on the REGION roots: `credit_limit`
/// (integer, uniform over 0–10,000,000 in steps of 1,000) and `account_manager`
/// (one of 50 names).
const CREDIT_LIMIT_MAX: u64 = 10_000;

pub fn account_manager(index: u64) -> String {
    let surnames = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"];
    let given = ["芳", "伟", "娜", "敏", "静"];
    format!("{}{}", surnames[(index % 10) as usize], given[(index / 10 % 5) as usize])
}

fn define_attributes(conn: &mut MysqlConnection, region_scheme: i64, at: chrono::NaiveDateTime) {
    let roots: Vec<(i64, String)> = categories::table
        .filter(categories::scheme_id.eq(region_scheme))
        .filter(categories::parent_code.eq(""))
        .select((categories::id, categories::code))
        .load(conn)
        .unwrap();
    for (category_id, code) in roots {
        for (key, label, value_type, required, default, min, max) in [
            ("credit_limit", "信用额度", "integer", false, Some("100000"), Some("0"), Some("10000000")),
            ("account_manager", "客户经理", "string", true, None, None, None),
        ] {
            diesel::insert_into(attribute_definitions::table)
                .values((
                    attribute_definitions::scheme_id.eq(region_scheme),
                    attribute_definitions::category_id.eq(category_id),
                    attribute_definitions::category_code.eq(&code),
                    attribute_definitions::attr_key.eq(key),
                    attribute_definitions::label.eq(label),
                    attribute_definitions::value_type.eq(value_type),
                    attribute_definitions::required.eq(required),
                    attribute_definitions::default_value.eq(default),
                    attribute_definitions::min_value.eq(min),
                    attribute_definitions::max_value.eq(max),
                    attribute_definitions::version.eq(1i64),
                    attribute_definitions::created_at.eq(at),
                    attribute_definitions::updated_at.eq(at),
                ))
                .execute(conn)
                .unwrap();
        }
    }
}

fn pick(leaves: &[(String, u64)], random: &mut Random) -> usize {
    let total: u64 = leaves.iter().map(|(_, w)| *w).sum();
    if total == 0 {
        return random.below(leaves.len() as u64) as usize;
    }
    let mut roll = random.below(total);
    leaves
        .iter()
        .position(|(_, w)| {
            if roll < *w {
                true
            } else {
                roll -= w;
                false
            }
        })
        .unwrap()
}

fn existing_customers(database: &str) -> Option<i64> {
    let mut conn = connect(None);
    let exists: i64 = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM information_schema.schemata WHERE schema_name = '{database}'"
    ))
    .get_result::<Count>(&mut conn)
    .map(|c| c.n)
    .unwrap_or(0);
    if exists == 0 {
        return None;
    }
    let mut conn = connect(Some(database));
    diesel::sql_query("SELECT COUNT(*) AS n FROM customers").get_result::<Count>(&mut conn).ok().map(|c| c.n)
}

#[derive(QueryableByName)]
pub struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

fn load(database: &str, n: usize) {
    let mut server = connect(None);
    execute(&mut server, &format!("DROP DATABASE IF EXISTS {database}"));
    execute(&mut server, &format!("CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"));
    let mut conn = DbConnection::Mysql(connect(Some(database)));
    migrate(&mut conn).unwrap();
    let DbConnection::Mysql(mut conn) = conn else { unreachable!() };
    let at = custclass::db::now();

    let spec = schemes_spec();
    let mut category_ids: Vec<(i64, Vec<(i64, String)>)> = Vec::new();
    for (code, rule, leaves) in &spec {
        diesel::insert_into(schemes::table)
            .values((
                schemes::code.eq(code),
                schemes::name.eq(format!("{code} scheme")),
                schemes::code_rule.eq(rule),
                schemes::version.eq(1i64),
                schemes::created_at.eq(at),
                schemes::updated_at.eq(at),
            ))
            .execute(&mut conn)
            .unwrap();
        let scheme_id: i64 =
            schemes::table.filter(schemes::code.eq(code)).select(schemes::id).first(&mut conn).unwrap();
        let mut codes: Vec<String> = leaves.iter().map(|(leaf, _)| leaf.clone()).collect();
        if *rule == "2-2" {
            let mut parents: Vec<String> = leaves.iter().map(|(leaf, _)| leaf[..2].to_string()).collect();
            parents.dedup();
            codes.splice(0..0, parents);
        }
        for code in &codes {
            let parent = if code.len() == 4 { code[..2].to_string() } else { String::new() };
            diesel::insert_into(categories::table)
                .values((
                    categories::scheme_id.eq(scheme_id),
                    categories::code.eq(code),
                    categories::parent_code.eq(&parent),
                    categories::level.eq(code.len() as i32 / 2),
                    categories::name.eq(format!("类别 {code}")),
                    categories::version.eq(1i64),
                    categories::created_at.eq(at),
                    categories::updated_at.eq(at),
                ))
                .execute(&mut conn)
                .unwrap();
        }
        let ids: HashMap<String, i64> = categories::table
            .filter(categories::scheme_id.eq(scheme_id))
            .select((categories::code, categories::id))
            .load::<(String, i64)>(&mut conn)
            .unwrap()
            .into_iter()
            .collect();
        category_ids.push((scheme_id, leaves.iter().map(|(leaf, _)| (ids[leaf], leaf.clone())).collect()));
    }

    define_attributes(&mut conn, category_ids[1].0, at);

    // Bulk-load settings of this session only: the data is consistent by construction.
    execute(&mut conn, "SET SESSION foreign_key_checks = 0");
    execute(&mut conn, "SET SESSION unique_checks = 0");
    let mut random = Random(0x00c0_ffee_2026);
    let started = Instant::now();
    let cities = ["北京", "上海", "深圳", "广州", "杭州", "南京", "天津", "成都"];
    let words = ["华电", "星海", "联创", "恒通", "远景", "新锐", "博达", "天瑞"];
    for first in (1..=n).step_by(CHUNK) {
        let last = (first + CHUNK - 1).min(n);
        let mut people = Vec::with_capacity(CHUNK);
        let mut assigned = Vec::with_capacity(CHUNK * 3);
        let mut history = Vec::with_capacity(CHUNK * 3);
        let mut members = Vec::with_capacity(CHUNK * 5);
        let mut values = Vec::with_capacity(CHUNK * 2);
        for id in first..=last {
            let code = format!("C{id:07}");
            let name =
                format!("{}{}科技有限公司{}", cities[random.below(8) as usize], words[random.below(8) as usize], id);
            let created = at - chrono::Duration::seconds((n - id) as i64);
            let mut snapshot = Vec::with_capacity(3);
            let mut picks = Vec::with_capacity(3);
            for ((_, leaves), (scheme_code, _, weights)) in category_ids.iter().zip(&spec) {
                let leaf = pick(weights, &mut random);
                picks.push(leaf);
                snapshot.push(serde_json::json!({"scheme": scheme_code, "category": leaves[leaf].1, "locked": 0, "assigned_at": created.format("%Y-%m-%d %H:%M:%S%.6f").to_string()}));
            }
            let credit_limit = random.below(CREDIT_LIMIT_MAX + 1) * 1000;
            let manager = account_manager(random.below(50));
            for (key, json, text, number) in [
                ("credit_limit", credit_limit.to_string(), None, Some(credit_limit as f64)),
                (
                    "account_manager",
                    serde_json::Value::String(manager.clone()).to_string(),
                    Some(manager.clone()),
                    None,
                ),
            ] {
                values.push((
                    customer_attributes::customer_id.eq(id as i64),
                    customer_attributes::attr_key.eq(key),
                    customer_attributes::customer_code.eq(code.clone()),
                    customer_attributes::value_json.eq(json),
                    customer_attributes::value_text.eq(text),
                    customer_attributes::value_number.eq(number),
                    customer_attributes::from_default.eq(false),
                ));
            }
            let attributes =
                serde_json::json!({"account_manager": [manager, false], "credit_limit": [credit_limit, false]});
            people.push((
                customers::id.eq(id as i64),
                customers::code.eq(code.clone()),
                customers::name.eq(name),
                customers::status.eq(if random.below(20) == 0 { "inactive" } else { "active" }),
                customers::classification.eq(serde_json::Value::Array(snapshot).to_string()),
                customers::attributes.eq(Some(attributes.to_string())),
                customers::version.eq(1i64),
                customers::created_at.eq(created),
                customers::updated_at.eq(created),
            ));
            let vector = ClassificationVector::of(
                category_ids
                    .iter()
                    .zip(&picks)
                    .map(|((scheme_id, leaves), leaf)| (*scheme_id, leaves[*leaf].1.as_str())),
            )
            .into_inner();
            for (((scheme_id, leaves), (scheme_code, _, _)), leaf) in category_ids.iter().zip(&spec).zip(picks) {
                let (category_id, category_code) = &leaves[leaf];
                assigned.push((
                    customer_categories::customer_id.eq(id as i64),
                    customer_categories::scheme_id.eq(*scheme_id),
                    customer_categories::category_id.eq(*category_id),
                    customer_categories::category_code.eq(category_code.clone()),
                    customer_categories::locked.eq(false),
                    customer_categories::assigned_at.eq(created),
                ));
                let parent = (category_code.len() == 4).then(|| category_code[..2].to_string());
                for member_of in parent.into_iter().chain(std::iter::once(category_code.clone())) {
                    members.push((
                        category_members::customer_id.eq(id as i64),
                        category_members::scheme_id.eq(*scheme_id),
                        category_members::category_code.eq(member_of),
                        category_members::customer_code.eq(code.clone()),
                        category_members::classification_vector.eq(vector.clone()),
                    ));
                }
                history.push((
                    assignment_history::customer_id.eq(id as i64),
                    assignment_history::customer_code.eq(code.clone()),
                    assignment_history::scheme_code.eq(*scheme_code),
                    assignment_history::to_category.eq(category_code.clone()),
                    assignment_history::at.eq(created),
                    assignment_history::actor.eq("bench"),
                    assignment_history::source.eq("import"),
                ));
            }
        }
        diesel::insert_into(customers::table).values(people).execute(&mut conn).unwrap();
        for chunk in assigned.chunks(CHUNK) {
            diesel::insert_into(customer_categories::table).values(chunk.to_vec()).execute(&mut conn).unwrap();
        }
        for chunk in members.chunks(CHUNK) {
            diesel::insert_into(category_members::table).values(chunk.to_vec()).execute(&mut conn).unwrap();
        }
        for chunk in history.chunks(CHUNK) {
            diesel::insert_into(assignment_history::table).values(chunk.to_vec()).execute(&mut conn).unwrap();
        }
        for chunk in values.chunks(CHUNK) {
            diesel::insert_into(customer_attributes::table).values(chunk.to_vec()).execute(&mut conn).unwrap();
        }
    }
    let mut counted = DbConnection::Mysql(conn);
    custclass::store::reporting::counts::recount(&mut counted).unwrap();
    let DbConnection::Mysql(mut conn) = counted else { unreachable!() };
    let seconds = started.elapsed().as_secs_f64();
    execute(
        &mut conn,
        "ANALYZE TABLE customers, customer_categories, category_members, customer_attributes, categories, schemes",
    );
    println!(
        "loaded {n} customers, {} assignments, {} history entries and {} attribute values in {seconds:.1} s ({:.0} customers/s with their rows)",
        n * 3,
        n * 3,
        n * 2,
        n as f64 / seconds
    );
}

/// Loads `n` customers into `database` unless it holds exactly that many already
/// (`BENCH_RELOAD=1` reloads anyway).
pub fn ensure_customers(database: &str, n: usize) {
    match existing_customers(database) {
        Some(count) if count == n as i64 && std::env::var("BENCH_RELOAD").is_err() => {
            println!("reusing {database} with {n} customers")
        }
        _ => load(database, n),
    }
}
