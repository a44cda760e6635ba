//! The one place where errors become `/v2/` (and `/token`) responses.

use berth_auth::AuthError;
use berth_core::ErrorCode;
use berth_meta::MetaError;
use berth_storage::StorageError;
use http::{HeaderName, HeaderValue};
use serde_json::json;

/// An OCI error ready to serve: code, message, optional detail and extra
/// headers (e.g. `Range` on a 416 for an upload).
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            message: None,
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn message(mut self, m: impl Into<String>) -> ApiError {
        self.message = Some(m.into());
        self
    }

    pub fn detail(mut self, d: impl Into<serde_json::Value>) -> ApiError {
        self.detail = Some(d.into());
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The spec's JSON envelope.
    pub fn body(&self) -> Vec<u8> {
        let mut e = json!({
            "code": self.code.as_str(),
            "message": self.message.as_deref().unwrap_or(self.code.default_message()),
        });
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        serde_json::to_vec(&json!({ "errors": [e] })).expect("json")
    }

    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "internal error");
        ApiError::new(ErrorCode::Internal)
    }
}

impl berth_http::ApiError for ApiError {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.code.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn bad_request(detail: String) -> ApiError {
        ApiError::new(ErrorCode::BadRequest).message(detail)
    }

    fn render(self, head: bool) -> http::Response<berth_http::Body> {
        let mut r = berth_http::error_response(
            berth_http::ApiError::status(&self),
            self.body(),
            "application/json",
            head,
        );
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

/// Busy, not broken: 503 with `Retry-After`, so clients try again.
fn unavailable(what: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %what, "metadata store busy");
    ApiError::new(ErrorCode::Unavailable)
        .message("the registry is busy; try again")
        .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> ApiError {
        if let MetaError::OverQuota {
            registry,
            limit,
            usage,
            need,
        } = &e
        {
            return ApiError::new(ErrorCode::Denied)
                .message("storage limit reached")
                .detail(json!({
                    "registry": registry,
                    "storageLimitBytes": limit,
                    "usedBytes": usage,
                    "neededBytes": need,
                    "reason": e.to_string(),
                }));
        }
        if let MetaError::TooManyUploads { principal, open } = &e {
            return ApiError::new(ErrorCode::TooManyRequests)
                .message("too many upload sessions open")
                .detail(json!({
                    "principal": principal,
                    "openSessions": open,
                    "reason": "finish or cancel an upload session first (uploads.max_sessions_per_principal)",
                }));
        }
        if let MetaError::TooManyUploadsTotal { open } = &e {
            return ApiError::new(ErrorCode::TooManyRequests)
                .message("too many upload sessions open on this registry server")
                .detail(json!({
                    "openSessions": open,
                    "reason": "wait for upload sessions to finish (uploads.max_sessions)",
                }));
        }
        if let MetaError::TagRule(r) = &e {
            return ApiError::new(ErrorCode::Denied)
                .message(format!("tag {} is {}", r.tag, r.kind))
                .detail(json!({
                    "repository": r.repo,
                    "tag": r.tag,
                    "rule": r.rule,
                    "kind": r.kind,
                    "tagPattern": r.pattern,
                    "reason": r.to_string(),
                }));
        }
        if matches!(e, MetaError::Kv(berth_meta::KvError::NoSpace(_))) {
            tracing::warn!(error = %e, "metadata store out of space");
            return ApiError::new(ErrorCode::InsufficientStorage)
                .detail("the metadata store has no space left");
        }
        if e.is_retryable() {
            unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

/// The one mapping of auth errors to `/v2/` and `/token` answers. A 401
/// here has no challenge yet: `/v2/` adds one (`access.rs`).
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::TooManyAttempts => {
                ApiError::new(ErrorCode::TooManyRequests).detail(e.to_string())
            }
            AuthError::Unauthenticated(m) => ApiError::new(ErrorCode::Unauthorized).detail(m),
            AuthError::Denied(m) => ApiError::new(ErrorCode::Denied).detail(m),
            AuthError::Invalid(m) => ApiError::new(ErrorCode::BadRequest).detail(m),
            AuthError::Unavailable(m) => unavailable(m),
            AuthError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::NotFound => ApiError::new(ErrorCode::BlobUnknown),
            StorageError::SessionNotFound => ApiError::new(ErrorCode::BlobUploadUnknown),
            StorageError::DigestMismatch { expected, actual } => ApiError::new(
                ErrorCode::DigestInvalid,
            )
            .detail(json!({ "expected": expected.to_string(), "actual": actual.to_string() })),
            StorageError::Body(m) => ApiError::new(ErrorCode::BlobUploadInvalid)
                .message("request body could not be read")
                .detail(m),
            StorageError::LengthMismatch { expected, got } => ApiError::new(ErrorCode::SizeInvalid)
                .detail(json!({ "declared": expected, "received": got })),
            StorageError::Full(m) => {
                tracing::warn!(reason = %m, "upload refused: storage full");
                ApiError::new(ErrorCode::InsufficientStorage).detail(m)
            }
            other => ApiError::internal(other),
        }
    }
}
