//! Berth's configuration: defaults, then a TOML file, then `BERTH_*` environment
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
    pub metadata: Metadata,
    pub http: Http,
    pub tls: Tls,
    pub limits: Limits,
    pub uploads: Uploads,
    pub listing: Listing,
    pub stats: Stats,
    pub gc: Gc,
    pub log: Log,
    pub auth: Auth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Gc {
    /// Collect the whole instance this often, the first time one interval
    /// after start (0: only when asked). `BERTH_GC_INTERVAL_SECS`.
    pub interval_secs: u64,
    /// Scheduled runs keep what was pushed, linked or uploaded less than
    /// this long ago. `BERTH_GC_GRACE_SECS`.
    pub grace_secs: u64,
    /// Scheduled runs also delete manifests no tag, index or subject
    /// reaches. `BERTH_GC_DELETE_UNTAGGED`.
    pub delete_untagged: bool,
    /// Deleted manifests and tags stay in the recycle bin this long before
    /// a collection lets them go (0: a delete is final at once).
    /// `BERTH_GC_RECYCLE_BIN_SECS`.
    pub recycle_bin_secs: u64,
}

impl Default for Gc {
    fn default() -> Gc {
        Gc {
            interval_secs: 24 * 3600,
            grace_secs: 3600,
            delete_untagged: false,
            recycle_bin_secs: 7 * 24 * 3600,
        }
    }
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
    /// Where blobs live: `filesystem` (under the data directory, default)
    /// or `s3` (an S3-compatible bucket, `[storage.s3]`).
    /// `BERTH_STORAGE_BACKEND`.
    pub backend: Backend,
    /// Flush every acknowledged byte to disk before answering (default):
    /// staged blob data (`fdatasync`), directory entries, and the metadata
    /// store's write-ahead log. `false` acknowledges once the kernel has the
    /// data: it survives a crash of Berth (`kill -9`) but not a power loss or
    /// kernel crash — distribution's guarantee. `BERTH_STORAGE_SYNC`.
    pub sync: bool,
    /// With the filesystem backend, uploads are refused (507) rather than
    /// leave less than this free on the data directory's filesystem: room
    /// for the metadata store, which must never run out of space.
    /// `BERTH_STORAGE_MIN_FREE_BYTES`.
    pub min_free_bytes: u64,
    /// With the filesystem backend, write staged blob bytes with `O_DIRECT`,
    /// past the page cache (default). Off: through it, so that a blob just
    /// pushed is pulled from memory, at a cost to pushes measured in
    /// docs/performance.md. `BERTH_STORAGE_DIRECT_IO`.
    pub direct_io: bool,
    pub s3: S3,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            backend: Backend::Filesystem,
            sync: true,
            min_free_bytes: 256 << 20,
            direct_io: true,
            s3: S3::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Filesystem,
    S3,
}

/// An S3 bucket for blobs (`storage.backend = "s3"`). Unset values come
/// from the standard `AWS_*` variables (`AWS_ENDPOINT`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct S3 {
    /// The S3 endpoint URL, for S3-compatible stores (Garage, MinIO, Ceph);
    /// unset: AWS. `BERTH_STORAGE_S3_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `BERTH_STORAGE_S3_BUCKET`.
    pub bucket: Option<String>,
    /// `BERTH_STORAGE_S3_REGION` (unset: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Everything goes under this key prefix in the bucket.
    /// `BERTH_STORAGE_S3_PREFIX`.
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`), as most S3-compatible
    /// stores want; `false`: virtual-hosted (`bucket.endpoint/key`).
    /// `BERTH_STORAGE_S3_PATH_STYLE`.
    pub path_style: bool,
    /// `BERTH_STORAGE_S3_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `BERTH_STORAGE_S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// A file holding the secret access key.
    /// `BERTH_STORAGE_S3_SECRET_ACCESS_KEY_FILE`.
    pub secret_access_key_file: Option<PathBuf>,
    /// Blob GETs answer 307 to a presigned URL of the object (HEAD never
    /// redirects); `false`: bytes stream through Berth.
    /// `BERTH_STORAGE_S3_REDIRECT`.
    pub redirect: bool,
    /// How long a presigned URL stays valid. `BERTH_STORAGE_S3_REDIRECT_EXPIRY_SECS`.
    pub redirect_expiry_secs: u64,
}

impl Default for S3 {
    fn default() -> S3 {
        S3 {
            endpoint: None,
            bucket: None,
            region: None,
            prefix: String::new(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            redirect: true,
            redirect_expiry_secs: 300,
        }
    }
}

/// Connections and slow clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Http {
    /// Longest wait for a request's head (HTTP/1.1): a slow sender is cut
    /// off, and an idle keep-alive connection closed, after this long.
    /// `BERTH_HTTP_HEADER_READ_TIMEOUT_SECS`.
    pub header_read_timeout_secs: u64,
    /// A request body that sends no byte this long is abandoned (an upload
    /// stays resumable from its last acknowledged offset).
    /// `BERTH_HTTP_BODY_IDLE_TIMEOUT_SECS`.
    pub body_idle_timeout_secs: u64,
    /// Largest request head (request line and headers), in bytes.
    /// `BERTH_HTTP_MAX_HEADER_BYTES`.
    pub max_header_bytes: usize,
    /// Connections served at once; more wait in the listen backlog until
    /// one closes. `BERTH_HTTP_MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            header_read_timeout_secs: 30,
            body_idle_timeout_secs: 60,
            max_header_bytes: 64 * 1024,
            max_connections: 8192,
        }
    }
}

