//! `/reports`: analysis and reports (分类分析与报表): how customers distribute over a
//! scheme, two schemes against each other, and who moved up or down in a period.
//! Each answers JSON, CSV or .xlsx by `Accept`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Auth, Read, Restrictable};
use crate::api::error::ApiError;
use crate::api::error::Problem;
use crate::api::filters::parse_filter;
use crate::api::paging;
use crate::api::schemas::{CsvTable, Workbook};
use crate::api::spreadsheet::{respond, Cell, Format, Sheet};
use crate::api::{AppState, FieldErrors, Page};
use crate::domain::history::{Direction, Source};
use crate::domain::report::{
    end_of, ensure_not_future, level_of, parse_day, rolled_up, share, tree_tallies, Measure, MeasureValues, Period,
    Tally,
};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};
use crate::service::reporting::{self as service, AxisAsked, Counting};
use crate::store::archive::customer_filters::Filters;
use crate::store::catalogue::categories::CategoryView;
use crate::store::catalogue::schemes::SchemeRow;
use crate::store::reporting::reports as store;
use crate::store::reporting::transitions::{Basis, CellCustomer, CellQuery, TransitionCell};

pub mod crosstabs;
pub mod sales;
pub mod transitions;

/// The name reports give the customers without a category in a scheme.
const UNCLASSIFIED: &str = "未分类";

/// Query parameters as given; each report takes the ones it knows.
struct Params {
    pairs: BTreeMap<String, String>,
    filters: Filters,
    errors: FieldErrors,
}

impl Params {
    fn read(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Self, AppError> {
        let mut params = Params { pairs: BTreeMap::new(), filters: Filters::default(), errors: FieldErrors::default() };
        let filters_allowed = known.contains(&"filters");
        for (key, value) in pairs {
            if filters_allowed && parse_filter(&key, &value, &mut params.filters, &mut params.errors) {
                continue;
            }
            if !known.contains(&key.as_str()) {
                return Err(AppError::new(ErrorCode::InvalidQuery, format!("unknown query parameter {key:?}")));
            }
            if params.pairs.insert(key.clone(), value).is_some() {
                return Err(AppError::new(
                    ErrorCode::InvalidQuery,
                    format!("query parameter {key:?} is given more than once"),
                ));
            }
        }
        Ok(params)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    fn required(&mut self, key: &str) -> Option<String> {
        let value = self.get(key).map(str::to_string);
        if value.is_none() {
            self.errors.check::<()>(Err(FieldError::new(key, "is required")));
        }
        value
    }

    fn depth(&mut self, key: &str) -> Option<usize> {
        let text = self.get(key)?.to_string();
        self.errors.check(text.parse::<usize>().map_err(|_| FieldError::new(key, "must be a whole number from 1")))
    }

    fn measures(&mut self) -> Vec<Measure> {
        let text = self.get("measures").unwrap_or_default().to_string();
        self.errors.check(Measure::parse_list("measures", &text)).unwrap_or_default()
    }

    fn day(&mut self, key: &str) -> Option<NaiveDate> {
        let text = self.get(key)?.to_string();
        self.errors.check(parse_day(key, &text))
    }

    /// `as_of` as the first instant after that day; no later than today.
    fn as_of(&mut self) -> Option<NaiveDateTime> {
        let day = self.day("as_of")?;
        self.errors.check(ensure_not_future("as_of", day, Utc::now().date_naive()))?;
        Some(end_of(day))
    }

    fn period(&mut self) -> Option<Period> {
        let (from, to) = (self.required("from"), self.required("to"));
        let from = from.and_then(|text| self.errors.check(parse_day("from", &text)))?;
        let to = to.and_then(|text| self.errors.check(parse_day("to", &text)))?;
        self.errors.check(Period::new(from, to))
    }

    fn labelled<T>(&mut self, key: &str, parse: fn(&str) -> Option<T>, labels: &[&str]) -> Option<T> {
        let text = self.get(key)?.to_string();
        self.errors
            .check(parse(&text).ok_or_else(|| FieldError::new(key, format!("must be one of {}", labels.join(", ")))))
    }
}

fn moment(as_of: Option<NaiveDateTime>) -> DateTime<Utc> {
    as_of.map_or_else(Utc::now, |at| (at - chrono::Duration::microseconds(1)).and_utc())
}

/// A day for file names: the report's day, or today.
fn file_day(as_of: Option<NaiveDateTime>) -> String {
    moment(as_of).format("%Y-%m-%d").to_string()
}

/// One row of a distribution: a category, or the unclassified customers (`code: null`, last).
#[derive(Debug, Serialize, ToSchema)]
pub struct DistributionRow {
    #[schema(example = "01")]
    pub code: Option<String>,
    /// `null` for a category deleted since `as_of`.
    #[schema(example = "VIP客户")]
    pub name: Option<String>,
    /// Level in the tree, 1 at the roots; `null` for unclassified.
    pub depth: Option<i32>,
    /// In an ordered scheme, higher is better.
    pub rank: Option<i32>,
    /// Customers assigned to this category itself; at the report's `depth`, its whole subtree.
    pub customers: i64,
    pub subtree_customers: i64,
    /// `subtree_customers` ÷ `population`, 4 decimal places.
    #[schema(example = "0.2500")]
    pub share: String,
    /// Over the subtree's customers.
    #[serde(flatten)]
    pub measures: MeasureValues,
}

/// The whole population of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportTotal {
    pub customers: i64,
    #[serde(flatten)]
    pub measures: MeasureValues,
}

/// `GET /reports/distribution`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Distribution {
    #[schema(example = "TIER")]
    pub scheme: String,
    /// The moment described: now, or the last instant of the `as_of` day (UTC).
    pub as_of: DateTime<Utc>,
    /// Customers counted: the filters' matches, as they stood `as_of`.
    pub population: i64,
    pub depth: Option<usize>,
    pub measures: Vec<Measure>,
    /// Categories in pre-order (by code), then unclassified.
    pub rows: Vec<DistributionRow>,
    pub total: ReportTotal,
}

