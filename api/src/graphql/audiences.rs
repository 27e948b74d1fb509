//! Members (followers), their personas, events and erasure.
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{event, member, message, persona, relation};
use sea_orm::{ColumnTrait, Condition, QueryFilter, QueryOrder, QuerySelect};

use super::{
    connection::{Conn, PageArgs, paginate},
    loaders::{PersonaOfMember, loader},
    parse_id, to_id,
};
use crate::{
    context::ContextExt,
    error::{AppError, GqlResult},
    service::{
        imports::{
            Outcome,
            events::{EventRow, event_kind, insert_events},
        },
        members,
    },
    tenant,
};

pub struct Member(pub member::Model);

#[Object]
impl Member {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn openid(&self) -> &str {
        &self.0.openid
    }
    async fn unionid(&self) -> Option<&str> {
        self.0.unionid.as_deref()
    }
    async fn nickname(&self) -> Option<&str> {
        self.0.nickname.as_deref()
    }
    /// `male`, `female` or `unknown`, as in the import.
    async fn gender(&self) -> &str {
        &self.0.gender
    }
    async fn age(&self) -> Option<i32> {
        self.0.age
    }
    async fn city(&self) -> Option<&str> {
        self.0.city.as_deref()
    }
    async fn province(&self) -> Option<&str> {
        self.0.province.as_deref()
    }
    async fn tags(&self) -> Vec<String> {
        serde_json::from_value(self.0.tags.clone()).unwrap_or_default()
    }
    async fn subscribed(&self) -> bool {
        self.0.subscribed
    }
    /// Marketing consent: sends skip members without it.
    async fn consent(&self) -> bool {
        self.0.consent
    }
    async fn subscribed_at(&self) -> Option<DateTime<Utc>> {
        self.0.subscribed_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The member's events, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Conn<MemberEvent>> {
        let select = tenant::scoped::<event::Entity>(self.0.account_id)
            .filter(event::Column::MemberId.eq(self.0.id));
        Ok(paginate(
            ctx.db(),
            select,
            event::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            MemberEvent,
        )
        .await?)
    }
    /// What the member wrote (chat, Moments, comments), newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Conn<MemberMessage>> {
        let select = tenant::scoped::<message::Entity>(self.0.account_id)
            .filter(message::Column::MemberId.eq(self.0.id));
        Ok(paginate(
            ctx.db(),
            select,
            message::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            MemberMessage,
        )
        .await?)
    }
    /// Openids of the member's friends (friend edges), first 100.
    async fn friends(&self, ctx: &Context<'_>) -> GqlResult<Vec<String>> {
        Ok(tenant::scoped::<relation::Entity>(self.0.account_id)
            .filter(relation::Column::MemberId.eq(self.0.id))
            .order_by_asc(relation::Column::FriendOpenid)
            .limit(100)
            .all(ctx.db())
            .await?
            .into_iter()
            .map(|r| r.friend_openid)
            .collect())
    }
    /// Null until the persona job has run for this member.
    async fn persona(&self, ctx: &Context<'_>) -> GqlResult<Option<Persona>> {
        Ok(loader(ctx)?
            .load_one(PersonaOfMember(self.0.id))
            .await?
            .map(Persona))
    }
}

pub struct MemberEvent(pub event::Model);

#[Object(name = "Event")]
impl MemberEvent {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn content_id(&self) -> Option<ID> {
        self.0.content_id.map(to_id)
    }
    async fn campaign_id(&self) -> Option<ID> {
        self.0.campaign_id.map(to_id)
    }
    async fn value(&self) -> Option<f64> {
        self.0.value
    }
}

pub struct MemberMessage(pub message::Model);

#[Object(name = "Message")]
impl MemberMessage {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    /// chat, moment or comment.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn content_id(&self) -> Option<ID> {
        self.0.content_id.map(to_id)
    }
    /// Probability of positive, once analysed (the model's, also when a
    /// person corrected the label).
    async fn sentiment(&self) -> Option<f64> {
        self.0.sentiment
    }
    /// True when `sentimentLabel` is a person's correction.
    async fn sentiment_corrected(&self) -> bool {
        self.0.sentiment_corrected.is_some()
    }
    /// POSITIVE / NEUTRAL / NEGATIVE: the label a person set
    /// (`correctMessageSentiment`), else the stored score under the
    /// account's active head's band for the text's length, so labels follow
    /// a head whose bands changed without re-analysis (scores are
    /// calibrated probabilities either way); the label stored at analysis
    /// when the models are off.
    async fn sentiment_label(&self, ctx: &Context<'_>) -> Option<&str> {
        if let Some(l) = self.0.sentiment_corrected.as_deref() {
            return Some(l);
        }
        let p = self.0.sentiment?;
        match &ctx.state().models {
            Some(m) => Some(
                m.head_for(ctx.db(), self.0.account_id)
                    .await
                    .label(p as f32, &self.0.text),
            ),
            None => self.0.sentiment_label.as_deref(),
        }
    }
}

#[derive(SimpleObject)]
pub struct Interest {
    pub name: String,
    /// [0, 1]
    pub weight: f64,
}

pub struct Persona(pub persona::Model);

