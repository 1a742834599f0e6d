//! Sends the change feed's events to webhook endpoints, as the Standard Webhooks
//! specification has it: a POST of the event's JSON (the feed's own form) with
//! `webhook-id` (the event's id), `webhook-timestamp` and `webhook-signature`.
//!
//! Every replica runs [`deliver_webhooks`]: it claims the lease of endpoints with
//! events to send (`store::feed::webhooks::claim_due`), sends each endpoint its events one
//! at a time in feed order, and settles each batch in one transaction: the attempts
//! logged, the endpoint's position moved past what was delivered, a retry scheduled
//! after a failure. Nothing here runs inside a request, so no receiver can slow one.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::db::{now, Db};
use crate::domain::event::Cursor;
use crate::domain::webhook::{
    is_public, private_refusal, signature_header, DeliveryOutcome, RetrySchedule, WebhookSecret, WebhookUrl,
};
use crate::error::{AppError, ErrorCode};
use crate::feed::{Event, FeedSignal};
use crate::store::feed::events;
use crate::store::feed::webhooks::{self as store, Attempt, BatchEnd, WebhookRow};

pub const DEFAULT_WEBHOOK_TIMEOUT_SECONDS: u64 = 10;
pub const DEFAULT_WEBHOOK_FIRST_RETRY_MS: u64 = 5000;

/// How webhooks are sent.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// Whether endpoints may be on loopback and private networks
    /// (`WEBHOOK_ALLOW_PRIVATE`); off, that is refused (SSRF).
    pub allow_private: bool,
    /// How long one delivery may take, connecting included (`WEBHOOK_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// When failed deliveries are tried again (`WEBHOOK_FIRST_RETRY_MS` sets the first wait).
    pub retry: RetrySchedule,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(DEFAULT_WEBHOOK_TIMEOUT_SECONDS),
            retry: RetrySchedule {
                first: Duration::from_millis(DEFAULT_WEBHOOK_FIRST_RETRY_MS),
                give_up_after: RetrySchedule::GIVE_UP_AFTER,
            },
        }
    }
}

/// How long a claimed endpoint stays this replica's without a settled batch; a
/// replica that died is taken over this long after its last batch.
const LEASE: Duration = Duration::from_secs(30);
/// Events read and settled together.
const BATCH: i64 = 100;
/// Endpoints a replica delivers to at once whose last delivery went through. A lane of
/// their own, so that endpoints that fail or hang (each taking up to the time-out)
/// never hold back a healthy one by more than that one's own first failing attempt.
const HEALTHY_LANE: usize = 64;
/// Endpoints a replica retries at once.
const RETRY_LANE: usize = 16;
/// How often idle replicas look for endpoints due (sooner when events are numbered).
const POLL: Duration = Duration::from_millis(500);
/// Of a receiver's answer, only the status matters; this much of its body is read
/// (so the connection can be reused), the rest is dropped with the connection.
const RESPONSE_BODY_READ: usize = 64 * 1024;

/// Resolves receivers' host names to public addresses only, so that a name
/// pointing at an internal address (or re-pointed there after the check at
/// registration) cannot reach inside the network.
struct PublicAddressesOnly;