impl Distribution {
    fn sheet(&self) -> Sheet {
        let mut header: Vec<String> =
            ["code", "name", "depth", "rank", "customers", "subtree_customers", "share"].map(String::from).to_vec();
        header.extend(self.total.measures.columns().into_iter().map(|(name, _)| name.to_string()));
        let mut sheet = Sheet::new(
            format!(
                "distribution-{}-{}",
                self.scheme,
                file_day(Some(self.as_of.naive_utc() + chrono::Duration::microseconds(1)))
            ),
            header,
        );
        for row in &self.rows {
            let mut cells = vec![
                Cell::from(row.code.clone()),
                Cell::from(row.name.clone()),
                row.depth.map_or(Cell::Empty, |depth| Cell::Integer(depth.into())),
                row.rank.map_or(Cell::Empty, |rank| Cell::Integer(rank.into())),
                Cell::Integer(row.customers),
                Cell::Integer(row.subtree_customers),
                Cell::Decimal(row.share.clone()),
            ];
            cells.extend(measure_cells(&row.measures));
            sheet.rows.push(cells);
        }
        let mut total = vec![
            Cell::Empty,
            Cell::from("total"),
            Cell::Empty,
            Cell::Empty,
            Cell::Integer(self.total.customers),
            Cell::Integer(self.total.customers),
            Cell::Decimal(share(self.total.customers, self.population)),
        ];
        total.extend(measure_cells(&self.total.measures));
        sheet.rows.push(total);
        sheet
    }
}

fn measure_cells(values: &MeasureValues) -> Vec<Cell> {
    values
        .columns()
        .into_iter()
        .map(|(name, value)| match value {
            None => Cell::Empty,
            Some(text) if name == "sum_orders_12m" => text.parse().map_or(Cell::Text(text), Cell::Integer),
            Some(text) => Cell::Decimal(text),
        })
        .collect()
}

