//! The connection layer against hostile and careless clients, over raw
//! TCP: HTTP/1.1 framing rules (Host, smuggling shapes, oversized heads),
//! answers given before a body is read, slow heads, stalled bodies, idle
//! keep-alive connections, the connection limit, thousands of idle
//! connections, and descriptors after aborted uploads.

use berth_conformance::*;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One HTTP/1.1 connection, spoken by hand.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

impl Conn {
    fn open(s: &Server) -> Conn {
        let w = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    fn send(&mut self, head: &str, body: &[u8]) -> std::io::Result<()> {
        self.w.write_all(head.as_bytes())?;
        self.w.write_all(body)
    }

    /// A request as the admin: `METHOD path`, extra header lines, a body
    /// with its length.
    fn request(
        &mut self,
        s: &Server,
        line: &str,
        extra: &str,
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let head = format!(
            "{line} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n{extra}\r\n",
            s.host(),
            admin_basic(),
            body.len()
        );
        self.send(&head, body)?;
        self.response()
    }

    fn response(&mut self) -> std::io::Result<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not a status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("header line");
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp
            .header("content-length")
            .map(|v| v.parse().expect("length"))
            .unwrap_or(0);
        resp.body = vec![0; len];
        self.r.read_exact(&mut resp.body)?;
        Ok(resp)
    }

    /// Whether the server has closed the connection: a read sees EOF (or a
    /// reset) within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        self.r.get_ref().set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.r.read(&mut b) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the server"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        };
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        closed
    }
}

/// The head of a PATCH of `len` declared bytes to upload `loc`, as the admin.
fn patch_head(s: &Server, loc: &str, len: usize) -> String {
    format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n",
        s.host(),
        admin_basic()
    )
}

/// Send `raw` on a fresh connection and read one answer.
fn once(s: &Server, raw: &str) -> Resp {
    let mut c = Conn::open(s);
    c.send(raw, b"").unwrap();
    c.response()
        .unwrap_or_else(|e| panic!("no answer to {raw:?}: {e}"))
}