impl Resolve for PublicAddressesOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<_> = found.into_iter().filter(|address| is_public(address.ip())).collect();
            if public.is_empty() {
                return Err(private_refusal(&host).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// How long registering an endpoint waits for its name to resolve.
const REGISTRATION_LOOKUP: Duration = Duration::from_secs(2);

/// Whether `host` resolves only to addresses that are not public; a name that does
/// not resolve (yet, or within `REGISTRATION_LOOKUP`) passes: its deliveries fail
/// and are retried, and each delivery resolves it again through the same guard.
pub async fn resolves_only_privately(url: &WebhookUrl) -> bool {
    let Some(host) = url.host_name() else { return false };
    match tokio::time::timeout(REGISTRATION_LOOKUP, tokio::net::lookup_host((host, url.port()))).await {
        Ok(Ok(found)) => {
            let found: Vec<_> = found.collect();
            !found.is_empty() && found.iter().all(|address| !is_public(address.ip()))
        }
        Ok(Err(_)) | Err(_) => false,
    }
}

/// Database calls the deliveries make at once: however many endpoints are being sent
/// to, their reads and settlements queue here, not for the pool's connections, which
/// the requests need (on SQLite, a settlement also waits for the one write lock while
/// it holds its connection).
const DATABASE_SLOTS: usize = 2;

struct WebhookSender {
    client: reqwest::Client,
    settings: WebhookSettings,
    /// This replica, as lease holder.
    owner: String,
    database: tokio::sync::Semaphore,
}

impl WebhookSender {
    fn new(settings: WebhookSettings) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("custclass-webhooks/", env!("CARGO_PKG_VERSION")));
        let builder =
            if settings.allow_private { builder } else { builder.dns_resolver(Arc::new(PublicAddressesOnly)) };
        Ok(Self {
            client: builder.build()?,
            settings,
            owner: format!("replica-{}", uuid::Uuid::new_v4().simple()),
            database: tokio::sync::Semaphore::new(DATABASE_SLOTS),
        })
    }

    /// Sends one event once.
    async fn send(&self, url: &WebhookUrl, secrets: &[WebhookSecret], event: &Event, attempt: i32) -> Attempt {
        let started = Instant::now();
        let at = now();
        let body = serde_json::to_vec(event).unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature_header(&secrets.iter().collect::<Vec<_>>(), &event.id, timestamp, &body);
        let (outcome, response_status, error) = match url.literal_address() {
            Some(address) if !self.settings.allow_private && !is_public(address) => {
                (DeliveryOutcome::Failed, None, Some(private_refusal(&address.to_string())))
            }
            _ => {
                let request = self
                    .client
                    .post(url.as_str())
                    .header("webhook-id", &event.id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body);
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let location = response
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_string);
                        let _ = read_some(response).await;
                        let code = Some(i32::from(status.as_u16()));
                        if status.is_success() {
                            (DeliveryOutcome::Delivered, code, None)
                        } else if status.is_redirection() {
                            (
                                DeliveryOutcome::Failed,
                                code,
                                Some(format!(
                                    "answered {status} to {}: redirects are not followed",
                                    location.unwrap_or_default()
                                )),
                            )
                        } else {
                            (DeliveryOutcome::Failed, code, Some(format!("answered {status}")))
                        }
                    }
                    Err(error) if error.is_timeout() => (
                        DeliveryOutcome::Failed,
                        None,
                        Some(format!("no answer within {} s", self.settings.timeout.as_secs())),
                    ),
                    Err(error) => (DeliveryOutcome::Failed, None, Some(with_causes(&error))),
                }
            }
        };
        Attempt {
            event_position: event.id.parse().unwrap_or_default(),
            event_type: event.event_type.clone(),
            attempt,
            outcome,
            response_status,
            duration_ms: started.elapsed().as_millis() as i64,
            error,
            at,
        }
    }

    /// Runs `work` on the database within the deliveries' share of it.
    async fn with_database<T, F>(&self, db: &Db, work: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut crate::db::DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let _slot = self
            .database
            .acquire()
            .await
            .map_err(|_| AppError::internal("the webhook sender's database slots are closed"))?;
        db.run(work).await
    }

    /// Delivers a claimed endpoint's events in batches until none is left, one fails,
    /// or the lease is lost.
    async fn deliver(&self, db: &Db, endpoint: WebhookRow) -> Result<(), AppError> {
        let id = endpoint.id;
        let url = endpoint.url()?;
        let types = endpoint.type_filter()?;
        let secrets = endpoint.secrets_at(now())?;
        let restriction = endpoint.restriction()?.map(Arc::new);
        let mut through = endpoint.delivered_through;
        let mut failures = endpoint.failures;
        loop {
            let (filter, restriction) = (types.clone(), restriction.clone());
            let (attempts, end) = match self
                .with_database(db, move |conn| {
                    events::page(conn, Cursor::After(through), &filter, BATCH, restriction.as_deref())
                })
                .await
            {
                Err(error) if error.code == ErrorCode::CursorExpired => self.skip_expired(db, through).await?,
                page => {
                    let page = page?;
                    let read = page.events.len() as i64;
                    let batch_started = Instant::now();
                    let mut attempts = Vec::with_capacity(page.events.len());
                    let mut failed = None;
                    for row in page.events {
                        let event = Event::from(row);
                        let attempt = self.send(&url, &secrets, &event, failures + 1).await;
                        if attempt.outcome != DeliveryOutcome::Delivered {
                            failed = attempt.error.clone();
                            attempts.push(attempt);
                            break;
                        }
                        through = attempt.event_position;
                        failures = 0;
                        attempts.push(attempt);
                        if batch_started.elapsed() > LEASE / 2 {
                            break;
                        }
                    }
                    let end = match failed {
                        Some(error) => BatchEnd::Failed { through, error },
                        None if attempts.len() as i64 == read => {
                            BatchEnd::Delivered { through: page.next_cursor.max(through), more: read == BATCH }
                        }
                        None => BatchEnd::Delivered { through, more: true },
                    };
                    (attempts, end)
                }
            };
            let go_on = matches!(end, BatchEnd::Delivered { more: true, .. });
            let (BatchEnd::Delivered { through: settled, .. } | BatchEnd::Failed { through: settled, .. }) = &end;
            through = *settled;
            let (owner, retry, spread) = (self.owner.clone(), self.settings.retry, rand::random::<f64>());
            let still_ours = self
                .with_database(db, move |conn| {
                    store::settle(conn, id, store::Held { owner: &owner, lease: LEASE }, &attempts, end, retry, spread)
                })
                .await?;
            if !go_on || !still_ours {
                return Ok(());
            }
        }
    }

    /// Retention deleted events this endpoint had yet to be sent: it goes on from
    /// the oldest kept, and its log says what it missed.
    async fn skip_expired(&self, db: &Db, through: i64) -> Result<(Vec<Attempt>, BatchEnd), AppError> {
        let kept_from = self.with_database(db, |conn| events::position_of(conn, Cursor::Start)).await?;
        let skipped = Attempt {
            event_position: kept_from,
            event_type: String::new(),
            attempt: 1,
            outcome: DeliveryOutcome::Expired,
            response_status: None,
            duration_ms: 0,
            error: Some(format!(
                "the events after {through} up to {kept_from} passed their retention before they could be delivered"
            )),
            at: now(),
        };
        Ok((vec![skipped], BatchEnd::Delivered { through: kept_from, more: true }))
    }
}

