//! Classification rules of a scheme: a target category and a condition tree.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use serde_json::Value as Json;

use crate::db::schema::{attribute_definitions, categories, rules, schemes};
use crate::db::{now, transaction, DbConnection};
use crate::domain::attribute::ValueType;
use crate::domain::category::CategoryCode;
use crate::domain::rule::{self, Catalog, Condition, Population};
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::catalogue::schemes::{self as scheme_store, SchemeRow};
use crate::classification::assignments::assignable_category;
use crate::{lock_current, lock_row, LockableTable};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rules)]
pub struct RuleRow {
    pub id: i64,
    pub scheme_id: i64,
    pub name: String,
    pub target_category: String,
    pub priority: i32,
    pub enabled: bool,
    pub rule_condition: String,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    /// `SCHEME:CODE`: the subtree the rule's relative fields rank within.
    pub population: Option<String>,
}

pub struct RuleView {
    pub scheme: String,
    pub row: RuleRow,
    pub condition: Json,
}

fn view(scheme: &SchemeRow, row: RuleRow) -> Result<RuleView, AppError> {
    let condition = serde_json::from_str(&row.rule_condition).map_err(|_| corrupt_condition(&row))?;
    Ok(RuleView { scheme: scheme.code.clone(), row, condition })
}

fn corrupt_condition(row: &RuleRow) -> AppError {
    AppError::corrupt(format!("rule {} has a condition that is not JSON", row.id))
}

#[derive(Debug, Clone)]
pub struct NewRule {
    pub name: String,
    pub target_category: CategoryCode,
    pub priority: i32,
    pub enabled: bool,
    pub condition: Json,
    /// `SCHEME:CODE`, checked against the categories when saved.
    pub population: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleChanges {
    pub name: Option<String>,
    pub target_category: Option<CategoryCode>,
    pub priority: Option<i32>,
    pub enabled: Option<bool>,
    pub condition: Option<Json>,
    /// `Some(None)` ranks among every active customer again.
    pub population: Option<Option<String>>,
}

/// The attribute types and category codes conditions may name, read once.
pub struct StoredCatalog {
    attributes: HashMap<String, ValueType>,
    categories: HashMap<String, HashSet<String>>,
}

impl Catalog for StoredCatalog {
    fn attribute_type(&self, key: &str) -> Option<ValueType> {
        self.attributes.get(key).copied()
    }

