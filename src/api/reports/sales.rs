//! The sales report by category (分类销售统计): a period's sales per category and per
//! interval, each sale under the category its customer held when it happened or holds now.

use super::*;
use crate::domain::sales::Money;
use crate::domain::sales_report::{bounds, slices, Interval, SalesBasis, Slice};
use crate::store::reporting::sales_by_category::{SalesCells, SalesSum};

/// One interval of the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesInterval {
    /// `2026-01`, `2026-Q1`, or `2026-01-01..2026-03-31` for `interval=none`.
    #[schema(example = "2026-01")]
    pub label: String,
    /// Its first day (UTC).
    #[schema(value_type = String, format = Date, example = "2026-01-01")]
    pub from: NaiveDate,
    /// Its last day, included.
    #[schema(value_type = String, format = Date, example = "2026-01-31")]
    pub to: NaiveDate,
}

/// What sales add up to.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct SalesFigures {
    /// The sum of the amounts, refunds subtracted, exact to the cent.
    #[schema(value_type = String, example = "12500.00")]
    pub amount: Money,
    /// Sales with a positive amount.
    #[schema(example = 42)]
    pub orders: i64,
}

/// A category with its whole subtree, or the unclassified customers (`code: null`, last).
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesRow {
    #[schema(example = "01")]
    pub code: Option<String>,
    /// `null` for a category deleted since.
    #[schema(example = "VIP客户")]
    pub name: Option<String>,
    /// Level in the tree, 1 at the roots; `null` for unclassified.
    pub depth: Option<i32>,
    /// In an ordered scheme, higher is better.
    pub rank: Option<i32>,
    /// One per interval of the report, in order.
    pub intervals: Vec<SalesFigures>,
    /// The whole period.
    pub total: SalesFigures,
}

/// The sales of every customer counted.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesTotal {
    pub intervals: Vec<SalesFigures>,
    pub total: SalesFigures,
}

/// `GET /reports/sales`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesReport {
    #[schema(example = "TIER")]
    pub scheme: String,
    #[schema(value_type = String, format = Date, example = "2026-01-01")]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date, example = "2026-03-31")]
    pub to: NaiveDate,
    pub interval: Interval,
    pub basis: SalesBasis,
    pub depth: Option<usize>,
    pub intervals: Vec<SalesInterval>,
    /// Categories in pre-order (by code), each with its subtree's sales, then unclassified:
    /// the rows of the top level and the unclassified add up to `total`.
    pub rows: Vec<SalesRow>,
    pub total: SalesTotal,
}

impl SalesReport {
    fn sheet(&self) -> Sheet {
        let mut header: Vec<String> = ["code", "name", "depth", "rank"].map(String::from).to_vec();
        for interval in &self.intervals {
            header.push(format!("{}.amount", interval.label));
            header.push(format!("{}.orders", interval.label));
        }
        header.extend(["total.amount".to_string(), "total.orders".to_string()]);
        let stem = format!("sales-{}-{}-{}-{}", self.scheme, self.from, self.to, self.basis.as_str());
        let mut sheet = Sheet::new(stem, header);
        let figures = |intervals: &[SalesFigures], total: &SalesFigures| {
            intervals
                .iter()
                .chain(std::iter::once(total))
                .flat_map(|figures| [Cell::Decimal(figures.amount.to_string()), Cell::Integer(figures.orders)])
                .collect::<Vec<Cell>>()
        };
        for row in &self.rows {
            let mut cells = vec![
                Cell::from(row.code.clone()),
                Cell::from(row.name.clone()),
                row.depth.map_or(Cell::Empty, |depth| Cell::Integer(depth.into())),
                row.rank.map_or(Cell::Empty, |rank| Cell::Integer(rank.into())),
            ];
            cells.extend(figures(&row.intervals, &row.total));
            sheet.rows.push(cells);
        }
        let mut total = vec![Cell::Empty, Cell::from("total"), Cell::Empty, Cell::Empty];
        total.extend(figures(&self.total.intervals, &self.total.total));
        sheet.rows.push(total);
        sheet
    }
}

fn parse_interval(text: &str) -> Option<Interval> {
    Interval::from_label(text)
}

fn parse_basis(text: &str) -> Option<SalesBasis> {
    SalesBasis::from_label(text)
}

