//! [`Auth`]: credentials checked against the metadata store, scopes
//! granted, JWTs issued and verified. Failed logins are limited
//! (`limiter.rs`), verified secrets cached (`verified.rs`). Creating and
//! changing registries, users and tokens is the management crate's job.

use crate::config::AuthConfig;
use crate::error::AuthError;
use crate::jwt::{Claims, Signer, TokenType};
use crate::limiter::LoginLimiter;
use crate::principal::{Action, Principal};
use crate::scope::{Access, Scope};
use crate::secret;
use crate::verified::Verified;
use berth_meta::{now_millis, Meta, TokenRecord, TokenStatus, Visibility};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The setting that holds the admin token's hash.
pub const ADMIN_SETTING: &str = "admin_token_hash";
/// The setting that holds the JWT signing key when it is shared.
pub const SIGNING_KEY_SETTING: &str = "jwt_signing_key_pem";

/// Where the key that signs issued JWTs lives.
#[derive(Debug, Clone, Copy)]
pub enum SigningKey<'a> {
    /// A PEM file (created 0600 when missing): one instance's own, in its
    /// data directory.
    File(&'a Path),
    /// The metadata store, created by the first replica to start: every
    /// replica sharing the store verifies what any of them issued.
    Shared,
}

type Result<T> = std::result::Result<T, AuthError>;

pub struct Auth {
    meta: Meta,
    signer: Signer,
    cfg: AuthConfig,
    verified: Verified,
    limiter: LoginLimiter,
    /// When each token's use was last recorded (at most once a minute).
    last_used: Mutex<HashMap<String, Instant>>,
    /// Refused logins by reason, for `/metrics`.
    refused: Mutex<HashMap<&'static str, u64>>,
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
    pub fn open(
        meta: Meta,
        key: SigningKey<'_>,
        cfg: AuthConfig,
    ) -> Result<(Auth, Option<String>)> {
        let signer = match key {
            SigningKey::File(path) => Signer::load_or_create(path, &cfg.issuer),
            SigningKey::Shared => {
                Signer::load_or_create_shared(&meta, SIGNING_KEY_SETTING, &cfg.issuer)
            }
        }
        .map_err(|e| AuthError::Internal(e.to_string()))?;
        let auth = Auth {
            meta,
            signer,
            verified: Verified::default(),
            limiter: LoginLimiter::new(cfg.max_failures, cfg.failure_window),
            cfg,
            last_used: Mutex::default(),
            refused: Mutex::default(),
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
                // replicas starting together: the one whose token is
                // stored shows it
                let token = secret::new_token("admin");
                let first = self
                    .meta
                    .create_setting(ADMIN_SETTING, &secret::hash(&token))?;
                Ok(first.is_none().then_some(token))
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
        self.verified.check(secret, phc)
    }

    /// Count a refused login under its reason (`/metrics`).
    fn refuse(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .expect("lock")
            .entry(reason)
            .or_default() += 1;
    }

    /// Refused logins and bearer tokens so far, by reason.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .refused
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort();
        v
    }

    fn limited(&self, client: &str, user: &str) -> bool {
        self.limiter.limited(client, user)
    }

