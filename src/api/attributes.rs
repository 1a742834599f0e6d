//! `/schemes/{scheme}/categories/{code}/attributes`: attribute definitions (分类属性).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::schemas::AttributeValue;
use crate::api::{created_versioned, explicit_null, ok_versioned, AppState, FieldErrors, IfMatch, Page};
use crate::domain::attribute::{AttributeKey, Definition, DefinitionDraft, ValueType};
use crate::domain::{clean_text, FieldError};
use crate::error::{AppError, ErrorCode};
use crate::service::catalogue::attributes::{self as service, DefinitionAt};
use crate::store::catalogue::attributes::DefinitionView;

const LABEL_MAX: usize = 200;

/// An attribute definition: every customer in the category's subtree has this attribute.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttributeDefinition {
    #[schema(example = "discount_rate")]
    pub key: String,
    #[schema(example = "折扣率")]
    pub label: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Customers of the subtree must have a value (the default counts).
    pub required: bool,
    /// Stands in for a missing value, and is what search sees for it.
    #[schema(value_type = Option<AttributeValue>, example = json!(0.1))]
    pub default: Option<Json>,
    /// The allowed values of an enum.
    pub options: Option<Vec<String>>,
    /// Smallest number or date, or for strings the shortest length.
    #[schema(value_type = Option<AttributeValue>, example = json!(0))]
    pub min: Option<Json>,
    /// Largest number or date, or for strings the longest length.
    #[schema(value_type = Option<AttributeValue>, example = json!(0.5))]
    pub max: Option<Json>,
    #[schema(example = "TIER")]
    pub scheme: String,
    /// The category that defines it: this one, or with `effective=true` possibly an ancestor.
    #[schema(example = "01")]
    pub defined_on: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DefinitionView> for AttributeDefinition {
    fn from(view: DefinitionView) -> Self {
        let definition = view.definition;
        AttributeDefinition {
            key: definition.key.as_str().to_string(),
            label: definition.label,
            value_type: definition.value_type,
            required: definition.required,
            default: definition.default.as_ref().map(|v| v.to_json()),
            options: (definition.value_type == ValueType::Enum).then_some(definition.options),
            min: definition.min.as_ref().map(|l| l.to_json()),
            max: definition.max.as_ref().map(|l| l.to_json()),
            scheme: view.scheme,
            defined_on: view.row.category_code,
            version: view.row.version,
            created_at: view.row.created_at.and_utc(),
            updated_at: view.row.updated_at.and_utc(),
        }
    }
}

/// A new definition. The key must not appear on an ancestor or descendant, nor in another scheme.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "discount_rate", "label": "折扣率", "type": "decimal", "min": 0, "max": 0.5, "default": 0.1, "required": false}))]
pub struct AttributeCreate {
    /// `^[a-z][a-z0-9_]{0,63}$`; cannot change.
    #[schema(example = "discount_rate", pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub key: String,
    /// 1–200 characters; defaults to the key.
    #[schema(example = "折扣率")]
    pub label: Option<String>,
    /// Cannot change.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default)]
    pub required: bool,
    /// Must satisfy the definition itself.
    #[schema(value_type = Option<AttributeValue>, example = json!(0.1))]
    pub default: Option<Json>,
    /// Enum only: non-empty, unique, 1–100 characters each.
    pub options: Option<Vec<String>>,
    /// Numbers and dates: the smallest value; strings: the shortest length.
    #[schema(value_type = Option<AttributeValue>, example = json!(0))]
    pub min: Option<Json>,
    /// Numbers and dates: the largest value; strings: the longest length.
    #[schema(value_type = Option<AttributeValue>, example = json!(0.5))]
    pub max: Option<Json>,
}

/// Changes to a definition; absent fields stay, `null` clears `default`, `min` or `max`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max": 0.4, "label": "最高折扣率"}))]
pub struct AttributePatch {
    pub label: Option<String>,
    pub required: Option<bool>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<AttributeValue>)]
    pub default: Option<Option<Json>>,
    pub options: Option<Vec<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<AttributeValue>)]
    pub min: Option<Option<Json>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<AttributeValue>)]
    pub max: Option<Option<Json>>,
}

fn invalid_definition(errors: Vec<FieldError>) -> AppError {
    let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
    AppError::validation(ErrorCode::InvalidAttributeDefinition, detail, errors)
}

impl AttributeCreate {
    fn parse(self) -> Result<Definition, AppError> {
        let mut errors = FieldErrors::default();
        let key = errors.check(AttributeKey::parse("key", &self.key));
        let label = errors.check(clean_text("label", self.label.as_deref().unwrap_or(&self.key), 1, LABEL_MAX));
        errors.finish()?;
        DefinitionDraft {
            key: key.expect("checked"),
            label: label.expect("checked"),
            value_type: self.value_type,
            required: self.required,
            default: self.default,
            options: self.options,
            min: self.min,
            max: self.max,
        }
        .check()
        .map_err(invalid_definition)
    }
}

