//! `/customers`: the customer archive (客户档案), its list and its history.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Caller, Read, Restrictable, Write};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::filters::parse_filter;
use crate::api::paging::{self, PageRequest};
use crate::api::schemas::{AttributeValue, AttributeValueOrNull};
use crate::api::{created_versioned, explicit_null, ok_versioned, AppState, FieldErrors, IfMatch, Page};
use crate::domain::category::CategoryCode;
use crate::domain::customer::{
    parse_email, parse_phone, CustomerCode, CustomerStatus, TaxId, ADDRESS_MAX, CONTACT_MAX, NAME_MAX, NOTE_MAX,
    SHORT_NAME_MAX,
};
use crate::domain::history::{Direction, Source};
use crate::domain::{clean_optional_text, clean_text, FieldError};
use crate::error::{AppError, ErrorCode};
use crate::service::archive::customers::{self as service, Asker, HistoryPage};
use crate::store::archive::customer_filters::Filters;
use crate::store::archive::customer_rows::CustomerView;
use crate::store::archive::customer_search::{After, ListQuery, Sort, SortKey};
use crate::store::archive::customers::{CustomerChanges, CustomerFields, NewCustomer};
use crate::store::classification::history::{HistoryCursor, HistoryRow};

pub const REASON_MAX: usize = 500;

/// A customer's category in one scheme.
#[derive(Debug, Serialize, ToSchema)]
pub struct Assignment {
    #[schema(example = "TIER")]
    pub scheme: String,
    #[schema(example = "01")]
    pub category: String,
    /// Pinned by a person: rules leave it alone.
    pub locked: bool,
    pub assigned_at: DateTime<Utc>,
}

