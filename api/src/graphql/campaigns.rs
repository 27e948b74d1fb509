//! Campaigns: settings and the status machine.
use std::collections::HashSet;

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{campaign, campaign_content, content, segment};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, Set,
};
use uuid::Uuid;
use worker::campaigns::Status;

use super::{
    connection::{Conn, PageArgs, paginate},
    contents::Content,
    loaders::{ContentsOfCampaign, SegmentById, loader},
    parse_id, required_text,
    segments::Segment,
    to_id,
};
use crate::{
    context::ContextExt,
    error::{AppError, AppResult, GqlResult},
    tenant,
};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Archived,
}

impl From<Status> for CampaignStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Draft => Self::Draft,
            Status::Scheduled => Self::Scheduled,
            Status::Running => Self::Running,
            Status::Paused => Self::Paused,
            Status::Completed => Self::Completed,
            Status::Archived => Self::Archived,
        }
    }
}

impl From<CampaignStatus> for Status {
    fn from(s: CampaignStatus) -> Self {
        match s {
            CampaignStatus::Draft => Self::Draft,
            CampaignStatus::Scheduled => Self::Scheduled,
            CampaignStatus::Running => Self::Running,
            CampaignStatus::Paused => Self::Paused,
            CampaignStatus::Completed => Self::Completed,
            CampaignStatus::Archived => Self::Archived,
        }
    }
}

/// What the campaign is for; the ranker optimises clicks or conversions accordingly.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignObjective {
    Awareness,
    Engagement,
    Conversion,
    Retention,
}

/// Where messages go.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Channel {
    /// 公众号消息
    OfficialAccount,
    /// 朋友圈广告
    Moments,
    /// 客服消息
    CustomerService,
}

macro_rules! string_enum {
    ($t:ty { $($v:ident => $s:literal),* }) => {
        impl $t {
            pub fn as_str(self) -> &'static str { match self { $(Self::$v => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some(Self::$v),)* _ => None } }
        }
    };
}
string_enum!(CampaignObjective { Awareness => "AWARENESS", Engagement => "ENGAGEMENT", Conversion => "CONVERSION", Retention => "RETENTION" });
string_enum!(Channel { OfficialAccount => "OFFICIAL_ACCOUNT", Moments => "MOMENTS", CustomerService => "CUSTOMER_SERVICE" });

/// At most `count` messages per member within `perHours`.
#[derive(SimpleObject, InputObject, Clone, Copy)]
#[graphql(input_name = "FrequencyCapInput")]
pub struct FrequencyCap {
    pub count: i32,
    pub per_hours: i32,
}

pub struct Campaign(pub campaign::Model);

