//! Who calls the management API: the admin, or an API token. Registry
//! users (the `docker login` accounts) and anonymous callers may not.

use crate::error::ManagementError;
use berth_auth::{Auth, AuthError, Principal};
use http::header::{HeaderMap, AUTHORIZATION};
use http::StatusCode;

#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Admin,
    Token {
        id: String,
        /// `None`: every registry.
        registries: Option<Vec<String>>,
        read_write: bool,
    },
}

impl Caller {
    /// Whether the caller sees `registry` at all (others are 404 to it, so
    /// names do not leak).
    pub fn sees(&self, registry: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Token { registries, .. } => registries
                .as_ref()
                .is_none_or(|l| l.iter().any(|r| r == registry)),
        }
    }

    /// Whether the caller may change anything (read-only tokens may not).
    pub fn may_write(&self) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Token { read_write, .. } => *read_write,
        }
    }

    /// Whether the caller may create registries: the admin, or a
    /// read-write token for every registry.
    pub fn may_create_registries(&self) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Token {
                registries,
                read_write,
                ..
            } => registries.is_none() && *read_write,
        }
    }

    /// Who the caller is in tag history and the audit log.
    pub fn subject(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::Token { id, .. } => format!("token:{id}"),
        }
    }

    /// 403 unless the caller may write.
    pub fn need_write(&self) -> Result<(), ManagementError> {
        if self.may_write() {
            Ok(())
        } else {
            Err(ManagementError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token is read-only",
            ))
        }
    }
}

fn unauthorized(detail: &str) -> ManagementError {
    ManagementError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        .header("www-authenticate", "Bearer realm=\"berth-management\"")
}

/// The caller of a request: `Authorization: Bearer <API or admin token>`,
/// or Basic with the same secret as the password.
pub fn identify(auth: &Auth, h: &HeaderMap, client: &str) -> Result<Caller, ManagementError> {
    if !auth.enabled() {
        return Ok(Caller::Admin);
    }
    let Some(v) = h.get(AUTHORIZATION) else {
        return Err(unauthorized(
            "credentials required: Authorization: Bearer <token>",
        ));
    };
    let v = v
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization"))?;
    let (kind, cred) = v.split_once(' ').unwrap_or((v, ""));
    let (user, secret) = match kind.to_ascii_lowercase().as_str() {
        "bearer" => (String::new(), cred.trim().to_string()),
        "basic" => berth_auth::decode_basic(cred)
            .ok_or_else(|| unauthorized("malformed Basic credentials"))?,
        _ => return Err(unauthorized("unsupported Authorization scheme")),
    };
    if berth_auth::secret::token_id(&secret).is_none() {
        return Err(unauthorized("the management API takes API tokens"));
    }
    match auth.basic(&user, &secret, client) {
        Ok(Principal::Admin) => Ok(Caller::Admin),
        Ok(Principal::Token {
            id,
            registries,
            read_write,
        }) => Ok(Caller::Token {
            id,
            registries,
            read_write,
        }),
        Ok(_) => Err(ManagementError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "registry users cannot use the management API",
        )),
        Err(AuthError::TooManyAttempts) => Err(ManagementError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many failed logins; try again later",
        )),
        Err(AuthError::Unauthenticated(_)) => Err(unauthorized("invalid credentials")),
        Err(e) => Err(e.into()),
    }
}
