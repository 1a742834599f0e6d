//! What the benchmarks share: the MariaDB bench database, the service as a child
//! process, and wrk as the load generator on the same machine.

// Each benchmark uses its part of this module.
#![allow(dead_code)]

pub mod archive;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, MysqlConnection, RunQueryDsl};

pub const ADMIN_KEY: &str = "bench-admin-key-0123456789";

pub fn server_url() -> String {
    std::env::var("BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
        .trim_end_matches('/')
        .to_string()
}

pub fn connect(database: Option<&str>) -> MysqlConnection {
    let url = match database {
        Some(name) => format!("{}/{name}", server_url()),
        None => server_url(),
    };
    MysqlConnection::establish(&url).unwrap_or_else(|e| panic!("MariaDB at {url}: {e} (scripts/bench starts it)"))
}

/// Brings the schema up to date and, when `reloaded` or when they lag behind today,
/// sums the sales totals again, as the service would have kept them had the bench's
/// transactions come through it (the benches load them straight into the table).
pub fn ensure_sales_totals(database: &str, reloaded: bool) {
    let mut conn = custclass::db::DbConnection::Mysql(connect(Some(database)));
    custclass::db::migrate(&mut conn).unwrap();
    let today = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap();
    if !reloaded && custclass::store::archive::sales_totals::anchor(&mut conn).unwrap() == today {
        return;
    }
    let started = Instant::now();
    custclass::store::archive::sales_totals::rebuild(&mut conn).unwrap();
    println!("summed the sales totals of {database} in {:.1} s", started.elapsed().as_secs_f64());
}

pub fn execute(conn: &mut MysqlConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(diesel::QueryableByName)]
struct Sizing {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sized: i64,
}

/// Stops the bench unless the server started with a buffer pool that holds the
/// working set (8 GiB) and a 2 GiB redo log, as a production server would. A pool
/// grown with SET GLOBAL does not count: MariaDB sizes its page hash at start, and
/// a grown pool walks long hash chains on every page access (it halved ingestion).
pub fn require_server_sizing() {
    let mut conn = connect(None);
    let check = "SELECT COUNT(*) AS sized FROM information_schema.SYSTEM_VARIABLES \
                 WHERE (VARIABLE_NAME = 'INNODB_BUFFER_POOL_SIZE' AND GLOBAL_VALUE >= 8 * 1024 * 1024 * 1024 AND GLOBAL_VALUE_ORIGIN <> 'SQL') \
                    OR (VARIABLE_NAME = 'INNODB_LOG_FILE_SIZE' AND GLOBAL_VALUE >= 2 * 1024 * 1024 * 1024)";
    let sized = diesel::sql_query(check).get_result::<Sizing>(&mut conn).map(|row| row.sized).unwrap_or(0);
    assert_eq!(sized, 2, "the bench needs MariaDB started with --innodb-buffer-pool-size=8G --innodb-log-file-size=2G (scripts/bench restarts the local server so)");
}

#[derive(diesel::QueryableByName)]
struct Dirty {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pages: i64,
}

/// Waits (at most three minutes) until the server has written the pages a load left
/// dirty, so that a measurement does not share the machine with that flushing.
pub fn settle() {
    let mut conn = connect(None);
    let dirty = |conn: &mut MysqlConnection| {
        diesel::sql_query("SELECT CAST(VARIABLE_VALUE AS SIGNED) AS pages FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
            .get_result::<Dirty>(conn)
            .map(|row| row.pages)
            .unwrap_or(0)
    };
    let started = Instant::now();
    let before = dirty(&mut conn);
    execute(&mut conn, "SET @bench_dirty_pct = @@GLOBAL.innodb_max_dirty_pages_pct, @bench_io = @@GLOBAL.innodb_io_capacity, @bench_io_max = @@GLOBAL.innodb_io_capacity_max");
    execute(
        &mut conn,
        "SET GLOBAL innodb_io_capacity_max = 100000, innodb_io_capacity = 50000, innodb_max_dirty_pages_pct = 0",
    );
    while dirty(&mut conn) > 1000 && started.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(500));
    }
    execute(&mut conn, "SET GLOBAL innodb_max_dirty_pages_pct = @bench_dirty_pct, innodb_io_capacity = @bench_io, innodb_io_capacity_max = @bench_io_max");
    println!(
        "settled: {before} dirty pages written down to {} in {:.0} s",
        dirty(&mut conn),
        started.elapsed().as_secs_f64()
    );
}

/// The service, built in release mode with the bench, serving `database`.
pub struct Service {
    child: Child,
    pub base: String,
}

impl Service {
    pub fn start(database: &str, port: u16) -> Self {
        Self::start_on(&server_url(), database, port)
    }

