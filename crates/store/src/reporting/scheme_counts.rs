//! The customers of a scheme's categories from the counters, as they stand or
//! rewound to a past day by the moves made since: what the distribution report and
//! the as-of reports start from.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::sql::{Bind, Fragment};
use crate::db::DbConnection;
use crate::domain::report::Tally;
use crate::error::AppError;

use crate::catalogue::schemes::SchemeRow;
use crate::reporting::counts::{self, Count};

/// The categories of a customer on the report's axes (`None`: unclassified there).
pub type CellKey = (Option<String>, Option<String>);

/// `''` stands for "no category" inside journeys, where `NULL` would vanish in `MAX`.
pub(crate) fn category_or_none(code: String) -> Option<String> {
    Some(code).filter(|code| !code.is_empty())
}

/// The counts of a scheme from the counters and, as of `at`, rewound by the moves
/// made since: `moved` holds how many customers went from each category before their
/// first move since to the one after their last (`''`: none), deleted ones included.
pub(crate) fn rewound(
    conn: &mut DbConnection,
    scheme: &SchemeRow,
    at: Option<NaiveDateTime>,
    moved: &HashMap<(String, String), i64>,
) -> Result<HashMap<CellKey, Tally>, AppError> {
    let counted = counts::of_schemes(conn, scheme.id, None)?;
    let (mut by_category, mut population) = (counted.first, counted.population);
    if let Some(at) = at {
        for ((then, now), customers) in moved {
            if let Some(now) = category_or_none(now.clone()) {
                *by_category.entry(now).or_default() -= customers;
            }
            if let Some(then) = category_or_none(then.clone()) {
                *by_category.entry(then).or_default() += customers;
            }
        }
        let mut born_since = Fragment::new("SELECT COUNT(*) AS customers FROM customers WHERE created_at >= ");
        born_since.bind(Bind::Timestamp(at));
        let mut gone_since = Fragment::new("SELECT COUNT(*) AS customers FROM deleted_customers WHERE created_at < ");
        gone_since.bind(Bind::Timestamp(at)).push(" AND deleted_at >= ").bind(Bind::Timestamp(at));
        population += gone_since.into_query().get_result::<Count>(conn)?.customers
            - born_since.into_query().get_result::<Count>(conn)?.customers;
    }
    let classified: i64 = by_category.values().sum();
    let mut cells: HashMap<CellKey, Tally> = by_category
        .into_iter()
        .filter(|(_, customers)| *customers != 0)
        .map(|(code, customers)| ((Some(code), None), Tally { customers, sums: Vec::new() }))
        .collect();
    cells.insert((None, None), Tally { customers: population - classified, sums: Vec::new() });
    Ok(cells)
}
