//! The management API's one error type and its one rendering: RFC 9457
//! problem details (`application/problem+json`) with a stable `code`.

use crate::admin::AdminError;
use berth_http::{error_response, Body};
use http::{Response, StatusCode};
use serde_json::json;

/// The media type of an error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Its `Content-Type`, with the charset said: clients that guess the
/// charset of `application/*+json` otherwise may misread non-ASCII.
pub const PROBLEM_JSON_UTF8: &str = "application/problem+json; charset=utf-8";

#[derive(Debug)]
pub struct ManagementError {
    pub status: StatusCode,
    /// Stable, machine-readable: `not_found`, `invalid_request`, …
    pub code: &'static str,
    pub detail: String,
    pub headers: Vec<(&'static str, String)>,
}

impl ManagementError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ManagementError {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
}

impl berth_http::ApiError for ManagementError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn bad_request(detail: String) -> Self {
        Self::invalid(detail)
    }

    fn render(self, head: bool) -> Response<Body> {
        let body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        let mut r = error_response(
            self.status,
            serde_json::to_vec(&body).expect("json"),
            PROBLEM_JSON_UTF8,
            head,
        );
        for (k, v) in self.headers {
            r.headers_mut().insert(k, berth_http::hv(&v));
        }
        r
    }
}

impl From<AdminError> for ManagementError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", m),
            AdminError::NotFound(m) => Self::not_found(m),
            AdminError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            AdminError::NotEmpty(m) => Self::new(StatusCode::CONFLICT, "registry_not_empty", m),
            AdminError::Meta(m @ berth_meta::MetaError::OverQuota { .. }) => {
                Self::new(StatusCode::FORBIDDEN, "over_quota", m.to_string())
            }
            AdminError::Meta(berth_meta::MetaError::TagRule(r)) => {
                let (status, code) = tag_rule_code(&r);
                Self::new(status, code, r.to_string())
            }
            AdminError::Meta(m) if m.is_retryable() => {
                tracing::warn!(error = %m, "metadata store busy");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "busy; try again",
                )
            }
            AdminError::Meta(m) => {
                tracing::error!(error = %m, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl From<berth_meta::MetaError> for ManagementError {
    fn from(e: berth_meta::MetaError) -> Self {
        AdminError::Meta(e).into()
    }
}

impl From<berth_auth::AuthError> for ManagementError {
    fn from(e: berth_auth::AuthError) -> Self {
        match e {
            berth_auth::AuthError::Unavailable(m) => {
                tracing::warn!(error = %m, "auth store busy");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "busy; try again",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

/// A tag-rule refusal's status and code: protected, 403 (the admin could);
/// immutable, 409 (nobody can until the rule goes).
pub(crate) fn tag_rule_code(r: &berth_meta::TagRefusal) -> (StatusCode, &'static str) {
    if r.kind == "protected" {
        (StatusCode::FORBIDDEN, "tag_protected")
    } else {
        (StatusCode::CONFLICT, "tag_immutable")
    }
}