    fn category_exists(&self, scheme: &str, code: &str) -> Option<bool> {
        self.categories.get(scheme).map(|codes| code.is_empty() || codes.contains(code))
    }
}

pub fn catalog(conn: &mut DbConnection) -> Result<StoredCatalog, AppError> {
    let attributes = attribute_definitions::table
        .select((attribute_definitions::attr_key, attribute_definitions::value_type))
        .load::<(String, String)>(conn)?
        .into_iter()
        .filter_map(|(key, value_type)| ValueType::parse(&value_type).map(|t| (key, t)))
        .collect();
    let mut categories: HashMap<String, HashSet<String>> = schemes::table
        .select(schemes::code)
        .load::<String>(conn)?
        .into_iter()
        .map(|code| (code, HashSet::new()))
        .collect();
    for (scheme, code) in categories::table
        .inner_join(schemes::table)
        .select((schemes::code, categories::code))
        .load::<(String, String)>(conn)?
    {
        categories.entry(scheme).or_default().insert(code);
    }
    Ok(StoredCatalog { attributes, categories })
}

fn check_condition(catalog: &StoredCatalog, json: &Json) -> Result<Condition, AppError> {
    rule::parse(json, "/condition", catalog).map_err(invalid_condition)
}

/// A population must name an existing category: `SCHEME:CODE`.
fn check_population(catalog: &StoredCatalog, text: &str) -> Result<(), AppError> {
    Population::parse(text, catalog).map(|_| ()).map_err(|why| {
        AppError::validation(
            ErrorCode::InvalidPopulation,
            format!("/population/category: {why}"),
            vec![FieldError::new("/population/category", why)],
        )
    })
}

fn invalid_condition(errors: Vec<FieldError>) -> AppError {
    let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
    AppError::validation(ErrorCode::InvalidCondition, detail, errors)
}

/// A run evaluates a scheme's enabled rules in one statement, so together they may
/// bind at most `MAX_SCHEME_PARAMETERS`. The caller holds the scheme's lock, so two
/// saves cannot both fit in what is left.
fn check_scheme_parameters(
    conn: &mut DbConnection,
    catalog: &StoredCatalog,
    scheme: &SchemeRow,
    rule_id: Option<i64>,
    condition: &Condition,
) -> Result<(), AppError> {
    let others: Vec<String> = rules::table
        .filter(rules::scheme_id.eq(scheme.id))
        .filter(rules::enabled.eq(true))
        .filter(rules::id.ne(rule_id.unwrap_or(0)))
        .select(rules::rule_condition)
        .load(conn)?;
    let taken: usize = others
        .iter()
        .filter_map(|text| serde_json::from_str::<Json>(text).ok())
        .filter_map(|json| rule::parse(&json, "/condition", catalog).ok())
        .map(|other| other.parameters())
        .sum();
    let needed = condition.parameters();
    if taken + needed > rule::MAX_SCHEME_PARAMETERS {
        return Err(invalid_condition(vec![FieldError::new(
            "/condition",
            format!(
                "the enabled rules of scheme {} bind up to {taken} values and this condition {needed}; together they may bind {}: shorten it, or disable another rule",
                scheme.code,
                rule::MAX_SCHEME_PARAMETERS
            ),
        )]));
    }
    Ok(())
}

pub fn rule_not_found(scheme: &str, id: i64) -> AppError {
    AppError::new(ErrorCode::RuleNotFound, format!("scheme {scheme} has no rule {id}"))
}

fn find(conn: &mut DbConnection, scheme: &SchemeRow, id: i64) -> Result<RuleRow, AppError> {
    rules::table
        .filter(rules::scheme_id.eq(scheme.id))
        .filter(rules::id.eq(id))
        .select(RuleRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| rule_not_found(&scheme.code, id))
}

/// A scheme's rules in the order runs try them: by priority, then by id.
pub fn list(conn: &mut DbConnection, scheme_code: &str) -> Result<Vec<RuleView>, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let rows = rules::table
        .filter(rules::scheme_id.eq(scheme.id))
        .order((rules::priority, rules::id))
        .select(RuleRow::as_select())
        .load(conn)?;
    rows.into_iter().map(|row| view(&scheme, row)).collect()
}

pub fn get(conn: &mut DbConnection, scheme_code: &str, id: i64) -> Result<RuleView, AppError> {
    let scheme = scheme_store::get(conn, scheme_code)?;
    let row = find(conn, &scheme, id)?;
    view(&scheme, row)
}

pub fn create(conn: &mut DbConnection, scheme_code: &str, new: &NewRule) -> Result<RuleView, AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        lock_row(conn, LockableTable::Schemes, scheme.id)?;
        assignable_category(conn, &scheme, new.target_category.as_str(), "target_category")?;
        let catalog = catalog(conn)?;
        let condition = check_condition(&catalog, &new.condition)?;
        if let Some(population) = &new.population {
            check_population(&catalog, population)?;
        }
        if new.enabled {
            check_scheme_parameters(conn, &catalog, &scheme, None, &condition)?;
        }
        let at = now();
        diesel::insert_into(rules::table)
            .values((
                rules::scheme_id.eq(scheme.id),
                rules::name.eq(&new.name),
                rules::target_category.eq(new.target_category.as_str()),
                rules::priority.eq(new.priority),
                rules::enabled.eq(new.enabled),
                rules::rule_condition.eq(new.condition.to_string()),
                rules::population.eq(&new.population),
                rules::version.eq(1i64),
                rules::created_at.eq(at),
                rules::updated_at.eq(at),
            ))
            .execute(conn)?;
        let row = rules::table
            .filter(rules::scheme_id.eq(scheme.id))
            .order(rules::id.desc())
            .select(RuleRow::as_select())
            .first(conn)?;
        view(&scheme, row)
    })
}

