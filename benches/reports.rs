//! Reports benchmark on MariaDB: 1,000,000 customers in three schemes (the archive
//! of `scripts/bench customers`, taken in a year before), 10,000,000 transactions
//! and 1,000,000 moves in TIER, both over the last two years (about 125,000 moves a
//! quarter); then each report with wrk at one
//! connection (a report is one person's request), and the service's memory while
//! it writes .xlsx workbooks.
//!
//! Run: `scripts/bench reports` (BENCH_CUSTOMERS, BENCH_SECONDS, BENCH_RELOAD=1, BENCH_ONLY;
//! `BENCH_ONLY=sales` for the sales report by category and its memory alone).

mod support;

use std::time::Instant;

use diesel::prelude::*;
use support::archive::{ensure_customers, Count, DATABASE};
use support::{connect, execute, report, report_header, wrk, Service, ADMIN_KEY};

const TRANSACTIONS: i64 = 10_000_000;
const MOVES: i64 = 1_000_000;
const MOVER: &str = "bench-moves";

fn customers_wanted() -> usize {
    std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn count(conn: &mut MysqlConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).map(|c| c.n).unwrap_or(0)
}

/// TIER ordered with ranks, 10 million sales and a quarter of moves, unless there already.
fn ensure_sales_and_moves(n: usize) {
    let mut conn = connect(Some(DATABASE));
    execute(&mut conn, "UPDATE schemes SET ordered = TRUE WHERE code = 'TIER'");
    execute(&mut conn, "UPDATE categories c JOIN schemes s ON s.id = c.scheme_id AND s.code = 'TIER' SET c.tier_rank = 4 - CAST(c.code AS SIGNED)");
    let first_id = count(&mut conn, "SELECT CAST(MIN(id) AS SIGNED) AS n FROM customers");
    // The archive was taken in a year before the quarter the moves fill, as a real one
    // would have been: its customers and their first categories date from then.
    if count(&mut conn, "SELECT COUNT(*) AS n FROM customers WHERE created_at > UTC_TIMESTAMP() - INTERVAL 180 DAY") > 0
    {
        execute(
            &mut conn,
            "UPDATE customers SET created_at = created_at - INTERVAL 1 YEAR, updated_at = updated_at - INTERVAL 1 YEAR",
        );
        execute(
            &mut conn,
            &format!("UPDATE assignment_history SET at = at - INTERVAL 1 YEAR WHERE actor <> '{MOVER}'"),
        );
    }
    let reload_sales = count(&mut conn, "SELECT COUNT(*) AS n FROM transactions") != TRANSACTIONS;
    if reload_sales {
        let started = Instant::now();
        execute(&mut conn, "TRUNCATE TABLE transactions");
        for block in 0..TRANSACTIONS / 1_000_000 {
            let from = block * 1_000_000;
            execute(
                &mut conn,
                &format!(
                    "INSERT INTO transactions (external_id, customer_id, amount_cents, occurred_at, received_at, batch_id) \
                     SELECT CONCAT('BENCH-', seq), {first_id} + (seq * 7919) % {n}, 100 + (seq * 104729) % 2000000, \
                     UTC_TIMESTAMP() - INTERVAL (seq % 730) DAY - INTERVAL (seq % 86400) SECOND, UTC_TIMESTAMP(), 'bench' \
                     FROM seq_{from}_to_{}",
                    from + 999_999
                ),
            );
        }
        println!("loaded {TRANSACTIONS} transactions in {:.1} s", started.elapsed().as_secs_f64());
    }
    let spread = count(&mut conn, &format!("SELECT COUNT(*) AS n FROM assignment_history WHERE actor = '{MOVER}' AND at < UTC_TIMESTAMP() - INTERVAL 300 DAY"));
    if count(&mut conn, &format!("SELECT COUNT(*) AS n FROM assignment_history WHERE actor = '{MOVER}'")) != MOVES
        || spread == 0
    {
        let started = Instant::now();
        execute(&mut conn, &format!("DELETE FROM assignment_history WHERE actor = '{MOVER}'"));
        for block in 0..MOVES / 100_000 {
            let from = block * 100_000;
            execute(
                &mut conn,
                &format!(
                    "INSERT INTO assignment_history (customer_id, customer_code, scheme_code, from_category, to_category, at, actor, source, direction) \
                     SELECT c.id, c.code, 'TIER', CONCAT('0', 1 + s.seq % 3), CONCAT('0', 1 + (s.seq + 1 + s.seq DIV 3 % 2) % 3), \
                     UTC_TIMESTAMP() - INTERVAL (s.seq % 730) DAY - INTERVAL (s.seq % 86400) SECOND, '{MOVER}', 'rule', \
                     CASE WHEN 1 + s.seq % 3 < 1 + (s.seq + 1 + s.seq DIV 3 % 2) % 3 THEN 'down' ELSE 'up' END \
                     FROM seq_{from}_to_{} s JOIN customers c ON c.id = {first_id} + (s.seq * 7919) % {n}",
                    from + 99_999
                ),
            );
        }
        println!(
            "wrote {MOVES} history entries (moves in TIER over the last two years) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    support::ensure_sales_totals(DATABASE, reload_sales);
    execute(
        &mut conn,
        "ANALYZE TABLE transactions, assignment_history, category_counts, customer_counts, sales_totals",
    );
    support::settle();
}

fn lua_get(path: &str, accept: &str) -> String {
    format!("request = function()\n  return wrk.format(\"GET\", \"{path}\", {{[\"Authorization\"] = \"Bearer {ADMIN_KEY}\", [\"Accept\"] = \"{accept}\"}})\nend\n")
}

fn main() {
    support::require_server_sizing();
    let n = customers_wanted();
    ensure_customers(DATABASE, n);
    ensure_sales_and_moves(n);
    let seconds: u32 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let service = Service::start(DATABASE, 18090);
    let today = chrono::Utc::now().date_naive();
    let quarter = format!("from={}&to={today}", today - chrono::Duration::days(90));
    let as_of = today - chrono::Duration::days(60);
    // The last whole calendar quarter, by month.
    let this_quarter = chrono::NaiveDate::from_ymd_opt(
        chrono::Datelike::year(&today),
        chrono::Datelike::month0(&today) / 3 * 3 + 1,
        1,
    )
    .expect("a quarter's first day");
    let last_quarter = format!(
        "from={}&to={}",
        this_quarter - chrono::Months::new(3),
        this_quarter.pred_opt().expect("the day before")
    );
    let json = "application/json";
    let scenarios: Vec<(&str, String)> = vec![
        ("distribution, counts (target p50 ≤ 50 ms)", "/api/v1/reports/distribution?scheme=TIER".into()),
        ("category tree with counts (target p50 ≤ 50 ms)", "/api/v1/schemes/REGION/categories/tree".into()),
        (
            "distribution, one category filter (target ≤ 500 ms)",
            "/api/v1/reports/distribution?scheme=TIER&category=REGION:01".into(),
        ),
        ("cross-tab INDUSTRY × TIER (target ≤ 1 s)", "/api/v1/reports/crosstab?rows=INDUSTRY&cols=TIER".into()),
        (
            "distribution with 3 measures (target ≤ 3 s)",
            "/api/v1/reports/distribution?scheme=TIER&measures=spend_12m,orders_12m,lifetime_spend".into(),
        ),
        (
            "cross-tab with a measure, one filter (target ≤ 3 s)",
            "/api/v1/reports/crosstab?rows=INDUSTRY&cols=TIER&measures=spend_12m&category=REGION:01".into(),
        ),
        (
            "transitions over a quarter, net (target ≤ 1 s)",
            format!("/api/v1/reports/transitions?scheme=TIER&{quarter}"),
        ),
        (
            "transitions over a quarter, moves (target ≤ 1 s)",
            format!("/api/v1/reports/transitions?scheme=TIER&{quarter}&basis=moves"),
        ),
        (
            "downgraded from VIP this quarter, first page",
            format!("/api/v1/reports/transitions/customers?scheme=TIER&{quarter}&from_category=01&direction=down"),
        ),
        (
            "as_of distribution, 60 days ago (target ≤ 3 s)",
            format!("/api/v1/reports/distribution?scheme=TIER&as_of={as_of}"),
        ),
        (
            "as_of distribution with 3 measures, 60 days ago (target ≤ 3 s)",
            format!(
                "/api/v1/reports/distribution?scheme=TIER&as_of={as_of}&measures=spend_12m,orders_12m,lifetime_spend"
            ),
        ),
        ("as_of cross-tab, 60 days ago", format!("/api/v1/reports/crosstab?rows=INDUSTRY&cols=TIER&as_of={as_of}")),
        (
            "sales by category at sale, a quarter by month (target ≤ 3 s)",
            format!("/api/v1/reports/sales?scheme=TIER&{last_quarter}&interval=month&basis=at_sale"),
        ),
        (
            "sales by category now, a quarter by month",
            format!("/api/v1/reports/sales?scheme=TIER&{last_quarter}&interval=month&basis=current"),
        ),
    ];
    println!("\n{n} customers, {TRANSACTIONS} transactions, {MOVES} moves; wrk -c1 for {seconds} s each\n");
    report_header();
    // BENCH_ONLY=text runs only the scenarios whose name contains it ("xlsx": the memory one).
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| name.contains(only));
    // The service's memory is sampled over every scenario run, so that `BENCH_ONLY=sales`
    // gives the peak of the sales report alone.
    let memory = support::PeakMemory::sample(service.pid());
    for (name, path) in scenarios.iter().filter(|(name, _)| wanted(name)) {
        report(name, &wrk(&service.base, 1, seconds, &lua_get(path, json)));
    }
    println!("\npeak service RSS over these scenarios: {:.1} MB (target ≤ 150 MB for the sales report)", memory.stop());
    if !wanted("xlsx") {
        return;
    }

    // Memory while writing workbooks: the largest report (the cross-tab with every
    // measure) as .xlsx, over and over, with the resident set sampled meanwhile.
    let memory = support::PeakMemory::sample(service.pid());
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let load = wrk(&service.base, 4, seconds, &lua_get("/api/v1/reports/crosstab?rows=REGION&cols=INDUSTRY&rows_depth=2&cols_depth=2&measures=spend_12m,orders_12m,lifetime_spend&category=REGION:01", xlsx));
    let peak = memory.stop();
    report("cross-tab 30 × 10 with 3 measures as .xlsx, 4 connections", &load);
    println!("\npeak service RSS while exporting .xlsx: {peak:.1} MB (target ≤ 100 MB)");
}
