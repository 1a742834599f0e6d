//! Archive maintenance on MariaDB with the bench archive (1,000,000 customers in 3
//! schemes, 2 attributes): exporting it as CSV, NDJSON and .xlsx, searching it for
//! duplicates, and the data-quality report, each timed from the client (curl on the
//! same machine), with the service's peak memory throughout.
//!
//! Run: `scripts/bench maintenance` (BENCH_CUSTOMERS).

mod support;

use std::process::Command;
use std::time::Instant;

use support::archive::{ensure_customers, DATABASE};
use support::{PeakMemory, Service, ADMIN_KEY};

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
    Download { status: fields.first().unwrap_or(&"?").to_string(), first_byte: number(1), total: number(2), bytes: number(3) }
}

fn main() {
    support::require_server_sizing();
    let n = std::env::var("BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    ensure_customers(DATABASE, n);
    support::settle();
    let started = Instant::now();
    let service = Service::start(DATABASE, 18091);
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
        ("export as .xlsx", "/api/v1/exports/customers", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "≤ 90 s"),
        ("duplicate detection, all four keys", "/api/v1/customers/duplicates", "application/json", "≤ 10 s"),
        ("duplicate detection, names", "/api/v1/customers/duplicates?by=name", "application/json", ""),
        ("data-quality report", "/api/v1/reports/data-quality", "application/json", ""),
    ];
    for (name, path, accept, target) in cases {
        let seen = download(&format!("{}{path}", service.base), accept);
        println!("| {name} | {} | {:.3} | {:.2} | {:.1} | {target} |", seen.status, seen.first_byte, seen.total, seen.bytes / 1_000_000.0);
    }
    println!("\npeak service RSS throughout: {:.1} MB (target ≤ 150 MB)", memory.stop());
}
