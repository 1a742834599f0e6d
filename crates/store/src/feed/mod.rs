//! The change feed and its signed webhook deliveries.

pub mod events;
pub mod webhooks;
