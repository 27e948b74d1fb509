//! API keys and the request's principal.
//!
//! A secret is `lx_` + 40 random base62 characters; only its SHA-256 is
//! stored, looked up through a unique index.
use async_graphql::Enum;
use chrono::Utc;
use entity::{account, api_key};
use rand::{Rng, distr::Alphanumeric};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::AppResult;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    /// Everything in its account, keys too.
    Admin,
    /// Campaigns, content, audiences, jobs.
    Manager,
    /// Read-only: segments, personas, ad targets.
    Integration,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Manager => "MANAGER",
            Role::Integration => "INTEGRATION",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADMIN" => Some(Role::Admin),
            "MANAGER" => Some(Role::Manager),
            "INTEGRATION" => Some(Role::Integration),
            _ => None,
        }
    }
}

/// Who is calling: one key of one account.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: Uuid,
    pub key_id: Uuid,
    pub role: Role,
    /// The bootstrap key: may create accounts, sees no other account's data.
    pub operator: bool,
}

/// What the request's `Authorization` header amounted to.
#[derive(Debug, Clone)]
pub enum Auth {
    Anonymous,
    Invalid,
    Key(Principal),
}

pub fn new_secret() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("lx_{body}")
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Resolves an `Authorization` header value to a principal.
///
/// # Errors
/// Database errors only; a bad key is `Auth::Invalid`.
pub async fn authenticate(db: &impl ConnectionTrait, header: Option<&str>) -> AppResult<Auth> {
    let Some(header) = header else {
        return Ok(Auth::Anonymous);
    };
    let secret = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .unwrap_or(header)
        .trim();
    if secret.is_empty() || secret.len() > 200 {
        return Ok(Auth::Invalid);
    }
    let key = api_key::Entity::find()
        .filter(api_key::Column::SecretHash.eq(hash_secret(secret)))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?;
    Ok(
        match key.and_then(|k| Role::parse(&k.role).map(|r| (k, r))) {
            Some((k, role)) => Auth::Key(Principal {
                account_id: k.account_id,
                key_id: k.id,
                role,
                operator: k.operator,
            }),
            None => Auth::Invalid,
        },
    )
}

/// Stores a new key and returns its row; the caller shows the secret once.
///
/// # Errors
/// Database errors.
pub async fn insert_key(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    name: &str,
    role: Role,
    operator: bool,
    secret: &str,
) -> AppResult<api_key::Model> {
    Ok(api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        name: Set(name.to_owned()),
        role: Set(role.as_str().to_owned()),
        operator: Set(operator),
        secret_hash: Set(hash_secret(secret)),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?)
}

/// The outcome of start-up key provisioning.
pub struct Bootstrap {
    pub account: account::Model,
    /// Set when a key was generated now: print it once.
    pub generated_secret: Option<String>,
    /// True when the operator account was created now (first start).
    pub first_start: bool,
}

/// Ensures the operator account and its bootstrap key exist.
///
/// With `LINGXI_ADMIN_KEY` set, that secret becomes (or stays) an operator
/// key; otherwise a key is generated on first start and printed once.
///
/// # Errors
/// Database errors.
pub async fn bootstrap(
    db: &impl ConnectionTrait,
    configured: Option<&str>,
    account_name: &str,
) -> AppResult<Bootstrap> {
    let operator_key = api_key::Entity::find()
        .filter(api_key::Column::Operator.eq(true))
        .order_by_asc(api_key::Column::Id)
        .one(db)
        .await?;
    let (account, first_start) = match &operator_key {
        Some(k) => (
            account::Entity::find_by_id(k.account_id)
                .one(db)
                .await?
                .ok_or_else(|| anyhow::anyhow!("operator key without account"))?,
            false,
        ),
        None => (
            account::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(account_name.to_owned()),
                wechat_app_id: Set(None),
                wechat_app_secret: Set(None),
                wechat_token: Set(None),
                wechat_aes_key: Set(None),
                wechat_mode: Set(None),
                taxonomy: Set(None),
                created_at: Set(Utc::now()),
            }
            .insert(db)
            .await?,
            true,
        ),
    };
    if first_start {
        worker::jobs::recurring::ensure_builtin(db, Some(account.id)).await?;
    }
    let mut generated_secret = None;
    match configured {
        Some(secret) => {
            let existing = api_key::Entity::find()
                .filter(api_key::Column::SecretHash.eq(hash_secret(secret)))
                .one(db)
                .await?;
            if existing.is_none() {
                insert_key(db, account.id, "bootstrap", Role::Admin, true, secret).await?;
            }
        }
        None if operator_key.is_none() => {
            let secret = new_secret();
            insert_key(db, account.id, "bootstrap", Role::Admin, true, &secret).await?;
            generated_secret = Some(secret);
        }
        None => {}
    }
    Ok(Bootstrap {
        account,
        generated_secret,
        first_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("lx_") && a.len() == 43);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }
}
