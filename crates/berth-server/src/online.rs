//! The administration commands (`berth registry|user|token|repo …`)
//! through a running server's management API. The URL and token come from
//! flags, then `BERTH_URL` / `BERTH_TOKEN`, then the CLI file
//! (`BERTH_CLI_CONFIG`, default `~/.config/berth/cli.toml`: `url = "…"`,
//! `token = "…"`). Output is the offline commands' (`key: value` lines for
//! secrets, one tab-separated line per entry for lists); `--json` prints
//! the API's JSON instead.

use crate::cli::{
    BinCmd, CleanupCmd, DataArgs, RegistryCmd, RepoCmd, TagRuleCmd, TokenCmd, UserCmd,
};
use anyhow::{bail, Context};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

const DEFAULT_URL: &str = "http://127.0.0.1:5000";

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CliFile {
    url: Option<String>,
    token: Option<String>,
}

fn cli_file() -> anyhow::Result<CliFile> {
    let path = match std::env::var_os("BERTH_CLI_CONFIG") {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(h) => std::path::Path::new(&h).join(".config/berth/cli.toml"),
            None => return Ok(CliFile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => toml::from_str(&s).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliFile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

struct Api {
    base: String,
    token: Option<String>,
    json: bool,
    http: Client,
}

/// A path segment, URL-encoded (repository names hold `/`).
fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Api {
    fn new(a: &DataArgs) -> anyhow::Result<Api> {
        let file = cli_file()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let base = a
            .url
            .clone()
            .or_else(|| env("BERTH_URL"))
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.into());
        let token = a
            .token
            .clone()
            .or_else(|| env("BERTH_TOKEN"))
            .or(file.token);
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            json: a.json,
            http: Client::builder().build()?,
        })
    }

    /// Call the API; the JSON answer, or an error with the problem's detail.
    fn call(&self, m: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut rq = self.http.request(m.clone(), &url);
        if let Some(t) = &self.token {
            rq = rq.bearer_auth(t);
        }
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq
            .send()
            .with_context(|| format!("cannot reach {} (is berth running? --offline works on a stopped server's data directory)", self.base))?;
        let status = r.status();
        let text = r.text()?;
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{m} {url}: not JSON: {text}"))?
        };
        if !status.is_success() {
            let why = v["detail"].as_str().unwrap_or(text.as_str());
            let hint = if status == 401 {
                " (give a token: --token, BERTH_TOKEN or the CLI file)"
            } else {
                ""
            };
            bail!("{m} {path}: {status}: {why}{hint}");
        }
        Ok(v)
    }

    /// Every page of a list.
    fn all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{path}{sep}limit=1000"));
        while let Some(p) = next {
            let v = self.call(Method::GET, &p, None)?;
            items.extend(v["items"].as_array().cloned().unwrap_or_default());
            next = v["next"]
                .as_str()
                .map(|n| n.strip_prefix("/api/v1").unwrap_or(n).to_string());
        }
        Ok(items)
    }

    /// Print `v` as JSON with `--json`, else `human(v)`.
    fn show(&self, v: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).expect("json"));
        } else {
            human(v);
        }
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn expires_at(days: Option<u64>) -> Value {
    match days {
        Some(d) => json!(berth_core::time::rfc3339_ms(
            berth_meta::now_millis() + d * 86_400_000
        )),
        None => Value::Null,
    }
}

fn print_secret(username: &str, what: &str, secret: &str) {
    println!("username: {username}\n{what}: {secret}\n(the {what} is shown only now)");
}

