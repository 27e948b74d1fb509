//! The core data model: tenants, keys, audiences, campaigns, content, jobs.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).uuid().not_null().primary_key().take()
}
fn uuid(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).uuid().not_null().take()
}
fn uuid_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).uuid().null().take()
}
fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().take()
}
fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().take()
}
fn long_text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().take()
}
fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .take()
}
fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().null().take()
}
fn json(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).json_binary().not_null().take()
}
fn json_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).json_binary().null().take()
}
fn float(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).double().not_null().take()
}
fn float_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).double().null().take()
}
fn int(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).integer().not_null().take()
}
fn int_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).integer().null().take()
}
fn boolean(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).boolean().not_null().take()
}
fn bytes_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).blob().null().take()
}

fn index(
    name: &str,
    table: impl IntoIden + Clone,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table).if_not_exists();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    if unique {
        idx.unique();
    }
    idx.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table(Account::Table)
                .col(id(Account::Id))
                .col(text(Account::Name))
                .col(text_null(Account::WechatAppId))
                .col(text_null(Account::WechatAppSecret))
                .col(text_null(Account::WechatToken))
                .col(text_null(Account::WechatAesKey))
                .col(text_null(Account::WechatMode))
                .col(json_null(Account::Taxonomy))
                .col(ts(Account::CreatedAt))
                .take(),
            Table::create()
                .table(ApiKey::Table)
                .col(id(ApiKey::Id))
                .col(uuid(ApiKey::AccountId))
                .col(text(ApiKey::Name))
                .col(text(ApiKey::Role))
                .col(boolean(ApiKey::Operator))
                .col(text(ApiKey::SecretHash))
                .col(ts(ApiKey::CreatedAt))
                .col(ts_null(ApiKey::RevokedAt))
                .take(),
            Table::create()
                .table(Member::Table)
                .col(id(Member::Id))
                .col(uuid(Member::AccountId))
                .col(text(Member::Openid))
                .col(text_null(Member::Unionid))
                .col(text_null(Member::Nickname))
                .col(text(Member::Gender))
                .col(int_null(Member::Age))
                .col(text_null(Member::City))
                .col(text_null(Member::Province))
                .col(json(Member::Tags))
                .col(boolean(Member::Subscribed))
                .col(boolean(Member::Consent))
                .col(ts_null(Member::SubscribedAt))
                .col(ts(Member::CreatedAt))
                .col(ts(Member::UpdatedAt))
                .take(),
            Table::create()
                .table(Event::Table)
                .col(id(Event::Id))
                .col(uuid(Event::AccountId))
                .col(uuid(Event::MemberId))
                .col(text(Event::Kind))
                .col(ts(Event::At))
                .col(uuid_null(Event::ContentId))
                .col(uuid_null(Event::CampaignId))
                .col(float_null(Event::Value))
                .col(text(Event::NaturalKey))
                .col(ts(Event::CreatedAt))
                .take(),
            Table::create()
                .table(Message::Table)
                .col(id(Message::Id))
                .col(uuid(Message::AccountId))
                .col(uuid(Message::MemberId))
                .col(text(Message::Kind))
                .col(long_text(Message::Text))
                .col(ts(Message::At))
                .col(uuid_null(Message::ContentId))
                .col(text(Message::NaturalKey))
                .col(float_null(Message::Sentiment))
                .col(text_null(Message::SentimentLabel))
                .col(bytes_null(Message::Embedding))
                .col(json_null(Message::Keywords))
                .col(ts_null(Message::AnalyzedAt))
                .col(ts(Message::CreatedAt))
                .take(),
            Table::create()
                .table(Relation::Table)
                .col(id(Relation::Id))
                .col(uuid(Relation::AccountId))
                .col(uuid(Relation::MemberId))
                .col(text(Relation::FriendOpenid))
                .col(ts(Relation::CreatedAt))
                .take(),
            Table::create()
                .table(Persona::Table)
                .col(id(Persona::MemberId))
                .col(uuid(Persona::AccountId))
                .col(json(Persona::Interests))
                .col(json(Persona::Keywords))
                .col(bytes_null(Persona::Embedding))
                .col(text_null(Persona::EmbeddingModel))
                .col(float_null(Persona::Sentiment))
                .col(float_null(Persona::SentimentTrend))
                .col(float(Persona::Activity))
                .col(int(Persona::Degree))
                .col(int(Persona::TwoHopReach))
                .col(float(Persona::Influence))
                .col(ts_null(Persona::LastActiveAt))
                .col(ts(Persona::UpdatedAt))
                .take(),
            Table::create()
                .table(Segment::Table)
                .col(id(Segment::Id))
                .col(uuid(Segment::AccountId))
                .col(text(Segment::Name))
                .col(json(Segment::Filter))
                .col(ts(Segment::CreatedAt))
                .col(ts(Segment::UpdatedAt))
                .take(),
            Table::create()
                .table(Campaign::Table)
                .col(id(Campaign::Id))
                .col(uuid(Campaign::AccountId))
                .col(text(Campaign::Name))
                .col(text(Campaign::Objective))
                .col(text(Campaign::Channel))
                .col(text(Campaign::Status))
                .col(uuid_null(Campaign::SegmentId))
                .col(ColumnDef::new(Campaign::BudgetFen).big_integer().null())
                .col(int(Campaign::FrequencyCapCount))
                .col(int(Campaign::FrequencyCapHours))
                .col(ts_null(Campaign::StartAt))
                .col(ts_null(Campaign::EndAt))
                .col(ts(Campaign::CreatedAt))
                .col(ts(Campaign::UpdatedAt))
                .take(),
            Table::create()
                .table(CampaignContent::Table)
                .col(uuid(CampaignContent::CampaignId))
                .col(uuid(CampaignContent::ContentId))
                .col(uuid(CampaignContent::AccountId))
                .col(int(CampaignContent::Position))
                .primary_key(
                    Index::create()
                        .col(CampaignContent::CampaignId)
                        .col(CampaignContent::ContentId),
                )
                .take(),
            Table::create()
                .table(Content::Table)
                .col(id(Content::Id))
                .col(uuid(Content::AccountId))
                .col(text(Content::Title))
                .col(long_text(Content::Body))
                .col(json(Content::Categories))
                .col(ts(Content::CreatedAt))
                .col(ts(Content::UpdatedAt))
                .take(),
            Table::create()
                .table(ContentVariant::Table)
                .col(id(ContentVariant::Id))
                .col(uuid(ContentVariant::AccountId))
                .col(uuid(ContentVariant::ContentId))
                .col(long_text(ContentVariant::Text))
                .col(boolean(ContentVariant::Approved))
                .col(float_null(ContentVariant::Sentiment))
                .col(text(ContentVariant::Source))
                .col(text_null(ContentVariant::ModelVersion))
                .col(ts(ContentVariant::CreatedAt))
                .take(),
            Table::create()
                .table(Delivery::Table)
                .col(id(Delivery::Id))
                .col(uuid(Delivery::AccountId))
                .col(uuid(Delivery::CampaignId))
                .col(uuid(Delivery::MemberId))
                .col(uuid_null(Delivery::ContentId))
                .col(uuid_null(Delivery::VariantId))
                .col(text(Delivery::IdempotencyKey))
                .col(text(Delivery::Status))
                .col(float_null(Delivery::Score))
                .col(text_null(Delivery::Error))
                .col(ts_null(Delivery::SentAt))
                .col(ts(Delivery::CreatedAt))
                .take(),
            Table::create()
                .table(ModelVersion::Table)
                .col(id(ModelVersion::Id))
                .col(uuid_null(ModelVersion::AccountId))
                .col(text(ModelVersion::Kind))
                .col(text(ModelVersion::Version))
                .col(text(ModelVersion::Path))
                .col(text(ModelVersion::Sha256))
                .col(json(ModelVersion::Metrics))
                .col(boolean(ModelVersion::Active))
                .col(ts(ModelVersion::CreatedAt))
                .take(),
            Table::create()
                .table(JobRun::Table)
                .col(id(JobRun::Id))
                .col(uuid(JobRun::AccountId))
                .col(text(JobRun::Kind))
                .col(text(JobRun::Status))
                .col(json(JobRun::Params))
                .col(json_null(JobRun::Result))
                .col(text_null(JobRun::Error))
                .col(float(JobRun::Progress))
                .col(int(JobRun::Attempts))
                .col(ts(JobRun::RunAt))
                .col(ts(JobRun::CreatedAt))
                .col(ts_null(JobRun::StartedAt))
                .col(ts_null(JobRun::FinishedAt))
                .take(),
        ];
        for mut t in tables {
            m.create_table(t.if_not_exists().take()).await?;
        }

        let indexes = [
            index(
                "ux_api_key_secret_hash",
                ApiKey::Table,
                &["secret_hash"],
                true,
            ),
            index(
                "ix_api_key_account",
                ApiKey::Table,
                &["account_id", "id"],
                false,
            ),
            index(
                "ux_member_openid",
                Member::Table,
                &["account_id", "openid"],
                true,
            ),
            index(
                "ix_member_account",
                Member::Table,
                &["account_id", "id"],
                false,
            ),
            index(
                "ux_event_natural",
                Event::Table,
                &["account_id", "natural_key"],
                true,
            ),
            index("ix_event_member", Event::Table, &["member_id", "at"], false),
            index(
                "ix_event_campaign",
                Event::Table,
                &["campaign_id", "kind"],
                false,
            ),
            index(
                "ux_message_natural",
                Message::Table,
                &["account_id", "natural_key"],
                true,
            ),
            index(
                "ix_message_member",
                Message::Table,
                &["member_id", "at"],
                false,
            ),
            index("ix_message_content", Message::Table, &["content_id"], false),
            index(
                "ux_relation_edge",
                Relation::Table,
                &["account_id", "member_id", "friend_openid"],
                true,
            ),
            index(
                "ix_relation_friend",
                Relation::Table,
                &["account_id", "friend_openid"],
                false,
            ),
            index(
                "ix_persona_account",
                Persona::Table,
                &["account_id", "member_id"],
                false,
            ),
            index(
                "ix_segment_account",
                Segment::Table,
                &["account_id", "id"],
                false,
            ),
            index(
                "ix_campaign_account",
                Campaign::Table,
                &["account_id", "status", "id"],
                false,
            ),
            index(
                "ix_campaign_content_content",
                CampaignContent::Table,
                &["content_id"],
                false,
            ),
            index(
                "ix_content_account",
                Content::Table,
                &["account_id", "id"],
                false,
            ),
            index(
                "ix_variant_content",
                ContentVariant::Table,
                &["content_id", "id"],
                false,
            ),
            index(
                "ux_delivery_key",
                Delivery::Table,
                &["account_id", "idempotency_key"],
                true,
            ),
            index(
                "ix_delivery_campaign",
                Delivery::Table,
                &["campaign_id", "status"],
                false,
            ),
            index(
                "ix_delivery_member",
                Delivery::Table,
                &["member_id", "created_at"],
                false,
            ),
            index(
                "ix_model_version_kind",
                ModelVersion::Table,
                &["kind", "account_id", "active"],
                false,
            ),
            index(
                "ix_job_run_account",
                JobRun::Table,
                &["account_id", "status", "id"],
                false,
            ),
        ];
        for idx in indexes {
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Account::Table.into_iden(),
            ApiKey::Table.into_iden(),
            Member::Table.into_iden(),
            Event::Table.into_iden(),
            Message::Table.into_iden(),
            Relation::Table.into_iden(),
            Persona::Table.into_iden(),
            Segment::Table.into_iden(),
            Campaign::Table.into_iden(),
            CampaignContent::Table.into_iden(),
            Content::Table.into_iden(),
            ContentVariant::Table.into_iden(),
            Delivery::Table.into_iden(),
            ModelVersion::Table.into_iden(),
            JobRun::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().take())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Account {
    Table,
    Id,
    Name,
    WechatAppId,
    WechatAppSecret,
    WechatToken,
    WechatAesKey,
    WechatMode,
    Taxonomy,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum ApiKey {
    Table,
    Id,
    AccountId,
    Name,
    Role,
    Operator,
    SecretHash,
    CreatedAt,
    RevokedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Member {
    Table,
    Id,
    AccountId,
    Openid,
    Unionid,
    Nickname,
    Gender,
    Age,
    City,
    Province,
    Tags,
    Subscribed,
    Consent,
    SubscribedAt,
    CreatedAt,
    UpdatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Event {
    Table,
    Id,
    AccountId,
    MemberId,
    Kind,
    At,
    ContentId,
    CampaignId,
    Value,
    NaturalKey,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Message {
    Table,
    Id,
    AccountId,
    MemberId,
    Kind,
    Text,
    At,
    ContentId,
    NaturalKey,
    Sentiment,
    SentimentLabel,
    Embedding,
    Keywords,
    AnalyzedAt,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Relation {
    Table,
    Id,
    AccountId,
    MemberId,
    FriendOpenid,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Persona {
    Table,
    MemberId,
    AccountId,
    Interests,
    Keywords,
    Embedding,
    EmbeddingModel,
    Sentiment,
    SentimentTrend,
    Activity,
    Degree,
    TwoHopReach,
    Influence,
    LastActiveAt,
    UpdatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Segment {
    Table,
    Id,
    AccountId,
    Name,
    Filter,
    CreatedAt,
    UpdatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Campaign {
    Table,
    Id,
    AccountId,
    Name,
    Objective,
    Channel,
    Status,
    SegmentId,
    BudgetFen,
    FrequencyCapCount,
    FrequencyCapHours,
    StartAt,
    EndAt,
    CreatedAt,
    UpdatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum CampaignContent {
    Table,
    CampaignId,
    ContentId,
    AccountId,
    Position,
}
#[derive(DeriveIden, Clone, Copy)]
enum Content {
    Table,
    Id,
    AccountId,
    Title,
    Body,
    Categories,
    CreatedAt,
    UpdatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum ContentVariant {
    Table,
    Id,
    AccountId,
    ContentId,
    Text,
    Approved,
    Sentiment,
    Source,
    ModelVersion,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum Delivery {
    Table,
    Id,
    AccountId,
    CampaignId,
    MemberId,
    ContentId,
    VariantId,
    IdempotencyKey,
    Status,
    Score,
    Error,
    SentAt,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum ModelVersion {
    Table,
    Id,
    AccountId,
    Kind,
    Version,
    Path,
    Sha256,
    Metrics,
    Active,
    CreatedAt,
}
#[derive(DeriveIden, Clone, Copy)]
enum JobRun {
    Table,
    Id,
    AccountId,
    Kind,
    Status,
    Params,
    Result,
    Error,
    Progress,
    Attempts,
    RunAt,
    CreatedAt,
    StartedAt,
    FinishedAt,
}
