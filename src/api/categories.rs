//! `/schemes/{scheme}/categories`: hierarchical categories (客户分类).

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::{created_versioned, explicit_null, ok_versioned, AppState, FieldErrors, IfMatch, Page};
use crate::domain::category::{CategoryCode, CategoryName};
use crate::domain::clean_optional_text;
use crate::error::AppError;
use crate::service::catalogue::categories as service;
use crate::store::catalogue::categories::{CategoryChanges, CategoryView, NewCategory};
use crate::store::classification::reassign as reassign_store;

const DESCRIPTION_MAX: usize = 2000;

/// A category; `level`, `parent_code`, `is_leaf` and the counts are derived.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Category {
    #[schema(example = "REGION")]
    pub scheme: String,
    #[schema(example = "0101")]
    pub code: String,
    #[schema(example = "华北地区客户")]
    pub name: String,
    pub description: Option<String>,
    /// 1 for top-level categories.
    pub level: i32,
    /// `null` at level 1.
    pub parent_code: Option<String>,
    /// Only leaves take customers.
    pub is_leaf: bool,
    pub sort_order: i32,
    /// Inactive categories take no new assignments; existing ones stay.
    pub active: bool,
    /// In an ordered scheme, higher is better (VIP above 普通 above 潜在); `null` otherwise.
    pub rank: Option<i32>,
    /// Customers assigned to this category itself.
    pub customer_count: i64,
    /// Customers in this category and every descendant.
    pub subtree_customer_count: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CategoryView> for Category {
    fn from(view: CategoryView) -> Self {
        let parent_code = view.parent_code().map(str::to_string);
        let row = view.row;
        Category {
            scheme: view.scheme,
            code: row.code,
            name: row.name,
            description: row.description,
            level: row.level,
            parent_code,
            is_leaf: view.is_leaf,
            sort_order: row.sort_order,
            active: row.active,
            rank: row.rank,
            customer_count: view.customer_count,
            subtree_customer_count: view.subtree_customer_count,
            version: row.version,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// A category with its children, ordered by `sort_order`, then code.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryNode {
    #[serde(flatten)]
    pub category: Category,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

/// The whole hierarchy of a scheme.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryTree {
    pub scheme: String,
    /// Top-level categories.
    pub items: Vec<CategoryNode>,
}

fn yes() -> bool {
    true
}

/// A new category. Its parent is the code's prefix by the scheme's code rule and must exist.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "0101", "name": "华北地区客户", "sort_order": 1}))]
pub struct CategoryCreate {
    /// `[0-9A-Za-z]+`, ending on a segment boundary of the code rule.
    #[schema(example = "0101", pattern = "^[0-9A-Za-z]{1,30}$")]
    pub code: String,
    /// 1–100 characters, unique among siblings.
    #[schema(example = "华北地区客户")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::deserialize_whole")]
    pub sort_order: i32,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
    /// Only in an ordered scheme (422 `scheme_not_ordered` otherwise); higher is better.
    #[serde(default, deserialize_with = "crate::domain::deserialize_optional_whole")]
    pub rank: Option<i32>,
}

/// Changes to a category; the code and so the place in the tree cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "华北客户", "active": false}))]
pub struct CategoryPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::domain::deserialize_optional_whole")]
    pub sort_order: Option<i32>,
    pub active: Option<bool>,
    /// Only in an ordered scheme; `null` removes it. Past moves keep their direction.
    #[serde(default, deserialize_with = "explicit_null_whole")]
    #[schema(value_type = Option<i32>)]
    pub rank: Option<Option<i32>>,
}

/// `rank` of a patch: absent (`None`), `null` (`Some(None)`) or a whole number.
fn explicit_null_whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i32>>, D::Error> {
    crate::domain::deserialize_optional_whole(deserializer).map(Some)
}

impl CategoryCreate {
    fn parse(self) -> Result<NewCategory, AppError> {
        let mut errors = FieldErrors::default();
        let code = errors.check(CategoryCode::parse("code", &self.code));
        let name = errors.check(CategoryName::parse("name", &self.name));
        let description =
            errors.check(clean_optional_text("description", self.description.as_deref(), DESCRIPTION_MAX));
        errors.finish()?;
        Ok(NewCategory {
            code: code.expect("checked"),
            name: name.expect("checked"),
            description: description.expect("checked"),
            sort_order: self.sort_order,
            active: self.active,
            rank: self.rank,
        })
    }
}

impl CategoryPatch {
    fn parse(self) -> Result<CategoryChanges, AppError> {
        let mut errors = FieldErrors::default();
        let changes = CategoryChanges {
            name: self.name.and_then(|n| errors.check(CategoryName::parse("name", &n))),
            description: self
                .description
                .map(|d| errors.check(clean_optional_text("description", d.as_deref(), DESCRIPTION_MAX)).flatten()),
            sort_order: self.sort_order,
            active: self.active,
            rank: self.rank,
        };
        errors.finish()?;
        Ok(changes)
    }
}

/// Nests a pre-ordered flat list (ordered by code) into a tree.
fn build_tree(categories: Vec<Category>) -> Vec<CategoryNode> {
    let mut children: HashMap<Option<String>, Vec<Category>> = HashMap::new();
    for category in categories {
        children.entry(category.parent_code.clone()).or_default().push(category);
    }
    fn nest(parent: Option<String>, children: &mut HashMap<Option<String>, Vec<Category>>) -> Vec<CategoryNode> {
        let mut level = children.remove(&parent).unwrap_or_default();
        level.sort_by(|a, b| (a.sort_order, &a.code).cmp(&(b.sort_order, &b.code)));
        level
            .into_iter()
            .map(|category| {
                let grandchildren = nest(Some(category.code.clone()), children);
                CategoryNode { category, children: grandchildren }
            })
            .collect()
    }
    nest(None, &mut children)
}

/// List a scheme's categories
///
/// The categories of the scheme in code order, each with its parent (derived from the code rule),
/// level, whether it is a leaf and active, and how many customers it and its subtree hold (for a
/// restricted key, those it may see).
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/categories", operation_id = "list_categories", tag = "categories",
    params(("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 200, description = "Every category of the scheme ordered by code (the tree in pre-order), with counts", body = Page<Category>),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let restriction = auth.caller.restriction;
    let views = service::list(&state.db, scheme, restriction).await?;
    Ok(HttpResponse::Ok().json(Page::complete(views.into_iter().map(Category::from).collect())))
}

/// Get a scheme's category tree
///
/// The categories nested under their parents, each with its own and its subtree's customer counts:
/// what a tree control in a client shows.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/categories/tree", operation_id = "get_category_tree", tag = "categories",
    params(("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 200, description = "The nested hierarchy with counts", body = CategoryTree),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn tree(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let lookup = scheme.clone();
    let restriction = auth.caller.restriction;
    let views = service::list(&state.db, lookup, restriction).await?;
    let items = build_tree(views.into_iter().map(Category::from).collect());
    Ok(HttpResponse::Ok().json(CategoryTree { scheme, items }))
}

/// Create a category
///
/// Adds a category whose code follows the scheme's code rule (e.g. `2-2-2`): its parent is the
/// code's prefix, which must exist. Emits `category.created`.
#[utoipa::path(post, path = "/api/v1/schemes/{scheme}/categories", operation_id = "create_category", tag = "categories", request_body = CategoryCreate,
    params(("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 201, description = "Created", body = Category, headers(("Location" = String), ("ETag" = String))),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`duplicate_code`, `duplicate_name` (among siblings), `category_in_use` (the parent holds customers), `category_is_default` (the parent is the scheme's default)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_code_length` (off a segment boundary), `parent_not_found`, `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<String>,
    body: web::Json<CategoryCreate>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let new = body.into_inner().parse()?;
    let category = Category::from(service::create(&state.db, scheme, new).await?);
    let location = format!("/api/v1/schemes/{}/categories/{}", category.scheme, category.code);
    Ok(created_versioned(location, category.version, &category))
}

/// Get a category
///
/// One category with its customer counts and its version for `If-Match`.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/categories/{code}", operation_id = "get_category", tag = "categories",
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code")),
    responses(
        (status = 200, description = "The category", body = Category, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `category_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, code) = path.into_inner();
    let restriction = auth.caller.restriction;
    let category = Category::from(service::get(&state.db, scheme, code, restriction).await?);
    Ok(ok_versioned(category.version, &category))
}

/// Change a category
///
/// Renames, re-orders, describes or deactivates a category; an inactive category takes no new
/// customers but keeps those it has.
#[utoipa::path(patch, path = "/api/v1/schemes/{scheme}/categories/{code}", operation_id = "update_category", tag = "categories", request_body = CategoryPatch,
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Updated", body = Category, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `category_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`duplicate_name`, `category_is_default` (deactivating the default)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, String)>,
    if_match: IfMatch,
    body: web::Json<CategoryPatch>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, code) = path.into_inner();
    let changes = body.into_inner().parse()?;
    let category = Category::from(service::update(&state.db, scheme, code, changes, if_match.0).await?);
    Ok(ok_versioned(category.version, &category))
}

/// Delete a category
///
/// Deletes an empty leaf category: one with children or customers answers 409 `category_in_use`,
/// the scheme's default `category_is_default`. A delete waits for a write that is placing customers
/// in the category, or that write finds it gone: no customer is left pointing at a deleted
/// category.
#[utoipa::path(delete, path = "/api/v1/schemes/{scheme}/categories/{code}", operation_id = "delete_category", tag = "categories",
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "Category code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being deleted")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`scheme_not_found`, `category_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`category_in_use` (children or customers), `category_is_default`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, String)>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let (scheme, code) = path.into_inner();
    service::delete(&state.db, scheme, code, if_match.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Move every customer of a category's subtree to another leaf (分类标准更新).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "0201", "reason": "分类标准更新: 华北并入华东", "include_locked": false}))]
pub struct ReassignRequest {
    /// An active leaf of the same scheme.
    #[schema(example = "0201")]
    pub to: String,
    /// Recorded in every history entry.
    pub reason: Option<String>,
    /// Move customers pinned with `locked` too; by default they stay and are counted.
    #[serde(default)]
    pub include_locked: bool,
}

/// A customer left where it was: its attribute values do not fit the new category.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedMove {
    #[schema(example = "C0001")]
    pub customer: String,
    #[schema(example = "attributes.credit_limit: required by category 0201")]
    pub detail: String,
}

/// What re-mapping moved.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reassignment {
    pub scheme: String,
    pub from: String,
    pub to: String,
    pub moved: i64,
    /// Pinned customers left where they are (`include_locked: false`).
    pub skipped_locked: i64,
    /// Customers left where they are because the new category's attributes do not take their values.
    pub rejected: i64,
    /// The first 100 of them.
    pub rejections: Vec<RejectedMove>,
    /// Transactions it took (of `RUN_BATCH_SIZE` customers at most).
    pub batches: i64,
}

/// Move every customer of a category
///
/// 分类标准更新: moves the customers of the category's subtree to the leaf `to` in batches (pinned ones
/// with `include_locked`), each move with its history entry and event; for re-mapping a
/// classification standard.
#[utoipa::path(post, path = "/api/v1/schemes/{scheme}/categories/{code}/reassign", operation_id = "reassign_category", tag = "categories", request_body = ReassignRequest,
    params(("scheme" = String, Path, description = "Scheme code"), ("code" = String, Path, description = "The category whose subtree is emptied")),
    responses(
        (status = 200, description = "Every customer of the subtree (but those already in `to`) moved to `to`, in batches of `RUN_BATCH_SIZE`, each its own transaction, with history of source `remap`", body = Reassignment),
        (status = 404, description = "`scheme_not_found`, `category_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, or `to`: `category_not_found`, `category_not_leaf`, `category_inactive`, `scheme_inactive`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reassign(
    state: web::Data<AppState>,
    auth: Auth<Admin>,
    path: web::Path<(String, String)>,
    body: web::Json<ReassignRequest>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, from) = path.into_inner();
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let to = errors.check(CategoryCode::parse("to", &body.to));
    let reason = errors.check(crate::api::customers::parse_reason(body.reason.as_deref()));
    errors.finish()?;
    let request = reassign_store::Reassignment {
        scheme,
        from,
        to: to.expect("checked").as_str().to_string(),
        include_locked: body.include_locked,
        actor: auth.caller.name,
        reason: reason.flatten(),
        batch_size: state.run_batch_size,
    };
    let outcome = service::reassign(&state.db, request.clone()).await?;
    Ok(HttpResponse::Ok().json(Reassignment {
        scheme: request.scheme,
        from: request.from,
        to: request.to,
        moved: outcome.moved,
        skipped_locked: outcome.skipped_locked,
        rejected: outcome.rejected,
        rejections: outcome
            .rejections
            .into_iter()
            .map(|rejected| RejectedMove { customer: rejected.customer, detail: rejected.detail })
            .collect(),
        batches: outcome.batches,
    }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/schemes/{scheme}/categories").route(web::get().to(list)).route(web::post().to(create)))
        .service(web::resource("/schemes/{scheme}/categories/tree").route(web::get().to(tree)))
        .service(
            web::resource("/schemes/{scheme}/categories/{code}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/schemes/{scheme}/categories/{code}/reassign").route(web::post().to(reassign)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(code: &str, parent: Option<&str>, sort_order: i32) -> Category {
        Category {
            scheme: "S".into(),
            code: code.into(),
            name: code.into(),
            description: None,
            level: 1,
            parent_code: parent.map(str::to_string),
            is_leaf: true,
            sort_order,
            active: true,
            rank: None,
            customer_count: 0,
            subtree_customer_count: 0,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn tree_nests_by_parent_and_orders_siblings() {
        let flat = vec![category("01", None, 2), category("0101", Some("01"), 0), category("02", None, 1)];
        let tree = build_tree(flat);
        let top: Vec<_> = tree.iter().map(|n| n.category.code.as_str()).collect();
        assert_eq!(top, ["02", "01"]);
        assert_eq!(tree[1].children[0].category.code, "0101");
    }
}
