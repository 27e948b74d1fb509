//! Per-request DataLoaders, so nested lists cost one query per level, not
//! one per row. Each is scoped to the caller's account.
use std::collections::HashMap;

use async_graphql::{
    Context,
    dataloader::{DataLoader, Loader},
};
use entity::{campaign_content, content, content_variant, persona, segment};
use sea_orm::{ColumnTrait, DatabaseConnection, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::{
    error::{AppError, GqlError},
    tenant::scoped,
};

pub struct Loaders {
    pub db: DatabaseConnection,
    pub account_id: Uuid,
}

pub type AppLoader = DataLoader<Loaders>;

pub fn loader<'a>(ctx: &'a Context<'_>) -> Result<&'a AppLoader, GqlError> {
    ctx.data_opt::<AppLoader>()
        .ok_or_else(|| AppError::Unauthenticated.into())
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentsOfCampaign(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VariantsOfContent(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PersonaOfMember(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentById(pub Uuid);

impl Loader<ContentsOfCampaign> for Loaders {
    type Value = Vec<content::Model>;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[ContentsOfCampaign],
    ) -> Result<HashMap<ContentsOfCampaign, Self::Value>, Self::Error> {
        let links = scoped::<campaign_content::Entity>(self.account_id)
            .filter(campaign_content::Column::CampaignId.is_in(keys.iter().map(|k| k.0)))
            .order_by_asc(campaign_content::Column::Position)
            .all(&self.db)
            .await?;
        let contents: HashMap<Uuid, content::Model> = scoped::<content::Entity>(self.account_id)
            .filter(content::Column::Id.is_in(links.iter().map(|l| l.content_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut out: HashMap<ContentsOfCampaign, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for l in links {
            if let (Some(list), Some(c)) = (
                out.get_mut(&ContentsOfCampaign(l.campaign_id)),
                contents.get(&l.content_id),
            ) {
                list.push(c.clone());
            }
        }
        Ok(out)
    }
}

impl Loader<VariantsOfContent> for Loaders {
    type Value = Vec<content_variant::Model>;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[VariantsOfContent],
    ) -> Result<HashMap<VariantsOfContent, Self::Value>, Self::Error> {
        let rows = scoped::<content_variant::Entity>(self.account_id)
            .filter(content_variant::Column::ContentId.is_in(keys.iter().map(|k| k.0)))
            .order_by_asc(content_variant::Column::Id)
            .all(&self.db)
            .await?;
        let mut out: HashMap<VariantsOfContent, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for r in rows {
            out.entry(VariantsOfContent(r.content_id))
                .or_default()
                .push(r);
        }
        Ok(out)
    }
}

impl Loader<PersonaOfMember> for Loaders {
    type Value = persona::Model;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[PersonaOfMember],
    ) -> Result<HashMap<PersonaOfMember, Self::Value>, Self::Error> {
        Ok(scoped::<persona::Entity>(self.account_id)
            .filter(persona::Column::MemberId.is_in(keys.iter().map(|k| k.0)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (PersonaOfMember(p.member_id), p))
            .collect())
    }
}

impl Loader<SegmentById> for Loaders {
    type Value = segment::Model;
    type Error = GqlError;

    async fn load(
        &self,
        keys: &[SegmentById],
    ) -> Result<HashMap<SegmentById, Self::Value>, Self::Error> {
        Ok(scoped::<segment::Entity>(self.account_id)
            .filter(segment::Column::Id.is_in(keys.iter().map(|k| k.0)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| (SegmentById(s.id), s))
            .collect())
    }
}
