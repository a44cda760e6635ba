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

/// Bytes sent straight from the page cache with sendfile, per `/metrics`.
fn sendfile_bytes(s: &Server) -> f64 {
    metric(
        &s.metrics(),
        "berth_blob_store_operations_total{op=\"sendfile_bytes\"}",
    )
    .expect("sendfile_bytes reported")
}

/// Drop a file's pages (all, or `(offset, len)`) from the page cache.
fn evict(path: &std::path::Path, range: Option<(i64, i64)>) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let (at, len) = range.unwrap_or((0, 0));
    // SAFETY: an advice call on a descriptor we own.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), at, len, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

#[test]
fn large_blob_pulls_send_cached_runs_from_the_page_cache() {
    let s = Server::start();
    let c = admin_client();
    // not a whole number of pages, so runs end mid-page
    let data = noise(16, (9 << 20) + 12_345);
    let d = push_blob(&c, &s, "big/one", &data);
    // Blobs in S3 stream from it: right bytes, nothing mapped or sent
    // with sendfile.
    let local = !s3_backend();
    let file = s
        .data_dir
        .join("store/blobs/sha256")
        .join(&d[7..9])
        .join(&d[7..]);
    let drop_pages = |range: Option<(i64, i64)>| {
        if local {
            evict(&file, range)
        }
    };
    if local {
        assert_eq!(std::fs::metadata(&file).unwrap().len(), data.len() as u64);
    }
    let url = s.url(&format!("/v2/big/one/blobs/{d}"));
    let get = |range: Option<&str>| {
        let mut rq = c.get(&url);
        if let Some(r) = range {
            rq = rq.header("range", r);
        }
        let r = rq.send().unwrap();
        let status = r.status().as_u16();
        let len: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().unwrap();
        assert_eq!(body.len(), len, "content-length {range:?}");
        (status, body)
    };

    // From the disk (nothing cached), then cached: the same bytes.
    drop_pages(None);
    let before = sendfile_bytes(&s);
    let (st, body) = get(None);
    assert_eq!(st, 200);
    assert!(body[..] == data[..], "pull from the disk differs");
    let (st, body) = get(None);
    assert_eq!(st, 200);
    assert!(body[..] == data[..], "cached pull differs");
    let sent = sendfile_bytes(&s) - before;
    if local {
        assert!(
            sent >= data.len() as f64,
            "a cached pull was not sent from the page cache: {sent} bytes"
        );
    } else {
        assert_eq!(sent, 0.0, "sendfile from an S3 stream");
    }

    // Half cached: the first half's pages dropped, the rest still held.
    drop_pages(Some((0, 4 << 20)));
    let (st, body) = get(None);
    assert_eq!(st, 200);
    assert!(body[..] == data[..], "half-cached pull differs");

    // Ranges: unaligned starts and ends, long enough to be mapped, and short.
    for (a, b) in [
        (4097usize, 6_000_000usize),
        (1, data.len() - 1),
        (data.len() - (1 << 20) - 3, data.len() - 1),
        (5_000_000, 5_000_099),
    ] {
        let (st, body) = get(Some(&format!("bytes={a}-{b}")));
        assert_eq!(st, 206);
        assert!(body[..] == data[a..=b], "range {a}-{b} differs");
    }
    let r = c.head(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        data.len().to_string()
    );

    // HTTP/2 frames the bytes itself: right bytes, no sendfile.
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let before = sendfile_bytes(&s);
    let r = h2
        .get(&url)
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap()[..] == data[..], "HTTP/2 pull differs");
    assert_eq!(sendfile_bytes(&s), before, "sendfile on an HTTP/2 stream");
    let sent = sendfile_bytes(&s);
    assert_eq!(sent > 0.0, local);
    // The bytes counted as sent include the sendfile runs.
    let out = metric(&s.metrics(), "berth_http_sent_bytes_total").unwrap();
    assert!(out >= sent, "sent bytes {out} < sendfile bytes {sent}");
}
