use diesel::prelude::*;
use serde_json::json;

use crate::db::schema::{categories, schemes, tier_holds};
use crate::db::{now, transaction, DbConnection};
use crate::domain::category::CategoryCode;
use crate::domain::code_rule::CodeRule;
use crate::domain::event::EventType;
use crate::domain::schedule::Schedule;
use crate::domain::scheme::SchemeCode;
use crate::domain::tier_policy::TierPolicy;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

use crate::feed::events;
use crate::{lock_current, LockableTable};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = schemes)]
pub struct SchemeRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    #[diesel(deserialize_as = String)]
    pub code_rule: CodeRule,
    pub required: bool,
    pub default_category: Option<String>,
    pub auto_classify: bool,
    pub active: bool,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    /// Its categories have ranks, and moves between them go up or down.
    pub ordered: bool,
    /// When it starts runs by itself (JSON of a `ScheduleSpec`).
    pub schedule: Option<String>,
    /// Its schedule's next firing (UTC).
    pub schedule_next_at: Option<chrono::NaiveDateTime>,
    /// Its hold rules against flapping (JSON of a `TierPolicy`); ordered schemes only.
    pub tier_policy: Option<String>,
}

impl SchemeRow {
    pub fn schedule(&self) -> Result<Option<Schedule>, AppError> {
        self.schedule
            .as_deref()
            .map(|text| {
                Schedule::stored(text)
                    .ok_or_else(|| AppError::corrupt(format!("scheme {} holds an unreadable schedule", self.code)))
            })
            .transpose()
    }

    pub fn tier_policy(&self) -> Result<Option<TierPolicy>, AppError> {
        self.tier_policy
            .as_deref()
            .map(|text| {
                TierPolicy::stored(text)
                    .ok_or_else(|| AppError::corrupt(format!("scheme {} holds an unreadable tier policy", self.code)))
            })
            .transpose()
    }
}

/// A scheme with the number of categories it holds.
#[derive(Debug, Clone)]
pub struct SchemeView {
    pub row: SchemeRow,
    pub category_count: i64,
}

pub struct NewScheme {
    pub code: SchemeCode,
    pub name: String,
    pub description: Option<String>,
    pub code_rule: CodeRule,
    pub required: bool,
    pub auto_classify: bool,
    pub active: bool,
    pub ordered: bool,
    pub schedule: Option<Schedule>,
    pub tier_policy: Option<TierPolicy>,
}

/// A partial update; `None` leaves a field alone, `Some(None)` clears a nullable one.
#[derive(Default)]
pub struct SchemeChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub code_rule: Option<CodeRule>,
    pub required: Option<bool>,
    pub default_category: Option<Option<CategoryCode>>,
    pub auto_classify: Option<bool>,
    pub active: Option<bool>,
    pub ordered: Option<bool>,
    pub schedule: Option<Option<Schedule>>,
    pub tier_policy: Option<Option<TierPolicy>>,
}

/// Only an ordered scheme's runs move customers up and down, so only it takes a tier policy.
fn ensure_policy_allowed(code: &str, ordered: bool, policy: Option<&TierPolicy>) -> Result<(), AppError> {
    match policy {
        Some(_) if !ordered => Err(AppError::validation(
            ErrorCode::SchemeNotOrdered,
            format!("scheme {code} is not ordered, so its runs move nobody down and a tier policy would hold nothing; make it ordered with the policy"),
            vec![FieldError::new("tier_policy", "only an ordered scheme takes a tier policy")],
        )),
        _ => Ok(()),
    }
}

fn policy_column(policy: Option<&TierPolicy>) -> Option<String> {
    policy.map(|policy| serde_json::to_string(policy).expect("a tier policy serialises"))
}

/// A schedule's stored form and its next firing after `at`.
fn schedule_columns(
    schedule: Option<&Schedule>,
    at: chrono::NaiveDateTime,
) -> (Option<String>, Option<chrono::NaiveDateTime>) {
    match schedule {
        Some(schedule) => {
            (Some(serde_json::to_string(schedule.spec()).expect("a schedule serialises")), schedule.next_after(at))
        }
        None => (None, None),
    }
}

pub fn scheme_not_found(code: &str) -> AppError {
    AppError::new(ErrorCode::SchemeNotFound, format!("scheme {code} does not exist"))
}

