//! Credentials as clients send them: Basic headers, API tokens, bearer
//! JWTs (garbage, and well-signed ones carrying arbitrary claims), checked
//! by the real `Auth` over the in-memory metadata engine. Nothing panics,
//! and no made-up claim authenticates anyone but the credential it names.
#![no_main]
use berth_auth::jwt::{Claims, Signer, TokenType};
use berth_auth::{Access, Auth, AuthConfig};
use berth_meta::{MemStore, Meta};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ADMIN: &str = "berth_admin_fuzzTargetAdminToken0123456789";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Basic(&'a str),
    Bearer(&'a str),
    Signed {
        sub: String,
        cred: String,
        gen: String,
        access: Vec<(String, String, Vec<String>)>,
        refresh: bool,
    },
}

struct World {
    auth: Auth,
    signer: Signer,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("jwt.pem");
        let cfg = AuthConfig {
            admin_token: Some(ADMIN.into()),
            ..AuthConfig::default()
        };
        let (auth, _) = Auth::open(
            Meta::new(MemStore::new()),
            berth_auth::SigningKey::File(&key),
            cfg,
        )
        .unwrap();
        let signer = Signer::load_or_create(&key, &auth.config().issuer).unwrap();
        World {
            auth,
            signer,
            _dir: dir,
        }
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fuzz_target!(|input: Input| {
    let w = world();
    match input {
        Input::Basic(s) => {
            let _ = berth_auth::secret::token_id(s);
            if let Some((user, pass)) = berth_auth::decode_basic(s) {
                if let Ok(p) = w.auth.basic(&user, &pass, "fuzz") {
                    // only the configured admin token exists
                    assert_eq!(pass, ADMIN, "{p:?} from {user:?}");
                }
            }
        }
        Input::Bearer(s) => {
            assert!(w.auth.bearer(s).is_err(), "an unsigned token authenticated");
            assert!(w.auth.refresh(s).is_err());
        }
        Input::Signed {
            sub,
            cred,
            gen,
            access,
            refresh,
        } => {
            let t = now();
            let claims = Claims {
                iss: w.signer.issuer().to_string(),
                sub,
                aud: w.auth.config().service.clone(),
                exp: t + 300,
                nbf: t,
                iat: t,
                jti: "fuzz".into(),
                access: access
                    .into_iter()
                    .map(|(kind, name, actions)| Access {
                        kind,
                        name,
                        actions,
                    })
                    .collect(),
                cred: cred.clone(),
                gen,
                typ: if refresh {
                    TokenType::Refresh
                } else {
                    TokenType::Access
                },
            };
            let token = w.signer.sign(&claims);
            let r = if refresh {
                w.auth.refresh(&token).map(|p| (p, Vec::new()))
            } else {
                w.auth.bearer(&token)
            };
            if r.is_ok() {
                // the admin is the one credential the store has
                assert!(cred.contains("admin"), "{cred:?} authenticated");
            }
        }
    }
});
