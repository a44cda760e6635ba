//! Tenants and principals: registries, registry users, API tokens and
//! instance settings. Secrets are never stored, only their hashes (the
//! hashing is `berth-auth`'s business).

use crate::cf::Cf;
use crate::kv::Batch;
use crate::meta::{dec, enc, key2, prefix1, Meta, MetaError};
use serde::{Deserialize, Serialize};

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
    pub status: String,
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
    /// `active` or `revoked`.
    pub status: String,
}

impl Meta {
    // ---- registries ---------------------------------------------------

    pub fn registry(&self, name: &str) -> Result<Option<RegistryRecord>> {
        self.get(Cf::Registries, name.as_bytes())
    }

    pub fn put_registry(&self, name: &str, rec: &RegistryRecord) -> Result<()> {
        let mut b = Batch::new();
        b.put(Cf::Registries, name.as_bytes(), enc(rec));
        Ok(self.kv().write(b)?)
    }

    /// Delete a registry record and its users. Repositories stay (their
    /// cleanup is the management API's and garbage collection's job).
    pub fn delete_registry(&self, name: &str) -> Result<bool> {
        if self.registry(name)?.is_none() {
            return Ok(false);
        }
        let mut b = Batch::new();
        b.delete(Cf::Registries, name.as_bytes());
        for (user, _) in self.list_users(name)? {
            b.delete(Cf::Users, key2(name, &user));
        }
        self.kv().write(b)?;
        Ok(true)
    }

    pub fn list_registries(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, RegistryRecord)>> {
        self.kv()
            .scan(Cf::Registries, b"", after.map(str::as_bytes), n)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    dec(Cf::Registries, &v)?,
                ))
            })
            .collect()
    }

    // ---- users --------------------------------------------------------

    pub fn user(&self, registry: &str, name: &str) -> Result<Option<UserRecord>> {
        self.get(Cf::Users, &key2(registry, name))
    }

    pub fn put_user(&self, registry: &str, name: &str, rec: &UserRecord) -> Result<()> {
        let mut b = Batch::new();
        b.put(Cf::Users, key2(registry, name), enc(rec));
        Ok(self.kv().write(b)?)
    }

    pub fn delete_user(&self, registry: &str, name: &str) -> Result<bool> {
        if self.user(registry, name)?.is_none() {
            return Ok(false);
        }
        let mut b = Batch::new();
        b.delete(Cf::Users, key2(registry, name));
        self.kv().write(b)?;
        Ok(true)
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

    pub fn put_token(&self, id: &str, rec: &TokenRecord) -> Result<()> {
        let mut b = Batch::new();
        b.put(Cf::Tokens, id.as_bytes(), enc(rec));
        Ok(self.kv().write(b)?)
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

    pub fn put_setting(&self, name: &str, value: &str) -> Result<()> {
        let mut b = Batch::new();
        b.put(Cf::Settings, name.as_bytes(), value.as_bytes());
        Ok(self.kv().write(b)?)
    }
}
