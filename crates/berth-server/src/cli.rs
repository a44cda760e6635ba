//! The command line: `berth serve` and the offline administration
//! commands, as clap types.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const ENV_HELP: &str = "\
Configuration is layered: built-in defaults, then the TOML file given with
--config, then environment variables, then command-line flags.

Every setting has an environment variable: BERTH_<SECTION>_<KEY> for a key in
a [section], BERTH_<KEY> for a top-level key. For example:
  BERTH_LISTEN=0.0.0.0:5000           listen
  BERTH_DATA_DIR=/var/lib/berth       data_dir
  BERTH_LIMITS_MAX_MANIFEST_SIZE=...  [limits] max_manifest_size (bytes, default 4 MiB)
  BERTH_UPLOADS_MAX_AGE_SECS=86400    [uploads] max_age_secs (idle upload sessions are removed)
  BERTH_UPLOADS_REAP_INTERVAL_SECS=600
  BERTH_LISTING_DEFAULT_PAGE_SIZE=1000, BERTH_LISTING_MAX_PAGE_SIZE=10000
  BERTH_LOG_LEVEL=info                (RUST_LOG wins when set)
  BERTH_LOG_FORMAT=text|json
  BERTH_AUTH_ENABLED=true             [auth] enabled (false: an open registry, local use only)
  BERTH_AUTH_ADMIN_TOKEN=berth_admin_...  or BERTH_AUTH_ADMIN_TOKEN_FILE=PATH
  BERTH_AUTH_EXTERNAL_URL=https://registry.example.com   (token realm: <url>/token)
  BERTH_AUTH_SERVICE=berth, BERTH_AUTH_TOKEN_TTL_SECS=300, BERTH_AUTH_AUTO_CREATE_REGISTRIES=true

With auth on (the default) the first start creates an admin token and prints
it once. Repository names start with their registry: <registry>/<repository>.

The data directory holds everything: meta/ (RocksDB) and store/ (blobs and
staged uploads). Every setting: docs/configuration.md, or `berth config show`.
`berth config check` validates a file and the environment without starting.";

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: an OCI distribution registry", after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the administration commands act: a running server through the
/// management API (the default), or, with `--offline` (or `--data-dir` /
/// `--config`), a stopped server's data directory — for recovery.
#[derive(clap::Args)]
pub struct DataArgs {
    /// Act on a stopped server's data directory instead of through the API.
    #[arg(long, global = true)]
    pub offline: bool,
    /// A TOML configuration file (offline).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./berth-data] (offline).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's URL [default: BERTH_URL, then `url` in the CLI file
    /// (BERTH_CLI_CONFIG, default ~/.config/berth/cli.toml), then
    /// http://127.0.0.1:5000].
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
    /// An API or admin token [default: BERTH_TOKEN, then `token` in the CLI
    /// file].
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Print the API's JSON (online).
    #[arg(long, global = true)]
    pub json: bool,
}

