//! Opening the stores and building the APIs from the configuration.

use crate::config::{Backend, Config, MetadataBackend};
use crate::metrics::Metrics;
use anyhow::Context;
use berth_auth::{Auth, AuthConfig, SigningKey};
use berth_distribution::{Distribution, Gauges, TokenService};
use berth_management::{Admin, Management};
use berth_meta::{Meta, PgSettings, PgStore, RocksStore};
use berth_storage::{BlobStore, S3Settings};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything a running server serves.
pub struct App {
    pub dist: Distribution,
    pub token: TokenService,
    pub management: Management,
    pub auth: Arc<Auth>,
    pub metrics: Metrics,
    pub data_dir: PathBuf,
}

/// A secret given as a value or as a file holding it (trimmed).
fn secret(
    value: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    Ok(match (value, file) {
        (Some(v), _) => Some(v.trim().to_string()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {what} {}", f.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    })
}

/// Auth over `meta` as configured. Returns the admin token when one was
/// generated now (to be shown once).
pub fn open_auth(cfg: &Config, meta: Meta) -> anyhow::Result<(Auth, Option<String>)> {
    let admin_token = secret(
        &cfg.auth.admin_token,
        &cfg.auth.admin_token_file,
        "the admin token file",
    )?;
    let acfg = AuthConfig {
        enabled: cfg.auth.enabled,
        service: cfg.auth.service.clone(),
        issuer: cfg.auth.service.clone(),
        token_ttl: Duration::from_secs(cfg.auth.token_ttl_secs),
        auto_create_registries: cfg.auth.auto_create_registries,
        admin_token,
        ..AuthConfig::default()
    };
    // one instance: a key file in its data directory; replicas sharing
    // PostgreSQL: one key in the store, so any of them verifies a token
    // another issued
    let file = cfg.data_dir.join("auth/jwt-signing-key.pem");
    let key = match cfg.metadata.backend {
        MetadataBackend::Rocksdb => SigningKey::File(&file),
        MetadataBackend::Postgres => SigningKey::Shared,
    };
    Auth::open(meta, key, acfg).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Show a newly generated admin token once, never in the log stream: on
/// the terminal when stderr is one, else in a 0600 file whose path is
/// logged (a service's stderr is its log).
fn show_admin_token(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("\n    berth admin token (shown only once): {token}\n");
        return Ok(());
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("admin-token");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    tracing::warn!(
        file = %path.display(),
        "admin token created and written to this file (mode 0600); read it, store it elsewhere, delete the file"
    );
    Ok(())
}

/// The blob store the configuration names: the data directory's `store/`,
/// or an S3 bucket.
fn open_blobs(cfg: &Config, data_dir: &Path) -> anyhow::Result<BlobStore> {
    let s3 = &cfg.storage.s3;
    match cfg.storage.backend {
        Backend::Filesystem => Ok(BlobStore::local(&data_dir.join("store"))?
            .synced(cfg.storage.sync)
            .direct_io(cfg.storage.direct_io)
            .reserve_free(cfg.storage.min_free_bytes)),
        Backend::S3 => {
            let secret = secret(
                &s3.secret_access_key,
                &s3.secret_access_key_file,
                "the S3 secret access key file",
            )?;
            let settings = S3Settings {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                region: s3.region.clone(),
                prefix: s3.prefix.clone(),
                path_style: s3.path_style,
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: secret,
                redirect: s3
                    .redirect
                    .then(|| Duration::from_secs(s3.redirect_expiry_secs)),
            };
            let blobs = BlobStore::s3(&settings).context("configuring the S3 blob store")?;
            tracing::info!(
                endpoint = s3.endpoint.as_deref().unwrap_or("AWS"),
                bucket = s3.bucket.as_deref().unwrap_or("(AWS_BUCKET)"),
                prefix = %s3.prefix,
                redirect = s3.redirect,
                "blobs in S3"
            );
            Ok(blobs)
        }
    }
}

/// The RocksDB store in `data_dir/meta` (one process at a time).
pub fn open_rocks(cfg: &Config, data_dir: &Path, hint: &str) -> anyhow::Result<RocksStore> {
    let meta_dir = data_dir.join("meta");
    Ok(
        RocksStore::open_with_memory(&meta_dir, cfg.metadata.memory_bytes as usize)
            .map_err(|e| {
                anyhow::anyhow!(
                    "opening the metadata store at {}: {e}\n({hint})",
                    meta_dir.display()
                )
            })?
            .synced(cfg.storage.sync),
    )
}

/// The PostgreSQL store of `[metadata.postgres]`, its schema migrated.
pub fn open_postgres(cfg: &Config) -> anyhow::Result<PgStore> {
    let pg = &cfg.metadata.postgres;
    let url = secret(&pg.url, &pg.url_file, "the PostgreSQL URL file")?
        .context("metadata.postgres.url is not set")?;
    let settings = PgSettings {
        pool_size: pg.pool_size,
        sync: cfg.storage.sync,
        ca_file: pg.ca_file.clone(),
        ..PgSettings::new(url, pg.schema.clone())
    };
    let store = PgStore::connect(&settings).map_err(|e| {
        anyhow::anyhow!(
            "opening the PostgreSQL metadata store (schema {}): {e}",
            pg.schema
        )
    })?;
    tracing::info!(schema = %pg.schema, pool_size = pg.pool_size, "metadata in PostgreSQL");
    Ok(store)
}

/// The metadata store the configuration names: RocksDB in the data
/// directory, or PostgreSQL. `hint` follows a RocksDB open error (it
/// allows one process).
pub fn open_meta(cfg: &Config, data_dir: &Path, hint: &str) -> anyhow::Result<Meta> {
    let meta = match cfg.metadata.backend {
        MetadataBackend::Rocksdb => Meta::new(open_rocks(cfg, data_dir, hint)?),
        MetadataBackend::Postgres => Meta::new(open_postgres(cfg)?),
    };
    Ok(meta.with_recycle_bin(cfg.gc.recycle_bin_secs.saturating_mul(1000)))
}

/// Open the data directory and build the APIs.
pub fn build(cfg: &Config) -> anyhow::Result<App> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&cfg.data_dir)?;
    let meta = open_meta(
        cfg,
        &data_dir,
        "is another berth using this data directory?",
    )?;
    let (auth, shown) = open_auth(cfg, meta.clone())?;
    if let Some(t) = &shown {
        show_admin_token(&data_dir, t)?;
    }
    if !cfg.auth.enabled {
        tracing::warn!(
            "authentication is disabled: anyone who can reach {} may push and delete",
            cfg.listen
        );
    }
    if !cfg.storage.sync {
        tracing::warn!(
            "storage.sync is off: acknowledged data survives a crash of berth, not of the machine"
        );
    }
    let blobs = Arc::new(open_blobs(cfg, &data_dir)?);
    let metrics = Metrics::new();
    blobs.observe(metrics.object_store_observer());
    let dcfg = berth_distribution::Config {
        max_manifest_size: cfg.limits.max_manifest_size,
        upload_max_age: Duration::from_secs(cfg.uploads.max_age_secs),
        default_page_size: cfg.listing.default_page_size,
        max_page_size: cfg.listing.max_page_size,
        count_pulls: cfg.stats.pulls,
        upload_limits: berth_meta::UploadLimits {
            per_principal: (cfg.uploads.max_sessions_per_principal > 0)
                .then_some(cfg.uploads.max_sessions_per_principal),
            total: (cfg.uploads.max_sessions > 0).then_some(cfg.uploads.max_sessions),
        },
        realm: format!("{}/token", cfg.external_url()),
        realm_scheme_from_host: cfg
            .auth
            .external_url
            .is_none()
            .then(|| cfg.scheme().to_string()),
        ..Default::default()
    };
    let auth = Arc::new(auth);
    // Where clients push to: the external URL's host, else the listener.
    let url = cfg.external_url();
    let host = url
        .split_once("://")
        .map_or(url.as_str(), |(_, h)| h)
        .to_string();
    let dist = Distribution::new(
        meta.clone(),
        blobs.clone(),
        Some(auth.clone()),
        dcfg,
        Gauges {
            open_uploads: Some(metrics.open_uploads.clone()),
        },
    );
    Ok(App {
        token: dist.token_service(),
        dist,
        management: Management::new(Admin::new(meta), Some(auth.clone()), host)
            .with_blobs(blobs)
            .with_gc_grace(cfg.gc.grace_secs),
        auth,
        metrics,
        data_dir,
    })
}
