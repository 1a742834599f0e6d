//! The transitions report (升级/降级) and the customers behind one of its cells.

use super::*;
use crate::service::reporting::Moves;

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
    let Moves { scheme, names, mut cells } =
        service::transitions(&state.db, scheme_code, period, basis, source).await?;
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
    let report = Transitions {
        scheme: scheme.code.clone(),
        from: period.from,
        to: period.to,
        basis: basis.into(),
        source,
        cells: cells.into_iter().map(entry).collect(),
        totals,
    };
    respond(format, &report, || report.sheet())
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
    let rows = service::cell_customers(&state.db, scheme_code, query).await?;
    let page: Page<TransitionCustomer> =
        paging::into_page(rows, limit, |last: &CellCustomer| CellCursor { code: last.code.clone() })?;
    Ok(HttpResponse::Ok().json(page))
}