pub fn update(
    conn: &mut DbConnection,
    scheme_code: &str,
    id: i64,
    changes: &RuleChanges,
    expected: Option<i64>,
) -> Result<RuleView, AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        lock_row(conn, LockableTable::Schemes, scheme.id)?;
        let current = lock_current(conn, LockableTable::Rules, expected, |conn| find(conn, &scheme, id))?;
        let target =
            changes.target_category.as_ref().map(|c| c.as_str().to_string()).unwrap_or(current.target_category.clone());
        if changes.target_category.is_some() {
            assignable_category(conn, &scheme, &target, "target_category")?;
        }
        let enabling = changes.enabled == Some(true) && !current.enabled;
        let condition = match &changes.condition {
            Some(condition) => condition.clone(),
            None => serde_json::from_str(&current.rule_condition).map_err(|_| corrupt_condition(&current))?,
        };
        if changes.condition.is_some() || enabling {
            let catalog = catalog(conn)?;
            let parsed = check_condition(&catalog, &condition)?;
            if changes.enabled.unwrap_or(current.enabled) {
                check_scheme_parameters(conn, &catalog, &scheme, Some(id), &parsed)?;
            }
        }
        let population = changes.population.clone().unwrap_or(current.population.clone());
        if let Some(Some(text)) = &changes.population {
            check_population(&catalog(conn)?, text)?;
        }
        let condition = condition.to_string();
        let updated = diesel::update(rules::table.filter(rules::id.eq(id)).filter(rules::version.eq(current.version)))
            .set((
                rules::name.eq(changes.name.as_ref().unwrap_or(&current.name)),
                rules::target_category.eq(&target),
                rules::priority.eq(changes.priority.unwrap_or(current.priority)),
                rules::enabled.eq(changes.enabled.unwrap_or(current.enabled)),
                rules::rule_condition.eq(condition),
                rules::population.eq(population),
                rules::version.eq(current.version + 1),
                rules::updated_at.eq(now()),
            ))
            .execute(conn)?;
        if updated == 0 {
            return Err(AppError::concurrent_update());
        }
        let row = find(conn, &scheme, id)?;
        view(&scheme, row)
    })
}

pub fn delete(conn: &mut DbConnection, scheme_code: &str, id: i64, expected: Option<i64>) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let scheme = scheme_store::get(conn, scheme_code)?;
        lock_current(conn, LockableTable::Rules, expected, |conn| find(conn, &scheme, id))?;
        diesel::delete(rules::table.filter(rules::id.eq(id))).execute(conn)?;
        Ok(())
    })
}

/// An enabled rule with its condition and population, checked again against what exists now.
pub struct ActiveRule {
    pub row: RuleRow,
    pub condition: Condition,
    pub population: Option<Population>,
}

/// The scheme's enabled rules by priority. A rule whose condition or target no
/// longer holds (an attribute or category deleted since) stops the run with 409.
pub fn enabled(conn: &mut DbConnection, scheme: &SchemeRow) -> Result<Vec<ActiveRule>, AppError> {
    let rows: Vec<RuleRow> = rules::table
        .filter(rules::scheme_id.eq(scheme.id))
        .filter(rules::enabled.eq(true))
        .order((rules::priority, rules::id))
        .select(RuleRow::as_select())
        .load(conn)?;
    let catalog = catalog(conn)?;
    let active: Vec<ActiveRule> = rows
        .into_iter()
        .map(|row| {
            let stale = |why: String| {
                AppError::new(
                    ErrorCode::RuleInvalid,
                    format!("rule {} ({}) {why}; fix or disable it", row.id, row.name),
                )
            };
            let json: Json =
                serde_json::from_str(&row.rule_condition).map_err(|_| stale("has a corrupt condition".into()))?;
            let condition = rule::parse(&json, "/condition", &catalog).map_err(|errors| {
                stale(format!(
                    "no longer fits: {}",
                    errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
                ))
            })?;
            if assignable_category(conn, scheme, &row.target_category, "target_category").is_err() {
                return Err(stale(format!("targets {}, which is no longer an active leaf", row.target_category)));
            }
            let population = match &row.population {
                Some(text) => Some(
                    Population::parse(text, &catalog)
                        .map_err(|why| stale(format!("ranks among population {text}: {why}")))?,
                ),
                None => None,
            };
            Ok(ActiveRule { row, condition, population })
        })
        .collect::<Result<_, AppError>>()?;
    let parameters: usize = active.iter().map(|rule| rule.condition.parameters()).sum();
    if parameters > rule::MAX_SCHEME_PARAMETERS {
        return Err(AppError::new(
            ErrorCode::RuleInvalid,
            format!("the enabled rules of scheme {} bind up to {parameters} values, more than one run takes ({}); disable or shorten some", scheme.code, rule::MAX_SCHEME_PARAMETERS),
        ));
    }
    Ok(active)
}
