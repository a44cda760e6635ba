//! `berth-bench`: load benchmarks against any OCI registry URL.
//!
//! Every workload checks what it gets (statuses, digests) and counts errors;
//! results are printed as a table and written as JSON lines. The same client
//! code drives Berth, the reference registry and nginx (pull ceiling), so
//! their figures compare.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Clone)]
#[command(about = "Load benchmarks for an OCI registry")]
struct Args {
    /// Registry base URL, e.g. http://127.0.0.1:5000
    #[arg(long)]
    url: String,
    /// Label for the results (berth, reference, nginx).
    #[arg(long, default_value = "target")]
    label: String,
    /// Comma-separated suites: push, pull, manifest, list, catalog, mixed, sha256.
    #[arg(long, default_value = "sha256,push,pull,manifest,list,catalog,mixed")]
    suites: String,
    /// Smaller sizes and counts (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Basic credentials user:password.
    #[arg(long)]
    creds: Option<String>,
    /// JSON-lines output file (appended).
    #[arg(long)]
    out: Option<String>,
    /// PID of the server, to note its peak RSS (VmHWM) during each workload.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the blobs pushed (repo, digest, size) to this JSON file.
    #[arg(long)]
    blob_list_out: Option<String>,
    /// Pull these blobs (from --blob-list-out of an earlier run) instead of pushing first.
    #[arg(long)]
    blob_list_in: Option<String>,
    /// Entries for the large tags/list (default 100000; quick 1000).
    #[arg(long)]
    tags: Option<usize>,
    /// Repositories for the catalog (default 10000; quick 200).
    #[arg(long)]
    repos: Option<usize>,
    /// Also push (and pull back) one 4 GiB blob, for the memory ceiling.
    #[arg(long)]
    huge: bool,
    /// Run only the push workloads whose name contains this (profiling).
    #[arg(long)]
    only: Option<String>,
    /// How many 1 MiB blobs the small-push workloads push (default 200).
    #[arg(long, default_value_t = 200)]
    small_count: usize,
    /// Mixed into the push workloads' content, so that repeated runs
    /// against one server push new blobs (benches/gc_compare.sh).
    #[arg(long, default_value_t = 0)]
    salt: u64,
    /// Seconds of the mixed workload.
    #[arg(long, default_value_t = 10)]
    mixed_secs: u64,
    /// Which repeat of the workloads this run is (recorded with each
    /// result; benches/compare.sh --repeat).
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// The tags/list and catalog suites find their entries already pushed
    /// (by an earlier round against the same server): measure only.
    #[arg(long)]
    listings_filled: bool,
    /// Before each "first" pull, drop the blobs it pulls from the page
    /// cache, naming them under this directory as Berth's filesystem store
    /// does (`blobs/sha256/ab/abcd…`): a cold first pull, for a server (nginx)
    /// that did not take the push itself.
    #[arg(long)]
    evict_under: Option<String>,
}

#[derive(Serialize, Debug)]
struct Record {
    label: String,
    round: u32,
    workload: String,
    clients: usize,
    ops: u64,
    bytes: u64,
    secs: f64,
    mb_per_s: f64,
    req_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct BlobRef {
    repo: String,
    digest: String,
    size: u64,
    /// The push workload that pushed it (its index in the plan).
    set: usize,
}

struct Ctx {
    c: reqwest::Client,
    url: String,
    creds: Option<(String, String)>,
    label: String,
    round: u32,
    out: Option<String>,
    /// The server's process, whose peak RSS each result notes.
    server_pid: Option<u32>,
}

impl Ctx {
    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.url, path)
        };
        let r = self.c.request(m, url);
        match &self.creds {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// Record a result. With a server pid, its note gains the server's peak
    /// RSS since the previous result (the peak is reset after reading).
    fn emit(&self, workload: &str, clients: usize, m: &Measure, note: Option<String>) -> Record {
        let peak = self.server_pid.and_then(take_peak_rss_kib);
        let note = match (note, peak) {
            (Some(n), Some(k)) => Some(format!("{n}; server VmHWM {} MiB", k / 1024)),
            (None, Some(k)) => Some(format!("server VmHWM {} MiB", k / 1024)),
            (n, None) => n,
        };
        let secs = m.secs.max(1e-9);
        let mut lat = m.lat.clone();
        lat.sort_unstable();
        let pct = |p: f64| {
            if lat.is_empty() {
                0.0
            } else {
                lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
            }
        };
        let r = Record {
            label: self.label.clone(),
            round: self.round,
            workload: workload.to_string(),
            clients,
            ops: m.ops,
            bytes: m.bytes,
            secs,
            mb_per_s: m.bytes as f64 / secs / 1e6,
            req_per_s: m.ops as f64 / secs,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            errors: m.errors,
            note,
        };
        println!(
            "{:<10} {:<34} {:>3} {:>8} ops {:>10.1} MB/s {:>10.1} req/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}{}",
            r.label,
            r.workload,
            r.clients,
            r.ops,
            r.mb_per_s,
            r.req_per_s,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default()
        );
        if let Some(path) = &self.out {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("out file");
            writeln!(f, "{}", serde_json::to_string(&r).unwrap()).unwrap();
        }
        r
    }
}

