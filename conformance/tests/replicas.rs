//! Several Berth processes as replicas of one registry: one PostgreSQL
//! schema for the metadata (`berth-pgtest`), one prefix of a Garage bucket
//! for the blobs, each replica its own port and data directory. Requests
//! are spread over them by the test, as a round-robin balancer would: what
//! one replica did, the next one sees at once — pushes, chunked uploads
//! whose PATCHes land on different replicas, credentials and their
//! revocation, quota charges racing from every replica — and a replica
//! killed in the middle of a PATCH loses nothing acknowledged.

use berth_conformance::*;
use reqwest::Method as M;
use serde_json::json;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

const A: Option<&str> = Some(ADMIN_TOKEN);
const MIB: usize = 1 << 20;

/// PATCH `data` at `start` to the session at `loc` on `s`; the next
/// location.
fn patch(c: &Client, s: &Server, loc: &str, start: usize, data: &[u8]) -> String {
    let r = c
        .patch(s.url(loc))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{start}-{}", start + data.len() - 1),
        )
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "PATCH at {start} on :{}: {}",
        s.port,
        r.text().unwrap_or_default()
    );
    let range = r.headers()["range"].to_str().unwrap().to_string();
    assert_eq!(range, format!("0-{}", start + data.len() - 1));
    r.headers()["location"].to_str().unwrap().to_string()
}

/// The recorded offset of the session at `loc`, asked of `s`.
fn offset(c: &Client, s: &Server, loc: &str) -> usize {
    let r = c.get(s.url(loc)).send().unwrap();
    assert_eq!(r.status(), 204, "upload status on :{}", s.port);
    let range = r.headers()["range"].to_str().unwrap();
    range.split_once('-').unwrap().1.parse::<usize>().unwrap() + 1
}

fn put_done(c: &Client, s: &Server, loc: &str, digest: &str) -> reqwest::blocking::Response {
    let sep = if loc.contains('?') { '&' } else { '?' };
    c.put(s.url(&format!("{loc}{sep}digest={digest}")))
        .send()
        .unwrap()
}

