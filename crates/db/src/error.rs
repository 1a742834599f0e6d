//! The one error type of the service, with every code it can carry and each code's
//! HTTP status. The HTTP layer (`api::error`) renders it as problem+json.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use custclass_domain::FieldError;

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

impl ErrorKind {
    /// The HTTP status an error of this kind is answered with.
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::NotAcceptable => 406,
            ErrorKind::Conflict => 409,
            ErrorKind::Gone => 410,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// Declares [`ErrorCode`]: each variant with its label (the `code` clients see) and
/// its kind (the HTTP status), in one table.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $label:literal, $kind:ident;)+) => {
        /// Every `code` the API answers. A label may stand for two variants when the
        /// same thing is missing from a path (404) or from a body (422).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The stable machine code clients branch on.
            pub const fn label(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $label,)+
                }
            }

            pub const fn kind(self) -> ErrorKind {
                match self {
                    $(ErrorCode::$variant => ErrorKind::$kind,)+
                }
            }

            /// What the code means, for the OpenAPI document.
            pub fn meaning(self) -> String {
                match self {
                    $(ErrorCode::$variant => [$($doc),+].map(str::trim).join(" "),)+
                }
            }
        }
    };
}

error_codes! {
    /// The request body could not be read to its end (the upload broke off).
    BodyUnreadable = "body_unreadable", BadRequest;
    /// A request the service could not take for a reason without a code of its own.
    BadRequest = "bad_request", BadRequest;
    /// A browser's preflight asked for a method or header the service does not allow.
    CorsPreflightInvalid = "cors_preflight_invalid", BadRequest;
    /// A page cursor that this list did not hand out.
    InvalidCursor = "invalid_cursor", BadRequest;
    /// A multipart upload without exactly one `file` part.
    InvalidMultipart = "invalid_multipart", BadRequest;
    /// A query parameter that does not parse.
    InvalidQuery = "invalid_query", BadRequest;
    /// A request body that could not be read.
    MalformedBody = "malformed_body", BadRequest;
    /// An import file that is not valid CSV, NDJSON or .xlsx (`row_errors` says where).
    MalformedFile = "malformed_file", BadRequest;
    /// A request body that is not JSON.
    MalformedJson = "malformed_json", BadRequest;
    /// No key, or a key the service does not know (with `WWW-Authenticate`).
    Unauthorized = "unauthorized", Unauthorized;
    /// The key's scope is below what the operation needs.
    InsufficientScope = "insufficient_scope", Forbidden;
    /// A browser on an origin not in `CORS_ALLOWED_ORIGINS`.
    OriginNotAllowed = "origin_not_allowed", Forbidden;
    /// A restricted key touched a customer or category outside its subtree.
    OutsideRestriction = "outside_restriction", Forbidden;
    /// The operation works on the whole archive and needs an unrestricted key.
    RestrictedKey = "restricted_key", Forbidden;
    /// No API key with this id.
    ApiKeyNotFound = "api_key_not_found", NotFound;
    /// No attribute with this key on the category.
    AttributeNotFound = "attribute_not_found", NotFound;
    /// No category with this code in the scheme.
    CategoryNotFound = "category_not_found", NotFound;
    /// The customer was merged into another (`merged_into` names it).
    CustomerMerged = "customer_merged", NotFound;
    /// No customer with this code.
    CustomerNotFound = "customer_not_found", NotFound;
    /// No import with this id.
    ImportNotFound = "import_not_found", NotFound;
    /// The record the path names does not exist.
    NotFound = "not_found", NotFound;
    /// No endpoint at this path.
    RouteNotFound = "route_not_found", NotFound;
    /// No rule with this id in the scheme.
    RuleNotFound = "rule_not_found", NotFound;
    /// No classification run with this id in the scheme.
    RunNotFound = "run_not_found", NotFound;
    /// No scheme with this code.
    SchemeNotFound = "scheme_not_found", NotFound;
    /// No webhook with this id.
    WebhookNotFound = "webhook_not_found", NotFound;
    /// No pending change with this id (or none the key may see).
    PendingChangeNotFound = "pending_change_not_found", NotFound;
    /// The method is not allowed on this path (with `Allow`).
    MethodNotAllowed = "method_not_allowed", MethodNotAllowed;
    /// None of the media types in `Accept` can be served.
    NotAcceptable = "not_acceptable", NotAcceptable;
    /// Customers hold values of the attribute, so it cannot be removed or changed so.
    AttributeInUse = "attribute_in_use", Conflict;
    /// The attribute key is defined with another type elsewhere in the scheme.
    AttributeTypeConflict = "attribute_type_conflict", Conflict;
    /// The definition change would leave customers with invalid values (`violations`).
    AttributeViolations = "attribute_violations", Conflict;
    /// A category an import places customers in was deleted or stopped taking customers while it ran.
    CategoryChanged = "category_changed", Conflict;
    /// The category holds customers or child categories.
    CategoryInUse = "category_in_use", Conflict;
    /// The category is its scheme's default and must stay a leaf that takes customers.
    CategoryIsDefault = "category_is_default", Conflict;
    /// The scheme is required, so the customer must keep a category in it.
    CategoryRequired = "category_required", Conflict;
    /// The scheme's code rule cannot change while it has categories.
    CodeRuleLocked = "code_rule_locked", Conflict;
    /// The change collided with a concurrent change; retry.
    ConcurrentUpdate = "concurrent_update", Conflict;
    /// A record with the same key already exists.
    Duplicate = "duplicate", Conflict;
    /// The attribute key is already defined on this category.
    DuplicateAttribute = "duplicate_attribute", Conflict;
    /// The code is already taken.
    DuplicateCode = "duplicate_code", Conflict;
    /// A sibling category already has this name.
    DuplicateName = "duplicate_name", Conflict;
    /// Another customer already has this tax id.
    DuplicateTaxId = "duplicate_tax_id", Conflict;
    /// The record is referenced by or refers to another record.
    Referenced = "referenced", Conflict;
    /// A rule of the run no longer holds (its target category was deleted or stopped taking customers).
    RuleInvalid = "rule_invalid", Conflict;
    /// A run of the scheme is already in progress.
    RunInProgress = "run_in_progress", Conflict;
    /// The run is not running, so it cannot be cancelled.
    RunNotRunning = "run_not_running", Conflict;
    /// The pending change was already applied, cancelled or failed, so it cannot be cancelled.
    PendingChangeSettled = "pending_change_settled", Conflict;
    /// The scheme still has categories or assignments.
    SchemeInUse = "scheme_in_use", Conflict;
    /// The scheme is inactive and takes no new assignments.
    SchemeInactive = "scheme_inactive", Conflict;
    /// The feed's events after the cursor are past their retention.
    CursorExpired = "cursor_expired", Gone;
    /// `If-Match` does not match the current version.
    VersionMismatch = "version_mismatch", PreconditionFailed;
    /// An import cell over 32 KB.
    CellTooLarge = "cell_too_large", PayloadTooLarge;
    /// An import over 200 MB or 1,000,000 rows.
    ImportTooLarge = "import_too_large", PayloadTooLarge;
    /// A request body over its limit.
    PayloadTooLarge = "payload_too_large", PayloadTooLarge;
    /// An NDJSON line over 6.25 MB.
    RowTooLarge = "row_too_large", PayloadTooLarge;
    /// An import with more than 200 columns.
    TooManyColumns = "too_many_columns", PayloadTooLarge;
    /// A workbook that unpacks past its limits.
    WorkbookTooLarge = "workbook_too_large", PayloadTooLarge;
    /// The request's media type is not supported.
    UnsupportedMediaType = "unsupported_media_type", UnsupportedMediaType;
    /// An attribute named in a filter is defined nowhere.
    AttributeNotFoundInRequest = "attribute_not_found", Unprocessable;
    /// A required attribute of the category has no value.
    AttributeRequired = "attribute_required", Unprocessable;
    /// The category does not take customers (inactive).
    CategoryInactive = "category_inactive", Unprocessable;
    /// A category named in a body or filter does not exist.
    CategoryNotFoundInRequest = "category_not_found", Unprocessable;
    /// Customers are assigned to leaf categories only.
    CategoryNotLeaf = "category_not_leaf", Unprocessable;
    /// A new customer lacks a category in a required scheme without default.
    CategoryRequiredInRequest = "category_required", Unprocessable;
    /// An import file without a code column.
    CodeColumnMissing = "code_column_missing", Unprocessable;
    /// Customers named in the request do not exist (`errors` lists them).
    CustomersNotFound = "customers_not_found", Unprocessable;
    /// A report filter that cannot be applied to the past (`as_of`).
    FilterNotHistorical = "filter_not_historical", Unprocessable;
    /// `force` needs the scheme to have a default category.
    ForceNeedsDefault = "force_needs_default", Unprocessable;
    /// An atomic import with row errors; nothing was written (`row_errors`).
    ImportRejected = "import_rejected", Unprocessable;
    /// An attribute definition that does not hold together.
    InvalidAttributeDefinition = "invalid_attribute_definition", Unprocessable;
    /// Attribute values that do not fit their definitions.
    InvalidAttributes = "invalid_attributes", Unprocessable;
    /// The request body does not have the expected fields.
    InvalidBody = "invalid_body", Unprocessable;
    /// Categories of a customer that do not fit their schemes.
    InvalidCategories = "invalid_categories", Unprocessable;
    /// A category code off its scheme's code rule.
    InvalidCodeLength = "invalid_code_length", Unprocessable;
    /// A rule condition that does not parse (errors at JSON pointers).
    InvalidCondition = "invalid_condition", Unprocessable;
    /// A list filter that does not parse.
    InvalidFilter = "invalid_filter", Unprocessable;
    /// A population that names no category.
    InvalidPopulation = "invalid_population", Unprocessable;
    /// A key restriction that names no category.
    InvalidRestriction = "invalid_restriction", Unprocessable;
    /// The parent of a category code does not exist.
    ParentNotFound = "parent_not_found", Unprocessable;
    /// An import file that names a column twice.
    RepeatedColumns = "repeated_columns", Unprocessable;
    /// An admin key cannot be restricted.
    RestrictedAdmin = "restricted_admin", Unprocessable;
    /// A scheme named in a body is inactive.
    SchemeInactiveInRequest = "scheme_inactive", Unprocessable;
    /// A scheme named in a body or filter does not exist.
    SchemeNotFoundInRequest = "scheme_not_found", Unprocessable;
    /// The operation needs an ordered scheme (ranked categories).
    SchemeNotOrdered = "scheme_not_ordered", Unprocessable;
    /// More items than one request takes.
    TooManyItems = "too_many_items", Unprocessable;
    /// A Galera cluster refused the change as above its write-set limits.
    TransactionTooLarge = "transaction_too_large", Unprocessable;
    /// An import file with columns the service does not know.
    UnknownColumns = "unknown_columns", Unprocessable;
    /// An event type the feed does not know.
    UnknownEventType = "unknown_event_type", Unprocessable;
    /// Fields that failed to parse (`errors` lists them).
    ValidationFailed = "validation_failed", Unprocessable;
    /// The database took longer than a statement may (with `Retry-After`).
    DatabaseTimeout = "database_timeout", Unavailable;
    /// The database cannot be reached or no connection became free (with `Retry-After`).
    DatabaseUnavailable = "database_unavailable", Unavailable;
    /// The service cannot answer now (with `Retry-After`).
    ServiceUnavailable = "service_unavailable", Unavailable;
    /// Never for bad input; the cause is logged under the request's `X-Request-Id`.
    InternalError = "internal_error", Internal;
}

