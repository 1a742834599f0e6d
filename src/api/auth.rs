//! `Authorization: Bearer <key>` and scopes: the key is settled by middleware
//! before anything else, and handlers name the scope they need in their signature
//! (`Auth<Admin>`), so no handler can forget the check.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use crate::api::error::ApiError;
use crate::db::Db;
use crate::domain::api_key::{ApiKeySecret, Scope};
use crate::domain::restriction::Restriction;
use crate::error::{AppError, ErrorCode};
use crate::service::access;

use super::AppState;

/// The key a request was made with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    /// Recorded as the actor of changes.
    pub name: String,
    pub scope: Scope,
    /// The customers the key may see and change (记录级数据权限); `None`: all.
    pub restriction: Option<Arc<Restriction>>,
}

impl Caller {
    pub fn restriction(&self) -> Option<&Restriction> {
        self.restriction.as_deref()
    }
}

pub trait RequiredScope {
    const SCOPE: Scope;
}

pub struct Read;
pub struct Write;
pub struct Admin;

impl RequiredScope for Read {
    const SCOPE: Scope = Scope::Read;
}
impl RequiredScope for Write {
    const SCOPE: Scope = Scope::Write;
}
impl RequiredScope for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// Whether an endpoint serves keys restricted to some categories' customers.
pub trait RestrictionPolicy {
    const HONOURS_RESTRICTION: bool;
}

/// The endpoint reads or changes the archive as a whole (runs, duplicates, data
/// quality, …): a restricted key is refused, 403 `restricted_key`. The default, so
/// that no endpoint serves a restricted key without limiting what it shows.
pub struct WholeArchive;
/// The endpoint limits every read and write to the customers the caller's
/// restriction admits (`Caller::restriction`), in its queries.
pub struct Restrictable;

impl RestrictionPolicy for WholeArchive {
    const HONOURS_RESTRICTION: bool = false;
}
impl RestrictionPolicy for Restrictable {
    const HONOURS_RESTRICTION: bool = true;
}

/// An authenticated caller whose key has at least scope `S`, and, unless the endpoint
/// is [`Restrictable`], no restriction. The caller was settled by [`authenticate`]
/// before any extractor ran; this only checks, at once, so a handler that names
/// `Auth` first refuses before it reads a query, an `If-Match` or a body.
pub struct Auth<S: RequiredScope, P: RestrictionPolicy = WholeArchive> {
    pub caller: Caller,
    required: PhantomData<(S, P)>,
}

impl<S: RequiredScope, P: RestrictionPolicy> FromRequest for Auth<S, P> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = req.extensions().get::<Caller>().cloned();
        ready(match caller {
            None => Err(AppError::internal("the endpoint was reached without the authentication middleware").into()),
            Some(caller) if caller.scope < S::SCOPE => Err(AppError::new(
                ErrorCode::InsufficientScope,
                format!("this operation needs a key with scope {}; key {:?} has scope {}", S::SCOPE, caller.name, caller.scope),
            ).into()),
            Some(caller) if caller.restriction.is_some() && !P::HONOURS_RESTRICTION => Err(AppError::new(
                ErrorCode::RestrictedKey,
                format!("key {:?} is restricted to some categories' customers; this operation works on the whole archive and needs an unrestricted key", caller.name),
            ).into()),
            Some(caller) => Ok(Auth { caller, required: PhantomData }),
        })
    }
}

/// Middleware of `/api/v1`: every request for an endpoint that exists has its key
/// looked up before the handler is called, so that a request without a valid key
/// answers 401 whatever its body, query or headers hold (and no body is read for
/// it). A path that matches no endpoint passes through to the 404.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // The router's reading of the path (escapes decoded), so that no spelling of an
    // endpoint's path reaches it without a key.
    if req.resource_map().has_resource(req.match_info().get_ref().path()) {
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError(AppError::internal("application state missing")))?;
        let secret = bearer_token(req.request()).map_err(ApiError)?;
        let caller = state.keys.authenticate(&state.db, secret).await.map_err(ApiError)?;
        req.extensions_mut().insert(caller);
    }
    next.call(req).await
}

fn unauthorized(detail: &str) -> AppError {
    AppError::new(ErrorCode::Unauthorized, detail)
}

fn bearer_token(req: &HttpRequest) -> Result<ApiKeySecret, AppError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send an API key as Authorization: Bearer <key>"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    let (kind, token) =
        value.split_once(' ').ok_or_else(|| unauthorized("the Authorization header must be Bearer <key>"))?;
    if !kind.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthorized("the Authorization header must be Bearer <key>"));
    }
    Ok(ApiKeySecret::presented(token.trim()))
}

/// Keys looked up recently, so that a request costs no extra query. A revoked key
/// stops working at once on the replica that revoked it and within `ttl` on others.
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Caller, Instant)>>,
    ttl: Duration,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl }
    }

    fn cached(&self, digest: &str) -> Option<Caller> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(digest).filter(|(_, at)| at.elapsed() < self.ttl).map(|(caller, _)| caller.clone())
    }

    async fn authenticate(&self, db: &Db, secret: ApiKeySecret) -> Result<Caller, AppError> {
        let digest = secret.digest();
        if let Some(caller) = self.cached(&digest) {
            return Ok(caller);
        }
        let row = access::find_active(db, digest.clone())
            .await?
            .ok_or_else(|| unauthorized("the API key is unknown or revoked"))?;
        let caller = Caller {
            key_id: row.id,
            scope: row.scope()?,
            restriction: row.restriction()?.map(Arc::new),
            name: row.name,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
        entries.insert(digest, (caller.clone(), Instant::now()));
        Ok(caller)
    }

    pub fn forget_all(&self) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}
