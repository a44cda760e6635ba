//! Real registry clients against the real binary: skopeo, podman, helm,
//! oras-py, containerd's ctr and the docker engine. Each tool must be
//! installed (scripts/install-test-deps.sh); a missing tool fails the suite.

use berth_conformance::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn admin_creds() -> String {
    format!("admin:{ADMIN_TOKEN}")
}

fn manifest_digest(s: &Server, repo: &str, reference: &str) -> (String, String) {
    let r = admin_client()
        .get(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{repo}:{reference}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let d = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    (d, ct)
}

/// A `.dockerconfigjson` for the admin, made by `kubectl create secret
/// docker-registry --dry-run=client` (the exact imagePullSecret format), as
/// an auth file for skopeo and podman.
fn authfile(s: &Server) -> PathBuf {
    let path = std::env::temp_dir().join(format!("berth-authfile-{}.json", s.port));
    if path.exists() {
        return path;
    }
    let kubectl = tools_dir().join("bin/kubectl");
    assert!(
        kubectl.exists(),
        "kubectl missing: run scripts/install-test-deps.sh"
    );
    let out = run(Command::new(kubectl)
        .args(["create", "secret", "docker-registry", "berth-pull"])
        .arg(format!("--docker-server={}", s.host()))
        .args([
            "--docker-username=admin",
            &format!("--docker-password={ADMIN_TOKEN}"),
        ])
        .args(["--dry-run=client", "-o", "json"]));
    let secret: Value = serde_json::from_str(&out).unwrap();
    use base64::Engine;
    let cfg = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    std::fs::write(&path, cfg).unwrap();
    path
}

/// The digest of the `arch` child of the layout's `multi` index.
fn idx_child(dir: &Path, arch: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let multi = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "multi")
        .unwrap();
    let d = multi["digest"].as_str().unwrap();
    let idx: Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap())
            .unwrap();
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn skopeo(s: &Server) -> Command {
    let mut c = Command::new(require("skopeo"));
    c.env("REGISTRY_AUTH_FILE", authfile(s))
        .arg("--insecure-policy");
    c
}

/// The blobs of an OCI layout, as a sorted list of digests.
fn layout_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

