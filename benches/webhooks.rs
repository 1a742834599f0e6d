//! Webhook delivery throughput on MariaDB: one endpoint on a local receiver
//! (127.0.0.1, answering 200 at once), sent the `customer.created` events of an
//! import of BENCH_EVENTS customers (default 20,000). Reports the events per second
//! from the import's answer to the last event received (numbering included), and
//! between the first and the last event received (delivery alone).
//!
//! Run: `scripts/bench webhooks`.

mod support;

// The tests' receiver; the bench only needs it to answer 200.
#[allow(dead_code)]
#[path = "../tests/api/receiver.rs"]
mod receiver;

use std::time::{Duration, Instant};

use receiver::{verify, Receiver};
use serde_json::{json, Value};
use support::{connect, execute, Service, ADMIN_KEY};

const DATABASE: &str = "custclass_webhooks";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut server = connect(None);
    execute(&mut server, &format!("DROP DATABASE IF EXISTS {DATABASE}"));
    execute(&mut server, &format!("CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"));
    let service = Service::start(DATABASE, 18094);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let receiver = Receiver::start().await;

    let created: Value = http
        .post(format!("{}/api/v1/webhooks", service.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"url": receiver.url, "types": ["customer.created"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().expect("the webhook is created").to_string();

    let lines: String = (0..events).map(|i| format!("{{\"code\":\"W{i:07}\",\"name\":\"客户 {i}\"}}\n")).collect();
    let imported = http
        .post(format!("{}/api/v1/imports/customers?mode=create", service.base))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert!(imported.status().is_success(), "import: {}", imported.text().await.unwrap());
    let committed = Instant::now();

    let mut first = None;
    while receiver.accepted().len() < events {
        if first.is_none() && !receiver.received().is_empty() {
            first = Some(Instant::now());
        }
        assert!(
            committed.elapsed() < Duration::from_secs(600),
            "only {} of {events} events arrived in 10 minutes",
            receiver.accepted().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = Instant::now();
    let received = receiver.received();
    assert_eq!(received.len(), events, "each event once");
    assert!(received.iter().all(|request| verify(&secret, request)), "every signature checks");
    let end_to_end = last.duration_since(committed).as_secs_f64();
    let delivering = last.duration_since(first.unwrap_or(committed)).as_secs_f64();
    println!(
        "webhook delivery of {events} events to one local endpoint (MariaDB, {} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "  from the import's commit to the last event: {end_to_end:.2} s = {:.0} events/s",
        events as f64 / end_to_end
    );
    println!(
        "  from the first event to the last:           {delivering:.2} s = {:.0} events/s",
        (events - 1) as f64 / delivering
    );
}
