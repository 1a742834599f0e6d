//! The catalogue's use cases: schemes, their category trees, attribute definitions and
//! rules, each read or written in one call on the blocking pool.

pub mod attributes;
pub mod categories;
pub mod rules;
pub mod schemes;
