//! Crash cycles: concurrent writers against the real binary — monolithic
//! and chunked blob pushes into registries with storage limits (charged in
//! each push's transaction), images by tag and by digest, manifest deletes,
//! upload sessions left open, users created through the management API,
//! garbage collection runs — `SIGKILL` at a random moment, restart, and
//! check that everything acknowledged before the kill is there byte for
//! byte (content addressed: a blob or manifest that pulls under its digest
//! is those bytes), every acknowledged delete stayed deleted, sessions
//! opened before the kill resume or answer `BLOB_UPLOAD_UNKNOWN`, and in
//! the end that the metadata store recounts (`berth fsck`).
//!
//! `BERTH_CRASH_CYCLES` (default 4) sets the number of cycles; the long
//! run (`BERTH_CRASH_CYCLES=100`) is in docs/reliability.md.

use berth_conformance::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift), one per worker and cycle.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// 1 to `max` random bytes.
    fn sized(&mut self, max: u64) -> Vec<u8> {
        let n = 1 + self.below(max) as usize;
        self.bytes(n)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// An acknowledged image manifest.
struct Image {
    repo: String,
    /// Set when pushed by tag.
    tag: Option<String>,
    digest: String,
    body: Vec<u8>,
    /// The blobs it references.
    refs: Vec<String>,
}

#[derive(Default)]
struct Ledger {
    /// Standalone blobs (registry `keep`, never collected): repo, digest.
    blobs: Vec<(String, String)>,
    /// Live manifests (registry `crash`).
    manifests: Vec<Image>,
    /// Acknowledged manifest deletes: repo, digest.
    deleted: Vec<(String, String)>,
    /// Upload sessions left open: location, acknowledged offset, the whole
    /// blob they were to carry.
    sessions: Vec<(String, u64, Vec<u8>)>,
    /// Users created: registry, name.
    users: Vec<(String, String)>,
}

#[derive(Default)]
struct Tally {
    writes: AtomicU64,
    deletes: AtomicU64,
    refused_in_crash: AtomicU64,
}

fn client() -> Client {
    // a killed server refuses connections at once: no request hangs
    admin_client()
}

type Res<T> = Result<T, String>;

fn ok(
    r: reqwest::Result<reqwest::blocking::Response>,
    want: u16,
) -> Res<reqwest::blocking::Response> {
    let r = r.map_err(|e| e.to_string())?;
    if r.status().as_u16() == want {
        Ok(r)
    } else {
        Err(format!("{} {}", r.status(), r.text().unwrap_or_default()))
    }
}

fn location(r: &reqwest::blocking::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

fn with_digest(loc: &str, d: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
}

fn push_mono(c: &Client, s: &Server, repo: &str, data: &[u8]) -> Res<String> {
    let d = sha256(data);
    ok(
        c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send(),
        201,
    )?;
    Ok(d)
}

/// POST, `chunks` PATCHes, PUT.
fn push_chunked(c: &Client, s: &Server, repo: &str, data: &[u8], chunks: usize) -> Res<String> {
    let d = sha256(data);
    let mut loc = location(&ok(
        c.post(s.url(&format!("/v2/{repo}/blobs/uploads/"))).send(),
        202,
    )?);
    let step = data.len().div_ceil(chunks).max(1);
    for (i, part) in data.chunks(step).enumerate() {
        let r = ok(
            c.patch(s.url(&loc))
                .header("content-type", "application/octet-stream")
                .header(
                    "content-range",
                    format!("{}-{}", i * step, i * step + part.len() - 1),
                )
                .body(part.to_vec())
                .send(),
            202,
        )?;
        loc = location(&r);
    }
    ok(c.put(s.url(&with_digest(&loc, &d))).send(), 201)?;
    Ok(d)
}

/// One worker's writes until `stop`; what was acknowledged goes into the
/// ledger.
fn worker(
    s: &Server,
    w: u64,
    cycle: u64,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
    tally: &Tally,
) {
    let c = client();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w << 32) ^ (cycle << 8) ^ 1);
    let crash_repo = format!("crash/w{w}");
    let keep_repo = format!("keep/w{w}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let tag = format!("c{cycle}-{n}");
        let op = rng.below(10);
        let r: Res<()> = match op {
            0 | 1 => {
                let data = rng.sized(64 << 10);
                let pushed = if op == 0 {
                    push_mono(&c, s, &keep_repo, &data)
                } else {
                    push_chunked(&c, s, &keep_repo, &data, 1 + rng.below(4) as usize)
                };
                pushed.map(|d| {
                    tally.writes.fetch_add(1, Ordering::Relaxed);
                    ledger.lock().unwrap().blobs.push((keep_repo.clone(), d));
                })
            }
            2..=4 => (|| {
                let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "worker": w, "n": n, "cycle": cycle})).unwrap();
                let cd = push_mono(&c, s, &crash_repo, &config)?;
                let mut layers = Vec::new();
                for _ in 0..1 + rng.below(2) {
                    let data = rng.sized(32 << 10);
                    let d = push_chunked(&c, s, &crash_repo, &data, 2)?;
                    layers.push((d, data.len()));
                }
                let body = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
                    "layers": layers.iter().map(|(d, len)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len})).collect::<Vec<_>>(),
                }))
                .unwrap();
                let digest = sha256(&body);
                let by_tag = op != 4;
                let reference = if by_tag { tag.clone() } else { digest.clone() };
                ok(
                    c.put(s.url(&format!("/v2/{crash_repo}/manifests/{reference}")))
                        .header("content-type", OCI_MANIFEST)
                        .body(body.clone())
                        .send(),
                    201,
                )?;
                tally.writes.fetch_add(1, Ordering::Relaxed);
                let mut refs = vec![cd];
                refs.extend(layers.into_iter().map(|(d, _)| d));
                ledger.lock().unwrap().manifests.push(Image {
                    repo: crash_repo.clone(),
                    tag: by_tag.then_some(tag.clone()),
                    digest,
                    body,
                    refs,
                });
                Ok(())
            })(),
            5 => {
                // delete one of this worker's acknowledged manifests
                let victim = {
                    let mut l = ledger.lock().unwrap();
                    let mine: Vec<usize> = (0..l.manifests.len())
                        .filter(|i| l.manifests[*i].repo == crash_repo)
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let i = mine[rng.below(mine.len() as u64) as usize];
                    l.manifests.remove(i)
                };
                let Image { repo, digest, .. } = &victim;
                match ok(
                    c.delete(s.url(&format!("/v2/{repo}/manifests/{digest}")))
                        .send(),
                    202,
                ) {
                    Ok(_) => {
                        tally.deletes.fetch_add(1, Ordering::Relaxed);
                        ledger
                            .lock()
                            .unwrap()
                            .deleted
                            .push((repo.clone(), digest.clone()));
                        Ok(())
                    }
                    Err(e) => {
                        // not acknowledged: it may or may not be gone, so it
                        // is no longer checked either way
                        Err(e)
                    }
                }
            }
            6 => (|| {
                // a session left open with one chunk acknowledged
                let data = rng.sized(128 << 10);
                let half = data.len() / 2;
                let loc = location(&ok(
                    c.post(s.url(&format!("/v2/{keep_repo}/blobs/uploads/")))
                        .send(),
                    202,
                )?);
                let r = ok(
                    c.patch(s.url(&loc))
                        .header("content-type", "application/octet-stream")
                        .body(data[..half].to_vec())
                        .send(),
                    202,
                )?;
                tally.writes.fetch_add(1, Ordering::Relaxed);
                ledger
                    .lock()
                    .unwrap()
                    .sessions
                    .push((location(&r), half as u64, data));
                Ok(())
            })(),
            7 => {
                let name = format!("u{w}c{cycle}n{n}");
                let r = c
                    .post(s.url("/api/v1/registries/keep/users"))
                    .json(&json!({"name": name}))
                    .send();
                ok(r, 201).map(|_| {
                    tally.writes.fetch_add(1, Ordering::Relaxed);
                    ledger.lock().unwrap().users.push(("keep".into(), name));
                })
            }
            8 if w == 0 => {
                // a collection of the image registry, no grace: deleted
                // images' blobs go, live ones' stay
                let r = c
                    .post(s.url("/api/v1/gc"))
                    .json(&json!({"registry": "crash", "graceSeconds": 0, "deleteUntagged": false}))
                    .send();
                match r {
                    Ok(r) if r.status() == 202 || r.status() == 409 => Ok(()),
                    Ok(r) => Err(format!(
                        "gc: {} {}",
                        r.status(),
                        r.text().unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => {
                // a pull of something acknowledged, while the writes go on
                let pick = {
                    let l = ledger.lock().unwrap();
                    (!l.blobs.is_empty())
                        .then(|| l.blobs[rng.below(l.blobs.len() as u64) as usize].clone())
                };
                match pick {
                    Some((repo, d)) => {
                        ok(c.get(s.url(&format!("/v2/{repo}/blobs/{d}"))).send(), 200).map(|r| {
                            let got = r.bytes().unwrap_or_default();
                            if !stop.load(Ordering::Relaxed) {
                                assert_eq!(
                                    sha256(&got),
                                    d,
                                    "a pulled blob is not its digest's bytes"
                                );
                            }
                        })
                    }
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = r {
            if !stop.load(Ordering::Relaxed) {
                // a GC may take an image's blob between its push and the
                // manifest's (no grace, on purpose): refused, not lost
                if (2..=4).contains(&op)
                    && (e.contains("BLOB_UNKNOWN") || e.contains("BLOB_UPLOAD_UNKNOWN"))
                {
                    tally.refused_in_crash.fetch_add(1, Ordering::Relaxed);
                } else {
                    panic!("worker {w}: op {op} failed with the server up: {e}");
                }
            }
        }
    }
}

/// How much of the ledger the previous cycles left (checked by sample
/// after each kill, in full at the end).
#[derive(Clone, Copy, Default)]
struct Seen {
    blobs: usize,
    manifests: usize,
    deleted: usize,
    users: usize,
}

impl Seen {
    fn of(l: &Ledger) -> Seen {
        Seen {
            blobs: l.blobs.len(),
            manifests: l.manifests.len(),
            deleted: l.deleted.len(),
            users: l.users.len(),
        }
    }
}

/// The entries to check: all those since `old`, and of the older ones
/// (already checked after an earlier kill) every `stride`-th, so a long
/// run stays linear; `stride` 1 checks everything.
fn picked<T>(all: &[T], old: usize, stride: usize) -> impl Iterator<Item = &T> {
    all.iter()
        .enumerate()
        .filter(move |(i, _)| *i >= old || i % stride == 0)
        .map(|(_, x)| x)
}

/// The ledger checked against the restarted server (see [`picked`]).
fn verify(s: &Server, ledger: &mut Ledger, old: Seen, stride: usize) -> (u64, u64) {
    let c = client();
    for (repo, d) in picked(&ledger.blobs, old.blobs, stride) {
        assert_blob_pulls(&c, s, repo, d, "acknowledged blob");
    }
    for Image {
        repo,
        tag,
        digest,
        body,
        refs,
    } in picked(&ledger.manifests, old.manifests, stride)
    {
        let mut refs_to_get = vec![digest.clone()];
        if let Some(t) = tag {
            refs_to_get.push(t.clone());
        }
        for reference in refs_to_get {
            let r = c
                .get(s.url(&format!("/v2/{repo}/manifests/{reference}")))
                .header("accept", OCI_MANIFEST)
                .send()
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "acknowledged manifest {repo}:{reference} lost"
            );
            assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
            assert_eq!(
                r.bytes().unwrap().as_ref(),
                body.as_slice(),
                "manifest {repo}:{reference} corrupt"
            );
        }
        for b in refs {
            let what = format!("blob of acknowledged manifest {digest}:");
            assert_blob_pulls(&c, s, repo, b, &what);
        }
    }
    for (repo, digest) in picked(&ledger.deleted, old.deleted, stride) {
        let r = c
            .get(s.url(&format!("/v2/{repo}/manifests/{digest}")))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            404,
            "acknowledged delete of {repo}@{digest} came back"
        );
    }
    for (reg, name) in picked(&ledger.users, old.users, stride) {
        let r = c
            .get(s.url(&format!("/api/v1/registries/{reg}/users/{name}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged user {reg}+{name} lost");
    }
    // sessions: resume from where the server is (at least what was
    // acknowledged) and complete, or unknown
    let (mut resumed, mut unknown) = (0, 0);
    for (loc, acked, data) in ledger.sessions.drain(..) {
        let r = c.get(s.url(&loc)).send().unwrap();
        match r.status().as_u16() {
            204 => {
                let range = r.headers()["range"].to_str().unwrap().to_string();
                let have: u64 = range.split('-').nth(1).unwrap().parse::<u64>().unwrap() + 1;
                assert!(
                    have >= acked,
                    "session {loc}: {have} bytes, {acked} acknowledged"
                );
                let r = c
                    .patch(s.url(&loc))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{have}-{}", data.len() - 1))
                    .body(data[have as usize..].to_vec())
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 202, "resuming {loc}");
                let d = sha256(&data);
                let r = c
                    .put(s.url(&with_digest(&location(&r), &d)))
                    .send()
                    .unwrap();
                assert_eq!(
                    r.status(),
                    201,
                    "completing {loc}: {}",
                    r.text().unwrap_or_default()
                );
                resumed += 1;
            }
            404 => {
                assert_eq!(error_code(&r.text().unwrap()), "BLOB_UPLOAD_UNKNOWN");
                unknown += 1;
            }
            other => panic!("session {loc} after a restart: {other}"),
        }
    }
    (resumed, unknown)
}

#[test]
fn acknowledged_writes_survive_random_kills() {
    let cycles: u64 = std::env::var("BERTH_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut s = Server::start_with(&[
        ("BERTH_GC_RECYCLE_BIN_SECS", "0"),
        ("BERTH_LOG_LEVEL", "warn"),
    ]);
    let c = client();
    for reg in ["crash", "keep"] {
        // a storage limit: every push is charged in its transaction
        let r = c
            .post(s.url("/api/v1/registries"))
            .json(&json!({"name": reg, "storageLimitBytes": 10_000_000_000u64}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let ledger = Mutex::new(Ledger::default());
    let tally = Tally::default();
    let (mut resumed, mut unknown) = (0, 0);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let started = Instant::now();
    let mut seen = Seen::default();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::scope(|scope| {
            for w in 0..4 {
                let (s, stop, ledger, tally) = (&s, &stop, &ledger, &tally);
                scope.spawn(move || worker(s, w, cycle, stop, ledger, tally));
            }
            std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
            stop.store(true, Ordering::Relaxed);
            // one process under load: the server, or one replica of a
            // deployment (another each cycle) while the others serve on
            let pids = s.pids();
            let victim = pids[cycle as usize % pids.len()];
            // SAFETY: a signal to a server process this test started
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        });
        s.kill9(); // reap it (and stop the rest of a deployment)
        s.start_again();
        let mut l = ledger.lock().unwrap();
        let (r, u) = verify(&s, &mut l, seen, 16);
        seen = Seen::of(&l);
        drop(l);
        resumed += r;
        unknown += u;
    }
    // everything acknowledged in the whole run, once more
    verify(&s, &mut ledger.lock().unwrap(), Seen::default(), 1);
    // every figure the store keeps recounts
    s.stop();
    let out = s.offline(&["fsck"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fsck after {cycles} kills:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = ledger.lock().unwrap();
    eprintln!(
        "crash cycles: {cycles} kills in {:.0} s; acknowledged writes {}, deletes {} (live at the end: {} blobs, {} images, {} users); lost 0, corrupt 0; sessions resumed {resumed}, unknown {unknown}; pushes refused by a GC between blob and manifest {}; {}",
        started.elapsed().as_secs_f64(),
        tally.writes.load(Ordering::Relaxed),
        tally.deletes.load(Ordering::Relaxed),
        l.blobs.len(),
        l.manifests.len(),
        l.users.len(),
        tally.refused_in_crash.load(Ordering::Relaxed),
        text.lines().next().unwrap_or(""),
    );
    assert!(tally.writes.load(Ordering::Relaxed) > 0);
}
