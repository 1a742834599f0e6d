//! `/customers/{code}/merge`: merging duplicates into a survivor (合并重复客户).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth};
use crate::api::customers::{parse_reason, Customer};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::{AppState, FieldErrors, IfMatch};
use crate::domain::customer::CustomerCode;
use crate::domain::FieldError;
use crate::service::archive::cleansing;
use crate::store::archive::merge::{Conflict, MergeRequest, Taken, MAX_DUPLICATES};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"duplicates": ["C0002", "C0003"], "reason": "同一税号的重复档案", "dry_run": true}))]
pub struct MergeBody {
    /// The customers to merge into this one (1–100), in the order their values are taken.
    #[schema(example = json!(["C0002", "C0003"]))]
    pub duplicates: Vec<String>,
    /// Recorded in the history of the survivor and of each duplicate.
    pub reason: Option<String>,
    /// Report what would happen, and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A duplicate's value that the survivor's own value kept out.
#[derive(Debug, Serialize, ToSchema)]
pub struct MergeConflict {
    /// A field, `attributes.KEY` or `categories.SCHEME`.
    #[schema(example = "phone")]
    pub field: String,
    pub kept: String,
    pub duplicate: String,
    pub dropped: String,
}

/// What the survivor took from a duplicate.
#[derive(Debug, Serialize, ToSchema)]
pub struct MergeTaken {
    /// A field the survivor had empty, `attributes.KEY` or `categories.SCHEME`.
    #[schema(example = "tax_id")]
    pub field: String,
    pub value: String,
    pub duplicate: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MergeResult {
    pub dry_run: bool,
    /// The survivor after the merge (a dry run: as it would be).
    pub survivor: Customer,
    /// The duplicates' codes, which now answer 404 `customer_merged`.
    pub merged: Vec<String>,
    pub taken: Vec<MergeTaken>,
    pub conflicts: Vec<MergeConflict>,
    /// Sales that moved to the survivor.
    pub transactions_moved: i64,
}

impl From<Conflict> for MergeConflict {
    fn from(conflict: Conflict) -> Self {
        Self { field: conflict.field, kept: conflict.kept, duplicate: conflict.duplicate, dropped: conflict.dropped }
    }
}

impl From<Taken> for MergeTaken {
    fn from(taken: Taken) -> Self {
        Self { field: taken.field, value: taken.value, duplicate: taken.duplicate }
    }
}

/// Merge duplicate customers into one
///
/// 合并重复客户: moves the duplicates' sales, fills the survivor's empty fields and attributes from them
/// (conflicts listed, the survivor's kept), deletes the duplicates and keeps their codes answering
/// `customer_merged`.
#[utoipa::path(post, path = "/api/v1/customers/{code}/merge", tag = "customers", operation_id = "merge_customers", request_body = MergeBody,
    params(("code" = String, Path, description = "The survivor"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the survivor's version")),
    responses(
        (status = 200, description = "Merged in one transaction (or, dry, what would be): the survivor keeps its fields, values and categories, fills its empty ones from the duplicates, takes their sales; the duplicates are gone", body = MergeResult, headers(("ETag" = String))),
        (status = 404, description = "`customer_not_found` (the survivor)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (no duplicates, more than 100, the survivor among them), `customers_not_found`, `invalid_attributes`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn merge(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<String>,
    if_match: IfMatch,
    body: web::Json<MergeBody>,
) -> Result<HttpResponse, ApiError> {
    let survivor = path.into_inner();
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    if body.duplicates.is_empty() || body.duplicates.len() > MAX_DUPLICATES {
        errors.check::<()>(Err(FieldError::new("duplicates", format!("name 1 to {MAX_DUPLICATES} customers"))));
    }
    let mut duplicates = Vec::new();
    for (index, code) in body.duplicates.iter().enumerate() {
        let field = format!("duplicates[{index}]");
        if *code == survivor {
            errors.check::<()>(Err(FieldError::new(field, format!("{code} is the survivor"))));
        } else if let Some(code) = errors.check(CustomerCode::parse(&field, code)) {
            duplicates.push(code);
        }
    }
    let reason = errors.check(parse_reason(body.reason.as_deref()));
    errors.finish()?;
    let request = MergeRequest {
        survivor,
        duplicates,
        reason: reason.flatten(),
        dry_run: body.dry_run,
        actor: auth.caller.name,
        expected: if_match.0,
    };
    let outcome = cleansing::merge(&state.db, request).await?;
    let survivor = Customer::from(outcome.survivor);
    let version = survivor.version;
    let result = MergeResult {
        dry_run: body.dry_run,
        survivor,
        merged: outcome.merged,
        taken: outcome.taken.into_iter().map(MergeTaken::from).collect(),
        conflicts: outcome.conflicts.into_iter().map(MergeConflict::from).collect(),
        transactions_moved: outcome.transactions_moved,
    };
    Ok(crate::api::ok_versioned(version, &result))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/customers/{code}/merge").route(web::post().to(merge)));
}
