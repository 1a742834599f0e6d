//! Settings from the environment.

use std::time::Duration;

use crate::db::{
    Clock, DatabaseUrl, Timeouts, DEFAULT_DB_TIMEOUT_MS, DEFAULT_LONG_STATEMENT_TIMEOUT_MS, DEFAULT_SQLITE_PATH,
    DEFAULT_STATEMENT_TIMEOUT_MS,
};
use crate::domain::webhook::RetrySchedule;
use crate::service::webhook_sender::{
    WebhookSettings, DEFAULT_WEBHOOK_FIRST_RETRY_MS, DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub bind_addr: String,
    pub pool_size: u32,
    /// How long a request waits for a database connection (and SQLite for a lock)
    /// before 503, and how long statements may run.
    pub timeouts: Timeouts,
    pub admin_key: Option<String>,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Customers per statement and per transaction of a classification run.
    pub run_batch_size: i64,
    /// Browser origins allowed to call the API (`CORS_ALLOWED_ORIGINS`).
    pub cors: CorsOrigins,
    /// How long the change feed keeps events (`EVENT_RETENTION_DAYS`).
    pub event_retention: Duration,
    pub webhooks: WebhookSettings,
    /// When pending changes take effect: the system's clock, which tests move.
    pub clock: Clock,
}

/// `CORS_ALLOWED_ORIGINS`: unset means no cross-origin browser access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    #[default]
    None,
    Any,
    /// Exact origins such as `https://erp.example.com`.
    List(Vec<String>),
}

impl CorsOrigins {
    pub fn parse(text: &str) -> Result<Self, String> {
        let origins: Vec<&str> = text.split([',', ' ']).map(str::trim).filter(|o| !o.is_empty()).collect();
        if origins.is_empty() {
            return Ok(CorsOrigins::None);
        }
        if origins == ["*"] {
            return Ok(CorsOrigins::Any);
        }
        for origin in &origins {
            let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && !origin.contains('*');
            if !well_formed {
                return Err(format!(
                    "CORS_ALLOWED_ORIGINS: {origin:?} is not an origin like https://erp.example.com (or use * alone)"
                ));
            }
        }
        Ok(CorsOrigins::List(origins.into_iter().map(str::to_string).collect()))
    }
}

pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_POOL_SIZE: u32 = 10;
pub const DEFAULT_RUN_BATCH_SIZE: i64 = 10_000;
pub const DEFAULT_EVENT_RETENTION_DAYS: u64 = 30;

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name)
                .map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name} must be a whole number, not {v:?}")))
        };
        let pool_size = number("DB_POOL_SIZE", DEFAULT_POOL_SIZE.into())?;
        if pool_size == 0 || pool_size > 1000 {
            return Err("DB_POOL_SIZE must be between 1 and 1000".into());
        }
        let run_batch_size = number("RUN_BATCH_SIZE", DEFAULT_RUN_BATCH_SIZE as u64)?;
        if run_batch_size == 0 || run_batch_size > 100_000 {
            return Err("RUN_BATCH_SIZE must be between 1 and 100000".into());
        }
        let retention_days = number("EVENT_RETENTION_DAYS", DEFAULT_EVENT_RETENTION_DAYS)?;
        if retention_days == 0 || retention_days > 3650 {
            return Err("EVENT_RETENTION_DAYS must be between 1 and 3650".into());
        }
        let webhook_timeout = number("WEBHOOK_TIMEOUT_SECONDS", DEFAULT_WEBHOOK_TIMEOUT_SECONDS)?;
        if webhook_timeout == 0 || webhook_timeout > 60 {
            return Err("WEBHOOK_TIMEOUT_SECONDS must be between 1 and 60".into());
        }
        let first_retry = number("WEBHOOK_FIRST_RETRY_MS", DEFAULT_WEBHOOK_FIRST_RETRY_MS)?;
        if !(10..=3_600_000).contains(&first_retry) {
            return Err("WEBHOOK_FIRST_RETRY_MS must be between 10 and 3600000".into());
        }
        let allow_private = match var("WEBHOOK_ALLOW_PRIVATE").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("WEBHOOK_ALLOW_PRIVATE must be true or false, not {other:?}")),
        };
        Ok(Settings {
            database_url: DatabaseUrl::parse(&var("DATABASE_URL").unwrap_or_else(|| DEFAULT_SQLITE_PATH.to_string())),
            bind_addr: var("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_string()),
            pool_size: pool_size as u32,
            timeouts: Timeouts {
                wait: Duration::from_millis(number("DB_TIMEOUT_MS", DEFAULT_DB_TIMEOUT_MS)?),
                statement: Duration::from_millis(
                    number("DB_STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS)?.max(1),
                ),
                long_statement: Duration::from_millis(
                    number("DB_LONG_STATEMENT_TIMEOUT_MS", DEFAULT_LONG_STATEMENT_TIMEOUT_MS)?.max(1),
                ),
            },
            admin_key: var("CUSTCLASS_ADMIN_KEY"),
            workers: number("HTTP_WORKERS", 0)? as usize,
            run_batch_size: run_batch_size as i64,
            cors: CorsOrigins::parse(&var("CORS_ALLOWED_ORIGINS").unwrap_or_default())?,
            event_retention: Duration::from_secs(retention_days * 86_400),
            webhooks: WebhookSettings {
                allow_private,
                timeout: Duration::from_secs(webhook_timeout),
                retry: RetrySchedule {
                    first: Duration::from_millis(first_retry),
                    give_up_after: RetrySchedule::GIVE_UP_AFTER,
                },
            },
            clock: Clock::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CorsOrigins;

    #[test]
    fn cors_origins_are_none_any_or_exact() {
        assert_eq!(CorsOrigins::parse(""), Ok(CorsOrigins::None));
        assert_eq!(CorsOrigins::parse(" * "), Ok(CorsOrigins::Any));
        assert_eq!(
            CorsOrigins::parse("https://a.example.com, http://localhost:5173"),
            Ok(CorsOrigins::List(vec!["https://a.example.com".into(), "http://localhost:5173".into()]))
        );
        assert!(CorsOrigins::parse("a.example.com").is_err());
        assert!(CorsOrigins::parse("https://a.example.com/").is_err());
        assert!(CorsOrigins::parse("*, https://a.example.com").is_err());
    }
}
