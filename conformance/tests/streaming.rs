//! Memory stays flat as blobs grow: push and pull a 2 GiB blob through the
//! real binary and read the server's peak RSS (VmHWM) around it.

use berth_conformance::*;
use sha2::{Digest as _, Sha256};
use std::io::Read;

const BLOCK: usize = 1 << 20;

/// Deterministic pseudo-random bytes, generated on the fly (never held whole).
struct Gen {
    block: Vec<u8>,
    idx: u64,
    pos: usize,
    left: u64,
}

impl Gen {
    fn new(len: u64) -> Gen {
        let mut x = 0x9e3779b97f4a7c15u64;
        let block = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Gen {
            block,
            idx: 0,
            pos: 0,
            left: len,
        }
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.pos == BLOCK {
            self.pos = 0;
            self.idx += 1;
        }
        let n = buf.len().min(BLOCK - self.pos).min(self.left as usize);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        // make every block distinct
        if self.pos == 0 && n >= 8 {
            buf[..8].copy_from_slice(&self.idx.to_le_bytes());
        }
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

fn digest_of(len: u64) -> String {
    let (d, n) = sha256_of_reader(Gen::new(len));
    assert_eq!(n, len);
    d
}

#[test]
fn two_gib_push_and_pull_keep_memory_flat() {
    let len: u64 = 2 << 30;
    let s = Server::start();
    let c = admin_client();
    // warm up with a small blob so the baseline includes the steady state
    push_blob(&c, &s, "big/warm", b"warm up");
    let base = s.peak_rss_kib();

    let d = digest_of(len);
    let r = c.post(s.url("/v2/big/blob/blobs/uploads/")).send().unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(s.url(&loc))
        .body(reqwest::blocking::Body::sized(Gen::new(len), len))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", len - 1)
    );
    let r = c.put(s.url(&format!("{loc}?digest={d}"))).send().unwrap();
    assert_eq!(r.status(), 201);
    let after_push = s.peak_rss_kib();

    let r = c
        .get(s.url(&format!("/v2/big/blob/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        len.to_string()
    );
    let mut h = Sha256::new();
    let mut got = 0u64;
    let mut r = r;
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
        h.update(&buf[..n]);
    }
    assert_eq!(got, len);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), d);
    let after_pull = s.peak_rss_kib();

    println!("server peak RSS: baseline {base} KiB, after 2 GiB push {after_push} KiB, after 2 GiB pull {after_pull} KiB");
    // A whole blob in memory would add 2 GiB; flat means a few buffers.
    assert!(
        after_push - base < 64 * 1024,
        "push grew peak RSS by {} KiB",
        after_push - base
    );
    assert!(
        after_pull - base < 64 * 1024,
        "pull grew peak RSS by {} KiB",
        after_pull - base
    );
}