/// Report sales per category and interval
///
/// 分类销售统计: a period's sales (amount and orders) per category of a scheme and per month, quarter or
/// the whole period, each sale counted under the category its customer held when it happened
/// (`basis=at_sale`, the default: moving a customer does not regroup its past sales) or holds now
/// (`basis=current`); rolled up to a depth, with the unclassified and a total; over the customers
/// the filters of `GET /customers` select as they are now; JSON, CSV or .xlsx by `Accept`.
#[utoipa::path(get, path = "/api/v1/reports/sales", tag = "reports", operation_id = "report_sales",
    params(
        ("scheme" = String, Query, description = "Scheme code", example = "TIER"),
        ("from" = String, Query, format = Date, description = "First day of the period (UTC)", example = "2026-01-01"),
        ("to" = String, Query, format = Date, description = "Last day of the period, included (at most 10 years after `from`)", example = "2026-03-31"),
        ("interval" = Option<Interval>, Query, description = "How to cut the period; default `month`"),
        ("basis" = Option<SalesBasis>, Query, description = "Under which category a sale counts; default `at_sale`"),
        ("depth" = Option<usize>, Query, minimum = 1, description = "Roll rows up to this level of the tree"),
        ReportFilters,
    ),
    responses(
        (status = 200, description = "The sales per category and interval", content(
            (SalesReport = "application/json"),
            (CsvTable = "text/csv"),
            (Workbook = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ), headers(("Content-Disposition" = String, description = "For CSV and .xlsx: `attachment` with a file name"))),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scheme_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`not_acceptable`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (from, to, interval, basis, depth), `scheme_not_found` or `category_not_found` in a filter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sales(
    state: web::Data<AppState>,
    auth: Auth<Read, Restrictable>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::negotiate(&req)?;
    let mut params =
        Params::read(query.into_inner(), &["scheme", "from", "to", "interval", "basis", "depth", "filters"])?;
    let scheme_code = params.required("scheme");
    let period = params.period();
    let interval = params.labelled("interval", parse_interval, Interval::LABELS).unwrap_or(Interval::Month);
    let basis = params.labelled("basis", parse_basis, SalesBasis::LABELS).unwrap_or(SalesBasis::AtSale);
    let depth = params.depth("depth");
    params.errors.finish()?;
    let (scheme_code, period) = (scheme_code.expect("checked"), period.expect("checked"));
    // Summed over the customers the key may see.
    let filters = Filters { restriction: auth.caller.restriction, ..params.filters };
    let slices = slices(period, interval);
    let axis = AxisAsked { scheme: scheme_code, depth_field: "depth", depth };
    let found = service::sales(&state.db, axis, filters, bounds(&slices), basis).await?;
    let report = build_sales(found, period, interval, basis, &slices);
    respond(format, &report, || report.sheet())
}

/// Interval sums as a tally's sums: amount and orders of each interval in turn, so that
/// the tree adds them up as it adds up measures.
fn as_tally(sums: &[SalesSum]) -> Tally {
    Tally { customers: 0, sums: sums.iter().flat_map(|sum| [sum.amount_cents, sum.orders]).collect() }
}

fn figures(tally: &Tally) -> (Vec<SalesFigures>, SalesFigures) {
    let intervals: Vec<SalesFigures> =
        tally.sums.chunks(2).map(|pair| SalesFigures { amount: Money::from_cents(pair[0]), orders: pair[1] }).collect();
    let total = SalesFigures {
        amount: Money::from_cents(intervals.iter().map(|figures| figures.amount.cents()).sum()),
        orders: intervals.iter().map(|figures| figures.orders).sum(),
    };
    (intervals, total)
}

fn build_sales(
    found: service::Sales,
    period: Period,
    interval: Interval,
    basis: SalesBasis,
    slices: &[Slice],
) -> SalesReport {
    let service::Sales { axis, cells } = found;
    let width = slices.len() * 2;
    let cells: HashMap<crate::store::reporting::scheme_counts::CellKey, Tally> =
        tallies(cells).into_iter().map(|(code, tally)| ((code, None), tally)).collect();
    let (direct, unclassified) = store::by_first_axis(&cells, width);
    let known: HashMap<&str, &CategoryView> =
        axis.categories.iter().map(|view| (view.row.code.as_str(), view)).collect();
    let mut codes: BTreeSet<&str> = known.keys().copied().collect();
    codes.extend(direct.keys().map(String::as_str));
    let rule = &axis.scheme.code_rule;
    let codes: Vec<&str> = codes
        .into_iter()
        .filter(|code| axis.depth.is_none_or(|depth| level_of(rule, code).is_none_or(|level| level <= depth)))
        .collect();
    let tree = tree_tallies(rule, &codes, &direct, width);
    let mut everyone = unclassified.clone();
    for tally in direct.values() {
        everyone.add(tally);
    }
    let row = |code: Option<&str>, tally: &Tally| {
        let view = code.and_then(|code| known.get(code));
        let (intervals, total) = figures(tally);
        SalesRow {
            code: code.map(str::to_string),
            name: code.map_or(Some(UNCLASSIFIED.to_string()), |_| view.map(|view| view.row.name.clone())),
            depth: code.and_then(|code| level_of(rule, code)).map(|level| level as i32),
            rank: view.and_then(|view| view.row.rank),
            intervals,
            total,
        }
    };
    let mut rows: Vec<SalesRow> = codes.iter().map(|code| row(Some(code), &tree[*code].subtree)).collect();
    rows.push(row(None, &unclassified));
    let (intervals, total) = figures(&everyone);
    SalesReport {
        scheme: axis.scheme.code.clone(),
        from: period.from,
        to: period.to,
        interval,
        basis,
        depth: axis.depth,
        intervals: slices
            .iter()
            .map(|slice| SalesInterval { label: slice.label(interval), from: slice.first, to: slice.last })
            .collect(),
        rows,
        total: SalesTotal { intervals, total },
    }
}

fn tallies(cells: SalesCells) -> Vec<(Option<String>, Tally)> {
    cells.into_iter().map(|(code, sums)| (code, as_tally(&sums))).collect()
}
