//! The offline administration commands (`berth registry|user|token …`):
//! they open a stopped server's data directory and call the same
//! [`Admin`] the management API uses.

use crate::cli::{DataArgs, Engine, RegistryCmd, RepoCmd, TokenCmd, UserCmd};
use crate::config::{Config, Overrides};
use berth_management::Admin;
use berth_meta::{KvStore, Meta, Visibility};

fn days_from_now(days: u64) -> u64 {
    berth_meta::now_millis() + days * 86_400_000
}

/// Open the metadata store of a stopped server (RocksDB allows one
/// process; PostgreSQL is shared, the server may run).
fn open_meta(cfg: &Config) -> anyhow::Result<Meta> {
    crate::wiring::open_meta(
        cfg,
        &cfg.data_dir,
        "If berth is running on this data directory, stop it first: these commands work offline.",
    )
}

/// `berth fsck`: recount and cross-check the metadata store; whether all
/// agreed.
pub fn fsck(cfg: &Config) -> anyhow::Result<bool> {
    if cfg.metadata.backend == crate::config::MetadataBackend::Rocksdb
        && !cfg.data_dir.join("meta").exists()
    {
        anyhow::bail!("no metadata store in {}", cfg.data_dir.display());
    }
    let report = open_meta(cfg)?.check()?;
    let rows: Vec<String> = report
        .rows
        .iter()
        .map(|(cf, n)| format!("{cf} {n}"))
        .collect();
    println!("checked: {}", rows.join(", "));
    for p in &report.problems {
        println!("problem: {p}");
    }
    if report.ok() {
        println!("ok: every figure recounts and every index agrees");
    } else {
        println!("{} problem(s)", report.problems.len());
    }
    Ok(report.ok())
}

/// `berth migrate`: copy the metadata between the data directory's
/// RocksDB and `[metadata.postgres]`; the source's server must be stopped.
pub fn migrate(cfg: &Config, from: Engine, to: Engine) -> anyhow::Result<()> {
    use crate::wiring::{open_postgres, open_rocks};
    if from == to {
        anyhow::bail!("--from and --to name the same engine");
    }
    let hint = "If berth is running on this data directory, stop it first.";
    let rocks = open_rocks(cfg, &cfg.data_dir, hint)?;
    let pg = open_postgres(cfg)?;
    let (src, dst): (&dyn KvStore, &dyn KvStore) = match from {
        Engine::Rocksdb => (&rocks, &pg),
        Engine::Postgres => (&pg, &rocks),
    };
    let copied = berth_meta::copy_store(src, dst, |cf, n| {
        if n > 0 {
            println!("copied {cf}: {n}");
        }
    })?;
    println!(
        "ok: {} rows copied and compared; start berth with metadata.backend = \"{}\"",
        copied.total(),
        match to {
            Engine::Rocksdb => "rocksdb",
            Engine::Postgres => "postgres",
        }
    );
    Ok(())
}

/// Open the data directory (the server must be stopped: RocksDB allows one
/// process) and run `f` on it.
fn with_admin(data: DataArgs, f: impl FnOnce(&Admin) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let cfg = Config::load(
        data.config.as_deref(),
        &Overrides {
            listen: None,
            data_dir: data.data_dir,
        },
    )
    .map_err(|e| anyhow::anyhow!("configuration refused:\n  {}", e.0.join("\n  ")))?
    .config;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let meta = open_meta(&cfg)?;
    let (_, shown) = crate::wiring::open_auth(&cfg, meta.clone())?;
    if let Some(t) = shown {
        println!("admin token (created now, shown only once): {t}");
    }
    f(&Admin::new(meta))
}

fn visibility(public: bool) -> Visibility {
    if public {
        Visibility::Public
    } else {
        Visibility::Private
    }
}

fn print_secret(username: &str, what: &str, secret: &str) {
    println!("username: {username}\n{what}: {secret}\n(the {what} is shown only now)");
}