#[Object]
impl Persona {
    async fn interests(&self) -> Vec<Interest> {
        self.0
            .interests
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| {
                        Some(Interest {
                            name: i.get("name")?.as_str()?.to_owned(),
                            weight: i.get("weight")?.as_f64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn keywords(&self) -> Vec<String> {
        serde_json::from_value(self.0.keywords.clone()).unwrap_or_default()
    }
    /// Probability-of-positive scale [0, 1], recency weighted; null without texts.
    async fn sentiment(&self) -> Option<f64> {
        self.0.sentiment
    }
    /// Change of sentiment lately (positive: warming up).
    async fn sentiment_trend(&self) -> Option<f64> {
        self.0.sentiment_trend
    }
    /// [0, 1] from recency and frequency of events.
    async fn activity(&self) -> f64 {
        self.0.activity
    }
    /// People within two friend hops.
    async fn reach(&self) -> i32 {
        self.0.two_hop_reach
    }
    /// Direct friends.
    async fn degree(&self) -> i32 {
        self.0.degree
    }
    /// PageRank-style influence in the friend graph.
    async fn influence(&self) -> f64 {
        self.0.influence
    }
    async fn embedding_model(&self) -> Option<&str> {
        self.0.embedding_model.as_deref()
    }
    async fn last_active_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_active_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// One event; the same keys as the events import.
#[derive(InputObject)]
pub struct EventInput {
    pub openid: String,
    /// view, click, share, purchase, subscribe, unsubscribe, …
    #[graphql(name = "type")]
    pub kind: String,
    /// Default: now.
    pub at: Option<DateTime<Utc>>,
    pub content_id: Option<ID>,
    pub campaign_id: Option<ID>,
    pub value: Option<f64>,
}

#[derive(Default)]
pub struct AudiencesQuery;

#[Object]
impl AudiencesQuery {
    /// The account's members, oldest first; `search` matches openid, nickname or city.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> GqlResult<Conn<Member>> {
        let mut select = tenant::scoped::<member::Entity>(ctx.tenant()?);
        if let Some(s) = search
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        {
            select = select.filter(
                Condition::any()
                    .add(member::Column::Openid.eq(s.clone()))
                    .add(member::Column::Nickname.contains(&s))
                    .add(member::Column::City.eq(s)),
            );
        }
        Ok(paginate(
            ctx.db(),
            select,
            member::Column::Id,
            PageArgs::new(first, after)?,
            false,
            |m| m.id,
            Member,
        )
        .await?)
    }

    /// One member; null when it does not exist in this account.
    async fn member(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Member>> {
        let id = parse_id(&id, "id")?;
        match tenant::get::<member::Entity>(ctx.db(), ctx.tenant()?, id).await {
            Ok(m) => Ok(Some(Member(m))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Default)]
pub struct AudiencesMutation;

#[Object]
impl AudiencesMutation {
    /// Records events (up to 1000) all-or-nothing; returns how many were new.
    async fn record_events(&self, ctx: &Context<'_>, events: Vec<EventInput>) -> GqlResult<i32> {
        let account_id = ctx.tenant()?;
        if events.len() > 1000 {
            return Err(AppError::bad_input(
                "events",
                "at most 1000 per call; use importEvents for more",
            )
            .into());
        }
        let now = Utc::now();
        let mut rows = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            let field = |f: &str| format!("events[{i}].{f}");
            let openid = crate::service::imports::members::openid(
                &serde_json::Value::String(e.openid),
                "openid",
            )
            .map_err(|m| AppError::bad_input(field("openid"), m))?;
            let kind = event_kind(&serde_json::Value::String(e.kind))
                .map_err(|m| AppError::bad_input(field("type"), m))?;
            let id = |v: Option<ID>, f: &str| v.map(|v| parse_id(&v, &field(f))).transpose();
            if let Some(v) = e.value
                && !v.is_finite()
            {
                return Err(AppError::bad_input(field("value"), "must be a finite number").into());
            }
            rows.push((
                i,
                EventRow {
                    openid,
                    kind,
                    at: e.at.unwrap_or(now),
                    content_id: id(e.content_id, "contentId")?,
                    campaign_id: id(e.campaign_id, "campaignId")?,
                    value: e.value,
                },
            ));
        }
        let txn = worker::config::begin_write(ctx.db()).await?;
        let mut outcome = Outcome::default();
        let n = rows.len();
        let errors = insert_events(&txn, account_id, rows, &mut outcome).await?;
        if let Some(e) = errors.first() {
            txn.rollback().await?;
            return Err(
                AppError::bad_input(format!("events[{}]", e.line), e.message.clone()).into(),
            );
        }
        worker::jobs::refresh::touch(&txn, account_id, &outcome.touched_members).await?;
        txn.commit().await?;
        Ok(n as i32)
    }

    /// Erases a member from the database, the index and derived features.
    async fn delete_member(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let id = parse_id(&id, "id")?;
        let account = ctx.tenant()?;
        members::erase(ctx.state(), account, id).await?;
        // The index forgets them too; if it cannot now, a queued sync job
        // retries until it does (the DB rows are already gone).
        let state = ctx.state();
        if let Err(e) = state.search.delete(account, &[id]).await {
            tracing::warn!(error = %e, "index erasure deferred to a job");
            worker::jobs::enqueue(
                ctx.db(),
                &state.queue,
                worker::jobs::enqueue::NewJob::now(
                    account,
                    worker::jobs::JobKind::IndexPersonas,
                    serde_json::json!({ "memberIds": [id] }),
                ),
            )
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        }
        Ok(true)
    }
}