/// The parameters the distribution and the cross-tab share besides the filters: what to
/// count and as of when (documentation only; `Params` reads them).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "the document's description of what `Params` reads; a test holds the two to the same keys"
)]
pub struct ReportScope {
    /// Comma-separated: spend_12m, orders_12m, lifetime_spend.
    #[param(example = "spend_12m,orders_12m")]
    measures: Option<String>,
    /// As at the end of this day (UTC), rebuilt from history; not in the future.
    #[param(value_type = Option<String>, format = Date)]
    as_of: Option<NaiveDate>,
}

/// The filters of `GET /customers`, which narrow a report's customers (documentation
/// only; `Params` reads them).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "the document's description of what `Params` reads; a test holds the two to the same keys"
)]
pub struct ReportFilters {
    /// `SCHEME:CODE`, repeatable: customers in that subtree (as of `as_of` where the report takes one).
    #[param(example = "REGION:01")]
    category: Option<Vec<String>>,
    /// Scheme code, repeatable: customers without a category there (as of `as_of` where the report takes one).
    unclassified: Option<Vec<String>>,
    /// active or inactive (as the customer is now: not with `as_of`).
    status: Option<crate::domain::customer::CustomerStatus>,
    /// Substring of code, name or short name (not with `as_of`).
    q: Option<String>,
    /// `KEY:OP:VALUE` as on `GET /customers`, repeatable (not with `as_of`).
    attr: Option<Vec<String>>,
    /// A field that must be empty, or `attr:KEY`, as on `GET /customers`, repeatable (not with `as_of`).
    missing: Option<Vec<String>>,
    /// Dormant customers, as on `GET /customers` (not with `as_of`).
    dormant_days: Option<i64>,
    /// In a category of some scheme, or of none (not with `as_of`).
    classified: Option<bool>,
}