#[Object]
impl Campaign {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn status(&self) -> CampaignStatus {
        Status::parse(&self.0.status)
            .unwrap_or(Status::Draft)
            .into()
    }
    async fn objective(&self) -> CampaignObjective {
        CampaignObjective::parse(&self.0.objective).unwrap_or(CampaignObjective::Engagement)
    }
    async fn channel(&self) -> Channel {
        Channel::parse(&self.0.channel).unwrap_or(Channel::OfficialAccount)
    }
    /// The audience; without one, every subscribed member who consented.
    async fn segment_id(&self) -> Option<ID> {
        self.0.segment_id.map(to_id)
    }
    async fn segment(&self, ctx: &Context<'_>) -> GqlResult<Option<Segment>> {
        let Some(id) = self.0.segment_id else {
            return Ok(None);
        };
        Ok(loader(ctx)?.load_one(SegmentById(id)).await?.map(Segment))
    }
    /// The contents delivered, in order.
    async fn contents(&self, ctx: &Context<'_>) -> GqlResult<Vec<Content>> {
        Ok(loader(ctx)?
            .load_one(ContentsOfCampaign(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Content)
            .collect())
    }
    /// Budget in CNY (元).
    async fn budget(&self) -> Option<f64> {
        self.0.budget_fen.map(|f| f as f64 / 100.0)
    }
    async fn frequency_cap(&self) -> FrequencyCap {
        FrequencyCap {
            count: self.0.frequency_cap_count,
            per_hours: self.0.frequency_cap_hours,
        }
    }
    async fn start_at(&self) -> Option<DateTime<Utc>> {
        self.0.start_at
    }
    async fn end_at(&self) -> Option<DateTime<Utc>> {
        self.0.end_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Only `name` is required; everything else has a default or can be set later.
#[derive(InputObject)]
pub struct CreateCampaignInput {
    pub name: String,
    /// Default ENGAGEMENT.
    pub objective: Option<CampaignObjective>,
    /// Default OFFICIAL_ACCOUNT.
    pub channel: Option<Channel>,
    pub segment_id: Option<ID>,
    pub content_ids: Option<Vec<ID>>,
    /// CNY (元), at most two decimals.
    pub budget: Option<f64>,
    /// Default: 1 per 24 hours.
    pub frequency_cap: Option<FrequencyCap>,
    pub end_at: Option<DateTime<Utc>>,
}

/// Fields left out stay as they are; `null` clears segmentId, budget or endAt.
#[derive(InputObject)]
pub struct UpdateCampaignInput {
    pub name: Option<String>,
    pub objective: Option<CampaignObjective>,
    pub channel: Option<Channel>,
    pub segment_id: MaybeUndefined<ID>,
    /// Replaces the list.
    pub content_ids: Option<Vec<ID>>,
    pub budget: MaybeUndefined<f64>,
    pub frequency_cap: Option<FrequencyCap>,
    pub end_at: MaybeUndefined<DateTime<Utc>>,
}

fn budget_fen(v: f64) -> AppResult<i64> {
    if !v.is_finite() || !(0.0..=1e10).contains(&v) {
        return Err(AppError::bad_input(
            "input.budget",
            "a non-negative amount in CNY",
        ));
    }
    let fen = (v * 100.0).round();
    if (fen / 100.0 - v).abs() > 1e-6 {
        return Err(AppError::bad_input(
            "input.budget",
            "at most two decimals (分)",
        ));
    }
    Ok(fen as i64)
}

fn validate_cap(cap: FrequencyCap) -> AppResult<FrequencyCap> {
    if !(1..=1000).contains(&cap.count) {
        return Err(AppError::bad_input(
            "input.frequencyCap.count",
            "between 1 and 1000",
        ));
    }
    if !(1..=24 * 365).contains(&cap.per_hours) {
        return Err(AppError::bad_input(
            "input.frequencyCap.perHours",
            "between 1 and 8760",
        ));
    }
    Ok(cap)
}

async fn check_segment(db: &impl ConnectionTrait, account_id: Uuid, id: &ID) -> AppResult<Uuid> {
    let id = parse_id(id, "input.segmentId")?;
    tenant::get::<segment::Entity>(db, account_id, id)
        .await
        .map_err(|e| match e {
            AppError::NotFound { .. } => {
                AppError::bad_input("input.segmentId", "no such segment in this account")
            }
            other => other,
        })?;
    Ok(id)
}

/// Replaces a campaign's content list after checking every id is ours.
async fn set_contents(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    campaign_id: Uuid,
    ids: &[ID],
) -> AppResult<()> {
    let mut parsed = Vec::with_capacity(ids.len());
    let mut seen = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let id = parse_id(id, &format!("input.contentIds[{i}]"))?;
        if seen.insert(id) {
            parsed.push(id);
        }
    }
    if parsed.len() > 50 {
        return Err(AppError::bad_input(
            "input.contentIds",
            "at most 50 contents",
        ));
    }
    let found = tenant::scoped::<content::Entity>(account_id)
        .filter(content::Column::Id.is_in(parsed.clone()))
        .count(db)
        .await?;
    if found as usize != parsed.len() {
        return Err(AppError::bad_input(
            "input.contentIds",
            "contains a content that is not in this account",
        ));
    }
    campaign_content::Entity::delete_many()
        .filter(campaign_content::Column::AccountId.eq(account_id))
        .filter(campaign_content::Column::CampaignId.eq(campaign_id))
        .exec(db)
        .await?;
    if !parsed.is_empty() {
        campaign_content::Entity::insert_many(parsed.iter().enumerate().map(|(i, c)| {
            campaign_content::ActiveModel {
                campaign_id: Set(campaign_id),
                content_id: Set(*c),
                account_id: Set(account_id),
                position: Set(i as i32),
            }
        }))
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// Moves a campaign to `to` if the machine allows it from its current
/// status. The update is conditional on the status read, so two racing
/// moves cannot both win.
async fn transition(
    ctx: &Context<'_>,
    id: &ID,
    to: Status,
    start_at: Option<DateTime<Utc>>,
) -> AppResult<campaign::Model> {
    let id = parse_id(id, "id")?;
    let account_id = ctx.tenant()?;
    let db = ctx.db();
    let c = tenant::get::<campaign::Entity>(db, account_id, id).await?;
    let from = Status::parse(&c.status).unwrap_or(Status::Draft);
    if !from.can_move_to(to) {
        return Err(AppError::bad_input(
            "id",
            format!(
                "a {} campaign cannot become {} / 状态不允许此操作",
                from.as_str(),
                to.as_str()
            ),
        ));
    }
    if let (Some(start), Some(end)) = (start_at, c.end_at)
        && end <= start
    {
        return Err(AppError::bad_input(
            "startAt",
            "must be before the campaign's endAt",
        ));
    }
    let now = Utc::now();
    let mut q = campaign::Entity::update_many()
        .col_expr(
            campaign::Column::Status,
            sea_orm::sea_query::Expr::value(to.as_str()),
        )
        .col_expr(
            campaign::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(campaign::Column::Id.eq(id))
        .filter(campaign::Column::AccountId.eq(account_id))
        .filter(campaign::Column::Status.eq(from.as_str()));
    if let Some(s) = start_at {
        q = q.col_expr(
            campaign::Column::StartAt,
            sea_orm::sea_query::Expr::value(s),
        );
    }
    if q.exec(db).await?.rows_affected == 0 {
        return Err(AppError::Conflict(
            "the campaign changed meanwhile; reload and retry / 活动已被修改".into(),
        ));
    }
    tracing::info!(campaign_id = %id, from = from.as_str(), to = to.as_str(), "campaign status changed");
    tenant::get::<campaign::Entity>(db, account_id, id).await
}

#[derive(Default)]
pub struct CampaignsQuery;

#[Object]
impl CampaignsQuery {
    /// The account's campaigns, newest first, optionally by status.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<CampaignStatus>,
    ) -> GqlResult<Conn<Campaign>> {
        let mut select = tenant::scoped::<campaign::Entity>(ctx.tenant()?);
        if let Some(s) = status {
            select = select.filter(campaign::Column::Status.eq(Status::from(s).as_str()));
        }
        Ok(paginate(
            ctx.db(),
            select,
            campaign::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            Campaign,
        )
        .await?)
    }

    /// One campaign; null when it does not exist in this account.
    async fn campaign(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Campaign>> {
        let id = parse_id(&id, "id")?;
        match tenant::get::<campaign::Entity>(ctx.db(), ctx.tenant()?, id).await {
            Ok(c) => Ok(Some(Campaign(c))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Default)]
pub struct CampaignsMutation;

#[Object]
impl CampaignsMutation {
    /// Creates a DRAFT campaign.
    async fn create_campaign(
        &self,
        ctx: &Context<'_>,
        input: CreateCampaignInput,
    ) -> GqlResult<Campaign> {
        let account_id = ctx.tenant()?;
        let name = required_text("input.name", &input.name, 128)?;
        let cap = validate_cap(input.frequency_cap.unwrap_or(FrequencyCap {
            count: 1,
            per_hours: 24,
        }))?;
        let budget = input.budget.map(budget_fen).transpose()?;
        let txn = worker::config::begin_write(ctx.db()).await?;
        let segment_id = match &input.segment_id {
            Some(s) => Some(check_segment(&txn, account_id, s).await?),
            None => None,
        };
        let now = Utc::now();
        if input.end_at.is_some_and(|e| e <= now) {
            return Err(AppError::bad_input("input.endAt", "must be in the future").into());
        }
        let c = campaign::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            name: Set(name),
            objective: Set(input
                .objective
                .unwrap_or(CampaignObjective::Engagement)
                .as_str()
                .to_owned()),
            channel: Set(input
                .channel
                .unwrap_or(Channel::OfficialAccount)
                .as_str()
                .to_owned()),
            status: Set(Status::Draft.as_str().to_owned()),
            segment_id: Set(segment_id),
            budget_fen: Set(budget),
            frequency_cap_count: Set(cap.count),
            frequency_cap_hours: Set(cap.per_hours),
            start_at: Set(None),
            end_at: Set(input.end_at),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        if let Some(ids) = &input.content_ids {
            set_contents(&txn, account_id, c.id, ids).await?;
        }
        txn.commit().await?;
        Ok(Campaign(c))
    }

    /// Changes settings; not allowed once COMPLETED or ARCHIVED.
    async fn update_campaign(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateCampaignInput,
    ) -> GqlResult<Campaign> {
        let account_id = ctx.tenant()?;
        let id = parse_id(&id, "id")?;
        let txn = worker::config::begin_write(ctx.db()).await?;
        let c = tenant::get::<campaign::Entity>(&txn, account_id, id).await?;
        let status = Status::parse(&c.status).unwrap_or(Status::Draft);
        if !status.editable() {
            return Err(AppError::bad_input(
                "id",
                format!(
                    "a {} campaign cannot be edited / 已结束的活动不可修改",
                    status.as_str()
                ),
            )
            .into());
        }
        let mut a = c.clone().into_active_model();
        if let Some(n) = &input.name {
            a.name = Set(required_text("input.name", n, 128)?);
        }
        if let Some(o) = input.objective {
            a.objective = Set(o.as_str().to_owned());
        }
        if let Some(ch) = input.channel {
            a.channel = Set(ch.as_str().to_owned());
        }
        match &input.segment_id {
            MaybeUndefined::Value(s) => {
                a.segment_id = Set(Some(check_segment(&txn, account_id, s).await?))
            }
            MaybeUndefined::Null => a.segment_id = Set(None),
            MaybeUndefined::Undefined => {}
        }
        match input.budget {
            MaybeUndefined::Value(b) => a.budget_fen = Set(Some(budget_fen(b)?)),
            MaybeUndefined::Null => a.budget_fen = Set(None),
            MaybeUndefined::Undefined => {}
        }
        if let Some(cap) = input.frequency_cap {
            let cap = validate_cap(cap)?;
            a.frequency_cap_count = Set(cap.count);
            a.frequency_cap_hours = Set(cap.per_hours);
        }
        match input.end_at {
            MaybeUndefined::Value(e) => {
                if e <= Utc::now() || c.start_at.is_some_and(|s| e <= s) {
                    return Err(AppError::bad_input(
                        "input.endAt",
                        "must be in the future and after startAt",
                    )
                    .into());
                }
                a.end_at = Set(Some(e));
            }
            MaybeUndefined::Null => a.end_at = Set(None),
            MaybeUndefined::Undefined => {}
        }
        if let Some(ids) = &input.content_ids {
            set_contents(&txn, account_id, id, ids).await?;
        }
        a.updated_at = Set(Utc::now());
        let c = a.update(&txn).await?;
        txn.commit().await?;
        Ok(Campaign(c))
    }

    /// DRAFT → SCHEDULED; it starts RUNNING at `startAt`.
    async fn schedule_campaign(
        &self,
        ctx: &Context<'_>,
        id: ID,
        start_at: DateTime<Utc>,
    ) -> GqlResult<Campaign> {
        Ok(Campaign(
            transition(ctx, &id, Status::Scheduled, Some(start_at)).await?,
        ))
    }

    /// RUNNING → PAUSED.
    async fn pause_campaign(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Campaign> {
        Ok(Campaign(transition(ctx, &id, Status::Paused, None).await?))
    }

    /// PAUSED → RUNNING.
    async fn resume_campaign(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Campaign> {
        Ok(Campaign(transition(ctx, &id, Status::Running, None).await?))
    }

    /// RUNNING or PAUSED → COMPLETED.
    async fn complete_campaign(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Campaign> {
        Ok(Campaign(
            transition(ctx, &id, Status::Completed, None).await?,
        ))
    }

    /// Any status → ARCHIVED.
    async fn archive_campaign(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Campaign> {
        Ok(Campaign(
            transition(ctx, &id, Status::Archived, None).await?,
        ))
    }
}
