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
use crate::db::{Db, DbConnection, Spare};
use crate::domain::history::{Direction, Source};
use crate::domain::report::{
    check_depth, end_of, ensure_not_future, level_of, parse_day, rolled_up, share, tree_tallies, Measure,
    MeasureValues, Period, Tally,
};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};
use crate::store::archive::customer_search::Filters;
use crate::store::catalogue::categories::CategoryView;
use crate::store::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::store::reporting::category_views as category_store;
use crate::store::reporting::reports::{self as store, Basis, CellCustomer, CellQuery, TransitionCell};

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

/// A second connection to share a report's work with (`wanted`), when the pool has
/// one free at once (on MySQL; SQLite has one writer and little to gain).
fn helper(db: &Db, conn: &DbConnection, wanted: bool) -> Option<Spare> {
    (wanted && matches!(conn, DbConnection::Mysql(_))).then(|| db.try_spare()).flatten()
}

/// The scheme a report is about: 404 when it does not exist.
fn report_scheme(conn: &mut DbConnection, code: &str) -> Result<SchemeRow, AppError> {
    scheme_store::get(conn, code)
}

/// `depth` checked against the scheme's code rule, with the field named.
fn checked_depth(scheme: &SchemeRow, field: &str, depth: Option<usize>) -> Result<Option<usize>, AppError> {
    depth
        .map(|depth| check_depth(field, &scheme.code_rule, depth))
        .transpose()
        .map_err(|error| AppError::invalid_fields(vec![error]))
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

/// The parameters the distribution and the cross-tab share: what to count, as of
/// when, and the filters of `GET /customers` (documentation only; `Params` reads them).
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
    /// `SCHEME:CODE`, repeatable: customers in that subtree (as of `as_of`).
    #[param(example = "REGION:01")]
    category: Option<Vec<String>>,
    /// Scheme code, repeatable: customers without a category there (as of `as_of`).
    unclassified: Option<Vec<String>>,
    /// active or inactive (not with `as_of`).
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
    let db = state.db.clone();
    let report = state
        .db
        .run(move |conn| {
            let scheme = report_scheme(conn, &scheme_code)?;
            let depth = checked_depth(&scheme, "depth", depth)?;
            let categories = category_store::list(conn, &scheme.code, None)?;
            let mut spare = helper(&db, conn, !measures.is_empty());
            let cells = store::tally(conn, spare.as_mut().map(Spare::conn), &[&scheme], &filters, &measures, as_of)?;
            Ok(build_distribution(&scheme, &categories, &cells, depth, measures, as_of))
        })
        .await?;
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

/// A row or column of a cross-tab: a category on the axis's level, or unclassified (`code: null`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AxisEntry {
    pub code: Option<String>,
    pub name: Option<String>,
}

/// Customers (and measures) of one cell, row or column of a cross-tab.
#[derive(Debug, Serialize, ToSchema)]
pub struct CrosstabCell {
    pub customers: i64,
    #[serde(flatten)]
    pub measures: MeasureValues,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrosstabRow {
    pub code: Option<String>,
    pub name: Option<String>,
    /// One per entry of `columns`, in its order.
    pub cells: Vec<CrosstabCell>,
    /// The row total.
    pub total: CrosstabCell,
}

/// `GET /reports/crosstab`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Crosstab {
    #[schema(example = "INDUSTRY")]
    pub rows_scheme: String,
    #[schema(example = "TIER")]
    pub cols_scheme: String,
    pub rows_depth: usize,
    pub cols_depth: usize,
    pub as_of: DateTime<Utc>,
    pub population: i64,
    pub measures: Vec<Measure>,
    /// Categories of the columns scheme on `cols_depth` (and leaves above it), then unclassified.
    pub columns: Vec<AxisEntry>,
    /// Categories of the rows scheme on `rows_depth`, then unclassified; each with its cells.
    pub rows: Vec<CrosstabRow>,
    /// Column totals (`cells`) and the grand total (`total`), `code: null` and name "total".
    pub totals: CrosstabRow,
}