pub fn registry(a: &DataArgs, cmd: RegistryCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let line = |r: &Value| {
        println!(
            "{}\t{}\t{}\tbytes={}\trepositories={}",
            s(r, "name"),
            s(r, "visibility"),
            s(r, "id"),
            s(r, "bytesUsed"),
            s(r, "repositoryCount")
        )
    };
    match cmd {
        RegistryCmd::Create {
            name,
            public,
            allow_sparse,
            storage_limit,
        } => {
            let v = api.call(
                Method::POST,
                "/registries",
                Some(json!({
                    "name": name,
                    "visibility": if public { "public" } else { "private" },
                    "allowSparse": allow_sparse,
                    "storageLimitBytes": storage_limit,
                })),
            )?;
            api.show(&v, |v| println!("created registry {name} ({})", s(v, "id")));
        }
        RegistryCmd::Update {
            name,
            public,
            allow_sparse,
        } => {
            let mut body = json!({});
            if let Some(p) = public {
                body["visibility"] = json!(if p { "public" } else { "private" });
            }
            if let Some(sp) = allow_sparse {
                body["allowSparse"] = json!(sp);
            }
            let v = api.call(
                Method::PATCH,
                &format!("/registries/{}", seg(&name)),
                Some(body),
            )?;
            api.show(&v, |v| {
                println!(
                    "registry {name}: {}, sparse manifests {}",
                    s(v, "visibility"),
                    if v["allowSparse"] == true {
                        "allowed"
                    } else {
                        "refused"
                    }
                )
            });
        }
        RegistryCmd::List => {
            let items = api.all("/registries")?;
            api.show(&json!(items), |_| items.iter().for_each(line));
        }
        RegistryCmd::Show { name } => {
            let v = api.call(Method::GET, &format!("/registries/{}", seg(&name)), None)?;
            api.show(&v, line);
        }
        RegistryCmd::Delete { name } => {
            api.call(Method::DELETE, &format!("/registries/{}", seg(&name)), None)?;
            api.show(&json!({"deleted": name}), |_| {
                println!("deleted registry {name}")
            });
        }
    }
    Ok(())
}

pub fn user(a: &DataArgs, cmd: UserCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let users = |r: &str| format!("/registries/{}/users", seg(r));
    match cmd {
        UserCmd::Create {
            registry,
            name,
            push,
            expires_days,
        } => {
            let v = api.call(
                Method::POST,
                &users(&registry),
                Some(json!({"name": name, "canPush": push, "expiresAt": expires_at(expires_days)})),
            )?;
            api.show(&v, |v| {
                print_secret(&s(v, "username"), "password", &s(v, "password"))
            });
        }
        UserCmd::List { registry } => {
            let items = api.all(&users(&registry))?;
            api.show(&json!(items), |_| {
                for u in &items {
                    let perm = if u["canPush"] == true {
                        "pull,push"
                    } else {
                        "pull"
                    };
                    println!(
                        "{}\t{perm}\texpires={}",
                        s(u, "username"),
                        s(u, "expiresAt")
                    );
                }
            });
        }
        UserCmd::Delete { registry, name } => {
            api.call(
                Method::DELETE,
                &format!("{}/{}", users(&registry), seg(&name)),
                None,
            )?;
            api.show(&json!({"deleted": name}), |_| {
                println!("deleted user {registry}+{name}")
            });
        }
        UserCmd::ResetPassword { registry, name } => {
            let v = api.call(
                Method::POST,
                &format!("{}/{}/reset-password", users(&registry), seg(&name)),
                None,
            )?;
            api.show(&v, |v| {
                print_secret(&s(v, "username"), "password", &s(v, "password"))
            });
        }
    }
    Ok(())
}

