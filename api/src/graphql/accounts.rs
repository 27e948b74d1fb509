//! Accounts (tenants), API keys, WeChat settings and the viewer.
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{account, api_key};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use uuid::Uuid;

use super::{
    connection::{Conn, PageArgs, paginate},
    parse_id, required_text, to_id,
};
use crate::{
    auth::{self, Role},
    context::ContextExt,
    error::{AppError, GqlResult},
    tenant,
};

/// A brand's Official Account.
pub struct Account(pub account::Model);

#[Object]
impl Account {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// WeChat settings; secrets are never readable back.
    async fn wechat(&self) -> WechatSettings {
        WechatSettings {
            app_id: self.0.wechat_app_id.clone(),
            mode: self.0.wechat_mode.as_deref().and_then(WechatMode::parse),
            configured: self.0.wechat_app_id.is_some() && self.0.wechat_token.is_some(),
        }
    }
}

#[derive(SimpleObject)]
pub struct WechatSettings {
    pub app_id: Option<String>,
    pub mode: Option<WechatMode>,
    /// True once appId, secret and token are set.
    pub configured: bool,
}

/// Message encryption of the WeChat callback.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WechatMode {
    /// 明文模式
    Plain,
    /// 兼容模式
    Compat,
    /// 安全模式
    Safe,
}

impl WechatMode {
    fn as_str(self) -> &'static str {
        match self {
            WechatMode::Plain => "PLAIN",
            WechatMode::Compat => "COMPAT",
            WechatMode::Safe => "SAFE",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [WechatMode::Plain, WechatMode::Compat, WechatMode::Safe]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Who is calling.
pub struct Viewer {
    account: account::Model,
    role: Role,
    key_id: Uuid,
    operator: bool,
}

#[Object]
impl Viewer {
    async fn account(&self) -> Account {
        Account(self.account.clone())
    }
    async fn role(&self) -> Role {
        self.role
    }
    async fn key_id(&self) -> ID {
        to_id(self.key_id)
    }
    /// The platform operator may create accounts.
    async fn operator(&self) -> bool {
        self.operator
    }
}

/// An API key; its secret is shown only once, at creation.
pub struct ApiKey(pub api_key::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn role(&self) -> Role {
        Role::parse(&self.0.role).unwrap_or(Role::Integration)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

#[derive(SimpleObject)]
pub struct NewApiKey {
    pub key: ApiKey,
    /// Shown once; store it now. 仅显示一次。
    pub secret: String,
}

#[derive(SimpleObject)]
pub struct NewAccount {
    pub account: Account,
    /// The new account's first ADMIN key; shown once.
    pub admin_key: String,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    pub role: Role,
}

#[derive(InputObject)]
pub struct CreateAccountInput {
    pub name: String,
}

#[derive(InputObject)]
pub struct WechatConfigInput {
    pub app_id: String,
    pub app_secret: String,
    /// The callback token (3–32 letters or digits).
    pub token: String,
    /// EncodingAESKey (43 characters); required for COMPAT and SAFE.
    pub encoding_aes_key: Option<String>,
    pub mode: WechatMode,
}

#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The caller's account and role.
    async fn viewer(&self, ctx: &Context<'_>) -> GqlResult<Viewer> {
        let p = ctx.principal()?;
        let account = account::Entity::find_by_id(p.account_id)
            .one(ctx.db())
            .await?
            .ok_or(AppError::Unauthenticated)?;
        Ok(Viewer {
            account,
            role: p.role,
            key_id: p.key_id,
            operator: p.operator,
        })
    }

    /// The account's API keys (ADMIN only), oldest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]

    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Conn<ApiKey>> {
        let select = tenant::scoped::<api_key::Entity>(ctx.tenant()?);
        Ok(paginate(
            ctx.db(),
            select,
            api_key::Column::Id,
            PageArgs::new(first, after)?,
            false,
            |m| m.id,
            ApiKey,
        )
        .await?)
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// Creates a tenant and its first ADMIN key (platform operator only).
    async fn create_account(
        &self,
        ctx: &Context<'_>,
        input: CreateAccountInput,
    ) -> GqlResult<NewAccount> {
        let name = required_text("input.name", &input.name, 64)?;
        let txn = worker::config::begin_write(ctx.db()).await?;
        let account = account::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name),
            wechat_app_id: Set(None),
            wechat_app_secret: Set(None),
            wechat_token: Set(None),
            wechat_aes_key: Set(None),
            wechat_mode: Set(None),
            taxonomy: Set(None),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await?;
        let secret = auth::new_secret();
        auth::insert_key(&txn, account.id, "admin", Role::Admin, false, &secret).await?;
        worker::jobs::recurring::ensure_builtin(&txn, Some(account.id)).await?;
        txn.commit().await?;
        Ok(NewAccount {
            account: Account(account),
            admin_key: secret,
        })
    }

    /// Creates an API key in the caller's account (ADMIN only).
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> GqlResult<NewApiKey> {
        let name = required_text("input.name", &input.name, 64)?;
        let secret = auth::new_secret();
        let key =
            auth::insert_key(ctx.db(), ctx.tenant()?, &name, input.role, false, &secret).await?;
        Ok(NewApiKey {
            key: ApiKey(key),
            secret,
        })
    }

    /// Revokes a key of the caller's account; it stops working at once.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let id = parse_id(&id, "id")?;
        let key = tenant::get::<api_key::Entity>(ctx.db(), ctx.tenant()?, id).await?;
        if key.revoked_at.is_some() {
            return Ok(false);
        }
        let mut active = key.into_active_model();
        active.revoked_at = Set(Some(Utc::now()));
        active.update(ctx.db()).await?;
        Ok(true)
    }

    /// Sets the account's WeChat Official Account credentials (ADMIN only).
    async fn configure_wechat(
        &self,
        ctx: &Context<'_>,
        input: WechatConfigInput,
    ) -> GqlResult<Account> {
        let app_id = input.app_id.trim().to_owned();
        if !(app_id.starts_with("wx")
            && app_id.len() == 18
            && app_id.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(AppError::bad_input(
                "input.appId",
                "a WeChat appId is wx + 16 letters or digits",
            )
            .into());
        }
        let secret = required_text("input.appSecret", &input.app_secret, 64)?;
        let token = input.token.trim().to_owned();
        if !(3..=32).contains(&token.len()) || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(AppError::bad_input("input.token", "3 to 32 letters or digits").into());
        }
        let aes = input
            .encoding_aes_key
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        match (&aes, input.mode) {
            (None, WechatMode::Compat | WechatMode::Safe) => {
                return Err(AppError::bad_input(
                    "input.encodingAesKey",
                    "required for COMPAT and SAFE modes",
                )
                .into());
            }
            (Some(k), _) if k.len() != 43 || !k.chars().all(|c| c.is_ascii_alphanumeric()) => {
                return Err(
                    AppError::bad_input("input.encodingAesKey", "43 letters or digits").into(),
                );
            }
            _ => {}
        }
        let account = account::Entity::find()
            .filter(account::Column::Id.eq(ctx.tenant()?))
            .one(ctx.db())
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let mut active = account.into_active_model();
        active.wechat_app_id = Set(Some(app_id));
        active.wechat_app_secret = Set(Some(secret));
        active.wechat_token = Set(Some(token));
        active.wechat_aes_key = Set(aes);
        active.wechat_mode = Set(Some(input.mode.as_str().to_owned()));
        Ok(Account(active.update(ctx.db()).await?))
    }
}
