//! Background work for Lingxi: configuration shared by both binaries, the
//! job queue and its handlers, text analysis, personas and the campaign
//! scheduler.
pub mod analysis;
pub mod campaigns;
pub mod config;
pub mod jobs;
pub mod ml;
pub mod models;
pub mod personas;
pub mod registry;
pub mod runner;
pub mod search;
pub mod sentiment;
pub mod taxonomy;
pub mod text;
pub mod vectors;

pub use config::Config;
