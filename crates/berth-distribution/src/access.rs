//! Authentication and authorisation of `/v2/` requests, between parsing and
//! handling: who is asking, what the endpoint needs, 401 (with the docker
//! token challenge) or 403 or 429.

use crate::router::Endpoint;
use crate::{ApiError, Inner, Result};
use berth_auth::{Access, Action, AuthError, Principal};
use berth_core::{ErrorCode, RepoName};
use berth_meta::{RegistryRecord, Visibility};
use http::header::{self, HeaderMap};

/// Who is asking, and what a bearer JWT granted (None for Basic: the
/// principal's own permissions apply).
pub(crate) struct Caller {
    pub principal: Principal,
    pub granted: Option<Vec<Access>>,
}

impl Caller {
    pub fn open() -> Caller {
        Caller {
            principal: Principal::Admin,
            granted: None,
        }
    }

    /// May the caller do `action` in `repo` (whose registry is `public`)?
    pub fn may(&self, repo: &RepoName, action: Action, public: bool) -> bool {
        let registry = repo.first_component();
        if !self.principal.may(registry, action, public) {
            return false;
        }
        match &self.granted {
            None => true,
            Some(access) => access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo.as_str()
                    && a.actions.iter().any(|x| x == action.as_str() || x == "*")
            }),
        }
    }

    pub fn sees_catalog_of(&self, registry: &str, public: bool) -> bool {
        self.principal.may(registry, Action::Pull, public)
    }
}

/// The one mapping ([`ApiError`]'s `From<AuthError>`), plus the challenge
/// a 401 on `/v2/` carries.
fn auth_error(e: AuthError, challenge: Option<String>) -> ApiError {
    let e = ApiError::from(e);
    match challenge {
        Some(c) if e.code == ErrorCode::Unauthorized => {
            e.header(header::WWW_AUTHENTICATE, crate::hv(&c))
        }
        _ => e,
    }
}

fn unauthorized(challenge: Option<String>) -> ApiError {
    let mut e = ApiError::new(ErrorCode::Unauthorized);
    if let Some(c) = challenge {
        e = e.header(header::WWW_AUTHENTICATE, crate::hv(&c));
    }
    e
}

