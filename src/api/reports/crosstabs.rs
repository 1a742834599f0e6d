//! The cross-tab report: two schemes against each other.

use super::*;

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
        ReportFilters,
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
    let asked = vec![
        AxisAsked { scheme: rows_code, depth_field: "rows_depth", depth: rows_depth },
        AxisAsked { scheme: cols_code, depth_field: "cols_depth", depth: cols_depth },
    ];
    let counting = Counting { filters, measures: measures.clone(), as_of };
    let (axes, cells) = service::tally(&state.db, asked, counting).await?;
    let [rows, cols] =
        <[service::Axis; 2]>::try_from(axes).map_err(|_| AppError::internal("a cross-tab got other than two axes"))?;
    let rows_axis = Axis::new(
        &rows.scheme,
        &rows.categories,
        rows.depth.unwrap_or(1),
        cells.keys().filter_map(|(row, _)| row.as_deref()),
    );
    let cols_axis = Axis::new(
        &cols.scheme,
        &cols.categories,
        cols.depth.unwrap_or(1),
        cells.keys().filter_map(|(_, col)| col.as_deref()),
    );
    let report = build_crosstab(&rows_axis, &cols_axis, &cells, measures, as_of);
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
