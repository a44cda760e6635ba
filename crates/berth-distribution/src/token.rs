//! The docker token service: `GET /token` (Basic credentials or anonymous,
//! `scope` parameters) and `POST /token` (the OAuth2 password and
//! refresh-token grants that docker and containerd use).

use crate::{json_response, ApiError, Body, Inner, Result};
use berth_auth::{Principal, Scope, TokenType};
use berth_core::ErrorCode;
use berth_http::{ApiHandler, ClientAddr};
use futures::StreamExt;
use http::request::Parts;
use http::{header, Method, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// The token service (`/token`): an API of its own beside `/v2/`, over the
/// same auth, with the same error envelope.
#[derive(Clone)]
pub struct TokenService {
    pub(crate) inner: Arc<Inner>,
}

/// `GET` (Basic or anonymous, scopes in the query) or `POST` (OAuth2
/// grants in a form body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    Get,
    Post,
}

impl ApiHandler for TokenService {
    type Endpoint = TokenEndpoint;
    type Error = ApiError;
    const UNROUTED: &'static str = "token.unrouted";

    fn parse(&self, parts: &Parts) -> Result<TokenEndpoint> {
        if parts.uri.path() != "/token" {
            return Err(ApiError::new(ErrorCode::NotFound));
        }
        match parts.method {
            Method::GET | Method::HEAD => Ok(TokenEndpoint::Get),
            Method::POST => Ok(TokenEndpoint::Post),
            _ => Err(ApiError::new(ErrorCode::Unsupported)),
        }
    }

    fn route(ep: &TokenEndpoint) -> &'static str {
        match ep {
            TokenEndpoint::Get => "token.get",
            TokenEndpoint::Post => "token.post",
        }
    }

    async fn handle(&self, _ep: TokenEndpoint, parts: Parts, body: Body) -> Result<Response<Body>> {
        serve(&self.inner, parts, body).await
    }
}

fn params(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn serve(s: &Inner, parts: Parts, body: Body) -> Result<Response<Body>> {
    let Some(auth) = s.auth.as_ref().filter(|a| a.enabled()) else {
        return Err(ApiError::new(ErrorCode::NotFound).message("authentication is disabled"));
    };
    let client = parts
        .extensions
        .get::<ClientAddr>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let mut p = params(parts.uri.query().unwrap_or(""));
    let is_post = parts.method == Method::POST;
    if is_post {
        let mut buf = Vec::new();
        let stream = crate::body_stream(body);
        futures::pin_mut!(stream);
        while let Some(c) = stream.next().await {
            let c = c.map_err(|e| ApiError::new(ErrorCode::BadRequest).detail(e))?;
            if buf.len() + c.len() > 64 * 1024 {
                return Err(ApiError::new(ErrorCode::PayloadTooLarge));
            }
            buf.extend_from_slice(&c);
        }
        p.extend(params(&String::from_utf8_lossy(&buf)));
    }
    let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Some(svc) = get("service") {
        if svc != auth.config().service {
            return Err(ApiError::new(ErrorCode::BadRequest)
                .message("unknown service")
                .detail(svc.to_string()));
        }
    }
    // GET repeats `scope`; POST puts space-separated scopes in one.
    let scopes: Vec<Scope> = p
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|v| Scope::parse(&v))
        .collect();

    let (principal, want_refresh) = if is_post {
        match get("grant_type") {
            Some("password") => {
                let user = get("username").unwrap_or("");
                let pass = get("password").unwrap_or("");
                (auth.basic(user, pass, &client)?, true)
            }
            Some("refresh_token") => {
                let t = get("refresh_token").unwrap_or("");
                (auth.refresh(t)?, false)
            }
            other => {
                return Err(ApiError::new(ErrorCode::BadRequest)
                    .message("unsupported grant_type")
                    .detail(other.unwrap_or("").to_string()))
            }
        }
    } else {
        match parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            None => (Principal::Anonymous, false),
            Some(v) => {
                let (kind, cred) = v.split_once(' ').unwrap_or((v, ""));
                if !kind.eq_ignore_ascii_case("basic") {
                    return Err(ApiError::new(ErrorCode::Unauthorized)
                        .message("Basic credentials expected"));
                }
                let (user, pass) = berth_auth::decode_basic(cred).ok_or_else(|| {
                    ApiError::new(ErrorCode::Unauthorized).message("malformed Basic credentials")
                })?;
                let offline = get("offline_token") == Some("true");
                (auth.basic(&user, &pass, &client)?, offline)
            }
        }
    };
    let access = auth.grant(&principal, &scopes)?;
    let (token, expires_in, issued_at) = auth.issue(&principal, access, TokenType::Access)?;
    let mut out = json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": berth_core::time::rfc3339(issued_at),
    });
    if want_refresh && principal != Principal::Anonymous {
        let (refresh, _, _) = auth.issue(&principal, Vec::new(), TokenType::Refresh)?;
        out["refresh_token"] = json!(refresh);
    }
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&out).expect("json"),
        "application/json",
    ))
}
