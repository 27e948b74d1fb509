//! Model versions: what is installed or trained, its metrics, which is active.
use async_graphql::{Context, Enum, ID, Json, Object};
use chrono::{DateTime, Utc};
use entity::model_version;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;
use worker::{
    jobs::{self, enqueue::NewJob},
    registry::kind,
};

use super::to_id;
use crate::{
    context::ContextExt,
    error::{AppError, GqlResult},
};

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
    /// True when this version reads this account's texts: its own active
    /// sentiment head, or the shared active one when it has none.
    async fn in_use(&self, ctx: &Context<'_>) -> GqlResult<bool> {
        if !self.0.active {
            return Ok(false);
        }
        if self.0.account_id.is_some() || self.0.kind != kind::SENTIMENT {
            return Ok(true);
        }
        let own =
            worker::registry::active_in(ctx.db(), kind::SENTIMENT, Some(ctx.tenant()?)).await?;
        Ok(own.is_none())
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

#[derive(Default)]
pub struct ModelsMutation;

#[Object]
impl ModelsMutation {
    /// Chooses the sentiment head that reads this account's texts: one of
    /// its own versions, or the active shared version (back to the
    /// platform's head). The shared head itself changes only by
    /// RETRAIN_SENTIMENT. A change of head queues ANALYZE_TEXTS
    /// `{ stale: true }`, which scores again what the new head has not.
    async fn activate_model_version(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ModelVersion> {
        let id = super::parse_id(&id, "id")?;
        let account_id = ctx.tenant()?;
        let db = ctx.db();
        let row = model_version::Entity::find_by_id(id)
            .filter(
                Condition::any()
                    .add(model_version::Column::AccountId.is_null())
                    .add(model_version::Column::AccountId.eq(account_id)),
            )
            .one(db)
            .await?
            .ok_or_else(|| AppError::not_found("model version", id))?;
        if row.kind != kind::SENTIMENT {
            return Err(AppError::bad_input(
                "id",
                "only sentiment heads can be chosen per account / 仅情感模型可按账号选择",
            )
            .into());
        }
        let tx = worker::registry::begin_locked(db).await?;
        let own_before = worker::registry::active_in(&tx, kind::SENTIMENT, Some(account_id))
            .await?
            .map(|v| v.id);
        match row.account_id {
            Some(_) => worker::registry::activate(&tx, row.id).await?,
            None if row.active => {
                worker::registry::deactivate_account(&tx, kind::SENTIMENT, account_id).await?
            }
            None => {
                return Err(AppError::bad_input(
                    "id",
                    "not the active shared version: the shared head changes only by RETRAIN_SENTIMENT / 共享模型只能通过重训更换",
                )
                .into());
            }
        }
        let own_after = row.account_id.map(|_| row.id);
        // Stored scores are the previous head's: read the messages again
        // (staged, so it commits with the change).
        let rescore = if own_after != own_before {
            jobs::enqueue::stage(&tx, NewJob::rescore(account_id))
                .await
                .map_err(AppError::from)?
        } else {
            None
        };
        tx.commit().await?;
        if let Some(m) = &ctx.state().models {
            m.refresh_heads(db).await.map_err(AppError::Internal)?;
        }
        jobs::enqueue::release(db, &ctx.state().queue, rescore.as_slice()).await;
        let row = model_version::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or_else(|| AppError::not_found("model version", id))?;
        Ok(ModelVersion(row))
    }
}
