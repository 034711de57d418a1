//! Query root, merged from one object per area.

use std::sync::Arc;

use async_graphql::{Context, MergedObject, Object};

use super::types::Source;
use crate::config::Config;

#[derive(MergedObject, Default)]
pub struct Query(SourceQuery);

#[derive(Default)]
pub struct SourceQuery;

#[Object]
impl SourceQuery {
    /// The webhook sources declared in the configuration.
    async fn sources(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Source>> {
        let config = ctx.data::<Arc<Config>>()?;
        Ok(config.sources.iter().map(Source::from).collect())
    }
}
