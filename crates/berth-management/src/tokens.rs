//! `/tokens`: API tokens (for this API and for `/v2/`), and
//! `/registries/{name}/docker-credentials`: a scoped token handed out as a
//! `config.json` / `.dockerconfigjson` document. Secrets are returned once
//! and stored only as hashes.
//!
//! Tokens are the admin's (or a read-write token's for every registry):
//! a scoped token cannot list or mint tokens here, except credentials for
//! a registry it may write, with no more than its own rights.

use crate::api::{json, Ctx, Sort};
use crate::error::ManagementError;
use crate::repositories::ms;
use crate::users::expiry;
use berth_http::Body;
use berth_meta::{now_millis, TokenRecord, TokenStatus};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// Active or revoked.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatusView {
    Active,
    Revoked,
}

/// An API token (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// `null`: every registry.
    pub registries: Option<Vec<String>>,
    pub read_write: bool,
    pub status: TokenStatusView,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub expired: bool,
    pub last_used_at: Option<String>,
}

/// `{"auths": {"<host>": {"auth": base64(user:secret), …}}}`: what
/// `docker login` writes to `config.json`, usable as a Kubernetes
/// `.dockerconfigjson` as is.
#[derive(Debug, Serialize, ToSchema)]
pub struct DockerConfig {
    #[schema(value_type = Object)]
    pub auths: serde_json::Map<String, serde_json::Value>,
}

/// A token with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenWithSecret {
    #[serde(flatten)]
    pub token: TokenView,
    /// `Authorization: Bearer <secret>`, or the password of `docker login`.
    pub secret: String,
    /// The same secret as a docker `config.json`.
    pub docker_config: DockerConfig,
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// 1–128 characters.
    pub name: String,
    /// Registries it may act on; absent or `null`: every registry.
    #[serde(default)]
    pub registries: Option<Vec<String>>,
    /// Read-write (`false`: read-only, the default).
    #[serde(default)]
    pub read_write: bool,
    /// RFC 3339; absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Changes to a token; absent fields stay; `registries: null` is every
/// registry, `expiresAt: null` never.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateToken {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub registries: Option<Option<Vec<String>>>,
    #[serde(default)]
    pub read_write: Option<bool>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
}

/// A new expiry.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshToken {
    /// RFC 3339; `null` or absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A credential for one registry.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCredentials {
    /// A name for the token behind it (default `docker-<registry>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Push too (`false`, the default: pull only).
    #[serde(default)]
    pub read_write: bool,
    /// RFC 3339; absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A page of tokens.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPage {
    pub items: Vec<TokenView>,
    pub total: usize,
    pub next: Option<String>,
}

/// Filters of a token list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents what list reads
pub struct TokenQuery {
    /// Only names containing this.
    search: Option<String>,
    /// `all` (every registry) or `scoped`.
    scope: Option<String>,
    /// `read-only` or `read-write`.
    mode: Option<String>,
    /// `active` or `revoked`.
    status: Option<String>,
    /// `created`, `expires`, `lastUsed` or `name`, `-` before for descending.
    sort: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// Entries to skip.
    offset: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSort {
    Created,
    Expires,
    LastUsed,
    Name,
}

fn view(id: &str, t: &TokenRecord) -> TokenView {
    TokenView {
        id: id.to_string(),
        name: t.name.clone(),
        registries: t.registries.clone(),
        read_write: t.read_write,
        status: match t.status {
            TokenStatus::Active => TokenStatusView::Active,
            TokenStatus::Revoked => TokenStatusView::Revoked,
        },
        created_at: ms(t.created_ms),
        expires_at: t.expires_ms.map(ms),
        expired: t.expires_ms.is_some_and(|e| e <= now_millis()),
        last_used_at: t.last_used_ms.map(ms),
    }
}

/// The docker `config.json` for `user`/`secret` at `host`.
pub fn docker_config(host: &str, user: &str, secret: &str) -> DockerConfig {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let mut auths = serde_json::Map::new();
    auths.insert(
        host.to_string(),
        serde_json::json!({ "auth": auth, "username": user, "password": secret }),
    );
    DockerConfig { auths }
}

fn need_token_admin(c: &Ctx<'_>) -> Result<()> {
    if c.caller.may_create_registries() {
        Ok(())
    } else {
        Err(ManagementError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "tokens are managed by the admin or a read-write token for every registry",
        ))
    }
}