/// TLS on the listener (rustls): HTTPS with HTTP/2 by ALPN, the
/// certificate reloaded when its files change or on SIGHUP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tls {
    /// The certificate chain (PEM, the server's certificate first); with
    /// `key_file`, the listener speaks HTTPS only. `BERTH_TLS_CERT_FILE`.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    /// `BERTH_TLS_KEY_FILE`.
    pub key_file: Option<PathBuf>,
    /// How often the two files are read again and, when they changed, the
    /// new pair served to new connections (0: only on SIGHUP).
    /// `BERTH_TLS_RELOAD_INTERVAL_SECS`.
    pub reload_interval_secs: u64,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            cert_file: None,
            key_file: None,
            reload_interval_secs: 10,
        }
    }
}

impl Tls {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

impl Config {
    /// The scheme the listener speaks.
    pub fn scheme(&self) -> &'static str {
        if self.tls.enabled() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL clients reach Berth at: `auth.external_url`, else the
    /// listener's address with the scheme it speaks.
    pub fn external_url(&self) -> String {
        match &self.auth.external_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("{}://{}", self.scheme(), self.listen),
        }
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
    /// Most upload sessions one principal may have open at once (0: no
    /// limit). `BERTH_UPLOADS_MAX_SESSIONS_PER_PRINCIPAL`.
    pub max_sessions_per_principal: usize,
    /// Most upload sessions open at once in the whole instance, whoever
    /// opened them (0: no limit). `BERTH_UPLOADS_MAX_SESSIONS`.
    pub max_sessions: usize,
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
pub struct Metadata {
    /// The metadata engine: `rocksdb` (embedded, in the data directory;
    /// default) or `postgres` (a PostgreSQL database several replicas
    /// share, `[metadata.postgres]`). `BERTH_METADATA_BACKEND`.
    pub backend: MetadataBackend,
    /// Memory of the metadata store (RocksDB): half for its block cache
    /// (shared by every column family), half for its memtables (writes not
    /// yet flushed; a flush starts when they reach that).
    /// `BERTH_METADATA_MEMORY_BYTES`.
    pub memory_bytes: u64,
    pub postgres: Postgres,
}

impl Default for Metadata {
    fn default() -> Metadata {
        Metadata {
            backend: MetadataBackend::Rocksdb,
            memory_bytes: 64 << 20,
            postgres: Postgres::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetadataBackend {
    Rocksdb,
    Postgres,
}

/// The PostgreSQL database of `metadata.backend = "postgres"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Postgres {
    /// `postgres://user:password@host:5432/database`.
    /// `BERTH_METADATA_POSTGRES_URL`.
    pub url: Option<String>,
    /// A file holding the URL (it carries the password).
    /// `BERTH_METADATA_POSTGRES_URL_FILE`.
    pub url_file: Option<PathBuf>,
    /// The schema Berth's tables live in, created and migrated on start.
    /// `BERTH_METADATA_POSTGRES_SCHEMA`.
    pub schema: String,
    /// Most connections this process opens. `BERTH_METADATA_POSTGRES_POOL_SIZE`.
    pub pool_size: usize,
    /// PEM certificates of the authorities the server's certificate may
    /// chain to (besides the system's); set, TLS is required and verified.
    /// TLS is also used with `sslmode=require` in the URL.
    /// `BERTH_METADATA_POSTGRES_CA_FILE`.
    pub ca_file: Option<PathBuf>,
}

impl Default for Postgres {
    fn default() -> Postgres {
        Postgres {
            url: None,
            url_file: None,
            schema: "berth".into(),
            pool_size: 16,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    /// Count manifest GETs per artifact and repository (batched in memory,
    /// written about once a second). `BERTH_STATS_PULLS`.
    pub pulls: bool,
    /// Sample each registry's storage use this often, for the console's
    /// chart (`GET /api/v1/registries/{name}/usage`); 0: never.
    /// `BERTH_STATS_USAGE_INTERVAL_SECS`.
    pub usage_interval_secs: u64,
    /// Keep usage samples this long. `BERTH_STATS_USAGE_RETENTION_DAYS`.
    pub usage_retention_days: u64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            pulls: true,
            usage_interval_secs: 3600,
            usage_retention_days: 400,
        }
    }
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
            metadata: Metadata::default(),
            http: Http::default(),
            tls: Tls::default(),
            limits: Limits::default(),
            uploads: Uploads::default(),
            listing: Listing::default(),
            stats: Stats::default(),
            gc: Gc::default(),
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
            max_sessions_per_principal: 1000,
            max_sessions: 10_000,
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

/// Keys whose values are secrets: never shown.
pub const SECRETS: [&str; 3] = [
    "auth.admin_token",
    "storage.s3.secret_access_key",
    "metadata.postgres.url",
];

/// The variable naming the configuration file for `serve` (not a setting).
const ENV_CONFIG: &str = "CONFIG";

/// `BERTH_<SECTION>_<KEY>` → `section.key`; `BERTH_LISTEN` → `listen`;
/// a key of a nested section by its name (`BERTH_STORAGE_S3_BUCKET` →
/// `storage.s3.bucket`).
fn env_key(k: &str) -> String {
    let k = k.to_ascii_lowercase();
    if TOP_LEVEL.contains(&k.as_str()) {
        return k;
    }
    if let Some((known, _)) = known_keys()
        .into_iter()
        .find(|(known, _)| known.matches('.').count() > 1 && known.replace('.', "_") == k)
    {
        return known;
    }
    match k.split_once('_') {
        Some((section, key)) => format!("{section}.{key}"),
        None => k,
    }
}

/// The environment variable of a key: `uploads.max_age_secs` →
/// `BERTH_UPLOADS_MAX_AGE_SECS`.
pub fn env_var(key: &str) -> String {
    format!("BERTH_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Command-line overrides (they win over everything).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why a configuration cannot be used: every problem found, each naming
/// the key, where it came from and what is accepted.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// A loaded configuration: the settings, where each came from, and the
/// `BERTH_*` variables that name no setting (warnings, not errors: the
/// environment carries other things too).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: Vec<(String, Source)>,
    pub unknown_env: Vec<String>,
}

/// Every setting as a dotted key, in declaration order, with its default
/// value (JSON; `null` for settings that are unset by default).
pub fn known_keys() -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(m) if prefix.is_empty() || !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => out.push((prefix.to_string(), v.clone())),
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).expect("the defaults serialise"),
        &mut out,
    );
    // top-level keys first (TOML puts them before any [section])
    out.sort_by_key(|(k, _)| k.contains('.'));
    out
}

/// A default as the configuration page shows it: a TOML literal, or
/// `unset`.
pub fn default_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "unset".to_string(),
        other => toml::Value::try_from(other)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| other.to_string()),
    }
}

