//! API types. Each is built from a config value or an entity; entities never derive GraphQL.

use async_graphql::SimpleObject;

use crate::config::SourceConfig;

/// One configured webhook endpoint of one vendor account: `POST /webhooks/{id}`.
#[derive(SimpleObject)]
pub struct Source {
    pub id: String,
    /// chup | vcita | vsee | timetap
    pub vendor: String,
    /// The path the vendor posts to (token or secret not included).
    pub webhook_path: String,
}

impl From<&SourceConfig> for Source {
    fn from(source: &SourceConfig) -> Source {
        Source {
            id: source.id.to_string(),
            vendor: source.vendor.to_string(),
            webhook_path: format!("/webhooks/{}", source.id),
        }
    }
}