impl Inner {
    /// The token endpoint to name: the configured realm, or — with no
    /// external URL configured — the one on the host the client reached
    /// (its `Host`), so that a server listening on every address behind a
    /// port mapping names an address its clients can reach.
    fn realm(&self, h: &HeaderMap) -> String {
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && !v.contains(['"', '/', '\\', ' ']));
        match (&self.cfg.realm_scheme_from_host, host) {
            (Some(scheme), Some(host)) => format!("{scheme}://{host}/token"),
            _ => self.cfg.realm.clone(),
        }
    }

    fn challenge(&self, h: &HeaderMap, scope: Option<String>) -> Option<String> {
        let auth = self.auth.as_ref()?;
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm(h),
            auth.config().service
        );
        if let Some(s) = scope {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        Some(c)
    }

    /// Identify the caller from `Authorization` (Basic, or Bearer with a JWT
    /// from `/token` or an API token itself).
    pub(crate) fn authenticate(
        &self,
        h: &HeaderMap,
        client: &str,
        scope: Option<String>,
    ) -> Result<Caller> {
        let Some(auth) = self.auth.as_ref().filter(|a| a.enabled()) else {
            return Ok(Caller::open());
        };
        let Some(v) = h.get(header::AUTHORIZATION) else {
            return Ok(Caller {
                principal: Principal::Anonymous,
                granted: None,
            });
        };
        let v = v.to_str().map_err(|_| {
            unauthorized(self.challenge(h, scope.clone())).detail("malformed Authorization")
        })?;
        let (kind, cred) = v.split_once(' ').unwrap_or((v, ""));
        let cred = cred.trim();
        match kind.to_ascii_lowercase().as_str() {
            "basic" => {
                let (user, pass) = berth_auth::decode_basic(cred).ok_or_else(|| {
                    unauthorized(self.challenge(h, scope.clone()))
                        .detail("malformed Basic credentials")
                })?;
                let principal = auth
                    .basic(&user, &pass, client)
                    .map_err(|e| auth_error(e, self.challenge(h, scope)))?;
                Ok(Caller {
                    principal,
                    granted: None,
                })
            }
            "bearer" if berth_auth::secret::token_id(cred).is_some() => {
                let principal = auth
                    .basic("", cred, client)
                    .map_err(|e| auth_error(e, self.challenge(h, scope)))?;
                Ok(Caller {
                    principal,
                    granted: None,
                })
            }
            "bearer" => {
                let (principal, access) = auth
                    .bearer(cred)
                    .map_err(|e| auth_error(e, self.challenge(h, scope)))?;
                Ok(Caller {
                    principal,
                    granted: Some(access),
                })
            }
            _ => {
                Err(unauthorized(self.challenge(h, scope))
                    .detail("unsupported Authorization scheme"))
            }
        }
    }

    /// Check the caller may call `ep`; create the registry on an admin's
    /// first push when configured. Errors: 401 (anonymous), 403, or
    /// NAME_INVALID / NAME_UNKNOWN for names outside any registry.
    pub(crate) async fn authorize(
        &self,
        ep: &Endpoint,
        caller: &Caller,
        h: &HeaderMap,
    ) -> Result<()> {
        let Some(auth) = self.auth.as_ref().filter(|a| a.enabled()) else {
            return Ok(());
        };
        let Some(repo) = ep.repository() else {
            // /v2/ and _catalog: any authenticated caller
            if caller.principal == Principal::Anonymous {
                return Err(unauthorized(self.challenge(h, None)));
            }
            return Ok(());
        };
        let action = required_action(ep);
        let scope = Some(format!("repository:{repo}:{}", scope_actions(action)));
        if !repo.as_str().contains('/') {
            return Err(ApiError::new(ErrorCode::NameInvalid)
                .message("repository names start with their registry: <registry>/<repository>")
                .detail(repo.to_string()));
        }
        let registry = repo.first_component();
        let vis = auth
            .registry_visibility(registry)
            .map_err(|e| auth_error(e, None))?;
        let public = vis == Some(Visibility::Public);
        if vis.is_none() && !caller.principal.is_admin() {
            // no such tenant: nothing to see for anyone but the admin
            if caller.principal == Principal::Anonymous {
                return Err(unauthorized(self.challenge(h, scope)));
            }
            return Err(
                ApiError::new(ErrorCode::NameUnknown).detail(format!("no registry {registry}"))
            );
        }
        if !caller.may(repo, action, public) {
            if caller.principal == Principal::Anonymous {
                return Err(unauthorized(self.challenge(h, scope)));
            }
            // A JWT for less than its holder may do: 401 with the scope to
            // ask for and `error="insufficient_scope"` (distribution and the
            // docker token spec), so clients fetch a wider token.
            if caller.granted.is_some() && caller.principal.may(registry, action, public) {
                let mut e =
                    ApiError::new(ErrorCode::Unauthorized).detail("token lacks the scope needed");
                if let Some(c) = self.challenge(h, scope) {
                    e = e.header(
                        header::WWW_AUTHENTICATE,
                        crate::hv(&(c + ",error=\"insufficient_scope\"")),
                    );
                }
                return Err(e);
            }
            return Err(ApiError::new(ErrorCode::Denied).detail(format!(
                "{} may not {} {repo}",
                caller.principal.subject(),
                action.as_str()
            )));
        }
        if vis.is_none() {
            if action == Action::Push && auth.config().auto_create_registries {
                if !berth_core::name::valid_registry_name(registry) {
                    return Err(ApiError::new(ErrorCode::NameInvalid).detail(format!(
                        "registry name {registry:?}: {}",
                        berth_core::name::REGISTRY_NAME_RULE
                    )));
                }
                let name = registry.to_string();
                let rec =
                    RegistryRecord::new(uuid::Uuid::new_v4().to_string(), Visibility::Private);
                // Of concurrent first pushes one creates it; all go on.
                if self
                    .meta
                    .run(move |m| m.create_registry(&name, &rec))
                    .await?
                {
                    tracing::info!(registry, "registry created on first push");
                }
            } else {
                return Err(
                    ApiError::new(ErrorCode::NameUnknown).detail(format!("no registry {registry}"))
                );
            }
        }
        Ok(())
    }

    /// The challenge scope for an endpoint (for 401s raised before
    /// authorisation).
    pub(crate) fn scope_for(ep: &Endpoint) -> Option<String> {
        ep.repository()
            .map(|r| format!("repository:{r}:{}", scope_actions(required_action(ep))))
    }

    /// May the caller pull from `repo` (a mount source)?
    pub(crate) fn may_pull(&self, caller: &Caller, repo: &RepoName) -> bool {
        let Some(auth) = self.auth.as_ref().filter(|a| a.enabled()) else {
            return true;
        };
        let public = matches!(
            auth.registry_visibility(repo.first_component()),
            Ok(Some(Visibility::Public))
        );
        caller.may(repo, Action::Pull, public)
    }

    /// Admins and all-registry tokens (or an open registry).
    pub(crate) fn may_read_everything(&self, caller: &Caller) -> bool {
        if !self.auth.as_ref().is_some_and(|a| a.enabled()) {
            return true;
        }
        match &caller.principal {
            Principal::Admin => true,
            Principal::Token {
                registries: None, ..
            } => caller.granted.is_none(),
            _ => false,
        }
    }

    /// Whether `_catalog` shows `repo` to the caller.
    pub(crate) fn catalog_visible(&self, caller: &Caller, repo: &str) -> bool {
        let Some(auth) = self.auth.as_ref().filter(|a| a.enabled()) else {
            return true;
        };
        if caller.principal.is_admin() {
            return true;
        }
        let registry = repo.split('/').next().unwrap_or(repo);
        let public = matches!(
            auth.registry_visibility(registry),
            Ok(Some(Visibility::Public))
        );
        caller.sees_catalog_of(registry, public)
    }
}

fn required_action(ep: &Endpoint) -> Action {
    match ep {
        Endpoint::PutManifest { .. }
        | Endpoint::StartUpload { .. }
        | Endpoint::GetUpload { .. }
        | Endpoint::PatchUpload { .. }
        | Endpoint::PutUpload { .. }
        | Endpoint::DeleteUpload { .. } => Action::Push,
        Endpoint::DeleteManifest { .. } | Endpoint::DeleteBlob { .. } => Action::Delete,
        _ => Action::Pull,
    }
}

fn scope_actions(a: Action) -> &'static str {
    match a {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    }
}