/// A customer (客户档案) with its categories.
#[derive(Debug, Serialize, ToSchema)]
pub struct Customer {
    #[schema(example = "C0001")]
    pub code: String,
    #[schema(example = "北京华电科技有限公司")]
    pub name: String,
    pub short_name: Option<String>,
    /// Unified social credit code (统一社会信用代码), 18 characters.
    #[schema(example = "91350100M000100Y43")]
    pub tax_id: Option<String>,
    pub contact_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub status: CustomerStatus,
    pub note: Option<String>,
    /// Scheme code → category code, at most one per scheme.
    #[schema(example = json!({"INDUSTRY": "0101", "REGION": "0101", "TIER": "01"}))]
    pub categories: BTreeMap<String, String>,
    /// The same assignments with their pins and times, ordered by scheme
    /// (category names: `GET /schemes/{scheme}/categories`).
    pub assignments: Vec<Assignment>,
    /// Attribute key → typed value, for the attributes the customer's categories
    /// define; defaults fill in values not given.
    #[schema(value_type = BTreeMap<String, AttributeValue>, example = json!({"discount_rate": 0.15, "account_manager": "王芳"}))]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The keys of `attributes` whose value is the definition's default.
    #[schema(example = json!(["discount_rate"]))]
    pub attributes_from_default: Vec<String>,
    /// Scheme code → the change of category planned there for later (`effective_at`),
    /// at most one per scheme; see `GET /pending-changes`.
    pub pending: BTreeMap<String, PendingSummary>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CustomerView> for Customer {
    fn from(view: CustomerView) -> Self {
        let row = view.row;
        Customer {
            attributes_from_default: view
                .attributes
                .iter()
                .filter(|(_, a)| a.from_default)
                .map(|(key, _)| key.clone())
                .collect(),
            attributes: view.attributes.into_iter().map(|(key, a)| (key, a.value)).collect(),
            categories: view.assignments.iter().map(|a| (a.scheme.clone(), a.category.clone())).collect(),
            assignments: view
                .assignments
                .into_iter()
                .map(|a| Assignment {
                    scheme: a.scheme,
                    category: a.category,
                    locked: a.locked,
                    assigned_at: a.assigned_at.and_utc(),
                })
                .collect(),
            pending: view
                .pending
                .into_iter()
                .map(|(scheme, pending)| {
                    let summary = PendingSummary {
                        id: pending.id,
                        category: pending.category,
                        effective_at: pending.effective_at.and_utc(),
                        actor: pending.actor,
                        reason: pending.reason,
                    };
                    (scheme, summary)
                })
                .collect(),
            code: row.code,
            name: row.name,
            short_name: row.short_name,
            tax_id: row.tax_id,
            contact_name: row.contact_name,
            phone: row.phone,
            email: row.email,
            address: row.address,
            status: row.status,
            note: row.note,
            version: row.version,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// A change of the customer's category in one scheme, to take effect later.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingSummary {
    /// `GET /pending-changes/{id}`.
    pub id: i64,
    #[schema(example = "01")]
    pub category: String,
    pub effective_at: DateTime<Utc>,
    /// The API key's name that asked for it; its history entry will name it.
    pub actor: String,
    pub reason: Option<String>,
}

fn active() -> CustomerStatus {
    CustomerStatus::Active
}

/// A new customer. Schemes it names no category for get their default category, if any.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "C0001", "name": "北京华电科技有限公司", "short_name": "华电科技", "tax_id": "91110108MA01C2XQ5K", "phone": "010-6260 1234", "categories": {"REGION": "0101", "TIER": "02"}, "attributes": {"account_manager": "王芳"}}))]
pub struct CustomerCreate {
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$`, unique, cannot change.
    #[schema(example = "C0001", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]
    pub code: String,
    /// 1–200 characters.
    #[schema(example = "北京华电科技有限公司")]
    pub name: String,
    pub short_name: Option<String>,
    /// 18 characters; the check character is verified (GB 32100-2015). Unique.
    pub tax_id: Option<String>,
    pub contact_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    #[serde(default = "active")]
    pub status: CustomerStatus,
    pub note: Option<String>,
    /// Scheme code → leaf category code, assigned in the same transaction.
    #[serde(default)]
    #[schema(example = json!({"REGION": "0101"}))]
    pub categories: BTreeMap<String, String>,
    /// Attribute key → value, checked against the definitions of the categories
    /// the customer gets (named or default).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, AttributeValue>, example = json!({"account_manager": "王芳"}))]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Recorded in the history of the named categories.
    pub reason: Option<String>,
}

/// Changes to a customer; absent fields stay, `null` clears a nullable one.
/// Categories change through `PUT /customers/{code}/categories/{scheme}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "北京华电科技股份有限公司", "phone": "010-6260 5678", "note": null}))]
pub struct CustomerPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub short_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub tax_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub contact_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    pub status: Option<CustomerStatus>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Option<String>>,
    /// Merged into the current values; `null` removes one (its default, if any, returns).
    #[schema(value_type = Option<BTreeMap<String, AttributeValueOrNull>>)]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
}

fn parse_tax_id(text: Option<&str>) -> Result<Option<TaxId>, FieldError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => TaxId::parse("tax_id", text).map(Some),
    }
}

pub fn parse_reason(text: Option<&str>) -> Result<Option<String>, FieldError> {
    clean_optional_text("reason", text, REASON_MAX)
}

