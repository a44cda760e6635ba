//! `deploy/`, started for real: the container image built offline and run
//! with the Docker engine, the Helm chart linted, rendered, validated
//! against the Kubernetes schemas and pushed into Berth, the compose file
//! and its Garage set-up, the systemd unit and its sample config
//! (docs/deploy.md).

use berth_conformance::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn deploy(rel: &str) -> PathBuf {
    repo_root().join("deploy").join(rel)
}

/// Docker, cleaning up what a test made even when it fails.
struct Docker {
    cfg: tempfile::TempDir,
    containers: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Docker {
    fn new() -> Docker {
        let d = Docker {
            cfg: tempfile::tempdir().unwrap(),
            containers: Vec::new(),
            volumes: Vec::new(),
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
    fn inspect(&self, what: &str) -> Value {
        let o = run(self.cmd().args(["inspect", what]));
        serde_json::from_str::<Value>(&o).unwrap()[0].clone()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.cmd().args(["rm", "-f", c]).output();
        }
        for v in &self.volumes {
            let _ = self.cmd().args(["volume", "rm", "-f", v]).output();
        }
        for i in &self.images {
            let _ = self.cmd().args(["rmi", "-f", i]).output();
        }
    }
}

/// Wait for the engine to call the container healthy (its HEALTHCHECK,
/// `berth healthcheck`, passed).
fn wait_healthy(d: &Docker, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = d.inspect(name);
        let health = v["State"]["Health"]["Status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if health == "healthy" {
            return;
        }
        assert!(
            v["State"]["Running"].as_bool() == Some(true) && Instant::now() < deadline,
            "{name} not healthy ({health}): {}\n{}",
            v["State"],
            String::from_utf8_lossy(&d.cmd().args(["logs", name]).output().unwrap().stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_image_runs_non_root_read_only_and_keeps_its_volume() {
    let d = Docker::new();
    let tag = format!("berth-e2e/berth:{}", std::process::id());
    let built = run(Command::new(deploy("image/build.sh"))
        .arg(&tag)
        .env("BERTH_BIN", berth_bin()));
    assert!(built.contains("built"), "{built}");
    let mut d = d;
    d.images.push(tag.clone());
    let img = d.inspect(&tag);
    assert_eq!(img["Config"]["User"], "10001:10001");
    assert_eq!(
        img["Config"]["ExposedPorts"]["5000/tcp"],
        serde_json::json!({})
    );
    assert!(img["Config"]["Volumes"]["/var/lib/berth"].is_object());
    assert!(img["Config"]["Healthcheck"]["Test"]
        .to_string()
        .contains("healthcheck"));

    let vol = format!("berth-e2e-{}", std::process::id());
    run(d.cmd().args(["volume", "create", &vol]));
    d.volumes.push(vol.clone());
    let port = free_port();
    let start = |d: &mut Docker, n: u32| -> String {
        let name = format!("berth-e2e-{}-{n}", std::process::id());
        run(d.cmd().args([
            "run",
            "-d",
            "--name",
            &name,
            "--read-only",
            "-p",
            &format!("127.0.0.1:{port}:5000"),
            "-v",
            &format!("{vol}:/var/lib/berth"),
            &tag,
        ]));
        d.containers.push(name.clone());
        wait_healthy(d, &name);
        name
    };
    let first = start(&mut d, 1);
    let c = d.inspect(&first);
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true);
    // the admin token it made on its first start, as docs/deploy.md reads it
    let token = run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker cp {first}:/var/lib/berth/admin-token - | tar -xO"
        ))
        .env("DOCKER_CONFIG", d.cfg.path()))
    .trim()
    .to_string();
    assert!(token.starts_with("berth_admin_"), "{token}");
    // the server process itself runs as 10001, seen from the host
    let pid = c["State"]["Pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "10001"),
        "{uid}"
    );

    // a docker push / pull round trip through it
    let host = format!("127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    layout::single_and_multi(&src);
    let archive = tmp.path().join("img.tar");
    let local = format!("berth-e2e/deployed:{port}");
    run(Command::new(require("skopeo"))
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{}:single", src.display()))
        .arg(format!("docker-archive:{}:{local}", archive.display())));
    run(d.cmd().arg("load").arg("-i").arg(&archive));
    let remote = format!("{host}/deploy/app:v1");
    d.images.push(local.clone());
    d.images.push(remote.clone());
    run(d.cmd().args(["tag", &local, &remote]));
    run(d
        .cmd()
        .args(["login", &host, "--username", "admin", "--password", &token]));
    run(d.cmd().args(["push", &remote]));
    run(d.cmd().args(["rmi", "-f", &remote, &local]));
    run(d.cmd().args(["pull", &remote]));
    let pulled = d.inspect(&remote);
    assert_eq!(pulled["Architecture"], "amd64");

    // docker stop: SIGTERM, a graceful exit (0) well within the grace period
    let t0 = Instant::now();
    run(d.cmd().args(["stop", "-t", "30", &first]));
    let stopped = t0.elapsed();
    let st = d.inspect(&first);
    assert_eq!(st["State"]["ExitCode"], 0, "{}", st["State"]);
    assert!(
        stopped < Duration::from_secs(30),
        "stopped after {stopped:?}"
    );
    let logs = d.cmd().args(["logs", &first]).output().unwrap();
    let logs =
        String::from_utf8_lossy(&logs.stderr).into_owned() + &String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("shutting down"), "{logs}");
    run(d.cmd().args(["rm", &first]));

    // a second container on the same volume serves what was pushed
    let _second = start(&mut d, 2);
    let c = reqwest::blocking::Client::new();
    let r = c
        .get(format!("http://{host}/v2/deploy/app/manifests/v1"))
        .header("authorization", basic("admin", &token))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    run(d.cmd().args(["rmi", "-f", &remote]));
    run(d.cmd().args(["pull", &remote]));
}

/// The value sets the chart is rendered with: the default, S3 with a
/// Deployment, TLS on Berth with an Ingress and a ServiceMonitor, an
/// existing admin Secret without persistence, and a given token.
const VALUE_SETS: &[(&str, &[&str])] = &[
    ("default", &[]),
    (
        "deployment-s3",
        &[
            "mode=deployment",
            "storage.backend=s3",
            "storage.s3.endpoint=http://garage:3900",
            "storage.s3.bucket=berth",
            "storage.s3.accessKeyId=GK0123",
            "storage.s3.secretAccessKey=secret",
        ],
    ),
    (
        "tls-ingress-monitor",
        &[
            "tls.enabled=true",
            "tls.secretName=berth-tls",
            "ingress.enabled=true",
            "ingress.className=nginx",
            "ingress.tls[0].secretName=registry-tls",
            "ingress.tls[0].hosts[0]=registry.example.com",
            "metrics.serviceMonitor.enabled=true",
        ],
    ),
    (
        "existing-secret-ephemeral",
        &[
            "existingAdminSecret=mine",
            "persistence.enabled=false",
            "storage.backend=s3",
            "storage.s3.bucket=b",
            "storage.s3.existingSecret=s3creds",
        ],
    ),
    (
        "given-token",
        &[
            "adminToken=berth_admin_0123456789abcdefghijkl",
            "config.gc.interval_secs=3600",
            "config.uploads.max_sessions_per_principal=50",
        ],
    ),
];

/// The `berth.toml` of a rendered chart.
fn rendered_config(manifests: &str) -> String {
    let start = manifests
        .find("  berth.toml: |\n")
        .expect("the ConfigMap with berth.toml")
        + "  berth.toml: |\n".len();
    manifests[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_chart_lints_renders_and_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = deploy("helm/berth");
    let validate = |file: &Path| {
        Command::new(installed("venv/bin/kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(file)
            .output()
            .unwrap()
    };
    let template = |sets: &[&str]| {
        let mut cmd = helm(tmp.path());
        cmd.args(["template", "registry"]).arg(&chart);
        for s in sets {
            cmd.args(["--set", s]);
        }
        cmd
    };
    run(helm(tmp.path()).arg("lint").arg("--strict").arg(&chart));
    for (name, sets) in VALUE_SETS {
        let manifests = run(&mut template(sets));
        let file = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &manifests).unwrap();
        let v = validate(&file);
        assert!(
            v.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        // hardened in every set
        for needle in [
            "readOnlyRootFilesystem: true",
            "allowPrivilegeEscalation: false",
            "runAsNonRoot: true",
            "path: /healthz",
            "path: /readyz",
        ] {
            assert!(manifests.contains(needle), "{name}: no {needle}");
        }
        // Berth accepts the configuration the chart renders
        let cfg = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, rendered_config(&manifests)).unwrap();
        let checked = Command::new(berth_bin())
            .args(["config", "check", "--config"])
            .arg(&cfg)
            .env("BERTH_AUTH_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{name}: berth refuses the chart's berth.toml:\n{}\n{}",
            std::fs::read_to_string(&cfg).unwrap(),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    // the validator does refuse a broken manifest (this check can fail)
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: many\n",
    )
    .unwrap();
    let v = validate(&broken);
    assert!(
        !v.status.success(),
        "kubernetes-validate passed a broken manifest"
    );
    // what the chart refuses, with a reason
    for (sets, reason) in [
        (
            vec![
                "replicaCount=3",
                "mode=deployment",
                "storage.backend=s3",
                "storage.s3.bucket=b",
                "storage.s3.existingSecret=s3creds",
            ],
            "replicaCount > 1",
        ),
        (vec!["mode=deployment"], "storage.backend=s3"),
        (vec!["tls.enabled=true"], "tls.secretName"),
        (vec!["adminToken=hunter2"], "berth_admin_"),
    ] {
        let o = template(&sets).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(reason),
            "{sets:?}: {err}"
        );
    }
}

#[test]
fn the_chart_is_pushed_into_berth() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    helm_round_trip(tmp.path(), &s, &deploy("helm/berth"), "berth");
}

#[test]
fn the_systemd_unit_verifies_and_its_sample_config_starts() {
    let analyze = require("systemd-analyze");
    // verify resolves ExecStart: the unit as shipped, but for where the
    // binary under test is
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("berth.service");
    let text = std::fs::read_to_string(deploy("systemd/berth.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/berth serve --config /etc/berth/berth.toml"));
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/berth", &berth_bin().display().to_string()),
    )
    .unwrap();
    let v = Command::new(&analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&v.stderr).into_owned() + &String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && !said.contains("berth.service:"),
        "{said}"
    );

