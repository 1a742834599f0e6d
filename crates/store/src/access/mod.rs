//! Access: API keys and what a restricted key may see and change.

pub mod api_keys;
pub mod visibility;
