//! `berth`: an OCI distribution registry in one binary.

mod config;
mod http;
mod metrics;

use anyhow::Context;
use berth_auth::{Auth, AuthConfig};
use berth_distribution::{Distribution, Gauges};
use berth_meta::{Meta, RocksStore, Visibility};
use berth_storage::BlobStore;
use clap::{Parser, Subcommand};
use config::{Config, Overrides};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const ENV_HELP: &str = "\
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
staged uploads). See docs/configuration.md.";

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: an OCI distribution registry", after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives, for the offline administration commands.
#[derive(clap::Args)]
struct DataArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: ./berth-data].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RegistryCmd {
    /// Create a registry (a tenant).
    Create {
        name: String,
        /// Anyone may pull without credentials.
        #[arg(long)]
        public: bool,
    },
    List,
    /// Delete a registry record and its users (repositories stay until cleanup).
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
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
enum TokenCmd {
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
}

#[derive(Subcommand)]
enum Command {
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
    /// Registries (tenants), on a stopped server's data directory.
    Registry {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: RegistryCmd,
    },
    /// Registry users, on a stopped server's data directory.
    User {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// API tokens, on a stopped server's data directory.
    Token {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let cfg = Config::load(
                config.as_deref(),
                Config::env(),
                &Overrides { listen, data_dir },
            )
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            init_tracing(&cfg);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(cfg))
        }
        Command::Registry { data, cmd } => admin(data, |auth| match cmd {
            RegistryCmd::Create { name, public } => {
                let vis = if public {
                    Visibility::Public
                } else {
                    Visibility::Private
                };
                let r = auth.create_registry(&name, vis)?;
                println!("created registry {name} ({})", r.id);
                Ok(())
            }
            RegistryCmd::List => {
                for (name, r) in auth.meta().list_registries(None, usize::MAX)? {
                    println!("{name}\t{:?}\t{}", r.visibility, r.id);
                }
                Ok(())
            }
            RegistryCmd::Delete { name } => {
                if !auth.meta().delete_registry(&name)? {
                    anyhow::bail!("no registry {name}");
                }
                println!("deleted registry {name}");
                Ok(())
            }
        }),
        Command::User { data, cmd } => admin(data, |auth| match cmd {
            UserCmd::Create {
                registry,
                name,
                push,
                expires_days,
            } => {
                let c =
                    auth.create_user(&registry, &name, push, expires_days.map(days_from_now))?;
                println!(
                    "username: {}\npassword: {}\n(the password is shown only now)",
                    c.username, c.secret
                );
                Ok(())
            }
            UserCmd::List { registry } => {
                for (name, u) in auth.meta().list_users(&registry)? {
                    let perm = if u.can_push { "pull,push" } else { "pull" };
                    println!("{registry}+{name}\t{perm}\texpires={:?}", u.expires_ms);
                }
                Ok(())
            }
            UserCmd::Delete { registry, name } => {
                if !auth.meta().delete_user(&registry, &name)? {
                    anyhow::bail!("no user {name} in {registry}");
                }
                println!("deleted user {registry}+{name}");
                Ok(())
            }
            UserCmd::ResetPassword { registry, name } => {
                let c = auth.reset_password(&registry, &name)?;
                println!(
                    "username: {}\npassword: {}\n(the password is shown only now)",
                    c.username, c.secret
                );
                Ok(())
            }
        }),
        Command::Token { data, cmd } => admin(data, |auth| match cmd {
            TokenCmd::Create {
                name,
                registries,
                read_only,
                expires_days,
            } => {
                let regs = (!registries.is_empty()).then_some(registries);
                let (id, c) =
                    auth.create_token(&name, regs, !read_only, expires_days.map(days_from_now))?;
                println!(
                    "id: {id}\ntoken: {}\n(the token is shown only now)",
                    c.secret
                );
                Ok(())
            }
            TokenCmd::List => {
                for (id, t) in auth.meta().list_tokens()? {
                    let scope = t
                        .registries
                        .map(|r| r.join(","))
                        .unwrap_or_else(|| "*".into());
                    let mode = if t.read_write {
                        "read-write"
                    } else {
                        "read-only"
                    };
                    println!(
                        "{id}\t{}\t{scope}\t{mode}\t{}\tlastUsed={:?}",
                        t.name,
                        t.status.as_str(),
                        t.last_used_ms
                    );
                }
                Ok(())
            }
            TokenCmd::Revoke { id } => {
                auth.revoke_token(&id)?;
                println!("revoked token {id}");
                Ok(())
            }
            TokenCmd::Refresh { id, expires_days } => {
                auth.refresh_token_expiry(&id, expires_days.map(days_from_now))?;
                println!(
                    "token {id} now expires: {}",
                    expires_days
                        .map(|d| format!("in {d} days"))
                        .unwrap_or("never".into())
                );
                Ok(())
            }
            TokenCmd::Regenerate { id } => {
                let c = auth.regenerate_token(&id)?;
                println!("token: {}\n(the token is shown only now)", c.secret);
                Ok(())
            }
        }),
    }
}

