//! custclass: customer classification management (客户分类管理) as a JSON REST service.

pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub use custclass_domain as domain;
pub mod error;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhook_sender;