#[derive(Default)]
struct Measure {
    ops: u64,
    bytes: u64,
    secs: f64,
    /// latencies in microseconds
    lat: Vec<u64>,
    errors: u64,
}

/// Run `jobs` jobs on `clients` concurrent workers. Each job returns the
/// bytes it moved, or an error (counted).
async fn run_jobs<F, Fut>(clients: usize, jobs: usize, f: F) -> Measure
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (f, next, bytes, errors) = (f.clone(), next.clone(), bytes.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                let t = Instant::now();
                match f(i).await {
                    Ok(b) => {
                        bytes.fetch_add(b, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error: {e:#}");
                        }
                    }
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("worker"));
    }
    Measure {
        ops: jobs as u64,
        bytes: bytes.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
        lat,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Run workers for `dur`; job `i` is the i-th started overall.
async fn run_for<F, Fut>(clients: usize, dur: Duration, f: F) -> Measure
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (f, next) = (f.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let (mut lat, mut bytes, mut errors) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match f(i).await {
                    Ok(b) => bytes += b,
                    Err(e) => {
                        if errors < 3 {
                            eprintln!("error: {e:#}");
                        }
                        errors += 1;
                    }
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            (lat, bytes, errors)
        }));
    }
    let mut m = Measure::default();
    for h in handles {
        let (lat, bytes, errors) = h.await.expect("worker");
        m.ops += lat.len() as u64;
        m.lat.extend(lat);
        m.bytes += bytes;
        m.errors += errors;
    }
    m.secs = start.elapsed().as_secs_f64();
    m
}

/// 1 MiB of pseudo-random bytes, made once and shared by every blob.
fn base() -> &'static Bytes {
    static BASE: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..1u64 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>()
            .into()
    })
}

/// Deterministic content of blob `seed`, `size` bytes: each 1 MiB starts
/// with a 16-byte tag (seed, index), which makes blobs distinct, followed by
/// the shared random bytes. Pieces are zero-copy slices, so generating a
/// body costs the client (which shares the machine with the server) almost
/// nothing.
fn blob_chunks(seed: u64, size: u64) -> impl Iterator<Item = Bytes> {
    const MIB: u64 = 1 << 20;
    let n = size.div_ceil(MIB);
    (0..n).flat_map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        let tag = [seed.to_le_bytes(), i.to_le_bytes()].concat();
        let k = tag.len().min(len);
        let head = Bytes::from(tag[..k].to_vec());
        let tail = base().slice(k..len);
        [head, tail].into_iter().filter(|b| !b.is_empty())
    })
}

fn digest_of(seed: u64, size: u64) -> String {
    let mut h = Sha256::new();
    for c in blob_chunks(seed, size) {
        h.update(&c);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn body_of(seed: u64, size: u64) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::iter(
        blob_chunks(seed, size).map(Ok::<_, std::io::Error>),
    ))
}

fn expect(r: &reqwest::Response, want: u16, what: &str) -> Result<()> {
    if r.status().as_u16() != want {
        bail!("{what}: status {} (want {want})", r.status());
    }
    Ok(())
}

fn location(base: &str, r: &reqwest::Response) -> Result<String> {
    let l = r
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?
        .to_string();
    Ok(if l.starts_with("http") {
        l
    } else {
        format!("{base}{l}")
    })
}

