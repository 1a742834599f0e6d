//! Sales and classification benchmark on MariaDB: ten transactions per customer
//! loaded next to the customer archive, then over HTTP: ingestion in batches of
//! 1,000, and a full classification run of five rules (dry and applied), and beside it
//! a dry run of five relative rules (ABC by cumulative share, RFM scores), at
//! 1,000,000 customers and at 100,000 to show how the cost grows.
//!
//! Transactions posted by an earlier run of the bench are deleted first, so each run
//! measures against the same ten per customer, and the server writes what the load left
//! dirty before the measurements start.
//!
//! Run: `scripts/bench sales` (BENCH_CUSTOMERS for the large size, BENCH_RELOAD=1,
//! BENCH_ONLY=runs or BENCH_ONLY=ingestion; BENCH_SERVICE_BINARY to measure another
//! build, such as an earlier commit's, on the same data).

mod support;

use std::time::{Duration, Instant};

use custclass::db::schema::{customers, transactions};
use diesel::prelude::*;
use serde_json::{json, Value};
use support::archive::{ensure_customers, Count, Random, DATABASE};
use support::{connect, execute, Service, ADMIN_KEY};

const TRANSACTIONS_PER_CUSTOMER: u64 = 10;
const INGEST_BATCH: usize = 1000;
const INGEST_BATCHES: usize = 1000;
const INGEST_CLIENTS: usize = 4;

fn count(database: &str, sql: &str) -> i64 {
    let mut conn = connect(Some(database));
    diesel::sql_query(sql).get_result::<Count>(&mut conn).map(|c| c.n).unwrap_or(0)
}

/// Ten transactions per customer over the last two years, amounts 0.01–20,000.00,
/// one in twenty a refund; loaded straight into the table. Whether it loaded them.
fn ensure_transactions(database: &str, n: usize) -> bool {
    let wanted = n as i64 * TRANSACTIONS_PER_CUSTOMER as i64;
    let loaded = count(database, "SELECT COUNT(*) AS n FROM transactions WHERE batch_id = 'bench-load'");
    if loaded == wanted && std::env::var("BENCH_RELOAD").is_err() {
        println!("reusing {loaded} transactions in {database}");
        return false;
    }
    let mut conn = connect(Some(database));
    execute(&mut conn, "DELETE FROM transactions");
    execute(&mut conn, "SET SESSION foreign_key_checks = 0");
    execute(&mut conn, "SET SESSION unique_checks = 0");
    let now = custclass::db::now();
    let ids: Vec<i64> = customers::table.select(customers::id).order(customers::id).load(&mut conn).unwrap();
    let mut random = Random(0x5_a1e5_2026);
    let started = Instant::now();
    let mut rows = Vec::with_capacity(10_000);
    let mut serial = 0u64;
    for id in ids {
        for _ in 0..TRANSACTIONS_PER_CUSTOMER {
            serial += 1;
            let cents = 1 + random.below(2_000_000) as i64;
            let amount = if random.below(20) == 0 { -cents / 10 } else { cents };
            let occurred = now - chrono::Duration::seconds(random.below(730 * 86_400) as i64);
            rows.push((
                transactions::external_id.eq(format!("LOAD-{serial:010}")),
                transactions::customer_id.eq(id),
                transactions::amount_cents.eq(amount),
                transactions::occurred_at.eq(occurred),
                transactions::received_at.eq(now),
                transactions::batch_id.eq("bench-load"),
            ));
            if rows.len() == 10_000 {
                diesel::insert_into(transactions::table).values(std::mem::take(&mut rows)).execute(&mut conn).unwrap();
            }
        }
    }
    if !rows.is_empty() {
        diesel::insert_into(transactions::table).values(rows).execute(&mut conn).unwrap();
    }
    execute(&mut conn, "ANALYZE TABLE transactions");
    println!("loaded {serial} transactions into {database} in {:.1} s", started.elapsed().as_secs_f64());
    true
}

