//! Classification runs (自动分类) started by a request, and their records.

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::db::Db;
use crate::domain::customer::CustomerCode;
use crate::domain::run::{RunStatus, Trigger};
use crate::error::AppError;
use crate::shutdown::Shutdown;
use crate::store::classification::run_batches::RunRequest;
use crate::store::classification::runs::{self as store, ChangeRow, RunView};

/// How long a stop request waits for the run to end before it answers.
const STOP_WAIT: Duration = Duration::from_secs(10);
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A run a person asks for.
pub struct Requested {
    pub dry_run: bool,
    pub as_of: NaiveDateTime,
    /// The service's clock now.
    pub at: NaiveDateTime,
    /// Only these customers; `None` for the whole scheme.
    pub customers: Option<Vec<CustomerCode>>,
    pub actor: String,
    pub batch_size: i64,
    pub shutdown: Shutdown,
}

/// Runs the scheme's rules to the end. `on_start` learns the run once it holds the
/// scheme's running slot, for a caller that answers before the run ends.
pub async fn run(
    db: &Db,
    scheme: String,
    requested: Requested,
    on_start: impl FnOnce(RunView) + Send + 'static,
) -> Result<RunView, AppError> {
    let spares = db.clone();
    db.run_long(move |conn| {
        let Requested { dry_run, as_of, at, customers, actor, batch_size, shutdown } = requested;
        let request =
            |scope| RunRequest { dry_run, scope, as_of, at, trigger: Trigger::Request, actor, batch_size, shutdown };
        store::run_requested(conn, &spares, &scheme, customers, request, on_start)
    })
    .await
}

pub async fn list(
    db: &Db,
    scheme: String,
    trigger: Option<Trigger>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RunView>, AppError> {
    db.run(move |conn| store::list(conn, &scheme, trigger, before, limit)).await
}

pub async fn get(db: &Db, scheme: String, id: i64) -> Result<RunView, AppError> {
    db.run(move |conn| store::get(conn, &scheme, id)).await
}

pub async fn changes(
    db: &Db,
    scheme: String,
    id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<ChangeRow>, AppError> {
    db.run(move |conn| store::changes(conn, &scheme, id, after, limit)).await
}

/// Asks the run to stop after its current batch and waits up to 10 s for it to end;
/// the run as it then stands (still `running` if its batch goes on).
pub async fn stop(db: &Db, scheme: String, id: i64) -> Result<RunView, AppError> {
    let asked = scheme.clone();
    let mut run = db.run(move |conn| store::request_stop(conn, &asked, id)).await?;
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    while run.row.status == RunStatus::Running && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(STOP_CHECK).await;
        run = get(db, scheme.clone(), id).await?;
    }
    Ok(run)
}
