//! What auth is configured with.

use std::time::Duration;

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
