//! Subscriptions over `/graphql/ws` (graphql-transport-ws).
use std::time::Duration;

use async_graphql::{Context, ID, Subscription};
use futures::{Stream, StreamExt, stream};

use super::{campaigns::Campaign, parse_id};
use crate::{
    auth::Auth,
    context::ContextExt,
    error::{AppError, GqlError},
    policy, tenant,
};

pub struct SubscriptionRoot;

/// How often watched rows are re-read; cheap keyed lookups.
const POLL: Duration = Duration::from_millis(500);

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
        // Fail fast on an id that is not ours.
        tenant::get::<entity::campaign::Entity>(&db, account_id, id)
            .await
            .map_err(GqlError::from)?;
        let s = stream::unfold(None, move |last: Option<chrono::DateTime<chrono::Utc>>| {
            let db = db.clone();
            async move {
                loop {
                    if last.is_some() {
                        tokio::time::sleep(POLL).await;
                    }
                    match tenant::get::<entity::campaign::Entity>(&db, account_id, id).await {
                        Ok(c) if Some(c.updated_at) != last => {
                            let at = c.updated_at;
                            return Some((Ok(Campaign(c)), Some(at)));
                        }
                        Ok(_) => continue,
                        Err(e) => return Some((Err(GqlError::from(e).into()), last)),
                    }
                }
            }
        });
        // Stop after an error (the campaign was deleted or the DB is gone).
        Ok(s.scan(false, |failed, item| {
            let stop = *failed;
            *failed = item.is_err();
            async move { (!stop).then_some(item) }
        }))
    }
}
