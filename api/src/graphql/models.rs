//! Model versions: what is installed or trained, its metrics, which is active.
use async_graphql::{Context, Enum, ID, Json, Object};
use chrono::{DateTime, Utc};
use entity::model_version;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;
use worker::registry::kind;

use super::to_id;
use crate::{context::ContextExt, error::GqlResult};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ModelKind {
    Embedding,
    Sentiment,
    Ranker,
    Generator,
}

impl ModelKind {
    fn as_str(self) -> &'static str {
        match self {
            ModelKind::Embedding => kind::EMBEDDING,
            ModelKind::Sentiment => kind::SENTIMENT,
            ModelKind::Ranker => kind::RANKER,
            ModelKind::Generator => kind::GENERATOR,
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            kind::EMBEDDING => ModelKind::Embedding,
            kind::SENTIMENT => ModelKind::Sentiment,
            kind::RANKER => ModelKind::Ranker,
            _ => ModelKind::Generator,
        }
    }
}

pub struct ModelVersion(pub model_version::Model);

#[Object]
impl ModelVersion {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn kind(&self) -> ModelKind {
        ModelKind::parse(&self.0.kind)
    }
    async fn version(&self) -> &str {
        &self.0.version
    }
    /// e.g. `{"balancedAccuracy": 0.91, "auc": 0.96}`.
    async fn metrics(&self) -> Json<Value> {
        Json(self.0.metrics.clone())
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn sha256(&self) -> &str {
        &self.0.sha256
    }
    /// True for platform-wide models; false for ones trained for this account.
    async fn shared(&self) -> bool {
        self.0.account_id.is_none()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Default)]
pub struct ModelsQuery;

#[Object]
impl ModelsQuery {
    /// Versions of each model kind (platform-wide and this account's), newest first.
    async fn model_versions(
        &self,
        ctx: &Context<'_>,
        kind: Option<ModelKind>,
    ) -> GqlResult<Vec<ModelVersion>> {
        let account_id = ctx.tenant()?;
        let mut q = model_version::Entity::find().filter(
            Condition::any()
                .add(model_version::Column::AccountId.is_null())
                .add(model_version::Column::AccountId.eq(account_id)),
        );
        if let Some(k) = kind {
            q = q.filter(model_version::Column::Kind.eq(k.as_str()));
        }
        Ok(q.order_by_desc(model_version::Column::CreatedAt)
            .all(ctx.db())
            .await?
            .into_iter()
            .map(ModelVersion)
            .collect())
    }
}
