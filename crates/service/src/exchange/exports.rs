//! The export's scan: the archive's layout and the customers a page at a time, in code
//! order, read as the file is written.

use futures_util::stream::{self, Stream};

use crate::db::Db;
use crate::domain::archive::Layout;
use crate::error::AppError;
use crate::store::archive::customer_filters::Filters;
use crate::store::exchange::exports::{self as store, ExportPage};

/// Customers read per page of the scan.
const PAGE: i64 = 1_000;

/// A scan of the customers the filters select, under one layout of columns.
#[derive(Clone)]
pub struct ExportScan {
    db: Db,
    pub layout: Layout,
    filters: Filters,
}

/// The layout and the first page, read before the file is answered, so that a bad
/// filter is a problem rather than a broken body.
pub async fn open(db: &Db, filters: Filters) -> Result<(ExportScan, ExportPage), AppError> {
    let asked = filters.clone();
    let (layout, first) = db
        .run(move |conn| {
            let layout = store::layout(conn)?;
            let first = store::page(conn, &layout, &asked, None, PAGE)?;
            Ok((layout, first))
        })
        .await?;
    Ok((ExportScan { db: db.clone(), layout, filters }, first))
}

impl ExportScan {
    /// The page after the customer `code`.
    pub async fn after(&self, code: String) -> Result<ExportPage, AppError> {
        let (layout, filters) = (self.layout.clone(), self.filters.clone());
        self.db.run(move |conn| store::page(conn, &layout, &filters, Some(code), PAGE)).await
    }

    /// `first`, then each following page, read as the stream is taken.
    pub fn pages(self, first: ExportPage) -> impl Stream<Item = Result<ExportPage, AppError>> {
        stream::unfold(Some(Ok(first)), move |next: Option<Result<ExportPage, AppError>>| {
            let scan = self.clone();
            async move {
                let page = next?;
                let following = match &page {
                    Ok(ExportPage { after: Some(code), .. }) => Some(scan.after(code.clone()).await),
                    _ => None,
                };
                Some((page, following))
            }
        })
    }
}