fn check_registries(r: &Option<Vec<String>>) -> Result<()> {
    if let Some(list) = r {
        if list.len() > 100 {
            return Err(ManagementError::invalid("at most 100 registries per token"));
        }
        if let Some(bad) = list
            .iter()
            .find(|n| !berth_core::name::valid_registry_name(n))
        {
            return Err(ManagementError::invalid(format!("registry name {bad:?}")));
        }
    }
    Ok(())
}

impl Ctx<'_> {
    fn token_param(&self) -> Result<(String, TokenRecord)> {
        let id = self.param("id")?;
        let rec = self
            .meta()
            .token(&id)?
            .ok_or_else(|| ManagementError::not_found(format!("no token {id}")))?;
        Ok((id, rec))
    }
}

/// Create a token; the answer with its secret.
async fn mint(
    api: &crate::Inner,
    name: String,
    registries: Option<Vec<String>>,
    read_write: bool,
    expires: Option<u64>,
) -> Result<TokenWithSecret> {
    let admin = api.admin.clone();
    let (id, created) = api
        .admin
        .meta()
        .run(move |_| Ok(admin.create_token(&name, registries, read_write, expires)))
        .await??;
    let rec = api
        .admin
        .meta()
        .token(&id)?
        .ok_or_else(|| ManagementError::not_found("the token was deleted meanwhile"))?;
    Ok(TokenWithSecret {
        docker_config: docker_config(&api.host, &id, &created.secret),
        token: view(&id, &rec),
        secret: created.secret,
    })
}

fn created(v: &TokenWithSecret, location: &str) -> Response<Body> {
    let mut r = json(StatusCode::CREATED, v);
    r.headers_mut().insert("location", berth_http::hv(location));
    r
}

/// List tokens (read whole, then filtered and sorted).
#[utoipa::path(get, path = "/tokens", operation_id = "listTokens", tag = "tokens",
    params(TokenQuery),
    responses((status = 200, body = TokenPage), (status = 400, description = "bad parameters"),
        (status = 403, description = "a scoped or read-only token")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let q = c.page_query()?;
    let sort = c.sort(
        &[
            ("created", TokenSort::Created),
            ("expires", TokenSort::Expires),
            ("lastUsed", TokenSort::LastUsed),
            ("name", TokenSort::Name),
        ],
        Sort {
            field: TokenSort::Created,
            desc: false,
        },
    )?;
    let search = c.text("search")?;
    let scope = match c.q("scope") {
        None | Some("") => None,
        Some("all") => Some(true),
        Some("scoped") => Some(false),
        Some(v) => {
            return Err(ManagementError::invalid(format!(
                "scope={v:?}: all or scoped"
            )))
        }
    };
    let mode = match c.q("mode") {
        None | Some("") => None,
        Some("read-write") => Some(true),
        Some("read-only") => Some(false),
        Some(v) => {
            return Err(ManagementError::invalid(format!(
                "mode={v:?}: read-only or read-write"
            )))
        }
    };
    let status = match c.q("status") {
        None | Some("") => None,
        Some("active") => Some(TokenStatus::Active),
        Some("revoked") => Some(TokenStatus::Revoked),
        Some(v) => {
            return Err(ManagementError::invalid(format!(
                "status={v:?}: active or revoked"
            )))
        }
    };
    let mut all: Vec<(String, TokenRecord)> = c
        .meta()
        .list_tokens()?
        .into_iter()
        .filter(|(_, t)| {
            search.as_ref().is_none_or(|s| t.name.contains(s.as_str()))
                && scope.is_none_or(|a| t.registries.is_none() == a)
                && mode.is_none_or(|m| t.read_write == m)
                && status.is_none_or(|s| t.status == s)
        })
        .collect();
    match sort.field {
        TokenSort::Created => all.sort_by_key(|(id, t)| (t.created_ms, id.clone())),
        TokenSort::Expires => {
            all.sort_by_key(|(id, t)| (t.expires_ms.unwrap_or(u64::MAX), id.clone()))
        }
        TokenSort::LastUsed => all.sort_by_key(|(id, t)| (t.last_used_ms.unwrap_or(0), id.clone())),
        TokenSort::Name => all.sort_by_key(|(id, t)| (t.name.clone(), id.clone())),
    }
    if sort.desc {
        all.reverse();
    }
    let total = all.len();
    let (page, next) = q.offset_page(all, "/api/v1/tokens");
    let items = page.iter().map(|(id, t)| view(id, t)).collect();
    Ok(json(StatusCode::OK, &TokenPage { items, total, next }))
}