/// The nearest known key, if one is close enough to be a typo.
fn nearest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(wrong, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every key a TOML table sets, dotted.
fn leaf_keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        match v.as_table() {
            Some(t) => leaf_keys(&format!("{prefix}{k}."), t, out),
            None => out.push(format!("{prefix}{k}")),
        }
    }
}

/// Keys of a TOML file that name no setting, as messages with a suggestion.
fn unknown_file_keys(path: &Path, table: &toml::Table, known: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    let sections: Vec<&str> = known
        .iter()
        .filter_map(|k| k.split_once('.').map(|(s, _)| s))
        .collect();
    for (k, v) in table {
        match v {
            toml::Value::Table(inner) if sections.contains(&k.as_str()) => {
                section_keys(path, &format!("{k}."), inner, known, &mut errors);
            }
            _ if known.iter().any(|full| full == k) || sections.contains(&k.as_str()) => {}
            _ => {
                // keys come top-level first, then by section: dedup suffices
                let mut uniq: Vec<&str> = known
                    .iter()
                    .map(|full| full.split('.').next().unwrap_or(full))
                    .collect();
                uniq.dedup();
                let hint = nearest(k, uniq.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_else(|| format!("; known: {}", uniq.join(", ")));
                let what = if v.is_table() { "section" } else { "key" };
                errors.push(format!("{}: unknown {what} `{k}`{hint}", path.display()));
            }
        }
    }
    errors
}

/// The keys of section `prefix` (`storage.`, `storage.s3.`) that name no
/// setting; nested sections are checked in turn.
fn section_keys(
    path: &Path,
    prefix: &str,
    table: &toml::Table,
    known: &[String],
    errors: &mut Vec<String>,
) {
    // the names directly in this section (a nested section once)
    let mut here: Vec<&str> = known
        .iter()
        .filter_map(|full| full.strip_prefix(prefix))
        .map(|rest| rest.split('.').next().unwrap_or(rest))
        .collect();
    here.dedup();
    let name = prefix.trim_end_matches('.');
    for (k, v) in table {
        let full = format!("{prefix}{k}");
        let nested = format!("{full}.");
        match v.as_table() {
            Some(t) if known.iter().any(|x| x.starts_with(&nested)) => {
                section_keys(path, &nested, t, known, errors)
            }
            _ if known.contains(&full) => {}
            _ => {
                let hint = nearest(k, here.iter().copied())
                    .map(|n| format!("; did you mean `{prefix}{n}`?"))
                    .unwrap_or_else(|| format!("; [{name}] has: {}", here.join(", ")));
                errors.push(format!("{}: unknown key `{full}`{hint}", path.display()));
            }
        }
    }
}

/// A figment error as a message naming the key, where the value came from,
/// and what is accepted.
fn type_error(e: &figment::Error) -> String {
    let key = e.path.join(".").to_ascii_lowercase();
    let src = e.metadata.as_ref().and_then(|m| m.source.as_ref());
    match src {
        Some(figment::Source::File(p)) => format!("{}: `{key}`: {}", p.display(), e.kind),
        _ if e
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.contains("environment")) =>
        {
            format!("`{key}` ({}): {}", env_var(&key), e.kind)
        }
        _ => format!("`{key}`: {}", e.kind),
    }
}

