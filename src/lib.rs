//! custclass: customer classification management (客户分类管理) as a JSON REST service.
//! This package is the top layer: the HTTP API (`api`), the command line, the
//! configuration and start-up. The layers below are crates of
//! their own, re-exported here: `domain`, `db`, `store` and `service`.

pub mod api;
pub mod cli;
pub mod config;
pub use custclass_db as db;
pub mod demo;
pub use custclass_db::error;
pub use custclass_db::shutdown;
pub use custclass_domain as domain;
pub mod startup;
pub use custclass_service as service;
pub use custclass_store as store;
pub mod telemetry;
