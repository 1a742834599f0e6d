//! The classification's use cases: a person's assignments, one at a time or in a batch,
//! and classification runs by the rules.

pub mod assignments;
pub mod explanation;
pub mod pending;
pub mod runs;
