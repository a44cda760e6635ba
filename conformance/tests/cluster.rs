//! Berth deployed as a cluster of hosts, the way a company runs it: three
//! Berth replicas, each on a host of its own (a network namespace with its
//! own address, `conformance/src/net.rs`), behind a load balancer (HAProxy,
//! round-robin per request, `conformance/src/balancer.rs`) that is the
//! registry's one name; metadata in one PostgreSQL on the database host;
//! blobs in a three-node Garage cluster, each node on a host of its own and
//! holding every object, reached through the balancer (active/standby: the
//! first live node takes the S3 traffic).
//!
//! Real clients go through the balancer: skopeo and the Docker engine push
//! and pull with their requests spread over the replicas; the Garage node
//! serving a pull is killed in the middle of it and the pull completes; a
//! replica is killed in the middle of a docker push, the engine's own retry
//! lands on another replica and nothing acknowledged is lost.

use berth_conformance::cluster::Cluster;
use berth_conformance::*;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn creds() -> String {
    format!("admin:{ADMIN_TOKEN}")
}

/// skopeo with an auth file of the test's own.
fn skopeo(home: &Path) -> Command {
    let mut c = Command::new(require("skopeo"));
    c.env("REGISTRY_AUTH_FILE", home.join("auth.json"))
        .arg("--insecure-policy");
    c
}

/// skopeo copies tag `tag` of the layout `src` to `to` (a reference at
/// the balancer), with every platform when `all`.
fn push_layout(home: &Path, src: &Path, tag: &str, to: &str, all: bool) {
    let mut c = skopeo(home);
    c.arg("copy");
    if all {
        c.args(["--all", "--format", "oci"]);
    }
    run(c
        .args([
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds(),
        ])
        .arg(format!("oci:{}:{tag}", src.display()))
        .arg(format!("docker://{to}")));
}

/// skopeo copies `from` (every platform) into a layout at `dir`; its blobs.
fn pull_layout(home: &Path, from: &str, dir: &Path) -> Vec<String> {
    run(skopeo(home)
        .args(["copy", "--all", "--preserve-digests"])
        .args(["--src-tls-verify=false", "--src-creds", &creds()])
        .arg(format!("docker://{from}"))
        .arg(format!("oci:{}:pulled", dir.display())));
    layout_blobs(dir)
}

/// The blobs of an OCI layout, sorted.
fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The Docker engine with a config directory of the test's, removing the
/// images it tagged when the test ends.
struct Docker {
    cfg: tempfile::TempDir,
    images: Vec<String>,
}

impl Docker {
    fn new() -> Docker {
        let d = Docker {
            cfg: tempfile::tempdir().unwrap(),
            images: Vec::new(),
        };
        let info = d.cmd().arg("info").output().unwrap();
        assert!(
            info.status.success(),
            "no docker daemon answers: {}",
            String::from_utf8_lossy(&info.stderr)
        );
        d
    }
    fn cmd(&self) -> Command {
        docker_cli(self.cfg.path())
    }
    /// Tag `tag` of the layout `src` loaded into the engine as `remote`
    /// (through a docker-archive made by skopeo in `home`), and the engine
    /// logged in at the balancer `front`. The local name, removed after.
    fn load_as(&mut self, home: &Path, src: &Path, tag: &str, front: &str, remote: &str) -> String {
        let archive = home.join(format!("{tag}.tar"));
        let local = format!("berth-cluster/{tag}:{}", std::process::id());
        run(skopeo(home)
            .arg("copy")
            .arg(format!("oci:{}:{tag}", src.display()))
            .arg(format!("docker-archive:{}:{local}", archive.display())));
        run(self.cmd().arg("load").arg("-i").arg(&archive));
        self.images.push(local.clone());
        run(self.cmd().args(["tag", &local, remote]));
        self.images.push(remote.to_string());
        let login = [
            "login",
            front,
            "--username",
            "admin",
            "--password",
            ADMIN_TOKEN,
        ];
        run(self.cmd().args(login));
        local
    }
    fn rmi(&self, name: &str) {
        let _ = self.cmd().args(["rmi", "-f", name]).output();
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for i in &self.images {
            self.rmi(i);
        }
    }
}

