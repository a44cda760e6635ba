//! Restarts, crashes and abandoned sessions.

use berth_conformance::*;
use std::time::{Duration, Instant};

fn client() -> Client {
    admin_client()
}

fn hdr(r: &reqwest::blocking::Response, k: &str) -> String {
    r.headers().get(k).unwrap().to_str().unwrap().to_string()
}

#[test]
fn chunked_upload_survives_a_restart() {
    let mut s = Server::start();
    let c = client();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let d = sha256(&data);
    let r = c.post(s.url("/v2/dur/app/blobs/uploads/")).send().unwrap();
    let loc = hdr(&r, "location");
    let r = c
        .patch(s.url(&loc))
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    s.restart();

    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(hdr(&r, "range"), "0-99999");
    let r = c
        .patch(s.url(&loc))
        .header("content-range", "100000-199999")
        .body(data[100_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c.put(s.url(&format!("{loc}?digest={d}"))).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let got = c
        .get(s.url(&format!("/v2/dur/app/blobs/{d}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(got.as_ref(), &data[..]);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut s = Server::start();
    let c = client();
    // several rounds: push, kill -9 right after the 201, pull
    for round in 0..3 {
        let repo = format!("crash/r{round}");
        let img = push_image(&c, &s, &repo, "latest", &format!("crash {round}"));
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(31) >> 3) as u8)
            .collect();
        let bd = push_blob(&c, &s, &repo, &big);
        s.kill9();
        s.start_again();
        let r = c
            .get(s.url(&format!("/v2/{repo}/manifests/latest")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(r.bytes().unwrap().as_ref(), &img.manifest[..]);
        for d in [&img.config, &img.layer, &bd] {
            let r = c
                .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
            let (got, _) = sha256_of_reader(r);
            assert_eq!(&got, d);
        }
    }
}

#[test]
fn a_session_opened_just_before_kill_9_goes_on() {
    // A new session has no staging file and its record is written without
    // a WAL flush: a crash of the process keeps it (the kernel has the
    // log), and the first PATCH after the restart makes the file.
    let mut s = Server::start();
    let c = client();
    let data: Vec<u8> = (0..300_001u32).map(|i| (i % 253) as u8).collect();
    let d = sha256(&data);
    let r = c
        .post(s.url("/v2/fresh/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = hdr(&r, "location");
    s.kill9();
    s.start_again();
    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(hdr(&r, "range"), "0-0");
    let r = c
        .patch(s.url(&loc))
        .header("content-range", "0-300000")
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let r = c.put(s.url(&format!("{loc}?digest={d}"))).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let got = c
        .get(s.url(&format!("/v2/fresh/app/blobs/{d}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(got.as_ref(), &data[..]);
}

#[test]
fn kill_9_mid_upload_leaves_a_usable_session() {
    let mut s = Server::start();
    let c = client();
    let r = c.post(s.url("/v2/mid/app/blobs/uploads/")).send().unwrap();
    let loc = hdr(&r, "location");
    let r = c.patch(s.url(&loc)).body(vec![7u8; 1000]).send().unwrap();
    assert_eq!(r.status(), 202);
    // a PATCH cut off half-way, then the server dies
    {
        use std::io::Write;
        let mut t = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let head = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 100000\r\n\r\n",
            admin_basic()
        );
        t.write_all(head.as_bytes()).unwrap();
        t.write_all(&[9u8; 50_000]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        s.kill9();
    }
    s.start_again();
    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(hdr(&r, "range"), "0-999", "only acknowledged bytes count");
    let r = c
        .patch(s.url(&loc))
        .header("content-range", "1000-1999")
        .body(vec![8u8; 1000])
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut all = vec![7u8; 1000];
    all.extend(vec![8u8; 1000]);
    let r = c
        .put(s.url(&format!("{loc}?digest={}", sha256(&all))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn abandoned_sessions_are_reaped() {
    let s = Server::start_with(&[
        ("BERTH_UPLOADS_MAX_AGE_SECS", "1"),
        ("BERTH_UPLOADS_REAP_INTERVAL_SECS", "1"),
    ]);
    let c = client();
    let r = c.post(s.url("/v2/reap/app/blobs/uploads/")).send().unwrap();
    let loc = hdr(&r, "location");
    c.patch(s.url(&loc)).body(vec![1u8; 4096]).send().unwrap();
    assert_eq!(s.staged_sessions(), 1);
    let metrics = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("berth_upload_sessions_open 1"),
        "{metrics}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.get(s.url(&loc)).send().unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "session was not reaped");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.staged_sessions(), 0, "staged bytes must go too");
    let metrics = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("berth_upload_sessions_open 0"),
        "{metrics}"
    );
}

#[test]
fn graceful_shutdown_on_sigterm() {
    let mut s = Server::start();
    let st = s.stop();
    assert!(st.success(), "exit status {st}");
    assert!(s.log_text().contains("shutting down"));
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    // RocksDB's lock (replicas on PostgreSQL share a store on purpose:
    // tests/replicas.rs)
    let s = Server::start_with(&[("BERTH_METADATA_BACKEND", "rocksdb")]);
    let out = std::process::Command::new(berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another berth"), "{err}");
}