impl DataArgs {
    pub fn offline(&self) -> bool {
        self.offline || self.data_dir.is_some() || self.config.is_some()
    }
}

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Create a registry (a tenant).
    Create {
        name: String,
        /// Anyone may pull without credentials.
        #[arg(long)]
        public: bool,
        /// Accept manifests whose blobs or child manifests are not in the
        /// repository (partial mirrors).
        #[arg(long)]
        allow_sparse: bool,
        /// Storage limit in bytes (online).
        #[arg(long, value_name = "BYTES")]
        storage_limit: Option<u64>,
    },
    /// Change a registry's settings.
    Update {
        name: String,
        /// Anyone may pull without credentials (true) or not (false).
        #[arg(long, value_name = "BOOL")]
        public: Option<bool>,
        /// Accept sparse manifests (true) or not (false).
        #[arg(long, value_name = "BOOL")]
        allow_sparse: Option<bool>,
    },
    List,
    /// One registry: usage, limit, repositories (online).
    Show {
        name: String,
    },
    /// Delete a registry with its repositories, users and token grants
    /// (blobs are left to garbage collection).
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum RepoCmd {
    /// A registry's repositories, by name.
    List { registry: String },
    /// One repository: size, artifacts, tags, pulls, kind (online).
    Show {
        registry: String,
        /// The name within the registry (`app`, `team/app`).
        name: String,
    },
    /// Delete a repository: manifests, tags and links (blobs are left to
    /// garbage collection).
    Delete { registry: String, name: String },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a registry user; prints the generated password once.
    Create {
        #[arg(long)]
        registry: String,
        name: String,
        /// Pull and push (default: pull only).
        #[arg(long)]
        push: bool,
        /// Days until the user expires.
        #[arg(long)]
        expires_days: Option<u64>,
    },
    List {
        #[arg(long)]
        registry: String,
    },
    Delete {
        #[arg(long)]
        registry: String,
        name: String,
    },
    /// A new password (printed once); the old one stops working.
    ResetPassword {
        #[arg(long)]
        registry: String,
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an API token; prints the secret once.
    Create {
        name: String,
        /// Limit to these registries (repeat); default: all.
        #[arg(long = "registry")]
        registries: Vec<String>,
        /// Pull only.
        #[arg(long)]
        read_only: bool,
        /// Days until the token expires.
        #[arg(long)]
        expires_days: Option<u64>,
    },
    List,
    Revoke {
        id: String,
    },
    /// A new secret (printed once); the old one stops working.
    Regenerate {
        id: String,
    },
    /// A new expiry: in N days, or never (no --expires-days).
    Refresh {
        id: String,
        #[arg(long)]
        expires_days: Option<u64>,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum TagRuleCmd {
    /// A registry's tag rules.
    List {
        registry: String,
    },
    /// Protect tags (only admins push over or delete them) or freeze them
    /// (nobody does, until the rule goes).
    Create {
        registry: String,
        /// `protected` or `immutable`.
        #[arg(long)]
        kind: String,
        /// A regex the whole tag must match (`v[0-9.]+`).
        #[arg(long)]
        tag: String,
        /// Only repositories whose name within the registry matches this.
        #[arg(long)]
        repository: Option<String>,
    },
    Delete {
        registry: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum BinCmd {
    /// What a registry's recycle bin holds.
    List {
        registry: String,
        /// Only this repository (its name within the registry).
        #[arg(long)]
        repository: Option<String>,
    },
    /// Put an entry back (a manifest with its tags, or a tag).
    Restore { registry: String, entry: String },
    /// Delete one entry for good.
    Purge { registry: String, entry: String },
    /// Delete every entry for good.
    Empty { registry: String },
}

/// The optional fields of a cleanup policy, for `berth cleanup update --clear`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyField {
    Keep,
    KeepN,
    OlderThan,
    Repository,
    Interval,
}

impl PolicyField {
    /// Its name in the management API.
    pub fn api_name(self) -> &'static str {
        match self {
            PolicyField::Keep => "nameRegexKeep",
            PolicyField::KeepN => "keepN",
            PolicyField::OlderThan => "olderThan",
            PolicyField::Repository => "repositoryPattern",
            PolicyField::Interval => "intervalSecs",
        }
    }
}

#[derive(Subcommand)]
pub enum CleanupCmd {
    /// A registry's cleanup policies.
    List {
        registry: String,
    },
    /// A policy: tags matching --delete go, unless they match --keep, are
    /// among the --keep-n newest or younger than --older-than; never
    /// `latest` or a ruled tag.
    Create {
        registry: String,
        /// A regex the whole tag must match to go.
        #[arg(long)]
        delete: String,
        #[arg(long)]
        keep: Option<String>,
        #[arg(long)]
        keep_n: Option<u32>,
        /// `1h`, `7d`, `1month`…
        #[arg(long)]
        older_than: Option<String>,
        /// Only repositories whose name within the registry matches this.
        #[arg(long)]
        repository: Option<String>,
        /// Run on its own every this many seconds.
        #[arg(long)]
        interval_secs: Option<u64>,
    },
    /// Change a policy: the options given, the rest as they were;
    /// --clear FIELD removes an optional one.
    Update {
        registry: String,
        id: String,
        #[arg(long)]
        delete: Option<String>,
        #[arg(long)]
        keep: Option<String>,
        #[arg(long)]
        keep_n: Option<u32>,
        #[arg(long)]
        older_than: Option<String>,
        #[arg(long)]
        repository: Option<String>,
        #[arg(long)]
        interval_secs: Option<u64>,
        /// Remove this field from the policy (repeatable).
        #[arg(long, value_enum)]
        clear: Vec<PolicyField>,
    },
    Delete {
        registry: String,
        id: String,
    },
    /// Run a policy now and follow it (--dry-run: list what would go).
    Run {
        registry: String,
        id: String,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the registry.
    #[command(after_help = ENV_HELP)]
    Serve {
        /// A TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:5000].
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
        /// Data directory [default: ./berth-data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Ask the server this configuration describes whether it is alive
    /// (`GET /healthz` on its listener, over HTTPS when `[tls]` is set,
    /// without checking the certificate's name): exit 0 when it answers
    /// 200, 1 otherwise. For container health checks.
    Healthcheck {
        #[command(flatten)]
        args: ConfigArgs,
        /// Ask this URL instead (`…/healthz` or `…/readyz`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Check a stopped server's metadata store: recount every usage figure
    /// and cross-check links, indexes and tags (exit 1, naming each
    /// disagreement).
    Fsck {
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Copy a stopped instance's metadata from one engine to the other:
    /// `--from rocksdb --to postgres` reads the data directory's RocksDB
    /// and writes into the (empty) `[metadata.postgres]` schema; `--from
    /// postgres --to rocksdb` the other way. Both are read again and
    /// compared row by row. Blobs stay where `[storage]` says; afterwards
    /// start with `metadata.backend` set to the destination.
    Migrate {
        /// The engine that holds the metadata now.
        #[arg(long, value_enum)]
        from: Engine,
        /// The engine to copy it into (empty).
        #[arg(long, value_enum)]
        to: Engine,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Validate or show the configuration (file, environment, flags).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Registries (tenants).
    Registry {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: RegistryCmd,
    },
    /// Registry users.
    User {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// API tokens.
    Token {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Run an online garbage collection through the API and follow it.
    Gc {
        #[command(flatten)]
        data: DataArgs,
        /// Only this registry (default: the instance).
        #[arg(long)]
        registry: Option<String>,
        /// Also delete manifests no tag, index or stored subject reaches.
        #[arg(long)]
        delete_untagged: bool,
        /// Count what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep what is younger than this many seconds [default: 3600].
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Repositories of a registry.
    Repo {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: RepoCmd,
    },
    /// Protected and immutable tag rules (online).
    TagRule {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: TagRuleCmd,
    },
    /// A registry's recycle bin (online).
    Bin {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: BinCmd,
    },
    /// Cleanup policies (online).
    Cleanup {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: CleanupCmd,
    },
}

/// What `serve` would run with: the same file, environment and flags.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A metadata engine (`berth migrate`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Engine {
    Rocksdb,
    Postgres,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Check the file and the environment without starting anything: exit
    /// 0 when `serve` would accept them, 1 (with every problem) when not.
    Check {
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Print the effective settings after layering, each with where it came
    /// from (default, file, environment, flag); secrets redacted.
    Show {
        #[command(flatten)]
        args: ConfigArgs,
    },
}
