//! What auth reports. The HTTP crates map it, once each, to their answers.

/// An auth failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable credential (401 with a challenge on `/v2/`).
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("access denied: {0}")]
    Denied(String),
    #[error("too many failed logins; try again later")]
    TooManyAttempts,
    /// A request or a configured value that cannot be used.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The metadata store is busy: trying again may succeed.
    #[error("auth temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("auth internal error: {0}")]
    Internal(String),
}

impl From<berth_meta::MetaError> for AuthError {
    fn from(e: berth_meta::MetaError) -> AuthError {
        if e.is_retryable() {
            AuthError::Unavailable(e.to_string())
        } else {
            AuthError::Internal(e.to_string())
        }
    }
}
