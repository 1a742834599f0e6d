//! Settings from the environment.

use std::time::Duration;

use crate::db::{DatabaseUrl, DEFAULT_SQLITE_PATH};

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub bind_addr: String,
    pub pool_size: u32,
    /// How long a request waits for a database connection (and SQLite for a lock) before 503.
    pub db_timeout: Duration,
    pub admin_key: Option<String>,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Customers per statement and per transaction of a classification run.
    pub run_batch_size: i64,
}

pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_POOL_SIZE: u32 = 10;
pub const DEFAULT_DB_TIMEOUT_MS: u64 = 3000;
pub const DEFAULT_RUN_BATCH_SIZE: i64 = 10_000;

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name} must be a whole number, not {v:?}")))
        };
        let pool_size = number("DB_POOL_SIZE", DEFAULT_POOL_SIZE.into())?;
        if pool_size == 0 || pool_size > 1000 {
            return Err("DB_POOL_SIZE must be between 1 and 1000".into());
        }
        let run_batch_size = number("RUN_BATCH_SIZE", DEFAULT_RUN_BATCH_SIZE as u64)?;
        if run_batch_size == 0 || run_batch_size > 100_000 {
            return Err("RUN_BATCH_SIZE must be between 1 and 100000".into());
        }
        Ok(Settings {
            database_url: DatabaseUrl::parse(&var("DATABASE_URL").unwrap_or_else(|| DEFAULT_SQLITE_PATH.to_string())),
            bind_addr: var("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_string()),
            pool_size: pool_size as u32,
            db_timeout: Duration::from_millis(number("DB_TIMEOUT_MS", DEFAULT_DB_TIMEOUT_MS)?),
            admin_key: var("CUSTCLASS_ADMIN_KEY"),
            workers: number("HTTP_WORKERS", 0)? as usize,
            run_batch_size: run_batch_size as i64,
        })
    }
}
