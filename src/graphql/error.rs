//! The one error type of the API. Every error a client sees goes through [`ApiError`], which
//! carries an `extensions.code`. It deliberately does not implement `Display`: async-graphql
//! converts any `Display` type into an error carrying its text, and a database or HTTP client
//! error's text must never reach a client. Database errors become `INTERNAL` here, once, and
//! are logged.

use async_graphql::ErrorExtensions;
use sea_orm::DbErr;

#[derive(Debug, Clone)]
pub enum ApiError {
    NotFound(String),
    BadUserInput(String),
    Unauthenticated,
    Forbidden(&'static str),
    /// A subscription cursor older than the retained event history: the client must reload
    /// current state. Code `BAD_USER_INPUT` with `extensions.resync = true`.
    ResyncRequired(String),
    /// A vendor refused or failed a call; the message is ours, with the vendor's documented
    /// answer where there is one.
    Vendor(String),
    /// Refused before execution for its cost (complexity, depth, fields); says which limit.
    TooComplex(String),
    /// The key already runs its bound of concurrent operations (see `limits`).
    RateLimited,
    /// A query ran past the deadline, in seconds, and was stopped.
    Timeout(u64),
    Internal,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadUserInput(_) | ApiError::ResyncRequired(_) => "BAD_USER_INPUT",
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::Vendor(_) => "VENDOR_ERROR",
            ApiError::TooComplex(_) => "QUERY_TOO_COMPLEX",
            ApiError::RateLimited => "RATE_LIMITED",
            ApiError::Timeout(_) => "QUERY_TIMEOUT",
            ApiError::Internal => "INTERNAL",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::BadUserInput(message) | ApiError::ResyncRequired(message) => message.clone(),
            ApiError::Vendor(message) | ApiError::TooComplex(message) => message.clone(),
            ApiError::RateLimited => {
                "this API key runs too many requests at once; retry after the others finish"
                    .to_owned()
            }
            ApiError::Timeout(seconds) => {
                format!("the query ran longer than {seconds} s and was stopped; ask for less")
            }
            ApiError::Unauthenticated => {
                "an API key is required: send `Authorization: Bearer <key>`".to_owned()
            }
            ApiError::Forbidden(scope) => format!("this API key lacks the `{scope}` scope"),
            ApiError::Internal => {
                "internal error; the gateway logged it under this request's x-request-id".to_owned()
            }
        }
    }

    pub fn bad_input(message: impl Into<String>) -> ApiError {
        ApiError::BadUserInput(message.into())
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> async_graphql::Error {
        let code = error.code();
        let resync = matches!(error, ApiError::ResyncRequired(_));
        async_graphql::Error::new(error.message()).extend_with(|_, extensions| {
            extensions.set("code", code);
            if resync {
                extensions.set("resync", true);
            }
        })
    }
}

impl From<DbErr> for ApiError {
    fn from(error: DbErr) -> ApiError {
        tracing::error!(%error, "database error in a GraphQL resolver");
        ApiError::Internal
    }
}

impl From<std::sync::Arc<DbErr>> for ApiError {
    fn from(error: std::sync::Arc<DbErr>) -> ApiError {
        tracing::error!(%error, "database error in a GraphQL data loader");
        ApiError::Internal
    }
}

/// What resolvers return.
pub type ApiResult<T> = Result<T, ApiError>;