impl AttributePatch {
    fn apply(&self, mut draft: DefinitionDraft) -> Result<Definition, AppError> {
        if let Some(label) = &self.label {
            draft.label = clean_text("label", label, 1, LABEL_MAX).map_err(|e| invalid_definition(vec![e]))?;
        }
        if let Some(required) = self.required {
            draft.required = required;
        }
        if let Some(default) = &self.default {
            draft.default = default.clone();
        }
        if let Some(options) = &self.options {
            draft.options = Some(options.clone());
        }
        if let Some(min) = &self.min {
            draft.min = min.clone();
        }
        if let Some(max) = &self.max {
            draft.max = max.clone();
        }
        draft.check().map_err(invalid_definition)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    effective: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// List a category's attribute definitions
///
/// The typed attributes (text, integer, decimal, date, boolean, enum) defined on the category, and
/// those it inherits from its ancestors.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/categories/{code}/attributes", tag = "attributes", operation_id = "list_attributes",
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"),
           ("effective" = Option<bool>, Query, description = "Also the definitions inherited from ancestors, root first; `defined_on` says where each comes from")),
    responses(
        (status = 200, description = "The definitions", body = Page<AttributeDefinition>),
        (status = 404, description = "`scheme_not_found`, `category_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    _auth: Auth<Read, Restrictable>,
    path: web::Path<(String, String)>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, code) = path.into_inner();
    let effective = query.effective;
    let views = service::list(&state.db, scheme, code, effective).await?;
    Ok(HttpResponse::Ok().json(Page::complete(views.into_iter().map(AttributeDefinition::from).collect())))
}

/// Define an attribute on a category
///
/// 分类属性: adds a typed attribute (with bounds, options, a default and whether it is required) that
/// the customers of the category and its subtree carry. A required one on a category that holds
/// customers answers 409 `attribute_violations` unless `?force=true` with a default gives it to
/// them.
#[utoipa::path(post, path = "/api/v1/schemes/{scheme}/categories/{code}/attributes", tag = "attributes", operation_id = "create_attribute",
    request_body = AttributeCreate,
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"),
           ("force" = Option<bool>, Query, description = "A required attribute on a category with customers: give them the default")),
    responses(
        (status = 201, description = "Created; customers of the subtree get the default", body = AttributeDefinition, headers(("Location" = String), ("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `category_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`duplicate_attribute` (the key is on the same path or in another scheme), `attribute_type_conflict`, `attribute_violations` (with `violations`: customers that would lack a required value)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_attribute_definition`, `force_needs_default`, `validation_failed`, `transaction_too_large` (`force=true` over more customers than a Galera cluster takes in one transaction)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, String)>,
    query: web::Query<ForceQuery>,
    body: web::Json<AttributeCreate>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, code) = path.into_inner();
    let definition = body.into_inner().parse()?;
    let force = query.force;
    let created = AttributeDefinition::from(service::create(&state.db, scheme, code, definition, force).await?);
    let location =
        format!("/api/v1/schemes/{}/categories/{}/attributes/{}", created.scheme, created.defined_on, created.key);
    Ok(created_versioned(location, created.version, &created))
}

/// Get an attribute definition
///
/// One attribute definition of the category, with its version for `If-Match`.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/categories/{code}/attributes/{key}", tag = "attributes", operation_id = "get_attribute",
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"), ("key" = String, Path, description = "Attribute key")),
    responses(
        (status = 200, description = "The definition on this category", body = AttributeDefinition, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `category_not_found`, `attribute_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    _auth: Auth<Read, Restrictable>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let definition = AttributeDefinition::from(service::get(&state.db, at(path)).await?);
    Ok(ok_versioned(definition.version, &definition))
}

/// Change an attribute definition
///
/// Every value the definition governs is checked again: a change that would leave customers invalid
/// answers 409 `attribute_violations` with how many, and changes nothing; with `?force=true` and a
/// default, those customers get the default. A changed default moves every defaulted value with it.
#[utoipa::path(patch, path = "/api/v1/schemes/{scheme}/categories/{code}/attributes/{key}", tag = "attributes", operation_id = "update_attribute",
    request_body = AttributePatch,
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"), ("key" = String, Path, description = "Attribute key"),
           ("force" = Option<bool>, Query, description = "Give customers whose values the change would invalidate the (new) default"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Updated; defaulted values follow a new default", body = AttributeDefinition, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `category_not_found`, `attribute_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`attribute_violations`: `violations` customers would break the changed definition", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_attribute_definition`, `force_needs_default`, `transaction_too_large` (`force=true` over more customers than a Galera cluster takes in one transaction)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, String, String)>,
    query: web::Query<ForceQuery>,
    if_match: IfMatch,
    body: web::Json<AttributePatch>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner();
    let force = query.force;
    let view = service::update(&state.db, at(path), move |draft| patch.apply(draft), if_match.0, force).await?;
    let definition = AttributeDefinition::from(view);
    Ok(ok_versioned(definition.version, &definition))
}

/// Delete an attribute definition
///
/// Deletes the definition; one whose values were entered (not defaulted) needs `?force=true` (409
/// `attribute_in_use` otherwise), which deletes those values.
#[utoipa::path(delete, path = "/api/v1/schemes/{scheme}/categories/{code}/attributes/{key}", tag = "attributes", operation_id = "delete_attribute",
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"), ("key" = String, Path, description = "Attribute key"),
           ("force" = Option<bool>, Query, description = "Also delete the values customers were given"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being deleted")),
    responses(
        (status = 204, description = "Deleted, with the customers' values of it"),
        (status = 404, description = "`scheme_not_found`, `category_not_found`, `attribute_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`attribute_in_use`: `violations` customers have a value; send force=true", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, String, String)>,
    query: web::Query<ForceQuery>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let force = query.force;
    service::delete(&state.db, at(path), if_match.0, force).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The definition a `{scheme}/categories/{code}/attributes/{key}` path names.
fn at(path: web::Path<(String, String, String)>) -> DefinitionAt {
    let (scheme, category, key) = path.into_inner();
    DefinitionAt { scheme, category, key }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/schemes/{scheme}/categories/{code}/attributes")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/schemes/{scheme}/categories/{code}/attributes/{key}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}
