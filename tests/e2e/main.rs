//! End-to-end tests: the real `api` binary over HTTP, on SQLite by default
//! and on PostgreSQL with `LINGXI_TEST_BACKEND=postgres` (`make test` runs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audience;
mod auth;
mod campaigns;
mod connections;
mod demo;
mod http;
mod imports;
mod jobs;
mod members;
mod models;
mod schedules;
mod schema;
mod search;
mod segments;
mod sentiment_examples;
mod subscriptions;
mod tenancy;
