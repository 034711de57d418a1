//! Scope checks. The HTTP handler and the websocket `connection_init` authenticate the key (401
//! or 4403 without one); from there on, what a key may see is decided on the types themselves,
//! so no path — a query root, a mutation's result, `node`, a subscription payload, a nested
//! field — reaches a field the key may not read. A key without the scope gets `FORBIDDEN` for
//! that field only and the rest of the response still resolves.
//!
//! Every output type that carries clinic data declares its [`Class`] once, as a type-level
//! guard (`#[Object(guard = "Reads(Class::Clinic)")]`); a field overrides it only to say it is
//! a [`Class::Receipt`] (readable by whoever may act) or [`Class::Admin`]. [`Class::allows`] is
//! the one place that maps classes to scopes. Roots and mutations check the scope they need
//! with [`RequireScope`].

use async_graphql::{Context, Guard};

use super::audit::AuditTrail;
use super::error::ApiError;
use crate::auth::Caller;
use crate::config::Scope;

/// The root-level check: the operation a field starts needs `scope`.
pub struct RequireScope(pub Scope);

impl Guard for RequireScope {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        Ok(check_scope(ctx, self.0)?)
    }
}

/// What a field reveals, which decides who may read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Clinic data: patients, staff, tickets, appointments, visits, payments, the inbox's
    /// metadata, domain events, sources, alerts' texts, vCita targets. Needs `read`.
    Clinic,
    /// What a caller needs to follow up on its own action, and nothing personal: the id,
    /// status, attempts, idempotency key and times of an alert; the id, event, status and
    /// verification time of a vCita subscription. Readable with `read` or `write`, so a
    /// write-only key sees the receipt of what it sent and not the patient behind it.
    Receipt,
    /// Raw bodies and headers of deliveries, and the audit log: needs `admin`, and each read is
    /// written to the audit log (see [`AUDITED_READS`]).
    Admin,
    /// What an admin mutation reports, or an entry of the audit log: needs `admin`; not audited
    /// again (the mutation or the `auditLog` read that reached it is).
    AdminReport,
}

/// The fields of [`Class::Admin`]: every read of one is audited. Named here as well because a
/// shared live subscription (see `live`) must not carry one: it runs as no single key.
pub const AUDITED_READS: &[&str] = &["rawBody", "headers", "auditLog"];

impl Class {
    pub fn allows(self, caller: &Caller) -> Result<(), ApiError> {
        let needs = |scope: Scope| {
            if caller.has(scope) {
                Ok(())
            } else {
                Err(ApiError::Forbidden(scope.as_str()))
            }
        };
        match self {
            Class::Clinic => needs(Scope::Read),
            Class::Receipt if caller.has(Scope::Write) => Ok(()),
            Class::Receipt => needs(Scope::Read),
            Class::Admin | Class::AdminReport => needs(Scope::Admin),
        }
    }
}

/// The type- or field-level check of what a field reveals (see the module doc).
pub struct Reads(pub Class);

impl Guard for Reads {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        self.0.allows(caller(ctx)?)?;
        if self.0 == Class::Admin
            && let Some(trail) = ctx.data_opt::<AuditTrail>()
        {
            let name = ctx.item.node.name.node.as_str();
            debug_assert!(
                AUDITED_READS.contains(&name),
                "{name} is not in AUDITED_READS"
            );
            trail.note_admin_read(name);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(scopes: &[Scope]) -> Caller {
        Caller {
            key_name: "k".into(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn each_class_needs_its_scope() {
        let write_only = with(&[Scope::Write]);
        assert!(Class::Clinic.allows(&write_only).is_err());
        assert!(Class::Receipt.allows(&write_only).is_ok());
        assert!(Class::Admin.allows(&write_only).is_err());
        let read = with(&[Scope::Read]);
        assert!(Class::Clinic.allows(&read).is_ok());
        assert!(Class::Receipt.allows(&read).is_ok());
        assert!(Class::AdminReport.allows(&read).is_err());
        let admin_only = with(&[Scope::Admin]);
        assert!(Class::Clinic.allows(&admin_only).is_err());
        assert!(Class::Receipt.allows(&admin_only).is_err());
        assert!(Class::Admin.allows(&admin_only).is_ok());
        assert!(Class::AdminReport.allows(&admin_only).is_ok());
    }
}