impl Crosstab {
    fn sheet(&self) -> Sheet {
        let values = |cell: &CrosstabCell| -> Vec<(String, Cell)> {
            let mut values = vec![("customers".to_string(), Cell::Integer(cell.customers))];
            values.extend(
                cell.measures
                    .columns()
                    .into_iter()
                    .map(|(name, _)| name.to_string())
                    .zip(measure_cells(&cell.measures)),
            );
            values
        };
        let column_name = |entry: &AxisEntry| entry.code.clone().unwrap_or_else(|| "unclassified".to_string());
        let mut header = vec!["code".to_string(), "name".to_string()];
        for (entry, cell) in self.columns.iter().zip(&self.totals.cells) {
            header.extend(values(cell).into_iter().map(|(name, _)| format!("{}.{name}", column_name(entry))));
        }
        header.extend(values(&self.totals.total).into_iter().map(|(name, _)| format!("total.{name}")));
        let mut sheet = Sheet::new(
            format!(
                "crosstab-{}-{}-{}",
                self.rows_scheme,
                self.cols_scheme,
                file_day(Some(self.as_of.naive_utc() + chrono::Duration::microseconds(1)))
            ),
            header,
        );
        for row in self.rows.iter().chain(std::iter::once(&self.totals)) {
            let mut cells = vec![Cell::from(row.code.clone()), Cell::from(row.name.clone())];
            for cell in row.cells.iter().chain(std::iter::once(&row.total)) {
                cells.extend(values(cell).into_iter().map(|(_, value)| value));
            }
            sheet.rows.push(cells);
        }
        sheet
    }
}

/// Report customers across two schemes
///
/// A cross-tab of two schemes' categories (e.g. region × tier) with row and column totals, filtered
/// like the customer list; JSON, CSV or .xlsx.
#[utoipa::path(get, path = "/api/v1/reports/crosstab", tag = "reports", operation_id = "report_crosstab",
    params(
        ("rows" = String, Query, description = "Scheme code of the rows", example = "INDUSTRY"),
        ("cols" = String, Query, description = "Scheme code of the columns; not the rows' scheme", example = "TIER"),
        ("rows_depth" = Option<usize>, Query, minimum = 1, description = "Level the rows roll up to (default 1)"),
        ("cols_depth" = Option<usize>, Query, minimum = 1, description = "Level the columns roll up to (default 1)"),
        ReportScope,
    ),
    responses(
        (status = 200, description = "The cross-tab", content(
            (Crosstab = "application/json"),
            (CsvTable = "text/csv"),
            (Workbook = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "For CSV and .xlsx: `attachment` with a file name"))),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`not_acceptable`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (rows equal to cols, depths, measures, as_of), `filter_not_historical`, unknown filter scheme or category", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn crosstab(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::negotiate(&req)?;
    let mut params = Params::read(
        query.into_inner(),
        &["rows", "cols", "rows_depth", "cols_depth", "measures", "as_of", "filters"],
    )?;
    let rows_code = params.required("rows");
    let cols_code = params.required("cols");
    if rows_code.is_some() && rows_code == cols_code {
        params.errors.check::<()>(Err(FieldError::new("cols", "must be another scheme than rows")));
    }
    let rows_depth = params.depth("rows_depth");
    let cols_depth = params.depth("cols_depth");
    let measures = params.measures();
    let as_of = params.as_of();
    params.errors.finish()?;
    let (rows_code, cols_code) = (rows_code.expect("checked"), cols_code.expect("checked"));
    // Counted over the customers the key may see.
    let filters = Filters { restriction: auth.caller.restriction, ..params.filters };
    let db = state.db.clone();
    let report = state
        .db
        .run(move |conn| {
            let rows_scheme = report_scheme(conn, &rows_code)?;
            let cols_scheme = report_scheme(conn, &cols_code)?;
            let rows_depth = checked_depth(&rows_scheme, "rows_depth", rows_depth)?.unwrap_or(1);
            let cols_depth = checked_depth(&cols_scheme, "cols_depth", cols_depth)?.unwrap_or(1);
            let row_categories = category_store::list(conn, &rows_scheme.code, None)?;
            let col_categories = category_store::list(conn, &cols_scheme.code, None)?;
            let mut spare = helper(&db, conn, !measures.is_empty());
            let cells = store::tally(
                conn,
                spare.as_mut().map(Spare::conn),
                &[&rows_scheme, &cols_scheme],
                &filters,
                &measures,
                as_of,
            )?;
            let rows_axis = Axis::new(
                &rows_scheme,
                &row_categories,
                rows_depth,
                cells.keys().filter_map(|(row, _)| row.as_deref()),
            );
            let cols_axis = Axis::new(
                &cols_scheme,
                &col_categories,
                cols_depth,
                cells.keys().filter_map(|(_, col)| col.as_deref()),
            );
            Ok(build_crosstab(&rows_axis, &cols_axis, &cells, measures, as_of))
        })
        .await?;
    respond(format, &report, || report.sheet())
}

