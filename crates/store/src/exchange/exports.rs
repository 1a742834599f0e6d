//! The customer archive read for an export: its columns, and its customers a page at a
//! time in code order through the customer list, so that every filter of
//! `GET /customers` applies and each page is one keyset step.

use diesel::prelude::*;

use crate::db::schema::{attribute_definitions, schemes};
use crate::db::DbConnection;
use crate::domain::archive::{Field, Layout, Value};
use crate::error::AppError;

use crate::archive::customer_filters::Filters;
use crate::archive::customer_rows::CustomerView;
use crate::archive::customer_search::{self, After, ListQuery, Sort, SortKey};

/// One customer's cells, in the layout's column order; `None` for an empty cell.
pub type Record = Vec<Option<Value>>;

pub struct ExportPage {
    pub records: Vec<Record>,
    /// The last code of the page, when more follow.
    pub after: Option<String>,
}

/// Every scheme and every attribute key, by code and key.
pub fn layout(conn: &mut DbConnection) -> Result<Layout, AppError> {
    Ok(Layout {
        schemes: schemes::table.select(schemes::code).order(schemes::code).load(conn)?,
        attributes: attribute_definitions::table
            .select(attribute_definitions::attr_key)
            .distinct()
            .order(attribute_definitions::attr_key)
            .load(conn)?,
    })
}

/// Up to `limit` customers matching `filters` whose codes follow `after`.
pub fn page(
    conn: &mut DbConnection,
    layout: &Layout,
    filters: &Filters,
    after: Option<String>,
    limit: i64,
) -> Result<ExportPage, AppError> {
    let query = ListQuery {
        filters: filters.clone(),
        sort: Sort { key: SortKey::Code, descending: false },
        after: after.map(After::Code),
        limit,
    };
    let page = customer_search::list(conn, &query)?;
    let after = match page.next {
        Some(After::Code(code)) => Some(code),
        _ => None,
    };
    Ok(ExportPage { records: page.items.iter().map(|view| record(layout, view)).collect(), after })
}

/// A customer as the import reads it back: attribute values that come from a default
/// stay empty, so that re-importing the file changes nothing.
fn record(layout: &Layout, view: &CustomerView) -> Record {
    let row = &view.row;
    let text = |value: &Option<String>| value.clone().map(Value::Text);
    let mut record: Record = Field::ALL
        .iter()
        .map(|field| match field {
            Field::Code => Some(Value::Text(row.code.clone())),
            Field::Name => Some(Value::Text(row.name.clone())),
            Field::ShortName => text(&row.short_name),
            Field::TaxId => text(&row.tax_id),
            Field::ContactName => text(&row.contact_name),
            Field::Phone => text(&row.phone),
            Field::Email => text(&row.email),
            Field::Address => text(&row.address),
            Field::Status => Some(Value::Text(row.status.as_str().to_string())),
            Field::Note => text(&row.note),
        })
        .collect();
    for scheme in &layout.schemes {
        record.push(
            view.assignments
                .iter()
                .find(|assignment| &assignment.scheme == scheme)
                .map(|assignment| Value::Text(assignment.category.clone())),
        );
    }
    for key in &layout.attributes {
        record.push(
            view.attributes
                .get(key)
                .filter(|attribute| !attribute.from_default)
                .map(|attribute| Value::of_json(&attribute.value)),
        );
    }
    record
}
