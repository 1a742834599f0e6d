use diesel::prelude::*;

use crate::db::schema::{api_keys, categories, schemes};
use crate::db::{now, transaction, DbConnection};
use crate::domain::api_key::{ApiKeySecret, KeyName, Scope};
use crate::domain::restriction::Restriction;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub secret_hash: String,
    pub prefix: String,
    pub created_at: chrono::NaiveDateTime,
    pub revoked_at: Option<chrono::NaiveDateTime>,
    pub restriction: Option<String>,
}

impl ApiKeyRow {
    pub fn scope(&self) -> Result<Scope, AppError> {
        self.scope.parse().map_err(|_| AppError::corrupt(format!("api key {} has a corrupt scope", self.id)))
    }

    pub fn restriction(&self) -> Result<Option<Restriction>, AppError> {
        crate::access::visibility::stored(self.restriction.as_deref(), format_args!("api key {}", self.id))
    }
}

/// Every scheme and category a restriction names must exist.
fn check_restriction(conn: &mut DbConnection, restriction: &Restriction) -> Result<(), AppError> {
    let mut errors = Vec::new();
    for (scheme_code, roots) in restriction.schemes() {
        let Some(scheme_id) =
            schemes::table.filter(schemes::code.eq(scheme_code)).select(schemes::id).first::<i64>(conn).optional()?
        else {
            errors.push(FieldError::new(format!("restrict/{scheme_code}"), format!("no scheme {scheme_code}")));
            continue;
        };
        let codes: Vec<&str> = roots.iter().map(|code| code.as_str()).collect();
        let found: Vec<String> = categories::table
            .filter(categories::scheme_id.eq(scheme_id))
            .filter(categories::code.eq_any(&codes))
            .select(categories::code)
            .load(conn)?;
        for code in codes.iter().filter(|code| !found.iter().any(|found| found == *code)) {
            errors.push(FieldError::new(
                format!("restrict/{scheme_code}"),
                format!("no category {code} in scheme {scheme_code}"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::validation(
            ErrorCode::InvalidRestriction,
            "the restriction names schemes or categories that do not exist",
            errors,
        ))
    }
}

pub fn create(
    conn: &mut DbConnection,
    name: &KeyName,
    scope: Scope,
    secret: &ApiKeySecret,
    restriction: Option<&Restriction>,
) -> Result<ApiKeyRow, AppError> {
    transaction(conn, |conn| {
        let taken: i64 = api_keys::table.filter(api_keys::name.eq(name.as_str())).count().get_result(conn)?;
        if taken > 0 {
            return Err(AppError::new(
                ErrorCode::DuplicateName,
                format!("an API key named {:?} already exists", name.as_str()),
            ));
        }
        if let Some(restriction) = restriction {
            check_restriction(conn, restriction)?;
        }
        insert(conn, name, scope, secret, restriction)?;
        Ok(api_keys::table.filter(api_keys::name.eq(name.as_str())).select(ApiKeyRow::as_select()).first(conn)?)
    })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<ApiKeyRow>, AppError> {
    Ok(api_keys::table.order(api_keys::id.asc()).select(ApiKeyRow::as_select()).load(conn)?)
}

/// Revokes a key; revoking a revoked key changes nothing.
pub fn revoke(conn: &mut DbConnection, id: i64) -> Result<(), AppError> {
    let found: i64 = api_keys::table.filter(api_keys::id.eq(id)).count().get_result(conn)?;
    if found == 0 {
        return Err(AppError::new(ErrorCode::ApiKeyNotFound, format!("API key {id} does not exist")));
    }
    diesel::update(api_keys::table.filter(api_keys::id.eq(id)).filter(api_keys::revoked_at.is_null()))
        .set(api_keys::revoked_at.eq(now()))
        .execute(conn)?;
    Ok(())
}

pub fn find_active(conn: &mut DbConnection, secret_hash: &str) -> Result<Option<ApiKeyRow>, AppError> {
    Ok(api_keys::table
        .filter(api_keys::secret_hash.eq(secret_hash))
        .filter(api_keys::revoked_at.is_null())
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?)
}

/// What start-up did about the bootstrap admin key.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Nothing to do: the configured key exists, or keys exist and none is configured.
    Unchanged,
    /// The configured key was added (or re-enabled as admin).
    Ensured,
    /// No key existed; this one was made and must be shown to the operator once.
    Generated(String),
}

/// `CUSTCLASS_ADMIN_KEY` makes sure an admin key with that secret exists; with no
/// configured key and no key at all, a first admin key is generated.
pub fn bootstrap(conn: &mut DbConnection, configured: Option<&ApiKeySecret>) -> Result<Bootstrap, AppError> {
    transaction(conn, |conn| match configured {
        Some(secret) => {
            let digest = secret.digest();
            let existing: Option<ApiKeyRow> = api_keys::table
                .filter(api_keys::secret_hash.eq(&digest))
                .select(ApiKeyRow::as_select())
                .first(conn)
                .optional()?;
            match existing {
                Some(row) if row.revoked_at.is_none() && row.scope == Scope::Admin.as_str() => Ok(Bootstrap::Unchanged),
                Some(row) => {
                    diesel::update(api_keys::table.filter(api_keys::id.eq(row.id)))
                        .set((
                            api_keys::revoked_at.eq(None::<chrono::NaiveDateTime>),
                            api_keys::scope.eq(Scope::Admin.as_str()),
                            api_keys::restriction.eq(None::<String>),
                        ))
                        .execute(conn)?;
                    Ok(Bootstrap::Ensured)
                }
                None => {
                    let name = KeyName::parse(&format!("admin-from-env-{}", &digest[..8]))?;
                    insert(conn, &name, Scope::Admin, secret, None)?;
                    Ok(Bootstrap::Ensured)
                }
            }
        }
        None => {
            let keys: i64 = api_keys::table.count().get_result(conn)?;
            if keys > 0 {
                return Ok(Bootstrap::Unchanged);
            }
            let secret = ApiKeySecret::generate();
            insert(conn, &KeyName::parse("initial-admin")?, Scope::Admin, &secret, None)?;
            Ok(Bootstrap::Generated(secret.expose().to_string()))
        }
    })
}

fn insert(
    conn: &mut DbConnection,
    name: &KeyName,
    scope: Scope,
    secret: &ApiKeySecret,
    restriction: Option<&Restriction>,
) -> Result<(), AppError> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::name.eq(name.as_str()),
            api_keys::scope.eq(scope.as_str()),
            api_keys::secret_hash.eq(secret.digest()),
            api_keys::prefix.eq(secret.display_prefix()),
            api_keys::created_at.eq(now()),
            api_keys::restriction.eq(crate::access::visibility::column(restriction)),
        ))
        .execute(conn)?;
    Ok(())
}