/// One side of a cross-tab: its entries in order and where each category rolls up to.
struct Axis<'a> {
    scheme: &'a SchemeRow,
    depth: usize,
    entries: Vec<AxisEntry>,
    position: HashMap<String, usize>,
}

impl<'a> Axis<'a> {
    /// The categories on level `depth` and the leaves above it, plus the codes seen in
    /// the tally that no longer exist, then unclassified.
    fn new(
        scheme: &'a SchemeRow,
        categories: &[CategoryView],
        depth: usize,
        seen: impl Iterator<Item = &'a str>,
    ) -> Self {
        let names: HashMap<&str, &str> =
            categories.iter().map(|view| (view.row.code.as_str(), view.row.name.as_str())).collect();
        let mut codes: BTreeSet<String> = categories
            .iter()
            .filter(|view| view.row.level as usize == depth || (view.is_leaf && (view.row.level as usize) < depth))
            .map(|view| view.row.code.clone())
            .collect();
        codes.extend(seen.map(|code| rolled_up(&scheme.code_rule, code, depth).to_string()));
        let mut entries: Vec<AxisEntry> = codes
            .into_iter()
            .map(|code| AxisEntry { name: names.get(code.as_str()).map(|name| name.to_string()), code: Some(code) })
            .collect();
        entries.push(AxisEntry { code: None, name: Some(UNCLASSIFIED.to_string()) });
        let position =
            entries.iter().enumerate().filter_map(|(index, entry)| Some((entry.code.clone()?, index))).collect();
        Self { scheme, depth, entries, position }
    }

    fn index_of(&self, code: Option<&str>) -> usize {
        match code {
            Some(code) => self.position[rolled_up(&self.scheme.code_rule, code, self.depth)],
            None => self.entries.len() - 1,
        }
    }
}

fn build_crosstab(
    rows: &Axis,
    cols: &Axis,
    cells: &HashMap<crate::store::reporting::scheme_counts::CellKey, Tally>,
    measures: Vec<Measure>,
    as_of: Option<NaiveDateTime>,
) -> Crosstab {
    let width = measures.len();
    let mut matrix = vec![vec![Tally::new(width); cols.entries.len()]; rows.entries.len()];
    for ((row, col), tally) in cells {
        matrix[rows.index_of(row.as_deref())][cols.index_of(col.as_deref())].add(tally);
    }
    let cell = |tally: &Tally| CrosstabCell { customers: tally.customers, measures: tally.values(&measures) };
    let mut column_totals = vec![Tally::new(width); cols.entries.len()];
    let mut grand_total = Tally::new(width);
    let body: Vec<CrosstabRow> = rows
        .entries
        .iter()
        .zip(&matrix)
        .map(|(entry, line)| {
            let mut row_total = Tally::new(width);
            for (column, tally) in line.iter().enumerate() {
                row_total.add(tally);
                column_totals[column].add(tally);
            }
            grand_total.add(&row_total);
            CrosstabRow {
                code: entry.code.clone(),
                name: entry.name.clone(),
                cells: line.iter().map(cell).collect(),
                total: cell(&row_total),
            }
        })
        .collect();
    Crosstab {
        rows_scheme: rows.scheme.code.clone(),
        cols_scheme: cols.scheme.code.clone(),
        rows_depth: rows.depth,
        cols_depth: cols.depth,
        as_of: moment(as_of),
        population: grand_total.customers,
        columns: cols.entries.clone(),
        rows: body,
        totals: CrosstabRow {
            code: None,
            name: Some("total".to_string()),
            cells: column_totals.iter().map(cell).collect(),
            total: cell(&grand_total),
        },
        measures,
    }
}

