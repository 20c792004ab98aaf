//! Errors in OpenAI's shape: `{"error": {"message", "type", "code"}}` with the HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is malformed or asks for something impossible.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), kind: "invalid_request_error", code: None }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "invalid or missing API key (send 'Authorization: Bearer <key>')".into(),
            kind: "authentication_error",
            code: Some("invalid_api_key"),
        }
    }

    /// 503 with Retry-After: every slot busy and the queue full, or still loading.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "unavailable_error",
            code: Some("server_busy"),
        }
    }

    pub fn status(status: StatusCode, message: impl Into<String>) -> ApiError {
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        ApiError { status, message: message.into(), kind, code: None }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "code": self.code}})
    }

    /// A core error met while preparing a request: the caller's fault (400) except for I/O.
    pub fn from_core(e: llama_core::Error) -> ApiError {
        use llama_core::Error as E;
        match e {
            E::ContextOverflow(_) => ApiError::bad(e.to_string()).with_code("context_length_exceeded"),
            E::InvalidArgument(_) | E::Grammar(_) | E::Tokenizer(_) => ApiError::bad(e.to_string()),
            other => ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if retry {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
