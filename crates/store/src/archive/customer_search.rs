//! The customer list: filters by category, attribute, text and status, sorted and
//! keyset-paged, planned so that the sparsest filter drives the page.

use diesel::prelude::*;

use crate::db::schema::{
    attribute_definitions, categories, category_members, customer_attributes, customer_categories, customers, schemes,
};
use crate::db::sql::{Bind, Fragment, Predicate};
use crate::db::{DbBackend, DbConnection};
use crate::domain::attribute::{parse_operand, AttributeValue, FilterOp, Operand, ValueType, LIKE_ESCAPE};
use crate::domain::category::ClassificationVector;
use crate::domain::rule::TextMatch;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::archive::customer_filters::{AttributeFilter, CategoryFilter, Filters, Missing};
use crate::archive::customer_rows::{views, CustomerRow, CustomerView};
use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::prefix_upper_bound;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Code,
    Name,
    CreatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// The last row of a page, in the terms of the sort; the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Code(String),
    Name(String, i64),
    CreatedAt(chrono::NaiveDateTime, i64),
}

impl After {
    fn of(row: &CustomerRow, key: SortKey) -> Self {
        match key {
            SortKey::Code => After::Code(row.code.clone()),
            SortKey::Name => After::Name(row.name.clone(), row.id),
            SortKey::CreatedAt => After::CreatedAt(row.created_at, row.id),
        }
    }
}

/// The filters on a customer's own row and sales (`missing`, `dormant_days`,
/// `classified`) and the caller's restriction, as SQL on the customer row `row` (a
/// table name or alias).
pub(crate) fn row_state_conditions(
    conn: &mut DbConnection,
    filters: &Filters,
    row: &str,
) -> Result<Vec<Fragment>, AppError> {
    let mut conditions = Vec::new();
    for missing in &filters.missing {
        match missing {
            Missing::Field(column) => conditions.push(Fragment::new(&format!("{row}.{column} IS NULL"))),
            Missing::Attribute(key) => {
                let defined: i64 = attribute_definitions::table
                    .filter(attribute_definitions::attr_key.eq(key))
                    .count()
                    .get_result(conn)?;
                if defined == 0 {
                    return Err(AppError::validation(
                        ErrorCode::AttributeNotFoundInRequest,
                        format!("no category defines attribute {key}"),
                        vec![FieldError::new("missing", format!("unknown attribute {key}"))],
                    ));
                }
                let mut condition = Fragment::new(&format!("NOT EXISTS (SELECT 1 FROM customer_attributes ma WHERE ma.customer_id = {row}.id AND ma.attr_key = "));
                condition.bind(Bind::Text(key.clone())).push(")");
                conditions.push(condition);
            }
        }
    }
    if let Some(days) = filters.dormant_days {
        let since = crate::db::now() - chrono::Duration::days(days);
        let mut condition = Fragment::new(&format!("{row}.created_at < "));
        condition
            .bind(Bind::Timestamp(since))
            .push(&format!(
                " AND NOT EXISTS (SELECT 1 FROM transactions dt WHERE dt.customer_id = {row}.id AND dt.occurred_at >= "
            ))
            .bind(Bind::Timestamp(since))
            .push(" AND dt.amount_cents > 0)");
        conditions.push(condition);
    }
    if let Some(classified) = filters.classified {
        let exists = format!("EXISTS (SELECT 1 FROM customer_categories cc WHERE cc.customer_id = {row}.id)");
        conditions.push(Fragment::new(&if classified { exists } else { format!("NOT {exists}") }));
    }
    if let Some(restriction) = &filters.restriction {
        conditions.push(crate::access::visibility::condition(restriction, &format!("{row}.id")));
    }
    Ok(conditions)
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filters: Filters,
    pub sort: Sort,
    pub after: Option<After>,
    pub limit: i64,
}

pub struct ListPage {
    pub items: Vec<CustomerView>,
    pub next: Option<After>,
}

