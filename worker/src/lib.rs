//! Background work for Lingxi: configuration shared by both binaries, the
//! campaign scheduler and (as they land) the job handlers and model runtime.
pub mod campaigns;
pub mod config;
pub mod runner;

pub use config::Config;