/// `POST` to open a session, then one `PUT ?digest=` carrying the whole
/// blob: the monolithic push every registry supports.
async fn post_put(
    ctx: &Ctx,
    repo: &str,
    digest: &str,
    body: reqwest::Body,
    size: u64,
) -> Result<u64> {
    let r = ctx
        .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    expect(&r, 202, "start upload")?;
    let loc = location(&ctx.url, &r)?;
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = ctx
        .req(reqwest::Method::PUT, &format!("{loc}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(body)
        .send()
        .await?;
    expect(&r, 201, "monolithic push")?;
    Ok(size)
}

async fn push_mono(ctx: &Ctx, repo: &str, seed: u64, size: u64, digest: &str) -> Result<u64> {
    post_put(ctx, repo, digest, body_of(seed, size), size).await
}

async fn push_chunked(
    ctx: &Ctx,
    repo: &str,
    seed: u64,
    size: u64,
    digest: &str,
    chunk: u64,
) -> Result<u64> {
    let r = ctx
        .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    expect(&r, 202, "start upload")?;
    let mut loc = location(&ctx.url, &r)?;
    let mut off = 0u64;
    let mut it = blob_chunks(seed, size).peekable();
    while off < size {
        let len = chunk.min(size - off);
        // gather `len` bytes from the generator without copying the whole blob
        let mut parts = Vec::new();
        let mut got = 0u64;
        while got < len {
            let c = it.next().context("generator ended")?;
            got += c.len() as u64;
            parts.push(c);
        }
        let body = reqwest::Body::wrap_stream(futures::stream::iter(
            parts.into_iter().map(Ok::<_, std::io::Error>),
        ));
        let r = ctx
            .req(reqwest::Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", off, off + len - 1))
            .header("content-length", len)
            .body(body)
            .send()
            .await?;
        expect(&r, 202, "patch")?;
        loc = location(&ctx.url, &r)?;
        off += len;
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = ctx
        .req(reqwest::Method::PUT, &format!("{loc}{sep}digest={digest}"))
        .send()
        .await?;
    expect(&r, 201, "close upload")?;
    Ok(size)
}

async fn pull_verify(ctx: &Ctx, b: &BlobRef) -> Result<u64> {
    let r = ctx
        .req(
            reqwest::Method::GET,
            &format!("/v2/{}/blobs/{}", b.repo, b.digest),
        )
        .send()
        .await?;
    expect(&r, 200, "pull")?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut s = r.bytes_stream();
    while let Some(c) = s.next().await {
        let c = c?;
        n += c.len() as u64;
        h.update(&c);
    }
    let d = format!("sha256:{}", hex::encode(h.finalize()));
    if d != b.digest || n != b.size {
        bail!(
            "pulled {n} bytes hashing to {d}, want {} bytes of {}",
            b.size,
            b.digest
        );
    }
    Ok(n)
}

/// A process's peak RSS (VmHWM) in KiB, reset to its current RSS after
/// reading (`clear_refs` 5), so that the next reading is the next
/// workload's peak.
fn take_peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let k = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    k
}

async fn suite_push(ctx: Arc<Ctx>, a: &Args, blobs: &mut Vec<BlobRef>) -> Result<()> {
    const MIB: u64 = 1 << 20;
    let plans: Vec<(&str, u64, usize, usize, bool)> = if a.quick {
        vec![
            ("push 1MiB x20 mono", MIB, 20, 1, false),
            ("push 1MiB x20 mono", MIB, 20, 8, false),
            ("push 8MiB x4 chunked", 8 * MIB, 4, 4, true),
            ("push 64MiB x1 mono", 64 * MIB, 1, 1, false),
        ]
    } else {
        vec![
            ("push 1MiB x200 mono", MIB, a.small_count, 1, false),
            ("push 1MiB x200 mono", MIB, a.small_count, 8, false),
            ("push 1MiB x200 chunked", MIB, a.small_count, 8, true),
            ("push 64MiB x8 mono", 64 * MIB, 8, 1, false),
            ("push 64MiB x8 mono", 64 * MIB, 8, 8, false),
            ("push 64MiB x8 chunked", 64 * MIB, 8, 8, true),
            ("push 1GiB x1 mono", 1024 * MIB, 1, 1, false),
            ("push 1GiB x1 chunked", 1024 * MIB, 1, 1, true),
        ]
    };
    let mut plans = plans;
    if a.huge {
        plans.push(("push 4GiB x1 mono", 4096 * MIB, 1, 1, false));
    }
    for (pi, (name, size, count, clients, chunked)) in plans.into_iter().enumerate() {
        if a.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let repo = format!("bench/push{pi}");
        let seeds: Vec<u64> = (0..count as u64)
            .map(|i| ((pi as u64) << 32 | i | 0x1000) ^ (a.salt << 40))
            .collect();
        let digests: Arc<Vec<String>> =
            Arc::new(seeds.iter().map(|&s| digest_of(s, size)).collect());
        let (c2, r2, d2, s2) = (ctx.clone(), repo.clone(), digests.clone(), seeds.clone());
        let m = run_jobs(clients, count, move |i| {
            let (c, r, d, s) = (c2.clone(), r2.clone(), d2.clone(), s2[i]);
            async move {
                if chunked {
                    push_chunked(&c, &r, s, size, &d[i], 16 * MIB).await
                } else {
                    push_mono(&c, &r, s, size, &d[i]).await
                }
            }
        })
        .await;
        ctx.emit(name, clients, &m, None);
        for (i, d) in digests.iter().enumerate() {
            if !(chunked && size >= 1024 * MIB) || i == 0 {
                blobs.push(BlobRef {
                    repo: repo.clone(),
                    digest: d.clone(),
                    size,
                    set: pi,
                });
            }
        }
    }
    Ok(())
}

/// Drop a blob's cached pages (clean pages go at once; the push flushed
/// them or the kernel has since).
fn evict(root: &str, digest: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = berth_core::Digest::parse(digest)?;
    let p = std::path::Path::new(root).join(berth_storage::blob_path(&d).as_ref());
    let f = std::fs::File::open(&p).with_context(|| format!("open {}", p.display()))?;
    // SAFETY: fadvise on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        bail!("posix_fadvise({}): error {rc}", p.display());
    }
    Ok(())
}

/// Pull workloads. A blob's *first* pull follows its push (whatever the
/// push left in the page cache, or nothing with `--evict-under`); *again*
/// pulls find it cached. First pulls at 1 client take the blobs of the
/// first push workload of that size, at 8 clients those of the others (8
/// clients on one 1 GiB blob pull it together).
async fn suite_pull(ctx: Arc<Ctx>, blobs: &[BlobRef], a: &Args) -> Result<()> {
    const MIB: u64 = 1 << 20;
    let of_size =
        |size: u64| -> Vec<BlobRef> { blobs.iter().filter(|b| b.size == size).cloned().collect() };
    let mut plans: Vec<(String, Vec<BlobRef>, usize, bool)> = Vec::new();
    let small = of_size(MIB);
    for clients in [1usize, 8] {
        // each 1 MiB blob twice: once cold from the client's view, once not
        let twice = small.iter().chain(small.iter()).cloned().collect();
        plans.push(("pull 1MiB".into(), twice, clients, false));
    }
    for (size, name, again_clients) in [
        (64 * MIB, "64MiB", &[1usize, 8][..]),
        (1024 * MIB, "1GiB", &[1, 8][..]),
        (4096 * MIB, "4GiB", &[1][..]),
    ] {
        let all = of_size(size);
        let Some(first_set) = all.first().map(|b| b.set) else {
            continue;
        };
        let (one, rest): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|b| b.set == first_set);
        plans.push((format!("pull {name} first"), one, 1, true));
        plans.push((format!("pull {name} first"), rest, 8, true));
        for &c in again_clients {
            plans.push((format!("pull {name} again"), all.clone(), c, false));
        }
    }
    for (name, set, clients, first) in plans {
        if set.is_empty() {
            continue;
        }
        if let (true, Some(root)) = (first, &a.evict_under) {
            for b in &set {
                evict(root, &b.digest)?;
            }
        }
        let set = Arc::new(set);
        let jobs = set.len().max(clients);
        let (c2, s2) = (ctx.clone(), set.clone());
        let m = run_jobs(clients, jobs, move |i| {
            let (c, b) = (c2.clone(), s2[i % s2.len()].clone());
            async move { pull_verify(&c, &b).await }
        })
        .await;
        ctx.emit(&name, clients, &m, None);
    }
    Ok(())
}

/// Push a tiny image (config + layer) and return its manifest bytes.
struct Base {
    manifest: Vec<u8>,
    cfg: String,
    cfg_len: usize,
    layer: String,
    layer_len: usize,
}

async fn base_image(ctx: &Ctx, repo: &str, note: &str) -> Result<Base> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","note":"{note}"}}"#).into_bytes();
    let layer = format!("layer {note}").repeat(100).into_bytes();
    let mut ds = Vec::new();
    for b in [&config, &layer] {
        let d = format!("sha256:{}", hex::encode(Sha256::digest(b)));
        post_put(ctx, repo, &d, b.clone().into(), b.len() as u64).await?;
        ds.push(d);
    }
    Ok(Base {
        manifest: manifest(&ds[0], config.len(), &ds[1], layer.len(), note),
        cfg: ds[0].clone(),
        cfg_len: config.len(),
        layer: ds[1].clone(),
        layer_len: layer.len(),
    })
}