    // the sample config: accepted, and serve starts with it
    let sample = deploy("systemd/berth.toml");
    run(Command::new(berth_bin())
        .args(["config", "check", "--config"])
        .arg(&sample));
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(berth_bin())
        .args(["serve", "--config"])
        .arg(&sample)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data.path())
        .env("BERTH_AUTH_ADMIN_TOKEN", ADMIN_TOKEN)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = poll(
        "berth with the sample config",
        200,
        Duration::from_millis(50),
        || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz"))
                .ok()
                .filter(|r| r.status() == 200)
        },
    );
    assert_eq!(up.status(), 200);
    // its own health check agrees, and finds nothing once it is gone
    let hc = |port: u16| {
        Command::new(berth_bin())
            .args(["healthcheck", "--config"])
            .arg(&sample)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(hc(port));
    // `systemctl reload` (SIGHUP) without TLS leaves it serving
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP stopped berth");
    assert!(hc(port));
    // SAFETY: as above.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
    assert!(!hc(port));
}

#[test]
fn the_compose_file_is_valid_and_its_garage_setup_runs_twice() {
    let compose = require("docker-compose");
    let o = run(Command::new(&compose)
        .arg("-f")
        .arg(deploy("compose.yaml"))
        .arg("config"));
    for needle in [
        "garage-init",
        "service_completed_successfully",
        "BERTH_STORAGE_BACKEND: s3",
    ] {
        assert!(o.contains(needle), "{needle}: {o}");
    }
    // the init script against a real Garage: the layout, bucket and key
    // made once, found the second time
    let garage = installed("bin/garage");
    let dir = tempfile::tempdir().unwrap();
    let (rpc, s3) = (free_port(), free_port());
    let cfg = dir.path().join("garage.toml");
    let secret = "5f1a8e2c9b7d4e6f0a3c1b2d4e6f8a0c2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a1b";
    let compose_cfg = std::fs::read_to_string(deploy("compose/garage.toml")).unwrap();
    let local = compose_cfg
        .replace("/var/lib/garage", &dir.path().display().to_string())
        .replace("[::]:3901", &format!("127.0.0.1:{rpc}"))
        .replace("garage:3901", &format!("127.0.0.1:{rpc}"))
        .replace("[::]:3900", &format!("127.0.0.1:{s3}"));
    std::fs::write(&cfg, local).unwrap();
    let mut server = Command::new(&garage)
        .arg("-c")
        .arg(&cfg)
        .arg("server")
        .env("GARAGE_RPC_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = format!(
        "{}:{}",
        garage.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let init = || {
        Command::new("sh")
            .arg(deploy("compose/garage-init/init.sh"))
            .env("PATH", &path)
            .env("GARAGE_CONFIG", &cfg)
            .env("GARAGE_RPC_SECRET", secret)
            .env("BUCKET", "berth")
            .env("KEY_ID", "GK0123456789abcdef01234567")
            .env(
                "KEY_SECRET",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            )
            .output()
            .unwrap()
    };
    let first = init();
    let second = init();
    let _ = server.kill();
    let _ = server.wait();
    for (n, o) in [("first", &first), ("second", &second)] {
        assert!(
            o.status.success(),
            "{n} run: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("garage ready"));
    }
}
