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
        check_scope(ctx, self.0).map_err(Into::into)
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