/// Report customers per category
///
/// 分类报表: customers (and optionally sales measures) per category of a scheme, rolled up to a depth,
/// with shares of the population and the unclassified; as of a past moment if asked; JSON, CSV or
/// .xlsx by `Accept`.
#[utoipa::path(get, path = "/api/v1/reports/distribution", tag = "reports", operation_id = "report_distribution",
    params(
        ("scheme" = String, Query, description = "Scheme code", example = "TIER"),
        ("depth" = Option<usize>, Query, minimum = 1, description = "Roll rows up to this level of the tree"),
        ReportScope,
        ReportFilters,
    ),
    responses(
        (status = 200, description = "The distribution", content(
            (Distribution = "application/json"),
            (CsvTable = "text/csv"),
            (Workbook = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "For CSV and .xlsx: `attachment` with a file name"))),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`not_acceptable`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (depth, measures, as_of), `filter_not_historical`, `scheme_not_found` or `category_not_found` in a filter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn distribution(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::negotiate(&req)?;
    let mut params = Params::read(query.into_inner(), &["scheme", "depth", "measures", "as_of", "filters"])?;
    let scheme_code = params.required("scheme");
    let depth = params.depth("depth");
    let measures = params.measures();
    let as_of = params.as_of();
    params.errors.finish()?;
    let scheme_code = scheme_code.expect("checked");
    // Counted over the customers the key may see.
    let filters = Filters { restriction: auth.caller.restriction, ..params.filters };
    let axis = AxisAsked { scheme: scheme_code, depth_field: "depth", depth };
    let counting = Counting { filters, measures: measures.clone(), as_of };
    let (axes, cells) = service::tally(&state.db, vec![axis], counting).await?;
    let [axis] = <[service::Axis; 1]>::try_from(axes)
        .map_err(|_| AppError::internal("a report of one scheme got other axes"))?;
    let report = build_distribution(&axis.scheme, &axis.categories, &cells, axis.depth, measures, as_of);
    respond(format, &report, || report.sheet())
}

fn build_distribution(
    scheme: &SchemeRow,
    categories: &[CategoryView],
    cells: &HashMap<crate::store::reporting::scheme_counts::CellKey, Tally>,
    depth: Option<usize>,
    measures: Vec<Measure>,
    as_of: Option<NaiveDateTime>,
) -> Distribution {
    let width = measures.len();
    let (direct, unclassified) = store::by_first_axis(cells, width);
    let known: HashMap<&str, &CategoryView> = categories.iter().map(|view| (view.row.code.as_str(), view)).collect();
    // Codes seen in history whose category is gone still get a row, under their own code.
    let mut codes: BTreeSet<&str> = known.keys().copied().collect();
    codes.extend(direct.keys().map(String::as_str));
    let codes: Vec<&str> = codes
        .into_iter()
        .filter(|code| depth.is_none_or(|depth| level_of(&scheme.code_rule, code).is_none_or(|level| level <= depth)))
        .collect();
    let tallies = tree_tallies(&scheme.code_rule, &codes, &direct, width);
    let mut population = unclassified.clone();
    for tally in direct.values() {
        population.add(tally);
    }
    let mut rows: Vec<DistributionRow> = codes
        .iter()
        .map(|code| {
            let tally = &tallies[*code];
            let level = level_of(&scheme.code_rule, code);
            let own = if depth.is_some() && level == depth { &tally.subtree } else { &tally.direct };
            let view = known.get(code);
            DistributionRow {
                code: Some(code.to_string()),
                name: view.map(|view| view.row.name.clone()),
                depth: level.map(|level| level as i32),
                rank: view.and_then(|view| view.row.rank),
                customers: own.customers,
                subtree_customers: tally.subtree.customers,
                share: share(tally.subtree.customers, population.customers),
                measures: tally.subtree.values(&measures),
            }
        })
        .collect();
    rows.push(DistributionRow {
        code: None,
        name: Some(UNCLASSIFIED.to_string()),
        depth: None,
        rank: None,
        customers: unclassified.customers,
        subtree_customers: unclassified.customers,
        share: share(unclassified.customers, population.customers),
        measures: unclassified.values(&measures),
    });
    Distribution {
        scheme: scheme.code.clone(),
        as_of: moment(as_of),
        population: population.customers,
        depth,
        total: ReportTotal { customers: population.customers, measures: population.values(&measures) },
        measures,
        rows,
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/reports/distribution").route(web::get().to(distribution)))
        .service(web::resource("/reports/crosstab").route(web::get().to(crosstabs::crosstab)))
        .service(web::resource("/reports/sales").route(web::get().to(sales::sales)))
        .service(web::resource("/reports/transitions").route(web::get().to(transitions::transitions)))
        .service(
            web::resource("/reports/transitions/customers").route(web::get().to(transitions::transition_customers)),
        );
}

#[cfg(test)]
mod scope_tests {
    use utoipa::IntoParams;

    use super::{ReportFilters, ReportScope};
    use crate::api::filters::{parse_filter, FILTER_KEYS};
    use crate::api::FieldErrors;
    use crate::store::archive::customer_filters::Filters;

    /// The parameters the document lists for a report's scope are those the handlers
    /// read: the measures, the day, and every filter `parse_filter` takes.
    #[test]
    fn the_documented_scope_is_what_the_parser_reads() {
        let mut documented: Vec<String> = ReportScope::into_params(|| None)
            .into_iter()
            .chain(ReportFilters::into_params(|| None))
            .map(|parameter| parameter.name)
            .collect();
        let mut read: Vec<String> =
            ["measures", "as_of"].iter().chain(FILTER_KEYS.iter()).map(|key| key.to_string()).collect();
        documented.sort();
        read.sort();
        assert_eq!(documented, read);
        for key in FILTER_KEYS {
            let (mut filters, mut errors) = (Filters::default(), FieldErrors::default());
            assert!(parse_filter(key, "x", &mut filters, &mut errors), "{key} is a filter");
        }
        let (mut filters, mut errors) = (Filters::default(), FieldErrors::default());
        assert!(!parse_filter("colour", "x", &mut filters, &mut errors), "nothing else is");
    }
}