fn manifest(cfg: &str, cfg_len: usize, layer: &str, layer_len: usize, note: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_len}],
        "annotations": {"note": note},
    }))
    .unwrap()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn put_manifest(ctx: &Ctx, repo: &str, reference: &str, body: Vec<u8>) -> Result<u64> {
    let n = body.len() as u64;
    let r = ctx
        .req(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(body)
        .send()
        .await?;
    expect(&r, 201, "manifest put")?;
    Ok(n)
}

async fn suite_manifest(ctx: Arc<Ctx>, a: &Args) -> Result<()> {
    let repo = "bench/manifests".to_string();
    let base = Arc::new(base_image(&ctx, &repo, "m").await?);
    let count = if a.quick { 200 } else { 2000 };
    let mk = move |b: &Base, i: usize| {
        manifest(&b.cfg, b.cfg_len, &b.layer, b.layer_len, &format!("m{i}"))
    };
    let (c2, r2, b2) = (ctx.clone(), repo.clone(), base.clone());
    let m = run_jobs(8, count, move |i| {
        let (c, r) = (c2.clone(), r2.clone());
        let body = mk(&b2, i);
        async move { put_manifest(&c, &r, &format!("t{i}"), body).await }
    })
    .await;
    ctx.emit("manifest PUT by tag", 8, &m, None);

    // digests of what was pushed, to GET by digest
    let digests: Arc<Vec<String>> = Arc::new(
        (0..count)
            .map(|i| format!("sha256:{}", hex::encode(Sha256::digest(mk(&base, i)))))
            .collect(),
    );
    let requests = if a.quick { 2000 } else { 20000 };
    for clients in [8usize, 32] {
        for (what, by_digest, head) in [
            ("manifest GET by tag", false, false),
            ("manifest GET by digest", true, false),
            ("manifest HEAD by tag", false, true),
        ] {
            let (c2, r2, d2) = (ctx.clone(), repo.clone(), digests.clone());
            let m = run_jobs(clients, requests, move |i| {
                let (c, r, d) = (c2.clone(), r2.clone(), d2.clone());
                async move {
                    let k = i % d.len();
                    let reference = if by_digest {
                        d[k].clone()
                    } else {
                        format!("t{k}")
                    };
                    let method = if head {
                        reqwest::Method::HEAD
                    } else {
                        reqwest::Method::GET
                    };
                    let resp = c
                        .req(method, &format!("/v2/{r}/manifests/{reference}"))
                        .header("accept", OCI_MANIFEST)
                        .send()
                        .await?;
                    expect(&resp, 200, "manifest get")?;
                    let got = resp
                        .headers()
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = resp.bytes().await?;
                    if got != d[k] {
                        bail!("digest header {got}, want {}", d[k]);
                    }
                    Ok(body.len() as u64)
                }
            })
            .await;
            ctx.emit(what, clients, &m, None);
        }
    }
    Ok(())
}

/// Walk a paginated listing; returns (entries, pages).
async fn walk(ctx: &Ctx, first: &str, key: &str) -> Result<(usize, usize)> {
    let mut next = Some(first.to_string());
    let (mut entries, mut pages) = (0, 0);
    while let Some(p) = next.take() {
        let r = ctx.req(reqwest::Method::GET, &p).send().await?;
        expect(&r, 200, "listing page")?;
        next = r
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| {
                let a = l.find('<')? + 1;
                let b = l.find('>')?;
                Some(l[a..b].to_string())
            });
        let v: serde_json::Value = r.json().await?;
        entries += v[key].as_array().map(|a| a.len()).unwrap_or(0);
        pages += 1;
    }
    Ok((entries, pages))
}