/// Create a token; the secret (also as a docker `config.json`) is in this
/// answer only.
#[utoipa::path(post, path = "/tokens", operation_id = "createToken", tag = "tokens",
    request_body = CreateToken,
    responses((status = 201, body = TokenWithSecret), (status = 400, description = "malformed name, registry or expiry"),
        (status = 403, description = "a scoped or read-only token"), (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn create(mut c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let req: CreateToken = c.json().await?;
    check_registries(&req.registries)?;
    let expires = expiry(req.expires_at.as_deref())?;
    let v = mint(c.api, req.name, req.registries, req.read_write, expires).await?;
    let loc = format!("/api/v1/tokens/{}", v.token.id);
    Ok(created(&v, &loc))
}

/// One token (with when it was last used).
#[utoipa::path(get, path = "/tokens/{id}", operation_id = "getToken", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 200, body = TokenView), (status = 403, description = "a scoped or read-only token"),
        (status = 404, description = "no such token")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let (id, t) = c.token_param()?;
    Ok(json(StatusCode::OK, &view(&id, &t)))
}

/// Change a token's name, scope, mode or expiry (at once, on both APIs).
#[utoipa::path(patch, path = "/tokens/{id}", operation_id = "updateToken", tag = "tokens",
    params(("id" = String, Path, description = "token id")), request_body = UpdateToken,
    responses((status = 200, body = TokenView), (status = 400, description = "malformed field"),
        (status = 403, description = "a scoped or read-only token"), (status = 404, description = "no such token"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn update(mut c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let (id, _) = c.token_param()?;
    let req: UpdateToken = c.json().await?;
    if let Some(n) = &req.name {
        if n.is_empty() || n.len() > 128 {
            return Err(ManagementError::invalid("token name: 1-128 characters"));
        }
    }
    if let Some(r) = &req.registries {
        check_registries(r)?;
    }
    let expires = match &req.expires_at {
        Some(e) => Some(expiry(e.as_deref())?),
        None => None,
    };
    let (admin, i) = (c.api.admin.clone(), id.clone());
    let t = c
        .meta()
        .run(move |_| {
            Ok(admin.update_token(&i, |t| {
                if let Some(n) = &req.name {
                    t.name = n.clone();
                }
                if let Some(r) = &req.registries {
                    t.registries = r.clone();
                }
                if let Some(rw) = req.read_write {
                    t.read_write = rw;
                }
                if let Some(e) = expires {
                    t.expires_ms = e;
                }
            }))
        })
        .await??;
    Ok(json(StatusCode::OK, &view(&id, &t)))
}

/// A new expiry for a token.
#[utoipa::path(post, path = "/tokens/{id}/refresh", operation_id = "refreshToken", tag = "tokens",
    params(("id" = String, Path, description = "token id")), request_body = RefreshToken,
    responses((status = 200, body = TokenView), (status = 400, description = "malformed expiry"),
        (status = 403, description = "a scoped or read-only token"), (status = 404, description = "no such token")))]
pub async fn refresh(mut c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let (id, _) = c.token_param()?;
    let req: RefreshToken = c.json_or_default().await?;
    let expires = expiry(req.expires_at.as_deref())?;
    let (admin, i) = (c.api.admin.clone(), id.clone());
    let t = c
        .meta()
        .run(move |_| Ok(admin.update_token(&i, |t| t.expires_ms = expires)))
        .await??;
    Ok(json(StatusCode::OK, &view(&id, &t)))
}

/// A new secret, in this answer only; the old one stops working at once.
#[utoipa::path(post, path = "/tokens/{id}/regenerate", operation_id = "regenerateToken", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 200, body = TokenWithSecret), (status = 403, description = "a scoped or read-only token"),
        (status = 404, description = "no such token")))]