/// Deletes what earlier ingestion measurements posted, so that every bench run
/// measures against the same ten transactions per customer. Whether there were any.
fn forget_ingested(database: &str) -> bool {
    let mut conn = connect(Some(database));
    let delete = "DELETE FROM transactions WHERE external_id >= 'BENCH-' AND external_id < 'BENCH.' LIMIT 100000";
    let mut forgot = false;
    while diesel::sql_query(delete).execute(&mut conn).unwrap_or_else(|e| panic!("{delete}: {e}")) > 0 {
        forgot = true;
    }
    forgot
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut request = self.http.request(method, format!("{}/api/v1{path}", self.base)).bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// Replaces whatever rules TIER has.
async fn replace_rules(client: &Client, rules: Vec<Value>) {
    let existing = client.send(reqwest::Method::GET, "/schemes/TIER/rules", None).await;
    for rule in existing["items"].as_array().unwrap() {
        client.send(reqwest::Method::DELETE, &format!("/schemes/TIER/rules/{}", rule["id"]), None).await;
    }
    for rule in rules {
        client.send(reqwest::Method::POST, "/schemes/TIER/rules", Some(&rule)).await;
    }
}

/// Five rules ranking customers against everyone: RFM champions, ABC by cumulative
/// share of spend, RFM at-risk, and the rest.
fn relative_rules() -> Vec<Value> {
    vec![
        json!({"name": "重要价值客户", "target_category": "01", "priority": 5, "condition": {"field": "rfm", "op": "in", "value": ["555", "554", "545", "544", "455", "454"]}}),
        json!({"name": "A类客户", "target_category": "01", "priority": 10, "condition": {"field": "cumulative_share(spend_12m)", "op": "<=", "value": 80}}),
        json!({"name": "B类客户", "target_category": "02", "priority": 20, "condition": {"field": "cumulative_share(spend_12m)", "op": "<=", "value": 95}}),
        json!({"name": "流失风险", "target_category": "03", "priority": 30, "condition": {"all": [{"field": "rfm_r", "op": "<=", "value": 2}, {"field": "rfm_f", "op": "<=", "value": 2}]}}),
        json!({"name": "C类客户", "target_category": "03", "priority": 40, "condition": {"field": "percentile(spend_12m)", "op": ">=", "value": 0}}),
    ]
}

/// The five rules of the example, replacing whatever rules TIER has.
async fn five_rules(client: &Client) {
    let rules = vec![
        json!({"name": "华北高额度客户", "target_category": "01", "priority": 5,
               "condition": {"all": [{"field": "category.REGION", "op": "under", "value": "01"}, {"field": "attr.credit_limit", "op": ">=", "value": 9000000}]}}),
        json!({"name": "年消费超过10万", "target_category": "01", "priority": 10, "condition": {"field": "spend_12m", "op": ">=", "value": "100000.00"}}),
        json!({"name": "常购客户", "target_category": "02", "priority": 20, "condition": {"field": "orders_12m", "op": ">=", "value": 6}}),
        json!({"name": "180天无订单", "target_category": "03", "priority": 30,
               "condition": {"any": [{"field": "days_since_last_order", "op": ">", "value": 180}, {"field": "last_order_at", "op": "is_null", "value": true}]}}),
        json!({"name": "有消费", "target_category": "02", "priority": 40, "condition": {"field": "lifetime_spend", "op": ">", "value": 0}}),
    ];
    replace_rules(client, rules).await;
}

async fn timed_run(client: &Client, dry_run: bool) -> (Duration, Value) {
    let started = Instant::now();
    let run = client
        .send(reqwest::Method::POST, "/schemes/TIER/classification-runs", Some(&json!({"dry_run": dry_run})))
        .await;
    (started.elapsed(), run)
}

/// `INGEST_BATCHES` batches of `INGEST_BATCH` new transactions from `INGEST_CLIENTS` clients at once.
async fn ingest(client: &Client, customers: usize) -> (usize, Duration) {
    let tag = chrono::Utc::now().timestamp_millis();
    let now = chrono::Utc::now().to_rfc3339();
    let bodies: Vec<Value> = (0..INGEST_BATCHES)
        .map(|batch| {
            let items: Vec<Value> = (0..INGEST_BATCH)
                .map(|i| {
                    let serial = batch * INGEST_BATCH + i;
                    json!({"external_id": format!("BENCH-{tag}-{serial}"), "customer_code": format!("C{:07}", 1 + (serial * 7919) % customers),
                           "amount": format!("{}.{:02}", 1 + serial % 5000, serial % 100), "occurred_at": now})
                })
                .collect();
            Value::Array(items)
        })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let workers: Vec<_> = (0..INGEST_CLIENTS)
        .map(|_| {
            let queue = queue.clone();
            let client = Client { http: client.http.clone(), base: client.base.clone() };
            tokio::spawn(async move {
                let mut created = 0;
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else { break };
                    let result = client.send(reqwest::Method::POST, "/transactions", Some(&body)).await;
                    created += result["created"].as_u64().unwrap() as usize;
                }
                created
            })
        })
        .collect();
    let mut created = 0;
    for worker in workers {
        created += worker.await.unwrap();
    }
    (created, started.elapsed())
}

