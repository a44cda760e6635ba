//! Secrets: generated here, shown once, stored as argon2id hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use rand_core::{OsRng, RngCore};

/// Prefix of every Berth secret, so scanners can find leaked ones.
pub const PREFIX: &str = "berth_";

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random alphanumeric characters (rejection-sampled, unbiased).
pub fn random_string(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng.fill_bytes(&mut buf);
        for &b in &buf {
            // 62 * 4 = 248: reject 248..=255 to stay uniform
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// argon2id with m = 12 MiB, t = 3, p = 1: one of OWASP's equivalent
/// recommended settings, chosen over the 19 MiB / t = 2 default to keep the
/// server's peak memory low (a check allocates `m`). Verification reads the
/// parameters from each stored hash, so older hashes keep working.
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(12 * 1024, 3, 1, None).expect("valid argon2 parameters"),
    )
}

/// An argon2id PHC string for `secret`.
pub fn hash(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashing")
        .to_string()
}

/// Check `secret` against a PHC string. A malformed hash never verifies.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new API token: `berth_<id>_<secret>`; the id finds the record without
/// a scan, the secret is what the hash protects.
pub fn new_token(id: &str) -> String {
    format!("{PREFIX}{id}_{}", random_string(40))
}

/// Split `berth_<id>_<secret>` into (id, whole token).
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && secret.len() >= 20).then_some(id)
}

/// `base64(user:password)` of a Basic `Authorization` header.
pub fn decode_basic(cred: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(cred.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        let a = random_string(40);
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, random_string(40));
        let h = hash(&a);
        assert!(h.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"), "{h}");
        // a hash made with other parameters still verifies
        let salt = SaltString::generate(&mut OsRng);
        let default = Argon2::default()
            .hash_password(b"x", &salt)
            .unwrap()
            .to_string();
        assert!(verify("x", &default));
        assert!(verify(&a, &h));
        assert!(!verify("wrong", &h));
        assert!(!verify(&a, "not a hash"));
        let t = new_token("abc123");
        assert!(t.starts_with("berth_abc123_"));
        assert_eq!(token_id(&t), Some("abc123"));
        assert_eq!(token_id("berth_x_short"), None);
        assert_eq!(token_id("other"), None);
    }

    #[test]
    fn basic_credentials() {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            super::decode_basic(&enc("acme+ci:pa:ss")),
            Some(("acme+ci".into(), "pa:ss".into()))
        );
        assert_eq!(
            super::decode_basic(&enc("only")),
            Some(("only".into(), "".into()))
        );
        assert_eq!(super::decode_basic("%%%"), None);
    }
}
