//! The archive's use cases: customers (客户档案) and their history, sales facts and the
//! metrics drawn from them, and data cleansing (数据清理): duplicates, merges, the
//! data-quality report.

pub mod cleansing;
pub mod customers;
pub mod sales;
