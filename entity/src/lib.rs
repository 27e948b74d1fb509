//! The data model: sea-orm entities, one module per table, nothing else.
//!
//! Every tenant-owned table carries `account_id`; the API scopes every query
//! by it (see `api::tenant`). Ids are UUIDv7, so ordering by id is ordering
//! by creation time, which the keyset pagination relies on.

pub mod account;
pub mod api_key;
pub mod campaign;
pub mod campaign_content;
pub mod content;
pub mod content_variant;
pub mod delivery;
pub mod event;
pub mod job_run;
pub mod job_schedule;
pub mod member;
pub mod member_touch;
pub mod message;
pub mod model_file;
pub mod model_version;
pub mod persona;
pub mod relation;
pub mod segment;
pub mod sentiment_example;

pub use sea_orm;
