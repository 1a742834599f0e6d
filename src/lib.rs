//! custclass: customer classification management (客户分类管理) as a JSON REST service.

pub mod api;
// The macros of the database layer, where the store's modules name them.
pub use custclass_db::{insert_many, insert_rows, native};
pub mod cli;
pub mod config;
pub use custclass_db as db;
pub mod demo;
pub use custclass_db::error;
pub use custclass_db::shutdown;
pub use custclass_domain as domain;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhook_sender;