pub fn find(conn: &mut DbConnection, code: &str) -> Result<Option<SchemeRow>, AppError> {
    Ok(schemes::table.filter(schemes::code.eq(code)).select(SchemeRow::as_select()).first(conn).optional()?)
}

pub fn get(conn: &mut DbConnection, code: &str) -> Result<SchemeRow, AppError> {
    find(conn, code)?.ok_or_else(|| scheme_not_found(code))
}

fn category_count(conn: &mut DbConnection, scheme_id: i64) -> Result<i64, AppError> {
    Ok(categories::table.filter(categories::scheme_id.eq(scheme_id)).count().get_result(conn)?)
}

pub fn view(conn: &mut DbConnection, code: &str) -> Result<SchemeView, AppError> {
    let row = get(conn, code)?;
    let category_count = category_count(conn, row.id)?;
    Ok(SchemeView { row, category_count })
}

/// Active schemes that re-classify customers as their transactions arrive, by code.
pub fn auto_classified(conn: &mut DbConnection) -> Result<Vec<SchemeRow>, AppError> {
    Ok(schemes::table
        .filter(schemes::auto_classify.eq(true))
        .filter(schemes::active.eq(true))
        .order(schemes::code)
        .select(SchemeRow::as_select())
        .load(conn)?)
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<SchemeView>, AppError> {
    let rows = schemes::table.order(schemes::code.asc()).select(SchemeRow::as_select()).load(conn)?;
    let counts: std::collections::HashMap<i64, i64> = categories::table
        .group_by(categories::scheme_id)
        .select((categories::scheme_id, diesel::dsl::count_star()))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| SchemeView { category_count: counts.get(&row.id).copied().unwrap_or(0), row })
        .collect())
}

pub fn create(conn: &mut DbConnection, new: NewScheme) -> Result<SchemeView, AppError> {
    transaction(conn, |conn| {
        if find(conn, new.code.as_str())?.is_some() {
            return Err(duplicate_scheme(new.code.as_str()));
        }
        ensure_policy_allowed(new.code.as_str(), new.ordered, new.tier_policy.as_ref())?;
        let at = now();
        let (schedule, schedule_next_at) = schedule_columns(new.schedule.as_ref(), at);
        diesel::insert_into(schemes::table)
            .values((
                schemes::code.eq(new.code.as_str()),
                schemes::name.eq(&new.name),
                schemes::description.eq(&new.description),
                schemes::code_rule.eq(new.code_rule.to_string()),
                schemes::required.eq(new.required),
                schemes::auto_classify.eq(new.auto_classify),
                schemes::active.eq(new.active),
                schemes::ordered.eq(new.ordered),
                schemes::schedule.eq(schedule),
                schemes::schedule_next_at.eq(schedule_next_at),
                schemes::tier_policy.eq(policy_column(new.tier_policy.as_ref())),
                schemes::version.eq(1),
                schemes::created_at.eq(at),
                schemes::updated_at.eq(at),
            ))
            .execute(conn)
            .map_err(|e| match AppError::from(e) {
                error if error.code == ErrorCode::Duplicate => duplicate_scheme(new.code.as_str()),
                error => error,
            })?;
        events::record_one(conn, EventType::SchemeCreated, json!({"scheme": new.code.as_str()}))?;
        view(conn, new.code.as_str())
    })
}

fn duplicate_scheme(code: &str) -> AppError {
    AppError::new(ErrorCode::DuplicateCode, format!("scheme {code} already exists"))
}

