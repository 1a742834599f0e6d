//! The one error type of the service. `api::error` turns it into problem+json.

use std::borrow::Cow;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::domain::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    Conflict,
    Gone,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    Unavailable,
    Internal,
}

const CONCURRENT_UPDATE: &str = "concurrent_update";
const DATABASE_UNAVAILABLE: &str = "database_unavailable";

/// An error with a stable machine `code` that clients may branch on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: Cow<'static, str>,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// For a refused definition change: how many customers it would leave invalid.
    pub violations: Option<i64>,
    /// For `customer_merged`: the code of the customer it was merged into.
    pub merged_into: Option<String>,
    /// For an import: every error of every row.
    pub row_errors: Vec<crate::domain::import::RowError>,
    /// What went wrong inside, for the log line of the request (with its request id);
    /// never sent to the client.
    pub cause: Option<String>,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code: Cow::Borrowed(code),
            detail: detail.into(),
            errors: Vec::new(),
            violations: None,
            merged_into: None,
            row_errors: Vec::new(),
            cause: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, detail)
    }

    /// 422 with the list of offending fields.
    pub fn validation(code: &'static str, detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self { errors, ..Self::new(ErrorKind::Unprocessable, code, detail) }
    }

    /// 422 for a request whose fields failed to parse; `errors` must not be empty.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Self::validation("validation_failed", detail, errors)
    }

    pub fn version_mismatch(current: i64) -> Self {
        Self::new(
            ErrorKind::PreconditionFailed,
            "version_mismatch",
            format!("If-Match does not match the current version {current}; fetch the resource again and retry"),
        )
    }

    /// A deadlock or lock timeout; the transaction helper retries these before giving up.
    pub fn concurrent_update() -> Self {
        Self::conflict(CONCURRENT_UPDATE, "the change collided with a concurrent change; retry the request")
    }

    pub fn is_concurrent_update(&self) -> bool {
        self.code == CONCURRENT_UPDATE
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, DATABASE_UNAVAILABLE, detail)
    }

    /// The database could not be reached, or its connection broke (not a statement
    /// that took too long).
    pub fn is_database_unavailable(&self) -> bool {
        self.code == DATABASE_UNAVAILABLE
    }

    /// 503: the database took longer than a statement may.
    pub fn database_timeout() -> Self {
        Self::new(ErrorKind::Unavailable, "database_timeout", "the database did not answer in time; retry later")
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", detail)
    }

    /// A stored row that does not hold what its type promises. Every such row is
    /// a 500 `internal_error` (never silently replaced by a default); the cause goes
    /// to the log with the request id, not to the client.
    pub fn corrupt(cause: impl Into<String>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::internal("stored data is inconsistent; the cause is logged under this request's X-Request-Id")
        }
    }
}

/// Messages by which MySQL/MariaDB and SQLite say the database cannot be reached
/// or is locked: the request may succeed later, so these answer 503.
const UNAVAILABLE_MARKERS: [&str; 7] = [
    "database is locked",
    "database is busy",
    "server has gone away",
    "lost connection",
    "can't connect",
    "connection refused",
    "broken pipe",
];

/// MariaDB's `max_statement_time` and MySQL's `max_execution_time` stopped the statement.
fn is_statement_timeout(message: &str) -> bool {
    message.contains("max_statement_time") || message.contains("maximum statement execution time")
}

/// A Galera cluster refused a transaction above its write-set limits
/// (`wsrep_max_ws_rows`, `wsrep_max_ws_size`); nothing of it is written.
fn is_beyond_write_set_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("wsrep_max_ws_rows exceeded") || message.contains("maximum writeset size exceeded")
}

fn is_unavailable(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    UNAVAILABLE_MARKERS.iter().any(|marker| message.contains(marker))
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::NotFound => AppError::not_found("not_found", "the requested record does not exist"),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                AppError::conflict("duplicate", format!("a record with the same key already exists ({})", info.message()))
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                AppError::conflict("referenced", format!("the record is referenced by or refers to another record ({})", info.message()))
            }
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => AppError::concurrent_update(),
            // A deadlock, also one a multi-primary cluster (Galera) reports when another
            // node's commit won certification, which arrives at COMMIT, where diesel does
            // not classify it.
            DieselError::DatabaseError(_, info) if ["lock wait timeout", "deadlock"].iter().any(|m| info.message().to_ascii_lowercase().contains(m)) => {
                AppError::concurrent_update()
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, info) => {
                AppError::unavailable(format!("the database connection failed: {}", info.message()))
            }
            DieselError::DeserializationError(cause) => AppError::corrupt(format!("a stored row cannot be read: {cause}")),
            DieselError::DatabaseError(_, info) if is_statement_timeout(info.message()) => AppError::database_timeout(),
            DieselError::DatabaseError(_, info) if is_beyond_write_set_limit(info.message()) => AppError::new(
                ErrorKind::Unprocessable,
                "transaction_too_large",
                format!(
                    "the database cluster refused the change as larger than it takes in one transaction ({}); nothing was written. \
                     Import large files with atomic=false, or have the operator raise wsrep_max_ws_rows / wsrep_max_ws_size",
                    info.message()
                ),
            ),
            DieselError::DatabaseError(_, info) if is_unavailable(info.message()) => {
                AppError::unavailable(format!("the database is unavailable: {}", info.message()))
            }
            _ => AppError { cause: Some(format!("database error: {error}")), ..AppError::internal("an unexpected database error occurred") },
        }
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        log::warn!("database pool: {error}");
        AppError::unavailable("no database connection could be obtained in time")
    }
}

/// Lets infallible conversions stand where fallible ones are expected.
impl From<std::convert::Infallible> for AppError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<FieldError> for AppError {
    fn from(error: FieldError) -> Self {
        AppError::invalid_fields(vec![error])
    }
}