#[test]
fn skopeo_single_and_multi_arch_round_trip() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (single, multi, _) = layout::single_and_multi(&src);

    run(skopeo(&s)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            "--dest-creds",
            &admin_creds(),
        ])
        .arg(format!("oci:{}:single", src.display()))
        .arg(format!("docker://{}/sko/app:single", s.host())));
    run(skopeo(&s)
        .args([
            "copy",
            "--all",
            // one manifest format: no fallback attempt hides the refusal
            "--format",
            "oci",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("oci:{}:multi", src.display()))
        .arg(format!("docker://{}/sko/app:multi", s.host())));
    assert_eq!(manifest_digest(&s, "sko/app", "single").0, single);
    let (d, ct) = manifest_digest(&s, "sko/app", "multi");
    assert_eq!(d, multi);
    assert_eq!(ct, OCI_INDEX);

    let out = run(skopeo(&s)
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            "--creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{}/sko/app:multi", s.host())));
    let idx: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    let tags = run(skopeo(&s)
        .args(["list-tags", "--tls-verify=false", "--creds", &admin_creds()])
        .arg(format!("docker://{}/sko/app", s.host())));
    let tags: Value = serde_json::from_str(&tags).unwrap();
    let mut t: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    t.sort();
    assert_eq!(t, ["multi", "single"]);

    // the management API shows what skopeo pushed: kinds, platforms, tags
    let a = Some(ADMIN_TOKEN);
    let (_, v) = call(api(
        &s,
        a,
        reqwest::Method::GET,
        "/registries/sko/repositories/app/artifacts/multi",
    ));
    assert_eq!(
        (v["digest"].as_str(), v["kind"].as_str()),
        (Some(multi.as_str()), Some("image"))
    );
    let plats: Vec<&str> = v["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(plats, ["amd64", "arm64"]);
    let (_, v) = call(api(
        &s,
        a,
        reqwest::Method::GET,
        "/registries/sko/repositories/app/artifacts/single",
    ));
    assert_eq!(
        v["platform"],
        serde_json::json!({"os": "linux", "architecture": "amd64"})
    );
    assert_eq!(v["tags"], serde_json::json!(["single"]));
    let layers: u64 = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sizeBytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        v["sizeBytes"].as_u64().unwrap(),
        v["manifestBytes"].as_u64().unwrap() + v["config"]["sizeBytes"].as_u64().unwrap() + layers
    );
    let (_, v) = call(api(
        &s,
        a,
        reqwest::Method::GET,
        "/registries/sko/repositories/app",
    ));
    assert_eq!(
        (
            v["kind"].as_str(),
            v["artifactCount"].as_i64(),
            v["tagCount"].as_i64()
        ),
        (Some("image"), Some(3), Some(2))
    );
    let blobs: u64 = layout_blobs(&src).iter().filter(|d| ![&single, &multi].contains(d))
        .map(|d| std::fs::metadata(src.join("blobs/sha256").join(&d[7..])).unwrap().len()).sum::<u64>()
        // the arm64 image's manifest is a file of the layout, a manifest (not a blob) here
        - std::fs::metadata(src.join("blobs/sha256").join(&idx_child(&src, "arm64")[7..])).unwrap().len();
    assert_eq!(
        v["blobBytes"].as_u64(),
        Some(blobs),
        "configs and layers, each once"
    );

    // tag history against skopeo pushes, and a restore through the API
    for tag in ["single", "multi"] {
        run(skopeo(&s)
            .args([
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .arg(format!("oci:{}:{tag}", src.display()))
            .arg(format!("docker://{}/sko/app:moving", s.host())));
    }
    let (_, h) = call(api(
        &s,
        a,
        reqwest::Method::GET,
        "/registries/sko/repositories/app/tags/moving/history",
    ));
    let moves: Vec<(Value, Value)> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (Value::from(single.clone()), Value::from(multi.clone())),
            (Value::Null, Value::from(single.clone()))
        ]
    );
    let (st, _) = call(
        api(
            &s,
            a,
            reqwest::Method::PUT,
            "/registries/sko/repositories/app/tags/moving",
        )
        .json(&serde_json::json!({"digest": single})),
    );
    assert_eq!(st, 200);
    assert_eq!(
        manifest_digest(&s, "sko/app", "moving").0,
        single,
        "restored, seen on /v2/"
    );

    // a read-only .dockerconfigjson from the credentials endpoint: skopeo
    // pulls with it and is refused on push
    let (st, cred) = call(api(
        &s,
        a,
        reqwest::Method::POST,
        "/registries/sko/docker-credentials",
    ));
    assert_eq!(st, 201, "{cred}");
    let ro_auth = tmp.path().join("config.json");
    std::fs::write(&ro_auth, serde_json::to_vec(&cred["dockerConfig"]).unwrap()).unwrap();
    let pulled = tmp.path().join("ro-pull");
    run(Command::new(require("skopeo"))
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--authfile",
        ])
        .arg(&ro_auth)
        .arg(format!("docker://{}/sko/app:single", s.host()))
        .arg(format!("oci:{}:single", pulled.display())));
    let push = Command::new(require("skopeo"))
        .args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--authfile",
        ])
        .arg(&ro_auth)
        .arg(format!("oci:{}:single", src.display()))
        .arg(format!("docker://{}/sko/other:single", s.host()))
        .output()
        .unwrap();
    assert!(!push.status.success(), "a read-only credential pushed");

    // pull everything back and compare blob for blob
    let back = tmp.path().join("back");
    run(skopeo(&s)
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{}/sko/app:multi", s.host()))
        .arg(format!("oci:{}:multi", back.display())));
    let want = layout_blobs(&src);
    let got = layout_blobs(&back);
    for d in &got {
        assert!(want.contains(d), "pulled blob {d} was never pushed");
    }
    assert!(got.contains(&multi));
    assert_eq!(
        got.len(),
        1 + 2 * 3,
        "index + two images of manifest, config, layer"
    );

    // `skopeo login` writes its own auth file, which then works alone;
    // a wrong password is refused
    let own = tmp.path().join("skopeo-login.json");
    run(Command::new(require("skopeo"))
        .args(["login", "--tls-verify=false", "--authfile"])
        .arg(&own)
        .args(["-u", "admin", "-p", ADMIN_TOKEN, &s.host()]));
    run(Command::new(require("skopeo"))
        .args(["inspect", "--tls-verify=false", "--raw", "--authfile"])
        .arg(&own)
        .arg(format!("docker://{}/sko/app:multi", s.host())));
    let bad = Command::new(require("skopeo"))
        .args(["login", "--tls-verify=false", "--authfile"])
        .arg(tmp.path().join("bad.json"))
        .args([
            "-u",
            "admin",
            "-p",
            "berth_admin_wrongwrongwrongwrongwrongwrong",
            &s.host(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a wrong password must not log in");

    assert_pulls_redirected(&s);
    // skopeo delete by digest
    run(skopeo(&s)
        .args(["delete", "--tls-verify=false", "--creds", &admin_creds()])
        .arg(format!("docker://{}/sko/app@{single}", s.host())));
    let r = admin_client()
        .get(s.url("/v2/sko/app/manifests/single"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn podman(store: &Path, s: &Server) -> Command {
    let mut c = Command::new(require("podman"));
    c.env("REGISTRY_AUTH_FILE", authfile(s))
        .arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ]);
    c
}

#[test]
fn podman_push_v2s2_and_pull() {
    let s = Server::start();
    // podman names an image pulled from oci:DIR after DIR: keep it lowercase.
    let tmp = tempfile::Builder::new()
        .prefix("berthpod")
        .rand_bytes(0)
        .suffix(&s.port.to_string())
        .tempdir()
        .unwrap();
    let src = tmp.path().join("src");
    layout::single_and_multi(&src);
    let store = tmp.path().join("podman");
    let target = format!("{}/pod/app:v2s2", s.host());
    run(podman(&store, &s)
        .arg("pull")
        .arg(format!("oci:{}:single", src.display())));
    let images = run(podman(&store, &s).args(["images", "--format", "{{.ID}}"]));
    let id = images.lines().next().expect("an image").trim().to_string();
    run(podman(&store, &s).args([
        "push",
        "--tls-verify=false",
        "--format",
        "v2s2",
        &id,
        &target,
    ]));
    let (_, ct) = manifest_digest(&s, "pod/app", "v2s2");
    assert_eq!(ct, "application/vnd.docker.distribution.manifest.v2+json");
    run(podman(&store, &s).args(["rmi", "-a", "-f"]));
    run(podman(&store, &s).args([
        "pull",
        "--tls-verify=false",
        "--creds",
        &admin_creds(),
        &target,
    ]));
    let inspect = run(podman(&store, &s).args(["image", "inspect", &target]));
    let v: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["Architecture"], "amd64");
    run(podman(&store, &s).args(["rmi", "-a", "-f"]));
    // `podman login` into its own auth file, then a pull with that alone
    let own = tmp.path().join("podman-login.json");
    run(podman(&store, &s)
        .args(["login", "--tls-verify=false", "--authfile"])
        .arg(&own)
        .args(["-u", "admin", "-p", ADMIN_TOKEN, &s.host()]));
    run(podman(&store, &s)
        .env_remove("REGISTRY_AUTH_FILE")
        .args(["pull", "--tls-verify=false", "--authfile"])
        .arg(&own)
        .arg(&target));
    run(podman(&store, &s).args(["rmi", "-a", "-f"]));
}

#[test]
fn helm_push_and_pull_byte_identical() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let chart = write_chart(tmp.path(), "berthchart");
    let tgz = helm_round_trip(tmp.path(), &s, &chart, "berthchart");
    let shown = run(helm(tmp.path())
        .arg("show")
        .arg("chart")
        .arg(format!("oci://{}/charts/berthchart", s.host()))
        .args(["--version", "0.1.0", "--plain-http"]));
    assert!(shown.contains("name: berthchart"), "{shown}");
    let (d, ct) = manifest_digest(&s, "charts/berthchart", "0.1.0");
    assert_eq!(ct, OCI_MANIFEST);
    // the management API: a Helm chart repository, sized by its parts
    let (_, v) = call(api(
        &s,
        Some(ADMIN_TOKEN),
        reqwest::Method::GET,
        "/registries/charts/repositories/berthchart",
    ));
    assert_eq!(
        (
            v["kind"].as_str(),
            v["tagCount"].as_i64(),
            v["artifactCount"].as_i64()
        ),
        (Some("helm_chart"), Some(1), Some(1))
    );
    let (_, a) = call(api(
        &s,
        Some(ADMIN_TOKEN),
        reqwest::Method::GET,
        "/registries/charts/repositories/berthchart/artifacts/0.1.0",
    ));
    assert_eq!(
        (a["digest"].as_str(), a["kind"].as_str()),
        (Some(d.as_str()), Some("helm_chart"))
    );
    assert_eq!(
        a["layers"][0]["sizeBytes"].as_u64(),
        Some(std::fs::metadata(&tgz).unwrap().len())
    );
    assert_eq!(
        v["sizeBytes"], a["sizeBytes"],
        "one chart: the repository is its size"
    );
}

#[test]
fn oras_artifact_with_subject_found_through_referrers() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let py = tools_dir().join("venv/bin/python");
    assert!(
        py.exists(),
        "oras-py missing: run scripts/install-test-deps.sh"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/oras_artifacts.py");
    let out = run(Command::new(py)
        .arg(script)
        .arg(s.host())
        .arg(tmp.path())
        .arg(ADMIN_TOKEN));
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let subject = v["subject"].as_str().unwrap();
    let sig = v["signature"].as_str().unwrap();
    let idx: Value = admin_client()
        .get(s.url(&format!("/v2/oras/artifact/referrers/{subject}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 1, "{idx}");
    assert_eq!(ms[0]["digest"], sig);
    assert_eq!(ms[0]["artifactType"], "application/vnd.example.signature");
    assert_eq!(
        ms[0]["annotations"]["org.example.signer"],
        "berth-conformance"
    );
    // the management API groups the subject's referrers by artifactType
    let (_, a) = call(api(
        &s,
        Some(ADMIN_TOKEN),
        reqwest::Method::GET,
        &format!("/registries/oras/repositories/artifact/artifacts/{subject}"),
    ));
    assert_eq!(
        a["referrers"]["application/vnd.example.signature"][0]["digest"], sig,
        "{a}"
    );
    let (_, g) = call(api(
        &s,
        Some(ADMIN_TOKEN),
        reqwest::Method::GET,
        &format!("/registries/oras/repositories/artifact/artifacts/{sig}"),
    ));
    assert_eq!(
        (g["kind"].as_str(), g["subject"].as_str()),
        (Some("artifact"), Some(subject))
    );
}

/// containerd with its own root, state and socket; stopped on drop.
struct Containerd {
    child: std::process::Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let bin = require("containerd");
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in("/tmp")
            .unwrap();
        let sock = dir.path().join("c.sock");
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n",
                r = dir.path().display(),
                s = sock.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !sock.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Containerd {
            child,
            sock,
            _dir: dir,
        }
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new(require("ctr"));
        c.arg("--address").arg(&self.sock);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctr_pulls_a_multi_arch_image() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (_, multi, _) = layout::single_and_multi(&src);
    run(skopeo(&s)
        .args([
            "copy",
            "--all",
            // one manifest format: no fallback attempt hides the refusal
            "--format",
            "oci",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("oci:{}:multi", src.display()))
        .arg(format!("docker://{}/ctr/app:multi", s.host())));
    let c = Containerd::start();
    let image = format!("{}/ctr/app:multi", s.host());
    run(c
        .ctr()
        .args(["images", "pull", "--plain-http", "--all-platforms"])
        .args(["--user", &admin_creds(), &image]));
    let list = run(c.ctr().args(["images", "ls"]));
    assert!(list.contains(&image) && list.contains(&multi), "{list}");
    // every blob of both platforms arrived
    let content = run(c.ctr().args(["content", "ls", "-q"]));
    for d in layout_blobs(&src) {
        assert!(content.contains(&d), "ctr lacks {d}:\n{content}");
    }
    assert_pulls_redirected(&s);
}

#[test]
fn docker_push_and_pull() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let dk = || docker_cli(&cfg);
    let info = dk().arg("info").output().unwrap();
    assert!(
        info.status.success(),
        "no docker daemon answers: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let src = tmp.path().join("src");
    layout::single_and_multi(&src);
    let archive = tmp.path().join("img.tar");
    let local = format!("berth-e2e/single:{}", s.port);
    run(skopeo(&s)
        .arg("copy")
        .arg(format!("oci:{}:single", src.display()))
        .arg(format!("docker-archive:{}:{local}", archive.display())));
    run(dk().arg("load").arg("-i").arg(&archive));
    let remote = format!("{}/dock/app:v1", s.host());
    let cleanup = |names: &[&str]| {
        for n in names {
            let _ = dk().args(["rmi", "-f", n]).output();
        }
    };
    run(dk().args(["tag", &local, &remote]));
    run(dk().args([
        "login",
        &s.host(),
        "--username",
        "admin",
        "--password",
        ADMIN_TOKEN,
    ]));
    let pushed = dk().args(["push", &remote]).output().unwrap();
    if !pushed.status.success() {
        cleanup(&[&local, &remote]);
        panic!(
            "docker push failed: {}",
            String::from_utf8_lossy(&pushed.stderr)
        );
    }
    cleanup(&[&local, &remote]);
    let pulled = dk().args(["pull", &remote]).output().unwrap();
    let inspect = dk().args(["image", "inspect", &remote]).output().unwrap();
    cleanup(&[&remote]);
    assert!(
        pulled.status.success(),
        "docker pull failed: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let v: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v[0]["Architecture"], "amd64");
    assert_pulls_redirected(&s);
    let (_, ct) = manifest_digest(&s, "dock/app", "v1");
    assert!(
        ct.starts_with("application/vnd.docker.distribution.manifest.v2+json")
            || ct == OCI_MANIFEST
            || ct == OCI_INDEX,
        "{ct}"
    );
}

/// What a failed command said, for the reason of a refusal.
fn fails(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} was expected to fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tag_rules_hold_against_skopeo_and_docker_pushes() {
    use reqwest::Method as M;
    use serde_json::json;
    let s = Server::start();
    let a = Some(ADMIN_TOKEN);
    let (st, _) = call(api(&s, a, M::POST, "/registries").json(&json!({"name": "rules"})));
    assert_eq!(st, 201);
    let (st, u) = call(
        api(&s, a, M::POST, "/registries/rules/users")
            .json(&json!({"name": "ci", "canPush": true})),
    );
    assert_eq!(st, 201, "{u}");
    let ci = format!("rules+ci:{}", u["password"].as_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (single, multi, _) = layout::single_and_multi(&src);
    let copy = |from: &str, to: &str, creds: &str| {
        let mut c = Command::new(require("skopeo"));
        c.args([
            "--insecure-policy",
            "copy",
            "--all",
            // one manifest format: no fallback attempt hides the refusal
            "--format",
            "oci",
            "--dest-tls-verify=false",
            "--preserve-digests",
            "--dest-creds",
            creds,
        ])
        .arg(format!("oci:{}:{from}", src.display()))
        .arg(format!("docker://{}/rules/app:{to}", s.host()));
        c
    };
    run(&mut copy("single", "v1.0", &ci));
    run(&mut copy("single", "dev", &ci));

    // the rules, the admin's to make (a read-write token may not)
    let (_, tok) = call(
        api(&s, a, M::POST, "/tokens")
            .json(&json!({"name": "rw", "registries": ["rules"], "readWrite": true})),
    );
    let rw = tok["secret"].as_str().unwrap().to_string();
    let rule = |kind: &str, tag: &str| json!({"kind": kind, "tagPattern": tag});
    let (st, v) = call(
        api(&s, Some(&rw), M::POST, "/registries/rules/tag-rules").json(&rule("immutable", "v.*")),
    );
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (st, v) = call(
        api(&s, a, M::POST, "/registries/rules/tag-rules").json(&rule("immutable", "v[0-9.]+")),
    );
    assert_eq!(st, 201, "{v}");
    let frozen = v["id"].as_str().unwrap().to_string();
    let (st, _) =
        call(api(&s, a, M::POST, "/registries/rules/tag-rules").json(&rule("protected", "latest")));
    assert_eq!(st, 201);
    let (st, v) =
        call(api(&s, a, M::POST, "/registries/rules/tag-rules").json(&rule("immutable", "(")));
    assert_eq!(st, 400, "{v}");
    let (st, v) = call(api(&s, Some(&rw), M::GET, "/registries/rules/tag-rules"));
    assert_eq!(
        (st, v["items"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{v}"
    );

    // immutable: skopeo cannot push over it, as the user or the admin, nor
    // delete it; a new matching tag is created once
    for creds in [ci.clone(), admin_creds()] {
        let out = fails(&mut copy("multi", "v1.0", &creds));
        assert!(out.contains("immutable"), "{out}");
    }
    let out = fails(
        Command::new(require("skopeo"))
            .args(["delete", "--tls-verify=false", "--creds", &admin_creds()])
            .arg(format!("docker://{}/rules/app:v1.0", s.host())),
    );
    assert!(out.contains("immutable"), "{out}");
    assert_eq!(manifest_digest(&s, "rules/app", "v1.0").0, single);
    run(&mut copy("multi", "v2.0", &ci));
    run(&mut copy("multi", "v2.0", &ci)); // the same push again is no change
                                          // a tag the pattern does not match as a whole moves freely
    run(&mut copy("multi", "v1.0-rc", &ci));
    run(&mut copy("single", "v1.0-rc", &ci));

    // protected: the user may not create it, the admin may
    let out = fails(&mut copy("single", "latest", &ci));
    assert!(out.contains("protected"), "{out}");
    run(&mut copy("single", "latest", &admin_creds()));

    // docker, logged in as the user: refused on the protected and the
    // immutable tag, accepted elsewhere
    let cfg = tmp.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let dk = || docker_cli(&cfg);
    let archive = tmp.path().join("img.tar");
    let local = format!("berth-e2e/rules:{}", s.port);
    run(Command::new(require("skopeo"))
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{}:multi", src.display()))
        .args(["--override-arch", "arm64"])
        .arg(format!("docker-archive:{}:{local}", archive.display())));
    run(dk().arg("load").arg("-i").arg(&archive));
    let (user, pass) = ci.split_once(':').unwrap();
    run(dk().args(["login", &s.host(), "--username", user, "--password", pass]));
    let mut names = vec![local.clone()];
    let mut outcome = Vec::new();
    for tag in ["latest", "v1.0", "docker-ok"] {
        let remote = format!("{}/rules/app:{tag}", s.host());
        run(dk().args(["tag", &local, &remote]));
        let out = dk().args(["push", &remote]).output().unwrap();
        outcome.push((
            tag,
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
        names.push(remote);
    }
    for n in &names {
        let _ = dk().args(["rmi", "-f", n]).output();
    }
    assert!(
        !outcome[0].1 && outcome[0].2.contains("denied"),
        "{outcome:?}"
    );
    assert!(
        !outcome[1].1 && outcome[1].2.contains("denied"),
        "{outcome:?}"
    );
    assert!(outcome[2].1, "{outcome:?}");
    assert_eq!(manifest_digest(&s, "rules/app", "latest").0, single);
    assert_eq!(manifest_digest(&s, "rules/app", "v1.0").0, single);

    // through the management API too, and the repository cannot go
    let (st, v) = call(api(
        &s,
        a,
        M::DELETE,
        "/registries/rules/repositories/app/tags/v1.0",
    ));
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("tag_immutable")),
        "{v}"
    );
    let (st, v) = call(api(
        &s,
        Some(&rw),
        M::DELETE,
        "/registries/rules/repositories/app/tags/latest",
    ));
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("tag_protected")),
        "{v}"
    );
    let (st, v) = call(api(&s, a, M::DELETE, "/registries/rules/repositories/app"));
    assert_eq!(st, 409, "{v}");

    // the rule goes: the tag moves again
    let (st, _) = call(api(
        &s,
        a,
        M::DELETE,
        &format!("/registries/rules/tag-rules/{frozen}"),
    ));
    assert_eq!(st, 204);
    run(&mut copy("multi", "v1.0", &ci));
    assert_eq!(manifest_digest(&s, "rules/app", "v1.0").0, multi);
}