/// Time one page of `path` `times` times; also how many `key` entries
/// the page held (a server that ignores `n` returns them all).
async fn page_latency(
    ctx: Arc<Ctx>,
    path: String,
    key: &'static str,
    times: usize,
) -> (Measure, usize) {
    let r = ctx.req(reqwest::Method::GET, &path).send().await;
    let entries = match r {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v[key].as_array().map(|a| a.len()))
            .unwrap_or(0),
        _ => 0,
    };
    let m = run_jobs(1, times, move |_| {
        let (c, p) = (ctx.clone(), path.clone());
        async move {
            let r = c.req(reqwest::Method::GET, &p).send().await?;
            expect(&r, 200, "page")?;
            Ok(r.bytes().await?.len() as u64)
        }
    })
    .await;
    (m, entries)
}

async fn suite_list(ctx: Arc<Ctx>, a: &Args) -> Result<()> {
    let big = a.tags.unwrap_or(if a.quick { 1000 } else { 100_000 });
    for (repo, n) in [("bench/tags-small", 100usize), ("bench/tags-big", big)] {
        if !a.listings_filled {
            let m = base_image(&ctx, repo, repo).await?.manifest;
            let (c2, r2) = (ctx.clone(), repo.to_string());
            let setup = run_jobs(32, n, move |i| {
                let (c, r, body) = (c2.clone(), r2.clone(), m.clone());
                async move { put_manifest(&c, &r, &format!("tag{i:07}"), body).await }
            })
            .await;
            if setup.errors > 0 {
                bail!("{} tag pushes failed", setup.errors);
            }
        }
        let start = Instant::now();
        let (entries, pages) = walk(&ctx, &format!("/v2/{repo}/tags/list?n=1000"), "tags").await?;
        let full = Measure {
            ops: pages as u64,
            secs: start.elapsed().as_secs_f64(),
            errors: (entries != n) as u64,
            ..Default::default()
        };
        ctx.emit(
            &format!("tags/list full walk {n}"),
            1,
            &full,
            Some(format!("{entries} tags in {pages} pages")),
        );
        let mid = format!("tag{:07}", n / 2);
        let (m, got) = page_latency(
            ctx.clone(),
            format!("/v2/{repo}/tags/list?n=100&last={mid}"),
            "tags",
            200,
        )
        .await;
        let note = format!("{got} entries per page");
        ctx.emit(&format!("tags/list page n=100 of {n}"), 1, &m, Some(note));
    }
    Ok(())
}