impl CustomerCreate {
    pub fn parse(self) -> Result<NewCustomer, AppError> {
        let mut errors = FieldErrors::default();
        let code = errors.check(CustomerCode::parse("code", &self.code));
        let name = errors.check(clean_text("name", &self.name, 1, NAME_MAX));
        let short_name = errors.check(clean_optional_text("short_name", self.short_name.as_deref(), SHORT_NAME_MAX));
        let tax_id = errors.check(parse_tax_id(self.tax_id.as_deref()));
        let contact_name = errors.check(clean_optional_text("contact_name", self.contact_name.as_deref(), CONTACT_MAX));
        let phone = errors.check(parse_phone("phone", self.phone.as_deref()));
        let email = errors.check(parse_email("email", self.email.as_deref()));
        let address = errors.check(clean_optional_text("address", self.address.as_deref(), ADDRESS_MAX));
        let note = errors.check(clean_optional_text("note", self.note.as_deref(), NOTE_MAX));
        let reason = errors.check(parse_reason(self.reason.as_deref()));
        let categories: Vec<(String, CategoryCode)> = self
            .categories
            .iter()
            .filter_map(|(scheme, category)| {
                errors
                    .check(CategoryCode::parse(&format!("categories.{scheme}"), category))
                    .map(|c| (scheme.clone(), c))
            })
            .collect();
        errors.finish()?;
        Ok(NewCustomer {
            code: code.expect("checked"),
            fields: CustomerFields {
                name: name.expect("checked"),
                short_name: short_name.expect("checked"),
                tax_id: tax_id.expect("checked"),
                contact_name: contact_name.expect("checked"),
                phone: phone.expect("checked"),
                email: email.expect("checked"),
                address: address.expect("checked"),
                status: self.status,
                note: note.expect("checked"),
            },
            categories,
            attributes: self.attributes,
            reason: reason.expect("checked"),
        })
    }
}

impl CustomerPatch {
    fn parse(self) -> Result<CustomerChanges, AppError> {
        let mut errors = FieldErrors::default();
        let mut text = |field: &str, value: Option<Option<String>>, max: usize| {
            value.map(|v| errors.check(clean_optional_text(field, v.as_deref(), max)).flatten())
        };
        let changes = CustomerChanges {
            short_name: text("short_name", self.short_name, SHORT_NAME_MAX),
            contact_name: text("contact_name", self.contact_name, CONTACT_MAX),
            address: text("address", self.address, ADDRESS_MAX),
            note: text("note", self.note, NOTE_MAX),
            name: self.name.and_then(|n| errors.check(clean_text("name", &n, 1, NAME_MAX))),
            tax_id: self.tax_id.map(|t| errors.check(parse_tax_id(t.as_deref())).flatten()),
            phone: self.phone.map(|p| errors.check(parse_phone("phone", p.as_deref())).flatten()),
            email: self.email.map(|e| errors.check(parse_email("email", e.as_deref())).flatten()),
            status: self.status,
            attributes: self.attributes,
        };
        errors.finish()?;
        Ok(changes)
    }
}

/// The cursor of the customer list: the sort it was made for and the last row.
#[derive(Serialize, Deserialize)]
struct ListCursor {
    sort: String,
    code: Option<String>,
    name: Option<String>,
    created_at: Option<chrono::NaiveDateTime>,
    id: Option<i64>,
}

fn sort_name(sort: Sort) -> String {
    let key = match sort.key {
        SortKey::Code => "code",
        SortKey::Name => "name",
        SortKey::CreatedAt => "created_at",
    };
    if sort.descending {
        format!("-{key}")
    } else {
        key.to_string()
    }
}

fn parse_sort(text: &str) -> Result<Sort, AppError> {
    let (descending, key) = match text.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, text),
    };
    let key = match key {
        "code" => SortKey::Code,
        "name" => SortKey::Name,
        "created_at" => SortKey::CreatedAt,
        _ => {
            return Err(AppError::new(
                ErrorCode::InvalidQuery,
                "sort must be code, name or created_at, with a leading - for descending order",
            ))
        }
    };
    Ok(Sort { key, descending })
}

fn encode_cursor(sort: Sort, after: &After) -> String {
    let mut cursor = ListCursor { sort: sort_name(sort), code: None, name: None, created_at: None, id: None };
    match after {
        After::Code(code) => cursor.code = Some(code.clone()),
        After::Name(name, id) => (cursor.name, cursor.id) = (Some(name.clone()), Some(*id)),
        After::CreatedAt(at, id) => (cursor.created_at, cursor.id) = (Some(*at), Some(*id)),
    }
    paging::encode(&cursor)
}