async fn read_some(mut response: reqwest::Response) -> Result<(), reqwest::Error> {
    let mut read = 0;
    while let Some(chunk) = response.chunk().await? {
        read += chunk.len();
        if read >= RESPONSE_BODY_READ {
            break;
        }
    }
    Ok(())
}

/// An error with what caused it ("error sending request" alone says little).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Delivers every endpoint's events, for as long as the service runs.
pub async fn deliver_webhooks(db: Db, feed: FeedSignal, settings: WebhookSettings) {
    let sender = match WebhookSender::new(settings) {
        Ok(sender) => Arc::new(sender),
        Err(error) => {
            log::error!("webhooks cannot be sent: the HTTP client could not be built: {error}");
            return;
        }
    };
    let mut running = FuturesUnordered::new();
    // The endpoints being delivered to, each with its lane (`true`: retrying).
    let mut in_flight: Vec<(i64, bool)> = Vec::new();
    loop {
        for (failing, lane) in [(false, HEALTHY_LANE), (true, RETRY_LANE)] {
            let room = lane - in_flight.iter().filter(|(_, retrying)| *retrying == failing).count();
            if room == 0 {
                continue;
            }
            let (owner, skip) = (sender.owner.clone(), in_flight.iter().map(|(id, _)| *id).collect::<Vec<_>>());
            match db.run(move |conn| store::claim_due(conn, &owner, LEASE, room as i64, &skip, failing)).await {
                Ok(claimed) => {
                    for endpoint in claimed {
                        in_flight.push((endpoint.id, failing));
                        let (db, sender) = (db.clone(), sender.clone());
                        running.push(async move {
                            let id = endpoint.id;
                            if let Err(error) = sender.deliver(&db, endpoint).await {
                                log::warn!("webhook {id}: delivery stopped, to be taken up again when its lease lapses: {error}");
                            }
                            id
                        });
                    }
                }
                Err(error) => log::warn!("webhooks due could not be claimed: {error}"),
            }
        }
        let rest = pin!(feed.wait_for_numbering(POLL));
        if running.is_empty() {
            rest.await;
        } else if let futures_util::future::Either::Left((Some(done), _)) =
            futures_util::future::select(running.next(), rest).await
        {
            in_flight.retain(|(id, _)| *id != done);
        }
    }
}
