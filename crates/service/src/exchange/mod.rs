//! Exchange with files: the customer archive imported from a file (`import_files`
//! reads and checks it, `imports` runs it) and exported a page at a time (`exports`).

pub mod exports;
pub mod import_files;
pub mod imports;
