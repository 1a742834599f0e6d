//! custclass's use cases, between the store and the HTTP layer: every request's work
//! (the catalogue, the archive, assignments and runs, reports, imports and exports, the
//! feed and webhooks, API keys) is a call here that takes the connection it needs on
//! the blocking pool and gives it back, so that a handler, a CLI command or a job can
//! run it alike and no handler holds a connection. Besides the requests it runs the
//! background jobs every replica runs (`jobs`: the feed's sequencer and retention, the
//! sales totals' anchor, the schedules of classification runs, the watch over imports)
//! and the webhook deliveries (`webhook_sender`).

// The layers below under the names the modules use.
use custclass_db as db;
use custclass_db::{error, shutdown};
use custclass_domain as domain;
use custclass_store as store;

pub mod access;
pub mod archive;
pub mod catalogue;
pub mod classification;
pub mod exchange;
pub mod feed;
pub mod jobs;
pub mod reporting;
pub mod webhook_sender;
pub mod webhooks;
