//! `berth`: an OCI distribution registry in one binary.
//!
//! Where things are: `cli.rs` (the commands), the settings in `berth-config`,
//! `wiring.rs` (stores and APIs from the settings), `http.rs` (path prefix →
//! API, request ids, spans, metrics), `ops.rs` (health and metrics
//! endpoints), `listener.rs` (accept loop, connection limits and timeouts,
//! graceful shutdown), `inbound.rs` (request bodies), `jobs.rs`
//! (background jobs), `online.rs` (the administration commands, through the
//! management API), `offline.rs` (the same on a stopped server's data
//! directory), `metrics.rs`.

mod cli;
mod http;
mod inbound;
mod jobs;
mod listener;
mod metrics;
mod offline;
mod online;
mod ops;
mod tls;
mod wiring;

use berth_config as config;
use clap::Parser;
use cli::{Cli, Command, ConfigArgs, ConfigCmd};
use config::{Config, Loaded, Overrides};
use std::sync::Arc;
use std::time::Duration;

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
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let loaded = load(&ConfigArgs {
                config,
                listen,
                data_dir,
            })?;
            init_tracing(&loaded.config);
            warn_unknown_env(&loaded);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(loaded.config))
        }
        Command::Healthcheck { args, url } => {
            let Ok(loaded) = load(&args) else {
                std::process::exit(1);
            };
            if !online::healthcheck(&loaded.config, url) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Fsck { args } => {
            let Ok(loaded) = load(&args) else {
                std::process::exit(1);
            };
            if !offline::fsck(&loaded.config)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Migrate { from, to, args } => {
            let Ok(loaded) = load(&args) else {
                std::process::exit(1);
            };
            offline::migrate(&loaded.config, from, to)
        }
        Command::Config { cmd } => match cmd {
            ConfigCmd::Check { args } => {
                let Ok(loaded) = load(&args) else {
                    std::process::exit(1);
                };
                for v in &loaded.unknown_env {
                    eprintln!("warning: {v} names no setting (ignored)");
                }
                match &args.config {
                    Some(f) => println!("ok: {} and the environment", f.display()),
                    None => println!("ok: the environment (no file)"),
                }
                Ok(())
            }
            ConfigCmd::Show { args } => {
                let Ok(loaded) = load(&args) else {
                    std::process::exit(1);
                };
                print!("{}", loaded.show());
                Ok(())
            }
        },
        Command::Registry { data, cmd } if data.offline() => offline::registry(data, cmd),
        Command::User { data, cmd } if data.offline() => offline::user(data, cmd),
        Command::Token { data, cmd } if data.offline() => offline::token(data, cmd),
        Command::Repo { data, cmd } if data.offline() => offline::repo(data, cmd),
        Command::Registry { data, cmd } => online::registry(&data, cmd),
        Command::User { data, cmd } => online::user(&data, cmd),
        Command::Token { data, cmd } => online::token(&data, cmd),
        Command::Repo { data, cmd } => online::repo(&data, cmd),
        Command::Gc { data, .. }
        | Command::TagRule { data, .. }
        | Command::Bin { data, .. }
        | Command::Cleanup { data, .. }
            if data.offline() =>
        {
            anyhow::bail!("gc, tag-rule, bin and cleanup work through a running server only (no --offline, --data-dir or --config)")
        }
        Command::Gc {
            data,
            registry,
            delete_untagged,
            dry_run,
            grace_seconds,
        } => online::gc(&data, registry, delete_untagged, dry_run, grace_seconds),
        Command::TagRule { data, cmd } => online::tag_rule(&data, cmd),
        Command::Bin { data, cmd } => online::bin(&data, cmd),
        Command::Cleanup { data, cmd } => online::cleanup(&data, cmd),
    }
}

/// Load the configuration; on failure print every problem.
fn load(a: &ConfigArgs) -> anyhow::Result<Loaded> {
    let o = Overrides {
        listen: a.listen,
        data_dir: a.data_dir.clone(),
    };
    Config::load(a.config.as_deref(), &o).map_err(|e| {
        eprintln!("configuration refused:");
        for p in &e.0 {
            eprintln!("  {p}");
        }
        anyhow::anyhow!("configuration refused ({} problem(s))", e.0.len())
    })
}

fn warn_unknown_env(loaded: &Loaded) {
    for v in &loaded.unknown_env {
        tracing::warn!(variable = %v, "environment variable names no setting; ignored (see docs/configuration.md)");
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // a certificate that does not load stops the start before anything opens
    let tls = tls::listener(&cfg.tls)?;
    let app = wiring::build(&cfg)?;
    let open = app.dist.count_uploads().await?;
    tracing::info!(data_dir = %app.data_dir.display(), open_upload_sessions = open, "data directory");
    jobs::spawn_upload_reaper(
        app.dist.clone(),
        Duration::from_secs(cfg.uploads.reap_interval_secs.max(1)),
    );
    jobs::spawn_pull_flusher(app.dist.clone(), Duration::from_secs(1));
    jobs::spawn_cleanup_schedule(app.management.clone(), Duration::from_secs(60));
    if cfg.stats.usage_interval_secs > 0 {
        jobs::spawn_usage_sampler(
            app.dist.clone(),
            Duration::from_secs(cfg.stats.usage_interval_secs),
            Duration::from_secs(cfg.stats.usage_retention_days.saturating_mul(86_400)),
        );
    }
    if cfg.gc.interval_secs > 0 {
        jobs::spawn_gc_schedule(
            app.management.clone(),
            Duration::from_secs(cfg.gc.interval_secs),
            berth_gc::Options {
                registry: None,
                delete_untagged: cfg.gc.delete_untagged,
                dry_run: false,
                grace_ms: cfg.gc.grace_secs.saturating_mul(1000),
            },
        );
    }
    let router = Arc::new(http::Router {
        body_idle: Duration::from_secs(cfg.http.body_idle_timeout_secs),
        ops: ops::Ops {
            dist: app.dist.clone(),
            auth: app.auth.clone(),
            metrics: app.metrics.clone(),
        },
        dist: app.dist,
        token: app.token,
        management: app.management,
        console: berth_console::Console::new(),
        metrics: app.metrics,
    });
    listener::run(cfg.listen, &cfg.http, tls, router).await
}
