//! Builds the application: pool, migrations, bootstrap key, HTTP server.

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{from_fn, Compress, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use utoipa_swagger_ui::SwaggerUi;

use crate::api::events::FeedSignal;
use crate::api::imports::RunningImports;
use crate::api::{self, error, AppState, KeyCache};
use crate::config::{CorsOrigins, Settings, WebhookSettings};
use crate::db::{self, Db, DbPool};
use crate::domain::api_key::ApiKeySecret;
use crate::domain::run::Trigger;
use crate::error::ErrorCode;
use crate::shutdown::Shutdown;
use crate::store::access::api_keys::{self, Bootstrap};
use crate::store::archive::{duplicates, sales_totals};
use crate::store::catalogue::schemes::{self, Firing};
use crate::store::classification::run_batches::RunRequest;
use crate::store::classification::runs;
use crate::store::exchange::imports;
use crate::store::feed::{events, webhooks};
use crate::telemetry::{self, Metrics};
use crate::webhook_sender::deliver_webhooks;

/// How long a looked-up API key is trusted before it is read again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

pub struct Application {
    server: Server,
    port: u16,
    db: Db,
    feed: FeedSignal,
    shutdown: Shutdown,
    run_batch_size: i64,
    event_retention: Duration,
    webhooks: WebhookSettings,
    imports: RunningImports,
}

/// How often a replica checks whether the sales totals' anchor is behind today.
const SALES_TOTALS_CHECK: Duration = Duration::from_secs(3600);
/// How long the sequencer rests when it found no event to number.
const SEQUENCER_REST: Duration = Duration::from_millis(100);
/// How often a replica looks for schedules that are due.
const SCHEDULE_CHECK: Duration = Duration::from_secs(1);
/// Who the runs that schedules start are recorded as started by.
const SCHEDULE_ACTOR: &str = "schedule";
/// How often a replica deletes the events past their retention.
const EVENT_PRUNING: Duration = Duration::from_secs(3600);

/// Connects and brings the schema up to date. Blocking: call before serving.
pub fn prepare_database(settings: &Settings) -> Result<DbPool, String> {
    let pool = db::build_pool(&settings.database_url, settings.pool_size, settings.timeouts)?;
    let mut session = pool.get().map_err(|e| format!("cannot connect to {}: {e}", settings.database_url.redacted()))?;
    for migration in db::migrate(&mut session.conn)? {
        log::info!("applied migration {migration}");
    }
    Ok(pool)
}

/// Makes sure an admin key can be used: the configured one, or a generated first
/// one, which is logged once and returned.
pub fn bootstrap_admin_key(pool: &DbPool, configured: Option<&str>) -> Result<Option<String>, String> {
    let configured = configured
        .map(ApiKeySecret::from_operator)
        .transpose()
        .map_err(|e| format!("CUSTCLASS_ADMIN_KEY {}", e.message))?;
    let mut session = pool.get().map_err(|e| e.to_string())?;
    match api_keys::bootstrap(&mut session.conn, configured.as_ref()) {
        Ok(Bootstrap::Generated(secret)) => {
            log::warn!("no API key existed, so an admin key was created; it is shown only this once: {secret}");
            Ok(Some(secret))
        }
        Ok(Bootstrap::Ensured) => {
            log::info!("the admin key from CUSTCLASS_ADMIN_KEY is in place");
            Ok(None)
        }
        Ok(Bootstrap::Unchanged) => Ok(None),
        // Another replica starting at the same moment made the first key.
        Err(e) if e.code == ErrorCode::Duplicate => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Browsers on the allowed origins may call every endpoint with a key, send
/// `If-Match` and JSON, and read the headers a client needs (ETag, Location, the
/// request id, Retry-After). No cookies are involved, so no credentials mode. With no
/// origin configured the middleware still answers preflights, refusing each one with
/// 403 `origin_not_allowed` that names the setting; requests without a preflight pass
/// as they are (a browser then keeps the answer from the page).
fn cors(origins: &CorsOrigins) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::CONTENT_TYPE,
            header::ACCEPT,
            telemetry::REQUEST_ID,
            HeaderName::from_static("prefer"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            telemetry::REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static("preference-applied"),
        ])
        .max_age(3600);
    match origins {
        CorsOrigins::Any => cors.allow_any_origin(),
        CorsOrigins::List(list) => list.iter().fold(cors, |cors, origin| cors.allowed_origin(origin)),
        CorsOrigins::None => cors,
    }
}

impl Application {
    /// Prepares the database and binds the listener. Blocking: run it before the
    /// async runtime serves requests (or on a blocking thread).
    pub fn build(settings: &Settings) -> Result<Self, String> {
        let pool = prepare_database(settings)?;
        bootstrap_admin_key(&pool, settings.admin_key.as_deref())?;
        let listener = TcpListener::bind(&settings.bind_addr)
            .map_err(|e| format!("cannot listen on {}: {e}", settings.bind_addr))?;
        Self::serve(pool, listener, settings)
    }

    pub fn serve(pool: DbPool, listener: TcpListener, settings: &Settings) -> Result<Self, String> {
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let db = Db::new(pool, settings.timeouts);
        let feed = FeedSignal::default();
        let shutdown = Shutdown::default();
        let running_imports = RunningImports::default();
        let metrics = web::Data::new(Metrics::default());
        let state = web::Data::new(AppState {
            db: db.clone(),
            keys: KeyCache::new(KEY_CACHE_TTL),
            metrics: metrics.clone(),
            run_batch_size: settings.run_batch_size,
            imports: running_imports.clone(),
            feed: feed.clone(),
            webhook_allow_private: settings.webhooks.allow_private,
            shutdown: shutdown.clone(),
        });
        let cors_origins = settings.cors.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics.clone())
                .app_data(web::JsonConfig::default().limit(api::JSON_BODY_LIMIT).error_handler(error::json_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .wrap(cors(&cors_origins))
                .wrap(ErrorHandlers::new().default_handler(error::ensure_problem_json))
                .wrap(Compress::default())
                .wrap(from_fn(telemetry::middleware))
                .wrap(from_fn(api::paths::normalize))
                .configure(api::health::routes)
                .configure(api::openapi::routes)
                .configure(api::configure)
                .service(
                    SwaggerUi::new("/swagger-ui/{_:.*}")
                        .config(utoipa_swagger_ui::Config::new([api::openapi::OPENAPI_PATH])),
                )
                .default_service(web::to(error::no_route))
        })
        .shutdown_timeout(30);
        let server = if settings.workers > 0 { server.workers(settings.workers) } else { server };
        let server = server.listen(listener).map_err(|e| e.to_string())?.run();
        Ok(Self {
            server,
            port,
            db,
            feed,
            shutdown,
            run_batch_size: settings.run_batch_size,
            event_retention: settings.event_retention,
            webhooks: settings.webhooks,
            imports: running_imports,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests (up to 30 s) and
    /// waits for classification runs to stop at a batch boundary and record
    /// `interrupted` (up to 60 s).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let schedules = fire_schedules(self.db.clone(), self.run_batch_size, self.shutdown.clone());
        let imports = watch_imports(self.db.clone(), self.imports);
        let background = futures_util::future::join4(
            maintain(self.db, self.feed, self.event_retention, self.webhooks),
            schedules,
            imports,
            begin_shutdown_on_signal(self.shutdown.clone()),
        );
        let served = match futures_util::future::select(self.server, std::pin::pin!(background)).await {
            futures_util::future::Either::Left((served, _)) => served,
            futures_util::future::Either::Right((_, server)) => server.await,
        };
        self.shutdown.begin();
        if !self.shutdown.runs_ended().await {
            log::warn!("a classification run did not reach a batch boundary in time; it is taken for abandoned once its heartbeat is 10 minutes old");
        }
        served
    }
}

/// The server stops on these signals itself; the runs learn of them here, at once,
/// rather than after the in-flight requests (one may be waiting for its run).
async fn begin_shutdown_on_signal(shutdown: Shutdown) {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => return log::warn!("cannot listen for SIGTERM: {error}"),
    };
    futures_util::future::select(std::pin::pin!(terminate.recv()), std::pin::pin!(tokio::signal::ctrl_c())).await;
    log::info!("stopping: classification runs stop at their next batch boundary");
    shutdown.begin();
}

/// What every replica keeps up in the background: the duplicate keys of customers that
/// have none (after the migration that added them), once; then the sales totals,
/// the numbering of the feed's events, their delivery to webhooks, and their retention.
async fn maintain(db: Db, feed: FeedSignal, event_retention: Duration, webhook_settings: WebhookSettings) {
    duplicates::key_unkeyed_customers(&db).await;
    futures_util::future::join4(
        keep_sales_totals_current(db.clone()),
        number_events(db.clone(), feed.clone()),
        deliver_webhooks(db.clone(), feed, webhook_settings),
        prune_events(db, event_retention),
    )
    .await;
}

/// Keeps the imports' rows true to who runs them: refreshes the heartbeat of the
/// imports this process runs (MySQL; SQLite's one writer is busy with them, and one
/// process serves its file), and records `failed` (interrupted) for those no process
/// runs: at start-up, so that imports of a process that died are settled by the next
/// replica to start, and every `imports::HEARTBEAT` after.
async fn watch_imports(db: Db, running: RunningImports) {
    loop {
        let here = running.clone();
        let outcome = db
            .run(move |conn| {
                if matches!(conn, db::DbConnection::Mysql(_)) {
                    imports::beat(conn, &here.ids())?;
                }
                imports::settle_interrupted(conn, || here.ids())
            })
            .await;
        match outcome {
            Ok(settled) if settled.is_empty() => {}
            Ok(settled) => log::warn!(
                "recorded {} imports as interrupted (their service stopped before they finished): {}",
                settled.len(),
                settled.join(", ")
            ),
            Err(error) => log::warn!("the running imports could not be checked now: {error}"),
        }
        tokio::time::sleep(imports::HEARTBEAT).await;
    }
}

/// Starts the classification runs whose schedules are due, one after another; at
/// start-up, once for firings missed while no replica ran. Replicas race harmlessly:
/// each firing is taken by one (`schemes::take_due_firings`), and its run takes the
/// scheme's slot like any run (a firing that finds a run in progress is skipped).
async fn fire_schedules(db: Db, batch_size: i64, shutdown: Shutdown) {
    while !shutdown.has_begun() {
        let firings = match db.run(|conn| schemes::take_due_firings(conn, db::now())).await {
            Ok(firings) => firings,
            Err(error) => {
                log::warn!("the due schedules could not be read: {error}");
                Vec::new()
            }
        };
        for Firing { scheme, dry_run } in firings {
            let (pool, shutdown) = (db.clone(), shutdown.clone());
            let started = scheme.clone();
            let outcome = db
                .run_long(move |conn| {
                    let request = |scope| RunRequest {
                        dry_run,
                        scope,
                        as_of: db::now(),
                        trigger: Trigger::Schedule,
                        actor: SCHEDULE_ACTOR.to_string(),
                        batch_size,
                        shutdown,
                    };
                    runs::run_requested(conn, &pool, &started, None, request, |_| {})
                })
                .await;
            match outcome {
                Ok(run) => {
                    log::info!("scheduled run {} of scheme {scheme} ended {}", run.row.id, run.row.status.as_str())
                }
                Err(error) => log::warn!("the scheduled run of scheme {scheme} did not run: {error}"),
            }
        }
        tokio::time::sleep(SCHEDULE_CHECK).await;
    }
}

/// Numbers committed events as they come (`store::feed::events::sequence`), and wakes the
/// feed's long polls. Replicas race harmlessly: the sequence row's lock lets one at a
/// time number.
async fn number_events(db: Db, feed: FeedSignal) {
    loop {
        match db.run(events::sequence).await {
            Ok(0) => tokio::time::sleep(SEQUENCER_REST).await,
            Ok(_) => feed.numbered(),
            Err(error) if error.is_concurrent_update() => tokio::time::sleep(SEQUENCER_REST).await,
            Err(error) => {
                log::warn!(
                    "the feed's events could not be numbered: {error} ({})",
                    error.cause.as_deref().unwrap_or("no cause")
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Deletes the events and the webhook deliveries logged past their retention, at
/// start-up and then every hour.
async fn prune_events(db: Db, retention: Duration) {
    loop {
        let cutoff = db::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match db.run_long(move |conn| events::prune(conn, cutoff)).await {
            Ok(0) => {}
            Ok(pruned) => log::info!("deleted {pruned} events past their retention"),
            Err(error) => log::warn!("the events past their retention could not be deleted: {error}"),
        }
        match db.run_long(move |conn| webhooks::prune_deliveries(conn, cutoff)).await {
            Ok(0) => {}
            Ok(pruned) => log::info!("deleted {pruned} webhook deliveries past their retention"),
            Err(error) => log::warn!("the webhook deliveries past their retention could not be deleted: {error}"),
        }
        tokio::time::sleep(EVENT_PRUNING).await;
    }
}

/// Moves the sales totals' anchor to the start of the current UTC day, at start-up
/// and then every hour, so that reports read at most a day of transactions besides
/// the totals. Replicas race harmlessly: the anchor row's lock lets one move it.
async fn keep_sales_totals_current(db: Db) {
    loop {
        match db.run_long(sales_totals::advance).await {
            Ok(true) => log::info!("sales totals now stand at the start of today (UTC)"),
            Ok(false) => {}
            Err(error) => log::warn!("the sales totals could not be brought up to today: {error}"),
        }
        tokio::time::sleep(SALES_TOTALS_CHECK).await;
    }
}