impl Config {
    /// Layer defaults, the TOML file, `BERTH_*` variables and flags; refuse
    /// unknown keys in the file, wrong types and values out of range.
    pub fn load(file: Option<&Path>, o: &Overrides) -> Result<Loaded, ConfigError> {
        let known: Vec<String> = known_keys().into_iter().map(|(k, _)| k).collect();
        let mut errors = Vec::new();
        let mut file_keys: Vec<String> = Vec::new();
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Err(e) => errors.push(format!("{}: {e}", path.display())),
                Ok(text) => match text.parse::<toml::Table>() {
                    Err(e) => errors.push(format!("{}: not valid TOML: {e}", path.display())),
                    Ok(table) => {
                        errors.extend(unknown_file_keys(path, &table, &known));
                        leaf_keys("", &table, &mut file_keys);
                        f = f.merge(Toml::file_exact(path));
                    }
                },
            }
        }
        // Only variables that name a setting are merged; the others are
        // reported.
        let mut unknown_env = Vec::new();
        let mut env_keys = Vec::new();
        for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
            let Some(rest) = name.strip_prefix("BERTH_") else {
                continue;
            };
            if rest == ENV_CONFIG {
                continue;
            }
            let key = env_key(rest);
            if known.contains(&key) {
                env_keys.push((key, name));
            } else {
                unknown_env.push(name);
            }
        }
        unknown_env.sort();
        let knows = known.clone();
        f = f.merge(
            Env::prefixed("BERTH_")
                .filter(move |k| knows.contains(&env_key(k.as_str())))
                .map(|k| env_key(k.as_str()).into()),
        );
        if let Some(l) = o.listen {
            f = f.merge(Serialized::default("listen", l));
        }
        if let Some(d) = &o.data_dir {
            f = f.merge(Serialized::default("data_dir", d));
        }
        let config = match f.extract::<Config>() {
            Ok(c) => Some(c),
            Err(e) => {
                errors.extend(e.into_iter().map(|e| type_error(&e)));
                None
            }
        };
        if let Some(c) = &config {
            errors.extend(c.check());
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let sources = known
            .iter()
            .map(|k| {
                let src = match k.as_str() {
                    "listen" if o.listen.is_some() => Source::Flag("--listen"),
                    "data_dir" if o.data_dir.is_some() => Source::Flag("--data-dir"),
                    _ => match env_keys.iter().find(|(ek, _)| ek == k) {
                        Some((_, var)) => Source::Env(var.clone()),
                        None if file_keys.contains(k) => {
                            Source::File(file.expect("a file gave keys").to_path_buf())
                        }
                        None => Source::Default,
                    },
                };
                (k.clone(), src)
            })
            .collect();
        Ok(Loaded {
            config: config.expect("no errors: extracted"),
            sources,
            unknown_env,
        })
    }

    /// Values out of range, each naming the key and what it accepts.
    fn check(&self) -> Vec<String> {
        let mut e = Vec::new();
        let mut need = |ok: bool, key: &str, accepts: &str| {
            if !ok {
                e.push(format!("`{key}` ({}): {accepts}", env_var(key)));
            }
        };
        let s3 = &self.storage.s3;
        if self.storage.backend == Backend::S3 {
            let from_env = ["AWS_BUCKET", "AWS_BUCKET_NAME"]
                .iter()
                .any(|v| std::env::var_os(v).is_some());
            need(
                s3.bucket.is_some() || from_env,
                "storage.s3.bucket",
                "a bucket name (or AWS_BUCKET) when storage.backend is s3",
            );
        }
        need(
            s3.endpoint
                .as_deref()
                .is_none_or(|u| u.starts_with("http://") || u.starts_with("https://")),
            "storage.s3.endpoint",
            "an http:// or https:// URL",
        );
        need(
            !(s3.secret_access_key.is_some() && s3.secret_access_key_file.is_some()),
            "storage.s3.secret_access_key",
            "either storage.s3.secret_access_key or storage.s3.secret_access_key_file, not both",
        );
        need(
            (1..=7 * 86_400).contains(&s3.redirect_expiry_secs),
            "storage.s3.redirect_expiry_secs",
            "1 to 604800 seconds (S3's longest presigned URL)",
        );
        let pg = &self.metadata.postgres;
        need(
            self.metadata.backend != MetadataBackend::Postgres
                || pg.url.is_some()
                || pg.url_file.is_some(),
            "metadata.postgres.url",
            "a postgres:// URL (or metadata.postgres.url_file) when metadata.backend is postgres",
        );
        need(
            !(pg.url.is_some() && pg.url_file.is_some()),
            "metadata.postgres.url",
            "either metadata.postgres.url or metadata.postgres.url_file, not both",
        );
        need(
            pg.url.as_deref().is_none_or(|u| {
                u.starts_with("postgres://") || u.starts_with("postgresql://") || u.contains('=')
            }),
            "metadata.postgres.url",
            "a postgres:// URL or a key=value connection string",
        );
        need(
            !pg.schema.is_empty()
                && pg.schema.len() <= 63
                && !pg.schema.starts_with(|c: char| c.is_ascii_digit())
                && pg
                    .schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "metadata.postgres.schema",
            "lowercase letters, digits and _, not starting with a digit, at most 63",
        );
        need(
            (1..=1024).contains(&pg.pool_size),
            "metadata.postgres.pool_size",
            "1 to 1024 connections",
        );
        let h = &self.http;
        need(
            (1..=3600).contains(&h.header_read_timeout_secs),
            "http.header_read_timeout_secs",
            "1 to 3600 seconds",
        );
        need(
            (1..=86_400).contains(&h.body_idle_timeout_secs),
            "http.body_idle_timeout_secs",
            "1 to 86400 seconds",
        );
        need(
            (8192..=1 << 20).contains(&h.max_header_bytes),
            "http.max_header_bytes",
            "8192 to 1048576 bytes",
        );
        need(
            (1..=1_000_000).contains(&h.max_connections),
            "http.max_connections",
            "1 to 1000000",
        );
        need(
            self.tls.cert_file.is_some() == self.tls.key_file.is_some(),
            "tls.cert_file",
            "set together with tls.key_file (both or neither)",
        );
        need(
            self.tls.reload_interval_secs <= 86_400,
            "tls.reload_interval_secs",
            "0 to 86400 seconds",
        );
        let l = &self.limits;
        need(
            (1024..=64 << 20).contains(&l.max_manifest_size),
            "limits.max_manifest_size",
            "1024 to 67108864 bytes",
        );
        need(
            self.uploads.max_age_secs >= 1,
            "uploads.max_age_secs",
            "at least 1 second",
        );
        need(
            self.uploads.reap_interval_secs >= 1,
            "uploads.reap_interval_secs",
            "at least 1 second",
        );
        need(
            self.metadata.memory_bytes >= 8 << 20,
            "metadata.memory_bytes",
            "at least 8388608 (8 MiB)",
        );
        need(
            self.stats.usage_retention_days >= 1,
            "stats.usage_retention_days",
            "at least 1",
        );
        need(
            self.listing.default_page_size >= 1,
            "listing.default_page_size",
            "at least 1",
        );
        need(
            self.listing.max_page_size >= self.listing.default_page_size,
            "listing.max_page_size",
            "at least listing.default_page_size",
        );
        need(
            matches!(self.log.format.as_str(), "text" | "json"),
            "log.format",
            "`text` or `json`",
        );
        need(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            "a tracing filter such as `info` or `berth=debug,info`",
        );
        let a = &self.auth;
        need(!a.service.is_empty(), "auth.service", "a non-empty name");
        need(
            (1..=86_400).contains(&a.token_ttl_secs),
            "auth.token_ttl_secs",
            "1 to 86400 seconds",
        );
        need(
            a.external_url
                .as_deref()
                .is_none_or(|u| u.starts_with("http://") || u.starts_with("https://")),
            "auth.external_url",
            "an http:// or https:// URL",
        );
        need(
            !(a.admin_token.is_some() && a.admin_token_file.is_some()),
            "auth.admin_token",
            "either auth.admin_token or auth.admin_token_file, not both",
        );
        need(
            a.admin_token
                .as_deref()
                .is_none_or(|t| t.trim().starts_with("berth_admin_") && t.trim().len() >= 32),
            "auth.admin_token",
            "berth_admin_ followed by at least 20 characters",
        );
        e
    }
}

