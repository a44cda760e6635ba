//! A data directory on a small filesystem (a tmpfs with a size) that fills
//! up: pushes are refused with 507 `INSUFFICIENT_STORAGE` — before the
//! bytes are read when their length is declared, mid-body when not —
//! nothing half-written becomes visible, reads go on, the metadata store
//! keeps working, and pushes work again once space is freed, without a
//! restart.

use berth_conformance::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `mib` MiB mounted for the test's life.
struct Tmpfs {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("fs");
        std::fs::create_dir(&at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("mount (the disk-full suite needs root to mount a tmpfs)");
        assert!(
            st.success(),
            "mount -t tmpfs failed: the disk-full suite needs root"
        );
        Tmpfs { at, _dir: dir }
    }
    fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn free_mib(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).unwrap().trim().parse::<u64>().unwrap() >> 20
}

/// A PATCH of `mib` MiB sent chunked (no declared length) over raw TCP
/// from a writer thread, while the answer is read: the status and body of
/// the answer, whenever it comes.
fn chunked_patch(s: &Server, loc: &str, mib: usize) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut w = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.host(),
        admin_basic()
    );
    w.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        let chunk = vec![9u8; 1 << 20];
        for _ in 0..mib {
            if w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || w.write_all(&chunk).is_err()
                || w.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = w.write_all(b"0\r\n\r\n");
    });
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    drop(r);
    writer.join().unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `d` pulls from `full/app` and is its digest's bytes.
fn pulls(c: &Client, s: &Server, d: &str) {
    assert_blob_pulls(c, s, "full/app", d, "blob");
}

fn blob(i: u32, len: usize) -> Vec<u8> {
    let mut v = format!("blob {i} ").into_bytes();
    v.resize(len, (i % 251) as u8);
    v
}

#[test]
fn a_full_disk_refuses_pushes_and_recovers_without_a_restart() {
    let fs = Tmpfs::mount(256);
    let data = fs.path().join("data");
    let mut s = Server::start_in(
        &data,
        &[
            ("BERTH_STORAGE_MIN_FREE_BYTES", &(24u64 << 20).to_string()),
            ("BERTH_GC_RECYCLE_BIN_SECS", "0"),
        ],
    );
    let c = admin_client();
    // fill it with 8 MiB blobs (monolithic, length declared) until refused
    let mut kept = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let b = blob(i, 8 << 20);
        let d = sha256(&b);
        let r = c
            .post(s.url(&format!("/v2/full/app/blobs/uploads/?digest={d}")))
            .body(b)
            .send()
            .unwrap();
        match r.status().as_u16() {
            201 => kept.push(d),
            507 => {
                let text = r.text().unwrap();
                assert_eq!(error_code(&text), "INSUFFICIENT_STORAGE", "{text}");
                refused = Some(d);
                break;
            }
            other => panic!("push {i}: {other} {}", r.text().unwrap_or_default()),
        }
    }
    let refused = refused.expect("the small filesystem never filled");
    assert!(kept.len() >= 8, "refused too early: {} kept", kept.len());
    eprintln!(
        "{} blobs of 8 MiB kept, then 507 with {} MiB free",
        kept.len(),
        free_mib(fs.path())
    );
    assert!(!s.log_text().contains("panicked"));
    // a chunked PATCH with no declared length runs into the reserve's
    // remaining room and the disk's end: refused mid-body, cut back
    let r = c.post(s.url("/v2/full/app/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let first = blob(1000, 1 << 20);
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(first.clone())
        .send()
        .unwrap();
    // with 1 MiB the reserve may already refuse: either way nothing partial
    let loc = if r.status() == 202 {
        r.headers()["location"].to_str().unwrap().to_string()
    } else {
        assert_eq!(r.status(), 507, "{}", r.text().unwrap_or_default());
        loc
    };
    let before = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(before.status(), 204);
    let range_before = before.headers()["range"].to_str().unwrap().to_string();
    let (status, text) = chunked_patch(&s, &loc, 200);
    assert_eq!(status, 507, "{text}");
    assert_eq!(error_code(&text), "INSUFFICIENT_STORAGE", "{text}");
    let after = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(after.status(), 204, "the session survives a refused chunk");
    assert_eq!(
        after.headers()["range"].to_str().unwrap(),
        range_before,
        "the refused chunk was cut back"
    );
    // nothing refused became visible; everything acknowledged reads
    let r = c
        .head(s.url(&format!("/v2/full/app/blobs/{refused}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    for d in &kept {
        pulls(&c, &s, d);
    }
    assert_eq!(c.get(s.url("/readyz")).send().unwrap().status(), 200);
    // the metadata store still takes writes: a registry, a delete
    let (st, v) = call(
        api(&s, Some(ADMIN_TOKEN), reqwest::Method::POST, "/registries")
            .json(&serde_json::json!({"name": "small"})),
    );
    assert_eq!(st, 201, "{v}");
    // and a manifest (metadata only) keeps two of the blobs
    let (cfg, layer) = (&kept[kept.len() - 1], &kept[kept.len() - 2]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 8 << 20},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 8 << 20}],
    }))
    .unwrap();
    let md = push_manifest(&c, &s, "full/app", "kept", OCI_MANIFEST, &manifest);
    // free space: a collection with no grace takes every blob no manifest
    // references
    let run = run_gc(
        &s,
        Some(ADMIN_TOKEN),
        serde_json::json!({"graceSeconds": 0}),
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    // pushes work again, on the same server
    let b = blob(2000, 8 << 20);
    let d = push_blob(&c, &s, "full/app", &b);
    pulls(&c, &s, &d);
    // the session goes on too
    let rest = vec![9u8; 1 << 20];
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(rest)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    // and the data directory opens again and recounts
    s.stop();
    let out = Command::new(berth_bin())
        .args(["fsck", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.start_again();
    for d in [cfg, layer, &d] {
        pulls(&c, &s, d);
    }
    let r = c
        .get(s.url("/v2/full/app/manifests/kept"))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    s.stop();
}
