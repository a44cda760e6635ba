//! Configuration: defaults, then a TOML file, then `BERTH_*` environment
//! variables, then command-line flags (garage's documented serde struct and
//! distribution's environment overrides).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Address to listen on. `BERTH_LISTEN`.
    pub listen: SocketAddr,
    /// Directory holding the metadata database and the blobs. `BERTH_DATA_DIR`.
    pub data_dir: PathBuf,
    pub storage: Storage,
    pub limits: Limits,
    pub uploads: Uploads,
    pub listing: Listing,
    pub log: Log,
    pub auth: Auth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Auth {
    /// Require credentials (default). `false` serves an open registry for
    /// local use. `BERTH_AUTH_ENABLED`.
    pub enabled: bool,
    /// The admin token (`berth_admin_…`), instead of one generated on first
    /// start. `BERTH_AUTH_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// A file holding the admin token. `BERTH_AUTH_ADMIN_TOKEN_FILE`.
    pub admin_token_file: Option<PathBuf>,
    /// The URL clients reach Berth at; the token realm is `<url>/token`.
    /// Default: `http://<listen>`. `BERTH_AUTH_EXTERNAL_URL`.
    pub external_url: Option<String>,
    /// The token service name (JWT audience). `BERTH_AUTH_SERVICE`.
    pub service: String,
    /// Lifetime of issued JWTs. `BERTH_AUTH_TOKEN_TTL_SECS`.
    pub token_ttl_secs: u64,
    /// An admin's push into a missing registry creates it.
    /// `BERTH_AUTH_AUTO_CREATE_REGISTRIES`.
    pub auto_create_registries: bool,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            enabled: true,
            admin_token: None,
            admin_token_file: None,
            external_url: None,
            service: "berth".into(),
            token_ttl_secs: 300,
            auto_create_registries: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Storage {
    /// Flush every acknowledged byte to disk before answering (default):
    /// staged blob data (`fdatasync`), directory entries, and the metadata
    /// store's write-ahead log. `false` acknowledges once the kernel has the
    /// data: it survives a crash of Berth (`kill -9`) but not a power loss or
    /// kernel crash — distribution's guarantee. `BERTH_STORAGE_SYNC`.
    pub sync: bool,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage { sync: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Limits {
    /// Largest manifest accepted, in bytes. `BERTH_LIMITS_MAX_MANIFEST_SIZE`.
    pub max_manifest_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Uploads {
    /// Upload sessions idle this long are removed with their staged bytes.
    /// `BERTH_UPLOADS_MAX_AGE_SECS`.
    pub max_age_secs: u64,
    /// How often the reaper looks. `BERTH_UPLOADS_REAP_INTERVAL_SECS`.
    pub reap_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Listing {
    /// Page size of `tags/list` and `_catalog` without `n`.
    /// `BERTH_LISTING_DEFAULT_PAGE_SIZE`.
    pub default_page_size: usize,
    /// Largest page served. `BERTH_LISTING_MAX_PAGE_SIZE`.
    pub max_page_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Log {
    /// A tracing filter such as `info` or `berth=debug,info`. `BERTH_LOG_LEVEL`
    /// (`RUST_LOG` wins when set).
    pub level: String,
    /// `text` or `json`. `BERTH_LOG_FORMAT`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default"),
            data_dir: PathBuf::from("./berth-data"),
            storage: Storage::default(),
            limits: Limits::default(),
            uploads: Uploads::default(),
            listing: Listing::default(),
            log: Log::default(),
            auth: Auth::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_manifest_size: 4 * 1024 * 1024,
        }
    }
}

impl Default for Uploads {
    fn default() -> Uploads {
        Uploads {
            max_age_secs: 24 * 3600,
            reap_interval_secs: 600,
        }
    }
}

impl Default for Listing {
    fn default() -> Listing {
        Listing {
            default_page_size: 1000,
            max_page_size: 10_000,
        }
    }
}

impl Default for Log {
    fn default() -> Log {
        Log {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// Top-level keys whose names contain `_` (so `BERTH_DATA_DIR` is not section
/// `data`, key `dir`).
const TOP_LEVEL: [&str; 2] = ["listen", "data_dir"];

/// `BERTH_<SECTION>_<KEY>` → `section.key`; `BERTH_LISTEN` → `listen`.
fn env_key(k: &str) -> String {
    let k = k.to_ascii_lowercase();
    if TOP_LEVEL.contains(&k.as_str()) {
        return k;
    }
    match k.split_once('_') {
        Some((section, key)) => format!("{section}.{key}"),
        None => k,
    }
}

/// Command-line overrides (they win over everything).
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    pub fn load(
        file: Option<&Path>,
        env: Env,
        o: &Overrides,
    ) -> Result<Config, Box<figment::Error>> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        let env = env
            .filter(|k| k.as_str() != "config")
            .map(|k| env_key(k.as_str()).into());
        f = f.merge(env);
        if let Some(l) = o.listen {
            f = f.merge(Serialized::default("listen", l));
        }
        if let Some(d) = &o.data_dir {
            f = f.merge(Serialized::default("data_dir", d));
        }
        f.extract().map_err(Box::new)
    }

    /// The real environment.
    pub fn env() -> Env {
        Env::prefixed("BERTH_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys() {
        assert_eq!(env_key("LISTEN"), "listen");
        assert_eq!(env_key("DATA_DIR"), "data_dir");
        assert_eq!(env_key("UPLOADS_MAX_AGE_SECS"), "uploads.max_age_secs");
        assert_eq!(
            env_key("LIMITS_MAX_MANIFEST_SIZE"),
            "limits.max_manifest_size"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layering() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                "listen = \"127.0.0.1:6000\"\ndata_dir = \"/from/file\"\n[uploads]\nmax_age_secs = 60\n",
            )?;
            jail.set_env("BERTH_DATA_DIR", "/from/env");
            jail.set_env("BERTH_LISTING_MAX_PAGE_SIZE", "50");
            let c = Config::load(
                Some(Path::new("berth.toml")),
                Config::env(),
                &Overrides::default(),
            )
            .unwrap();
            assert_eq!(c.listen.port(), 6000);
            assert_eq!(c.data_dir, PathBuf::from("/from/env"));
            assert_eq!(c.uploads.max_age_secs, 60);
            assert_eq!(c.listing.max_page_size, 50);
            assert_eq!(c.limits.max_manifest_size, 4 * 1024 * 1024);
            assert!(c.storage.sync, "durable by default");
            jail.set_env("BERTH_STORAGE_SYNC", "false");
            let c = Config::load(None, Config::env(), &Overrides::default()).unwrap();
            assert!(!c.storage.sync);
            let o = Overrides {
                listen: Some("127.0.0.1:7000".parse().unwrap()),
                data_dir: Some("/from/flag".into()),
            };
            let c = Config::load(Some(Path::new("berth.toml")), Config::env(), &o).unwrap();
            assert_eq!(
                (c.listen.port(), c.data_dir),
                (7000, PathBuf::from("/from/flag"))
            );
            jail.set_env("BERTH_UPLOADS_MAX_AGE_SECS", "not a number");
            assert!(Config::load(None, Config::env(), &Overrides::default()).is_err());
            Ok(())
        });
    }
}
