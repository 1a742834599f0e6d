//! Reports (分类报表): the counts and sales measures per category of one or two schemes,
//! and the moves between categories in a period. These read much, so on MySQL they
//! share their work with a second connection when the pool has one to spare.

use std::collections::HashMap;

use chrono::NaiveDateTime;

use crate::db::{Db, DbConnection, Spare};
use crate::domain::history::Source;
use crate::domain::report::{check_depth, Measure, Period, Tally};
use crate::domain::sales_report::SalesBasis;
use crate::error::AppError;
use crate::store::archive::customer_filters::Filters;
use crate::store::catalogue::categories::CategoryView;
use crate::store::catalogue::schemes::{self, SchemeRow};
use crate::store::reporting::category_views;
use crate::store::reporting::reports;
use crate::store::reporting::sales_by_category::{self, SalesCells};
use crate::store::reporting::scheme_counts::CellKey;
use crate::store::reporting::transitions::{self, Basis, CellCustomer, CellQuery, TransitionCell};

/// A scheme a report runs along, with the depth asked for under the query field that
/// gave it.
pub struct AxisAsked {
    pub scheme: String,
    pub depth_field: &'static str,
    pub depth: Option<usize>,
}

impl AxisAsked {
    /// The depth asked for, which must be a level of the scheme's code rule.
    fn checked_depth(&self, scheme: &SchemeRow) -> Result<Option<usize>, AppError> {
        self.depth
            .map(|depth| check_depth(self.depth_field, &scheme.code_rule, depth))
            .transpose()
            .map_err(|error| AppError::invalid_fields(vec![error]))
    }
}

/// A scheme along a report: its categories, and the depth checked against its code rule.
pub struct Axis {
    pub scheme: SchemeRow,
    pub categories: Vec<CategoryView>,
    pub depth: Option<usize>,
}

/// What to count over the axes.
pub struct Counting {
    pub filters: Filters,
    pub measures: Vec<Measure>,
    pub as_of: Option<NaiveDateTime>,
}

/// Customers (and the measures) per combination of the axes' categories, over the
/// customers `counting.filters` selects (a restricted key's subtree among them).
/// `scheme_not_found` for an unknown scheme, then `validation_failed` for a depth
/// beyond its code rule.
pub async fn tally(
    db: &Db,
    asked: Vec<AxisAsked>,
    counting: Counting,
) -> Result<(Vec<Axis>, HashMap<CellKey, Tally>), AppError> {
    let spares = db.clone();
    db.run(move |conn| {
        let found =
            asked.iter().map(|axis| schemes::get(conn, &axis.scheme)).collect::<Result<Vec<SchemeRow>, AppError>>()?;
        let depths = found
            .iter()
            .zip(&asked)
            .map(|(scheme, axis)| axis.checked_depth(scheme))
            .collect::<Result<Vec<Option<usize>>, AppError>>()?;
        let mut axes = Vec::with_capacity(found.len());
        for (scheme, depth) in found.into_iter().zip(depths) {
            let categories = category_views::list(conn, &scheme.code, None)?;
            axes.push(Axis { scheme, categories, depth });
        }
        let mut spare = helper(&spares, conn, !counting.measures.is_empty());
        let schemes: Vec<&SchemeRow> = axes.iter().map(|axis| &axis.scheme).collect();
        let Counting { filters, measures, as_of } = &counting;
        let cells = reports::tally(conn, spare.as_mut().map(Spare::conn), &schemes, filters, measures, *as_of)?;
        Ok((axes, cells))
    })
    .await
}

/// A period's sales per category of a scheme and per interval, with the categories.
pub struct Sales {
    pub axis: Axis,
    pub cells: SalesCells,
}

/// The sales of `[bounds[0], bounds[last])` per interval and category of `asked` on
/// `basis`, over the customers `filters` selects. `scheme_not_found`, then
/// `validation_failed` for a depth beyond the scheme's code rule.
pub async fn sales(
    db: &Db,
    asked: AxisAsked,
    filters: Filters,
    bounds: Vec<NaiveDateTime>,
    basis: SalesBasis,
) -> Result<Sales, AppError> {
    let spares = db.clone();
    db.run(move |conn| {
        let scheme = schemes::get(conn, &asked.scheme)?;
        let depth = asked.checked_depth(&scheme)?;
        let categories = category_views::list(conn, &scheme.code, None)?;
        let mut spare = helper(&spares, conn, true);
        let cells = sales_by_category::sales_by_category(
            conn,
            spare.as_mut().map(Spare::conn),
            &scheme,
            &filters,
            &bounds,
            basis,
        )?;
        Ok(Sales { axis: Axis { scheme, categories, depth }, cells })
    })
    .await
}

/// The moves of a period between the scheme's categories, with the categories' names.
pub struct Moves {
    pub scheme: SchemeRow,
    pub names: HashMap<String, String>,
    pub cells: Vec<TransitionCell>,
}

pub async fn transitions(
    db: &Db,
    scheme: String,
    period: Period,
    basis: Basis,
    source: Option<Source>,
) -> Result<Moves, AppError> {
    let spares = db.clone();
    db.run(move |conn| {
        let scheme = schemes::get(conn, &scheme)?;
        let names = category_views::list(conn, &scheme.code, None)?
            .into_iter()
            .map(|view| (view.row.code, view.row.name))
            .collect();
        let mut spare = helper(&spares, conn, basis == Basis::Net);
        let cells = transitions::transitions(conn, spare.as_mut().map(Spare::conn), &scheme, period, basis, source)?;
        Ok(Moves { scheme, names, cells })
    })
    .await
}

/// The customers behind one cell of the transitions report.
pub async fn cell_customers(db: &Db, scheme: String, query: CellQuery) -> Result<Vec<CellCustomer>, AppError> {
    db.run(move |conn| {
        let scheme = schemes::get(conn, &scheme)?;
        transitions::cell_customers(conn, &scheme, &query)
    })
    .await
}

/// A second connection to share a report's work with (`wanted`), when the pool has
/// one free at once (on MySQL; SQLite has one writer and little to gain).
fn helper(db: &Db, conn: &DbConnection, wanted: bool) -> Option<Spare> {
    (wanted && matches!(conn, DbConnection::Mysql(_))).then(|| db.try_spare()).flatten()
}