pub fn update(
    conn: &mut DbConnection,
    code: &str,
    changes: &SchemeChanges,
    expected: Option<i64>,
) -> Result<SchemeView, AppError> {
    transaction(conn, |conn| {
        let current = lock_current(conn, LockableTable::Schemes, expected, |conn| get(conn, code))?;
        let categories_exist = category_count(conn, current.id)? > 0;

        if let Some(rule) = &changes.code_rule {
            let old_rule = current.code_rule.clone();
            if categories_exist && !rule.extends(&old_rule) {
                return Err(AppError::new(
                    ErrorCode::CodeRuleLocked,
                    format!("scheme {code} has categories, so its code rule {old_rule} may only be extended by appending segments (not changed to {rule})"),
                ));
            }
        }
        let ordered = changes.ordered.unwrap_or(current.ordered);
        let tier_policy = match changes.tier_policy {
            Some(policy) => policy,
            None => current.tier_policy()?,
        };
        ensure_policy_allowed(code, ordered, tier_policy.as_ref())?;
        if tier_policy.is_none() {
            // Counts of failed runs start again from nothing with a later policy.
            diesel::delete(tier_holds::table.filter(tier_holds::scheme_id.eq(current.id))).execute(conn)?;
        }
        if let Some(Some(category)) = &changes.default_category {
            crate::catalogue::category_rows::ensure_assignable_default(conn, current.id, category)?;
        }

        let at = now();
        let (schedule, schedule_next_at) = match &changes.schedule {
            Some(schedule) => schedule_columns(schedule.as_ref(), at),
            None => (current.schedule.clone(), current.schedule_next_at),
        };
        let updated = diesel::update(
            schemes::table.filter(schemes::id.eq(current.id)).filter(schemes::version.eq(current.version)),
        )
        .set((
            schemes::name.eq(changes.name.as_ref().unwrap_or(&current.name)),
            schemes::description.eq(changes.description.clone().unwrap_or(current.description.clone())),
            schemes::code_rule.eq(changes.code_rule.as_ref().unwrap_or(&current.code_rule).to_string()),
            schemes::required.eq(changes.required.unwrap_or(current.required)),
            schemes::default_category.eq(match &changes.default_category {
                Some(category) => category.as_ref().map(|c| c.as_str().to_string()),
                None => current.default_category.clone(),
            }),
            schemes::auto_classify.eq(changes.auto_classify.unwrap_or(current.auto_classify)),
            schemes::active.eq(changes.active.unwrap_or(current.active)),
            schemes::ordered.eq(ordered),
            schemes::tier_policy.eq(policy_column(tier_policy.as_ref())),
            schemes::schedule.eq(schedule),
            schemes::schedule_next_at.eq(schedule_next_at),
            schemes::version.eq(current.version + 1),
            schemes::updated_at.eq(at),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Err(AppError::concurrent_update());
        }
        events::record_one(conn, EventType::SchemeUpdated, json!({"scheme": code, "version": current.version + 1}))?;
        view(conn, code)
    })
}

pub fn delete(conn: &mut DbConnection, code: &str, expected: Option<i64>) -> Result<(), AppError> {
    transaction(conn, |conn| {
        let current = lock_current(conn, LockableTable::Schemes, expected, |conn| get(conn, code))?;
        let count = category_count(conn, current.id)?;
        if count > 0 {
            return Err(AppError::new(
                ErrorCode::SchemeInUse,
                format!("scheme {code} still has {count} categories; delete them first"),
            ));
        }
        diesel::delete(schemes::table.filter(schemes::id.eq(current.id))).execute(conn)?;
        events::record_one(conn, EventType::SchemeDeleted, json!({"scheme": code}))
    })
}

/// A schedule's firing this replica won: start the run.
pub struct Firing {
    pub scheme: String,
    pub dry_run: bool,
}

/// The firings due at `at` that this replica takes. A due firing is taken by moving
/// the scheme's next firing on from the value read (compare-and-set): whichever
/// replicas race, one takes it. Firings missed while no replica ran are taken once,
/// and the next is the first after `at`.
pub fn take_due_firings(conn: &mut DbConnection, at: chrono::NaiveDateTime) -> Result<Vec<Firing>, AppError> {
    let due: Vec<SchemeRow> =
        schemes::table.filter(schemes::schedule_next_at.le(at)).select(SchemeRow::as_select()).load(conn)?;
    let mut taken = Vec::new();
    for scheme in due {
        let Some(schedule) = scheme.schedule()? else { continue };
        let next = schedule.next_after(at);
        let moved = transaction(conn, |conn| {
            Ok(diesel::update(
                schemes::table
                    .filter(schemes::id.eq(scheme.id))
                    .filter(schemes::schedule_next_at.eq(scheme.schedule_next_at)),
            )
            .set(schemes::schedule_next_at.eq(next))
            .execute(conn)?)
        })?;
        if moved == 1 {
            taken.push(Firing { scheme: scheme.code, dry_run: schedule.dry_run() });
        }
    }
    Ok(taken)
}
