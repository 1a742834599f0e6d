//! `/customers/duplicates`: candidate duplicates (清理重复数据), groups of customers that
//! share a tax id, or a name, phone or email once normalised.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::filters::parse_filter;
use crate::api::paging;
use crate::api::{AppState, FieldErrors, Page};
use crate::domain::customer::CustomerStatus;
use crate::domain::duplicates::DuplicateKey;
use crate::error::{AppError, ErrorCode};
use crate::service::archive::cleansing;
use crate::store::archive::customer_filters::Filters;
use crate::store::archive::duplicates::{Group, GroupPosition, Member};

const DEFAULT_GROUPS: i64 = 20;
const MAX_GROUPS: i64 = 100;

/// Customers that share one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicateGroup {
    /// What they share.
    pub key: DuplicateKey,
    /// The shared value, normalised: 北京电子 for 北京电子有限公司 and （北京）电子有限责任公司.
    #[schema(example = "北京电子")]
    pub value: String,
    /// How many customers share it.
    pub size: i64,
    /// The first 100 of them, by code.
    pub customers: Vec<DuplicateMember>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicateMember {
    pub code: String,
    pub name: String,
    pub tax_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub status: CustomerStatus,
}

impl From<Member> for DuplicateMember {
    fn from(member: Member) -> Self {
        Self {
            code: member.code,
            name: member.name,
            tax_id: member.tax_id,
            phone: member.phone,
            email: member.email,
            status: member.status,
        }
    }
}

impl From<Group> for DuplicateGroup {
    fn from(group: Group) -> Self {
        Self {
            key: group.key,
            value: group.value,
            size: group.size,
            customers: group.members.into_iter().map(DuplicateMember::from).collect(),
        }
    }
}

/// `by`, `limit`, `cursor` and the customer-list filters of a duplicates search.
struct DuplicatesQuery {
    keys: Vec<DuplicateKey>,
    filters: Filters,
    limit: i64,
    after: Option<GroupPosition>,
}

fn parse_query(pairs: Vec<(String, String)>) -> Result<DuplicatesQuery, AppError> {
    let (mut by, mut limit, mut cursor) = (None, None, None);
    let mut filters = Filters::default();
    let mut errors = FieldErrors::default();
    for (key, value) in pairs {
        if parse_filter(&key, &value, &mut filters, &mut errors) {
            continue;
        }
        match key.as_str() {
            "by" => by = Some(value),
            "limit" => limit = Some(value),
            "cursor" => cursor = Some(value),
            other => return Err(AppError::new(ErrorCode::InvalidQuery, format!("unknown query parameter {other:?}"))),
        }
    }
    errors.finish()?;
    let keys = match by.as_deref() {
        None => DuplicateKey::ALL.to_vec(),
        Some(text) => DuplicateKey::parse_list(text).map_err(|message| {
            AppError::validation(
                ErrorCode::ValidationFailed,
                format!("by: {message}"),
                vec![crate::domain::FieldError::new("by", message)],
            )
        })?,
    };
    let limit = paging::parse_limit_within(limit.as_deref(), DEFAULT_GROUPS, MAX_GROUPS)?;
    let after = cursor.as_deref().map(paging::decode).transpose()?;
    Ok(DuplicatesQuery { keys, filters, limit, after })
}

/// Find probable duplicate customers
///
/// 清理重复数据: groups of customers sharing a tax id, or a name, phone or email once normalised (`by=`),
/// largest first and paged, narrowed by the customer-list filters.
#[utoipa::path(get, path = "/api/v1/customers/duplicates", tag = "customers", operation_id = "find_duplicates",
    params(
        ("by" = Option<String>, Query, description = "Comma-separated keys: tax_id, name, phone, email (default all). Names compare with full-width folded to half-width, spaces and punctuation dropped (（） like ()), ASCII case-folded and a legal-form suffix (股份有限公司, 有限责任公司, 有限公司, 公司) folded; phones by their digits (a +86 before a mobile number dropped); emails case-folded", example = "name,phone"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Groups per page, 1–100, default 20"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("category" = Option<Vec<String>>, Query, description = "`SCHEME:CODE`, repeatable, as on `GET /customers`: groups among the customers of that subtree", example = "REGION:01"),
        ("attr" = Option<Vec<String>>, Query, description = "`KEY:OP:VALUE`, repeatable, as on `GET /customers`"),
        ("unclassified" = Option<Vec<String>>, Query, description = "Scheme code: customers with no category there"),
        ("q" = Option<String>, Query, description = "Substring of code, name or short name"),
        ("status" = Option<crate::domain::customer::CustomerStatus>, Query, description = "active or inactive"),
        ("missing" = Option<Vec<String>>, Query, description = "A field that must be empty, or `attr:KEY`, as on `GET /customers`"),
        ("dormant_days" = Option<i64>, Query, minimum = 1, maximum = 3650, description = "Dormant customers, as on `GET /customers`"),
        ("classified" = Option<bool>, Query, description = "In a category of some scheme (true) or of none (false)"),
    ),
    responses(
        (status = 200, description = "Groups of two or more customers, largest first (then by key in the order tax_id, name, phone, email, then by value)", body = Page<DuplicateGroup>),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (an unknown key in `by`, a malformed filter), `category_not_found`, `scheme_not_found`, `attribute_not_found`, `invalid_filter`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn duplicates(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let DuplicatesQuery { keys, filters, limit, after } = parse_query(query.into_inner())?;
    let groups = cleansing::duplicate_groups(&state.db, keys, filters, after, limit + 1).await?;
    let page = paging::into_page::<Group, DuplicateGroup, GroupPosition>(groups, limit, Group::position)?;
    Ok(HttpResponse::Ok().json(page))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/customers/duplicates").route(web::get().to(duplicates)));
}