pub fn registry(data: DataArgs, cmd: RegistryCmd) -> anyhow::Result<()> {
    with_admin(data, |admin| {
        match cmd {
            RegistryCmd::Create {
                name,
                public,
                allow_sparse,
                storage_limit,
            } => {
                let r = admin.create_registry_with(&name, |r| {
                    r.visibility = visibility(public);
                    r.allow_sparse = allow_sparse;
                    r.storage_limit = storage_limit;
                })?;
                println!("created registry {name} ({})", r.id);
            }
            RegistryCmd::Update {
                name,
                public,
                allow_sparse,
            } => {
                let r = admin.update_registry(&name, public.map(visibility), allow_sparse)?;
                println!(
                    "registry {name}: {:?}, sparse manifests {}",
                    r.visibility,
                    if r.allow_sparse { "allowed" } else { "refused" }
                );
            }
            RegistryCmd::List => {
                for (name, r) in admin.list_registries()? {
                    let sparse = if r.allow_sparse { "\tallow-sparse" } else { "" };
                    println!("{name}\t{:?}\t{}{sparse}", r.visibility, r.id);
                }
            }
            RegistryCmd::Show { name } => {
                let r = admin
                    .meta()
                    .registry(&name)?
                    .ok_or_else(|| anyhow::anyhow!("no registry {name}"))?;
                println!("{name}\t{:?}\t{}", r.visibility, r.id);
            }
            RegistryCmd::Delete { name } => {
                admin.delete_registry(&name, berth_meta::ADMIN_SUBJECT)?;
                println!("deleted registry {name}");
            }
        }
        Ok(())
    })
}

pub fn user(data: DataArgs, cmd: UserCmd) -> anyhow::Result<()> {
    with_admin(data, |admin| {
        match cmd {
            UserCmd::Create {
                registry,
                name,
                push,
                expires_days,
            } => {
                let c =
                    admin.create_user(&registry, &name, push, expires_days.map(days_from_now))?;
                print_secret(&c.username, "password", &c.secret);
            }
            UserCmd::List { registry } => {
                for (name, u) in admin.list_users(&registry)? {
                    let perm = if u.can_push { "pull,push" } else { "pull" };
                    println!("{registry}+{name}\t{perm}\texpires={:?}", u.expires_ms);
                }
            }
            UserCmd::Delete { registry, name } => {
                admin.delete_user(&registry, &name)?;
                println!("deleted user {registry}+{name}");
            }
            UserCmd::ResetPassword { registry, name } => {
                let c = admin.reset_password(&registry, &name)?;
                print_secret(&c.username, "password", &c.secret);
            }
        }
        Ok(())
    })
}

pub fn token(data: DataArgs, cmd: TokenCmd) -> anyhow::Result<()> {
    with_admin(data, |admin| {
        match cmd {
            TokenCmd::Create {
                name,
                registries,
                read_only,
                expires_days,
            } => {
                let regs = (!registries.is_empty()).then_some(registries);
                let (id, c) =
                    admin.create_token(&name, regs, !read_only, expires_days.map(days_from_now))?;
                println!(
                    "id: {id}\ntoken: {}\n(the token is shown only now)",
                    c.secret
                );
            }
            TokenCmd::List => {
                for (id, t) in admin.list_tokens()? {
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
            }
            TokenCmd::Revoke { id } => {
                admin.revoke_token(&id)?;
                println!("revoked token {id}");
            }
            TokenCmd::Refresh { id, expires_days } => {
                admin.refresh_token_expiry(&id, expires_days.map(days_from_now))?;
                println!(
                    "token {id} now expires: {}",
                    expires_days
                        .map(|d| format!("in {d} days"))
                        .unwrap_or("never".into())
                );
            }
            TokenCmd::Regenerate { id } => {
                let c = admin.regenerate_token(&id)?;
                println!("token: {}\n(the token is shown only now)", c.secret);
            }
            TokenCmd::Delete { id } => {
                admin.delete_token(&id)?;
                println!("deleted token {id}");
            }
        }
        Ok(())
    })
}

pub fn repo(data: DataArgs, cmd: RepoCmd) -> anyhow::Result<()> {
    with_admin(data, |admin| {
        let meta = admin.meta();
        match cmd {
            RepoCmd::List { registry } => {
                let prefix = format!("{registry}/");
                let mut after: Option<String> = None;
                loop {
                    let page = meta.list_repos_with_prefix(&prefix, after.as_deref(), 1000)?;
                    let Some((last, _)) = page.last() else { break };
                    after = Some(last.clone());
                    for (name, _) in &page {
                        println!("{}", &name[prefix.len()..]);
                    }
                }
            }
            RepoCmd::Show { registry, name } => {
                let full = format!("{registry}/{name}");
                meta.repo(&full)?
                    .ok_or_else(|| anyhow::anyhow!("no repository {full}"))?;
                let st = meta.repo_stats(&full)?;
                println!(
                    "{full}\t{}\tsize={}\tartifacts={}\ttags={}\tpulls={}",
                    st.kind().as_str(),
                    st.size(),
                    st.artifacts,
                    st.tags,
                    st.pulls
                );
            }
            RepoCmd::Delete { registry, name } => {
                let full = format!("{registry}/{name}");
                if !meta.delete_repository(&full, berth_meta::ADMIN_SUBJECT)? {
                    anyhow::bail!("no repository {full}");
                }
                println!("deleted repository {full}");
            }
        }
        Ok(())
    })
}
