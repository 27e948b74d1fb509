//! Lingxi's API: the GraphQL schema split by domain, HTTP, auth and the
//! services behind them. `App` is the seam the binary and the tests share.
pub mod app;
pub mod auth;
pub mod context;
pub mod demo;
pub mod error;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod service;
pub mod tenant;
pub mod watch;

pub use app::App;
