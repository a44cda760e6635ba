//! Administration of tenants and principals: registries, registry users and
//! API tokens. Each change is one metadata transaction (checks and writes
//! together). The CLI calls this today; the `/api/v1/` handlers will.
//! Secrets are generated here, returned once, and stored only as hashes.

use berth_auth::secret;
use berth_core::name::{valid_registry_name, REGISTRY_NAME_RULE};
use berth_meta::{
    now_millis, Meta, MetaError, RegistryDelete, RegistryRecord, TokenRecord, TokenStatus,
    UserRecord, UserRefused, Visibility,
};

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A registry that still has repositories.
    #[error("not empty: {0}")]
    NotEmpty(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

type Result<T> = std::result::Result<T, AdminError>;

/// A secret created for someone: shown once.
#[derive(Debug, Clone)]
pub struct Created {
    /// The login name to use with it.
    pub username: String,
    pub secret: String,
}

/// User names: 1–64 of `[a-z0-9._-]`.
fn valid_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_' || c == b'.'
        })
}

/// Administration over the metadata store. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    meta: Meta,
}

impl Admin {
    pub fn new(meta: Meta) -> Admin {
        Admin { meta }
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    // ---- registries ---------------------------------------------------

    pub fn create_registry(&self, name: &str, visibility: Visibility) -> Result<RegistryRecord> {
        self.create_registry_with(name, |r| r.visibility = visibility)
    }

    /// Create a registry whose record `init` fills in (visibility, limit,
    /// sparse): checked and written in one transaction, so it is never seen
    /// half made.
    pub fn create_registry_with(
        &self,
        name: &str,
        init: impl FnOnce(&mut RegistryRecord),
    ) -> Result<RegistryRecord> {
        if !valid_registry_name(name) {
            return Err(AdminError::Invalid(format!(
                "registry name {name:?}: {REGISTRY_NAME_RULE}"
            )));
        }
        let mut rec = RegistryRecord::new(uuid::Uuid::new_v4().to_string(), Visibility::Private);
        init(&mut rec);
        if !self.meta.create_registry(name, &rec)? {
            return Err(AdminError::Conflict(format!("registry {name} exists")));
        }
        Ok(rec)
    }

    /// Change a registry's visibility and whether it accepts sparse
    /// manifests (`None`: leave as is).
    pub fn update_registry(
        &self,
        name: &str,
        visibility: Option<Visibility>,
        allow_sparse: Option<bool>,
    ) -> Result<RegistryRecord> {
        self.update_registry_with(name, |r| {
            if let Some(v) = visibility {
                r.visibility = v;
            }
            if let Some(s) = allow_sparse {
                r.allow_sparse = s;
            }
        })
    }

    /// Change a registry's record with `f`, in one transaction.
    pub fn update_registry_with(
        &self,
        name: &str,
        mut f: impl FnMut(&mut RegistryRecord),
    ) -> Result<RegistryRecord> {
        self.meta
            .update_registry(name, |r| {
                f(r);
                true
            })?
            .ok_or_else(|| AdminError::NotFound(format!("registry {name}")))
    }

    /// Delete a registry with its repositories (each one transaction:
    /// manifests, tags, links), users and token grants; the blobs are left
    /// to garbage collection. The registry record goes last, in a
    /// transaction that checks no repository is left: a push racing the
    /// deletion makes it delete again, and after a few rounds of that it
    /// gives up with `NotEmpty`.
    ///
    /// Tags go as done `by` a principal, as the registry's tag rules allow.
    pub fn delete_registry(&self, name: &str, by: &str) -> Result<()> {
        const ROUNDS: usize = 8;
        let prefix = format!("{name}/");
        let id = self.meta.registry(name)?.map(|r| r.id);
        for _ in 0..ROUNDS {
            // a repository named as the registry itself, then those under it
            self.meta.delete_repository(name, by)?;
            loop {
                let page = self.meta.list_repos_with_prefix(&prefix, None, 100)?;
                if page.is_empty() {
                    break;
                }
                for (repo, _) in page {
                    self.meta.delete_repository(&repo, by)?;
                }
            }
            match self.meta.delete_registry(name)? {
                RegistryDelete::Deleted => {
                    // its storage-use series (keyed by the id: a registry
                    // created again under the name starts a new one)
                    if let Some(id) = id {
                        self.meta.delete_usage_history(&id)?;
                    }
                    return Ok(());
                }
                RegistryDelete::NotFound => {
                    return Err(AdminError::NotFound(format!("registry {name}")))
                }
                RegistryDelete::NotEmpty(_) => continue,
            }
        }
        Err(AdminError::NotEmpty(format!(
            "registry {name} keeps getting new repositories; try again"
        )))
    }

    pub fn list_registries(&self) -> Result<Vec<(String, RegistryRecord)>> {
        Ok(self.meta.list_registries(None, usize::MAX)?)
    }

    // ---- users --------------------------------------------------------

    /// Create a registry user; its generated password is returned once.
    pub fn create_user(
        &self,
        registry: &str,
        name: &str,
        can_push: bool,
        expires_ms: Option<u64>,
    ) -> Result<Created> {
        if !valid_user_name(name) {
            return Err(AdminError::Invalid(format!(
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
            Ok(()) => Ok(Created {
                username: format!("{registry}+{name}"),
                secret: password,
            }),
            Err(UserRefused::NoRegistry) => {
                Err(AdminError::NotFound(format!("registry {registry}")))
            }
            Err(UserRefused::Exists) => Err(AdminError::Conflict(format!(
                "user {name} exists in {registry}"
            ))),
        }
    }

    /// A new password (returned once); the old one stops working at once.
    pub fn reset_password(&self, registry: &str, name: &str) -> Result<Created> {
        let password = secret::random_string(40);
        let hash = secret::hash(&password);
        self.meta
            .update_user(registry, name, |u| {
                u.password_hash = hash.clone();
                true
            })?
            .ok_or_else(|| AdminError::NotFound(format!("user {name} in {registry}")))?;
        Ok(Created {
            username: format!("{registry}+{name}"),
            secret: password,
        })
    }

    /// Change a user's record in one transaction; returns it as it is now.
    pub fn update_user(
        &self,
        registry: &str,
        name: &str,
        mut f: impl FnMut(&mut UserRecord),
    ) -> Result<UserRecord> {
        self.meta
            .update_user(registry, name, |u| {
                f(u);
                true
            })?
            .ok_or_else(|| AdminError::NotFound(format!("user {name} in {registry}")))
    }

    pub fn delete_user(&self, registry: &str, name: &str) -> Result<()> {
        if !self.meta.delete_user(registry, name)? {
            return Err(AdminError::NotFound(format!("user {name} in {registry}")));
        }
        Ok(())
    }

    pub fn list_users(&self, registry: &str) -> Result<Vec<(String, UserRecord)>> {
        Ok(self.meta.list_users(registry)?)
    }

    // ---- tokens -------------------------------------------------------

    /// Create an API token; returns its id and the secret (shown once).
    pub fn create_token(
        &self,
        name: &str,
        registries: Option<Vec<String>>,
        read_write: bool,
        expires_ms: Option<u64>,
    ) -> Result<(String, Created)> {
        if name.is_empty() || name.len() > 128 {
            return Err(AdminError::Invalid("token name: 1-128 characters".into()));
        }
        if let Some(list) = &registries {
            if let Some(r) = list.iter().find(|r| !valid_registry_name(r)) {
                return Err(AdminError::Invalid(format!("registry name {r:?}")));
            }
        }
        loop {
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
                return Ok((
                    id,
                    Created {
                        username: name.to_string(),
                        secret: token,
                    },
                ));
            }
        }
    }

    /// Change a token's record in one transaction; returns it as it is now.
    pub fn update_token(
        &self,
        id: &str,
        mut f: impl FnMut(&mut TokenRecord),
    ) -> Result<TokenRecord> {
        self.meta
            .update_token(id, |t| {
                f(t);
                true
            })?
            .ok_or_else(|| AdminError::NotFound(format!("token {id}")))
    }

    pub fn revoke_token(&self, id: &str) -> Result<()> {
        self.update_token(id, |t| t.status = TokenStatus::Revoked)?;
        Ok(())
    }

    /// A new secret for the token (returned once); the old one stops
    /// working at once.
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

    pub fn delete_token(&self, id: &str) -> Result<()> {
        if !self.meta.delete_token(id)? {
            return Err(AdminError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    pub fn list_tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        Ok(self.meta.list_tokens()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::MemStore;

    fn admin() -> Admin {
        Admin::new(Meta::new(MemStore::new()))
    }

    #[test]
    fn registries_checked_and_unique() {
        let a = admin();
        a.create_registry("acme", Visibility::Private).unwrap();
        assert!(matches!(
            a.create_registry("acme", Visibility::Public),
            Err(AdminError::Conflict(_))
        ));
        assert!(matches!(
            a.create_registry("A!", Visibility::Private),
            Err(AdminError::Invalid(_))
        ));
        assert_eq!(a.list_registries().unwrap().len(), 1);
        let r = a
            .update_registry("acme", Some(Visibility::Public), Some(true))
            .unwrap();
        assert_eq!((r.visibility, r.allow_sparse), (Visibility::Public, true));
        let r = a.update_registry("acme", None, Some(false)).unwrap();
        assert_eq!((r.visibility, r.allow_sparse), (Visibility::Public, false));
        assert!(matches!(
            a.update_registry("nope", None, None),
            Err(AdminError::NotFound(_))
        ));
        a.delete_registry("acme", "admin").unwrap();
        assert!(matches!(
            a.delete_registry("acme", "admin"),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn users_need_a_registry_and_a_good_name() {
        let a = admin();
        assert!(matches!(
            a.create_user("acme", "ci", true, None),
            Err(AdminError::NotFound(_))
        ));
        a.create_registry("acme", Visibility::Private).unwrap();
        let u = a.create_user("acme", "ci", true, None).unwrap();
        assert_eq!(u.username, "acme+ci");
        assert!(u.secret.len() >= 32);
        let stored = a.meta.user("acme", "ci").unwrap().unwrap();
        assert!(secret::verify(&u.secret, &stored.password_hash));
        assert_ne!(stored.password_hash, u.secret, "only a hash is stored");
        assert!(matches!(
            a.create_user("acme", "ci", false, None),
            Err(AdminError::Conflict(_))
        ));
        assert!(matches!(
            a.create_user("acme", "Bad Name", false, None),
            Err(AdminError::Invalid(_))
        ));
        let p = a.reset_password("acme", "ci").unwrap();
        let stored = a.meta.user("acme", "ci").unwrap().unwrap();
        assert!(secret::verify(&p.secret, &stored.password_hash));
        assert!(!secret::verify(&u.secret, &stored.password_hash));
        a.delete_user("acme", "ci").unwrap();
        assert!(matches!(
            a.reset_password("acme", "ci"),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn tokens_created_revoked_regenerated() {
        let a = admin();
        assert!(matches!(
            a.create_token("", None, true, None),
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(
            a.create_token("t", Some(vec!["BAD".into()]), true, None),
            Err(AdminError::Invalid(_))
        ));
        let (id, t) = a
            .create_token("ci", Some(vec!["acme".into()]), false, None)
            .unwrap();
        assert_eq!(secret::token_id(&t.secret), Some(id.as_str()));
        let rec = a.meta.token(&id).unwrap().unwrap();
        assert!(secret::verify(&t.secret, &rec.secret_hash));
        let fresh = a.regenerate_token(&id).unwrap();
        let rec = a.meta.token(&id).unwrap().unwrap();
        assert!(secret::verify(&fresh.secret, &rec.secret_hash));
        assert!(!secret::verify(&t.secret, &rec.secret_hash));
        a.refresh_token_expiry(&id, Some(5)).unwrap();
        a.revoke_token(&id).unwrap();
        let rec = a.meta.token(&id).unwrap().unwrap();
        assert_eq!(
            (rec.status, rec.expires_ms),
            (TokenStatus::Revoked, Some(5))
        );
        assert!(matches!(
            a.revoke_token("nope"),
            Err(AdminError::NotFound(_))
        ));
        assert_eq!(a.list_tokens().unwrap().len(), 1);
    }
}
