//! `/schemes`: classification schemes (分类体系).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::{created_versioned, explicit_null, ok_versioned, AppState, FieldErrors, IfMatch, Page};
use crate::domain::category::CategoryCode;
use crate::domain::code_rule::CodeRule;
use crate::domain::schedule::{Schedule, ScheduleSpec};
use crate::domain::scheme::SchemeCode;
use crate::domain::tier_policy::TierPolicy;
use crate::domain::{clean_optional_text, clean_text, FieldError};
use crate::error::AppError;
use crate::service::catalogue::schemes as service;
use crate::store::catalogue::schemes::{NewScheme, SchemeChanges, SchemeView};

const NAME_MAX: usize = 100;
const DESCRIPTION_MAX: usize = 2000;

/// A classification scheme such as INDUSTRY, REGION or TIER.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scheme {
    #[schema(example = "REGION")]
    pub code: String,
    #[schema(example = "地区分类")]
    pub name: String,
    pub description: Option<String>,
    /// Segment lengths of category codes, e.g. `2-2-2`.
    #[schema(example = "2-2")]
    pub code_rule: String,
    /// Legal category code lengths, one per level, derived from `code_rule`.
    #[schema(example = json!([2, 4]))]
    pub code_lengths: Vec<usize>,
    /// Every customer should have a category in this scheme.
    pub required: bool,
    /// Given to new customers that name no category of this scheme.
    pub default_category: Option<String>,
    /// Re-run the rules for customers whose transactions arrive.
    pub auto_classify: bool,
    pub active: bool,
    /// Categories have ranks; moves go up or down.
    pub ordered: bool,
    /// Ordered schemes only: how its runs hold customers in their tier (a minimum stay,
    /// consecutive failing runs before a downgrade); `null`: runs move down at once.
    pub tier_policy: Option<TierPolicy>,
    pub category_count: i64,
    /// When the service starts a classification run of this scheme by itself (trigger `schedule`).
    pub schedule: Option<ScheduleSpec>,
    /// The schedule's next firing.
    pub next_run_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<SchemeView> for Scheme {
    type Error = AppError;

    fn try_from(view: SchemeView) -> Result<Self, AppError> {
        let schedule = view.row.schedule()?.map(|schedule| schedule.spec().clone());
        let tier_policy = view.row.tier_policy()?;
        let row = view.row;
        Ok(Scheme {
            code: row.code,
            name: row.name,
            description: row.description,
            code_rule: row.code_rule.to_string(),
            code_lengths: row.code_rule.boundaries(),
            required: row.required,
            default_category: row.default_category,
            auto_classify: row.auto_classify,
            active: row.active,
            ordered: row.ordered,
            tier_policy,
            category_count: view.category_count,
            schedule,
            next_run_at: row.schedule_next_at.map(|at| at.and_utc()),
            version: row.version,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

fn yes() -> bool {
    true
}

/// A new scheme. Its `default_category` is set with PATCH once the category exists.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "REGION", "name": "地区分类", "code_rule": "2-2", "required": false, "ordered": false}))]
pub struct SchemeCreate {
    /// `^[A-Z][A-Z0-9_]{0,31}$`; cannot change later.
    #[schema(example = "REGION", pattern = "^[A-Z][A-Z0-9_]{0,31}$")]
    pub code: String,
    /// 1–100 characters.
    #[schema(example = "地区分类")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Segment lengths joined by `-`: at most 9 levels and 30 characters in all.
    #[schema(example = "2-2", pattern = "^[1-9][0-9]?(-[1-9][0-9]?){0,8}$")]
    pub code_rule: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub auto_classify: bool,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
    /// Its categories have ranks (higher is better), and moves between them are
    /// upgrades or downgrades (客户升级/降级), as a tier scheme's are.
    #[serde(default)]
    pub ordered: bool,
    /// Start classification runs by this schedule (at most every 5 minutes).
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Hold rules against flapping (ordered schemes only): runs move a customer up at
    /// once, down only after `min_stay_days` in its tier and `downgrade_after_runs`
    /// consecutive applied runs that find it below its tier.
    #[serde(default)]
    pub tier_policy: Option<TierPolicy>,
}

/// Changes to a scheme; absent fields stay as they are, `null` clears a nullable one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "销售地区", "default_category": "0101", "schedule": {"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}}))]
pub struct SchemePatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Free to change while the scheme has no categories; afterwards only by appending segments.
    pub code_rule: Option<String>,
    pub required: Option<bool>,
    /// An existing, active leaf category of this scheme, or `null`.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub default_category: Option<Option<String>>,
    pub auto_classify: Option<bool>,
    pub active: Option<bool>,
    /// Turning it off keeps the ranks but makes every later move `lateral`.
    pub ordered: Option<bool>,
    /// A new schedule (its next firing counted from now), or `null` for none.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<ScheduleSpec>)]
    pub schedule: Option<Option<ScheduleSpec>>,
    /// A new tier policy (ordered schemes only), or `null` for none; `null` also forgets
    /// the failed runs counted so far.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<TierPolicy>)]
    pub tier_policy: Option<Option<TierPolicy>>,
}

fn parse_code_rule(text: &str) -> Result<CodeRule, FieldError> {
    text.parse().map_err(|e| FieldError::new("code_rule", format!("{e}")))
}

impl SchemeCreate {
    fn parse(self) -> Result<NewScheme, AppError> {
        let mut errors = FieldErrors::default();
        let code = errors.check(SchemeCode::parse("code", &self.code));
        let name = errors.check(clean_text("name", &self.name, 1, NAME_MAX));
        let description =
            errors.check(clean_optional_text("description", self.description.as_deref(), DESCRIPTION_MAX));
        let code_rule = errors.check(parse_code_rule(&self.code_rule));
        let schedule = self.schedule.and_then(|spec| errors.check_all(Schedule::parse("/schedule", spec)));
        let tier_policy = self.tier_policy.and_then(|policy| errors.check(policy.check("/tier_policy")));
        errors.finish()?;
        Ok(NewScheme {
            code: code.expect("checked"),
            name: name.expect("checked"),
            description: description.expect("checked"),
            code_rule: code_rule.expect("checked"),
            required: self.required,
            auto_classify: self.auto_classify,
            active: self.active,
            ordered: self.ordered,
            schedule,
            tier_policy,
        })
    }
}

impl SchemePatch {
    fn parse(self) -> Result<SchemeChanges, AppError> {
        let mut errors = FieldErrors::default();
        let changes = SchemeChanges {
            name: self.name.and_then(|n| errors.check(clean_text("name", &n, 1, NAME_MAX))),
            description: self
                .description
                .map(|d| errors.check(clean_optional_text("description", d.as_deref(), DESCRIPTION_MAX)).flatten()),
            code_rule: self.code_rule.and_then(|r| errors.check(parse_code_rule(&r))),
            required: self.required,
            default_category: self
                .default_category
                .map(|c| c.and_then(|c| errors.check(CategoryCode::parse("default_category", &c)))),
            auto_classify: self.auto_classify,
            active: self.active,
            ordered: self.ordered,
            schedule: self
                .schedule
                .map(|spec| spec.and_then(|spec| errors.check_all(Schedule::parse("/schedule", spec)))),
            tier_policy: self
                .tier_policy
                .map(|policy| policy.and_then(|policy| errors.check(policy.check("/tier_policy")))),
        };
        errors.finish()?;
        Ok(changes)
    }
}

/// List classification schemes
///
/// Every scheme with its code rule, whether it is required, its default category, whether its
/// categories are ordered tiers, and its version.
#[utoipa::path(get, path = "/api/v1/schemes", operation_id = "list_schemes", tag = "schemes",
    responses((status = 200, description = "All schemes, ordered by code", body = Page<Scheme>)))]
pub async fn list(state: web::Data<AppState>, _auth: Auth<Read, Restrictable>) -> Result<HttpResponse, ApiError> {
    let views = service::list(&state.db).await?;
    Ok(HttpResponse::Ok().json(Page::complete(views.into_iter().map(Scheme::try_from).collect::<Result<_, _>>()?)))
}

/// Create a classification scheme
///
/// Adds a scheme (e.g. region, industry, tier) with its code rule (`2-2-2`: the digits of each
/// level), whether each customer must have a category in it, and whether its categories are ordered
/// tiers.
#[utoipa::path(post, path = "/api/v1/schemes", operation_id = "create_scheme", tag = "schemes", request_body = SchemeCreate,
    responses(
        (status = 201, description = "Created", body = Scheme, headers(("Location" = String), ("ETag" = String))),
        (status = 409, description = "`duplicate_code`: the scheme exists", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    body: web::Json<SchemeCreate>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner().parse()?;
    let view = service::create(&state.db, new).await?;
    let scheme = Scheme::try_from(view)?;
    Ok(created_versioned(format!("/api/v1/schemes/{}", scheme.code), scheme.version, &scheme))
}

/// Get a scheme
///
/// One scheme with its version for `If-Match`.
#[utoipa::path(get, path = "/api/v1/schemes/{scheme}", operation_id = "get_scheme", tag = "schemes",
    params(("scheme" = String, Path, description = "Scheme code")),
    responses(
        (status = 200, description = "The scheme", body = Scheme, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    _auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let scheme = Scheme::try_from(service::get(&state.db, code).await?)?;
    Ok(ok_versioned(scheme.version, &scheme))
}

/// Change a scheme
///
/// Renames a scheme, changes its default category, whether it is required or active, the order of
/// its tiers or its schedule, with `If-Match` on its version.
#[utoipa::path(patch, path = "/api/v1/schemes/{scheme}", operation_id = "update_scheme", tag = "schemes", request_body = SchemePatch,
    params(("scheme" = String, Path, description = "Scheme code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Updated", body = Scheme, headers(("ETag" = String))),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`code_rule_locked`: categories exist and the new rule does not extend the old one", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<String>,
    if_match: IfMatch,
    body: web::Json<SchemePatch>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let changes = body.into_inner().parse()?;
    let scheme = Scheme::try_from(service::update(&state.db, code, changes, if_match.0).await?)?;
    Ok(ok_versioned(scheme.version, &scheme))
}

/// Delete a scheme
///
/// Deletes a scheme without categories; one with categories answers 409 `scheme_in_use`.
#[utoipa::path(delete, path = "/api/v1/schemes/{scheme}", operation_id = "delete_scheme", tag = "schemes",
    params(("scheme" = String, Path, description = "Scheme code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being deleted")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`scheme_in_use`: the scheme still has categories", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    _auth: Auth<Admin>,
    path: web::Path<String>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    service::delete(&state.db, code, if_match.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/schemes").route(web::get().to(list)).route(web::post().to(create))).service(
        web::resource("/schemes/{scheme}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}
