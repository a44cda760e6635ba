//! [`Auth`]: credentials checked against the metadata store, scopes granted,
//! JWTs issued and verified, failed logins rate-limited.

use crate::jwt::{Claims, Signer};
use crate::principal::{Action, Principal};
use crate::scope::{Access, Scope};
use crate::secret;
use berth_meta::{
    now_millis, Meta, RegistryRecord, RegistryStatus, TokenRecord, TokenStatus, UserRecord,
    UserRefused, Visibility,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ADMIN_SETTING: &str = "admin_token_hash";

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Off: an open registry (local use only).
    pub enabled: bool,
    /// The `service` of the token flow (the JWT audience).
    pub service: String,
    /// The JWT issuer.
    pub issuer: String,
    /// Lifetime of access JWTs.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (the OAuth2 flow of docker/containerd).
    pub refresh_ttl: Duration,
    /// An admin pushing into a registry that does not exist creates it.
    pub auto_create_registries: bool,
    /// The admin token, when given by configuration (else one is generated
    /// on first start).
    pub admin_token: Option<String>,
    /// Failed logins allowed per client address and user name per window.
    pub max_failures: u32,
    pub failure_window: Duration,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            enabled: true,
            service: "berth".into(),
            issuer: "berth".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            auto_create_registries: true,
            admin_token: None,
            max_failures: 10,
            failure_window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("access denied: {0}")]
    Denied(String),
    #[error("too many failed logins; try again later")]
    TooManyAttempts,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("auth internal error: {0}")]
    Internal(String),
}

impl From<berth_meta::MetaError> for AuthError {
    fn from(e: berth_meta::MetaError) -> AuthError {
        AuthError::Internal(e.to_string())
    }
}

type Result<T> = std::result::Result<T, AuthError>;

/// A secret created for someone: shown once.
#[derive(Debug, Clone)]
pub struct Created {
    /// The login name to use with it.
    pub username: String,
    pub secret: String,
}

pub struct Auth {
    meta: Meta,
    signer: Signer,
    cfg: AuthConfig,
    /// PHC hash → sha256 of the secret that verified against it: argon2 runs
    /// once per credential, not once per request. A changed hash misses.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
    last_used: Mutex<HashMap<String, Instant>>,
}

/// DNS-label rules: 3–63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn valid_registry_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn valid_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_' || c == b'.'
        })
}

fn generation(phc: &str) -> String {
    hex::encode(&Sha256::digest(phc.as_bytes())[..8])
}

fn now_s() -> u64 {
    now_millis() / 1000
}

