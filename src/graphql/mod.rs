//! The GraphQL API: schema construction (with depth and complexity limits) and `/graphql` over
//! HTTP per the GraphQL-over-HTTP spec: POST `application/json`, GET for queries only, the
//! `application/graphql-response+json` media type with 4xx for request errors, plain
//! `application/json` (200 for request errors) for older clients. Refusals for cost or rate
//! (`limits`) are 4xx on both: nothing ran.
//!
//! Every request needs an API key (`Authorization: Bearer …`): none or unknown is 401 with an
//! `UNAUTHENTICATED` error before anything runs; fields above the key's scopes are `FORBIDDEN`
//! one by one (see `guard`). Every mutation and admin read is audited by a schema extension,
//! whatever the transport (see `audit`).

mod audit;
mod connection;
mod documents;
mod error;
mod filters;
mod guard;
mod ids;
mod inputs;
mod limits;
mod live;
mod loaders;
mod mutation;
mod order;
mod query;
mod subscription;
mod types;
mod ws;

use std::sync::Arc;

use async_graphql::Schema;
use async_graphql::dataloader::DataLoader;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sea_orm::DatabaseConnection;

use crate::auth::{self, Caller};
use crate::config::Config;
use crate::startup::AppState;

pub use documents::DocumentCache;
pub use error::ApiError;
pub use live::LiveHub;
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

pub type CareBridgeSchema = Schema<Query, Mutation, Subscription>;

/// The schema without its limits (see `limits`; `build` adds them from the config).
pub fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .extension(audit::Audit)
        .extension(inputs::InputBounds)
}

/// The schema as served: the database, config, event bus and the process-wide live loader
/// (shared by every websocket connection, see `loaders`) attached as context data.
pub fn build(
    db: DatabaseConnection,
    config: Arc<Config>,
    bus: crate::bus::Bus,
    outbound: crate::outbound::Outbound,
) -> CareBridgeSchema {
    schema_builder()
        .extension(limits::CostLimits::new(&config.limits))
        .data(limits::DbShares::new(&config.limits))
        .data(loaders::LiveLoader::new(db.clone()))
        .data(db)
        .data(config)
        .data(bus)
        .data(outbound)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/graphql", get(graphql_get).post(graphql_http))
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Which media type the client accepts for the answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    GraphqlResponse,
    LegacyJson,
}

impl Answer {
    /// `None` when the client accepts neither JSON media type (answered 406).
    fn negotiate(headers: &HeaderMap) -> Option<Answer> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(Answer::LegacyJson);
        };
        let types: Vec<&str> = accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or("").trim())
            .collect();
        if types.contains(&GRAPHQL_RESPONSE) {
            Some(Answer::GraphqlResponse)
        } else if types
            .iter()
            .any(|t| ["application/json", "*/*", "application/*"].contains(t))
        {
            Some(Answer::LegacyJson)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            Answer::GraphqlResponse => HeaderValue::from_static(GRAPHQL_RESPONSE),
            Answer::LegacyJson => HeaderValue::from_static("application/json"),
        }
    }
}

/// A request-level error as a GraphQL response body (`{"errors": [...]}`).
fn plain_error(answer: Answer, status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let mut error = serde_json::json!({ "message": message });
    if let Some(code) = code {
        error["extensions"] = serde_json::json!({ "code": code });
    }
    let body = serde_json::json!({ "errors": [error] }).to_string();
    ([(header::CONTENT_TYPE, answer.content_type())], body)
        .into_response()
        .with_status(status)
}

trait WithStatus {
    fn with_status(self, status: StatusCode) -> Response;
}

impl WithStatus for Response {
    fn with_status(mut self, status: StatusCode) -> Response {
        *self.status_mut() = status;
        self
    }
}

/// GET is a websocket upgrade (subscriptions) or a query over HTTP.
async fn graphql_get(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let wants_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (mut parts, _body) = request.into_parts();
    if wants_websocket {
        use axum::extract::FromRequestParts;
        let Ok(permit) = state.websocket_slots.clone().try_acquire_owned() else {
            tracing::warn!("websocket refused: connection limit reached");
            let message = "too many websocket connections; retry later";
            return crate::http::error_response(StatusCode::SERVICE_UNAVAILABLE, message);
        };
        let upgrade =
            axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state).await;
        return match upgrade {
            Ok(upgrade) => ws::upgrade(state, &parts.headers, upgrade, permit),
            Err(rejection) => rejection.into_response(),
        };
    }
    let query = parts.uri.query().map(str::to_owned);
    graphql_http(
        State(state),
        Method::GET,
        RawQuery(query),
        parts.headers,
        Bytes::new(),
    )
    .await
}

