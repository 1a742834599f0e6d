//! `/reports/data-quality`: the data-quality report (数据清理): every check counted,
//! with its first customers and the query that lists them all. JSON, CSV or .xlsx.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::filters::parse_dormant_days;
use crate::api::schemas::{CsvTable, Workbook};
use crate::api::spreadsheet::{respond, Cell, Format, Sheet};
use crate::api::{AppState, FieldErrors};
use crate::domain::duplicates::DuplicateKey;
use crate::domain::report::QualityCheck;
use crate::service::archive::cleansing;
use crate::store::archive::customer_filters::{Filters, Missing};
use crate::store::archive::data_quality::{Check, Finding};

const DEFAULT_DORMANT_DAYS: i64 = 365;

/// One check of the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct QualityItem {
    pub check: QualityCheck,
    /// For `unclassified` and `missing_attribute`.
    pub scheme: Option<String>,
    /// For `unclassified`: whether the scheme is required (those come first).
    pub required: Option<bool>,
    /// For `missing_attribute`: the category that requires it (its subtree is checked).
    pub category: Option<String>,
    pub attribute: Option<String>,
    /// For `duplicates`.
    pub key: Option<DuplicateKey>,
    /// Customers found; for `duplicates`, groups.
    pub count: i64,
    /// The first 20 customer codes (for `duplicates`, of the largest groups).
    pub customers: Vec<String>,
    /// The request that lists all of them.
    #[schema(example = "/api/v1/customers?unclassified=TIER")]
    pub query: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DataQuality {
    pub as_of: DateTime<Utc>,
    /// Customers in the archive.
    pub population: i64,
    pub dormant_days: i64,
    pub items: Vec<QualityItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityQuery {
    dormant_days: Option<String>,
}

/// `GET /customers` with the check's filters, or the duplicates search.
fn query_of(check: &Check) -> String {
    let Some(filters) = check.filters() else {
        let Check::Duplicates { key } = check else { unreachable!("only duplicates have no list filters") };
        return format!("/api/v1/customers/duplicates?by={key}");
    };
    let Filters { categories, unclassified, status, missing, dormant_days, classified, .. } = filters;
    let mut pairs: Vec<(&str, String)> = Vec::new();
    pairs.extend(categories.iter().map(|filter| ("category", format!("{}:{}", filter.scheme, filter.code.as_str()))));
    pairs.extend(unclassified.into_iter().map(|scheme| ("unclassified", scheme)));
    pairs.extend(status.map(|status| ("status", status.as_str().to_string())));
    pairs.extend(missing.into_iter().map(|missing| {
        let value = match missing {
            Missing::Field(field) => field.to_string(),
            Missing::Attribute(key) => format!("{}{key}", crate::domain::archive::ATTRIBUTE_PREFIX),
        };
        ("missing", value)
    }));
    pairs.extend(dormant_days.map(|days| ("dormant_days", days.to_string())));
    pairs.extend(classified.map(|classified| ("classified", classified.to_string())));
    format!("/api/v1/customers?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
}

impl From<Finding> for QualityItem {
    fn from(finding: Finding) -> Self {
        let query = query_of(&finding.check);
        let mut item = QualityItem {
            check: QualityCheck::MissingTaxId,
            scheme: None,
            required: None,
            category: None,
            attribute: None,
            key: None,
            count: finding.count,
            customers: finding.codes,
            query,
        };
        match finding.check {
            Check::Unclassified { scheme, required } => {
                (item.check, item.scheme, item.required) = (QualityCheck::Unclassified, Some(scheme), Some(required))
            }
            Check::MissingAttribute { scheme, category, attribute } => {
                (item.check, item.scheme, item.category, item.attribute) =
                    (QualityCheck::MissingAttribute, Some(scheme), Some(category), Some(attribute))
            }
            Check::MissingTaxId => item.check = QualityCheck::MissingTaxId,
            Check::Dormant { .. } => item.check = QualityCheck::Dormant,
            Check::InactiveClassified => item.check = QualityCheck::InactiveClassified,
            Check::Duplicates { key } => (item.check, item.key) = (QualityCheck::Duplicates, Some(key)),
        }
        item
    }
}

/// Report data-quality findings
///
/// 数据清理: unclassified customers, missing required values and tax ids, dormant ones, inactive but
/// classified ones and duplicate groups, each counted with its first 20 customers and the query
/// that lists them all.
#[utoipa::path(get, path = "/api/v1/reports/data-quality", tag = "reports", operation_id = "report_data_quality",
    params(("dormant_days" = Option<i64>, Query, minimum = 1, maximum = 3650, description = "Days without an order that make a customer dormant; default 365")),
    responses(
        (status = 200, description = "Every check: unclassified customers per scheme (required schemes first), customers missing a required attribute value (per definition without a default), without a tax id, dormant, inactive but classified, and duplicate groups per key", content(
            (DataQuality = "application/json"),
            (CsvTable = "text/csv"),
            (Workbook = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "For CSV and .xlsx: `attachment` with a file name"))),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`not_acceptable`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (dormant_days)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn data_quality(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    req: HttpRequest,
    query: web::Query<QualityQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::negotiate(&req)?;
    let mut errors = FieldErrors::default();
    let dormant_days = match query.into_inner().dormant_days {
        None => Some(DEFAULT_DORMANT_DAYS),
        Some(text) => errors.check(parse_dormant_days(&text)),
    };
    errors.finish()?;
    let dormant_days = dormant_days.expect("checked");
    let as_of = Utc::now();
    let (population, findings) = cleansing::quality_report(&state.db, dormant_days).await?;
    let report =
        DataQuality { as_of, population, dormant_days, items: findings.into_iter().map(QualityItem::from).collect() };
    respond(format, &report, || sheet(&report))
}

fn sheet(report: &DataQuality) -> Sheet {
    let header = ["check", "scheme", "required", "category", "attribute", "key", "count", "customers", "query"];
    let mut sheet =
        Sheet::new(format!("data-quality-{}", report.as_of.date_naive()), header.map(String::from).to_vec());
    for item in &report.items {
        sheet.rows.push(vec![
            Cell::from(item.check.as_str()),
            Cell::from(item.scheme.clone()),
            Cell::from(item.required.map(|required| required.to_string())),
            Cell::from(item.category.clone()),
            Cell::from(item.attribute.clone()),
            Cell::from(item.key.map(|key| key.as_str().to_string())),
            Cell::from(item.count),
            Cell::Text(item.customers.join(" ")),
            Cell::Text(item.query.clone()),
        ]);
    }
    sheet
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/reports/data-quality").route(web::get().to(data_quality)));
}
