//! The GraphQL API: schema construction and the `/graphql` HTTP route. Roots are merged per
//! area (`query/`, later `mutation/` and `subscription/`); API types live in `types/` and are
//! converted from entities, never the entities themselves.

mod query;
mod types;

use async_graphql::{EmptyMutation, EmptySubscription, Schema};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::routing::post;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::startup::AppState;

pub use query::Query;

pub type CareBridgeSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema without runtime data: what `carebridge schema` prints and `schema.graphql` holds.
pub fn schema_builder() -> async_graphql::SchemaBuilder<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query::default(), EmptyMutation, EmptySubscription)
}

/// The schema as served: the database and config attached as context data.
pub fn build(db: DatabaseConnection, config: Arc<Config>) -> CareBridgeSchema {
    schema_builder().data(db).data(config).finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/graphql", post(graphql_post))
}

async fn graphql_post(State(state): State<AppState>, request: GraphQLRequest) -> GraphQLResponse {
    state.schema.execute(request.into_inner()).await.into()
}
