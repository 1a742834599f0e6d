//! Customer archive benchmark on MariaDB: load N customers (default 1,000,000) with
//! three schemes, then measure point reads, filtered lists and deep pages with wrk
//! at 32 connections, next to a bare actix-web + Diesel endpoint as the baseline.
//!
//! Run: `scripts/bench customers` (BENCH_CUSTOMERS, BENCH_SECONDS, BENCH_RELOAD=1).
//!
//! With BENCH_CLUSTER=1, on the three-node Galera cluster of `scripts/cluster` instead
//! (100,000 customers unless BENCH_CUSTOMERS says otherwise, loaded through node 1):
//! point reads through one replica on one node, next to three replicas, each on its
//! own node, sharing the same 32 connections. All of it shares this one machine.

mod support;

use base64::Engine;
use custclass::db::schema::customers;
use diesel::prelude::*;
use support::archive::{account_manager, ensure_customers, DATABASE};
use support::{connect, report, report_header, wrk, wrk_spread, Service, ADMIN_KEY};

#[derive(QueryableByName)]
struct Code {
    #[diesel(sql_type = diesel::sql_types::Text)]
    code: String,
}

fn cursor_after_code(code: &str) -> String {
    let json = serde_json::json!({"sort": "code", "code": code, "name": null, "created_at": null, "id": null});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

/// The code after which page `page` (of `limit`) of a list filtered to `prefix` of INDUSTRY starts.
fn deep_page_cursor(page: usize, limit: usize, industry_prefix: Option<&str>) -> String {
    let mut conn = connect(Some(DATABASE));
    let offset = (page - 1) * limit - 1;
    let sql = match industry_prefix {
        None => format!("SELECT code FROM customers ORDER BY code LIMIT 1 OFFSET {offset}"),
        Some(prefix) => format!(
            "SELECT c.code FROM customers c JOIN customer_categories cc ON cc.customer_id = c.id \
             JOIN schemes s ON s.id = cc.scheme_id AND s.code = 'INDUSTRY' \
             WHERE cc.category_code >= '{prefix}' AND cc.category_code < '{prefix}{{' ORDER BY c.code LIMIT 1 OFFSET {offset}"
        ),
    };
    let code = diesel::sql_query(sql).get_result::<Code>(&mut conn).expect("the list has that many pages").code;
    cursor_after_code(&code)
}

fn lua_get(path_expression: &str) -> String {
    lua_get_of(customers_wanted(), path_expression)
}

fn lua_get_of(n: usize, path_expression: &str) -> String {
    lua_get_with(n, ADMIN_KEY, path_expression)
}

fn lua_get_with(n: usize, key: &str, path_expression: &str) -> String {
    format!("local N = {n}\nrequest = function()\n  return wrk.format(\"GET\", {path_expression}, {{[\"Authorization\"] = \"Bearer {key}\"}})\nend\n")
}

/// A read key restricted to `restrict` (record-level permission), made through the API.
fn restricted_key(base: &str, restrict: serde_json::Value) -> String {
    let body = serde_json::json!({"name": format!("bench-restricted-{}", uuid::Uuid::new_v4().simple()), "scope": "read", "restrict": restrict});
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {ADMIN_KEY}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .arg(format!("{base}/api/v1/api-keys"))
        .output()
        .expect("run curl");
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the key is created");
    created["secret"].as_str().unwrap_or_else(|| panic!("no key: {created}")).to_string()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn customers_wanted() -> usize {
    std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// The baseline: a bare actix-web endpoint reading one customer row by code through Diesel.
fn start_baseline(port: u16) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use diesel::r2d2::{ConnectionManager, Pool};

    type MysqlPool = Pool<ConnectionManager<MysqlConnection>>;
    async fn by_code(pool: web::Data<MysqlPool>, code: web::Path<String>) -> HttpResponse {
        let pool = pool.get_ref().clone();
        let row = web::block(move || {
            let mut conn = pool.get().unwrap();
            customers::table
                .filter(customers::code.eq(code.into_inner()))
                .select((customers::id, customers::code, customers::name))
                .first::<(i64, String, String)>(&mut conn)
                .optional()
        })
        .await;
        match row {
            Ok(Ok(Some((id, code, name)))) => {
                HttpResponse::Ok().json(serde_json::json!({"id": id, "code": code, "name": name}))
            }
            _ => HttpResponse::NotFound().finish(),
        }
    }
    let url = format!("{}/{DATABASE}", support::server_url());
    std::thread::spawn(move || {
        let pool: MysqlPool =
            Pool::builder().max_size(32).test_on_check_out(false).build(ConnectionManager::new(url)).unwrap();
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new().app_data(web::Data::new(pool.clone())).route("/c/{code}", web::get().to(by_code))
            })
            .bind(("127.0.0.1", port))
            .unwrap()
            .run()
            .await
            .unwrap()
        })
    });
    support::wait_for(&format!("http://127.0.0.1:{port}/c/C0000001"));
}

/// The cluster nodes `scripts/cluster` starts.
const CLUSTER_NODES: [&str; 3] =
    ["mysql://root@127.0.0.1:13306", "mysql://root@127.0.0.1:13307", "mysql://root@127.0.0.1:13308"];