pub fn token(a: &DataArgs, cmd: TokenCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let secret = |v: &Value| {
        println!(
            "id: {}\ntoken: {}\n(the token is shown only now)",
            s(v, "id"),
            s(v, "secret")
        )
    };
    match cmd {
        TokenCmd::Create {
            name,
            registries,
            read_only,
            expires_days,
        } => {
            let regs = (!registries.is_empty()).then_some(registries);
            let v = api.call(
                Method::POST,
                "/tokens",
                Some(
                    json!({"name": name, "registries": regs, "readWrite": !read_only,
                            "expiresAt": expires_at(expires_days)}),
                ),
            )?;
            api.show(&v, secret);
        }
        TokenCmd::List => {
            let items = api.all("/tokens")?;
            api.show(&json!(items), |_| {
                for t in &items {
                    let scope = match t["registries"].as_array() {
                        Some(l) => l
                            .iter()
                            .map(|r| r.as_str().unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join(","),
                        None => "*".into(),
                    };
                    let mode = if t["readWrite"] == true {
                        "read-write"
                    } else {
                        "read-only"
                    };
                    println!(
                        "{}\t{}\t{scope}\t{mode}\t{}\tlastUsed={}",
                        s(t, "id"),
                        s(t, "name"),
                        s(t, "status"),
                        s(t, "lastUsedAt")
                    );
                }
            });
        }
        TokenCmd::Revoke { id } => {
            let v = api.call(Method::POST, &format!("/tokens/{}/revoke", seg(&id)), None)?;
            api.show(&v, |_| println!("revoked token {id}"));
        }
        TokenCmd::Refresh { id, expires_days } => {
            let v = api.call(
                Method::POST,
                &format!("/tokens/{}/refresh", seg(&id)),
                Some(json!({"expiresAt": expires_at(expires_days)})),
            )?;
            api.show(&v, |v| {
                let e = v["expiresAt"].as_str().unwrap_or("never");
                println!("token {id} now expires: {e}")
            });
        }
        TokenCmd::Regenerate { id } => {
            let v = api.call(
                Method::POST,
                &format!("/tokens/{}/regenerate", seg(&id)),
                None,
            )?;
            api.show(&v, |v| {
                println!("token: {}\n(the token is shown only now)", s(v, "secret"))
            });
        }
        TokenCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/tokens/{}", seg(&id)), None)?;
            api.show(&json!({"deleted": id}), |_| println!("deleted token {id}"));
        }
    }
    Ok(())
}

pub fn repo(a: &DataArgs, cmd: RepoCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let path = |r: &str, n: &str| format!("/registries/{}/repositories/{}", seg(r), seg(n));
    match cmd {
        RepoCmd::List { registry } => {
            let items = api.all(&format!("/registries/{}/repositories", seg(&registry)))?;
            api.show(&json!(items), |_| {
                for r in &items {
                    println!("{}", s(r, "name"));
                }
            });
        }
        RepoCmd::Show { registry, name } => {
            let v = api.call(Method::GET, &path(&registry, &name), None)?;
            api.show(&v, |r| {
                println!(
                    "{}\t{}\tsize={}\tartifacts={}\ttags={}\tpulls={}",
                    s(r, "fullName"),
                    s(r, "kind"),
                    s(r, "sizeBytes"),
                    s(r, "artifactCount"),
                    s(r, "tagCount"),
                    s(r, "pullCount")
                )
            });
        }
        RepoCmd::Delete { registry, name } => {
            api.call(Method::DELETE, &path(&registry, &name), None)?;
            api.show(&json!({"deleted": format!("{registry}/{name}")}), |_| {
                println!("deleted repository {registry}/{name}")
            });
        }
    }
    Ok(())
}

