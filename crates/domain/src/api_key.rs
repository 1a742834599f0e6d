//! API keys: random secrets shown once, stored only as a SHA-256 digest.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{clean_text, FieldError};

/// What a key may do; each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl FromStr for Scope {
    type Err = FieldError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            _ => Err(FieldError::new("scope", "must be one of read, write, admin")),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const SECRET_PREFIX: &str = "cck_";
/// Characters of a secret kept in clear to tell keys apart in listings.
pub const DISPLAY_PREFIX_LEN: usize = 12;
/// The shortest secret accepted from `CUSTCLASS_ADMIN_KEY`.
pub const MIN_SECRET_LEN: usize = 16;

/// A key's secret, as presented in `Authorization: Bearer`.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// 192 random bits; a plain digest is enough for secrets of that entropy.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
    }

    /// A secret chosen by an operator (for example `CUSTCLASS_ADMIN_KEY`).
    pub fn from_operator(text: &str) -> Result<Self, FieldError> {
        let text = text.trim();
        if text.len() < MIN_SECRET_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                "key",
                format!("must be at least {MIN_SECRET_LEN} printable ASCII characters without spaces"),
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn presented(text: &str) -> Self {
        Self(text.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    pub fn display_prefix(&self) -> String {
        self.0.chars().take(DISPLAY_PREFIX_LEN).collect()
    }
}

/// A key's name, recorded as the actor of every change made with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        clean_text("name", text, 1, 100).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        assert_eq!("write".parse::<Scope>().unwrap(), Scope::Write);
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn generated_secrets_differ_and_hash_stably() {
        let a = ApiKeySecret::generate();
        let b = ApiKeySecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("cck_") && a.expose().len() == 52);
        assert_eq!(a.digest(), ApiKeySecret::presented(a.expose()).digest());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn operator_secrets_need_length() {
        assert!(ApiKeySecret::from_operator("short").is_err());
        assert!(ApiKeySecret::from_operator("has space in the middle").is_err());
        assert!(ApiKeySecret::from_operator("0123456789abcdef").is_ok());
    }
}