async fn suite_catalog(ctx: Arc<Ctx>, a: &Args) -> Result<()> {
    let n = a.repos.unwrap_or(if a.quick { 200 } else { 10_000 });
    if !a.listings_filled {
        let base = base_image(&ctx, "bench/catalog-base", "catalog").await?;
        let m = base.manifest.clone();
        let (c2, cf, ly) = (ctx.clone(), base.cfg.clone(), base.layer.clone());
        let setup = run_jobs(32, n, move |i| {
            let (c, cf, ly, body) = (c2.clone(), cf.clone(), ly.clone(), m.clone());
            async move {
                let repo = format!("cat/r{i:06}");
                for d in [&cf, &ly] {
                    let r = c
                        .req(
                            reqwest::Method::POST,
                            &format!("/v2/{repo}/blobs/uploads/?mount={d}&from=bench/catalog-base"),
                        )
                        .send()
                        .await?;
                    expect(&r, 201, "mount")?;
                }
                put_manifest(&c, &repo, "v1", body).await
            }
        })
        .await;
        if setup.errors > 0 {
            bail!("{} repository creations failed", setup.errors);
        }
    }
    let start = Instant::now();
    let (entries, pages) = walk(&ctx, "/v2/_catalog?n=1000", "repositories").await?;
    let full = Measure {
        ops: pages as u64,
        secs: start.elapsed().as_secs_f64(),
        errors: (entries < n) as u64,
        ..Default::default()
    };
    ctx.emit(
        &format!("_catalog full walk {n}+"),
        1,
        &full,
        Some(format!("{entries} repositories in {pages} pages")),
    );
    let (m, got) = page_latency(
        ctx.clone(),
        format!("/v2/_catalog?n=100&last=cat/r{:06}", n / 2),
        "repositories",
        200,
    )
    .await;
    let note = format!("{got} entries per page");
    ctx.emit(&format!("_catalog page n=100 of {n}+"), 1, &m, Some(note));
    Ok(())
}

