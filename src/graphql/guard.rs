//! Scope checks. The HTTP handler authenticates the key (401 without one); fields that need
//! more than `read` carry a [`RequireScope`] guard, so a key without the scope gets `FORBIDDEN`
//! for that field only and the rest of the response still resolves.

use async_graphql::{Context, Guard};

use super::error::ApiError;
use crate::auth::Caller;
use crate::config::Scope;

pub struct RequireScope(pub Scope);

impl Guard for RequireScope {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        check_scope(ctx, self.0)?;
        if self.0 == Scope::Admin
            && let (Some(trail), Some(field)) = (ctx.data_opt::<AuditTrail>(), ctx.path_node)
        {
            trail.note(field.field_name());
        }
        Ok(())
    }
}

/// The admin-scoped fields a request resolved, written to the audit log once per request.
#[derive(Clone, Default)]
pub struct AuditTrail(std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>);

impl AuditTrail {
    pub fn note(&self, field: &str) {
        // A poisoned lock only means another resolver panicked; the set is still usable.
        let mut fields = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fields.insert(field.to_owned());
    }

    pub fn fields(&self) -> Vec<String> {
        let fields = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fields.iter().cloned().collect()
    }
}

/// The caller of this request; every executed request has one (see `graphql::handler`).
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    ctx.data_opt::<Caller>().ok_or(ApiError::Unauthenticated)
}

pub fn check_scope(ctx: &Context<'_>, scope: Scope) -> Result<(), ApiError> {
    if caller(ctx)?.has(scope) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(scope.as_str()))
    }
}
