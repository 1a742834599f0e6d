//! The OpenAPI 3.1 document, generated from the handlers and types.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{Problem, PROBLEM_JSON};
use super::schemas::{
    AttributeValue, AttributeValueOrNull, Condition, ConditionVerdict, CsvTable, Moment, MultipartUpload, NdjsonLines,
    UploadedFile, Workbook,
};
use super::{
    api_keys, assignments, attributes, categories, customers, data_quality, duplicates, events, explanations, exports,
    health, imports, merge, pending_changes, reports, rules, runs, schemes, transactions, webhooks,
};
use crate::error::ErrorCode;
use crate::service::feed::EventData;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "custclass",
        description = "Customer classification management (客户分类管理): classification schemes with hierarchical category codes, \
                       the customer archive and its assignments, rules and reports. Every error is `application/problem+json` \
                       with a stable `code`. Authenticate with `Authorization: Bearer <key>`; scopes read < write < admin.",
        license(name = "MIT")
    ),
    paths(
        schemes::list, schemes::create, schemes::get, schemes::update, schemes::delete,
        categories::list, categories::tree, categories::create, categories::get, categories::update, categories::delete, categories::reassign,
        attributes::list, attributes::create, attributes::get, attributes::update, attributes::delete,
        customers::list, customers::create, customers::get, customers::update, customers::delete, customers::history,
        customers::replace_attributes, duplicates::duplicates, merge::merge,
        assignments::assign, assignments::unassign, assignments::batch,
        pending_changes::list, pending_changes::get, pending_changes::cancel,
        transactions::post, transactions::metrics,
        rules::list, rules::create, rules::get, rules::update, rules::delete, explanations::explain,
        runs::create, runs::list, runs::get, runs::changes, runs::cancel,
        reports::distribution, reports::crosstabs::crosstab, reports::sales::sales, reports::transitions::transitions, reports::transitions::transition_customers,
        exports::export_customers, imports::import_customers, imports::get, data_quality::data_quality,
        events::list,
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete, webhooks::rotate_secret, webhooks::replay, webhooks::deliveries,
        api_keys::list, api_keys::create, api_keys::revoke,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(Problem, ErrorCode, crate::domain::FieldError, AttributeValue, AttributeValueOrNull, Condition, ConditionVerdict, Moment, Workbook, CsvTable, NdjsonLines, UploadedFile, MultipartUpload, EventData)),
    modifiers(&Security, &CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "schemes", description = "Classification schemes (分类体系); writes need scope admin"),
        (name = "categories", description = "Hierarchical categories (客户分类); writes need scope admin"),
        (name = "attributes", description = "Attribute definitions (分类属性) on categories, inherited by their subtree; writes need scope admin"),
        (name = "customers", description = "The customer archive (客户档案); writes need scope write"),
        (name = "assignments", description = "Putting customers into categories, now or from a date (`effective_at`, pending changes), with history; scope write"),
        (name = "transactions", description = "Sales facts from other ERP services and the customer metrics computed from them; scope write to post"),
        (name = "rules", description = "Automatic classification (自动分类): rules and classification runs; writes need scope admin"),
        (name = "reports", description = "Analysis and reports (分类分析与报表): distributions, cross-tabs, upgrades and downgrades, as JSON, CSV or .xlsx; scope read"),
        (name = "events", description = "The change feed: every change as an event, in commit order, with long polling; scope read"),
        (name = "webhooks", description = "The change feed pushed to receivers, signed as Standard Webhooks has it, at least once and in order per endpoint; scope write"),
        (name = "api-keys", description = "API keys, optionally restricted to the customers of some category subtrees (记录级数据权限); scope admin"),
        (name = "operations", description = "Probes and metrics, without auth"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("An API key from POST /api/v1/api-keys or `custclass keys create`.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// Adds the responses every `/api/v1` operation can give, so each handler lists only its own.
struct CommonResponses;

const COMMON: [(&str, &str); 8] = [
    ("400", "`malformed_json`, `malformed_body`, `invalid_query`: the request cannot be read"),
    ("401", "`unauthorized`: no key, an unknown key or a revoked key"),
    ("403", "`insufficient_scope`: the key's scope is too low; `restricted_key`: the key is restricted to some categories' customers and the operation works on the whole archive; `outside_restriction`: the change would put a customer outside the key's restriction"),
    ("413", "`payload_too_large`: the body is over the endpoint's limit"),
    ("415", "`unsupported_media_type`: the body must be application/json"),
    ("422", "`validation_failed` (with `errors`), `invalid_body`"),
    ("500", "`internal_error`"),
    ("503", "`database_unavailable`: retry after the `Retry-After` seconds"),
];

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                for (status, description) in COMMON {
                    if !has_body && matches!(status, "413" | "415") {
                        continue;
                    }
                    let description = match status {
                        "413" => {
                            let limit = if super::BULK_PATHS.contains(&path.as_str()) {
                                super::BULK_JSON_BODY_LIMIT
                            } else {
                                super::JSON_BODY_LIMIT
                            };
                            format!("{description}: {} MiB", limit / (1024 * 1024))
                        }
                        _ => description.to_string(),
                    };
                    operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(PROBLEM_JSON, problem.clone())
                                .build(),
                        )
                    });
                }
            }
        }
    }
}

/// The document as `custclass openapi` prints it and `openapi/openapi.json` stores it.
pub fn document_json() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

/// The OpenAPI document, the same text `custclass openapi` prints.
async fn openapi_document() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().content_type("application/json").body(document_json())
}

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(actix_web::web::resource(OPENAPI_PATH).route(actix_web::web::get().to(openapi_document)));
}
