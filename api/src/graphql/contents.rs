//! Contents and their copy variants.
use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use entity::{content, content_variant};
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::{
    connection::{Conn, PageArgs, paginate},
    loaders::{VariantsOfContent, loader},
    parse_id, required_text, to_id,
};
use crate::{
    context::ContextExt,
    error::{AppError, AppResult, GqlResult},
    tenant,
};

pub struct Content(pub content::Model);

#[Object]
impl Content {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// Interest categories the content is about.
    async fn categories(&self) -> Vec<String> {
        serde_json::from_value(self.0.categories.clone()).unwrap_or_default()
    }
    /// Copy variants, oldest first.
    async fn variants(&self, ctx: &Context<'_>) -> GqlResult<Vec<Variant>> {
        Ok(loader(ctx)?
            .load_one(VariantsOfContent(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Variant)
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A copy variant: written by hand or generated; only approved ones are sent.
pub struct Variant(pub content_variant::Model);

#[Object(name = "ContentVariant")]
impl Variant {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    async fn approved(&self) -> bool {
        self.0.approved
    }
    /// Probability that readers take it positively, once analysed.
    async fn sentiment(&self) -> Option<f64> {
        self.0.sentiment
    }
    /// MANUAL or GENERATED.
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct CreateContentInput {
    pub title: String,
    pub body: String,
    /// Interest categories (names from the taxonomy).
    pub categories: Option<Vec<String>>,
    /// Hand-written variants, stored as approved.
    pub variants: Option<Vec<String>>,
}

fn categories(list: Option<Vec<String>>) -> AppResult<serde_json::Value> {
    let list = list.unwrap_or_default();
    if list.len() > 20 {
        return Err(AppError::bad_input("input.categories", "at most 20"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let c = required_text(&format!("input.categories[{i}]"), c, 32)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(json!(out))
}

pub fn new_variant(
    account_id: Uuid,
    content_id: Uuid,
    text: String,
    approved: bool,
    source: &str,
) -> content_variant::ActiveModel {
    content_variant::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        content_id: Set(content_id),
        text: Set(text),
        approved: Set(approved),
        sentiment: Set(None),
        source: Set(source.to_owned()),
        model_version: Set(None),
        created_at: Set(Utc::now()),
    }
}

#[derive(Default)]
pub struct ContentsQuery;

#[Object]
impl ContentsQuery {
    /// The account's contents, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn contents(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Conn<Content>> {
        let select = tenant::scoped::<content::Entity>(ctx.tenant()?);
        Ok(paginate(
            ctx.db(),
            select,
            content::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            Content,
        )
        .await?)
    }

    /// One content; null when it does not exist in this account.
    async fn content(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Content>> {
        let id = parse_id(&id, "id")?;
        match tenant::get::<content::Entity>(ctx.db(), ctx.tenant()?, id).await {
            Ok(c) => Ok(Some(Content(c))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Default)]
pub struct ContentsMutation;

#[Object]
impl ContentsMutation {
    /// Creates a content; only `title` and `body` are required.
    async fn create_content(
        &self,
        ctx: &Context<'_>,
        input: CreateContentInput,
    ) -> GqlResult<Content> {
        let account_id = ctx.tenant()?;
        let title = required_text("input.title", &input.title, 128)?;
        let body = required_text("input.body", &input.body, 20_000)?;
        let cats = categories(input.categories)?;
        let variants = input
            .variants
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, v)| required_text(&format!("input.variants[{i}]"), v, 2000))
            .collect::<AppResult<Vec<_>>>()?;
        let now = Utc::now();
        let txn = worker::config::begin_write(ctx.db()).await?;
        let c = content::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            title: Set(title),
            body: Set(body),
            categories: Set(cats),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        for v in variants {
            new_variant(account_id, c.id, v, true, "MANUAL")
                .insert(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(Content(c))
    }

    /// Adds a hand-written variant (approved) to a content.
    async fn add_content_variant(
        &self,
        ctx: &Context<'_>,
        content_id: ID,
        text: String,
    ) -> GqlResult<Variant> {
        let account_id = ctx.tenant()?;
        let content_id = parse_id(&content_id, "contentId")?;
        tenant::get::<content::Entity>(ctx.db(), account_id, content_id).await?;
        let text = required_text("text", &text, 2000)?;
        Ok(Variant(
            new_variant(account_id, content_id, text, true, "MANUAL")
                .insert(ctx.db())
                .await?,
        ))
    }

    /// Approves (or withdraws) a variant for delivery.
    async fn approve_content_variant(
        &self,
        ctx: &Context<'_>,
        id: ID,
        approved: bool,
    ) -> GqlResult<Variant> {
        let id = parse_id(&id, "id")?;
        let v = tenant::get::<content_variant::Entity>(ctx.db(), ctx.tenant()?, id).await?;
        let mut a = v.into_active_model();
        a.approved = Set(approved);
        Ok(Variant(a.update(ctx.db()).await?))
    }
}
