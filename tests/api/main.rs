//! Black-box HTTP tests. Every test that touches the database runs on SQLite and on MariaDB/MySQL.

mod helpers;

mod auth;
mod assignments;
mod attributes;
mod browser;
mod categories;
mod category_races;
mod cli;
mod customer_list;
mod customers;
mod data_quality;
mod errors;
mod events;
mod receiver;
mod webhooks;
mod duplicates;
mod exports;
mod imports;
mod merge;
mod openapi;
mod operations;
mod sales;
mod reports;
mod reassign;
mod restriction;
mod tiers;
mod schedules;
mod segmentation;
mod schemes;
mod stopping;
mod upload_limits;