/// Start a collection and follow it: a progress line on a terminal, the
/// report at the end (`--json`: the run's record).
pub fn gc(
    a: &DataArgs,
    registry: Option<String>,
    delete_untagged: bool,
    dry_run: bool,
    grace_seconds: Option<u64>,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let api = Api::new(a)?;
    let run = api.call(
        Method::POST,
        "/gc",
        Some(
            json!({"registry": registry, "deleteUntagged": delete_untagged,
                    "dryRun": dry_run, "graceSeconds": grace_seconds}),
        ),
    )?;
    let id = s(&run, "id");
    let tty = std::io::stderr().is_terminal() && !api.json;
    let done = loop {
        let r = api.call(Method::GET, &format!("/gc/runs/{}", seg(&id)), None)?;
        if r["status"] != "running" {
            break r;
        }
        if tty {
            eprint!("\r{id}: {} — {} seen   ", s(&r, "phase"), s(&r, "seen"));
            let _ = std::io::stderr().flush();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    if tty {
        eprintln!();
    }
    api.show(&done, |v| {
        let r = &v["report"];
        println!(
            "{} {}{}: {} manifests ({} bytes), {} links, {} blobs ({} bytes freed)",
            s(v, "id"),
            s(v, "status"),
            if v["dryRun"] == true {
                " (dry run)"
            } else {
                ""
            },
            s(r, "manifestsDeleted"),
            s(r, "manifestBytes"),
            s(r, "linksRemoved"),
            s(r, "blobsDeleted"),
            s(r, "bytesFreed")
        );
        for e in r["errors"].as_array().into_iter().flatten() {
            println!("error: {}", e.as_str().unwrap_or(""));
        }
    });
    if done["status"] != "succeeded" {
        bail!("collection {id} {}", s(&done, "status"));
    }
    Ok(())
}

pub fn tag_rule(a: &DataArgs, cmd: TagRuleCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let rules = |r: &str| format!("/registries/{}/tag-rules", seg(r));
    let line = |r: &Value| {
        println!(
            "{}\t{}\ttag={}\trepository={}",
            s(r, "id"),
            s(r, "kind"),
            s(r, "tagPattern"),
            s(r, "repositoryPattern")
        )
    };
    match cmd {
        TagRuleCmd::List { registry } => {
            let v = api.call(Method::GET, &rules(&registry), None)?;
            api.show(&v, |v| {
                v["items"].as_array().into_iter().flatten().for_each(line)
            });
        }
        TagRuleCmd::Create {
            registry,
            kind,
            tag,
            repository,
        } => {
            let v = api.call(
                Method::POST,
                &rules(&registry),
                Some(json!({"kind": kind, "tagPattern": tag, "repositoryPattern": repository})),
            )?;
            api.show(&v, line);
        }
        TagRuleCmd::Delete { registry, id } => {
            api.call(
                Method::DELETE,
                &format!("{}/{}", rules(&registry), seg(&id)),
                None,
            )?;
            api.show(&json!({"deleted": id}), |_| {
                println!("deleted tag rule {id}")
            });
        }
    }
    Ok(())
}

pub fn bin(a: &DataArgs, cmd: BinCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let bin = |r: &str| format!("/registries/{}/recycle-bin", seg(r));
    match cmd {
        BinCmd::List {
            registry,
            repository,
        } => {
            let path = match &repository {
                Some(r) => format!("{}?repository={}", bin(&registry), seg(r)),
                None => bin(&registry),
            };
            let items = api.all(&path)?;
            api.show(&json!(items), |_| {
                for e in &items {
                    let what = match e["tag"].as_str() {
                        Some(t) => format!("{}:{t}", s(e, "repository")),
                        None => format!("{}@{}", s(e, "repository"), s(e, "digest")),
                    };
                    println!(
                        "{}\t{}\t{what}\tsize={}\tdeleted={}\texpires={}",
                        s(e, "id"),
                        s(e, "kind"),
                        s(e, "size"),
                        s(e, "deletedAt"),
                        s(e, "expiresAt")
                    );
                }
            });
        }
        BinCmd::Restore { registry, entry } => {
            let v = api.call(
                Method::POST,
                &format!("{}/{}/restore", bin(&registry), seg(&entry)),
                None,
            )?;
            api.show(&v, |v| {
                println!(
                    "restored {}@{} tags={}",
                    s(v, "repository"),
                    s(v, "digest"),
                    s(v, "restoredTags")
                )
            });
        }
        BinCmd::Purge { registry, entry } => {
            let v = api.call(
                Method::DELETE,
                &format!("{}/{}", bin(&registry), seg(&entry)),
                None,
            )?;
            api.show(&v, |_| println!("purged {entry}"));
        }
        BinCmd::Empty { registry } => {
            let v = api.call(Method::DELETE, &bin(&registry), None)?;
            api.show(&v, |v| {
                println!(
                    "purged {} entries ({} manifest bytes), {} links removed",
                    s(v, "purged"),
                    s(v, "manifestBytes"),
                    s(v, "linksRemoved")
                )
            });
        }
    }
    Ok(())
}

pub fn cleanup(a: &DataArgs, cmd: CleanupCmd) -> anyhow::Result<()> {
    let api = Api::new(a)?;
    let policies = |r: &str| format!("/registries/{}/cleanup-policies", seg(r));
    let line = |p: &Value| {
        println!(
            "{}\tdelete={}\tkeep={}\tkeepN={}\tolderThan={}\trepository={}\tevery={}",
            s(p, "id"),
            s(p, "nameRegexDelete"),
            s(p, "nameRegexKeep"),
            s(p, "keepN"),
            s(p, "olderThan"),
            s(p, "repositoryPattern"),
            s(p, "intervalSecs")
        )
    };
    match cmd {
        CleanupCmd::List { registry } => {
            let v = api.call(Method::GET, &policies(&registry), None)?;
            api.show(&v, |v| {
                v["items"].as_array().into_iter().flatten().for_each(line)
            });
        }
        CleanupCmd::Create {
            registry,
            delete,
            keep,
            keep_n,
            older_than,
            repository,
            interval_secs,
        } => {
            let v = api.call(
                Method::POST,
                &policies(&registry),
                Some(
                    json!({"nameRegexDelete": delete, "nameRegexKeep": keep, "keepN": keep_n,
                            "olderThan": older_than, "repositoryPattern": repository,
                            "intervalSecs": interval_secs}),
                ),
            )?;
            api.show(&v, line);
        }
        CleanupCmd::Update {
            registry,
            id,
            delete,
            keep,
            keep_n,
            older_than,
            repository,
            interval_secs,
            clear,
        } => {
            let set = [
                ("nameRegexDelete", delete.map(Value::from)),
                ("nameRegexKeep", keep.map(Value::from)),
                ("keepN", keep_n.map(Value::from)),
                ("olderThan", older_than.map(Value::from)),
                ("repositoryPattern", repository.map(Value::from)),
                ("intervalSecs", interval_secs.map(Value::from)),
            ];
            let mut body = serde_json::Map::new();
            for (k, v) in set {
                if let Some(v) = v {
                    body.insert(k.to_string(), v);
                }
            }
            for f in clear {
                if body.insert(f.api_name().to_string(), Value::Null).is_some() {
                    bail!("{} both set and cleared", f.api_name());
                }
            }
            if body.is_empty() {
                bail!("nothing to change: give an option or --clear FIELD");
            }
            let v = api.call(
                Method::PATCH,
                &format!("{}/{}", policies(&registry), seg(&id)),
                Some(Value::Object(body)),
            )?;
            api.show(&v, line);
        }
        CleanupCmd::Delete { registry, id } => {
            api.call(
                Method::DELETE,
                &format!("{}/{}", policies(&registry), seg(&id)),
                None,
            )?;
            api.show(&json!({"deleted": id}), |_| {
                println!("deleted cleanup policy {id}")
            });
        }
        CleanupCmd::Run {
            registry,
            id,
            dry_run,
        } => {
            let run = api.call(
                Method::POST,
                &format!("{}/{}/run", policies(&registry), seg(&id)),
                Some(json!({"dryRun": dry_run})),
            )?;
            let path = format!(
                "/registries/{}/cleanup-runs/{}",
                seg(&registry),
                seg(&s(&run, "id"))
            );
            let done = loop {
                let r = api.call(Method::GET, &path, None)?;
                if r["status"] != "running" {
                    break r;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            };
            api.show(&done, |v| {
                let r = &v["report"];
                for d in r["planned"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}:{}",
                        if dry_run { "would delete" } else { "deleted" },
                        s(d, "repository"),
                        s(d, "tag")
                    );
                }
                println!(
                    "{} {}: {} tags seen, {} planned, {} deleted, {} skipped",
                    s(v, "id"),
                    s(v, "status"),
                    s(r, "tagsSeen"),
                    r["planned"].as_array().map_or(0, Vec::len),
                    s(r, "deleted"),
                    s(r, "skipped")
                );
                for e in r["errors"].as_array().into_iter().flatten() {
                    println!("error: {}", e.as_str().unwrap_or(""));
                }
            });
            if done["status"] != "succeeded" {
                bail!("cleanup run {} {}", s(&done, "id"), s(&done, "status"));
            }
        }
    }
    Ok(())
}

/// `berth healthcheck`: whether the server `cfg` describes answers 200 on
/// `/healthz` (or `url`). A wildcard listen address is asked on loopback;
/// the certificate is not checked (the name it carries is the public one).
pub fn healthcheck(cfg: &berth_config::Config, url: Option<String>) -> bool {
    let url = url.unwrap_or_else(|| {
        let mut addr = cfg.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("{}://{addr}/healthz", cfg.scheme())
    });
    let client = Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(5))
        .build();
    match client.and_then(|c| c.get(&url).send()) {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            eprintln!("{url}: {}", r.status());
            false
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            false
        }
    }
}
