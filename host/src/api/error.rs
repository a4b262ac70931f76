//! The Anthropic error envelope: every error a client sees is
//! `{"type":"error","error":{"type","message"},"request_id"}` with a matching
//! HTTP status and a `request-id` header.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::Kind;

/// An error that reaches an API client. Each variant has a stable
/// `error.type` string and status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Authentication(String),
    #[error("{0}")]
    Permission(String),
    #[error("{0}")]
    NotFound(String),
    /// A conflict with the resource's current state (409, still
    /// `invalid_request_error` as in Anthropic's API).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The file exists but its bytes may not be downloaded (400, with
    /// `error.details.error_code = "file_not_downloadable"`, which the SDKs
    /// raise as `FileNotDownloadableError`).
    #[error("{0}")]
    FileNotDownloadable(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A work item heartbeat whose `expected_last_heartbeat` is not the
    /// lease's, or whose lease expired (412, `error.details.error_code =
    /// "heartbeat_precondition_failed"` with the lease as the server holds
    /// it, which the SDKs raise as `BetaHeartbeatPreconditionFailedError`).
    #[error("{0}")]
    HeartbeatPrecondition(String, Box<crate::model::work::LeaseState>),
    #[error("{0}")]
    RateLimited(String),
    /// The server cannot serve right now (e.g. `/readyz` with the database
    /// unreachable): 503, `api_error`.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke on our side. The message is logged; the client gets a
    /// generic one with the request id to quote.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidRequest(msg.into())
    }

    pub fn not_found(kind: Kind, id: &str) -> Self {
        ApiError::NotFound(format!("{} `{id}` not found", kind.noun()))
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError::Conflict(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::FileNotDownloadable(_) => StatusCode::BAD_REQUEST,
            ApiError::Authentication(_) => StatusCode::UNAUTHORIZED,
            ApiError::Permission(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::HeartbeatPrecondition(..) => StatusCode::PRECONDITION_FAILED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error.type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::Conflict(_)
            | ApiError::Unprocessable(_)
            | ApiError::HeartbeatPrecondition(..)
            | ApiError::FileNotDownloadable(_) => "invalid_request_error",
            ApiError::Authentication(_) => "authentication_error",
            ApiError::Permission(_) => "permission_error",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::TooLarge(_) => "request_too_large",
            ApiError::RateLimited(_) => "rate_limit_error",
            ApiError::Internal(_) | ApiError::Unavailable(_) => "api_error",
        }
    }

    /// The finer `error.details.error_code`, where the API defines one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            ApiError::FileNotDownloadable(_) => Some("file_not_downloadable"),
            ApiError::HeartbeatPrecondition(..) => Some("heartbeat_precondition_failed"),
            _ => None,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `error`.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^error$")]
    pub kind: &'static str,
    pub error: ErrorDetail,
    /// Also sent as the `request-id` header.
    pub request_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    #[schema(value_type = ErrorType)]
    pub kind: &'static str,
    pub message: String,
    /// Present on errors with a finer cause the SDKs branch on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorCode>,
}

/// `error.details`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorCode {
    /// e.g. `file_not_downloadable`.
    pub error_code: &'static str,
    /// With `heartbeat_precondition_failed`: the work item's lease as the
    /// server holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<crate::model::work::LeaseState>,
}

/// The `error.type` values [`ApiError::kind`] gives (for the document).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    NotFoundError,
    RequestTooLarge,
    RateLimitError,
    ApiError,
}

impl ApiError {
    fn envelope(&self, message: String, request_id: String) -> ErrorEnvelope {
        ErrorEnvelope {
            kind: "error",
            error: ErrorDetail {
                kind: self.kind(),
                message,
                details: self.error_code().map(|error_code| ErrorCode {
                    error_code,
                    current_state: match self {
                        ApiError::HeartbeatPrecondition(_, current) => Some((**current).clone()),
                        _ => None,
                    },
                }),
            },
            request_id,
        }
    }
}

/// The request id of the request being answered, set by the request-id
/// middleware and read when an error body is rendered.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

tokio::task_local! {
    pub static REQUEST_ID: String;
}

fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| crate::ids::new_id(Kind::Request))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(request_id = %request_id, error = ?e, "internal error");
                format!("internal server error; quote request id {request_id} when reporting it")
            }
            other => other.to_string(),
        };
        let mut resp = (self.status(), axum::Json(self.envelope(message, request_id.clone()))).into_response();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("request-id", v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::model::common::Invalid> for ApiError {
    fn from(e: crate::model::common::Invalid) -> Self {
        ApiError::InvalidRequest(e.0)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Fenced(m) => ApiError::Conflict(m),
            StoreError::Other(e) => ApiError::Internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_type_is_in_the_documented_enum() {
        let all = [
            ApiError::invalid("x"),
            ApiError::Authentication("x".into()),
            ApiError::Permission("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::conflict("x"),
            ApiError::TooLarge("x".into()),
            ApiError::FileNotDownloadable("x".into()),
            ApiError::Unprocessable("x".into()),
            ApiError::HeartbeatPrecondition(
                "x".into(),
                Box::new(crate::model::work::LeaseState {
                    last_heartbeat: None,
                    lease_extended: false,
                    state: crate::model::work::WorkState::Queued,
                    ttl_seconds: 1,
                }),
            ),
            ApiError::RateLimited("x".into()),
            ApiError::Unavailable("x".into()),
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        for e in all {
            let v = serde_json::json!(e.kind());
            assert!(
                serde_json::from_value::<ErrorType>(v).is_ok(),
                "error type `{}` is missing from ErrorType",
                e.kind()
            );
        }
    }
}