impl Loaded {
    /// The effective settings as TOML, each with where it came from;
    /// secrets redacted.
    pub fn show(&self) -> String {
        let value = serde_json::to_value(&self.config).expect("settings serialise");
        let mut out = String::new();
        let mut section = "";
        for (key, src) in &self.sources {
            let (sec, name) = key.split_once('.').unwrap_or(("", key));
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let v = key.split('.').fold(&value, |v, k| &v[k]);
            let shown = if SECRETS.contains(&key.as_str()) && !v.is_null() {
                "\"<redacted>\"".to_string()
            } else {
                default_text(v)
            };
            let line = if v.is_null() {
                format!("# {name} (unset)")
            } else {
                format!("{name} = {shown}")
            };
            out.push_str(&format!("{line:<44} # {src}\n"));
        }
        out.trim_start().to_string()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API
mod tests {
    use super::*;

    fn load(file: Option<&str>) -> Result<Loaded, ConfigError> {
        Config::load(file.map(Path::new), &Overrides::default())
    }

    fn errors_of(file: &str) -> String {
        load(Some(file)).unwrap_err().to_string()
    }

    #[test]
    fn env_keys() {
        assert_eq!(env_key("LISTEN"), "listen");
        assert_eq!(env_key("DATA_DIR"), "data_dir");
        assert_eq!(env_key("UPLOADS_MAX_AGE_SECS"), "uploads.max_age_secs");
        assert_eq!(
            env_key("LIMITS_MAX_MANIFEST_SIZE"),
            "limits.max_manifest_size"
        );
        for (k, _) in known_keys() {
            assert_eq!(
                env_key(&env_var(&k)["BERTH_".len()..]),
                k,
                "round trip of {k}"
            );
        }
    }

    #[test]
    fn layering_and_sources() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                "listen = \"127.0.0.1:6000\"\ndata_dir = \"/from/file\"\n[uploads]\nmax_age_secs = 60\n",
            )?;
            jail.set_env("BERTH_DATA_DIR", "/from/env");
            jail.set_env("BERTH_LISTING_MAX_PAGE_SIZE", "5000");
            let l = load(Some("berth.toml")).unwrap();
            let c = &l.config;
            assert_eq!(c.listen.port(), 6000);
            assert_eq!(c.data_dir, PathBuf::from("/from/env"));
            assert_eq!(c.uploads.max_age_secs, 60);
            assert_eq!(c.listing.max_page_size, 5000);
            assert_eq!(c.limits.max_manifest_size, 4 * 1024 * 1024);
            assert!(c.storage.sync, "durable by default");
            let src = |k: &str| {
                l.sources
                    .iter()
                    .find(|(key, _)| key == k)
                    .unwrap()
                    .1
                    .clone()
            };
            assert_eq!(src("listen"), Source::File("berth.toml".into()));
            assert_eq!(src("data_dir"), Source::Env("BERTH_DATA_DIR".into()));
            assert_eq!(
                src("uploads.max_age_secs"),
                Source::File("berth.toml".into())
            );
            assert_eq!(src("storage.sync"), Source::Default);
            jail.set_env("BERTH_STORAGE_SYNC", "false");
            assert!(!load(None).unwrap().config.storage.sync);
            let o = Overrides {
                listen: Some("127.0.0.1:7000".parse().unwrap()),
                data_dir: Some("/from/flag".into()),
            };
            let l = Config::load(Some(Path::new("berth.toml")), &o).unwrap();
            assert_eq!(
                (l.config.listen.port(), &l.config.data_dir),
                (7000, &PathBuf::from("/from/flag"))
            );
            assert!(l
                .sources
                .contains(&("listen".into(), Source::Flag("--listen"))));
            assert!(l
                .sources
                .contains(&("data_dir".into(), Source::Flag("--data-dir"))));
            Ok(())
        });
    }

    #[test]
    fn typos_are_refused_with_the_nearest_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[storge]\nsync = false\n")?;
            let e = errors_of("a.toml");
            assert!(
                e.contains("unknown section `storge`; did you mean `storage`?"),
                "{e}"
            );
            jail.create_file(
                "b.toml",
                "[auth]\nadmin_tokn = \"berth_admin_xxxxxxxxxxxxxxxxxxxxxxxx\"\n",
            )?;
            let e = errors_of("b.toml");
            assert!(
                e.contains("unknown key `auth.admin_tokn`; did you mean `auth.admin_token`?"),
                "{e}"
            );
            assert!(
                !e.contains("berth_admin_x"),
                "no secret in the message: {e}"
            );
            jail.create_file(
                "c.toml",
                "lisen = \"127.0.0.1:1\"\n[storage]\nsinc = true\n",
            )?;
            let e = errors_of("c.toml");
            assert!(
                e.contains("unknown key `lisen`; did you mean `listen`?"),
                "{e}"
            );
            assert!(
                e.contains("unknown key `storage.sinc`; did you mean `storage.sync`?"),
                "{e}"
            );
            assert!(e.contains("c.toml"), "names the file: {e}");
            jail.create_file(
                "d.toml",
                "[storage]\nbucket = \"b\"\n[storage.s3]\nbuckt = \"b\"\nendpoint = 1\n",
            )?;
            let e = errors_of("d.toml");
            assert!(
                e.contains("unknown key `storage.bucket`; [storage] has: backend, direct_io, min_free_bytes, s3, sync"),
                "{e}"
            );
            assert!(
                e.contains("unknown key `storage.s3.buckt`; did you mean `storage.s3.bucket`?"),
                "{e}"
            );
            jail.create_file("e.toml", "zzzzzz = 1\n")?;
            assert!(
                errors_of("e.toml").contains("unknown key `zzzzzz`; known: data_dir, listen, auth")
            );
            Ok(())
        });
    }

    #[test]
    fn wrong_types_and_ranges_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[uploads]\nmax_age_secs = \"a day\"\n")?;
            let e = errors_of("t.toml");
            assert!(
                e.contains("t.toml: `uploads.max_age_secs`: invalid type"),
                "{e}"
            );
            jail.create_file("s.toml", "storage = true\n")?;
            assert!(errors_of("s.toml").contains("storage"));
            jail.create_file("bad.toml", "[listing\n")?;
            assert!(errors_of("bad.toml").contains("not valid TOML"));
            jail.create_file(
                "r.toml",
                "[listing]\ndefault_page_size = 0\n[log]\nformat = \"xml\"\n[auth]\ntoken_ttl_secs = 0\nexternal_url = \"registry.example.com\"\n",
            )?;
            let e = errors_of("r.toml");
            for k in [
                "`listing.default_page_size` (BERTH_LISTING_DEFAULT_PAGE_SIZE): at least 1",
                "`log.format` (BERTH_LOG_FORMAT): `text` or `json`",
                "`auth.token_ttl_secs`",
                "`auth.external_url`",
            ] {
                assert!(e.contains(k), "{k} in {e}");
            }
            jail.set_env("BERTH_UPLOADS_MAX_AGE_SECS", "not a number");
            let e = load(None).unwrap_err().to_string();
            assert!(
                e.contains("`uploads.max_age_secs` (BERTH_UPLOADS_MAX_AGE_SECS): invalid type"),
                "{e}"
            );
            Ok(())
        });
    }

    /// `[storage.s3]` from a file and from `BERTH_STORAGE_S3_*`, with
    /// where each came from; an S3 backend without a bucket is refused.
    #[test]
    fn s3_settings_nest_in_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s3.toml",
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:3900\"\nbucket = \"blobs\"\n",
            )?;
            jail.set_env("BERTH_STORAGE_S3_PREFIX", "berth/");
            jail.set_env("BERTH_STORAGE_S3_REDIRECT_EXPIRY_SECS", "60");
            let l = Config::load(Some(Path::new("s3.toml")), &Overrides::default()).unwrap();
            let s3 = &l.config.storage.s3;
            assert_eq!(l.config.storage.backend, Backend::S3);
            assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
            assert_eq!(s3.bucket.as_deref(), Some("blobs"));
            assert_eq!(
                (s3.prefix.as_str(), s3.redirect_expiry_secs),
                ("berth/", 60)
            );
            assert!(s3.redirect && s3.path_style, "the defaults");
            let src = |k: &str| {
                l.sources
                    .iter()
                    .find(|(key, _)| key == k)
                    .unwrap()
                    .1
                    .clone()
            };
            assert_eq!(src("storage.s3.bucket"), Source::File("s3.toml".into()));
            assert_eq!(
                src("storage.s3.prefix"),
                Source::Env("BERTH_STORAGE_S3_PREFIX".into())
            );
            assert!(l
                .unknown_env
                .iter()
                .all(|v| !v.starts_with("BERTH_STORAGE")));
            jail.create_file("nob.toml", "[storage]\nbackend = \"s3\"\n")?;
            let e = errors_of("nob.toml");
            assert!(
                e.contains("`storage.s3.bucket` (BERTH_STORAGE_S3_BUCKET)"),
                "{e}"
            );
            jail.create_file("bad.toml", "[storage]\nbackend = \"tape\"\n")?;
            assert!(errors_of("bad.toml").contains("storage.backend"));
            Ok(())
        });
    }

    #[test]
    fn postgres_metadata_settings() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "pg.toml",
                "[metadata]\nbackend = \"postgres\"\n[metadata.postgres]\nurl = \"postgres://b:pw@db/berth\"\n",
            )?;
            jail.set_env("BERTH_METADATA_POSTGRES_POOL_SIZE", "4");
            let l = Config::load(Some(Path::new("pg.toml")), &Overrides::default()).expect("valid");
            let m = &l.config.metadata;
            assert_eq!(m.backend, MetadataBackend::Postgres);
            assert_eq!(
                (m.postgres.schema.as_str(), m.postgres.pool_size),
                ("berth", 4)
            );
            let shown = l.show();
            assert!(!shown.contains("pw@db"), "the URL is a secret: {shown}");
            jail.create_file("nourl.toml", "[metadata]\nbackend = \"postgres\"\n")?;
            assert!(errors_of("nourl.toml").contains("`metadata.postgres.url`"));
            jail.create_file(
                "schema.toml",
                "[metadata.postgres]\nurl = \"postgres://db\"\nschema = \"Berth;drop\"\n",
            )?;
            assert!(errors_of("schema.toml").contains("`metadata.postgres.schema`"));
            jail.create_file("engine.toml", "[metadata]\nbackend = \"sqlite\"\n")?;
            assert!(errors_of("engine.toml").contains("metadata.backend"));
            Ok(())
        });
    }

    #[test]
    fn unknown_environment_variables_are_reported_not_fatal() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BERTH_STORAGE_BACKNED", "s3");
            jail.set_env("BERTH_STORGE_SYNC", "false");
            jail.set_env("BERTH_CONFIG", "ignored: names the file");
            let l = load(None).unwrap();
            // (the test harness has BERTH_BIN and the like, unknown too)
            let ours: Vec<&String> = l
                .unknown_env
                .iter()
                .filter(|v| v.starts_with("BERTH_STOR") || v.starts_with("BERTH_CONF"))
                .collect();
            assert_eq!(ours, ["BERTH_STORAGE_BACKNED", "BERTH_STORGE_SYNC"]);
            assert_eq!(l.config.storage.backend, Backend::Filesystem);
            assert!(l.config.storage.sync, "a misspelt variable changes nothing");
            Ok(())
        });
    }

    /// docs/configuration.md lists every setting with its variable and
    /// default, and nothing else.
    #[test]
    fn the_configuration_page_matches_the_settings() {
        let page = include_str!("../../../docs/configuration.md");
        let mut rows = Vec::new();
        for line in page.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let strip = |c: &str| c.trim_matches('`').to_string();
            rows.push((strip(cells[1]), strip(cells[2]), strip(cells[3])));
        }
        let known = known_keys();
        let page_keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        for (k, default) in &known {
            let row = rows
                .iter()
                .find(|r| &r.0 == k)
                .unwrap_or_else(|| panic!("{k} is not on docs/configuration.md"));
            assert_eq!(row.1, env_var(k), "{k}: variable");
            assert_eq!(row.2, default_text(default), "{k}: default");
        }
        for k in page_keys {
            assert!(
                known.iter().any(|(n, _)| n == k),
                "{k} on the page is no setting"
            );
        }
    }

    #[test]
    fn the_sample_configuration_is_accepted() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                include_str!("../../../docs/berth.example.toml"),
            )?;
            let l = load(Some("berth.toml")).unwrap();
            assert_eq!(l.config.listen.port(), 5000);
            assert!(l.config.storage.sync);
            Ok(())
        });
    }

    #[test]
    fn show_has_every_key_its_source_and_no_secret() {
        figment::Jail::expect_with(|jail| {
            let secret = "berth_admin_SuperSecretValue0123456789";
            jail.set_env("BERTH_AUTH_ADMIN_TOKEN", secret);
            jail.set_env("BERTH_STORAGE_SYNC", "false");
            let out = load(None).unwrap().show();
            assert!(!out.contains(secret), "{out}");
            assert!(out.contains("admin_token = \"<redacted>\""), "{out}");
            assert!(out.contains("sync = false"), "{out}");
            assert!(out.contains("# environment BERTH_STORAGE_SYNC"), "{out}");
            for (k, _) in known_keys() {
                let name = k.rsplit('.').next().unwrap();
                assert!(out.contains(name), "{k} missing in {out}");
            }
            let parsed: toml::Table = out.parse().expect("show prints TOML");
            assert_eq!(parsed["storage"]["sync"].as_bool(), Some(false));
            Ok(())
        });
    }
}
