//! The data-quality report (数据清理): what in the archive wants cleaning, each check
//! counted, with its first customers and the list query that gives all of them.

use diesel::prelude::*;

use crate::db::schema::{attribute_definitions, schemes};
use crate::db::sql::{Bind, Fragment};
use crate::db::DbConnection;
use crate::domain::customer::CustomerStatus;
use crate::domain::duplicates::DuplicateKey;
use crate::error::AppError;

use crate::archive::customer_filters::{CategoryFilter, Filters, Missing};
use crate::archive::customer_search::{self, After, ListQuery, Sort, SortKey};
use crate::archive::duplicates;
use crate::domain::category::CategoryCode;
use crate::reporting::counts;
use crate::reporting::counts::Count;
use crate::reporting::grouping::row_conditions;

/// Customer codes given with each check.
pub const FIRST_CODES: usize = 20;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Customers without a category in a scheme.
    Unclassified {
        scheme: String,
        required: bool,
    },
    /// Customers of a category whose definition requires a value, without one of their
    /// own and without a default to fall back on.
    MissingAttribute {
        scheme: String,
        category: String,
        attribute: String,
    },
    MissingTaxId,
    /// No order in the last `days` days.
    Dormant {
        days: i64,
    },
    /// Inactive customers that still hold a category.
    InactiveClassified,
    /// Groups of candidate duplicates sharing a key (`count` counts groups).
    Duplicates {
        key: DuplicateKey,
    },
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub check: Check,
    pub count: i64,
    /// The first customers, by code (for duplicates, of the largest groups).
    pub codes: Vec<String>,
}

impl Check {
    /// The filters of `GET /customers` that list these customers (none for duplicates).
    pub fn filters(&self) -> Option<Filters> {
        let mut filters = Filters::default();
        match self {
            Check::Unclassified { scheme, .. } => filters.unclassified.push(scheme.clone()),
            Check::MissingAttribute { scheme, category, attribute } => {
                let code = CategoryCode::parse("category", category).ok()?;
                filters.categories.push(CategoryFilter { scheme: scheme.clone(), code });
                filters.missing.push(Missing::Attribute(attribute.clone()));
            }
            Check::MissingTaxId => filters.missing.push(Missing::Field("tax_id")),
            Check::Dormant { days } => filters.dormant_days = Some(*days),
            Check::InactiveClassified => {
                filters.status = Some(CustomerStatus::Inactive);
                filters.classified = Some(true);
            }
            Check::Duplicates { .. } => return None,
        }
        Some(filters)
    }
}

/// Every check, unclassified customers of required schemes first.
pub fn report(conn: &mut DbConnection, dormant_days: i64) -> Result<Vec<Finding>, AppError> {
    let mut checks = Vec::new();
    let schemes: Vec<(String, bool)> = schemes::table
        .order((schemes::required.desc(), schemes::code))
        .select((schemes::code, schemes::required))
        .load(conn)?;
    checks.extend(schemes.into_iter().map(|(scheme, required)| Check::Unclassified { scheme, required }));
    let required: Vec<(String, String, String)> = attribute_definitions::table
        .inner_join(schemes::table)
        .filter(attribute_definitions::required.eq(true))
        .filter(attribute_definitions::default_value.is_null())
        .order((schemes::code, attribute_definitions::category_code, attribute_definitions::attr_key))
        .select((schemes::code, attribute_definitions::category_code, attribute_definitions::attr_key))
        .load(conn)?;
    checks.extend(required.into_iter().map(|(scheme, category, attribute)| Check::MissingAttribute {
        scheme,
        category,
        attribute,
    }));
    checks.extend([Check::MissingTaxId, Check::Dormant { days: dormant_days }, Check::InactiveClassified]);
    checks.extend(DuplicateKey::ALL.into_iter().map(|key| Check::Duplicates { key }));
    checks.into_iter().map(|check| find(conn, check)).collect()
}

fn find(conn: &mut DbConnection, check: Check) -> Result<Finding, AppError> {
    // A check that found nothing lists nothing: looking for its first customers would
    // read the whole archive in vain.
    if let Check::Duplicates { key } = check {
        let count = duplicates::group_count(conn, key)?;
        let mut codes: Vec<String> = Vec::new();
        let groups = if count == 0 {
            Vec::new()
        } else {
            duplicates::groups(conn, &[key], &Filters::default(), None, FIRST_CODES as i64)?
        };
        for group in groups {
            codes.extend(group.members.into_iter().map(|member| member.code));
            if codes.len() >= FIRST_CODES {
                break;
            }
        }
        codes.truncate(FIRST_CODES);
        return Ok(Finding { check, count, codes });
    }
    let filters = check.filters().ok_or_else(|| AppError::internal(format!("{check:?} has no list query")))?;
    let count = match &check {
        // The counters know how many customers each scheme classifies.
        Check::Unclassified { scheme, .. } => {
            let scheme = crate::catalogue::schemes::get(conn, scheme)?;
            let counted = counts::of_schemes(conn, scheme.id, None)?;
            counted.population - counted.first.values().sum::<i64>()
        }
        // Driven by the category's customers, not by the archive.
        Check::MissingAttribute { scheme, category, attribute } => {
            let scheme = crate::catalogue::schemes::get(conn, scheme)?;
            let mut sql =
                Fragment::new("SELECT COUNT(*) AS customers FROM customer_categories fc WHERE fc.scheme_id = ");
            sql.bind(Bind::BigInt(scheme.id))
                .push(" AND fc.category_code >= ")
                .bind(Bind::Text(category.clone()))
                .push(" AND fc.category_code < ")
                .bind(Bind::Text(crate::prefix_upper_bound(category)))
                .push(" AND NOT EXISTS (SELECT 1 FROM customer_attributes ma WHERE ma.customer_id = fc.customer_id AND ma.attr_key = ")
                .bind(Bind::Text(attribute.clone()))
                .push(")");
            sql.into_query().get_result::<Count>(conn)?.customers
        }
        _ => count(conn, &filters)?,
    };
    if count == 0 {
        return Ok(Finding { check, count, codes: Vec::new() });
    }
    let first = customer_search::list(
        conn,
        &ListQuery {
            filters,
            sort: Sort { key: SortKey::Code, descending: false },
            after: None::<After>,
            limit: FIRST_CODES as i64,
        },
    )?;
    Ok(Finding { check, count, codes: first.items.into_iter().map(|view| view.row.code).collect() })
}

/// How many customers pass `filters` (what `row_conditions` reads of their rows).
fn count(conn: &mut DbConnection, filters: &Filters) -> Result<i64, AppError> {
    let mut sql = Fragment::new("SELECT COUNT(*) AS customers FROM customers p WHERE 1 = 1");
    for condition in row_conditions(conn, filters)? {
        sql.push(" AND ").append(condition);
    }
    Ok(sql.into_query().get_result::<Count>(conn)?.customers)
}