async fn graphql_http(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(answer) = Answer::negotiate(&headers) else {
        let message = "accept application/graphql-response+json or application/json";
        return plain_error(
            Answer::LegacyJson,
            StatusCode::NOT_ACCEPTABLE,
            message,
            None,
        );
    };
    let caller = match authenticate(&state, &headers).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            let message = ApiError::Unauthenticated.message();
            return plain_error(
                answer,
                StatusCode::UNAUTHORIZED,
                &message,
                Some("UNAUTHENTICATED"),
            );
        }
        Err(error) => {
            tracing::error!(%error, "cannot check an API key: key store unavailable");
            let message = "cannot check the API key right now; retry";
            return plain_error(
                answer,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                Some("INTERNAL"),
            );
        }
    };
    let mut request = match parse_request(&method, query.as_deref(), &headers, &body) {
        Ok(request) => request,
        Err((status, message)) => {
            return plain_error(answer, status, &message, Some("BAD_REQUEST"));
        }
    };
    // Kept for putting the answer back in the query's order (see `order`).
    let document = state.documents.prepare(&mut request);
    if method == Method::GET && is_mutation(&mut request) {
        let mut response = plain_error(
            answer,
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations need POST",
            Some("BAD_REQUEST"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let loader = DataLoader::with_cache(
        loaders::DbLoader {
            db: state.db.clone(),
        },
        tokio::spawn,
        async_graphql::dataloader::HashMapCache::default(),
    );
    let operation_name = request.operation_name.clone();
    let mut response = state
        .schema
        .execute(request.data(caller).data(loader))
        .await;
    if let Some(document) = &document {
        order::in_query_order(&mut response.data, document, operation_name.as_deref());
    }
    if let Some(refusal) = limits::refusal(&response) {
        return refused(answer, refusal, &response);
    }
    let status = if answer == Answer::GraphqlResponse
        && response.data == async_graphql::Value::Null
        && response.is_err()
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let Some(body) = response_body(&response, status == StatusCode::BAD_REQUEST) else {
        let message = "unserializable response";
        return plain_error(answer, StatusCode::INTERNAL_SERVER_ERROR, message, None);
    };
    ([(header::CONTENT_TYPE, answer.content_type())], body)
        .into_response()
        .with_status(status)
}

/// A request refused or stopped by `limits`: the same status on both media types, with
/// Retry-After where waiting helps. A refused request wrote no audit row: nothing ran.
fn refused(
    answer: Answer,
    refusal: limits::Refusal,
    response: &async_graphql::Response,
) -> Response {
    let Some(body) = response_body(response, true) else {
        let message = "unserializable response";
        return plain_error(answer, StatusCode::INTERNAL_SERVER_ERROR, message, None);
    };
    let mut refused = ([(header::CONTENT_TYPE, answer.content_type())], body)
        .into_response()
        .with_status(refusal.status);
    if let Some(seconds) = refusal.retry_after {
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    refused
}

/// The JSON text of a response, its fields in the query's order. Serialized straight from the
/// response: going through a `serde_json::Value` first costs a second copy of every value and
/// sorts every object's keys (measured: a large share of a 50-entry board's time). A request
/// error (nothing executed) carries no `data` entry at all.
fn response_body(response: &async_graphql::Response, request_error: bool) -> Option<Vec<u8>> {
    if !request_error {
        return serde_json::to_vec(response).ok();
    }
    let mut body = serde_json::to_value(response).ok()?;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("data");
    }
    serde_json::to_vec(&body).ok()
}

/// The caller for a bearer key: `Ok(None)` for a missing or unknown key, `Err` when the key
/// store cannot be asked.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Caller>, sea_orm::DbErr> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(auth::bearer_token);
    match presented {
        Some(key) => auth::authenticate_any(&state.config.api_keys, &state.db, key).await,
        None => Ok(None),
    }
}

/// A GraphQL request from a GET query string or a POST JSON body.
fn parse_request(
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<async_graphql::Request, (StatusCode, String)> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message);
    let request: async_graphql::Request = if method == Method::GET {
        let params: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|_| bad("malformed query string".into()))?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let mut request = async_graphql::Request::new(
            param("query").ok_or_else(|| bad("`query` parameter is required".into()))?,
        );
        if let Some(name) = param("operationName") {
            request = request.operation_name(name);
        }
        if let Some(variables) = param("variables") {
            let value: serde_json::Value = serde_json::from_str(&variables)
                .map_err(|_| bad("`variables` is not JSON".into()))?;
            if !value.is_object() && !value.is_null() {
                return Err(bad("`variables` must be a JSON object".into()));
            }
            request.variables = async_graphql::Variables::from_json(value);
        }
        request
    } else {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence != "application/json" {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the request as application/json".into(),
            ));
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| bad("body is not JSON".into()))?;
        if !value.get("query").is_some_and(serde_json::Value::is_string) {
            return Err(bad("`query` must be a string".into()));
        }
        for (field, must_be_object) in [
            ("variables", true),
            ("extensions", true),
            ("operationName", false),
        ] {
            match value.get(field) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) if must_be_object && !v.is_object() => {
                    return Err(bad(format!("`{field}` must be an object")));
                }
                Some(v) if !must_be_object && !v.is_string() => {
                    return Err(bad(format!("`{field}` must be a string")));
                }
                Some(_) => {}
            }
        }
        serde_json::from_value(value).map_err(|_| bad("not a GraphQL request".into()))?
    };
    Ok(request)
}

/// Whether the selected operation is a mutation (GET must not run one); `false` for queries,
/// subscriptions and unparseable documents (which execution then reports). Parsed once per
/// request: the parsed document stays in the request, and execution uses it instead of parsing
/// the text again.
fn is_mutation(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let operation = match (&document.operations, operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Mutation)
}
