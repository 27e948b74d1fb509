//! Subscriptions over `/graphql/ws` (graphql-transport-ws).
use async_graphql::{Context, ID, Subscription};
use futures::Stream;

use super::{campaigns::Campaign, parse_id};
use crate::{
    auth::Auth,
    context::ContextExt,
    error::{AppError, GqlError},
    policy, tenant,
    watch::{self, Table},
};

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The job now and on every change of status, progress, attempts or
    /// error; completes after SUCCEEDED, FAILED or CANCELLED.
    async fn job_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<super::jobs::Job>> + use<>>
    {
        super::jobs::job_updates(ctx, id).await
    }

    /// Emits the campaign now and whenever its status or settings change.
    async fn campaign_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Campaign>>> {
        let principal = policy::check("Subscription", "campaignUpdated", ctx.data_opt::<Auth>())
            .and_then(|p| p.ok_or(AppError::Unauthenticated))
            .map_err(GqlError::from)?;
        let id = parse_id(&id, "id").map_err(GqlError::from)?;
        let db = ctx.db().clone();
        let account_id = principal.account_id;
        // Watch first, so a write before the first read below is not missed.
        let watch = ctx.state().watcher.watch(Table::Campaign, id);
        // Fail fast on an id that is not ours.
        tenant::get::<entity::campaign::Entity>(&db, account_id, id)
            .await
            .map_err(GqlError::from)?;
        let read = tenant::reader::<entity::campaign::Entity, _>(db, account_id, id, Campaign);
        Ok(watch::follow(
            watch,
            read,
            |c: &Campaign| c.0.updated_at,
            |_| false,
        ))
    }
}
