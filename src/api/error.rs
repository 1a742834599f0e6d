//! The one place where errors become `application/problem+json` (RFC 9457).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode, ErrorKind};

pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client should wait before retrying while the database is unavailable.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// An error response (RFC 9457 problem details) with a stable machine `code`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:custclass:problem:category_not_leaf",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "category 01 has child categories; customers are assigned to leaf categories only",
    "code": "category_not_leaf"
}))]
pub struct Problem {
    /// `urn:custclass:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// For validation errors: every offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `attribute_violations` and `attribute_in_use`: how many customers the change concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<i64>,
    /// For `customer_merged`: the code of the customer it was merged into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// For `import_rejected` and `malformed_file`: every error of every row, with its column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub row_errors: Vec<crate::domain::import::RowError>,
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The service's one error type ([`AppError`], owned by the layers below) as the HTTP
/// layer answers it. The wrapper exists because actix's `ResponseError` may only be
/// implemented where either the trait or the type is defined; every handler and
/// extractor answers in it, and `?` turns into it whatever becomes an `AppError`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(error.into())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.kind())
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let ApiError(error) = self;
        let status = self.status_code();
        let problem = Problem {
            problem_type: format!("urn:custclass:problem:{}", error.code.label()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: error.detail.clone(),
            code: error.code,
            errors: error.errors.clone(),
            violations: error.violations,
            merged_into: error.merged_into.as_deref().map(String::from),
            row_errors: error.row_errors.to_vec(),
        };
        let mut response = HttpResponse::build(status);
        response.content_type(PROBLEM_JSON);
        match error.kind() {
            ErrorKind::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"custclass\""));
            }
            ErrorKind::Unavailable => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

pub fn json_error(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let app_error = match &error {
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON, sent with Content-Type: application/json",
        ),
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(inner) if inner.is_data() => AppError::validation(
            ErrorCode::InvalidBody,
            format!("the request body does not have the expected fields: {inner}"),
            vec![FieldError::new("body", inner.to_string())],
        ),
        JsonPayloadError::Deserialize(inner) => {
            AppError::new(ErrorCode::MalformedJson, format!("the request body is not valid JSON: {inner}"))
        }
        other => AppError::new(ErrorCode::MalformedBody, format!("the request body could not be read: {other}")),
    };
    ApiError(app_error).into()
}

pub fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError(AppError::new(ErrorCode::NotFound, format!("no resource matches this path: {error}"))).into()
}

pub fn query_error(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError(AppError::new(ErrorCode::InvalidQuery, format!("the query string is invalid: {error}"))).into()
}

/// The default service: no route matched.
pub async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError(AppError::new(ErrorCode::RouteNotFound, format!("no endpoint at {} {}", req.method(), req.path()))))
}

/// Safety net: any error response that is not problem+json yet (actix's own 405,
/// 404 and payload errors) is rewritten into one, so no client sees an HTML or empty error.
pub fn ensure_problem_json<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == HeaderValue::from_static(PROBLEM_JSON));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(response.map_into_left_body()));
    }
    let request = response.request();
    let cors = response.response().error().and_then(|error| error.as_error::<actix_cors::CorsError>());
    let (code, detail) = match (cors, response.status()) {
        (Some(actix_cors::CorsError::OriginNotAllowed), _) => {
            let origin =
                request.headers().get(header::ORIGIN).and_then(|value| value.to_str().ok()).unwrap_or("(none)");
            log::warn!("refused a cross-origin request from origin {origin}: it is not in CORS_ALLOWED_ORIGINS");
            (
                ErrorCode::OriginNotAllowed,
                format!("browsers on origin {origin} may not call this service; the operator allows origins with the setting CORS_ALLOWED_ORIGINS"),
            )
        }
        (Some(refused), _) => {
            log::warn!("refused a cross-origin preflight: {refused}");
            (
                ErrorCode::CorsPreflightInvalid,
                format!("{refused}; allowed are the methods GET, POST, PUT, PATCH, DELETE and the headers Authorization, If-Match, Content-Type, Accept, X-Request-Id, Prefer"),
            )
        }
        (None, status) => match status {
            StatusCode::NOT_FOUND => (ErrorCode::RouteNotFound, format!("no endpoint at {}", request.path())),
            StatusCode::METHOD_NOT_ALLOWED => {
                (ErrorCode::MethodNotAllowed, format!("{} is not allowed on {}", request.method(), request.path()))
            }
            StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "the request body is too large".to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (ErrorCode::UnsupportedMediaType, "the request's media type is not supported".to_string())
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                (ErrorCode::ServiceUnavailable, "the service is unavailable".to_string())
            }
            status if status.is_server_error() => {
                (ErrorCode::InternalError, "an unexpected error occurred".to_string())
            }
            _ => (ErrorCode::BadRequest, "the request could not be processed".to_string()),
        },
    };
    let (request, original) = response.into_parts();
    let mut problem = ApiError(AppError::new(code, detail)).error_response();
    for (name, value) in original.headers() {
        if name == header::ALLOW || name == header::VARY || name.as_str().starts_with("access-control-") {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(request, problem).map_into_right_body()))
}