/// How `basis` is written in a query.
fn parse_basis(text: &str) -> Option<Basis> {
    match text {
        "net" => Some(Basis::Net),
        "moves" => Some(Basis::Moves),
        _ => None,
    }
}

/// Net (each customer once, start against end) or moves (every history entry).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionBasis {
    Net,
    Moves,
}

impl From<Basis> for TransitionBasis {
    fn from(basis: Basis) -> Self {
        match basis {
            Basis::Net => TransitionBasis::Net,
            Basis::Moves => TransitionBasis::Moves,
        }
    }
}

/// One from → to cell of a transitions report.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionEntry {
    /// `null`: no category (the customer came in).
    pub from_category: Option<String>,
    pub from_name: Option<String>,
    /// `null`: no category (the customer left, or was deleted).
    pub to_category: Option<String>,
    pub to_name: Option<String>,
    /// On the moves basis as recorded with each move; on the net basis by today's
    /// ranks, `null` for customers that ended where they started.
    pub direction: Option<Direction>,
    /// Customers (net basis) or moves (moves basis).
    pub count: i64,
}

/// Counts by direction; `unchanged` counts customers back where they started (net basis).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct DirectionTotals {
    pub up: i64,
    pub down: i64,
    pub lateral: i64,
    #[serde(rename = "in")]
    pub came_in: i64,
    pub out: i64,
    pub unchanged: i64,
    pub total: i64,
}

/// `GET /reports/transitions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Transitions {
    pub scheme: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub basis: TransitionBasis,
    pub source: Option<Source>,
    /// Largest first.
    pub cells: Vec<TransitionEntry>,
    pub totals: DirectionTotals,
}

impl Transitions {
    fn sheet(&self) -> Sheet {
        let header =
            ["from_category", "from_name", "to_category", "to_name", "direction", "count"].map(String::from).to_vec();
        let mut sheet = Sheet::new(format!("transitions-{}-{}-{}", self.scheme, self.from, self.to), header);
        for entry in &self.cells {
            sheet.rows.push(vec![
                Cell::from(entry.from_category.clone()),
                Cell::from(entry.from_name.clone()),
                Cell::from(entry.to_category.clone()),
                Cell::from(entry.to_name.clone()),
                Cell::from(entry.direction.map(|direction| direction.as_str().to_string())),
                Cell::Integer(entry.count),
            ]);
        }
        sheet
    }
}

/// The parameters transitions and their customers share.
fn transition_params(params: &mut Params) -> (Option<String>, Option<Period>, Basis, Option<Source>) {
    let scheme = params.required("scheme");
    let period = params.period();
    let basis = params.labelled("basis", parse_basis, &["net", "moves"]).unwrap_or(Basis::Net);
    let source = params.labelled("source", Source::from_label, Source::LABELS);
    (scheme, period, basis, source)
}

