//! The token service's JWTs: ES256, signed with a P-256 key created on
//! first start and kept in the data directory; its `kid` is in the header.

use crate::scope::Access;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What a JWT of ours is for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Grants `access` on `/v2/`.
    Access,
    /// Exchanged at `/token` for new access tokens (the OAuth2 flow).
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
    /// Which credential the token was issued to, and its generation (a
    /// prefix of the credential's hash): a deleted, revoked or regenerated
    /// credential invalidates its JWTs at once.
    pub cred: String,
    #[serde(default)]
    pub gen: String,
    /// What the token is for (a token without it does not decode).
    pub typ: TokenType,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {reason}")]
    Key { path: String, reason: String },
}

pub struct Signer {
    enc: EncodingKey,
    dec: DecodingKey,
    kid: String,
    issuer: String,
}

impl Signer {
    /// Load the key at `path`, creating it (mode 0600) when missing.
    pub fn load_or_create(path: &Path, issuer: &str) -> Result<Signer, KeyError> {
        let err = |reason: String| KeyError::Key {
            path: path.display().to_string(),
            reason,
        };
        let sk = match std::fs::read_to_string(path) {
            Ok(pem) => p256::SecretKey::from_pkcs8_pem(&pem).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let sk = p256::SecretKey::random(&mut rand_core::OsRng);
                let pem = sk
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| err(e.to_string()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                write_private(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
                sk
            }
            Err(e) => return Err(err(e.to_string())),
        };
        Signer::from_key(&sk, issuer).map_err(err)
    }

    /// The key kept in the metadata store's settings under `name`,
    /// created by whichever replica asks first: every replica sharing the
    /// store signs and verifies with the same key.
    pub fn load_or_create_shared(
        meta: &berth_meta::Meta,
        name: &str,
        issuer: &str,
    ) -> Result<Signer, KeyError> {
        let err = |reason: String| KeyError::Key {
            path: format!("setting {name}"),
            reason,
        };
        let pem = match meta.setting(name).map_err(|e| err(e.to_string()))? {
            Some(pem) => pem,
            None => {
                let sk = p256::SecretKey::random(&mut rand_core::OsRng);
                let pem = sk
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| err(e.to_string()))?
                    .to_string();
                meta.create_setting(name, &pem)
                    .map_err(|e| err(e.to_string()))?
                    .unwrap_or(pem)
            }
        };
        let sk = p256::SecretKey::from_pkcs8_pem(&pem).map_err(|e| err(e.to_string()))?;
        Signer::from_key(&sk, issuer).map_err(err)
    }

    fn from_key(sk: &p256::SecretKey, issuer: &str) -> Result<Signer, String> {
        let pem = sk.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        let pubpem = sk
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let der = sk
            .public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        Ok(Signer {
            enc: EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| e.to_string())?,
            dec: DecodingKey::from_ec_pem(pubpem.as_bytes()).map_err(|e| e.to_string())?,
            kid: hex::encode(&Sha256::digest(der.as_bytes())[..16]),
            issuer: issuer.to_string(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).expect("ES256 signing")
    }

    /// Verify signature (ES256 only, this key), expiry, not-before,
    /// issuer and audience (`service`).
    pub fn verify(
        &self,
        token: &str,
        service: &str,
    ) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[service]);
        v.set_issuer(&[&self.issuer]);
        v.leeway = 5;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &v)?;
        if data.header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidSignature.into());
        }
        Ok(data.claims)
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "admin".into(),
            aud: "svc".into(),
            exp,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "acme/web".into(),
                actions: vec!["pull".into()],
            }],
            cred: "admin".into(),
            gen: String::new(),
            typ: TokenType::Access,
        }
    }

    #[test]
    fn sign_verify_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(&dir.path().join("k.pem"), "berth").unwrap();
        let t = s.sign(&claims(u64::MAX / 2));
        assert_eq!(s.verify(&t, "svc").unwrap().sub, "admin");
        // the same key after a reload
        let s2 = Signer::load_or_create(&dir.path().join("k.pem"), "berth").unwrap();
        assert_eq!(s2.kid(), s.kid());
        assert!(s2.verify(&t, "svc").is_ok());
        // wrong audience, expired, another key
        assert!(s.verify(&t, "other").is_err());
        assert!(s.verify(&s.sign(&claims(1)), "svc").is_err());
        let other = Signer::load_or_create(&dir.path().join("other.pem"), "berth").unwrap();
        assert!(other.verify(&t, "svc").is_err());
        // changed claims with the old signature
        let parts: Vec<&str> = t.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        c["access"][0]["actions"] = serde_json::json!(["pull", "push"]);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert!(s.verify(&forged, "svc").is_err());
        // alg: none
        let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(s.verify(&unsigned, "svc").is_err());
        // HS256 signed with the public key as secret (key confusion)
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(u64::MAX / 2),
            &EncodingKey::from_secret(b"anything"),
        )
        .unwrap();
        assert!(s.verify(&hs, "svc").is_err());
    }
}
