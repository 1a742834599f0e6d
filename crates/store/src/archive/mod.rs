//! The customer archive: customers and their attribute values, the list filters, duplicates and merge, sales transactions and their totals, data-quality reports.

pub mod customer_filters;
pub mod customer_rows;
pub mod customer_search;
pub mod customers;
pub mod data_quality;
pub mod duplicates;
pub mod merge;
pub mod sales_totals;
pub mod transactions;
