//! custclass's service layer, between the store and the HTTP layer: what runs beside
//! the requests. It owns the background jobs every replica runs (`jobs`: the feed's
//! sequencer and retention, the sales totals' anchor, the schedules of classification
//! runs, the watch over imports), the webhook deliveries (`webhook_sender`), and what
//! these share with the HTTP layer: the feed's JSON form of an event and the signal
//! that wakes its long polls (`feed`), and the imports this process runs (`imports`).

// The layers below under the names the modules use.
use custclass_db as db;
use custclass_db::{error, shutdown};
use custclass_domain as domain;
use custclass_store as store;

pub mod feed;
pub mod imports;
pub mod jobs;
pub mod webhook_sender;