/// The million-customer archive is the one the other benches share; other sizes
/// have their own database, so that measuring them leaves it alone.
fn database_for(customers: usize) -> String {
    if customers == 1_000_000 {
        DATABASE.to_string()
    } else {
        format!("{DATABASE}_{customers}")
    }
}

/// BENCH_ONLY=runs or BENCH_ONLY=ingestion measures only that part.
fn wanted(part: &str) -> bool {
    std::env::var("BENCH_ONLY").ok().is_none_or(|only| part.contains(&only))
}

async fn measure(n: usize, database: &str, port: u16, with_ingestion: bool) {
    ensure_customers(database, n);
    let loaded = ensure_transactions(database, n);
    let forgot = forget_ingested(database);
    support::ensure_sales_totals(database, loaded || forgot);
    support::settle();
    let service = Service::start(database, port);
    let client = Client {
        http: reqwest::Client::builder().timeout(Duration::from_secs(1800)).build().unwrap(),
        base: service.base.clone(),
    };
    println!("\n{n} customers, {} transactions:", n as u64 * TRANSACTIONS_PER_CUSTOMER);
    if wanted("runs") {
        classification_runs(&client).await;
    }
    if with_ingestion && wanted("ingestion") {
        let (created, elapsed) = ingest(&client, n).await;
        println!(
            "  ingestion: {created} transactions in batches of {INGEST_BATCH} from {INGEST_CLIENTS} clients in {:.1} s = {:.0} transactions/s",
            elapsed.as_secs_f64(),
            created as f64 / elapsed.as_secs_f64()
        );
    }
    if let Some(rss) = service.resident_memory() {
        println!("  service memory: {rss}");
    }
}

/// The five rules on TIER: a dry run, then the five relative rules (ABC + RFM) dry
/// beside it, then the five rules applied, and the same applied again.
async fn classification_runs(client: &Client) {
    five_rules(client).await;
    let (dry, report) = timed_run(client, true).await;
    println!(
        "  dry run: {:.1} s (evaluated {}, would change {}, unchanged {}, skipped locked {}, inactive {})",
        dry.as_secs_f64(),
        report["evaluated"],
        report["changed"],
        report["unchanged"],
        report["skipped_locked"],
        report["skipped_inactive"]
    );
    replace_rules(client, relative_rules()).await;
    let (relative, report) = timed_run(client, true).await;
    println!(
        "  dry run of ABC + RFM rules: {:.1} s = {:.2}× the five-rule dry run (would change {}), transitions {}",
        relative.as_secs_f64(),
        relative.as_secs_f64() / dry.as_secs_f64(),
        report["changed"],
        report["transitions"]
    );
    five_rules(client).await;
    let (applied, report) = timed_run(client, false).await;
    println!(
        "  applied: {:.1} s (changed {}, rejected {}), transitions {}",
        applied.as_secs_f64(),
        report["changed"],
        report["rejected"],
        report["transitions"]
    );
    let (again, report) = timed_run(client, false).await;
    println!("  applied again: {:.1} s (changed {})", again.as_secs_f64(), report["changed"]);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    support::require_server_sizing();
    measure(n, &database_for(n), 18192, true).await;
    if wanted("runs") {
        let small = n / 10;
        measure(small, &database_for(small), 18193, false).await;
    }
}
