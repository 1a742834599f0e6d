//! Keyset paging shared by every list that pages: the `limit` bounds and opaque
//! cursors (base64url of a small JSON position). Clients pass cursors back
//! unchanged; their content is not part of the contract.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::Page;
use crate::error::{AppError, ErrorCode};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

/// What a list request asked for: at most `limit` items after position `after`.
#[derive(Debug)]
pub struct PageRequest<P> {
    pub limit: i64,
    pub after: Option<P>,
}

impl<P: DeserializeOwned> PageRequest<P> {
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, AppError> {
        Ok(Self { limit: parse_limit(limit)?, after: cursor.map(decode).transpose()? })
    }
}

/// The stores read `limit + 1` rows so that a next page shows itself: drops the
/// extra row and makes the cursor from the last row kept.
pub fn into_page<T, U, P>(mut rows: Vec<T>, limit: i64, position: impl Fn(&T) -> P) -> Result<Page<U>, AppError>
where
    U: TryFrom<T>,
    AppError: From<U::Error>,
    P: Serialize,
{
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| encode(&position(last)))
    } else {
        None
    };
    let items = rows.into_iter().map(U::try_from).collect::<Result<_, _>>()?;
    Ok(Page { items, next_cursor })
}

pub fn encode<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, AppError> {
    URL_SAFE_NO_PAD.decode(text).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).ok_or_else(invalid)
}

pub fn invalid() -> AppError {
    AppError::new(
        ErrorCode::InvalidCursor,
        "the cursor is not one this service issued for this list; start again without it",
    )
}

/// `limit` of a list: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn parse_limit(text: Option<&str>) -> Result<i64, AppError> {
    parse_limit_within(text, DEFAULT_LIMIT, MAX_LIMIT)
}

/// `limit` of a list whose items are larger: 1 to `max`, `default` when absent.
pub fn parse_limit_within(text: Option<&str>, default: i64, max: i64) -> Result<i64, AppError> {
    match text {
        None => Ok(default),
        Some(text) => text.parse::<i64>().ok().filter(|limit| (1..=max).contains(limit)).ok_or_else(|| {
            AppError::new(ErrorCode::InvalidQuery, format!("limit must be a whole number from 1 to {max}"))
        }),
    }
}
