//! Tenants and principals: registries, registry users, API tokens and
//! instance settings. Secrets are never stored, only their hashes (the
//! hashing is `berth-auth`'s business).

use crate::cf::Cf;
use crate::meta::{counter, dec, key2, prefix1, Meta, MetaError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

type Result<T> = std::result::Result<T, MetaError>;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Public,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistryRecord {
    pub id: String,
    pub created_ms: u64,
    pub visibility: Visibility,
    /// Bytes; `None` is unlimited (quotas are enforced by a later issue).
    #[serde(default)]
    pub storage_limit: Option<u64>,
    #[serde(default)]
    pub status: RegistryStatus,
    /// Accept manifests whose blobs or child manifests are not in the
    /// repository (partial mirrors). Off by default.
    #[serde(default)]
    pub allow_sparse: bool,
}

impl RegistryRecord {
    /// A new, active registry with no storage limit.
    pub fn new(id: String, visibility: Visibility) -> RegistryRecord {
        RegistryRecord {
            id,
            created_ms: crate::now_millis(),
            visibility,
            storage_limit: None,
            status: RegistryStatus::Active,
            allow_sparse: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistryStatus {
    #[default]
    Active,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Revoked,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    pub id: String,
    /// PHC string of the password hash.
    pub password_hash: String,
    pub can_push: bool,
    pub created_ms: u64,
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub name: String,
    pub secret_hash: String,
    /// `None`: every registry.
    #[serde(default)]
    pub registries: Option<Vec<String>>,
    pub read_write: bool,
    pub created_ms: u64,
    #[serde(default)]
    pub expires_ms: Option<u64>,
    #[serde(default)]
    pub last_used_ms: Option<u64>,
    pub status: TokenStatus,
}

/// What deleting a registry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryDelete {
    Deleted,
    NotFound,
    /// It still has this many repositories.
    NotEmpty(i64),
}

/// Why a user was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRefused {
    NoRegistry,
    Exists,
}

impl Meta {
    /// Read-modify-write of one record in a transaction: `f` changes it and
    /// says whether to write it. Returns the record as it is afterwards, or
    /// `None` when there is none.
    pub(crate) fn update<T: Serialize + DeserializeOwned>(
        &self,
        cf: Cf,
        key: &[u8],
        mut f: impl FnMut(&mut T) -> bool,
    ) -> Result<Option<T>> {
        self.transact(|tx| {
            let Some(mut rec) = tx.get_as::<T>(cf, key)? else {
                return Ok(None);
            };
            if f(&mut rec) {
                tx.put_as(cf, key, &rec);
            }
            Ok(Some(rec))
        })
    }

    /// Write a record only where none is: returns false if one exists.
    fn create<T: Serialize>(&self, cf: Cf, key: &[u8], rec: &T) -> Result<bool> {
        self.transact(|tx| {
            if tx.get(cf, key)?.is_some() {
                return Ok(false);
            }
            tx.put_as(cf, key, rec);
            Ok(true)
        })
    }

    // ---- registries ---------------------------------------------------

    pub fn registry(&self, name: &str) -> Result<Option<RegistryRecord>> {
        self.get(Cf::Registries, name.as_bytes())
    }

    /// Create a registry; false if one of that name exists (checked and
    /// written in one transaction: of concurrent creators, one wins).
    pub fn create_registry(&self, name: &str, rec: &RegistryRecord) -> Result<bool> {
        self.transact(|tx| {
            if tx.get(Cf::Registries, name.as_bytes())?.is_some() {
                return Ok(false);
            }
            tx.put_as(Cf::Registries, name.as_bytes(), rec);
            tx.add(Cf::Counters, counter::REGISTRIES, 1);
            Ok(true)
        })
    }

    /// Change a registry's record; `None` if there is no such registry.
    pub fn update_registry(
        &self,
        name: &str,
        f: impl FnMut(&mut RegistryRecord) -> bool,
    ) -> Result<Option<RegistryRecord>> {
        self.update(Cf::Registries, name.as_bytes(), f)
    }

    /// Delete a registry record and its users, unless it has repositories
    /// (their deletion is the management API's repositories resource). The
    /// repository count is read in the same transaction: a repository
    /// created meanwhile makes it retry and refuse.
    pub fn delete_registry(&self, name: &str) -> Result<RegistryDelete> {
        self.transact(|tx| {
            // The registry record guards its users: creating one reads it.
            if tx.get(Cf::Registries, name.as_bytes())?.is_none() {
                return Ok(RegistryDelete::NotFound);
            }
            let repos = counter::registry_repositories(name);
            let n = crate::kv::counter_value(tx.get(Cf::Counters, repos.as_bytes())?.as_deref());
            if n > 0 {
                return Ok(RegistryDelete::NotEmpty(n));
            }
            tx.delete(Cf::Registries, name.as_bytes());
            tx.delete(Cf::TagRules, name.as_bytes());
            tx.add(Cf::Counters, counter::REGISTRIES, -1);
            let prefix = prefix1(name);
            for cf in [Cf::Users, Cf::CleanupPolicies, Cf::CleanupRuns] {
                for (k, _) in tx.scan(cf, &prefix, None, usize::MAX)? {
                    tx.delete(cf, k);
                }
            }
            // Grants to it go too: a registry made later under the same
            // name is not reachable with a token scoped to this one.
            for (k, _) in tx.scan(Cf::Tokens, b"", None, usize::MAX)? {
                let Some(mut t) = tx.get_as::<TokenRecord>(Cf::Tokens, &k)? else {
                    continue;
                };
                if let Some(list) = &mut t.registries {
                    if list.iter().any(|r| r == name) {
                        list.retain(|r| r != name);
                        tx.put_as(Cf::Tokens, k, &t);
                    }
                }
            }
            Ok(RegistryDelete::Deleted)
        })
    }

    /// Registries whose names start with `prefix`, in name order, after
    /// `after`, at most `n` (one seek, whatever the instance holds).
    pub fn list_registries_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, RegistryRecord)>> {
        self.scan_prefixed(Cf::Registries, prefix, after, n)
    }

    /// Registries in name order, after `after`, at most `n`.
    pub fn list_registries(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, RegistryRecord)>> {
        self.list_registries_with_prefix("", after, n)
    }

    // ---- users --------------------------------------------------------

    pub fn user(&self, registry: &str, name: &str) -> Result<Option<UserRecord>> {
        self.get(Cf::Users, &key2(registry, name))
    }

    /// Create a user in an existing registry, unless it exists.
    pub fn create_user(
        &self,
        registry: &str,
        name: &str,
        rec: &UserRecord,
    ) -> Result<std::result::Result<(), UserRefused>> {
        self.transact(|tx| {
            if tx.get(Cf::Registries, registry.as_bytes())?.is_none() {
                return Ok(Err(UserRefused::NoRegistry));
            }
            let k = key2(registry, name);
            if tx.get(Cf::Users, &k)?.is_some() {
                return Ok(Err(UserRefused::Exists));
            }
            tx.put_as(Cf::Users, k, rec);
            Ok(Ok(()))
        })
    }

    /// Change a user's record; `None` if there is no such user.
    pub fn update_user(
        &self,
        registry: &str,
        name: &str,
        f: impl FnMut(&mut UserRecord) -> bool,
    ) -> Result<Option<UserRecord>> {
        self.update(Cf::Users, &key2(registry, name), f)
    }

    pub fn delete_user(&self, registry: &str, name: &str) -> Result<bool> {
        self.transact(|tx| {
            let k = key2(registry, name);
            if tx.get(Cf::Users, &k)?.is_none() {
                return Ok(false);
            }
            tx.delete(Cf::Users, k);
            Ok(true)
        })
    }

    /// Users of a registry (registries hold few; read them all).
    pub fn list_users(&self, registry: &str) -> Result<Vec<(String, UserRecord)>> {
        let prefix = prefix1(registry);
        self.kv()
            .scan(Cf::Users, &prefix, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    dec(Cf::Users, &v)?,
                ))
            })
            .collect()
    }

    // ---- tokens -------------------------------------------------------

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get(Cf::Tokens, id.as_bytes())
    }

    /// Create a token record; false if the id is taken.
    pub fn create_token(&self, id: &str, rec: &TokenRecord) -> Result<bool> {
        self.create(Cf::Tokens, id.as_bytes(), rec)
    }

    /// Change a token's record; `None` if there is no such token.
    pub fn update_token(
        &self,
        id: &str,
        f: impl FnMut(&mut TokenRecord) -> bool,
    ) -> Result<Option<TokenRecord>> {
        self.update(Cf::Tokens, id.as_bytes(), f)
    }

    /// Delete a token record; false if there was none.
    pub fn delete_token(&self, id: &str) -> Result<bool> {
        self.transact(|tx| {
            if tx.get(Cf::Tokens, id.as_bytes())?.is_none() {
                return Ok(false);
            }
            tx.delete(Cf::Tokens, id.as_bytes());
            Ok(true)
        })
    }

    pub fn list_tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        self.kv()
            .scan(Cf::Tokens, b"", None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    dec(Cf::Tokens, &v)?,
                ))
            })
            .collect()
    }

    // ---- settings -----------------------------------------------------

    pub fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .kv()
            .get(Cf::Settings, name.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Set `name` to `value` unless it is set: `None` when this call set
    /// it, else the value another writer (a replica starting at the same
    /// moment) set first. One transaction: exactly one creator wins.
    pub fn create_setting(&self, name: &str, value: &str) -> Result<Option<String>> {
        self.transact(|tx| match tx.get(Cf::Settings, name.as_bytes())? {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            None => {
                tx.put(Cf::Settings, name.as_bytes(), value.as_bytes());
                Ok(None)
            }
        })
    }

    pub fn put_setting(&self, name: &str, value: &str) -> Result<()> {
        self.transact(|tx| {
            tx.put(Cf::Settings, name.as_bytes(), value.as_bytes());
            Ok(())
        })
    }
}