    /// Check Basic credentials from `client` (an address, for the rate
    /// limit). Failures are logged without the secret.
    pub fn basic(&self, user: &str, pass: &str, client: &str) -> Result<Principal> {
        if self.limited(client, user) {
            tracing::warn!(client, user, "login refused: too many failures");
            self.refuse("rate_limited");
            return Err(AuthError::TooManyAttempts);
        }
        match self.check_basic(user, pass) {
            Ok(p) => {
                self.limiter.succeeded(client, user);
                Ok(p)
            }
            Err(AuthError::Unauthenticated(why)) => {
                tracing::warn!(client, user, reason = %why, "login failed");
                self.refuse(reason_label(&why));
                self.limiter.failed(client, user);
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
        let r = self.check_bearer(token);
        if let Err(AuthError::Unauthenticated(why)) = &r {
            self.refuse(reason_label(why));
        }
        r
    }

    fn check_bearer(&self, token: &str) -> Result<(Principal, Vec<Access>)> {
        let (p, c) = self.verify_jwt(token, TokenType::Access)?;
        Ok((p, c.access))
    }

    /// A JWT of ours of type `typ` whose credential still stands (same
    /// generation): its principal and claims.
    fn verify_jwt(&self, token: &str, typ: TokenType) -> Result<(Principal, Claims)> {
        let (kind, not) = match typ {
            TokenType::Access => ("token", "not an access token"),
            TokenType::Refresh => ("refresh token", "not a refresh token"),
        };
        let c = self
            .signer
            .verify(token, &self.cfg.service)
            .map_err(|e| AuthError::Unauthenticated(format!("invalid {kind}: {e}")))?;
        if c.typ != typ {
            return Err(AuthError::Unauthenticated(not.into()));
        }
        match self.current(&c.cred)? {
            Some((p, g)) if g == c.gen => Ok((p, c)),
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

    /// Issue a JWT of type `typ` for `p`.
    /// Returns (token, lifetime in seconds, issued-at seconds).
    pub fn issue(
        &self,
        p: &Principal,
        access: Vec<Access>,
        typ: TokenType,
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
        let ttl = if typ == TokenType::Refresh {
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
            typ,
        };
        Ok((self.signer.sign(&claims), ttl, now))
    }

    /// A refresh token (from [`Auth::issue`] with `refresh`) → its principal,
    /// if the credential still stands.
    pub fn refresh(&self, token: &str) -> Result<Principal> {
        self.verify_jwt(token, TokenType::Refresh).map(|(p, _)| p)
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }
}

/// The metrics label of a refusal's reason (the texts of `check_*`).
fn reason_label(why: &str) -> &'static str {
    match why {
        "unknown user" => "unknown_user",
        "user expired" => "user_expired",
        "wrong password" => "wrong_password",
        "no admin token" | "wrong admin token" => "wrong_admin_token",
        "unknown token" => "unknown_token",
        "wrong token secret" => "wrong_token_secret",
        "token revoked" => "token_revoked",
        "token expired" => "token_expired",
        "not an access token" => "wrong_token_type",
        "credential no longer valid" => "credential_gone",
        w if w.starts_with("invalid token") => "invalid_jwt",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{MemStore, RegistryRecord, UserRecord};

    /// Records written straight into the store (creating them with checks
    /// is the management crate's job, tested there).
    mod fx {
        use super::*;

        pub struct Created {
            pub username: String,
            pub secret: String,
        }

        pub fn registry(a: &Auth, name: &str, visibility: Visibility) {
            let rec = RegistryRecord::new(format!("id-{name}"), visibility);
            assert!(a.meta.create_registry(name, &rec).unwrap());
        }

        pub fn user(a: &Auth, reg: &str, name: &str, push: bool, exp: Option<u64>) -> Created {
            let secret = secret::random_string(40);
            let rec = UserRecord {
                id: name.into(),
                password_hash: secret::hash(&secret),
                can_push: push,
                created_ms: now_millis(),
                expires_ms: exp,
            };
            a.meta.create_user(reg, name, &rec).unwrap().unwrap();
            Created {
                username: format!("{reg}+{name}"),
                secret,
            }
        }

        pub fn reset(a: &Auth, reg: &str, name: &str) -> Created {
            let secret = secret::random_string(40);
            let h = secret::hash(&secret);
            a.meta
                .update_user(reg, name, |u| {
                    u.password_hash = h.clone();
                    true
                })
                .unwrap()
                .unwrap();
            Created {
                username: format!("{reg}+{name}"),
                secret,
            }
        }

        pub fn token(
            a: &Auth,
            name: &str,
            regs: Option<Vec<String>>,
            rw: bool,
        ) -> (String, Created) {
            let id = secret::random_string(12).to_ascii_lowercase();
            let secret = secret::new_token(&id);
            let rec = TokenRecord {
                name: name.into(),
                secret_hash: secret::hash(&secret),
                registries: regs,
                read_write: rw,
                created_ms: now_millis(),
                expires_ms: None,
                last_used_ms: None,
                status: TokenStatus::Active,
            };
            assert!(a.meta.create_token(&id, &rec).unwrap());
            (
                id,
                Created {
                    username: name.into(),
                    secret,
                },
            )
        }

        pub fn change(a: &Auth, id: &str, mut f: impl FnMut(&mut TokenRecord)) {
            a.meta
                .update_token(id, |t| {
                    f(t);
                    true
                })
                .unwrap()
                .unwrap();
        }

        pub fn regenerate(a: &Auth, id: &str) -> Created {
            let secret = secret::new_token(id);
            let h = secret::hash(&secret);
            change(a, id, |t| t.secret_hash = h.clone());
            Created {
                username: id.into(),
                secret,
            }
        }
    }

    fn auth() -> (Auth, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (a, shown) = Auth::open(
            Meta::new(MemStore::new()),
            SigningKey::File(&dir.path().join("k.pem")),
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
    fn replicas_share_the_signing_key_and_one_admin_token() {
        let meta = Meta::new(MemStore::new());
        let open = || Auth::open(meta.clone(), SigningKey::Shared, AuthConfig::default()).unwrap();
        let (a, shown) = open();
        let (b, again) = open();
        assert!(
            shown.is_some() && again.is_none(),
            "the admin token is made once"
        );
        assert_eq!(a.signer.kid(), b.signer.kid(), "one key in the store");
        fx::registry(&a, "acme", Visibility::Private);
        let u = fx::user(&a, "acme", "ci", true, None);
        let p = a.basic(&u.username, &u.secret, "1").unwrap();
        let access = a
            .grant(&p, &[Scope::parse("repository:acme/web:pull").unwrap()])
            .unwrap();
        let (jwt, _, _) = a.issue(&p, access, TokenType::Access).unwrap();
        assert!(
            b.bearer(&jwt).is_ok(),
            "issued by one, accepted by the other"
        );
        fx::reset(&b, "acme", "ci");
        assert!(
            a.bearer(&jwt).is_err(),
            "a reset on one is seen by the other"
        );
    }

    #[test]
    fn users_tokens_and_revocation() {
        let (a, _, _d) = auth();
        fx::registry(&a, "acme", Visibility::Private);
        let u = fx::user(&a, "acme", "ci", true, None);
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
        let (jwt, _, _) = a.issue(&p, access, TokenType::Access).unwrap();
        assert!(a.bearer(&jwt).is_ok());
        let newp = fx::reset(&a, "acme", "ci");
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
        let (id, t) = fx::token(&a, "ro", Some(vec!["acme".into()]), false);
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
        let (jwt, _, _) = a.issue(&p, g, TokenType::Access).unwrap();
        assert!(a.bearer(&jwt).is_ok());
        fx::change(&a, &id, |t| t.status = TokenStatus::Revoked);
        assert!(
            matches!(a.bearer(&jwt), Err(AuthError::Unauthenticated(ref m)) if m == "credential no longer valid")
        );
        assert!(matches!(
            a.check_basic("anything", &t.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "token revoked"
        ));

        // regenerate: old secret dead, new one works
        let (id2, t2) = fx::token(&a, "rw", None, true);
        let t3 = fx::regenerate(&a, &id2);
        assert!(matches!(
            a.check_basic("x", &t2.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "wrong token secret"
        ));
        assert!(a.basic("x", &t3.secret, "1").is_ok());
        // expiry
        fx::change(&a, &id2, |t| t.expires_ms = Some(1));
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
        let (id, _) = fx::token(&a, "ci", None, true);
        let seen = a.meta.token(&id).unwrap().unwrap().secret_hash;
        fx::change(&a, &id, |t| t.status = TokenStatus::Revoked);
        a.touch_token(&id, &seen);
        let t = a.meta.token(&id).unwrap().unwrap();
        assert_eq!(t.status, TokenStatus::Revoked);
        assert_eq!(t.last_used_ms, None, "a revoked token is not touched");

        let (id, _) = fx::token(&a, "ci2", None, true);
        let seen = a.meta.token(&id).unwrap().unwrap().secret_hash;
        let fresh = fx::regenerate(&a, &id);
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
        fx::registry(&a, "acme", Visibility::Public);
        let u = fx::user(&a, "acme", "old", false, Some(1));
        assert!(matches!(
            a.check_basic(&u.username, &u.secret),
            Err(AuthError::Unauthenticated(ref m)) if m == "user expired"
        ));
        let u = fx::user(&a, "acme", "ok", false, None);
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
        let refused = a.refusals();
        assert!(refused.contains(&("wrong_password", 10)), "{refused:?}");
        assert!(refused.contains(&("rate_limited", 1)), "{refused:?}");
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
