//! Builds the application: pool, migrations, bootstrap key, HTTP server.

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{from_fn, Compress, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, error, AppState, KeyCache};
use crate::config::{CorsOrigins, Settings};
use crate::db::{self, Db, DbPool};
use crate::domain::api_key::ApiKeySecret;
use crate::error::ErrorCode;
use crate::service::exchange::imports::RunningImports;
use crate::service::feed::FeedSignal;
use crate::service::jobs::Jobs;
use crate::shutdown::Shutdown;
use crate::store::access::api_keys::{self, Bootstrap};
use crate::telemetry::{self, Metrics};

/// How long a looked-up API key is trusted before it is read again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

pub struct Application {
    server: Server,
    port: u16,
    shutdown: Shutdown,
    jobs: Jobs,
}

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
            clock: settings.clock.clone(),
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
        let jobs = Jobs {
            db,
            feed,
            shutdown: shutdown.clone(),
            run_batch_size: settings.run_batch_size,
            event_retention: settings.event_retention,
            webhooks: settings.webhooks,
            imports: running_imports,
            clock: settings.clock.clone(),
        };
        Ok(Self { server, port, shutdown, jobs })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests (up to 30 s) and
    /// waits for classification runs to stop at a batch boundary and record
    /// `interrupted` (up to 60 s).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let background = futures_util::future::join(self.jobs.run(), begin_shutdown_on_signal(self.shutdown.clone()));
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
