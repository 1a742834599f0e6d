//! `/schemes/{scheme}/rules`: automatic classification rules (自动分类).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::schemas::Condition;
use crate::api::{created_versioned, explicit_null, ok_versioned, AppState, FieldErrors, IfMatch, Page};
use crate::domain::category::CategoryCode;
use crate::domain::clean_text;
use crate::error::AppError;
use crate::service::catalogue::rules as service;
use crate::store::catalogue::rules::{NewRule, RuleChanges, RuleView};

const NAME_MAX: usize = 200;
const DEFAULT_PRIORITY: i32 = 100;

/// A rule: customers matching `condition` go to `target_category`; lower `priority` is tried first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rule {
    pub id: i64,
    #[schema(example = "TIER")]
    pub scheme: String,
    #[schema(example = "年消费超过100万为VIP")]
    pub name: String,
    #[schema(example = "01")]
    pub target_category: String,
    pub priority: i32,
    pub enabled: bool,
    #[schema(value_type = Condition, example = json!({"field": "spend_12m", "op": ">", "value": 1000000}))]
    pub condition: Json,
    /// Whom the condition's relative fields rank against: absent (`null`), every
    /// active customer; else the active customers of a category's subtree.
    pub population: Option<RulePopulation>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<RuleView> for Rule {
    fn from(view: RuleView) -> Self {
        let row = view.row;
        Rule {
            id: row.id,
            scheme: view.scheme,
            name: row.name,
            target_category: row.target_category,
            priority: row.priority,
            enabled: row.enabled,
            condition: view.condition,
            population: row.population.map(|category| RulePopulation { category }),
            version: row.version,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// The population a rule's relative fields (`percentile(…)`, `cumulative_share(…)`,
/// `rfm_r`, `rfm_f`, `rfm_m`, `rfm`) rank within.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePopulation {
    /// `SCHEME:CODE`: the active customers of this category's subtree.
    #[schema(example = "REGION:01")]
    pub category: String,
}

/// A new rule. The condition language: `{"all":[…]}`, `{"any":[…]}`, `{"not":{…}}`,
/// or a leaf `{"field","op","value"}`. Fields: `spend_12m`, `orders_12m`,
/// `lifetime_spend`, `last_order_at`, `days_since_last_order`, `code`, `name`,
/// `short_name`, `status`, `created_at`, `tax_id`, `attr.<key>`, `category.<SCHEME>`,
/// and relative fields ranking the customer among the rule's population:
/// `percentile(<numeric field>)` and `cumulative_share(<numeric field>)` (0–100),
/// `rfm_r`, `rfm_f`, `rfm_m` (quintile scores 1–5) and `rfm` (`"545"`).
/// Ops: `= != > >= < <= in not_in between is_null under`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "年消费超过100万为VIP", "target_category": "01", "priority": 10, "condition": {"all": [{"field": "spend_12m", "op": ">=", "value": 1000000}, {"field": "status", "op": "=", "value": "active"}]}}))]
pub struct RuleCreate {
    #[schema(example = "年消费超过100万为VIP")]
    pub name: String,
    /// An active leaf category of the scheme.
    #[schema(example = "01")]
    pub target_category: String,
    /// Lower first; ties by id. Default 100.
    #[serde(default, deserialize_with = "crate::domain::deserialize_optional_whole")]
    pub priority: Option<i32>,
    /// Default true.
    pub enabled: Option<bool>,
    #[schema(value_type = Condition, example = json!({"all": [{"field": "spend_12m", "op": ">", "value": 1000000}, {"field": "status", "op": "=", "value": "active"}]}))]
    pub condition: Json,
    /// Ranks relative fields within a subtree; absent: among every active customer.
    pub population: Option<RulePopulation>,
}

/// Changes to a rule; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"priority": 20, "enabled": false}))]
pub struct RulePatch {
    pub name: Option<String>,
    pub target_category: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::deserialize_optional_whole")]
    pub priority: Option<i32>,
    pub enabled: Option<bool>,
    #[schema(value_type = Option<Condition>)]
    pub condition: Option<Json>,
    /// A new population, or `null` for every active customer.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<RulePopulation>)]
    pub population: Option<Option<RulePopulation>>,
}

impl RuleCreate {
    fn parse(self) -> Result<NewRule, AppError> {
        let mut errors = FieldErrors::default();
        let name = errors.check(clean_text("name", &self.name, 1, NAME_MAX));
        let target = errors.check(CategoryCode::parse("target_category", &self.target_category));
        errors.finish()?;
        Ok(NewRule {
            name: name.expect("checked"),
            target_category: target.expect("checked"),
            priority: self.priority.unwrap_or(DEFAULT_PRIORITY),
            enabled: self.enabled.unwrap_or(true),
            condition: self.condition,
            population: self.population.map(|p| p.category),
        })
    }
}

impl RulePatch {
    fn parse(self) -> Result<RuleChanges, AppError> {
        let mut errors = FieldErrors::default();
        let name = self.name.and_then(|n| errors.check(clean_text("name", &n, 1, NAME_MAX)));
        let target_category =
            self.target_category.and_then(|c| errors.check(CategoryCode::parse("target_category", &c)));
        errors.finish()?;
        Ok(RuleChanges {
            name,
            target_category,
            priority: self.priority,
            enabled: self.enabled,
            condition: self.condition,
            population: self.population.map(|p| p.map(|p| p.category)),
        })
    }
}

/// List a scheme's rules
///
/// The automatic classification rules of the scheme in priority order: each a condition over
/// customer fields, attributes and sales metrics, and the category it assigns.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/rules", tag = "rules", operation_id = "list_rules",
    params(("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 200, description = "The scheme's rules in the order runs try them", body = Page<Rule>),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    _auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let rules = service::list(&state.db, scheme).await?;
    Ok(HttpResponse::Ok().json(Page::complete(rules.into_iter().map(Rule::from).collect())))
}

/// Create a classification rule
///
/// Adds a rule: a condition tree (`all`, `any`, `not`, comparisons of fields, attributes, sales
/// metrics and relative ranks such as `percentile(spend_12m)`) and the leaf category a match is
/// assigned to, at a priority.
#[utoipa::path(post, path = "/api/v1/schemes/{scheme}/rules", tag = "rules", operation_id = "create_rule", request_body = RuleCreate,
    params(("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 201, description = "Created", body = Rule, headers(("Location" = String), ("ETag" = String))),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_condition` (every bad node in `errors`, `field` being its JSON pointer), `category_not_found`, `category_not_leaf`, `category_inactive`, `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<String>,
    body: web::Json<RuleCreate>,
) -> Result<HttpResponse, ApiError> {
    let scheme = path.into_inner();
    let new = body.into_inner().parse()?;
    let rule = Rule::from(service::create(&state.db, scheme, new).await?);
    Ok(created_versioned(format!("/api/v1/schemes/{}/rules/{}", rule.scheme, rule.id), rule.version, &rule))
}

/// Get a rule
///
/// One rule with its condition, target, priority and version for `If-Match`.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}/rules/{id}", tag = "rules", operation_id = "get_rule",
    params(("scheme" = String, Path, description = "Scheme code"), ("id" = i64, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule", body = Rule, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `rule_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    _auth: Auth<Read, Restrictable>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, id) = path.into_inner();
    let rule = Rule::from(service::get(&state.db, scheme, id).await?);
    Ok(ok_versioned(rule.version, &rule))
}

/// Change a rule
///
/// Changes a rule's condition, target, priority, population or whether it is enabled; the next run
/// applies it.
#[utoipa::path(patch, path = "/api/v1/schemes/{scheme}/rules/{id}", tag = "rules", operation_id = "update_rule", request_body = RulePatch,
    params(("scheme" = String, Path, description = "Scheme code"), ("id" = i64, Path, description = "Rule id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Updated", body = Rule, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`, `rule_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_condition`, `category_not_leaf`, `category_inactive`, `category_not_found`, `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, i64)>,
    if_match: IfMatch,
    body: web::Json<RulePatch>,
) -> Result<HttpResponse, ApiError> {
    let (scheme, id) = path.into_inner();
    let changes = body.into_inner().parse()?;
    let rule = Rule::from(service::update(&state.db, scheme, id, changes, if_match.0).await?);
    Ok(ok_versioned(rule.version, &rule))
}

/// Delete a rule
///
/// Removes the rule; runs already recorded keep its id in their changes.
#[utoipa::path(delete, path = "/api/v1/schemes/{scheme}/rules/{id}", tag = "rules", operation_id = "delete_rule",
    params(("scheme" = String, Path, description = "Scheme code"), ("id" = i64, Path, description = "Rule id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being deleted")),
    responses(
        (status = 204, description = "Deleted; history entries keep its id"),
        (status = 404, description = "`scheme_not_found`, `rule_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<(String, i64)>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let (scheme, id) = path.into_inner();
    service::delete(&state.db, scheme, id, if_match.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/schemes/{scheme}/rules").route(web::get().to(list)).route(web::post().to(create)))
        .service(
            web::resource("/schemes/{scheme}/rules/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        );
}
