//! A brand's Official Account: the tenant.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "account")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub wechat_app_id: Option<String>,
    /// Never returned by the API.
    pub wechat_app_secret: Option<String>,
    /// Never returned by the API.
    pub wechat_token: Option<String>,
    /// Never returned by the API.
    pub wechat_aes_key: Option<String>,
    /// PLAIN | COMPAT | SAFE
    pub wechat_mode: Option<String>,
    /// The interest taxonomy; null means the default one.
    pub taxonomy: Option<Json>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