/// Report upgrades and downgrades
///
/// 升级/降级: how many customers moved between the categories of a scheme in a period, by from-to pair
/// and direction (up, down, lateral, in, out).
#[utoipa::path(get, path = "/api/v1/reports/transitions", tag = "reports", operation_id = "report_transitions",
    params(
        ("scheme" = String, Query, description = "Scheme code", example = "TIER"),
        ("from" = String, Query, format = Date, description = "First day of the period (UTC)", example = "2026-07-01"),
        ("to" = String, Query, format = Date, description = "Last day of the period, at most 10 years after `from`", example = "2026-09-30"),
        ("basis" = Option<TransitionBasis>, Query, description = "net (default): each customer once, start against end; moves: every move"),
        ("source" = Option<Source>, Query, description = "Only moves of this source (net: customers with at least one)"),
    ),
    responses(
        (status = 200, description = "The transitions", content(
            (Transitions = "application/json"),
            (CsvTable = "text/csv"),
            (Workbook = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "For CSV and .xlsx: `attachment` with a file name"))),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`not_acceptable`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: from after to, a period over 10 years, a bad date, basis or source", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transitions(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::negotiate(&req)?;
    let mut params = Params::read(query.into_inner(), &["scheme", "from", "to", "basis", "source"])?;
    let (scheme_code, period, basis, source) = transition_params(&mut params);
    params.errors.finish()?;
    let (scheme_code, period) = (scheme_code.expect("checked"), period.expect("checked"));
    let db = state.db.clone();
    let report = state
        .db
        .run(move |conn| {
            let scheme = report_scheme(conn, &scheme_code)?;
            let names = category_names(conn, &scheme)?;
            let mut spare = helper(&db, conn, basis == Basis::Net);
            let mut cells = store::transitions(conn, spare.as_mut().map(Spare::conn), &scheme, period, basis, source)?;
            cells.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to))));
            let mut totals = DirectionTotals::default();
            for cell in &cells {
                let bucket = match cell.direction {
                    Some(Direction::Up) => &mut totals.up,
                    Some(Direction::Down) => &mut totals.down,
                    Some(Direction::Lateral) => &mut totals.lateral,
                    Some(Direction::In) => &mut totals.came_in,
                    Some(Direction::Out) => &mut totals.out,
                    None => &mut totals.unchanged,
                };
                *bucket += cell.count;
                totals.total += cell.count;
            }
            let entry = |cell: TransitionCell| TransitionEntry {
                from_name: cell.from.as_ref().and_then(|code| names.get(code).cloned()),
                to_name: cell.to.as_ref().and_then(|code| names.get(code).cloned()),
                from_category: cell.from,
                to_category: cell.to,
                direction: cell.direction,
                count: cell.count,
            };
            Ok(Transitions {
                scheme: scheme.code.clone(),
                from: period.from,
                to: period.to,
                basis: basis.into(),
                source,
                cells: cells.into_iter().map(entry).collect(),
                totals,
            })
        })
        .await?;
    respond(format, &report, || report.sheet())
}

fn category_names(conn: &mut DbConnection, scheme: &SchemeRow) -> Result<HashMap<String, String>, AppError> {
    Ok(category_store::list(conn, &scheme.code, None)?.into_iter().map(|view| (view.row.code, view.row.name)).collect())
}

/// A customer of a transitions cell.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionCustomer {
    pub code: String,
    /// `null` once the customer has been deleted.
    pub name: Option<String>,
    /// Net basis: where it stood before the period; moves basis: its last matching move's origin.
    pub from_category: Option<String>,
    pub to_category: Option<String>,
    pub direction: Option<Direction>,
    /// Its moves in the period (moves basis: those that match).
    pub moves: i64,
    pub last_moved_at: DateTime<Utc>,
}

impl From<CellCustomer> for TransitionCustomer {
    fn from(customer: CellCustomer) -> Self {
        Self {
            code: customer.code,
            name: customer.name,
            from_category: customer.from,
            to_category: customer.to,
            direction: customer.direction,
            moves: customer.moves,
            last_moved_at: customer.last_moved_at.and_utc(),
        }
    }
}

