//! Bulk exchange of the archive: imports (validated, planned, written in one transaction) and streamed exports.

pub mod exports;
pub mod imports;
