//! Black-box HTTP tests. Every test that touches the database runs on SQLite and on MariaDB/MySQL.

mod helpers;

mod assignments;
mod attributes;
mod audit;
mod auth;
mod browser;
mod categories;
mod category_races;
mod cli;
mod customer_list;
mod customers;
mod data_quality;
mod duplicates;
mod errors;
mod events;
mod explanation;
mod exports;
mod imports;
mod merge;
mod openapi;
mod operations;
mod pending;
mod reassign;
mod receiver;
mod reports;
mod restriction;
mod sales;
mod schedules;
mod schemes;
mod segmentation;
mod stopping;
mod text_rules;
mod tiers;
mod upload_limits;
mod webhooks;