fn days_from_now(days: u64) -> u64 {
    berth_meta::now_millis() + days * 86_400_000
}

/// Run an administration command on the data directory (the server must be
/// stopped: RocksDB allows one process).
fn admin(data: DataArgs, f: impl FnOnce(&Auth) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let cfg = Config::load(
        data.config.as_deref(),
        Config::env(),
        &Overrides {
            listen: None,
            data_dir: data.data_dir,
        },
    )
    .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let meta_dir = cfg.data_dir.join("meta");
    let store = RocksStore::open(&meta_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {}: {e}\nIf berth is running on this data directory, stop it first: these commands work offline.",
            meta_dir.display()
        )
    })?;
    let (auth, shown) = open_auth(&cfg, Meta::new(store))?;
    if let Some(t) = shown {
        println!("admin token (created now, shown only once): {t}");
    }
    f(&auth)
}

fn open_auth(cfg: &Config, meta: Meta) -> anyhow::Result<(Auth, Option<String>)> {
    let admin_token = match (&cfg.auth.admin_token, &cfg.auth.admin_token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the admin token file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let acfg = AuthConfig {
        enabled: cfg.auth.enabled,
        service: cfg.auth.service.clone(),
        issuer: cfg.auth.service.clone(),
        token_ttl: Duration::from_secs(cfg.auth.token_ttl_secs.max(1)),
        auto_create_registries: cfg.auth.auto_create_registries,
        admin_token,
        ..AuthConfig::default()
    };
    Auth::open(meta, &cfg.data_dir.join("auth/jwt-signing-key.pem"), acfg)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&cfg.data_dir)?;
    let meta_dir = data_dir.join("meta");
    let store = RocksStore::open(&meta_dir)
        .map_err(|e| {
            anyhow::anyhow!(
                "opening the metadata store at {}: {e} (is another berth using this data directory?)",
                meta_dir.display()
            )
        })?
        .synced(cfg.storage.sync);
    let meta = Meta::new(store);
    let (auth, shown) = open_auth(&cfg, meta.clone())?;
    if let Some(t) = &shown {
        tracing::warn!("admin token created; it is shown only now, store it: {t}");
        eprintln!("\n    berth admin token (shown only once): {t}\n");
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
    let blobs = Arc::new(BlobStore::local(&data_dir.join("store"))?.synced(cfg.storage.sync));
    let metrics = metrics::Metrics::new();
    let dcfg = berth_distribution::Config {
        max_manifest_size: cfg.limits.max_manifest_size,
        upload_max_age: Duration::from_secs(cfg.uploads.max_age_secs),
        default_page_size: cfg.listing.default_page_size.max(1),
        max_page_size: cfg.listing.max_page_size.max(1),
        realm: format!(
            "{}/token",
            cfg.auth
                .external_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", cfg.listen))
                .trim_end_matches('/')
        ),
        ..Default::default()
    };
    let dist = Distribution::new(
        meta,
        blobs,
        Some(Arc::new(auth)),
        dcfg,
        Gauges {
            open_uploads: Some(metrics.open_uploads.clone()),
        },
    );
    let open = dist
        .count_uploads()
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.code.as_str()))?;

    // The reaper of abandoned upload sessions.
    {
        let dist = dist.clone();
        let every = Duration::from_secs(cfg.uploads.reap_interval_secs.max(1));
        tokio::spawn(async move {
            loop {
                match dist.reap_uploads().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "upload reaper"),
                    Err(e) => tracing::warn!(code = e.code.as_str(), "upload reaper failed"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    let state = Arc::new(http::State { dist, metrics });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(data_dir = %data_dir.display(), open_upload_sessions = open, "data directory");
    tracing::info!(%addr, "berth listening on http://{addr}");

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let peer = peer.ip().to_string();
                let svc = hyper::service::service_fn(move |req| {
                    let (state, peer) = (state.clone(), peer.clone());
                    async move { Ok::<_, std::convert::Infallible>(http::serve(state, req, peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down: no new connections, finishing requests in flight");
                break;
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("gave up waiting for connections after 30s"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
