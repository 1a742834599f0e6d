//! Sales facts from ERP services, the classification they trigger, and a customer's
//! metrics and standing.

use std::sync::Arc;

use chrono::NaiveDateTime;

use crate::db::{self as database, Db};
use crate::domain::restriction::Restriction;
use crate::domain::rule::Population;
use crate::domain::run::Trigger;
use crate::domain::FieldError;
use crate::error::{AppError, ErrorCode};
use crate::shutdown::Shutdown;
use crate::store::access::visibility;
use crate::store::archive::transactions::{self as store, Ingested, Metrics, NewTransaction};
use crate::store::catalogue::{rules, schemes};
use crate::store::classification::rankings::{self, Standings};
use crate::store::classification::run_batches::{RunRequest, Scope};
use crate::store::classification::runs::{self, RunView};

/// How the ingesting caller's automatic runs go.
pub struct AutoRuns {
    pub actor: String,
    /// The service's clock now.
    pub at: NaiveDateTime,
    pub batch_size: i64,
    pub shutdown: Shutdown,
}

/// One automatically classified scheme: its run, or why it did not run.
pub struct AutoClassified {
    pub scheme: String,
    pub run: Result<RunView, AppError>,
}

/// Stores the transactions, then re-classifies the customers they name in every active
/// scheme with `auto_classify`. The transactions are stored first, so a scheme whose
/// run cannot start is reported, not failed.
pub async fn record(
    db: &Db,
    items: Vec<Result<NewTransaction, String>>,
    runs: AutoRuns,
) -> Result<(Ingested, Vec<AutoClassified>), AppError> {
    db.run(move |conn| {
        let ingested = store::ingest(conn, &items)?;
        if ingested.customer_ids.is_empty() {
            return Ok((ingested, Vec::new()));
        }
        let mut classified = Vec::new();
        for scheme in schemes::auto_classified(conn)? {
            let request = RunRequest {
                dry_run: false,
                scope: Scope::Customers(ingested.customer_ids.clone()),
                as_of: database::now(),
                at: runs.at,
                trigger: Trigger::Ingestion,
                actor: runs.actor.clone(),
                batch_size: runs.batch_size,
                shutdown: runs.shutdown.clone(),
            };
            // Whatever stops the run (a rule that no longer fits, a run in progress,
            // even the database), the transactions are stored: the caller learns why
            // the scheme was skipped and can start a run later.
            let run = runs::run(conn, &scheme.code, &request);
            if let Err(error @ AppError { cause: Some(cause), .. }) = &run {
                log::error!("automatic classification of scheme {} failed: {error} {cause}", scheme.code);
            }
            classified.push(AutoClassified { scheme: scheme.code, run });
        }
        Ok((ingested, classified))
    })
    .await
}

/// Where the standing is asked for: among every active customer (`all`) or a
/// category's subtree (`SCHEME:CODE`).
pub enum Among {
    Nobody,
    All,
    Category(String),
}

/// The customer's metrics as of `as_of`, and its standing among `among` when asked
/// (ranking reads the whole population, so it is done only then).
pub async fn metrics(
    db: &Db,
    code: String,
    as_of: NaiveDateTime,
    among: Among,
    restriction: Option<Arc<Restriction>>,
) -> Result<(Metrics, Option<Standings>), AppError> {
    db.run(move |conn| {
        visibility::ensure_visible(conn, restriction.as_deref(), &code)?;
        let metrics = store::metrics(conn, &code, as_of)?;
        let population = match among {
            Among::Nobody => return Ok((metrics, None)),
            Among::All => None,
            Among::Category(text) => Some(Population::parse(&text, &rules::catalog(conn)?).map_err(|why| {
                AppError::validation(
                    ErrorCode::InvalidPopulation,
                    format!("population {text:?}: {why}; use all or SCHEME:CODE"),
                    vec![FieldError::new("population", why)],
                )
            })?),
        };
        let values = rankings::Values {
            spend_12m: metrics.spend_12m.cents(),
            orders_12m: metrics.orders_12m,
            lifetime_spend: metrics.lifetime_spend.cents(),
            days_since_last_order: metrics.days_since_last_order,
        };
        let standings = rankings::standings(conn, &code, &values, as_of, population.as_ref(), restriction.as_deref())?;
        Ok((metrics, Some(standings)))
    })
    .await
}