diesel::define_sql_function! {
    /// SQL `lower()`, for case-insensitive search on both backends.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

diesel::define_sql_function! {
    #[sql_name = "lower"]
    fn lower_nullable(text: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

pub(crate) fn filter_scheme(conn: &mut DbConnection, code: &str, field: &str) -> Result<SchemeRow, AppError> {
    scheme_store::find(conn, code)?.ok_or_else(|| {
        AppError::validation(
            ErrorCode::SchemeNotFoundInRequest,
            format!("scheme {code} does not exist"),
            vec![FieldError::new(field, format!("no scheme {code}"))],
        )
    })
}

type CustomerQuery<'a> = customers::BoxedQuery<'a, DbBackend>;

/// A category filter resolved to its scheme.
pub(crate) struct Membership {
    pub(crate) scheme_id: i64,
    pub(crate) code: String,
}

impl Membership {
    /// What `classification_vector` holds for every customer in the subtree.
    fn needle(&self) -> String {
        ClassificationVector::subtree_needle(self.scheme_id, &self.code)
    }
}

diesel::define_sql_function! {
    /// SQL `instr()`: the 1-based position of `needle` in `haystack`, 0 if absent.
    fn instr(haystack: diesel::sql_types::Text, needle: diesel::sql_types::Text) -> diesel::sql_types::Integer;
}

pub(crate) fn resolve(conn: &mut DbConnection, filter: &CategoryFilter) -> Result<Membership, AppError> {
    let scheme_id: Option<i64> = categories::table
        .inner_join(schemes::table)
        .filter(schemes::code.eq(&filter.scheme))
        .filter(categories::code.eq(filter.code.as_str()))
        .select(schemes::id)
        .first(conn)
        .optional()?;
    match scheme_id {
        Some(scheme_id) => Ok(Membership { scheme_id, code: filter.code.as_str().to_string() }),
        None => {
            filter_scheme(conn, &filter.scheme, "category")?;
            Err(AppError::validation(
                ErrorCode::CategoryNotFoundInRequest,
                format!("category {} does not exist in scheme {}", filter.code, filter.scheme),
                vec![FieldError::new("category", format!("no category {} in scheme {}", filter.code, filter.scheme))],
            ))
        }
    }
}

/// An attribute filter with its operand typed by the key's definition.
#[derive(Debug)]
pub(crate) struct AttributeProbe {
    key: String,
    op: FilterOp,
    numeric: bool,
    /// `LIKE` with one pattern, or a comparison with one operand, or `IN` with several.
    pattern: bool,
    operands: Vec<BoundValue>,
}

#[derive(Debug)]
enum BoundValue {
    Number(f64),
    Text(String),
}

impl BoundValue {
    fn of(value: &AttributeValue) -> Self {
        match (value.number(), value.text()) {
            (Some(number), _) => BoundValue::Number(number),
            (None, text) => BoundValue::Text(text.unwrap_or_default()),
        }
    }
}

pub(crate) fn resolve_attribute(conn: &mut DbConnection, filter: &AttributeFilter) -> Result<AttributeProbe, AppError> {
    let field = |message: String| vec![FieldError::new("attr", message)];
    let value_type: Option<String> = attribute_definitions::table
        .filter(attribute_definitions::attr_key.eq(&filter.key))
        .select(attribute_definitions::value_type)
        .first(conn)
        .optional()?;
    let value_type = value_type.and_then(|t| ValueType::parse(&t)).ok_or_else(|| {
        AppError::validation(
            ErrorCode::AttributeNotFoundInRequest,
            format!("no category defines attribute {}", filter.key),
            field(format!("unknown attribute {}", filter.key)),
        )
    })?;
    let operand = parse_operand(value_type, filter.op, &filter.value).map_err(|message| {
        AppError::validation(ErrorCode::InvalidFilter, format!("attr {}: {message}", filter.key), field(message))
    })?;
    let (pattern, operands) = match operand {
        Operand::Pattern(pattern) => (true, vec![BoundValue::Text(pattern)]),
        Operand::One(value) => (false, vec![BoundValue::of(&value)]),
        Operand::Many(values) => (false, values.iter().map(BoundValue::of).collect()),
    };
    Ok(AttributeProbe { key: filter.key.clone(), op: filter.op, numeric: value_type.is_numeric(), pattern, operands })
}

impl AttributeProbe {
    /// The filter as SQL. With `id_column`, `EXISTS` a value of that customer that
    /// passes (a primary-key lookup); without, the test of the `customer_attributes`
    /// row a page is driven by. Values are compared in the column of the attribute's
    /// type. Only the operator comes from code; the key and every operand are bound.
    pub(crate) fn condition(&self, id_column: Option<&str>) -> Fragment {
        let value = if self.numeric { "value_number" } else { "value_text" };
        let mut sql = Fragment::default();
        let column = match id_column {
            Some(id_column) => {
                sql.push(&format!(
                    "EXISTS (SELECT 1 FROM customer_attributes a WHERE a.customer_id = {id_column} AND a.attr_key = "
                ));
                sql.bind(Bind::Text(self.key.clone())).push(" AND ");
                format!("a.{value}")
            }
            // Wrapped so that no index on the value is usable: the page is driven
            // in customer-code order by `(attr_key, customer_code, …)`, the value
            // tested on its entries.
            None => format!("COALESCE(customer_attributes.{value}, {})", if self.numeric { "0" } else { "''" }),
        };
        if self.pattern {
            sql.push(&format!("LOWER({column}) LIKE "));
        } else if self.op == FilterOp::In {
            sql.push(&format!("{column} IN "));
        } else {
            sql.push(&format!("{column} {} ", self.op.sql()));
        }
        sql.push("(");
        for (i, operand) in self.operands.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(match operand {
                BoundValue::Number(number) => Bind::Double(*number),
                BoundValue::Text(text) => Bind::Text(text.clone()),
            });
        }
        sql.push(")");
        if self.pattern {
            sql.push(&format!(" ESCAPE '{LIKE_ESCAPE}'"));
        }
        if id_column.is_some() {
            sql.push(")");
        }
        sql
    }
}

/// Members sampled per category to tell which of several filters is sparsest.
const SAMPLE: i64 = 64;
/// Above every customer code (`[A-Za-z0-9_.-]`): where a descending page starts.
const ABOVE_ALL_CODES: &str = "~";

/// A filter whose matches an index yields in customer-code order: a category's
/// members, or the customers whose value of an attribute passes a test.
enum Stream {
    Category(Membership),
    Attribute(std::sync::Arc<AttributeProbe>),
}

impl AttributeProbe {
    /// Equality with one operand: `(attr_key, value, customer_code)` yields its
    /// matches in code order. Any other test streams through
    /// `(attr_key, customer_code, value_number, value_text)`, tested on the entries.
    fn is_equality(&self) -> bool {
        self.op == FilterOp::Eq && !self.pattern && self.operands.len() == 1
    }
}

/// The `customer_attributes` rows of an attribute filter, as a boxed query of `$table`.
macro_rules! attribute_rows {
    ($sql:expr, $probe:expr) => {{
        let probe: &std::sync::Arc<AttributeProbe> = $probe;
        let sql = $sql.filter(customer_attributes::attr_key.eq(probe.key.clone()));
        match (probe.is_equality(), &probe.operands[0]) {
            (true, BoundValue::Number(number)) => sql.filter(customer_attributes::value_number.eq(*number)),
            (true, BoundValue::Text(text)) => sql.filter(customer_attributes::value_text.eq(text.clone())),
            (false, _) => sql.filter(Predicate(probe.condition(None))),
        }
    }};
}

/// Where the `SAMPLE`-th match of a stream lies after `after` in page order, or
/// `None` when fewer remain: the further it lies, the sparser the stream is there.
fn sample_reach(
    conn: &mut DbConnection,
    stream: &Stream,
    after: &str,
    descending: bool,
) -> Result<Option<String>, AppError> {
    let codes: Vec<String> = match stream {
        Stream::Category(membership) => crate::native!(conn, |native| {
            let base = category_members::table
                .filter(category_members::scheme_id.eq(membership.scheme_id))
                .filter(category_members::category_code.eq(&membership.code))
                .select(category_members::customer_code);
            if descending {
                base.filter(category_members::customer_code.lt(after))
                    .order(category_members::customer_code.desc())
                    .limit(SAMPLE)
                    .load(native)
            } else {
                base.filter(category_members::customer_code.gt(after))
                    .order(category_members::customer_code.asc())
                    .limit(SAMPLE)
                    .load(native)
            }
        })?,
        Stream::Attribute(probe) => {
            let sql = attribute_rows!(
                customer_attributes::table.select(customer_attributes::customer_code).into_boxed(),
                probe
            );
            let sql = if descending {
                sql.filter(customer_attributes::customer_code.lt(after.to_string()))
                    .order(customer_attributes::customer_code.desc())
            } else {
                sql.filter(customer_attributes::customer_code.gt(after.to_string()))
                    .order(customer_attributes::customer_code.asc())
            };
            sql.limit(SAMPLE).load(conn)?
        }
    };
    Ok(if (codes.len() as i64) < SAMPLE { None } else { codes.last().cloned() })
}

/// The index of the sparsest stream: it drives the page, the other filters are probes.
fn sparsest(conn: &mut DbConnection, streams: &[Stream], after: &str, descending: bool) -> Result<usize, AppError> {
    if streams.len() < 2 {
        return Ok(0);
    }
    let mut best: Option<(usize, Option<String>)> = None;
    for (index, stream) in streams.iter().enumerate() {
        let reach = sample_reach(conn, stream, after, descending)?;
        let further = match (&best, &reach) {
            (None, _) => true,
            (Some((_, None)), _) => false,
            (Some((_, Some(_))), None) => true,
            (Some((_, Some(current))), Some(candidate)) => (candidate > current) != descending,
        };
        if further {
            best = Some((index, reach));
        }
        if matches!(best, Some((_, None))) {
            break;
        }
    }
    Ok(best.map_or(0, |(index, _)| index))
}

/// The filters every list applies, for either query shape below. `$id` is the
/// customer id of the driving index, so that probes run before a customer row is read.
macro_rules! filter_customers {
    ($sql:ident, $id:expr, $id_sql:expr, $memberships:expr, $unclassified:expr, $attributes:expr, $row_state:expr, $query:expr) => {{
        for condition in $row_state {
            $sql = $sql.filter(Predicate(condition.clone()));
        }
        for probe in $attributes {
            $sql = $sql.filter(Predicate(probe.condition(Some($id_sql))));
        }
        for membership in $memberships {
            let upper = prefix_upper_bound(&membership.code);
            $sql = $sql.filter(diesel::dsl::exists(
                customer_categories::table
                    .filter(customer_categories::customer_id.eq($id))
                    .filter(customer_categories::scheme_id.eq(membership.scheme_id))
                    .filter(customer_categories::category_code.ge(membership.code))
                    .filter(customer_categories::category_code.lt(upper)),
            ));
        }
        for scheme_id in $unclassified {
            $sql = $sql.filter(diesel::dsl::not(diesel::dsl::exists(
                customer_categories::table
                    .filter(customer_categories::customer_id.eq($id))
                    .filter(customer_categories::scheme_id.eq(scheme_id)),
            )));
        }
        if let Some(text) = &$query.filters.text {
            let pattern = TextMatch::Anywhere.like_pattern(text, '\\');
            $sql = $sql.filter(
                lower(customers::code)
                    .like(pattern.clone())
                    .escape('\\')
                    .or(lower(customers::name).like(pattern.clone()).escape('\\'))
                    .or(lower_nullable(customers::short_name).like(pattern).escape('\\').assume_not_null()),
            );
        }
        if let Some(status) = $query.filters.status {
            $sql = $sql.filter(customers::status.eq(status.as_str()));
        }
    }};
}

/// One page of customers. Sorted by code, the sparsest stream (by a small sample of
/// each) drives the page: a category through `category_members`, where a subtree is
/// one equality whose index is ordered by customer code and carries the customer's
/// classification vector, on which the other categories are tested; or an attribute
/// equality through its value index. Otherwise the sort's index drives. Remaining
/// filters are primary-key probes (the customer's assignment in a scheme, its value
/// of an attribute). Either way a page is a keyset range, so page 10,000 costs what
/// page 1 costs.
pub fn list(conn: &mut DbConnection, query: &ListQuery) -> Result<ListPage, AppError> {
    let mut memberships =
        query.filters.categories.iter().map(|filter| resolve(conn, filter)).collect::<Result<Vec<_>, _>>()?;
    let mut unclassified = Vec::new();
    for scheme_code in &query.filters.unclassified {
        unclassified.push(filter_scheme(conn, scheme_code, "unclassified")?.id);
    }
    let probes = query
        .filters
        .attributes
        .iter()
        .map(|filter| resolve_attribute(conn, filter).map(std::sync::Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let row_state = row_state_conditions(conn, &query.filters, "customers")?;
    let only_categories = query.filters.text.is_none()
        && query.filters.status.is_none()
        && unclassified.is_empty()
        && probes.is_empty()
        && row_state.is_empty();
    let streaming = !memberships.is_empty() || !probes.is_empty();
    let mut rows: Vec<CustomerRow> = if query.sort.key == SortKey::Code && streaming {
        let descending = query.sort.descending;
        let after = match &query.after {
            Some(After::Code(code)) => code.clone(),
            _ if descending => ABOVE_ALL_CODES.to_string(),
            _ => String::new(),
        };
        // Categories and attribute equalities compete to drive the page. Another
        // attribute test drives only without a category: its stream has to test
        // every entry it passes, where a category's members are all matches.
        let with_categories = !memberships.is_empty();
        let mut streams: Vec<Stream> = memberships.drain(..).map(Stream::Category).collect();
        streams.extend(
            probes.iter().filter(|probe| probe.is_equality() || !with_categories).cloned().map(Stream::Attribute),
        );
        let driver = streams.remove(sparsest(conn, &streams, &after, descending)?);
        let mut probes = probes;
        for stream in streams {
            match stream {
                Stream::Category(membership) => memberships.push(membership),
                Stream::Attribute(_) => {}
            }
        }
        match driver {
            Stream::Category(driver) if only_categories && memberships.len() <= 1 => {
                // The commonest shapes get a statement that stays prepared.
                let probe =
                    memberships.pop().unwrap_or(Membership { scheme_id: driver.scheme_id, code: driver.code.clone() });
                page_of_two(conn, &driver, &probe, &after, descending, query.limit + 1)?
            }
            Stream::Category(driver) => {
                let mut sql = category_members::table
                    .inner_join(customers::table)
                    .filter(category_members::scheme_id.eq(driver.scheme_id))
                    .filter(category_members::category_code.eq(driver.code))
                    .into_boxed();
                // The other categories are tested on the driver's index entries.
                for membership in &memberships {
                    sql = sql.filter(instr(category_members::classification_vector, membership.needle()).gt(0));
                }
                filter_customers!(
                    sql,
                    category_members::customer_id,
                    "category_members.customer_id",
                    Vec::<Membership>::new(),
                    unclassified,
                    &probes,
                    &row_state,
                    query
                );
                let sql = if descending {
                    sql.filter(category_members::customer_code.lt(after)).order(category_members::customer_code.desc())
                } else {
                    sql.filter(category_members::customer_code.gt(after)).order(category_members::customer_code.asc())
                };
                sql.select(CustomerRow::as_select()).limit(query.limit + 1).load(conn)?
            }
            Stream::Attribute(driver) => {
                probes.retain(|probe| !std::sync::Arc::ptr_eq(probe, &driver));
                let mut sql =
                    attribute_rows!(customer_attributes::table.inner_join(customers::table).into_boxed(), &driver);
                filter_customers!(
                    sql,
                    customer_attributes::customer_id,
                    "customer_attributes.customer_id",
                    memberships,
                    unclassified,
                    &probes,
                    &row_state,
                    query
                );
                let sql = if descending {
                    sql.filter(customer_attributes::customer_code.lt(after))
                        .order(customer_attributes::customer_code.desc())
                } else {
                    sql.filter(customer_attributes::customer_code.gt(after))
                        .order(customer_attributes::customer_code.asc())
                };
                sql.select(CustomerRow::as_select()).limit(query.limit + 1).load(conn)?
            }
        }
    } else if query.sort.key == SortKey::Code && only_categories {
        let descending = query.sort.descending;
        let after = match &query.after {
            Some(After::Code(code)) => code.clone(),
            _ if descending => ABOVE_ALL_CODES.to_string(),
            _ => String::new(),
        };
        crate::native!(conn, |native| {
            let base = customers::table.select(CustomerRow::as_select()).limit(query.limit + 1);
            if descending {
                base.filter(customers::code.lt(&after)).order(customers::code.desc()).load(native)
            } else {
                base.filter(customers::code.gt(&after)).order(customers::code.asc()).load(native)
            }
        })?
    } else {
        let mut sql: CustomerQuery = customers::table.into_boxed();
        filter_customers!(sql, customers::id, "customers.id", memberships, unclassified, &probes, &row_state, query);
        // Ids first: the sort's index holds the id, so customers the probes turn
        // down are never read; then only the page's rows.
        let ids: Vec<i64> =
            keyset(sql, query.sort, query.after.clone()).select(customers::id).limit(query.limit + 1).load(conn)?;
        rows_in_order(conn, &ids)?
    };
    let next = if rows.len() as i64 > query.limit {
        rows.truncate(query.limit as usize);
        rows.last().map(|row| After::of(row, query.sort.key))
    } else {
        None
    };
    Ok(ListPage { items: views(rows)?, next })
}

/// Customers of `driver` that are also in `probe`, a page after `after`, as one
/// unboxed statement (so it stays prepared): the driver's members index gives the
/// order, and its entries carry the classification vector the probe is tested on.
fn page_of_two(
    conn: &mut DbConnection,
    driver: &Membership,
    probe: &Membership,
    after: &str,
    descending: bool,
    limit: i64,
) -> Result<Vec<CustomerRow>, AppError> {
    let needle = probe.needle();
    Ok(crate::native!(conn, |native| {
        let base = category_members::table
            .inner_join(customers::table)
            .filter(category_members::scheme_id.eq(driver.scheme_id))
            .filter(category_members::category_code.eq(&driver.code))
            .filter(instr(category_members::classification_vector, &needle).gt(0))
            .select(CustomerRow::as_select())
            .limit(limit);
        if descending {
            base.filter(category_members::customer_code.lt(after))
                .order(category_members::customer_code.desc())
                .load(native)
        } else {
            base.filter(category_members::customer_code.gt(after))
                .order(category_members::customer_code.asc())
                .load(native)
        }
    })?)
}

/// The customers with these ids, in the order of `ids`.
fn rows_in_order(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<CustomerRow>, AppError> {
    let mut rows: Vec<CustomerRow> =
        customers::table.filter(customers::id.eq_any(ids)).select(CustomerRow::as_select()).load(conn)?;
    let position: std::collections::HashMap<i64, usize> =
        ids.iter().enumerate().map(|(index, id)| (*id, index)).collect();
    rows.sort_by_key(|row| position.get(&row.id).copied().unwrap_or(usize::MAX));
    Ok(rows)
}

fn keyset(sql: CustomerQuery<'static>, sort: Sort, after: Option<After>) -> CustomerQuery<'static> {
    use customers::{code, created_at, id, name};
    match (sort.key, sort.descending) {
        (SortKey::Code, false) => {
            let sql = sql.order(code.asc());
            match after {
                Some(After::Code(last)) => sql.filter(code.gt(last)),
                _ => sql,
            }
        }
        (SortKey::Code, true) => {
            let sql = sql.order(code.desc());
            match after {
                Some(After::Code(last)) => sql.filter(code.lt(last)),
                _ => sql,
            }
        }
        (SortKey::Name, false) => {
            let sql = sql.order((name.asc(), id.asc()));
            match after {
                Some(After::Name(last, last_id)) => {
                    sql.filter(name.gt(last.clone()).or(name.eq(last).and(id.gt(last_id))))
                }
                _ => sql,
            }
        }
        (SortKey::Name, true) => {
            let sql = sql.order((name.desc(), id.desc()));
            match after {
                Some(After::Name(last, last_id)) => {
                    sql.filter(name.lt(last.clone()).or(name.eq(last).and(id.lt(last_id))))
                }
                _ => sql,
            }
        }
        (SortKey::CreatedAt, false) => {
            let sql = sql.order((created_at.asc(), id.asc()));
            match after {
                Some(After::CreatedAt(last, last_id)) => {
                    sql.filter(created_at.gt(last).or(created_at.eq(last).and(id.gt(last_id))))
                }
                _ => sql,
            }
        }
        (SortKey::CreatedAt, true) => {
            let sql = sql.order((created_at.desc(), id.desc()));
            match after {
                Some(After::CreatedAt(last, last_id)) => {
                    sql.filter(created_at.lt(last).or(created_at.eq(last).and(id.lt(last_id))))
                }
                _ => sql,
            }
        }
    }
}
