//! Spawns the real application on a fresh database of either backend and talks
//! to it over HTTP, as a client would.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custclass::config::Settings;
use custclass::db::DatabaseUrl;
use custclass::startup::{bootstrap_admin_key, prepare_database, Application};
use diesel::{Connection, RunQueryDsl};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
}

/// Generates `name::sqlite` and `name::mysql` tests from `async fn name(app: TestApp)`,
/// or, after `backend:`, from `async fn name(backend: Backend)` for tests that start
/// the application their own way.
#[macro_export]
macro_rules! both_backends {
    (backend: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$name($crate::helpers::Backend::Mysql).await
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$name($crate::helpers::spawn_app($crate::helpers::Backend::Mysql).await).await
            }
        }
    )*};
}

const MYSQL_HELP: &str = "MariaDB/MySQL is not reachable. The tests need it: run `scripts/test` (it starts MariaDB), \
or start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`, \
or point TEST_MYSQL_URL at a server (default mysql://root@127.0.0.1:3306)";

static DATABASE_COUNTER: AtomicU32 = AtomicU32::new(0);

fn mysql_server_url() -> String {
    std::env::var("TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// A fresh, empty database for one test.
fn fresh_database(backend: Backend) -> DatabaseUrl {
    let name = format!("cct_{}_{}", std::process::id(), DATABASE_COUNTER.fetch_add(1, Ordering::SeqCst));
    match backend {
        Backend::Sqlite => {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite");
            std::fs::create_dir_all(&dir).expect("create the SQLite test directory");
            let path = dir.join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            DatabaseUrl::Sqlite(path)
        }
        Backend::Mysql => {
            let server = mysql_server_url();
            let mut conn = diesel::MysqlConnection::establish(&server).unwrap_or_else(|e| panic!("{MYSQL_HELP}: {e}"));
            diesel::sql_query(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
                .execute(&mut conn)
                .expect("create the test database");
            DatabaseUrl::Mysql(format!("{server}/{name}"))
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub database: DatabaseUrl,
    /// For outage tests on MySQL: the proxy between the app and the server.
    pub proxy: Option<TcpProxy>,
    settings: Settings,
}

pub struct Options {
    pub db_timeout: Duration,
    pub through_proxy: bool,
    /// `CUSTCLASS_ADMIN_KEY`; without one the first start generates the admin key.
    pub configured_admin_key: bool,
    /// `RUN_BATCH_SIZE`.
    pub run_batch_size: i64,
    /// `DB_STATEMENT_TIMEOUT_MS`.
    pub statement_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`.
    pub cors: custclass::config::CorsOrigins,
    /// `WEBHOOK_*`: by default receivers on 127.0.0.1 are allowed, time out after 2 s
    /// and are retried after 50 ms at first.
    pub webhooks: custclass::service::webhook_sender::WebhookSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db_timeout: Duration::from_secs(10),
            through_proxy: false,
            configured_admin_key: true,
            run_batch_size: custclass::config::DEFAULT_RUN_BATCH_SIZE,
            statement_timeout: Duration::from_secs(30),
            cors: custclass::config::CorsOrigins::None,
            webhooks: custclass::service::webhook_sender::WebhookSettings {
                allow_private: true,
                timeout: Duration::from_secs(2),
                retry: custclass::domain::webhook::RetrySchedule {
                    first: Duration::from_millis(50),
                    give_up_after: custclass::domain::webhook::RetrySchedule::GIVE_UP_AFTER,
                },
            },
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let _ = env_logger::builder().is_test(true).filter_level(log::LevelFilter::Warn).try_init();
    let database = tokio::task::spawn_blocking(move || fresh_database(backend)).await.unwrap();
    let mut proxy = None;
    let app_database = match (&database, options.through_proxy) {
        (DatabaseUrl::Mysql(url), true) => {
            let (host_end, db_start) = (url.rfind('@').unwrap() + 1, url.rfind('/').unwrap());
            let started = TcpProxy::start(url[host_end..db_start].to_string()).await;
            let proxied = format!("{}{}{}", &url[..host_end], started.address, &url[db_start..]);
            proxy = Some(started);
            DatabaseUrl::Mysql(proxied)
        }
        _ => database.clone(),
    };
    let configured_key = options.configured_admin_key.then(|| format!("test-admin-{}", uuid::Uuid::new_v4().simple()));
    let settings = Settings {
        database_url: app_database,
        bind_addr: "127.0.0.1:0".into(),
        pool_size: 4,
        timeouts: custclass::db::Timeouts {
            wait: options.db_timeout,
            statement: options.statement_timeout,
            long_statement: Duration::from_secs(600),
        },
        admin_key: configured_key.clone(),
        workers: 2,
        run_batch_size: options.run_batch_size,
        cors: options.cors.clone(),
        event_retention: Duration::from_secs(custclass::config::DEFAULT_EVENT_RETENTION_DAYS * 86_400),
        webhooks: options.webhooks,
        clock: custclass::db::Clock::default(),
    };
    let prepared = settings.clone();
    let (pool, generated_key) = tokio::task::spawn_blocking(move || {
        let pool = prepare_database(&prepared)?;
        let generated = bootstrap_admin_key(&pool, prepared.admin_key.as_deref())?;
        Ok::<_, String>((pool, generated))
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    let admin_key = configured_key.or(generated_key).expect("either the configured or a generated admin key");
    TestApp { address: serve(pool, &settings), admin_key, client: test_client(), database, proxy, settings }
}

/// Serves the app in the background; its address.
fn serve(pool: custclass::db::DbPool, settings: &Settings) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::serve(pool, listener, settings).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    address
}

fn test_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

impl TestApp {
    /// Another replica of the service: the same database and settings, its own
    /// process state (pool, sequencer, webhook sender).
    pub async fn replica(&self) -> TestApp {
        let prepared = self.settings.clone();
        let pool = tokio::task::spawn_blocking(move || prepare_database(&prepared))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let address = serve(pool, &self.settings);
        TestApp {
            address,
            admin_key: self.admin_key.clone(),
            client: test_client(),
            database: self.database.clone(),
            proxy: None,
            settings: self.settings.clone(),
        }
    }

    /// Calls, with this app's keys, to another process serving the same database.
    pub fn at(&self, address: String) -> TestApp {
        TestApp {
            address,
            admin_key: self.admin_key.clone(),
            client: test_client(),
            database: self.database.clone(),
            proxy: None,
            settings: self.settings.clone(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{}", self.address, path))
    }

    /// A request made with the admin key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(&self.admin_key)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.admin(Method::GET, path).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.admin(Method::POST, path).json(body).send().await.unwrap()
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.admin(Method::PATCH, path).json(body).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.admin(Method::DELETE, path).send().await.unwrap()
    }

    /// Creates a key with `scope` and returns its secret.
    pub async fn key(&self, name: &str, scope: &str) -> String {
        let body = ok_json(
            self.post("/api/v1/api-keys", &serde_json::json!({"name": name, "scope": scope})).await,
            StatusCode::CREATED,
        )
        .await;
        body["secret"].as_str().unwrap().to_string()
    }

    pub async fn create_scheme(&self, code: &str, rule: &str) -> Value {
        let body = serde_json::json!({"code": code, "name": format!("{code} scheme"), "code_rule": rule});
        ok_json(self.post("/api/v1/schemes", &body).await, StatusCode::CREATED).await
    }

    /// TIER (code rule 2): 01 VIP客户, 02 普通客户, 03 潜在客户.
    pub async fn create_tiers(&self) {
        self.create_scheme("TIER", "2").await;
        for (code, name) in [("01", "VIP客户"), ("02", "普通客户"), ("03", "潜在客户")] {
            self.create_category("TIER", code, name).await;
        }
    }

    pub async fn create_category(&self, scheme: &str, code: &str, name: &str) -> Value {
        let body = serde_json::json!({"code": code, "name": name});
        ok_json(self.post(&format!("/api/v1/schemes/{scheme}/categories"), &body).await, StatusCode::CREATED).await
    }
}

/// Asserts the status and returns the JSON body.
pub async fn ok_json(response: Response, expected: StatusCode) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// Asserts a problem+json error with the given status and `code`; returns the problem.
pub async fn problem(response: Response, expected: StatusCode, code: &str) -> Value {
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "unexpected status; body: {text}");
    assert_eq!(content_type, "application/problem+json", "not problem+json; body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], code, "unexpected problem code; body: {text}");
    assert_eq!(body["status"], expected.as_u16());
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "problem without detail: {text}");
    body
}

/// A TCP forwarder that a test can cut and restore, to take the database away
/// from the application without touching the shared server.
pub struct TcpProxy {
    pub address: String,
    target: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// While set, forwarded connections stay open but carry nothing: a hung server.
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl TcpProxy {
    pub async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let proxy = Self { address, target, tasks: Arc::new(Mutex::new(Vec::new())), frozen: Arc::default() };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let accept_tasks = tasks.clone();
        let frozen = self.frozen.clone();
        let accept = tokio::spawn(async move {
            loop {
                // A failed accept (a connection reset before it was taken, no file
                // descriptor left for a moment) loses that one connection, not the proxy.
                let inbound = match listener.accept().await {
                    Ok((inbound, _)) => inbound,
                    Err(error) => {
                        log::warn!("test proxy: accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let target = target.clone();
                let frozen = frozen.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_server, to_server) = outbound.into_split();
                        tokio::join!(
                            forward(from_client, to_server, frozen.clone()),
                            forward(from_server, to_client, frozen)
                        );
                    }
                });
                accept_tasks.lock().unwrap().push(connection);
            }
        });
        tasks.lock().unwrap().push(accept);
    }

    /// The server stops answering, as a stopped (not dead) process does.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Closes the listener and every forwarded connection: the database is gone.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same address: the database is back.
    pub async fn restore(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(&self.address).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.accept_on(listener);
    }
}

/// Copies bytes one way, holding them back while `frozen`.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Runs `work` on a connection of its own to the app's database, behind the app's back.
pub async fn with_connection<T, F>(app: &TestApp, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce(&mut custclass::db::DbConnection) -> T + Send + 'static,
{
    let database = app.database.clone();
    tokio::task::spawn_blocking(move || {
        let pool = custclass::db::build_pool(
            &database,
            1,
            custclass::db::Timeouts::with_wait(std::time::Duration::from_secs(10)),
        )
        .unwrap();
        let mut session = pool.get().unwrap();
        work(&mut session.conn)
    })
    .await
    .unwrap()
}

/// Another process holding SQLite's write lock (`BEGIN EXCLUSIVE`) until released:
/// to the app, the database is unavailable for writes.
pub struct SqliteWriteLock {
    release: std::sync::mpsc::Sender<()>,
    holder: std::thread::JoinHandle<()>,
}

pub fn hold_sqlite_write_lock(path: PathBuf) -> SqliteWriteLock {
    use diesel::RunQueryDsl;

    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut other = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        // The app's own background writers (the feed's sequencer) may hold the lock a moment.
        diesel::sql_query("PRAGMA busy_timeout = 10000").execute(&mut other).unwrap();
        diesel::sql_query("BEGIN EXCLUSIVE").execute(&mut other).unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        diesel::sql_query("COMMIT").execute(&mut other).unwrap();
    });
    locked_rx.recv().unwrap();
    SqliteWriteLock { release, holder }
}

impl SqliteWriteLock {
    pub fn release(self) {
        self.release.send(()).unwrap();
        self.holder.join().unwrap();
    }
}

/// Runs statements straight on the app's database, behind its back (to corrupt or
/// age rows as only another program or a bug could).
pub async fn execute_directly(app: &TestApp, statements: &[&str]) {
    use diesel::RunQueryDsl;

    let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    with_connection(app, move |conn| {
        for statement in statements {
            let changed = diesel::sql_query(&statement).execute(conn).unwrap();
            assert!(changed > 0, "{statement} changed nothing");
        }
    })
    .await;
}

/// Inserts `count` bare customers (`{prefix}00001`, …) straight into the database,
/// for tests that need more customers than is quick to create over HTTP.
pub async fn insert_customers_directly(app: &TestApp, prefix: &str, count: usize) -> Vec<String> {
    use custclass::db::schema::customers;
    use diesel::prelude::*;

    let codes: Vec<String> = (1..=count).map(|i| format!("{prefix}{i:05}")).collect();
    let inserted = codes.clone();
    with_connection(app, move |conn| {
        let at = custclass::db::now();
        for chunk in inserted.chunks(500) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|code| {
                    (
                        customers::code.eq(code.clone()),
                        customers::name.eq(format!("客户 {code}")),
                        customers::status.eq("active"),
                        customers::classification.eq("[]"),
                        customers::version.eq(1i64),
                        customers::created_at.eq(at),
                        customers::updated_at.eq(at),
                    )
                })
                .collect();
            custclass::db::insert_rows!(&mut *conn, customers::table, rows).unwrap();
        }
        custclass::store::reporting::counts::recount(conn).unwrap();
    })
    .await;
    codes
}

impl TestApp {
    pub async fn create_customer(&self, code: &str, categories: Value) -> Value {
        let body = serde_json::json!({"code": code, "name": format!("{code} 有限公司"), "categories": categories});
        ok_json(self.post("/api/v1/customers", &body).await, StatusCode::CREATED).await
    }

    pub async fn assign(&self, customer: &str, scheme: &str, category: &str) -> Response {
        self.admin(Method::PUT, &format!("/api/v1/customers/{customer}/categories/{scheme}"))
            .json(&serde_json::json!({"category": category}))
            .send()
            .await
            .unwrap()
    }

    /// Moves the service's clock (and its replicas') forward: what takes effect later
    /// takes effect as if that time had passed.
    pub fn advance_clock(&self, by: Duration) {
        self.settings.clock.advance(by);
    }

    /// Every history entry of a customer, oldest first, following the cursors.
    pub async fn full_history(&self, customer: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/customers/{customer}/history?limit=7&cursor={c}"),
                None => format!("/api/v1/customers/{customer}/history?limit=7"),
            };
            let page = ok_json(self.get(&path).await, StatusCode::OK).await;
            entries.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        entries.reverse();
        entries
    }
}

/// A GET sent as written, byte for byte: HTTP clients tidy a path (dot segments,
/// escapes) before sending it, and the service must see the untidy ones too.
/// Returns the status and the body.
pub async fn raw_get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect to the service");
    let authorization = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

/// The service as an operator runs it: the `custclass` binary in its own process, on
/// the test's database, with `env` on top of the usual settings.
pub struct ServiceProcess {
    pub child: std::process::Child,
    /// This test's keys, calling the process.
    pub app: TestApp,
}

impl TestApp {
    /// Starts the binary on this app's database and waits until it answers.
    pub async fn serve_binary(&self, env: &[(&str, &str)]) -> ServiceProcess {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let database = match &self.database {
            DatabaseUrl::Mysql(url) => url.clone(),
            DatabaseUrl::Sqlite(path) => path.display().to_string(),
        };
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_custclass"));
        command
            .env("DATABASE_URL", database)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("CUSTCLASS_ADMIN_KEY", &self.admin_key)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start the custclass binary");
        let app = self.at(format!("http://127.0.0.1:{port}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while app.client.get(format!("{}/healthz", app.address)).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the service did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ServiceProcess { child, app }
    }
}

impl ServiceProcess {
    /// The most memory the process has held resident (`VmHWM`), in bytes.
    pub fn peak_resident_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the service's /proc status");
        let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("a VmHWM line");
        line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("VmHWM in kB") * 1024
    }

    /// Stops the process at once, as a crash or `kill -9` would.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the service");
        self.child.wait().expect("reap the service");
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that every derived table agrees with what it is derived from: the check
/// `custclass audit` makes.
pub async fn assert_read_model_agrees(app: &TestApp) {
    let findings = with_connection(app, |conn| custclass::store::audit::audit(conn).unwrap()).await;
    assert_eq!(findings.differences(), 0, "the audit found differences: {findings:#?}");
}
