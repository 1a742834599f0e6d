//! `/api-keys`: create (the secret is shown once), list and revoke keys.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::{AppState, FieldErrors, Page};
use crate::domain::api_key::{ApiKeySecret, KeyName, Scope};
use crate::domain::restriction::Restriction;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};
use crate::service::access::{self, NewKey};
use crate::store::access::api_keys::ApiKeyRow;

/// An API key without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: i64,
    /// Recorded as the actor of every change made with the key.
    pub name: String,
    pub scope: Scope,
    /// The first characters of the secret, to tell keys apart.
    #[schema(example = "cck_3f9a1c2b")]
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// Set once the key is revoked; revoked keys answer 401.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The customers the key may see and change: per scheme, category subtrees.
    #[schema(value_type = Option<HashMap<String, Vec<String>>>, example = json!({"REGION": ["01", "0203"]}))]
    pub restrict: Option<serde_json::Value>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = AppError;

    fn try_from(row: ApiKeyRow) -> Result<Self, AppError> {
        Ok(ApiKey {
            restrict: row.restriction()?.map(|restriction| restriction.to_json()),
            id: row.id,
            scope: row.scope()?,
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at.and_utc(),
            revoked_at: row.revoked_at.map(|at| at.and_utc()),
        })
    }
}

/// A new key and its secret, which is shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub key: ApiKey,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "erp-sales-north", "scope": "write", "restrict": {"REGION": ["01", "0203"]}}))]
pub struct ApiKeyCreate {
    /// Unique, 1–100 characters, e.g. the calling service's name.
    #[schema(example = "erp-sales")]
    pub name: String,
    pub scope: Scope,
    /// Record-level permission (记录级数据权限): the key sees and changes only customers
    /// whose category in each scheme named lies in one of the subtrees listed. Not with
    /// scope `admin`.
    #[schema(value_type = Option<HashMap<String, Vec<String>>>, example = json!({"REGION": ["01", "0203"]}))]
    pub restrict: Option<serde_json::Value>,
}

/// List API keys
///
/// Every key, revoked ones included, with its name, scope, restriction and when it was last used;
/// secrets are never shown again after creation. Scope `admin`.
#[utoipa::path(get, path = "/api/v1/api-keys", operation_id = "list_api_keys", tag = "api-keys",
    responses((status = 200, description = "Every key, revoked ones included, without secrets", body = Page<ApiKey>)))]
pub async fn list(state: web::Data<AppState>, _auth: Auth<Admin>) -> Result<HttpResponse, ApiError> {
    let rows = access::list(&state.db).await?;
    let keys = rows.into_iter().map(ApiKey::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page::complete(keys)))
}

/// Create an API key
///
/// Makes a key of scope `read`, `write` or `admin`, optionally restricted to the customers of some
/// categories' subtrees (`restrict`, 记录级数据权限; not for `admin`). The secret is in this answer only:
/// store it.
#[utoipa::path(post, path = "/api/v1/api-keys", operation_id = "create_api_key", tag = "api-keys", request_body = ApiKeyCreate,
    responses(
        (status = 201, description = "Created; the secret is in this response only", body = ApiKeyCreated, headers(("Location" = String))),
        (status = 409, description = "`duplicate_name`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_restriction` (a scheme or category that does not exist), `restricted_admin`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    body: web::Json<ApiKeyCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let name = errors.check(KeyName::parse(&body.name));
    errors.finish()?;
    let name = name.expect("checked");
    let restriction = body
        .restrict
        .as_ref()
        .map(|value| Restriction::parse("restrict", value))
        .transpose()
        .map_err(AppError::invalid_fields)?;
    if restriction.is_some() && body.scope == Scope::Admin {
        return Err(AppError::validation(
            ErrorCode::RestrictedAdmin,
            "a key restricted to some categories' customers cannot have scope admin, which changes the whole archive",
            vec![FieldError::new("scope", "must be read or write with restrict")],
        )
        .into());
    }
    let secret = ApiKeySecret::generate();
    let exposed = secret.expose().to_string();
    let row = access::create(&state.db, NewKey { name, scope: body.scope, secret, restriction }).await?;
    let key = ApiKey::try_from(row)?;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::LOCATION, format!("/api/v1/api-keys/{}", key.id)))
        .json(ApiKeyCreated { key, secret: exposed }))
}

/// Revoke an API key
///
/// The key stops working at once on this replica and within seconds on the others (the key cache);
/// it stays listed as revoked.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", operation_id = "revoke_api_key", tag = "api-keys",
    params(("id" = i64, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked (revoking a revoked key changes nothing)"),
        (status = 404, description = "`api_key_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    access::revoke(&state.db, id).await?;
    state.keys.forget_all();
    Ok(HttpResponse::NoContent().finish())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api-keys").route(web::get().to(list)).route(web::post().to(create)))
        .service(web::resource("/api-keys/{id}").route(web::delete().to(revoke)));
}
