//! A webhook receiver on 127.0.0.1 for tests and the webhook benchmark: a small
//! HTTP/1.1 server (keep-alive, `Content-Length` bodies) that records what it is
//! sent, answers as told, and verifies signatures as the Standard Webhooks
//! specification asks a receiver to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as received, and the status it was answered with (0: not answered).
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests still to be answered `failing_status` before answering 200.
    failures_left: Arc<AtomicUsize>,
    failing_status: Arc<AtomicU16>,
    /// Whether to take requests and never answer them.
    hang: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hooks/custclass", listener.local_addr().unwrap()),
            received: Default::default(),
            failures_left: Default::default(),
            failing_status: Arc::new(AtomicU16::new(503)),
            hang: Default::default(),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        receiver
    }

    /// Answers the next `count` requests with `status`, then 200 again.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.failing_status.store(status, Ordering::SeqCst);
        self.failures_left.store(count, Ordering::SeqCst);
    }

    pub fn hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The events answered 200, in the order they came.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.received().iter().filter(|r| r.answered == 200).map(Received::json).collect()
    }

    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let head_end = loop {
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
                .collect();
            let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buffer[head_end..head_end + length].to_vec();
            buffer.drain(..head_end + length);
            if self.hang.load(Ordering::SeqCst) {
                self.received.lock().unwrap().push(Received { headers, body, answered: 0 });
                return std::future::pending::<()>().await;
            }
            let status =
                match self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)) {
                    Ok(_) => self.failing_status.load(Ordering::SeqCst),
                    Err(_) => 200,
                };
            self.received.lock().unwrap().push(Received { headers, body, answered: status });
            let extra = if (300..400).contains(&status) { "location: http://127.0.0.1:9/elsewhere\r\n" } else { "" };
            let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n{extra}\r\nok");
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// Checks a request as a Standard Webhooks receiver does: some `v1` signature of
/// `webhook-signature` is the HMAC-SHA256, keyed by the secret's base64 part, of
/// `webhook-id.webhook-timestamp.body`, and the timestamp is within five minutes.
pub fn verify(secret: &str, request: &Received) -> bool {
    let key = BASE64.decode(secret.strip_prefix("whsec_").expect("a whsec_ secret")).expect("base64");
    let (id, timestamp) = (request.header("webhook-id"), request.header("webhook-timestamp"));
    let Ok(sent_at) = timestamp.parse::<i64>() else { return false };
    if (chrono::Utc::now().timestamp() - sent_at).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    request
        .header("webhook-signature")
        .split(' ')
        .any(|signature| signature.strip_prefix("v1,") == Some(expected.as_str()))
}
