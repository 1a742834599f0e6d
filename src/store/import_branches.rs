//! The XA branch of an atomic import (MySQL): a second connection writes part of the
//! import's new customers in a transaction of its own, which commits with the
//! import's by two-phase commit, so that the import still lands whole or not at all.
//!
//! The import's own transaction inserts the branch's row in `import_branches` when it
//! begins. That row becomes visible when the import commits, and is locked by the
//! import until then, so it is the decision for a branch that was prepared and left
//! behind (the service stopped between the two commits): such a branch commits when
//! the row is there and rolls back when it is not. `resolve_left_behind` applies it at
//! start-up.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};

use crate::db::schema::import_branches;
use crate::db::{now, transaction, DbConnection};
use crate::error::AppError;

/// Every branch's global id starts with this, which tells ours from other
/// applications'; its branch qualifier is the database's name, since branches are the
/// server's and not one database's: each service resolves only its own.
const PREFIX: &str = "custclass-import-";

/// A branch begun on the second connection and recorded in the import's transaction.
pub struct Branch {
    /// The recorded id (the global id).
    id: String,
    /// The id as XA statements take it: global id and qualifier, in hex.
    xid: String,
}

fn xid(id: &str, database: &str) -> String {
    format!("X'{}', X'{}'", hex::encode(id), hex::encode(database))
}

#[derive(QueryableByName)]
struct Database {
    #[diesel(sql_type = Text)]
    name: String,
}

fn database_name(conn: &mut DbConnection) -> Result<String, AppError> {
    Ok(diesel::sql_query("SELECT DATABASE() AS name").get_result::<Database>(conn)?.name)
}

/// Starts the branch on `second` and records it in the transaction open on `own`.
pub fn begin(own: &mut DbConnection, second: &mut DbConnection) -> Result<Branch, AppError> {
    let id = format!("{PREFIX}{}", uuid::Uuid::new_v4().simple());
    let xid = xid(&id, &database_name(own)?);
    diesel::insert_into(import_branches::table)
        .values((import_branches::xid.eq(&id), import_branches::started_at.eq(now())))
        .execute(own)?;
    diesel::sql_query(format!("XA START {xid}")).execute(second)?;
    Ok(Branch { id, xid })
}

impl Branch {
    /// Ends the branch's work and prepares it: after this it can still commit even if
    /// its connection is lost.
    pub fn prepare(&self, second: &mut DbConnection) -> Result<(), AppError> {
        diesel::sql_query(format!("XA END {}", self.xid)).execute(second)?;
        diesel::sql_query(format!("XA PREPARE {}", self.xid)).execute(second)?;
        Ok(())
    }

    /// Undoes the branch, prepared or not. A branch whose connection is gone was rolled
    /// back by the server already (or, if prepared, is rolled back at the next start, as
    /// its row was never committed), so failures here change nothing.
    pub fn roll_back(self, second: &mut DbConnection) {
        let _ = diesel::sql_query(format!("XA END {}", self.xid)).execute(second);
        if let Err(error) = diesel::sql_query(format!("XA ROLLBACK {}", self.xid)).execute(second) {
            log::warn!(
                "import branch {} did not roll back now ({error}); it is rolled back at the next start",
                self.id
            );
        }
    }

    /// Commits the prepared branch once the import has committed, and forgets its row.
    /// A failure leaves the branch prepared, to be committed at the next start.
    pub fn commit(self, second: &mut DbConnection, own: &mut DbConnection) -> Result<(), AppError> {
        diesel::sql_query(format!("XA COMMIT {}", self.xid)).execute(second).map_err(|error| {
            AppError::internal(format!(
                "import branch {} is prepared and not committed ({error}); it is committed at the next start",
                self.id
            ))
        })?;
        diesel::delete(import_branches::table.find(&self.id)).execute(own)?;
        Ok(())
    }
}

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = BigInt)]
    gtrid_length: i64,
    #[diesel(sql_type = Binary)]
    data: Vec<u8>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The ids of the import branches of `database` that are prepared and not yet
/// committed or rolled back.
fn prepared_branches(conn: &mut DbConnection, database: &str) -> Result<Vec<String>, AppError> {
    let rows = diesel::sql_query("XA RECOVER").load::<Prepared>(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let (id, qualifier) = row.data.split_at_checked(usize::try_from(row.gtrid_length).ok()?)?;
            (qualifier == database.as_bytes()).then(|| String::from_utf8(id.to_vec()).ok()).flatten()
        })
        .filter(|id| id.starts_with(PREFIX))
        .collect())
}

/// Commits or rolls back this database's branches that imports prepared and left
/// behind, as each import's row decides; a branch whose import is still running (its
/// connection holds it) is left to that import. Also forgets the rows of branches that
/// committed. Returns how many branches it resolved.
pub fn resolve_left_behind(conn: &mut DbConnection) -> Result<usize, AppError> {
    if !matches!(conn, DbConnection::Mysql(_)) {
        return Ok(0);
    }
    let database = database_name(conn)?;
    let mut resolved = 0;
    for id in &prepared_branches(conn, &database)? {
        // A running import holds its row until it commits or rolls back; this read
        // waits for that, and sees the row only if the import committed.
        let committed = transaction(conn, |conn| {
            let found: Count =
                diesel::sql_query("SELECT COUNT(*) AS n FROM import_branches WHERE xid = ? LOCK IN SHARE MODE")
                    .bind::<Text, _>(id)
                    .get_result(conn)?;
            Ok(found.n > 0)
        });
        let Ok(committed) = committed else { continue };
        let verb = if committed { "COMMIT" } else { "ROLLBACK" };
        // Refused while the branch's own connection still holds it (XAER_NOTA): the
        // import that began it finishes it.
        if diesel::sql_query(format!("XA {verb} {}", xid(id, &database))).execute(conn).is_ok() {
            log::warn!(
                "import branch {id}, left prepared, is now {}",
                if committed { "committed" } else { "rolled back" }
            );
            resolved += 1;
        }
    }
    // A committed import's row whose branch is no longer prepared has done its work.
    // Read without locking, so that only committed rows are seen and removed.
    let held = prepared_branches(conn, &database)?;
    let recorded: Vec<String> = import_branches::table.select(import_branches::xid).load(conn)?;
    let done: Vec<&String> = recorded.iter().filter(|id| !held.contains(id)).collect();
    if !done.is_empty() {
        diesel::delete(import_branches::table.filter(import_branches::xid.eq_any(done))).execute(conn)?;
    }
    Ok(resolved)
}
