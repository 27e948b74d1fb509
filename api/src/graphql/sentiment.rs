//! A brand's own sentiment labels: corrections of analysed messages and
//! imported labelled texts ("sentiment examples"). `RETRAIN_SENTIMENT` with
//! `{ "accountExamples": true }` trains a head for the account on them.
use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::sentiment_example;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use worker::sentiment::examples::ExampleLabel;

use super::{
    analysis::SentimentLabel,
    audiences::MemberMessage,
    connection::{Conn, PageArgs, paginate},
    imports::{ImportInput, ImportResult, run_import},
    parse_id, to_id,
};
use crate::{
    context::ContextExt,
    error::{AppError, GqlResult},
    service::{self, imports::sentiment_examples::SentimentExamplesImport},
    tenant,
};

impl From<SentimentLabel> for ExampleLabel {
    fn from(l: SentimentLabel) -> Self {
        match l {
            SentimentLabel::Positive => ExampleLabel::Positive,
            SentimentLabel::Negative => ExampleLabel::Negative,
            SentimentLabel::Neutral => ExampleLabel::Neutral,
        }
    }
}

impl SentimentLabel {
    /// From a stored label.
    pub fn parse(s: &str) -> Option<SentimentLabel> {
        match ExampleLabel::parse(s)? {
            ExampleLabel::Positive => Some(SentimentLabel::Positive),
            ExampleLabel::Negative => Some(SentimentLabel::Negative),
            ExampleLabel::Neutral => Some(SentimentLabel::Neutral),
        }
    }
}

pub struct SentimentExample(pub sentiment_example::Model);

#[Object]
impl SentimentExample {
    async fn id(&self) -> async_graphql::ID {
        to_id(self.0.id)
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    async fn label(&self) -> Option<SentimentLabel> {
        SentimentLabel::parse(&self.0.label)
    }
    /// CORRECTION (a message's label set by a person) or IMPORT.
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// The corrected message, for corrections.
    async fn message_id(&self) -> Option<async_graphql::ID> {
        self.0.message_id.map(to_id)
    }
    /// True when the example is in the share held out to compare heads
    /// (by a hash of its text: it stays there across retrains).
    async fn held_out(&self) -> bool {
        worker::sentiment::examples::is_validation(&self.0.text)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// The order of `sentimentReviewQueue`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum ReviewOrder {
    /// Score nearest 0.5 first.
    #[default]
    LeastSure,
    /// A stable pseudo-random draw.
    Sample,
}

/// How many examples of each label the account has.
#[derive(SimpleObject)]
pub struct SentimentExampleCounts {
    pub positive: u64,
    pub negative: u64,
    pub neutral: u64,
    /// POSITIVE and NEGATIVE examples each needed to retrain.
    pub needed_per_label: u64,
}

#[derive(Default)]
pub struct SentimentQuery;

#[Object]
impl SentimentQuery {
    /// The account's sentiment examples, newest first.
    async fn sentiment_examples(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        label: Option<SentimentLabel>,
    ) -> GqlResult<Conn<SentimentExample>> {
        let mut select = tenant::scoped::<sentiment_example::Entity>(ctx.tenant()?);
        if let Some(l) = label {
            select =
                select.filter(sentiment_example::Column::Label.eq(ExampleLabel::from(l).as_str()));
        }
        Ok(paginate(
            ctx.db(),
            select,
            sentiment_example::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            SentimentExample,
        )
        .await?)
    }

    /// Analysed messages worth labelling, one per distinct text; texts that
    /// are already examples are left out. `LEAST_SURE` (default): score
    /// nearest 0.5, the shown labels most often wrong. `SAMPLE`: a stable
    /// pseudo-random draw, which teaches a retrained head as much or more
    /// per label.
    async fn sentiment_review_queue(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        #[graphql(default)] order: ReviewOrder,
    ) -> GqlResult<Vec<MemberMessage>> {
        if !(1..=100).contains(&first) {
            return Err(AppError::bad_input("first", "between 1 and 100").into());
        }
        let order = match order {
            ReviewOrder::LeastSure => service::sentiment::ReviewOrder::LeastSure,
            ReviewOrder::Sample => service::sentiment::ReviewOrder::Sample,
        };
        let rows = service::sentiment::review_queue(ctx.db(), ctx.tenant()?, first as usize, order)
            .await?;
        Ok(rows.into_iter().map(MemberMessage).collect())
    }

    /// Examples per label.
    async fn sentiment_example_counts(
        &self,
        ctx: &Context<'_>,
    ) -> GqlResult<SentimentExampleCounts> {
        let c = service::sentiment::example_counts(ctx.db(), ctx.tenant()?).await?;
        Ok(SentimentExampleCounts {
            positive: c.positive as u64,
            negative: c.negative as u64,
            neutral: c.neutral as u64,
            needed_per_label: worker::sentiment::examples::MIN_PER_CLASS as u64,
        })
    }
}

#[derive(Default)]
pub struct SentimentMutation;

#[Object]
impl SentimentMutation {
    /// Sets the sentiment label of a message (null clears it): the message
    /// shows it instead of the model's, and it becomes one of the
    /// account's sentiment examples.
    async fn correct_message_sentiment(
        &self,
        ctx: &Context<'_>,
        id: async_graphql::ID,
        label: Option<SentimentLabel>,
    ) -> GqlResult<MemberMessage> {
        let id = parse_id(&id, "id")?;
        let account = ctx.tenant()?;
        let m = service::sentiment::correct(ctx.db(), account, id, label.map(Into::into)).await?;
        Ok(MemberMessage(m))
    }

    /// Labelled texts (`label,text`; label POSITIVE, NEGATIVE, NEUTRAL or
    /// 1 / 0), upserted by text.
    async fn import_sentiment_examples(
        &self,
        ctx: &Context<'_>,
        input: ImportInput,
    ) -> GqlResult<ImportResult> {
        run_import(
            ctx,
            SentimentExamplesImport {
                account_id: ctx.tenant()?,
            },
            input,
            "sentiment examples",
        )
        .await
    }

    /// Forgets one example (a correction's message keeps its label).
    async fn delete_sentiment_example(
        &self,
        ctx: &Context<'_>,
        id: async_graphql::ID,
    ) -> GqlResult<bool> {
        let id = parse_id(&id, "id")?;
        let account = ctx.tenant()?;
        tenant::get::<sentiment_example::Entity>(ctx.db(), account, id).await?;
        sentiment_example::Entity::delete_by_id(id)
            .exec(ctx.db())
            .await?;
        Ok(true)
    }
}