async fn suite_mixed(ctx: Arc<Ctx>, a: &Args) -> Result<()> {
    let repo = "bench/mixed".to_string();
    let base = base_image(&ctx, &repo, "mixed").await?;
    let layer = base.layer.clone();
    put_manifest(&ctx, &repo, "latest", base.manifest.clone()).await?;
    let clients = 8usize;
    let salt = a.salt << 40;
    let (c2, r2, l2) = (ctx.clone(), repo.clone(), layer.clone());
    let done = run_for(clients, Duration::from_secs(a.mixed_secs), move |k| {
        let (c, r, l) = (c2.clone(), r2.clone(), l2.clone());
        async move {
            if k % 10 == 9 {
                let seed = (0xabc0_0000_0000 + k as u64) ^ salt;
                let size = 256 * 1024;
                let d = digest_of(seed, size);
                push_mono(&c, &r, seed, size, &d).await
            } else if k % 2 == 0 {
                let resp = c
                    .req(reqwest::Method::GET, &format!("/v2/{r}/manifests/latest"))
                    .header("accept", OCI_MANIFEST)
                    .send()
                    .await?;
                expect(&resp, 200, "mixed manifest")?;
                Ok(resp.bytes().await?.len() as u64)
            } else {
                let resp = c
                    .req(reqwest::Method::GET, &format!("/v2/{r}/blobs/{l}"))
                    .send()
                    .await?;
                expect(&resp, 200, "mixed blob")?;
                Ok(resp.bytes().await?.len() as u64)
            }
        }
    })
    .await;
    ctx.emit("mixed 90% read / 10% push", clients, &done, None);
    Ok(())
}

fn suite_sha256(ctx: &Ctx) {
    let data = vec![0x5au8; 1 << 30];
    let start = Instant::now();
    let d = Sha256::digest(&data);
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(d);
    let m = Measure {
        ops: 1,
        bytes: data.len() as u64,
        secs,
        ..Default::default()
    };
    ctx.emit("sha256 ceiling (1 core)", 1, &m, None);
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let creds = a
        .creds
        .as_deref()
        .map(|c| {
            let (u, p) = c.split_once(':').context("--creds user:password")?;
            Ok::<_, anyhow::Error>((u.to_string(), p.to_string()))
        })
        .transpose()?;
    let ctx = Arc::new(Ctx {
        c: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?,
        url: a.url.trim_end_matches('/').to_string(),
        creds,
        label: a.label.clone(),
        round: a.round,
        out: a.out.clone(),
        server_pid: a.server_pid,
    });
    if let Some(pid) = a.server_pid {
        // what the server peaked at before this run is not this run's
        take_peak_rss_kib(pid);
    }
    let suites: Vec<&str> = a.suites.split(',').map(str::trim).collect();
    let mut blobs: Vec<BlobRef> = match &a.blob_list_in {
        Some(p) => serde_json::from_slice(&std::fs::read(p)?)?,
        None => Vec::new(),
    };
    let mut errors = false;
    for s in &suites {
        let res = match *s {
            "sha256" => {
                suite_sha256(&ctx);
                Ok(())
            }
            "push" => suite_push(ctx.clone(), &a, &mut blobs).await,
            "pull" => suite_pull(ctx.clone(), &blobs, &a).await,
            "manifest" => suite_manifest(ctx.clone(), &a).await,
            "list" => suite_list(ctx.clone(), &a).await,
            "catalog" => suite_catalog(ctx.clone(), &a).await,
            "mixed" => suite_mixed(ctx.clone(), &a).await,
            other => bail!("unknown suite {other}"),
        };
        if let Err(e) = res {
            eprintln!("suite {s} failed: {e:#}");
            errors = true;
        }
    }
    if let Some(p) = &a.blob_list_out {
        std::fs::write(p, serde_json::to_vec_pretty(&blobs)?)?;
    }
    if errors {
        bail!("some suites failed");
    }
    Ok(())
}
