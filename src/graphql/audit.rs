//! The audit log of the API, as a schema extension: every executed mutation field and every
//! read of an admin field is written to the audit log once, whatever carried the request (HTTP,
//! either websocket protocol), however the document spells it (fragments, inline fragments,
//! aliases, several root fields), decided from what was executed rather than from the
//! document's text.
//!
//! How: the extension is created per request (per websocket operation or subscription). Its
//! `resolve` hook notes every field resolved on the `Mutation` root — attempts included, since
//! the hook runs before the field's own scope guard — and the `Reads(Class::Admin)` guard notes
//! admin reads into the same [`AuditTrail`], which `prepare_request` puts in the request's data.
//! After each execution (`execute` hook: once for a query or mutation, once per event of a
//! subscription) whatever was noted and not yet written becomes one row: the key's name, the
//! action, the executed operation's name (from the document when not sent separately) and the
//! field names, never argument values. A subscription therefore writes its row with its first
//! event that reads an admin field, and no more rows for the same fields after that.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextResolve,
    ResolveInfo,
};
use async_graphql::{Request, Response, ServerResult, Value};
use sea_orm::DatabaseConnection;

use crate::auth::Caller;

/// What a row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    /// The operation ran at least one mutation field (admin reads it made are listed too).
    Mutation,
    /// The operation read admin fields and ran no mutation.
    AdminRead,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Mutation => "mutation",
            Action::AdminRead => "admin_read",
        }
    }
}

/// The fields one request executed that the audit log must name. Shared (one `Arc`) between the
/// extension and the guards, which find it in the request's data.
#[derive(Clone, Default)]
pub struct AuditTrail(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    /// Noted since the last row.
    pending: BTreeSet<(Action, String)>,
    /// Already in a row of this request (a subscription's earlier events).
    written: BTreeSet<(Action, String)>,
}

impl AuditTrail {
    fn note(&self, action: Action, field: &str) {
        // A poisoned lock only means another resolver panicked; the sets are still usable.
        let mut noted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (action, field.to_owned());
        if !noted.written.contains(&key) {
            noted.pending.insert(key);
        }
    }

    pub fn note_admin_read(&self, field: &str) {
        self.note(Action::AdminRead, field);
    }

    /// The row for what was noted and not yet written, marking it written.
    fn take_row(&self) -> Option<(Action, Vec<String>)> {
        let mut noted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = std::mem::take(&mut noted.pending);
        let action = pending.iter().map(|(action, _)| *action).min()?;
        let fields: BTreeSet<String> = pending.iter().map(|(_, field)| field.clone()).collect();
        noted.written.extend(pending);
        Some((action, fields.into_iter().collect()))
    }
}

/// Registered on the schema (`schema_builder`), so every transport gets it.
pub struct Audit;

impl ExtensionFactory for Audit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuditExtension {
            trail: AuditTrail::default(),
        })
    }
}

struct AuditExtension {
    trail: AuditTrail,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AuditExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, request.data(self.trail.clone())).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.parent_type == "Mutation" {
            self.trail.note(Action::Mutation, info.name);
        }
        next.run(ctx, info).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        if let Some((action, fields)) = self.trail.take_row() {
            let actor = ctx
                .data_opt::<Caller>()
                .map_or("(unknown)", |caller| caller.key_name.as_str());
            let detail = serde_json::json!({ "operation": operation_name, "fields": fields });
            write(ctx.data_opt::<DatabaseConnection>(), actor, action, detail).await;
        }
        response
    }
}

/// Writes one row. On its own task, so a client that hangs up while it is written cannot cancel
/// it; awaited, so the row exists before the answer leaves. A failure is logged loudly: the
/// operation already ran and its answer stands.
async fn write(
    db: Option<&DatabaseConnection>,
    actor: &str,
    action: Action,
    detail: serde_json::Value,
) {
    let Some(db) = db.cloned() else {
        tracing::error!(
            action = action.as_str(),
            "could not write the audit log: no database"
        );
        return;
    };
    let actor = actor.to_owned();
    let task = tokio::spawn(async move {
        crate::store::audit::record(&db, &actor, action.as_str(), detail).await
    });
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, action = action.as_str(), "could not write the audit log");
        }
        Err(error) => {
            tracing::error!(%error, action = action.as_str(), "the audit log writer failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_names_each_field_once_and_a_mutation_wins_over_a_read() {
        let trail = AuditTrail::default();
        assert_eq!(trail.take_row(), None, "nothing noted, no row");
        trail.note(Action::Mutation, "sendAlert");
        trail.note(Action::Mutation, "sendAlert");
        trail.note_admin_read("rawBody");
        trail.note(Action::Mutation, "eraseClient");
        assert_eq!(
            trail.take_row(),
            Some((
                Action::Mutation,
                vec!["eraseClient".into(), "rawBody".into(), "sendAlert".into()]
            ))
        );
    }

    #[test]
    fn a_subscription_writes_a_field_once_however_many_events_read_it() {
        let trail = AuditTrail::default();
        trail.note_admin_read("rawBody");
        assert_eq!(
            trail.take_row(),
            Some((Action::AdminRead, vec!["rawBody".into()]))
        );
        trail.note_admin_read("rawBody");
        assert_eq!(trail.take_row(), None, "the next event adds no row");
        trail.note_admin_read("headers");
        assert_eq!(
            trail.take_row(),
            Some((Action::AdminRead, vec!["headers".into()])),
            "a field read for the first time does"
        );
    }
}