#[test]
fn a_push_through_one_replica_is_served_by_every_other() {
    // behind one name, as behind a balancer
    let r = Server::replicas(
        3,
        &[("BERTH_AUTH_EXTERNAL_URL", "https://registry.example")],
    );
    let c = admin_client();
    let img = push_image(&c, &r[0], "shared/app", "v1", "replicas");
    for s in &r[1..] {
        let m = c
            .get(s.url("/v2/shared/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(m.status(), 200, "the tag on :{}", s.port);
        assert_eq!(m.bytes().unwrap().as_ref(), img.manifest.as_slice());
        assert_blob_pulls(&c, s, "shared/app", &img.layer, "layer");
        assert_blob_pulls(&c, s, "shared/app", &img.config, "config");
    }
    // a tag moved on one replica, listed and deleted on others
    let img2 = push_image(&c, &r[1], "shared/app", "v2", "replicas two");
    let tags: serde_json::Value = c
        .get(r[2].url("/v2/shared/app/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], json!(["v1", "v2"]));
    let del = c
        .delete(r[2].url(&format!("/v2/shared/app/manifests/{}", img2.digest)))
        .send()
        .unwrap();
    assert_eq!(del.status(), 202);
    for s in &r {
        let st = c
            .get(s.url("/v2/shared/app/manifests/v2"))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap()
            .status();
        assert_eq!(st, 404, "deleted on one, gone on :{}", s.port);
    }
    // the management API of any replica counts the same
    let (st, v) = call(api(&r[0], A, M::GET, "/registries/shared/repositories"));
    assert_eq!(st, 200, "{v}");
    let (_, w) = call(api(&r[2], A, M::GET, "/registries/shared/repositories"));
    assert_eq!(v, w);
    assert_eq!(v["items"][0]["pullPrefix"], "registry.example/shared/app");
}

#[test]
fn a_chunked_upload_goes_on_at_any_replica_and_survives_one_killed() {
    let mut r = Server::replicas(3, &[]);
    let c = admin_client();
    // 14 MiB: past S3's 5 MiB part size twice, so parts and the bytes
    // after them are carried from replica to replica
    let data = noise(1, 14 * MIB);
    let digest = sha256(&data);
    let post = c
        .post(r[0].url("/v2/spread/blob/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(post.status(), 202);
    let loc = post.headers()["location"].to_str().unwrap().to_string();
    let loc = patch(&c, &r[1], &loc, 0, &data[..6 * MIB]);
    let loc = patch(&c, &r[2], &loc, 6 * MIB, &data[6 * MIB..9 * MIB]);
    assert_eq!(
        offset(&c, &r[0], &loc),
        9 * MIB,
        "every replica knows the offset"
    );

    // replica 2 killed while a PATCH is streaming into it
    let (sent_tx, sent_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    struct Stalling {
        data: Vec<u8>,
        at: usize,
        sent: Option<mpsc::Sender<()>>,
        go: mpsc::Receiver<()>,
    }
    impl Read for Stalling {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at >= 2 * MIB {
                if let Some(s) = self.sent.take() {
                    let _ = s.send(());
                    let _ = self.go.recv();
                }
                return Err(std::io::Error::other("the client gave up"));
            }
            let n = buf.len().min(self.data.len() - self.at).min(64 << 10);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let body = Stalling {
        data: data[9 * MIB..].to_vec(),
        at: 0,
        sent: Some(sent_tx),
        go: go_rx,
    };
    let (url, c2) = (r[2].url(&loc), c.clone());
    let stalled = std::thread::spawn(move || {
        c2.patch(url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::new(body))
            .send()
    });
    sent_rx.recv().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    r[2].kill9();
    go_tx.send(()).unwrap();
    let failed = stalled.join().unwrap();
    assert!(
        failed.as_ref().map_or(true, |x| !x.status().is_success()),
        "a PATCH cut by a killed replica is not acknowledged: {failed:?}"
    );

    // the client asks another replica where the session stands and sends
    // the rest from there: the unacknowledged bytes did not count
    let at = offset(&c, &r[1], &loc);
    assert_eq!(at, 9 * MIB, "the cut PATCH recorded nothing");
    let loc = patch(&c, &r[0], &loc, at, &data[at..]);
    let done = put_done(&c, &r[1], &loc, &digest);
    assert_eq!(done.status(), 201, "{}", done.text().unwrap_or_default());
    assert_blob_pulls(&c, &r[0], "spread/blob", &digest, "the 14 MiB blob");
    // the killed replica comes back and serves it too
    r[2].start_again();
    assert_blob_pulls(&c, &r[2], "spread/blob", &digest, "after its restart");
}

#[test]
fn credentials_and_revocation_hold_on_every_replica_at_once() {
    let r = Server::replicas(3, &[]);
    let (st, _) = call(api(&r[0], A, M::POST, "/registries").json(&json!({"name": "acme"})));
    assert_eq!(st, 201);
    let (st, u) = call(
        api(&r[0], A, M::POST, "/registries/acme/users")
            .json(&json!({"name": "ci", "canPush": true})),
    );
    assert_eq!(st, 201, "{u}");
    let auth = basic(
        u["username"].as_str().unwrap(),
        u["password"].as_str().unwrap(),
    );
    // a JWT from one replica's /token, used on another
    let jwt = jwt(&r[1], Some(&auth), &["repository:acme/app:pull,push"]).unwrap();
    let ask = |s: &Server, header: &str| {
        anonymous_client()
            .get(s.url("/v2/acme/app/tags/list"))
            .header("authorization", header)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let bearer = format!("Bearer {jwt}");
    for s in &r {
        // authorized: the repository does not exist yet
        assert_eq!(ask(s, &bearer), 404, "the JWT on :{}", s.port);
        assert_eq!(ask(s, &auth), 404, "Basic on :{}", s.port);
    }
    // the user deleted through one replica: refused by all, the JWT
    // issued before as well
    let (st, _) = call(api(&r[2], A, M::DELETE, "/registries/acme/users/ci"));
    assert_eq!(st, 204);
    for s in &r {
        assert_eq!(
            ask(s, &bearer),
            401,
            "the JWT after the delete on :{}",
            s.port
        );
        assert_eq!(ask(s, &auth), 401, "Basic after the delete on :{}", s.port);
    }
    // an API token revoked on one replica is refused by the others
    let (st, t) = call(api(&r[0], A, M::POST, "/tokens").json(&json!({"name": "deploy"})));
    assert_eq!(st, 201, "{t}");
    let (id, secret) = (t["id"].as_str().unwrap(), t["secret"].as_str().unwrap());
    assert_eq!(call(api(&r[2], Some(secret), M::GET, "/registries")).0, 200);
    let (st, _) = call(api(&r[1], A, M::POST, &format!("/tokens/{id}/revoke")));
    assert_eq!(st, 200, "revoke");
    for s in &r {
        assert_eq!(
            call(api(s, Some(secret), M::GET, "/registries")).0,
            401,
            "the revoked token on :{}",
            s.port
        );
    }
}

#[test]
fn quota_charges_racing_from_every_replica_never_overshoot() {
    const LIMIT: u64 = 30_000;
    let r = Server::replicas(3, &[]);
    let c = admin_client();
    let (st, _) = call(
        api(&r[0], A, M::POST, "/registries")
            .json(&json!({"name": "qta", "storageLimitBytes": LIMIT})),
    );
    assert_eq!(st, 201);
    push_blob(&c, &r[1], "qta/base", &noise(7, (LIMIT - 12_000) as usize));
    // 36 pushers of distinct 1000-byte blobs, 12 per replica: 12 fit
    let admitted = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for t in 0..36u64 {
            let (c, s, admitted) = (&c, &r[(t % 3) as usize], &admitted);
            sc.spawn(move || {
                let data = noise(100 + t, 1000);
                let rsp = c
                    .post(s.url(&format!(
                        "/v2/qta/app{}/blobs/uploads/?digest={}",
                        t % 4,
                        sha256(&data)
                    )))
                    .body(data)
                    .send()
                    .unwrap();
                match rsp.status().as_u16() {
                    201 => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    403 => {}
                    other => panic!("pusher {t}: {other} {}", rsp.text().unwrap_or_default()),
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 12, "exactly what fits");
    for s in &r {
        let (st, v) = call(api(s, A, M::GET, "/registries/qta"));
        assert_eq!(st, 200);
        assert_eq!(v["bytesUsed"], LIMIT, "to the byte, on :{}", s.port);
    }
}

#[test]
fn an_embedded_instance_moves_to_postgres() {
    let mut s = Server::start_with(&[("BERTH_METADATA_BACKEND", "rocksdb")]);
    let c = admin_client();
    let img = push_image(&c, &s, "moved/app", "v1", "before the move");
    let (st, _) = call(api(&s, A, M::POST, "/registries/moved/users").json(&json!({"name": "ci"})));
    assert_eq!(st, 201);
    s.stop();
    let schema = berth_pgtest::fresh_schema("migrate");
    let pg = [
        ("BERTH_METADATA_POSTGRES_URL", berth_pgtest::server().url()),
        ("BERTH_METADATA_POSTGRES_SCHEMA", schema.as_str()),
    ];
    let migrate = || {
        std::process::Command::new(berth_bin())
            .args([
                "migrate",
                "--from",
                "rocksdb",
                "--to",
                "postgres",
                "--data-dir",
            ])
            .arg(&s.data_dir)
            .envs(pg)
            .output()
            .unwrap()
    };
    let out = migrate();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("copied manifests: 1") && text.contains("ok: "),
        "{text}"
    );
    // a second run finds the schema full and refuses
    let again = migrate();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // started on PostgreSQL: everything is there
    s.set_env("BERTH_METADATA_BACKEND", "postgres");
    for (k, v) in pg {
        s.set_env(k, v);
    }
    s.start_again();
    let m = c
        .get(s.url("/v2/moved/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(m.status(), 200);
    assert_eq!(m.bytes().unwrap().as_ref(), img.manifest.as_slice());
    assert_blob_pulls(&c, &s, "moved/app", &img.layer, "layer after the move");
    let (st, u) = call(api(&s, A, M::GET, "/registries/moved/users"));
    assert_eq!((st, u["total"].as_u64()), (200, Some(1)), "{u}");
    let log = s.log_text();
    assert!(log.contains("metadata in PostgreSQL"), "{log}");
}