fn decode_cursor(text: &str, sort: Sort) -> Result<After, AppError> {
    let cursor: ListCursor = paging::decode(text)?;
    if cursor.sort != sort_name(sort) {
        return Err(AppError::new(
            ErrorCode::InvalidCursor,
            format!("the cursor was made for sort={}, not sort={}", cursor.sort, sort_name(sort)),
        ));
    }
    match (sort.key, cursor) {
        (SortKey::Code, ListCursor { code: Some(code), .. }) => Ok(After::Code(code)),
        (SortKey::Name, ListCursor { name: Some(name), id: Some(id), .. }) => Ok(After::Name(name, id)),
        (SortKey::CreatedAt, ListCursor { created_at: Some(at), id: Some(id), .. }) => Ok(After::CreatedAt(at, id)),
        _ => Err(paging::invalid()),
    }
}

fn parse_list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, AppError> {
    let mut query = ListQuery {
        filters: Filters::default(),
        sort: Sort { key: SortKey::Code, descending: false },
        after: None,
        limit: paging::DEFAULT_LIMIT,
    };
    let mut cursor_text = None;
    let mut errors = FieldErrors::default();
    for (key, value) in pairs {
        if parse_filter(&key, &value, &mut query.filters, &mut errors) {
            continue;
        }
        match key.as_str() {
            "sort" => query.sort = parse_sort(&value)?,
            "limit" => query.limit = paging::parse_limit(Some(&value))?,
            "cursor" => cursor_text = Some(value),
            other => return Err(AppError::new(ErrorCode::InvalidQuery, format!("unknown query parameter {other:?}"))),
        }
    }
    errors.finish()?;
    if let Some(text) = cursor_text {
        query.after = Some(decode_cursor(&text, query.sort)?);
    }
    Ok(query)
}