impl ErrorCode {
    /// Every label once, in the order of the table.
    pub fn labels() -> Vec<&'static str> {
        let mut labels: Vec<&'static str> = Vec::new();
        for code in Self::ALL {
            if !labels.contains(&code.label()) {
                labels.push(code.label());
            }
        }
        labels
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

/// `Problem.code` in the OpenAPI document: an enum of every label, each with its status
/// and meaning.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let meanings = ErrorCode::ALL
            .iter()
            .map(|code| format!("- `{}` ({}): {}", code.label(), code.kind().status(), code.meaning()))
            .collect::<Vec<_>>()
            .join("\n");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::labels()))
            .description(Some(format!("Stable machine-readable error code; clients branch on it.\n\n{meanings}")))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("ErrorCode")
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// An error with a stable machine `code` that clients may branch on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct AppError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// For a refused definition change: how many customers it would leave invalid.
    pub violations: Option<i64>,
    /// For `customer_merged`: the code of the customer it was merged into.
    pub merged_into: Option<Box<str>>,
    /// For an import: every error of every row.
    pub row_errors: Box<[custclass_domain::import::RowError]>,
    /// What went wrong inside, for the log line of the request (with its request id);
    /// never sent to the client.
    pub cause: Option<Box<str>>,
}

impl AppError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            violations: None,
            merged_into: None,
            row_errors: Box::default(),
            cause: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.code.kind()
    }

    /// 422 with the list of offending fields.
    pub fn validation(code: ErrorCode, detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self { errors, ..Self::new(code, detail) }
    }

    /// 422 for a request whose fields failed to parse; `errors` must not be empty.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Self::validation(ErrorCode::ValidationFailed, detail, errors)
    }

    pub fn version_mismatch(current: i64) -> Self {
        Self::new(
            ErrorCode::VersionMismatch,
            format!("If-Match does not match the current version {current}; fetch the resource again and retry"),
        )
    }

    /// A deadlock or lock timeout; the transaction helper retries these before giving up.
    pub fn concurrent_update() -> Self {
        Self::new(ErrorCode::ConcurrentUpdate, "the change collided with a concurrent change; retry the request")
    }

    pub fn is_concurrent_update(&self) -> bool {
        self.code == ErrorCode::ConcurrentUpdate
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::DatabaseUnavailable, detail)
    }

    /// The database could not be reached, or its connection broke (not a statement
    /// that took too long).
    pub fn is_database_unavailable(&self) -> bool {
        self.code == ErrorCode::DatabaseUnavailable
    }

    /// 503: the database took longer than a statement may.
    pub fn database_timeout() -> Self {
        Self::new(ErrorCode::DatabaseTimeout, "the database did not answer in time; retry later")
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, detail)
    }

    /// A stored row that does not hold what its type promises. Every such row is
    /// a 500 `internal_error` (never silently replaced by a default); the cause goes
    /// to the log with the request id, not to the client.
    pub fn corrupt(cause: impl Into<String>) -> Self {
        Self {
            cause: Some(cause.into().into()),
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
            DieselError::NotFound => AppError::new(ErrorCode::NotFound, "the requested record does not exist"),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                AppError::new(ErrorCode::Duplicate, format!("a record with the same key already exists ({})", info.message()))
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                AppError::new(ErrorCode::Referenced, format!("the record is referenced by or refers to another record ({})", info.message()))
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
                ErrorCode::TransactionTooLarge,
                format!(
                    "the database cluster refused the change as larger than it takes in one transaction ({}); nothing was written. \
                     Import large files with atomic=false, or have the operator raise wsrep_max_ws_rows / wsrep_max_ws_size",
                    info.message()
                ),
            ),
            DieselError::DatabaseError(_, info) if is_unavailable(info.message()) => {
                AppError::unavailable(format!("the database is unavailable: {}", info.message()))
            }
            _ => AppError { cause: Some(format!("database error: {error}").into()), ..AppError::internal("an unexpected database error occurred") },
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

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    const GUIDE: &str = include_str!("../../../docs/errors.md");

    fn documented() -> Vec<&'static str> {
        GUIDE
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once('`').map(|(label, _)| label))
            .collect()
    }

    #[test]
    fn every_code_is_in_the_errors_guide_and_nothing_else_is() {
        let documented = documented();
        let labels = ErrorCode::labels();
        let missing: Vec<_> = labels.iter().filter(|label| !documented.contains(label)).collect();
        let unknown: Vec<_> = documented.iter().filter(|label| !labels.contains(label)).collect();
        assert!(missing.is_empty(), "codes missing from docs/errors.md: {missing:?}");
        assert!(unknown.is_empty(), "docs/errors.md lists codes the service does not answer: {unknown:?}");
    }

    #[test]
    fn a_label_names_one_status_or_one_thing_missing_from_a_path_and_a_body() {
        for label in ErrorCode::labels() {
            let kinds: Vec<_> =
                ErrorCode::ALL.iter().filter(|code| code.label() == label).map(|code| code.kind()).collect();
            let distinct = kinds.len() == 1 || (kinds.len() == 2 && kinds[0] != kinds[1]);
            assert!(distinct, "{label} stands for {kinds:?}: a second variant must differ in status");
        }
    }
}