impl Auth {
    /// Open auth over `meta`, with the JWT key at `key_path`. Returns the
    /// admin token when one was generated now (to be shown once).
    pub fn open(meta: Meta, key_path: &Path, cfg: AuthConfig) -> Result<(Auth, Option<String>)> {
        let signer = Signer::load_or_create(key_path, &cfg.issuer)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let auth = Auth {
            meta,
            signer,
            cfg,
            verified: Mutex::default(),
            failures: Mutex::default(),
            last_used: Mutex::default(),
        };
        let shown = auth.ensure_admin_token()?;
        Ok((auth, shown))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn ensure_admin_token(&self) -> Result<Option<String>> {
        let current = self.meta.setting(ADMIN_SETTING)?;
        match (&self.cfg.admin_token, current) {
            (Some(given), Some(h)) if secret::verify(given, &h) => Ok(None),
            (Some(given), _) => {
                if secret::token_id(given) != Some("admin") {
                    return Err(AuthError::Invalid(
                        "the configured admin token must look like berth_admin_<at least 20 characters>".into(),
                    ));
                }
                self.meta.put_setting(ADMIN_SETTING, &secret::hash(given))?;
                Ok(None)
            }
            (None, Some(_)) => Ok(None),
            (None, None) => {
                let token = secret::new_token("admin");
                self.meta
                    .put_setting(ADMIN_SETTING, &secret::hash(&token))?;
                Ok(Some(token))
            }
        }
    }

    /// Replace the admin token with a new one (shown once).
    pub fn rotate_admin_token(&self) -> Result<String> {
        let token = secret::new_token("admin");
        self.meta
            .put_setting(ADMIN_SETTING, &secret::hash(&token))?;
        Ok(token)
    }

    fn check_secret(&self, secret: &str, phc: &str) -> bool {
        let fp: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if self.verified.lock().expect("lock").get(phc) == Some(&fp) {
            return true;
        }
        if !secret::verify(secret, phc) {
            return false;
        }
        let mut v = self.verified.lock().expect("lock");
        if v.len() > 10_000 {
            v.clear();
        }
        v.insert(phc.to_string(), fp);
        true
    }

    fn limited(&self, client: &str, user: &str) -> bool {
        let f = self.failures.lock().expect("lock");
        match f.get(&(client.to_string(), user.to_string())) {
            Some((n, since)) => {
                *n >= self.cfg.max_failures && since.elapsed() < self.cfg.failure_window
            }
            None => false,
        }
    }

    fn failed(&self, client: &str, user: &str) {
        let mut f = self.failures.lock().expect("lock");
        if f.len() > 100_000 {
            f.retain(|_, (_, t)| t.elapsed() < self.cfg.failure_window);
        }
        let e = f
            .entry((client.to_string(), user.to_string()))
            .or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.cfg.failure_window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    /// Check Basic credentials from `client` (an address, for the rate
    /// limit). Failures are logged without the secret.
    pub fn basic(&self, user: &str, pass: &str, client: &str) -> Result<Principal> {
        if self.limited(client, user) {
            tracing::warn!(client, user, "login refused: too many failures");
            return Err(AuthError::TooManyAttempts);
        }
        match self.check_basic(user, pass) {
            Ok(p) => {
                self.failures
                    .lock()
                    .expect("lock")
                    .remove(&(client.to_string(), user.to_string()));
                Ok(p)
            }
            Err(AuthError::Unauthenticated(why)) => {
                tracing::warn!(client, user, reason = %why, "login failed");
                self.failed(client, user);
                Err(AuthError::Unauthenticated("invalid credentials".into()))
            }
            Err(e) => Err(e),
        }
    }

    fn check_basic(&self, user: &str, pass: &str) -> Result<Principal> {
        let bad = |why: &str| AuthError::Unauthenticated(why.to_string());
        if let Some(id) = secret::token_id(pass) {
            return self.check_token(id, pass).map(|(p, _)| p);
        }
        let (registry, name) = user.split_once('+').ok_or_else(|| bad("unknown user"))?;
        let rec = self
            .meta
            .user(registry, name)?
            .ok_or_else(|| bad("unknown user"))?;
        if rec.expires_ms.is_some_and(|e| e <= now_millis()) {
            return Err(bad("user expired"));
        }
        if !self.check_secret(pass, &rec.password_hash) {
            return Err(bad("wrong password"));
        }
        Ok(Principal::User {
            registry: registry.to_string(),
            name: name.to_string(),
            can_push: rec.can_push,
        })
    }

    /// A token secret → principal and its generation.
    fn check_token(&self, id: &str, presented: &str) -> Result<(Principal, String)> {
        let bad = |why: &str| AuthError::Unauthenticated(why.to_string());
        if id == "admin" {
            let h = self
                .meta
                .setting(ADMIN_SETTING)?
                .ok_or_else(|| bad("no admin token"))?;
            if !self.check_secret(presented, &h) {
                return Err(bad("wrong admin token"));
            }
            return Ok((Principal::Admin, generation(&h)));
        }
        let rec = self.meta.token(id)?.ok_or_else(|| bad("unknown token"))?;
        self.usable_token(&rec)?;
        if !self.check_secret(presented, &rec.secret_hash) {
            return Err(bad("wrong token secret"));
        }
        self.touch_token(id, &rec.secret_hash);
        Ok((
            Principal::Token {
                id: id.to_string(),
                registries: rec.registries,
                read_write: rec.read_write,
            },
            generation(&rec.secret_hash),
        ))
    }

    fn usable_token(&self, rec: &TokenRecord) -> Result<()> {
        if rec.status != TokenStatus::Active {
            return Err(AuthError::Unauthenticated("token revoked".into()));
        }
        if rec.expires_ms.is_some_and(|e| e <= now_millis()) {
            return Err(AuthError::Unauthenticated("token expired".into()));
        }
        Ok(())
    }

    /// Record `lastUsedAt`, at most once a minute per token. `verified` is
    /// the secret hash the presented secret matched: the record is re-read
    /// in the transaction and only touched if it is still that, active
    /// token, so a revoke or regenerate that ran meanwhile (argon2 takes a
    /// while) is never undone.
    fn touch_token(&self, id: &str, verified: &str) {
        {
            let mut l = self.last_used.lock().expect("lock");
            if l.get(id)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
            {
                return;
            }
            l.insert(id.to_string(), Instant::now());
        }
        let now = now_millis();
        let r = self.meta.update_token(id, |t| {
            let same = t.status == TokenStatus::Active && t.secret_hash == verified;
            if same {
                t.last_used_ms = Some(now);
            }
            same
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not record token use");
        }
    }

    fn credential(p: &Principal) -> String {
        match p {
            Principal::Anonymous => "anonymous".into(),
            Principal::Admin => "admin".into(),
            Principal::User { registry, name, .. } => format!("user:{registry}+{name}"),
            Principal::Token { id, .. } => format!("token:{id}"),
        }
    }

    /// The current generation of a principal's credential (None: gone).
    fn current(&self, cred: &str) -> Result<Option<(Principal, String)>> {
        if cred == "anonymous" {
            return Ok(Some((Principal::Anonymous, String::new())));
        }
        if cred == "admin" {
            return Ok(self
                .meta
                .setting(ADMIN_SETTING)?
                .map(|h| (Principal::Admin, generation(&h))));
        }
        if let Some(id) = cred.strip_prefix("token:") {
            let Some(rec) = self.meta.token(id)? else {
                return Ok(None);
            };
            if self.usable_token(&rec).is_err() {
                return Ok(None);
            }
            let g = generation(&rec.secret_hash);
            return Ok(Some((
                Principal::Token {
                    id: id.to_string(),
                    registries: rec.registries,
                    read_write: rec.read_write,
                },
                g,
            )));
        }
        if let Some(rest) = cred.strip_prefix("user:") {
            let Some((registry, name)) = rest.split_once('+') else {
                return Ok(None);
            };
            let Some(rec) = self.meta.user(registry, name)? else {
                return Ok(None);
            };
            if rec.expires_ms.is_some_and(|e| e <= now_millis()) {
                return Ok(None);
            }
            return Ok(Some((
                Principal::User {
                    registry: registry.into(),
                    name: name.into(),
                    can_push: rec.can_push,
                },
                generation(&rec.password_hash),
            )));
        }
        Ok(None)
    }

    /// Verify a bearer JWT and that its credential still stands (deleted,
    /// revoked, expired or regenerated credentials fail at once). Returns
    /// the principal and what the token grants.
    pub fn bearer(&self, token: &str) -> Result<(Principal, Vec<Access>)> {
        let c = self
            .signer
            .verify(token, &self.cfg.service)
            .map_err(|e| AuthError::Unauthenticated(format!("invalid token: {e}")))?;
        if c.typ != "access" {
            return Err(AuthError::Unauthenticated("not an access token".into()));
        }
        match self.current(&c.cred)? {
            Some((p, g)) if g == c.gen => Ok((p, c.access)),
            _ => Err(AuthError::Unauthenticated(
                "credential no longer valid".into(),
            )),
        }
    }

    /// Whether a registry exists, and if so whether it is public.
    pub fn registry_visibility(&self, registry: &str) -> Result<Option<Visibility>> {
        Ok(self.meta.registry(registry)?.map(|r| r.visibility))
    }

    /// What `p` may do of what `scopes` ask: the intersection.
    pub fn grant(&self, p: &Principal, scopes: &[Scope]) -> Result<Vec<Access>> {
        let mut out: Vec<Access> = Vec::new();
        for s in scopes {
            let granted: Vec<String> = match s.kind.as_str() {
                "repository" => {
                    let registry = s.name.split('/').next().unwrap_or("");
                    let vis = self.registry_visibility(registry)?;
                    let public = vis == Some(Visibility::Public);
                    let wanted: Vec<&str> = if s.actions.iter().any(|a| a == "*") {
                        vec!["pull", "push", "delete"]
                    } else {
                        s.actions.iter().map(String::as_str).collect()
                    };
                    wanted
                        .into_iter()
                        .filter_map(Action::parse)
                        .filter(|a| {
                            p.may(registry, *a, public)
                                || (vis.is_none()
                                    && p.is_admin()
                                    && self.cfg.auto_create_registries)
                        })
                        .map(|a| a.as_str().to_string())
                        .collect()
                }
                "registry" if s.name == "catalog" && p.is_admin() => vec!["*".to_string()],
                _ => Vec::new(),
            };
            if !granted.is_empty() {
                out.push(Access {
                    kind: s.kind.clone(),
                    name: s.name.clone(),
                    actions: granted,
                });
            }
        }
        Ok(out)
    }

    /// Issue a JWT of type `typ` (`access` or `refresh`) for `p`.
    /// Returns (token, lifetime in seconds, issued-at seconds).
    pub fn issue(
        &self,
        p: &Principal,
        access: Vec<Access>,
        typ: &str,
    ) -> Result<(String, u64, u64)> {
        let cred = Self::credential(p);
        let gen = match self.current(&cred)? {
            Some((_, g)) => g,
            None => {
                return Err(AuthError::Unauthenticated(
                    "credential no longer valid".into(),
                ))
            }
        };
        let ttl = if typ == "refresh" {
            self.cfg.refresh_ttl
        } else {
            self.cfg.token_ttl
        }
        .as_secs();
        let now = now_s();
        let claims = Claims {
            iss: self.cfg.issuer.clone(),
            sub: p.subject(),
            aud: self.cfg.service.clone(),
            exp: now + ttl,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            cred,
            gen,
            typ: typ.to_string(),
        };
        Ok((self.signer.sign(&claims), ttl, now))
    }

    /// A refresh token (from [`Auth::issue`] with `refresh`) → its principal,
    /// if the credential still stands.
    pub fn refresh(&self, token: &str) -> Result<Principal> {
        let c = self
            .signer
            .verify(token, &self.cfg.service)
            .map_err(|e| AuthError::Unauthenticated(format!("invalid refresh token: {e}")))?;
        if c.typ != "refresh" {
            return Err(AuthError::Unauthenticated("not a refresh token".into()));
        }
        match self.current(&c.cred)? {
            Some((p, g)) if g == c.gen => Ok(p),
            _ => Err(AuthError::Unauthenticated(
                "credential no longer valid".into(),
            )),
        }
    }

    // ---- administration (CLI now, the management API later) -----------

    pub fn create_registry(&self, name: &str, visibility: Visibility) -> Result<RegistryRecord> {
        if !valid_registry_name(name) {
            return Err(AuthError::Invalid(format!(
                "registry name {name:?}: 3-63 characters of lowercase letters, digits and '-', not starting or ending with '-'"
            )));
        }
        let rec = RegistryRecord {
            id: uuid::Uuid::new_v4().to_string(),
            created_ms: now_millis(),
            visibility,
            storage_limit: None,
            status: RegistryStatus::Active,
            allow_sparse: false,
        };
        if !self.meta.create_registry(name, &rec)? {
            return Err(AuthError::Conflict(format!("registry {name} exists")));
        }
        Ok(rec)
    }

    pub fn create_user(
        &self,
        registry: &str,
        name: &str,
        can_push: bool,
        expires_ms: Option<u64>,
    ) -> Result<Created> {
        if !valid_user_name(name) {
            return Err(AuthError::Invalid(format!(
                "user name {name:?}: 1-64 characters of lowercase letters, digits, '-', '_' and '.'"
            )));
        }
        let password = secret::random_string(40);
        let rec = UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            password_hash: secret::hash(&password),
            can_push,
            created_ms: now_millis(),
            expires_ms,
        };
        match self.meta.create_user(registry, name, &rec)? {
            Ok(()) => {}
            Err(UserRefused::NoRegistry) => {
                return Err(AuthError::NotFound(format!("registry {registry}")))
            }
            Err(UserRefused::Exists) => {
                return Err(AuthError::Conflict(format!(
                    "user {name} exists in {registry}"
                )))
            }
        }
        Ok(Created {
            username: format!("{registry}+{name}"),
            secret: password,
        })
    }

    pub fn reset_password(&self, registry: &str, name: &str) -> Result<Created> {
        let password = secret::random_string(40);
        let hash = secret::hash(&password);
        self.meta
            .update_user(registry, name, |u| {
                u.password_hash = hash.clone();
                true
            })?
            .ok_or_else(|| AuthError::NotFound(format!("user {name} in {registry}")))?;
        Ok(Created {
            username: format!("{registry}+{name}"),
            secret: password,
        })
    }

    pub fn create_token(
        &self,
        name: &str,
        registries: Option<Vec<String>>,
        read_write: bool,
        expires_ms: Option<u64>,
    ) -> Result<(String, Created)> {
        if name.is_empty() || name.len() > 128 {
            return Err(AuthError::Invalid("token name: 1-128 characters".into()));
        }
        if let Some(list) = &registries {
            for r in list {
                if !valid_registry_name(r) {
                    return Err(AuthError::Invalid(format!("registry name {r:?}")));
                }
            }
        }
        let (id, token) = loop {
            let id = secret::random_string(12).to_ascii_lowercase();
            let token = secret::new_token(&id);
            let rec = TokenRecord {
                name: name.to_string(),
                secret_hash: secret::hash(&token),
                registries: registries.clone(),
                read_write,
                created_ms: now_millis(),
                expires_ms,
                last_used_ms: None,
                status: TokenStatus::Active,
            };
            // 12 random characters: a taken id is all but impossible, and
            // never overwritten.
            if self.meta.create_token(&id, &rec)? {
                break (id, token);
            }
        };
        Ok((
            id,
            Created {
                username: name.to_string(),
                secret: token,
            },
        ))
    }

    /// Change a token's record in one transaction.
    fn update_token(&self, id: &str, mut f: impl FnMut(&mut TokenRecord)) -> Result<TokenRecord> {
        self.meta
            .update_token(id, |t| {
                f(t);
                true
            })?
            .ok_or_else(|| AuthError::NotFound(format!("token {id}")))
    }

    pub fn revoke_token(&self, id: &str) -> Result<()> {
        self.update_token(id, |t| t.status = TokenStatus::Revoked)?;
        Ok(())
    }

    /// A new secret for the token; the old one stops working at once.
    pub fn regenerate_token(&self, id: &str) -> Result<Created> {
        let token = secret::new_token(id);
        let hash = secret::hash(&token);
        let rec = self.update_token(id, |t| t.secret_hash = hash.clone())?;
        Ok(Created {
            username: rec.name,
            secret: token,
        })
    }

    /// A new expiry (None: never).
    pub fn refresh_token_expiry(&self, id: &str, expires_ms: Option<u64>) -> Result<()> {
        self.update_token(id, |t| t.expires_ms = expires_ms)?;
        Ok(())
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::MemStore;

    fn auth() -> (Auth, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (a, shown) = Auth::open(
            Meta::new(MemStore::new()),
            &dir.path().join("k.pem"),
            AuthConfig::default(),
        )
        .unwrap();
        (a, shown.expect("first start shows the admin token"), dir)
    }

    #[test]
    fn admin_token_shown_once_and_checked() {
        let (a, admin, _d) = auth();
        assert!(admin.starts_with("berth_admin_"));
        assert_eq!(a.basic("admin", &admin, "1").unwrap(), Principal::Admin);
        assert!(matches!(
            a.basic("admin", "berth_admin_wrongwrongwrongwrongwrong", "1"),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(a.ensure_admin_token().unwrap().is_none(), "not shown twice");
    }

    #[test]
    fn users_tokens_and_revocation() {
        let (a, _, _d) = auth();
        a.create_registry("acme", Visibility::Private).unwrap();
        assert!(matches!(
            a.create_registry("acme", Visibility::Private),
            Err(AuthError::Conflict(_))
        ));
        assert!(matches!(
            a.create_registry("A!", Visibility::Private),
            Err(AuthError::Invalid(_))
        ));
        let u = a.create_user("acme", "ci", true, None).unwrap();
        assert_eq!(u.username, "acme+ci");
        assert!(u.secret.len() >= 32);
        let p = a.basic(&u.username, &u.secret, "1").unwrap();
        assert!(p.may("acme", Action::Push, false));
        // a JWT for it, then a password reset kills the JWT
        let access = a
            .grant(
                &p,
                &[Scope::parse("repository:acme/web:pull,push").unwrap()],
            )
            .unwrap();
        assert_eq!(access[0].actions, vec!["pull", "push"]);
        let (jwt, _, _) = a.issue(&p, access, "access").unwrap();
        assert!(a.bearer(&jwt).is_ok());
        let newp = a.reset_password("acme", "ci").unwrap();
        assert!(
            matches!(a.bearer(&jwt), Err(AuthError::Unauthenticated(ref m)) if m == "credential no longer valid"),
            "old JWT must die with the old password"
        );
        assert!(matches!(
            a.basic(&u.username, &u.secret, "1"),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(a.basic(&u.username, &newp.secret, "1").is_ok());

        // tokens: scope and read-only
        let (id, t) = a
            .create_token("ro", Some(vec!["acme".into()]), false, None)
            .unwrap();
        let p = a.basic("anything", &t.secret, "1").unwrap();
        let g = a
            .grant(
                &p,
                &[
                    Scope::parse("repository:acme/web:pull,push").unwrap(),
                    Scope::parse("repository:beta/web:pull").unwrap(),
                    Scope::parse("registry:catalog:*").unwrap(),
                ],
            )
            .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].actions, vec!["pull"]);
        let (jwt, _, _) = a.issue(&p, g, "access").unwrap();
        assert!(a.bearer(&jwt).is_ok());
        a.revoke_token(&id).unwrap();
        assert!(
            matches!(a.bearer(&jwt), Err(AuthError::Unauthenticated(ref m)) if m == "credential no longer valid")
        );
        assert!(matches!(
            a.check_basic("anything", &t.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "token revoked"
        ));

        // regenerate: old secret dead, new one works
        let (id2, t2) = a.create_token("rw", None, true, None).unwrap();
        let t3 = a.regenerate_token(&id2).unwrap();
        assert!(matches!(
            a.check_basic("x", &t2.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "wrong token secret"
        ));
        assert!(a.basic("x", &t3.secret, "1").is_ok());
        // expiry
        a.refresh_token_expiry(&id2, Some(1)).unwrap();
        assert!(matches!(
            a.check_basic("x", &t3.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "token expired"
        ));
    }

    /// Recording a token's use re-reads the record in its transaction: a
    /// revoke or regenerate made while argon2 ran is never undone (the old
    /// code wrote back the record read before the check).
    #[test]
    fn recording_use_never_undoes_a_revoke_or_regenerate() {
        let (a, _, _d) = auth();
        let (id, _) = a.create_token("ci", None, true, None).unwrap();
        let seen = a.meta.token(&id).unwrap().unwrap().secret_hash;
        a.revoke_token(&id).unwrap();
        a.touch_token(&id, &seen);
        let t = a.meta.token(&id).unwrap().unwrap();
        assert_eq!(t.status, TokenStatus::Revoked);
        assert_eq!(t.last_used_ms, None, "a revoked token is not touched");

        let (id, _) = a.create_token("ci2", None, true, None).unwrap();
        let seen = a.meta.token(&id).unwrap().unwrap().secret_hash;
        let fresh = a.regenerate_token(&id).unwrap();
        a.touch_token(&id, &seen);
        let t = a.meta.token(&id).unwrap().unwrap();
        assert_ne!(t.secret_hash, seen, "the old secret stays dead");
        a.last_used.lock().unwrap().clear(); // past the once-a-minute limit
        assert!(a.basic("x", &fresh.secret, "1").is_ok());
        let t = a.meta.token(&id).unwrap().unwrap();
        assert!(
            t.last_used_ms.is_some(),
            "a use of the live secret is recorded"
        );
    }

    #[test]
    fn expired_users_and_rate_limit() {
        let (a, _, _d) = auth();
        a.create_registry("acme", Visibility::Public).unwrap();
        let u = a.create_user("acme", "old", false, Some(1)).unwrap();
        assert!(matches!(
            a.check_basic(&u.username, &u.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "user expired"
        ));
        let u = a.create_user("acme", "ok", false, None).unwrap();
        for _ in 0..10 {
            assert!(matches!(
                a.basic(&u.username, "wrong", "10.0.0.1"),
                Err(AuthError::Unauthenticated(_))
            ));
        }
        assert!(matches!(
            a.basic(&u.username, &u.secret, "10.0.0.1"),
            Err(AuthError::TooManyAttempts)
        ));
        // another address is not affected
        assert!(a.basic(&u.username, &u.secret, "10.0.0.2").is_ok());
        // anonymous pull of a public registry
        let g = a
            .grant(
                &Principal::Anonymous,
                &[Scope::parse("repository:acme/x:pull,push").unwrap()],
            )
            .unwrap();
        assert_eq!(g[0].actions, vec!["pull"]);
    }
}