#[test]
fn real_clients_through_a_balancer_and_a_garage_node_lost_mid_pull() {
    let k = Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let front = k.front.clone();

    // skopeo: a multi-arch index and a single image in, copied back out
    let src = home.join("src");
    let (single, multi, _) = layout::single_and_multi(&src);
    push_layout(home, &src, "multi", &format!("{front}/sko/app:multi"), true);
    push_layout(
        home,
        &src,
        "single",
        &format!("{front}/sko/app:single"),
        false,
    );
    let back = pull_layout(home, &format!("{front}/sko/app:multi"), &home.join("back"));
    assert_eq!(back, layout_blobs(&src));
    // the manifests as pushed, byte for byte
    let raw = |r: &str| -> String {
        run(skopeo(home)
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                &creds(),
            ])
            .arg(format!("docker://{front}/{r}")))
    };
    assert_eq!(sha256(raw("sko/app:multi").as_bytes()), multi);
    assert_eq!(sha256(raw("sko/app:single").as_bytes()), single);

    // the Docker engine: push, forget, pull
    let mut d = Docker::new();
    let remote = format!("{front}/dock/app:v1");
    let local = d.load_as(home, &src, "single", &front, &remote);
    run(d.cmd().args(["push", &remote]));
    d.rmi(&remote);
    d.rmi(&local);
    run(d.cmd().args(["pull", &remote]));
    let v: Value = serde_json::from_str(&run(d.cmd().args(["image", "inspect", &remote]))).unwrap();
    assert_eq!(v[0]["Architecture"], "amd64");

    // the requests were spread: every replica answered some, and the
    // writes of one push landed on more than one replica
    let served = k.served_by("registry");
    for i in 0..k.replicas.len() {
        let n = served.iter().filter(|s| s.server == k.name(i)).count();
        assert!(
            n > 3,
            "{} answered {n} requests:\n{}",
            k.name(i),
            k.lb.log_text()
        );
    }
    let mut writers: Vec<&str> = served
        .iter()
        .filter(|s| matches!(s.method.as_str(), "POST" | "PATCH" | "PUT"))
        .map(|s| s.server.as_str())
        .collect();
    writers.sort();
    writers.dedup();
    assert!(writers.len() > 1, "writes all on {writers:?}");
    for s in &served {
        assert!(s.status < 500, "{s:?}");
    }

    // a pull whose Garage node is killed in the middle of it: the replica's
    // read of the object resumes on another node, the client sees nothing
    let blob = noise(7, 96 * MIB);
    let digest = sha256(&blob);
    let c = admin_client();
    let r = c
        .post(format!("http://{front}/v2/big/blob/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with('/') {
        format!("http://{front}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(blob)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let before = k.served_by("s3").len();
    let mut pull = c
        .get(format!("http://{front}/v2/big/blob/blobs/{digest}"))
        .send()
        .unwrap();
    assert_eq!(pull.status(), 200);
    let mut first = vec![0u8; MIB];
    pull.read_exact(&mut first).unwrap();
    k.infra.garage.kill_node(0);
    let mut rest = Vec::new();
    pull.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(first.len(), 96 * MIB, "the whole blob");
    assert_eq!(sha256(&first), digest, "the same bytes");
    let hex = &digest[7..];
    let reads: Vec<_> = k.served_by("s3")[before..]
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains(hex))
        .cloned()
        .collect();
    assert!(
        reads.iter().any(|s| s.server == "garage1"),
        "the pull started on the first node: {reads:?}"
    );
    assert!(
        reads
            .iter()
            .any(|s| s.server != "garage1" && s.status / 100 == 2),
        "the read resumed on another node: {reads:?}"
    );

    // two nodes of three: clients go on pulling and pushing
    d.rmi(&remote);
    run(d.cmd().args(["pull", &remote]));
    push_layout(
        home,
        &src,
        "single",
        &format!("{front}/sko/after:v1"),
        false,
    );
    let again = pull_layout(home, &format!("{front}/sko/app:multi"), &home.join("again"));
    assert_eq!(again, layout_blobs(&src));
}

/// Until one replica has taken `at_least` more request bytes than its
/// count in `base`: that replica's index.
fn receiving(k: &Cluster, base: &[f64], at_least: f64, until: Instant) -> Option<usize> {
    while Instant::now() < until {
        for (i, s) in k.replicas.iter().enumerate() {
            let now = metric(&s.metrics(), "berth_http_received_bytes_total").unwrap_or(0.0);
            if now - base[i] >= at_least {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_replica_killed_mid_push_and_the_engines_retry_on_another_loses_nothing() {
    let mut k = Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let front = k.front.clone();

    // acknowledged before anything fails
    let src = home.join("src");
    let (single, _, _) = layout::single_and_multi(&src);
    push_layout(home, &src, "single", &format!("{front}/keep/app:v1"), false);

    // an image with a layer big enough to be caught in flight
    let big = home.join("big");
    let payload = noise(11, 160 * MIB);
    let img = layout::image_with(&big, "amd64", &[("payload.bin", &payload)]);
    drop(payload);
    layout::write_index(
        &big,
        &[(
            "big",
            OCI_MANIFEST,
            &img.manifest_digest,
            img.manifest.len(),
        )],
    );
    let mut d = Docker::new();
    let remote = format!("{front}/big/app:v1");
    let local = d.load_as(home, &big, "big", &front, &remote);

    let base: Vec<f64> = k
        .replicas
        .iter()
        .map(|s| metric(&s.metrics(), "berth_http_received_bytes_total").unwrap_or(0.0))
        .collect();
    let push = d
        .cmd()
        .args(["push", &remote])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let victim = receiving(
        &k,
        &base,
        16.0 * MIB as f64,
        Instant::now() + Duration::from_secs(120),
    )
    .expect("no replica took the layer's bytes");
    k.replicas[victim].kill9();
    let out = push.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "docker push, replica {victim} killed under it: {said}"
    );

    // the layer's upload went on elsewhere: a PATCH or PUT cut on the
    // victim, the layer finished on another replica
    let served = k.served_by("registry");
    let victim_name = k.name(victim);
    let uploads = "/v2/big/app/blobs/uploads/";
    assert!(
        served.iter().any(|s| s.server == victim_name
            && s.path.starts_with(uploads)
            && (s.status >= 500 || s.status == 0)),
        "the victim's cut upload in the log:\n{}",
        k.lb.log_text()
    );
    assert!(
        served.iter().any(|s| s.server != victim_name
            && s.method == "PUT"
            && s.path.starts_with(uploads)
            && s.status == 201),
        "an upload finished on another replica:\n{}",
        k.lb.log_text()
    );

    // nothing acknowledged is lost, on every live replica
    let c = admin_client();
    for (i, s) in k.replicas.iter().enumerate() {
        if i == victim {
            continue;
        }
        let r = c
            .get(s.url("/v2/keep/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sha256(&r.bytes().unwrap()), single);
        let r = c
            .get(s.url("/v2/big/app/manifests/v1"))
            .header("accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "the pushed image on {}", s.host());
        let m: Value = r.json().unwrap();
        for l in m["layers"].as_array().unwrap() {
            let d = l["digest"].as_str().unwrap();
            assert_blob_pulls(&c, s, "big/app", d, "the big layer");
        }
    }
    // the engine pulls it back through the balancer
    d.rmi(&remote);
    d.rmi(&local);
    run(d.cmd().args(["pull", &remote]));
    // and the killed replica, started again, serves it too
    k.start_stopped();
    let r = c
        .get(k.replicas[victim].url("/v2/big/app/manifests/v1"))
        .header("accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
