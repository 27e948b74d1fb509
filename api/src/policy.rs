//! Who may call which root field: the one place roles are enforced.
//!
//! An async-graphql extension consults [`required`] before every root field
//! runs, so no resolver checks roles itself. Tenant isolation is the other
//! half: every query goes through `tenant::scoped`.
use std::sync::Arc;

use async_graphql::{
    ServerResult, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo},
};

use crate::{
    auth::{Auth, Principal, Role},
    error::{AppError, GqlError},
};

/// What a root field demands of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Introspection: the schema is public.
    Public,
    /// Any of these roles.
    Roles(&'static [Role]),
    /// Only the platform operator (the bootstrap key).
    Operator,
}

const ALL: &[Role] = &[Role::Admin, Role::Manager, Role::Integration];
const STAFF: &[Role] = &[Role::Admin, Role::Manager];
const ADMIN: &[Role] = &[Role::Admin];

/// The policy table. Unknown fields default to `STAFF`, so a new field is
/// never readable by an integration key by accident.
pub fn required(parent: &str, field: &str) -> Access {
    match (parent, field) {
        (_, "__schema" | "__type" | "__typename") => Access::Public,
        ("Query", "viewer" | "members" | "member" | "segmentPreview" | "segments" | "segment")
        | ("Query", "adTargets" | "analyzeText" | "segmentFacets") => Access::Roles(ALL),
        ("Query", "apiKeys") => Access::Roles(ADMIN),
        ("Mutation", "createApiKey" | "revokeApiKey" | "configureWechat") => Access::Roles(ADMIN),
        ("Mutation", "createAccount") => Access::Operator,
        _ => Access::Roles(STAFF),
    }
}

/// Checks `auth` against the policy for one root field.
///
/// # Errors
/// `Unauthenticated` without a valid key, `Forbidden` for a role that may not.
pub fn check<'a>(
    parent: &str,
    field: &str,
    auth: Option<&'a Auth>,
) -> Result<Option<&'a Principal>, AppError> {
    let access = required(parent, field);
    if access == Access::Public {
        return Ok(None);
    }
    let principal = match auth {
        Some(Auth::Key(p)) => p,
        _ => return Err(AppError::Unauthenticated),
    };
    let allowed = match access {
        Access::Public => true,
        Access::Roles(roles) => roles.contains(&principal.role),
        Access::Operator => principal.operator,
    };
    if allowed {
        Ok(Some(principal))
    } else {
        Err(AppError::Forbidden(if access == Access::Operator {
            "manage accounts (operator only)"
        } else {
            "call this field"
        }))
    }
}

/// Jobs that change what every account uses (the shared sentiment head)
/// are the platform operator's; tenants queue their own work only (a
/// sentiment head of their own included).
///
/// # Errors
/// `Forbidden` for a platform-wide job without the operator key.
pub fn check_job_kind(
    principal: &Principal,
    kind: worker::jobs::JobKind,
    params: &serde_json::Value,
) -> Result<(), AppError> {
    if kind.is_platform_wide(params) && !principal.operator {
        return Err(AppError::Forbidden(
            "queue jobs that change shared models (operator only)",
        ));
    }
    Ok(())
}

/// The extension that applies [`check`] to every root field.
pub struct Authorization;

impl ExtensionFactory for Authorization {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuthorizationExtension)
    }
}

struct AuthorizationExtension;

#[async_trait::async_trait]
impl Extension for AuthorizationExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_none()
            && let Err(e) = check(info.parent_type, info.name, ctx.data_opt::<Auth>())
        {
            let err: async_graphql::Error = GqlError::from(e).into();
            return Err(err.into_server_error(info.field.name.pos));
        }
        next.run(ctx, info).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn key(role: Role, operator: bool) -> Auth {
        Auth::Key(Principal {
            account_id: Uuid::nil(),
            key_id: Uuid::nil(),
            role,
            operator,
        })
    }

    #[test]
    fn integration_keys_only_read_segments_and_personas() {
        let i = key(Role::Integration, false);
        assert!(check("Query", "segmentPreview", Some(&i)).is_ok());
        assert!(check("Query", "member", Some(&i)).is_ok());
        assert!(matches!(
            check("Query", "campaigns", Some(&i)),
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            check("Mutation", "createCampaign", Some(&i)),
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            check("Mutation", "someFutureField", Some(&i)),
            Err(AppError::Forbidden(_))
        ));
    }

    #[test]
    fn only_admins_manage_keys_and_only_the_operator_creates_accounts() {
        let m = key(Role::Manager, false);
        let a = key(Role::Admin, false);
        let op = key(Role::Admin, true);
        assert!(check("Mutation", "createApiKey", Some(&m)).is_err());
        assert!(check("Mutation", "createApiKey", Some(&a)).is_ok());
        assert!(check("Mutation", "createAccount", Some(&a)).is_err());
        assert!(check("Mutation", "createAccount", Some(&op)).is_ok());
    }

    #[test]
    fn no_key_is_unauthenticated_except_introspection() {
        assert!(matches!(
            check("Query", "viewer", None),
            Err(AppError::Unauthenticated)
        ));
        assert!(matches!(
            check("Query", "viewer", Some(&Auth::Invalid)),
            Err(AppError::Unauthenticated)
        ));
        assert!(check("Query", "__schema", None).is_ok());
    }
}
