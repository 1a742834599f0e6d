//! `/customers/duplicates`: candidate duplicates (清理重复数据), groups of customers that
//! share a tax id, or a name, phone or email once normalised.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read};
use crate::api::error::Problem;
use crate::api::paging;
use crate::api::{AppState, Page};
use crate::domain::customer::CustomerStatus;
use crate::domain::duplicates::DuplicateKey;
use crate::error::AppError;
use crate::store::duplicates::{self as store, Group, GroupPosition, Member};

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
        Self { code: member.code, name: member.name, tax_id: member.tax_id, phone: member.phone, email: member.email, status: member.status }
    }
}

impl From<Group> for DuplicateGroup {
    fn from(group: Group) -> Self {
        Self { key: group.key, value: group.value, size: group.size, customers: group.members.into_iter().map(DuplicateMember::from).collect() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicatesQuery {
    by: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
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
    ),
    responses(
        (status = 200, description = "Groups of two or more customers, largest first (then by key in the order tax_id, name, phone, email, then by value)", body = Page<DuplicateGroup>),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (an unknown key in `by`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn duplicates(state: web::Data<AppState>, _auth: Auth<Read>, query: web::Query<DuplicatesQuery>) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let keys = match query.by.as_deref() {
        None => DuplicateKey::ALL.to_vec(),
        Some(text) => DuplicateKey::parse_list(text).map_err(|message| AppError::validation("validation_failed", format!("by: {message}"), vec![crate::domain::FieldError::new("by", message)]))?,
    };
    let limit = paging::parse_limit_within(query.limit.as_deref(), DEFAULT_GROUPS, MAX_GROUPS)?;
    let after: Option<GroupPosition> = query.cursor.as_deref().map(paging::decode).transpose()?;
    let groups = state.db.run_long(move |conn| store::groups(conn, &keys, after.as_ref(), limit + 1)).await?;
    let page = paging::into_page::<Group, DuplicateGroup, GroupPosition>(groups, limit, Group::position)?;
    Ok(HttpResponse::Ok().json(page))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/customers/duplicates").route(web::get().to(duplicates)));
}