/// List customers
///
/// The customer archive, keyset-paged by code (`next_cursor`), filtered by category (with its
/// subtree), unclassified scheme, status, a text search (`q`) over code, name, short name and tax
/// id, and attribute comparisons (`attr`). A restricted key lists the customers it may see only.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", operation_id = "list_customers",
    params(
        ("category" = Option<Vec<String>>, Query, description = "`SCHEME:CODE`; repeat to AND several; a category includes its subtree", example = "REGION:01"),
        ("attr" = Option<Vec<String>>, Query, description = "`KEY:OP:VALUE` with OP one of eq ne gt gte lt lte in like; repeat to AND several. Compared by the attribute's type (numbers as numbers, dates as dates); `in` takes a comma-separated list; `like` matches text with `*` as wildcard (a substring without `*`), ASCII case-insensitive; defaults count as values; `ne` matches customers that have a different value", example = "discount_rate:gte:0.15"),
        ("unclassified" = Option<Vec<String>>, Query, description = "Scheme code: customers with no category there"),
        ("q" = Option<String>, Query, description = "Substring of code, name or short name (ASCII case-insensitive)"),
        ("status" = Option<CustomerStatus>, Query, description = "active or inactive"),
        ("missing" = Option<Vec<String>>, Query, description = "A field that must be empty (short_name, tax_id, contact_name, phone, email, address, note), or `attr:KEY`: no value of the customer's own (a default does not count); repeat to AND several", example = "tax_id"),
        ("dormant_days" = Option<i64>, Query, minimum = 1, maximum = 3650, description = "Dormant customers: created before the last this many days and no order (a positive sale) in them"),
        ("classified" = Option<bool>, Query, description = "true: in a category of some scheme; false: in none"),
        ("sort" = Option<String>, Query, pattern = "^-?(code|name|created_at)$", description = "code (default), name or created_at; prefix - for descending"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page; `next_cursor` is null on the last", body = Page<Customer>),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`scheme_not_found`, `category_not_found`, `attribute_not_found`, `invalid_filter` (an operand that is not of the attribute's type, or an operator the type has no use for)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut query = parse_list_query(query.into_inner())?;
    query.filters.restrict_to(auth.caller.restriction);
    let sort = query.sort;
    let page = service::list(&state.db, query).await?;
    let next_cursor = page.next.as_ref().map(|after| encode_cursor(sort, after));
    Ok(HttpResponse::Ok()
        .json(Page { items: page.items.into_iter().map(Customer::from).collect::<Vec<_>>(), next_cursor }))
}

/// Create a customer
///
/// Adds a customer to the archive with its categories (every required scheme needs one, or its
/// default is used) and attribute values, checked against the categories' definitions. Codes and
/// tax ids are unique.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", operation_id = "create_customer", request_body = CustomerCreate,
    responses(
        (status = 201, description = "Created", body = Customer, headers(("Location" = String), ("ETag" = String))),
        (status = 409, description = "`duplicate_code`, `duplicate_tax_id`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_categories` (unknown scheme or category, not a leaf, inactive), `category_required`, `invalid_attributes`, `attribute_required`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    body: web::Json<CustomerCreate>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner().parse()?;
    let customer = Customer::from(service::create(&state.db, new, asker(auth.caller)).await?);
    Ok(created_versioned(format!("/api/v1/customers/{}", customer.code), customer.version, &customer))
}

/// Get a customer
///
/// One customer with its categories in every scheme, its attribute values (with where each comes
/// from) and its version for `If-Match`. A merged code answers 404 `customer_merged` naming the
/// customer it went into.
#[utoipa::path(get, path = "/api/v1/customers/{code}", tag = "customers", operation_id = "get_customer",
    params(("code" = String, Path, description = "Customer code")),
    responses(
        (status = 200, description = "The customer", body = Customer, headers(("ETag" = String))),
        (status = 404, description = "`customer_not_found`; `customer_merged` (with `merged_into`) for a customer merged into another", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let restriction = auth.caller.restriction;
    let customer = Customer::from(service::get(&state.db, code, restriction).await?);
    Ok(ok_versioned(customer.version, &customer))
}

/// Change a customer's fields
///
/// Changes the customer's name, contact data, status or note; `null` clears an optional field.
/// Categories and attributes have their own operations.
#[utoipa::path(patch, path = "/api/v1/customers/{code}", tag = "customers", operation_id = "update_customer", request_body = CustomerPatch,
    params(("code" = String, Path, description = "Customer code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "Updated", body = Customer, headers(("ETag" = String))),
        (status = 404, description = "`customer_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`duplicate_tax_id`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_attributes`, `attribute_required`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<String>,
    if_match: IfMatch,
    body: web::Json<CustomerPatch>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let changes = body.into_inner().parse()?;
    let restriction = auth.caller.restriction;
    let customer = Customer::from(service::update(&state.db, code, changes, if_match.0, restriction).await?);
    Ok(ok_versioned(customer.version, &customer))
}

/// Replace a customer's attribute values
///
/// Sets every attribute value of the customer at once, checked against the definitions in force in
/// its categories; values left out are cleared unless a default applies.
#[utoipa::path(put, path = "/api/v1/customers/{code}/attributes", tag = "customers", operation_id = "replace_customer_attributes",
    request_body(content = HashMap<String, crate::api::schemas::AttributeValue>, description = "Attribute key → value; values not given are removed (their defaults return)",
                 example = json!({"discount_rate": 0.2, "account_manager": "王芳"})),
    params(("code" = String, Path, description = "Customer code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being changed")),
    responses(
        (status = 200, description = "The customer with its new values", body = Customer, headers(("ETag" = String))),
        (status = 404, description = "`customer_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_attributes` (unknown key, wrong type, out of range, not an option), `attribute_required`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace_attributes(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<String>,
    if_match: IfMatch,
    body: web::Json<BTreeMap<String, serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let values = body.into_inner();
    let restriction = auth.caller.restriction;
    let customer = Customer::from(service::replace_attributes(&state.db, code, values, if_match.0, restriction).await?);
    Ok(ok_versioned(customer.version, &customer))
}

/// Delete a customer
///
/// Removes the customer with its assignments and values; its history stays readable. Emits
/// `customer.deleted`.
#[utoipa::path(delete, path = "/api/v1/customers/{code}", tag = "customers", operation_id = "delete_customer",
    params(("code" = String, Path, description = "Customer code"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]+")$"#, description = "ETag of the version being deleted")),
    responses(
        (status = 204, description = "Deleted; its history stays readable"),
        (status = 404, description = "`customer_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`version_mismatch`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    auth: Auth<Write, Restrictable>,
    path: web::Path<String>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    service::delete(&state.db, code, if_match.0, asker(auth.caller)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One change of a customer's category in a scheme.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    #[schema(example = "TIER")]
    pub scheme: String,
    /// `null` when the customer had no category in the scheme.
    #[schema(example = "02")]
    pub from: Option<String>,
    /// `null` when the customer left the scheme.
    #[schema(example = "01")]
    pub to: Option<String>,
    pub at: DateTime<Utc>,
    /// Name of the API key that made the change.
    pub actor: String,
    pub source: Source,
    pub reason: Option<String>,
    pub rule_id: Option<i64>,
    pub run_id: Option<i64>,
    /// Attribute values the change dropped because the new category does not define them.
    #[schema(value_type = Option<HashMap<String, crate::api::schemas::AttributeValue>>, example = json!({"discount_rate": 0.2}))]
    pub dropped_attributes: Option<serde_json::Value>,
    /// `up`/`down` by the ranks of an ordered scheme when the change was made; `in`
    /// from no category, `out` to none, `lateral` otherwise.
    pub direction: Direction,
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = AppError;

    fn try_from(row: HistoryRow) -> Result<Self, AppError> {
        let dropped_attributes = row.dropped_values()?;
        let change = row.change;
        Ok(HistoryEntry {
            scheme: change.scheme_code,
            from: change.from_category,
            to: change.to_category,
            at: change.at.and_utc(),
            actor: change.actor,
            source: change.source,
            reason: change.reason,
            rule_id: change.rule_id,
            run_id: change.run_id,
            dropped_attributes,
            direction: change.direction,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    scheme: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Get a customer's classification history
///
/// Every category change of the customer, newest first and paged, with its direction (`up`, `down`,
/// `lateral`, `in`, `out`), source, actor and reason; readable after the customer is deleted.
#[utoipa::path(get, path = "/api/v1/customers/{code}/history", tag = "customers", operation_id = "get_customer_history",
    params(("code" = String, Path, description = "Customer code; history stays readable after the customer is deleted"),
           ("scheme" = Option<String>, Query, description = "Only this scheme"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses(
        (status = 200, description = "Newest first", body = Page<HistoryEntry>),
        (status = 404, description = "`customer_not_found`: no such customer and no history", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let code = path.into_inner();
    let query = query.into_inner();
    let PageRequest { limit, after } =
        PageRequest::<HistoryCursor>::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let page = HistoryPage { scheme: query.scheme, after, limit };
    let rows = service::history(&state.db, code, page, auth.caller.restriction).await?;
    Ok(HttpResponse::Ok().json(paging::into_page::<_, HistoryEntry, _>(rows, limit, |row| HistoryCursor {
        at: row.change.at,
        id: row.id,
    })?))
}

fn asker(caller: Caller) -> Asker {
    Asker { actor: caller.name, restriction: caller.restriction }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/customers").route(web::get().to(list)).route(web::post().to(create)))
        .service(
            web::resource("/customers/{code}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/customers/{code}/history").route(web::get().to(history)))
        .service(web::resource("/customers/{code}/attributes").route(web::put().to(replace_attributes)));
}
