//! Opaque keyset cursors: base64url of a small JSON value. Clients pass them back
//! unchanged; their content is not part of the contract.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::AppError;

pub fn encode<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, AppError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(invalid)
}

pub fn invalid() -> AppError {
    AppError::bad_request("invalid_cursor", "the cursor is not one this service issued for this list; start again without it")
}

/// `limit` of a list: 1 to `max`, `default` when absent.
pub fn parse_limit(text: Option<&str>, default: i64, max: i64) -> Result<i64, AppError> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=max).contains(limit))
            .ok_or_else(|| AppError::bad_request("invalid_query", format!("limit must be a whole number from 1 to {max}"))),
    }
}
