//! Archive maintenance on MariaDB with the bench archive (1,000,000 customers in 3
//! schemes, 2 attributes): exporting it as CSV, NDJSON and .xlsx, searching it for
//! duplicates, and the data-quality report, each timed from the client (curl on the
//! same machine), with the service's peak memory throughout. Then importing: the CSV
//! export, cut to two categories a customer (INDUSTRY and REGION) and to 100,000 and
//! to every row, into a database of its own with the archive's schemes, categories
//! and attribute definitions, and the 100,000 once more (every row unchanged).
//!
//! Run: `scripts/bench maintenance` (BENCH_CUSTOMERS; BENCH_ONLY=import for the imports).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::archive::{ensure_customers, DATABASE};
use support::{connect, execute, PeakMemory, Service, ADMIN_KEY};

/// The database the imports write into.
const IMPORT_DATABASE: &str = "custclass_import";

/// What curl saw of one download.
struct Download {
    status: String,
    first_byte: f64,
    total: f64,
    bytes: f64,
}

fn download(url: &str, accept: &str) -> Download {
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_KEY}"), "-H", &format!("Accept: {accept}"), url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(f64::NAN);
    Download {
        status: fields.first().unwrap_or(&"?").to_string(),
        first_byte: number(1),
        total: number(2),
        bytes: number(3),
    }
}

/// The CSV export of the whole archive, to a file.
fn export_csv(service: &Service, path: &Path) {
    let status = Command::new("curl")
        .args([
            "-sS",
            "-o",
            path.to_str().unwrap(),
            "-w",
            "%{http_code}",
            "-H",
            &format!("Authorization: Bearer {ADMIN_KEY}"),
        ])
        .arg(format!("{}/api/v1/exports/customers", service.base))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200", "exporting the archive");
}

/// The first `rows` customers of an export, without the columns of `dropped`.
fn cut(source: &Path, target: &Path, rows: usize, dropped: &str) {
    let mut reader = csv::Reader::from_path(source).unwrap();
    let header = reader.headers().unwrap().clone();
    let kept: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, name)| !name.trim_start_matches('\u{FEFF}').eq(dropped))
        .map(|(i, _)| i)
        .collect();
    let mut writer = csv::Writer::from_path(target).unwrap();
    writer.write_record(kept.iter().map(|&i| &header[i])).unwrap();
    for record in reader.records().take(rows) {
        let record = record.unwrap();
        writer.write_record(kept.iter().map(|&i| &record[i])).unwrap();
    }
    writer.flush().unwrap();
}

/// An empty import database with the archive's schemes, categories and attribute definitions.
fn fresh_import_database() {
    let mut server = connect(None);
    execute(&mut server, &format!("DROP DATABASE IF EXISTS {IMPORT_DATABASE}"));
    execute(&mut server, &format!("CREATE DATABASE {IMPORT_DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"));
    let mut conn = custclass::db::DbConnection::Mysql(connect(Some(IMPORT_DATABASE)));
    custclass::db::migrate(&mut conn).unwrap();
    for table in ["schemes", "categories", "attribute_definitions"] {
        execute(&mut server, &format!("INSERT INTO {IMPORT_DATABASE}.{table} SELECT * FROM {DATABASE}.{table}"));
    }
}

/// Posts a file to the import; what curl saw and the report.
fn import(service: &Service, file: &Path) -> (String, f64, serde_json::Value) {
    let report = std::env::temp_dir().join("custclass-import-report.json");
    let output = Command::new("curl")
        .args(["-sS", "-o", report.to_str().unwrap(), "-w", "%{http_code} %{time_total}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_KEY}"), "-H", "Content-Type: text/csv", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("{}/api/v1/imports/customers", service.base))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (status, seconds) = text.split_once(' ').unwrap_or(("?", "NaN"));
    let body =
        std::fs::read_to_string(&report).ok().and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default();
    (status.to_string(), seconds.parse().unwrap_or(f64::NAN), body)
}

fn import_cases(archive: &Service, n: usize) {
    let directory = std::env::temp_dir();
    let whole = directory.join("custclass-archive.csv");
    export_csv(archive, &whole);
    let files: Vec<(String, PathBuf, usize, &str)> = [(100_000.min(n), "≤ 15 s"), (n, "≤ 150 s")]
        .into_iter()
        .map(|(rows, target)| {
            let path = directory.join(format!("custclass-import-{rows}.csv"));
            cut(&whole, &path, rows, "category:TIER");
            (format!("import {rows} customers, two categories each"), path, rows, target)
        })
        .collect();
    println!("\n| import | status | s | created | updated | unchanged | failed | MB | peak RSS MB | target |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (index, (name, path, _, target)) in files.iter().enumerate() {
        fresh_import_database();
        support::settle();
        let service = Service::start(IMPORT_DATABASE, 18092);
        let memory = PeakMemory::sample(service.pid());
        let mut runs = vec![(name.clone(), *target)];
        if index == 0 {
            runs.push(("the same file again, every row unchanged".to_string(), ""));
        }
        for (name, target) in runs {
            let (status, seconds, report) = import(&service, path);
            let count = |key: &str| report[key].as_u64().map_or("?".to_string(), |n| n.to_string());
            let megabytes = std::fs::metadata(path).map_or(f64::NAN, |m| m.len() as f64 / 1_000_000.0);
            println!(
                "| {name} | {status} | {seconds:.1} | {} | {} | {} | {} | {megabytes:.0} | {:.1} | {target} |",
                count("created"),
                count("updated"),
                count("unchanged"),
                count("failed"),
                memory.peak()
            );
        }
        println!("peak service RSS during these imports: {:.1} MB (target ≤ 150 MB)", memory.stop());
    }
}

fn main() {
    support::require_server_sizing();
    let n = std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    ensure_customers(DATABASE, n);
    support::settle();
    let started = Instant::now();
    let service = Service::start(DATABASE, 18091);
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "import") {
        import_cases(&service, n);
        return;
    }
    let memory = PeakMemory::sample(service.pid());
    // The first search keys every customer that has no duplicate keys yet (a fresh
    // archive, or one loaded straight into the tables); later ones find them there.
    let first = download(&format!("{}/api/v1/customers/duplicates?by=name", service.base), "application/json");
    println!("\n{n} customers; started, and the first duplicate search (keying those without keys) answered {} after {:.1} s\n", first.status, started.elapsed().as_secs_f64());
    println!("| case | status | first byte s | total s | MB sent | target |");
    println!("|---|---|---|---|---|---|");
    let cases = [
        ("export as CSV", "/api/v1/exports/customers", "text/csv", "≤ 30 s"),
        ("export as NDJSON", "/api/v1/exports/customers", "application/x-ndjson", ""),
        (
            "export as .xlsx",
            "/api/v1/exports/customers",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "≤ 90 s",
        ),
        ("duplicate detection, all four keys", "/api/v1/customers/duplicates", "application/json", "≤ 10 s"),
        ("duplicate detection, names", "/api/v1/customers/duplicates?by=name", "application/json", ""),
        ("data-quality report", "/api/v1/reports/data-quality", "application/json", ""),
    ];
    for (name, path, accept, target) in cases {
        let seen = download(&format!("{}{path}", service.base), accept);
        println!(
            "| {name} | {} | {:.3} | {:.2} | {:.1} | {target} |",
            seen.status,
            seen.first_byte,
            seen.total,
            seen.bytes / 1_000_000.0
        );
    }
    println!("\npeak service RSS throughout: {:.1} MB (target ≤ 150 MB)", memory.stop());
    import_cases(&service, n);
}
