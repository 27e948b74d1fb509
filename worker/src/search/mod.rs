//! Persona search: one seam, two backends chosen by configuration.
//!
//! - [`embedded::EmbeddedSearch`] (default): tantivy indexes under
//!   `LINGXI_DATA_DIR/index`, one per account, in-process.
//! - [`meili::MeiliSearch`] (`LINGXI_MEILI_URL` set): one Meilisearch index
//!   per account, for many API and worker processes.
//!
//! Both receive the same [`SearchRequest`] and must give the same members,
//! totals and facets; `tests/e2e/search_conformance.rs` holds them to it.
pub mod doc;
pub mod embedded;
pub mod fields;
pub mod meili;
pub mod query;
pub mod sync;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use doc::PersonaDoc;
pub use query::{CmpOp, FacetCounts, Filter, Hit, Scalar, SearchRequest, SearchResponse, Similar};

use crate::Config;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The backend cannot be reached or refused the request; retry later.
    #[error("search backend unavailable: {0}")]
    Unavailable(String),
    /// The request cannot succeed as given (a backend limit, a bad value).
    #[error("invalid search request: {0}")]
    Invalid(String),
    /// Anything else the backend reported (index corruption, I/O, a failed task).
    #[error("search backend error: {0}")]
    Backend(String),
}

/// A full rebuild in progress: documents go into a new index that replaces
/// the old one only at [`Rebuild::commit`]; readers see the old one until then.
#[async_trait]
pub trait Rebuild: Send {
    async fn add(&mut self, docs: Vec<PersonaDoc>) -> Result<(), SearchError>;
    /// Swaps the new index in; returns the number of documents it holds.
    async fn commit(self: Box<Self>) -> Result<u64, SearchError>;
}

/// What both backends implement. Every call names the account: an account's
/// personas live in their own index, so no query can reach another's.
#[async_trait]
pub trait SearchBackend: Send + Sync {
    /// `embedded` or `meilisearch`.
    fn name(&self) -> &'static str;
    /// Inserts or replaces documents (by member id).
    async fn upsert(&self, account: Uuid, docs: Vec<PersonaDoc>) -> Result<(), SearchError>;
    /// Removes members; unknown ids are ignored.
    async fn delete(&self, account: Uuid, member_ids: &[Uuid]) -> Result<(), SearchError>;
    /// Starts a rebuild of the account's index.
    async fn rebuild(&self, account: Uuid) -> Result<Box<dyn Rebuild>, SearchError>;
    async fn search(
        &self,
        account: Uuid,
        req: &SearchRequest,
    ) -> Result<SearchResponse, SearchError>;
    /// Documents in the account's index.
    async fn count(&self, account: Uuid) -> Result<u64, SearchError>;
}

pub type Search = Arc<dyn SearchBackend>;

/// Opens the configured backend.
///
/// # Errors
/// An index folder that cannot be created, or a Meilisearch URL that does not parse.
pub async fn open(cfg: &Config) -> anyhow::Result<Search> {
    match &cfg.meili_url {
        Some(url) => Ok(Arc::new(
            meili::MeiliSearch::new(url, cfg.meili_key.as_deref(), &cfg.meili_prefix).await?,
        )),
        None => Ok(Arc::new(
            embedded::EmbeddedSearch::open(&cfg.data_dir.join("index"))?.with_idle(cfg.search_idle),
        )),
    }
}