/// `from_category=` (empty) means no category; absent means any.
fn cell_category(params: &mut Params, key: &str) -> Option<Option<String>> {
    let text = params.get(key)?.to_string();
    if text.is_empty() {
        return Some(None);
    }
    params
        .errors
        .check(crate::domain::category::CategoryCode::parse(key, &text))
        .map(|code| Some(code.as_str().to_string()))
}

#[derive(Serialize, Deserialize)]
struct CellCursor {
    code: String,
}

/// List the customers of one transition
///
/// The customers behind one from-to pair of the transitions report, keyset-paged.
#[utoipa::path(get, path = "/api/v1/reports/transitions/customers", tag = "reports", operation_id = "report_transition_customers",
    params(
        ("scheme" = String, Query, description = "Scheme code", example = "TIER"),
        ("from" = String, Query, format = Date, description = "First day of the period (UTC)", example = "2026-07-01"),
        ("to" = String, Query, format = Date, description = "Last day of the period", example = "2026-09-30"),
        ("basis" = Option<TransitionBasis>, Query, description = "net (default) or moves"),
        ("source" = Option<Source>, Query, description = "Only moves of this source"),
        ("from_category" = Option<String>, Query, description = "Category at the start (net) or of the move (moves); empty for no category; absent for any", example = "01"),
        ("to_category" = Option<String>, Query, description = "Category at the end (net) or of the move (moves); empty for no category; absent for any"),
        ("direction" = Option<Direction>, Query, description = "Only customers (net) or moves (moves) of this direction", example = "down"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page, by customer code; `next_cursor` is null on the last", body = Page<TransitionCustomer>),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transition_customers(
    state: web::Data<AppState>,
    _auth: Auth<Read>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut params = Params::read(
        query.into_inner(),
        &["scheme", "from", "to", "basis", "source", "from_category", "to_category", "direction", "limit", "cursor"],
    )?;
    let (scheme_code, period, basis, source) = transition_params(&mut params);
    let from = cell_category(&mut params, "from_category");
    let to = cell_category(&mut params, "to_category");
    let direction = params.labelled("direction", Direction::from_label, Direction::LABELS);
    let page = paging::PageRequest::<CellCursor>::parse(params.get("limit"), params.get("cursor"))?;
    params.errors.finish()?;
    let (scheme_code, period) = (scheme_code.expect("checked"), period.expect("checked"));
    let limit = page.limit;
    let query = CellQuery {
        period,
        basis,
        source,
        from,
        to,
        direction,
        after: page.after.map(|cursor| cursor.code),
        limit: limit + 1,
    };
    let rows = state
        .db
        .run(move |conn| {
            let scheme = report_scheme(conn, &scheme_code)?;
            store::cell_customers(conn, &scheme, &query)
        })
        .await?;
    let page: Page<TransitionCustomer> =
        paging::into_page(rows, limit, |last: &CellCustomer| CellCursor { code: last.code.clone() })?;
    Ok(HttpResponse::Ok().json(page))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/reports/distribution").route(web::get().to(distribution)))
        .service(web::resource("/reports/crosstab").route(web::get().to(crosstab)))
        .service(web::resource("/reports/transitions").route(web::get().to(transitions)))
        .service(web::resource("/reports/transitions/customers").route(web::get().to(transition_customers)));
}

#[cfg(test)]
mod scope_tests {
    use utoipa::IntoParams;

    use super::ReportScope;
    use crate::api::filters::{parse_filter, FILTER_KEYS};
    use crate::api::FieldErrors;
    use crate::store::archive::customer_search::Filters;

    /// The parameters the document lists for a report's scope are those the handlers
    /// read: the measures, the day, and every filter `parse_filter` takes.
    #[test]
    fn the_documented_scope_is_what_the_parser_reads() {
        let mut documented: Vec<String> =
            ReportScope::into_params(|| None).into_iter().map(|parameter| parameter.name).collect();
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
