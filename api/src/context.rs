//! Shared state and the resolver-side accessors for it.
use std::{sync::Arc, time::Instant};

use async_graphql::Context;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    auth::{Auth, Principal},
    error::{AppError, AppResult},
    metrics::Metrics,
};

/// Built once at start-up and attached to the schema.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub queue: worker::jobs::JobQueue,
    /// None when started with `LINGXI_MODELS=off`.
    pub models: Option<worker::models::SharedModels>,
    /// Persona search (embedded index or Meilisearch).
    pub search: worker::search::Search,
    /// Change signals for the rows that subscriptions follow.
    pub watcher: crate::watch::RowWatcher,
    pub config: Arc<worker::Config>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
}

pub trait ContextExt {
    fn state(&self) -> &AppState;
    fn db(&self) -> &DatabaseConnection {
        &self.state().db
    }
    /// The caller; the policy extension has already admitted them.
    fn principal(&self) -> AppResult<&Principal>;
    /// The caller's account id: the tenant every query is scoped to.
    fn tenant(&self) -> AppResult<Uuid> {
        Ok(self.principal()?.account_id)
    }
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &AppState {
        self.data_unchecked::<AppState>()
    }

    fn principal(&self) -> AppResult<&Principal> {
        match self.data_opt::<Auth>() {
            Some(Auth::Key(p)) => Ok(p),
            _ => Err(AppError::Unauthenticated),
        }
    }
}