    /// A service on the server at `server` (`mysql://user@host:port`).
    pub fn start_on(server: &str, database: &str, port: u16) -> Self {
        // BENCH_SERVICE_BINARY runs another build (an earlier commit's) against the same data.
        let binary =
            std::env::var("BENCH_SERVICE_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_custclass").to_string());
        let child = Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", format!("{server}/{database}"))
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("CUSTCLASS_ADMIN_KEY", ADMIN_KEY)
            .env("DB_POOL_SIZE", std::env::var("BENCH_POOL_SIZE").unwrap_or_else(|_| "4".into()))
            .env("RUST_LOG", "warn")
            // The benches' webhook receivers are on 127.0.0.1.
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .stdout(Stdio::null())
            .spawn()
            .expect("start custclass");
        let base = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{base}/readyz"));
        Self { child, base }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service's resident memory as the kernel reports it ("105624 kB").
    pub fn resident_memory(&self) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|line| line.strip_prefix("VmRSS:")).map(|rss| rss.trim().to_string())
    }
}

/// The service's peak resident memory while it is sampled (every 20 ms).
pub struct PeakMemory {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    peak_kb: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: std::thread::JoinHandle<()>,
}

impl PeakMemory {
    pub fn sample(pid: u32) -> Self {
        use std::sync::atomic::Ordering;
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let peak_kb = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let status = format!("/proc/{pid}/status");
        let sampler = {
            let (running, peak_kb) = (running.clone(), peak_kb.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    let rss = std::fs::read_to_string(&status).ok().and_then(|s| {
                        s.lines().find_map(|line| {
                            line.strip_prefix("VmRSS:")
                                .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0))
                        })
                    });
                    if let Some(kb) = rss {
                        peak_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self { running, peak_kb, sampler }
    }

    /// Stops sampling; the peak in MB.
    /// The peak so far, in MB.
    pub fn peak(&self) -> f64 {
        self.peak_kb.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    }

    pub fn stop(self) -> f64 {
        self.running.store(false, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap();
        self.peak_kb.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for(url: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if Command::new("curl").args(["-fsS", "-o", "/dev/null", url]).status().is_ok_and(|s| s.success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not answer within 60 s");
}

/// What wrk measured.
#[derive(Debug, Clone)]
pub struct Load {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

fn millis(text: &str) -> f64 {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.trim().parse::<f64>().unwrap_or(f64::NAN) * factor
}

/// Runs wrk with `connections` connections for `seconds`; `lua` builds each request
/// (it may use `N`, the customer count, and `KEY`, the API key).
pub fn wrk(base: &str, connections: u32, seconds: u32, lua: &str) -> Load {
    let script = std::env::temp_dir().join(format!("custclass-bench-{}.lua", std::process::id()));
    std::fs::File::create(&script).unwrap().write_all(lua.as_bytes()).unwrap();
    let output = Command::new("wrk")
        // wrk needs a connection per thread; a report may take seconds, above wrk's 2 s timeout.
        .args([
            &format!("-t{}", connections.min(2)),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "60s",
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .output()
        .expect("run wrk (scripts/bench installs it)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let field = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string));
    let errors = field("Non-2xx or 3xx responses:").and_then(|n| n.trim().parse().ok()).unwrap_or(0)
        + field("Socket errors:").map(|_| 1).unwrap_or(0);
    Load {
        requests_per_second: field("Requests/sec:").and_then(|n| n.trim().parse().ok()).unwrap_or(0.0),
        p50_ms: field("50%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        errors,
    }
}

/// wrk on each of `bases` at once, `connections` split between them: the requests per
/// second summed, the slowest p50 and p99, the errors summed.
pub fn wrk_spread(bases: &[&str], connections: u32, seconds: u32, lua: &str) -> Load {
    let each = (connections / bases.len() as u32).max(1);
    let loads: Vec<Load> = std::thread::scope(|scope| {
        let runs: Vec<_> = bases.iter().map(|base| scope.spawn(move || wrk(base, each, seconds, lua))).collect();
        runs.into_iter().map(|run| run.join().expect("wrk ran")).collect()
    });
    Load {
        requests_per_second: loads.iter().map(|l| l.requests_per_second).sum(),
        p50_ms: loads.iter().map(|l| l.p50_ms).fold(0.0, f64::max),
        p99_ms: loads.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
        errors: loads.iter().map(|l| l.errors).sum(),
    }
}

pub fn report(name: &str, load: &Load) {
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} |",
        load.requests_per_second, load.p50_ms, load.p99_ms, load.errors
    );
}

pub fn report_header() {
    println!("| scenario | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");
}
