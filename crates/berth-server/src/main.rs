//! `berth`: an OCI distribution registry in one binary.

mod config;
mod http;
mod metrics;

use anyhow::Context;
use berth_distribution::{Distribution, Gauges};
use berth_meta::{Meta, RocksStore};
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

The data directory holds everything: meta/ (RocksDB) and store/ (blobs and
staged uploads). See docs/configuration.md.";

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: an OCI distribution registry", after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&cfg.data_dir)?;
    let meta_dir = data_dir.join("meta");
    let store = RocksStore::open(&meta_dir).map_err(|e| {
        anyhow::anyhow!(
            "opening the metadata store at {}: {e} (is another berth using this data directory?)",
            meta_dir.display()
        )
    })?;
    let meta = Meta::new(store);
    let blobs = Arc::new(BlobStore::local(&data_dir.join("store"))?);
    let metrics = metrics::Metrics::new();
    let dcfg = berth_distribution::Config {
        max_manifest_size: cfg.limits.max_manifest_size,
        upload_max_age: Duration::from_secs(cfg.uploads.max_age_secs),
        default_page_size: cfg.listing.default_page_size.max(1),
        max_page_size: cfg.listing.max_page_size.max(1),
        ..Default::default()
    };
    let dist = Distribution::new(
        meta,
        blobs,
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
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(http::serve(state, req).await) }
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