fn cluster_main(seconds: u32) {
    let n = std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    ensure_customers(DATABASE, n);
    support::settle();
    let replicas: Vec<Service> =
        CLUSTER_NODES.iter().enumerate().map(|(i, node)| Service::start_on(node, DATABASE, 18195 + i as u16)).collect();
    println!(
        "\n{n} customers on a three-node Galera cluster, wrk with 32 connections in all, on this machine ({} cores)\n",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0)
    );
    report_header();
    let lua = lua_get_of(n, "string.format(\"/api/v1/customers/C%07d\", math.random(1, N))");
    report("GET /customers/{code}: one replica on node 1", &wrk(&replicas[0].base, 32, seconds, &lua));
    let bases: Vec<&str> = replicas.iter().map(|r| r.base.as_str()).collect();
    report("GET /customers/{code}: three replicas on three nodes", &wrk_spread(&bases, 32, seconds, &lua));
    let lists = lua_get_of(n, "\"/api/v1/customers?category=REGION:01&category=TIER:01\"");
    report("list REGION:01 AND TIER:01: one replica on node 1", &wrk(&replicas[0].base, 32, seconds, &lists));
    report("list REGION:01 AND TIER:01: three replicas on three nodes", &wrk_spread(&bases, 32, seconds, &lists));
}

fn main() {
    let seconds: u32 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    if std::env::var("BENCH_CLUSTER").is_ok() {
        return cluster_main(seconds);
    }
    let n = customers_wanted();
    support::require_server_sizing();
    ensure_customers(DATABASE, n);

    start_baseline(18191);
    let service = Service::start(DATABASE, 18190);
    println!(
        "\n{n} customers, wrk -t2 -c32 -d{seconds}s on this machine ({} cores)\n",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0)
    );
    report_header();
    // BENCH_ONLY=text runs only the scenarios whose name contains it.
    let only = std::env::var("BENCH_ONLY").ok();
    let scenario = |name: &str, base: &str, path: &str| {
        if only.as_deref().is_none_or(|only| name.contains(only)) {
            report(name, &wrk(base, 32, seconds, &lua_get(path)));
        }
    };
    let service_base = service.base.as_str();
    scenario(
        "baseline: bare actix-web + Diesel, one row by code",
        "http://127.0.0.1:18191",
        "string.format(\"/c/C%07d\", math.random(1, N))",
    );
    scenario(
        "GET /customers/{code} (random of all)",
        service_base,
        "string.format(\"/api/v1/customers/C%07d\", math.random(1, N))",
    );
    scenario(
        "list: REGION:01 (subtree) AND TIER:01, first page",
        service_base,
        "\"/api/v1/customers?category=REGION:01&category=TIER:01\"",
    );
    scenario(
        "list: INDUSTRY:01 (subtree) AND REGION:0101, first page",
        service_base,
        "\"/api/v1/customers?category=INDUSTRY:01&category=REGION:0101\"",
    );
    scenario("list: all, sort=code, page 1", service_base, "\"/api/v1/customers?limit=50\"");
    // Page 10,000 at a million customers; halfway through a smaller archive.
    let deep_page = (n / 100).clamp(2, 10_000);
    let deep = format!("\"/api/v1/customers?limit=50&cursor={}\"", deep_page_cursor(deep_page, 50, None));
    scenario(&format!("list: all, sort=code, page {deep_page}"), service_base, &deep);
    scenario("list: INDUSTRY:01, page 1", service_base, "\"/api/v1/customers?limit=50&category=INDUSTRY:01\"");
    let deep_filtered = format!(
        "\"/api/v1/customers?limit=50&category=INDUSTRY:01&cursor={}\"",
        deep_page_cursor(deep_page, 50, Some("01"))
    );
    scenario(&format!("list: INDUSTRY:01, page {deep_page}"), service_base, &deep_filtered);
    scenario(
        "list: attr credit_limit >= 9,000,000 (~10 %), first page",
        service_base,
        "\"/api/v1/customers?attr=credit_limit:gte:9000000\"",
    );
    let manager = format!("\"/api/v1/customers?attr=account_manager:eq:{}\"", percent_encode(&account_manager(7)));
    scenario("list: attr account_manager = one of 50 names, first page", service_base, &manager);
    scenario(
        "list: TIER:01 AND attr credit_limit >= 5,000,000, first page",
        service_base,
        "\"/api/v1/customers?category=TIER:01&attr=credit_limit:gte:5000000\"",
    );
    // Record-level permission: a key restricted to every REGION root sees every customer
    // (so the same answers as above, with the check made); one restricted to REGION 01
    // lists what `category=REGION:01` lists.
    if only.as_deref().is_none_or(|only| "restricted key".contains(only)) {
        let everywhere =
            restricted_key(service_base, serde_json::json!({"REGION": ["01", "02", "03", "04", "05", "06"]}));
        let path = "string.format(\"/api/v1/customers/C%07d\", math.random(1, N))";
        report(
            "restricted key (every REGION root): GET /customers/{code}",
            &wrk(service_base, 32, seconds, &lua_get_with(n, &everywhere, path)),
        );
        let north = restricted_key(service_base, serde_json::json!({"REGION": ["01"]}));
        report(
            "restricted key (REGION 01): list TIER:01, first page",
            &wrk(service_base, 32, seconds, &lua_get_with(n, &north, "\"/api/v1/customers?category=TIER:01\"")),
        );
    }
    if let Some(rss) = service.resident_memory() {
        println!("\nservice memory after the runs: {rss}");
    }
}