#[test]
fn http11_requests_need_one_valid_host() {
    let s = Server::start();
    let auth = admin_basic();
    for (what, host_lines) in [
        ("no Host", String::new()),
        (
            "two Hosts",
            format!("Host: {h}\r\nHost: {h}\r\n", h = s.host()),
        ),
        (
            "two different Hosts",
            format!("Host: {}\r\nHost: evil.example\r\n", s.host()),
        ),
        ("a Host with a space", "Host: a b\r\n".to_string()),
        ("a Host with a path", "Host: a/b\r\n".to_string()),
        ("a Host with userinfo", "Host: u@a\r\n".to_string()),
        ("a Host with a bad port", "Host: a:5x\r\n".to_string()),
    ] {
        // the OCI envelope on /v2/, problem JSON on the management API
        let r = once(
            &s,
            &format!("GET /v2/ HTTP/1.1\r\n{host_lines}Authorization: {auth}\r\n\r\n"),
        );
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_eq!(error_code(&r.text()), "BAD_REQUEST", "{what}");
        let r = once(
            &s,
            &format!(
                "GET /api/v1/registries HTTP/1.1\r\n{host_lines}Authorization: {auth}\r\n\r\n"
            ),
        );
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/problem+json"));
        let r = once(&s, &format!("GET /healthz HTTP/1.1\r\n{host_lines}\r\n"));
        assert_eq!(r.status, 400, "{what}: {r:?}");
    }
    // HTTP/1.0 may leave Host out; an empty Host is a target with no authority
    let r = once(
        &s,
        &format!("GET /v2/ HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = once(
        &s,
        &format!("GET /v2/ HTTP/1.1\r\nHost:\r\nAuthorization: {auth}\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = once(
        &s,
        &format!("GET /v2/ HTTP/1.1\r\nHost: [::1]:80\r\nAuthorization: {auth}\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn smuggling_shapes_are_refused_or_closed() {
    let s = Server::start();
    let auth = admin_basic();
    let h = s.host();
    // two lengths that differ; a transfer coding that does not end in chunked
    for raw in [
        format!("POST /v2/a/b/blobs/uploads/ HTTP/1.1\r\nHost: {h}\r\nAuthorization: {auth}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        format!("POST /v2/a/b/blobs/uploads/ HTTP/1.1\r\nHost: {h}\r\nAuthorization: {auth}\r\nTransfer-Encoding: gzip\r\n\r\n"),
        format!("POST /v2/a/b/blobs/uploads/ HTTP/1.1\r\nHost: {h}\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("GET /v2/ HTTP/1.1\r\nHost : {h}\r\nAuthorization: {auth}\r\n\r\n"),
        format!("GET /v2/ HTTP/1.1\r\nHost: {h}\r\nX-Folded: a\r\n b\r\nAuthorization: {auth}\r\n\r\n"),
    ] {
        let r = once(&s, &raw);
        assert_eq!(r.status, 400, "{raw:?}: {r:?}");
    }
    // chunked and a length: read as chunked (the length is ignored), and
    // the connection is not reused, so nothing can hide behind the body
    let mut c = Conn::open(&s);
    c.send(
        &format!("POST /v2/smuggle/app/blobs/uploads/ HTTP/1.1\r\nHost: {h}\r\nAuthorization: {auth}\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v2/_catalog HTTP/1.1\r\nHost: {h}\r\nAuthorization: {auth}\r\n\r\n"),
        b"",
    )
    .unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.status, 202, "{r:?}");
    assert!(r.closes(), "{r:?}");
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "the smuggled request must not be answered"
    );
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn oversized_heads_are_refused() {
    let s = Server::start_with(&[("BERTH_HTTP_MAX_HEADER_BYTES", "16384")]);
    let big = "x".repeat(20_000);
    let r = once(
        &s,
        &format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nX-Big: {big}\r\n\r\n",
            s.host()
        ),
    );
    assert_eq!(r.status, 431, "{r:?}");
    // a head under the limit is served
    let ok = "x".repeat(8_000);
    let r = once(
        &s,
        &format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nX-Big: {ok}\r\n\r\n",
            s.host(),
            admin_basic()
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

/// An answer given before the body is read (404 for an upload that does
/// not exist) leaves the connection usable: the next request on it is
/// answered, every time.
#[test]
fn early_answers_keep_the_connection_usable() {
    let s = Server::start();
    let (status, v) = call(
        api(&s, Some(ADMIN_TOKEN), reqwest::Method::POST, "/registries")
            .json(&serde_json::json!({"name": "acme"})),
    );
    assert_eq!(status, 201, "{v}");
    let mut conn = Conn::open(&s);
    let body = vec![7u8; 64 * 1024];
    for i in 0..60 {
        let id = uuid_like(i);
        let r = conn
            .request(
                &s,
                &format!("PATCH /v2/acme/app/blobs/uploads/{id}"),
                "Content-Type: application/octet-stream\r\n",
                &body,
            )
            .unwrap_or_else(|e| panic!("round {i}: PATCH: {e}"));
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(error_code(&r.text()), "BLOB_UPLOAD_UNKNOWN");
        assert!(!r.closes(), "a drained body keeps the connection: {r:?}");
        let r = conn.request(&s, "GET /v2/", "", b"").unwrap_or_else(|e| {
            panic!("round {i}: the request after the early answer failed: {e}")
        });
        assert_eq!(r.status, 200, "{r:?}");
        // a refused manifest (no such blobs) and a refused blob push too
        let r = conn
            .request(
                &s,
                "PUT /v2/acme/app/manifests/t",
                "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
                b"{\"schemaVersion\":2,\"schemaVersion\":2}",
            )
            .unwrap();
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(
            error_code(&r.text()),
            "MANIFEST_INVALID",
            "duplicate keys: {}",
            r.text()
        );
    }
    // a rest too long to drain: the answer says the connection closes
    let big = vec![1u8; 4 << 20];
    let head = format!(
        "PATCH /v2/acme/app/blobs/uploads/{} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        uuid_like(999),
        s.host(),
        admin_basic(),
        big.len()
    );
    conn.send(&head, &big[..1024]).unwrap();
    let r = conn.response().unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.closes(),
        "an undrained connection must say it closes: {r:?}"
    );
    assert!(metric(&s.metrics(), "berth_http_undrained_closes_total").unwrap() >= 1.0);
}

fn uuid_like(i: u32) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

#[test]
fn slow_heads_and_idle_connections_are_cut_off() {
    let s = Server::start_with(&[("BERTH_HTTP_HEADER_READ_TIMEOUT_SECS", "2")]);
    // connected, nothing sent
    let mut silent = Conn::open(&s);
    // a head dribbled a byte at a time, never finished
    let mut dribble = Conn::open(&s);
    // the start of an HTTP/2 preface, never finished (the protocol is
    // not even known yet)
    let mut preface = Conn::open(&s);
    preface.send("PRI * HTTP/2.0\r\n", b"").unwrap();
    let start = Instant::now();
    let mut cut = false;
    for b in format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\nX-Slow: ", s.host())
        .bytes()
        .chain(std::iter::repeat(b'a'))
    {
        if dribble
            .send(std::str::from_utf8(&[b]).unwrap(), b"")
            .is_err()
        {
            cut = true;
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cut || dribble.closed_within(Duration::from_secs(1)),
        "a dribbled head must be cut off"
    );
    assert!(
        silent.closed_within(Duration::from_secs(5)),
        "a silent connection must be closed"
    );
    assert!(
        preface.closed_within(Duration::from_secs(5)),
        "an unfinished preface must be closed"
    );
    // a keep-alive connection idle after an answer
    let mut idle = Conn::open(&s);
    let r = idle.request(&s, "GET /v2/", "", b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        !idle.closed_within(Duration::from_millis(500)),
        "closed too early"
    );
    assert!(
        idle.closed_within(Duration::from_secs(5)),
        "an idle keep-alive connection must be closed"
    );
    // and the server serves on
    let r = Conn::open(&s).request(&s, "GET /v2/", "", b"").unwrap();
    assert_eq!(r.status, 200);
}

/// A body that stops arriving is abandoned after the idle timeout; the
/// session keeps what was acknowledged before and takes the upload again.
#[test]
fn stalled_bodies_are_abandoned_and_the_upload_resumes() {
    let s = Server::start_with(&[("BERTH_HTTP_BODY_IDLE_TIMEOUT_SECS", "2")]);
    let c = admin_client();
    let r = c
        .post(s.url("/v2/acme/stall/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let data: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    // the first MiB acknowledged
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(data[..1 << 20].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // the second announced, half sent, then silence
    let mut conn = Conn::open(&s);
    let head = patch_head(&s, &loc, 1 << 20);
    conn.send(&head, &data[1 << 20..(1 << 20) + (512 << 10)])
        .unwrap();
    let t = Instant::now();
    let r = conn.response().expect("an answer after the idle timeout");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "answered before the body went idle: {r:?}"
    );
    assert!(r.status >= 400 && r.status < 500, "{r:?}");
    assert!(r.closes(), "{r:?}");
    assert_eq!(
        metric(&s.metrics(), "berth_http_body_timeouts_total"),
        Some(1.0)
    );
    // the session is where the last acknowledged PATCH left it
    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], format!("0-{}", (1 << 20) - 1));
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(data[1 << 20..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let d = sha256(&data);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(s.url(&format!("{loc}{sep}digest={d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = c
        .get(s.url(&format!("/v2/acme/stall/blobs/{d}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(sha256(&got), d);
}

/// At the connection limit new connections wait (they are not refused and
/// not served) until one closes.
#[test]
fn connections_beyond_the_limit_wait_for_a_free_one() {
    let s = Server::start_with(&[("BERTH_HTTP_MAX_CONNECTIONS", "4")]);
    let mut held: Vec<Conn> = (0..4)
        .map(|_| {
            let mut c = Conn::open(&s);
            assert_eq!(c.request(&s, "GET /v2/", "", b"").unwrap().status, 200);
            c
        })
        .collect();
    let mut waiting = Conn::open(&s);
    waiting
        .send(
            &format!(
                "GET /v2/ HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
                s.host(),
                admin_basic()
            ),
            b"",
        )
        .unwrap();
    waiting
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut b = [0u8; 1];
    match waiting.r.get_mut().peek(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a fifth connection was served beyond the limit: {other:?}"),
    }
    drop(held.pop());
    waiting
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let r = waiting.response().expect("served once a connection closed");
    assert_eq!(r.status, 200);
    drop(held);
    drop(waiting);
    assert!(s.log_text().contains("connection limit reached"));
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// 2,000 idle connections: memory stays within a bound, other clients are
/// served meanwhile, and every descriptor is returned when they go.
#[test]
fn two_thousand_idle_connections() {
    let s = Server::start();
    let c = admin_client();
    push_blob(&c, &s, "acme/idle", b"warm up");
    std::thread::sleep(Duration::from_millis(300));
    let (rss0, fds0) = (s.rss_kib(), open_fds(s.pid()));
    let mut conns = Vec::new();
    for i in 0..2000 {
        let mut conn = Conn::open(&s);
        // half never send a byte, half are idle keep-alive after an answer
        if i % 2 == 0 {
            assert_eq!(conn.request(&s, "GET /v2/", "", b"").unwrap().status, 200);
        }
        conns.push(conn);
    }
    // others are served while they are open
    let data = vec![5u8; 256 << 10];
    for i in 0..20 {
        let d = push_blob(&c, &s, "acme/idle", &[&data[..], &[i as u8]].concat());
        let r = c
            .get(s.url(&format!("/v2/acme/idle/blobs/{d}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let open = metric(&s.metrics(), "berth_http_connections_open").unwrap();
    assert!(open >= 2000.0, "{open}");
    let rss = s.rss_kib();
    let grown_mib = rss.saturating_sub(rss0) / 1024;
    eprintln!("2000 idle connections: RSS {rss0} → {rss} KiB (+{grown_mib} MiB)");
    assert!(grown_mib < 64, "2000 idle connections took {grown_mib} MiB");
    drop(conns);
    let fds = poll(
        "descriptors returned",
        100,
        Duration::from_millis(100),
        || {
            let n = open_fds(s.pid());
            (n <= fds0 + 8).then_some(n)
        },
    );
    eprintln!("descriptors: {fds0} before, {fds} after");
}

/// Uploads cut off mid-body leave no descriptor open; a cancelled session
/// leaves no staged bytes.
#[test]
fn aborted_uploads_release_descriptors_and_staging() {
    let s = Server::start();
    let c = admin_client();
    push_blob(&c, &s, "acme/abort", b"warm up");
    let fds0 = open_fds(s.pid());
    let mut sessions = Vec::new();
    for _ in 0..40 {
        let r = c
            .post(s.url("/v2/acme/abort/blobs/uploads/"))
            .send()
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let mut conn = Conn::open(&s);
        let head = patch_head(&s, &loc, 8 << 20);
        conn.send(&head, &vec![3u8; 300 << 10]).unwrap();
        drop(conn); // gone mid-body
        sessions.push(loc);
    }
    poll(
        "descriptors returned",
        100,
        Duration::from_millis(100),
        || (open_fds(s.pid()) <= fds0 + 8).then_some(()),
    );
    for loc in &sessions {
        let r = c.delete(s.url(loc)).send().unwrap();
        assert_eq!(r.status(), 204, "{loc}");
    }
    assert_eq!(
        s.staged_sessions(),
        0,
        "cancelled sessions leave no staged bytes"
    );
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// A push user `ci` of registry acme: its Basic `Authorization` value.
fn push_user(s: &Server) -> String {
    let (st, v) = call(
        api(
            s,
            Some(ADMIN_TOKEN),
            reqwest::Method::POST,
            "/registries/acme/users",
        )
        .json(&serde_json::json!({"name": "ci", "canPush": true})),
    );
    assert_eq!(st, 201, "{v}");
    basic(
        v["username"].as_str().unwrap(),
        v["password"].as_str().unwrap(),
    )
}

/// A principal's open upload sessions are limited: one more is 429
/// `TOOMANYREQUESTS` until one of them is cancelled or completed; another
/// principal is not held up by it.
#[test]
fn open_upload_sessions_are_limited_per_principal() {
    let s = Server::start_with(&[("BERTH_UPLOADS_MAX_SESSIONS_PER_PRINCIPAL", "3")]);
    let c = admin_client();
    let open = || {
        c.post(s.url("/v2/acme/many/blobs/uploads/"))
            .send()
            .unwrap()
    };
    let locs: Vec<String> = (0..3)
        .map(|_| {
            let r = open();
            assert_eq!(r.status(), 202);
            r.headers()["location"].to_str().unwrap().to_string()
        })
        .collect();
    let r = open();
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(&r.text().unwrap()), "TOOMANYREQUESTS");
    // monolithic pushes open no session: not limited
    push_blob(&c, &s, "acme/many", b"monolithic");
    // another principal: a push user of acme
    let user = push_user(&s);
    let r = anonymous_client()
        .post(s.url("/v2/acme/many/blobs/uploads/"))
        .header("authorization", &user)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "another principal has its own room");
    // a cancelled session makes room
    assert_eq!(c.delete(s.url(&locs[0])).send().unwrap().status(), 204);
    assert_eq!(open().status(), 202);
    assert_eq!(open().status(), 429);
}

/// The instance's open upload sessions are limited in total, whoever opened
/// them: one more is 429 `TOOMANYREQUESTS` for every principal, a completed
/// session makes room, and the count survives a restart.
#[test]
fn open_upload_sessions_are_limited_in_total() {
    let mut s = Server::start_with(&[
        ("BERTH_UPLOADS_MAX_SESSIONS_PER_PRINCIPAL", "3"),
        ("BERTH_UPLOADS_MAX_SESSIONS", "4"),
    ]);
    let c = admin_client();
    let (st, v) = call(
        api(&s, Some(ADMIN_TOKEN), reqwest::Method::POST, "/registries")
            .json(&serde_json::json!({"name": "acme"})),
    );
    assert_eq!(st, 201, "{v}");
    let user = push_user(&s);
    let open_as = |s: &Server, auth: &str| {
        anonymous_client()
            .post(s.url("/v2/acme/total/blobs/uploads/"))
            .header("authorization", auth)
            .send()
            .unwrap()
    };
    let admin = admin_basic();
    let locs: Vec<String> = (0..3)
        .map(|_| {
            let r = open_as(&s, &admin);
            assert_eq!(r.status(), 202);
            r.headers()["location"].to_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        open_as(&s, &user).status(),
        202,
        "the fourth, another principal's"
    );
    let refused = |r: reqwest::blocking::Response| {
        assert_eq!(r.status(), 429);
        let body = r.text().unwrap();
        assert_eq!(error_code(&body), "TOOMANYREQUESTS");
        assert!(body.contains("(uploads.max_sessions)"), "{body}");
    };
    refused(open_as(&s, &user));
    refused(open_as(&s, &admin));
    // the count is in the metadata store: a restart keeps it
    s.restart();
    refused(open_as(&s, &user));
    // completing one makes room
    let data = b"the last chunk";
    let r = c
        .put(s.url(&format!("{}?digest={}", locs[1], sha256(data))))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(open_as(&s, &user).status(), 202);
    refused(open_as(&s, &admin));
    // cancelling one makes room
    assert_eq!(c.delete(s.url(&locs[0])).send().unwrap().status(), 204);
    assert_eq!(open_as(&s, &admin).status(), 202);
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
