//! Typed errors and their stable GraphQL `extensions.code`.
//!
//! `GqlError` deliberately has no `Display`: async-graphql's blanket
//! `From<T: Display>` would otherwise swallow the code on `?`.
use std::sync::Arc;

use async_graphql::ErrorExtensions;

/// The codes of API.md, in one place.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const CONFLICT: &str = "CONFLICT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    pub const INTERNAL: &str = "INTERNAL";
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "authentication required: send `Authorization: Bearer <api key>` / 需要有效的 API 密钥"
    )]
    Unauthenticated,
    #[error("your role may not {0} / 当前角色无此权限")]
    Forbidden(&'static str),
    #[error("{entity} {id} not found / 未找到")]
    NotFound { entity: &'static str, id: String },
    #[error("{field}: {message}")]
    BadInput { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests, retry later / 请求过于频繁")]
    RateLimited,
    /// A dependency (search backend, models) cannot serve now; shown as INTERNAL
    /// with its message, since the message tells the user what to do.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => code::UNAUTHENTICATED,
            Self::Forbidden(_) => code::FORBIDDEN,
            Self::NotFound { .. } => code::NOT_FOUND,
            Self::BadInput { .. } => code::BAD_USER_INPUT,
            Self::Conflict(_) => code::CONFLICT,
            Self::RateLimited => code::RATE_LIMITED,
            Self::Db(e) if is_unique_violation(e) => code::CONFLICT,
            Self::Db(_) | Self::Internal(_) | Self::Unavailable(_) => code::INTERNAL,
        }
    }
}

/// Unique-constraint violations, on PostgreSQL (23505) and SQLite (2067 / 1555).
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[derive(Debug, Clone)]
pub struct GqlError(Arc<AppError>);
pub type GqlResult<T> = Result<T, GqlError>;

impl<E: Into<AppError>> From<E> for GqlError {
    fn from(e: E) -> Self {
        Self(Arc::new(e.into()))
    }
}

impl GqlError {
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
}

impl From<GqlError> for async_graphql::Error {
    fn from(GqlError(e): GqlError) -> Self {
        let code = e.code();
        let msg = match (&*e, code) {
            (AppError::Unavailable(m), _) => m.clone(),
            (_, code::INTERNAL) => {
                tracing::error!(error = ?e, "internal error");
                "internal error / 服务器内部错误".to_owned()
            }
            (AppError::Db(_), code::CONFLICT) => {
                "conflicts with an existing record / 与已有记录冲突".to_owned()
            }
            _ => e.to_string(),
        };
        let field = match &*e {
            AppError::BadInput { field, .. } => Some(field.clone()),
            _ => None,
        };
        async_graphql::Error::new(msg).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(f) = &field {
                ext.set("field", f.as_str());
            }
        })
    }
}

/// Gives every error that async-graphql itself raised (parse, validation,
/// variable coercion, limits) a code, so clients can always branch on one.
pub fn classify_engine_error(err: &mut async_graphql::ServerError) {
    let has_code = err
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some());
    if has_code {
        return;
    }
    let msg = err.message.to_ascii_lowercase();
    let code = if msg.contains("too complex") || msg.contains("nested too deep") {
        code::QUERY_TOO_COMPLEX
    } else {
        // Resolver errors always carry a code, so what is left is the
        // engine rejecting the document or its variables.
        code::BAD_USER_INPUT
    };
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: AppError) -> String {
        let err: async_graphql::Error = GqlError::from(e).into();
        let ext = err.extensions.expect("extensions");
        ext.get("code").expect("code").to_string()
    }

    #[test]
    fn every_variant_maps_to_a_documented_code() {
        assert_eq!(code_of(AppError::Unauthenticated), "\"UNAUTHENTICATED\"");
        assert_eq!(code_of(AppError::Forbidden("x")), "\"FORBIDDEN\"");
        assert_eq!(code_of(AppError::not_found("campaign", 1)), "\"NOT_FOUND\"");
        assert_eq!(
            code_of(AppError::bad_input("name", "empty")),
            "\"BAD_USER_INPUT\""
        );
        assert_eq!(code_of(AppError::Conflict("x".into())), "\"CONFLICT\"");
        assert_eq!(code_of(AppError::RateLimited), "\"RATE_LIMITED\"");
        assert_eq!(
            code_of(AppError::Internal(anyhow::anyhow!("boom"))),
            "\"INTERNAL\""
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err: async_graphql::Error =
            GqlError::from(AppError::Internal(anyhow::anyhow!("secret path /etc"))).into();
        assert!(!err.message.contains("/etc"));
    }

    #[test]
    fn engine_errors_get_a_code() {
        let mut e = async_graphql::ServerError::new("Query is too complex.", None);
        classify_engine_error(&mut e);
        assert_eq!(
            e.extensions.unwrap().get("code").unwrap().to_string(),
            "\"QUERY_TOO_COMPLEX\""
        );
        let mut e = async_graphql::ServerError::new("Unknown field \"x\"", None);
        classify_engine_error(&mut e);
        assert_eq!(
            e.extensions.unwrap().get("code").unwrap().to_string(),
            "\"BAD_USER_INPUT\""
        );
    }
}