pub async fn regenerate(c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let (id, _) = c.token_param()?;
    let (admin, i) = (c.api.admin.clone(), id.clone());
    let created = c
        .meta()
        .run(move |_| Ok(admin.regenerate_token(&i)))
        .await??;
    let (_, t) = c.token_param()?;
    Ok(json(
        StatusCode::OK,
        &TokenWithSecret {
            docker_config: docker_config(&c.api.host, &id, &created.secret),
            token: view(&id, &t),
            secret: created.secret,
        },
    ))
}

/// Revoke a token: refused at once on both APIs; the record stays (see
/// delete).
#[utoipa::path(post, path = "/tokens/{id}/revoke", operation_id = "revokeToken", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 200, body = TokenView), (status = 403, description = "a scoped or read-only token"),
        (status = 404, description = "no such token")))]
pub async fn revoke(c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let (id, _) = c.token_param()?;
    let (admin, i) = (c.api.admin.clone(), id.clone());
    let t = c
        .meta()
        .run(move |_| Ok(admin.update_token(&i, |t| t.status = TokenStatus::Revoked)))
        .await??;
    Ok(json(StatusCode::OK, &view(&id, &t)))
}

/// Delete a token.
#[utoipa::path(delete, path = "/tokens/{id}", operation_id = "deleteToken", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "deleted"), (status = 403, description = "a scoped or read-only token"),
        (status = 404, description = "no such token")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    need_token_admin(&c)?;
    let (id, _) = c.token_param()?;
    let admin = c.api.admin.clone();
    c.meta().run(move |_| Ok(admin.delete_token(&id))).await??;
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}

/// A credential for one registry as a docker `config.json` (read-only
/// unless asked; no expiry unless asked): a new token scoped to the
/// registry. Use it as is with
/// `kubectl create secret generic regcred --from-file=.dockerconfigjson=config.json --type=kubernetes.io/dockerconfigjson`.
#[utoipa::path(post, path = "/registries/{name}/docker-credentials", operation_id = "createDockerCredentials", tag = "tokens",
    params(("name" = String, Path, description = "registry name", example = "acme")), request_body = CreateCredentials,
    responses((status = 201, body = TokenWithSecret), (status = 400, description = "malformed name or expiry"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such registry"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn docker_credentials(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    c.caller.need_write()?;
    let req: CreateCredentials = c.json_or_default().await?;
    let name = req.name.unwrap_or_else(|| format!("docker-{registry}"));
    if name.is_empty() || name.len() > 128 {
        return Err(ManagementError::invalid("name: 1-128 characters"));
    }
    let expires = expiry(req.expires_at.as_deref())?;
    let v = mint(c.api, name, Some(vec![registry]), req.read_write, expires).await?;
    let loc = format!("/api/v1/tokens/{}", v.token.id);
    Ok(created(&v, &loc))
}
