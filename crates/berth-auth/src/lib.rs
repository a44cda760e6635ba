//! Berth's auth: who is asking ([`Principal`]), what they may do
//! ([`Action`] on a registry), how secrets are made and checked (random,
//! shown once, stored as argon2id hashes), and the docker token service's
//! JWTs ([`jwt::Signer`]).
//!
//! Nothing here knows HTTP: the distribution crate maps [`AuthError`] to
//! 401/403/429 and builds the challenge.

mod auth;
mod config;
mod error;
pub mod jwt;
mod limiter;
pub mod principal;
pub mod scope;
pub mod secret;
mod verified;

pub use auth::{Auth, SigningKey, ADMIN_SETTING, SIGNING_KEY_SETTING};
pub use config::AuthConfig;
pub use error::AuthError;
pub use jwt::TokenType;
pub use principal::{Action, Principal};
pub use scope::{Access, Scope};
pub use secret::decode_basic;
