//! Helpers for the end-to-end suites: start the real `berth` binary on a free
//! port with a temporary data directory, talk to it over HTTP, stop or kill
//! it, and build images for real clients.
//!
//! The binary is `$BERTH_BIN`, or `berth` beside the test executables
//! (`cargo build --release --bin berth` puts it there; `scripts/test.sh` does).

use sha2::{Digest as _, Sha256};
use std::io::{BufRead, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::blocking::Client;

pub mod balancer;
pub mod cluster;
pub mod garage;
pub mod net;
pub use garage::{garage, s3_backend};

/// The admin token every suite's server is started with.
pub const ADMIN_TOKEN: &str = "berth_admin_conformanceSuiteAdminToken0123456789";

/// `Authorization` header value for the admin.
pub fn admin_basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_TOKEN}"))
    )
}

/// An HTTP client that authenticates as the admin and follows no redirects.
pub fn admin_client() -> Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        admin_basic().parse().unwrap(),
    );
    Client::builder()
        .default_headers(h)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(None)
        .build()
        .unwrap()
}

/// An HTTP client without credentials.
pub fn anonymous_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
pub use reqwest::StatusCode;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The berth binary under test.
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/berth
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth"))
        .expect("target dir");
    assert!(
        p.exists(),
        "berth binary not found at {} — build it first (cargo build --release --bin berth) or set BERTH_BIN",
        p.display()
    );
    p
}

/// Whether the suites keep metadata in PostgreSQL
/// (`BERTH_TEST_METADATA=postgres`, a server from `berth-pgtest`) rather
/// than the embedded RocksDB.
pub fn postgres_metadata() -> bool {
    match std::env::var("BERTH_TEST_METADATA").as_deref() {
        Ok("postgres") => true,
        Ok("rocksdb") | Err(_) => false,
        Ok(other) => panic!("BERTH_TEST_METADATA={other}: rocksdb or postgres"),
    }
}

/// The settings of a server whose metadata is in the process's PostgreSQL
/// (`berth-pgtest`), in a new schema.
pub fn postgres_env(tag: &str) -> Vec<(String, String)> {
    [
        ("BERTH_METADATA_BACKEND", "postgres".to_string()),
        (
            "BERTH_METADATA_POSTGRES_URL",
            berth_pgtest::server().url().to_string(),
        ),
        (
            "BERTH_METADATA_POSTGRES_SCHEMA",
            berth_pgtest::fresh_schema(tag),
        ),
        ("BERTH_METADATA_POSTGRES_POOL_SIZE", "8".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `n` bytes no other blob of a test has: a seeded xorshift, incompressible.
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running berth.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// Start with the suites' admin token (else the server generates one).
    given_admin_token: bool,
    /// Where its blobs are in the suites' Garage (`BERTH_TEST_BACKEND=s3`).
    pub s3_prefix: Option<String>,
    pub log: PathBuf,
    /// The CA its TLS certificate chains to (PEM): it speaks HTTPS.
    pub tls_ca: Option<Vec<u8>>,
    /// The test host it runs on ([`net`]); loopback when `None`.
    pub on: Option<net::Host>,
    /// `BERTH_TEST_DEPLOYMENT=cluster`: not one process but a deployment
    /// of replicas behind a balancer, which this stands for
    /// ([`cluster`]); its address is the balancer's.
    pub cluster: Option<Box<cluster::Cluster>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Start with extra `BERTH_*` environment settings.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Server::launch(env, true)
    }

    /// Start with no admin token configured: the server makes one on its
    /// first start.
    pub fn start_generating_admin_token() -> Server {
        Server::launch(&[], false)
    }

    /// Start with its data directory at `data_dir` (a small filesystem, a
    /// path of the test's).
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::launch_in(Some(data_dir), env, true)
    }

    fn launch(env: &[(&str, &str)], given_admin_token: bool) -> Server {
        Server::launch_in(None, env, given_admin_token)
    }

    /// Start serving HTTPS: `env` names the certificate files
    /// (`BERTH_TLS_*`), `ca_pem` is the CA their certificate chains to.
    pub fn start_tls(env: &[(&str, &str)], ca_pem: &[u8]) -> Server {
        Server::launch_full(None, env, true, Some(ca_pem.to_vec()))
    }

    fn launch_in(data_dir: Option<&Path>, env: &[(&str, &str)], given_admin_token: bool) -> Server {
        Server::launch_full(data_dir, env, given_admin_token, None)
    }

    fn launch_full(
        data_dir: Option<&Path>,
        env: &[(&str, &str)],
        given_admin_token: bool,
        tls_ca: Option<Vec<u8>>,
    ) -> Server {
        // a deployment shares its metadata: a server asked for on the
        // embedded engine (a data directory of its own) stays one process
        let embedded = env
            .iter()
            .any(|(k, v)| *k == "BERTH_METADATA_BACKEND" && *v == "rocksdb");
        if cluster::cluster_mode()
            && data_dir.is_none()
            && tls_ca.is_none()
            && given_admin_token
            && !embedded
        {
            return Server::deployed(env);
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        // with BERTH_TEST_BACKEND=s3, blobs in the process's Garage, under a
        // prefix of this server's own (the test's settings win)
        let mut all: Vec<(String, String)> = Vec::new();
        let mut s3_prefix = None;
        if s3_backend() {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let prefix = format!("{}-{n}", std::process::id());
            all.extend(garage().berth_env(&prefix));
            s3_prefix = Some(prefix);
        }
        // with BERTH_TEST_METADATA=postgres, metadata in the process's
        // PostgreSQL, in a schema of this server's own
        if postgres_metadata() {
            all.extend(postgres_env("srv"));
        }
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut s = Server {
            child: None,
            port: free_port(),
            data_dir: data_dir.map_or_else(|| tmp.path().join("data"), Path::to_path_buf),
            log: tmp.path().join("berth.log"),
            _tmp: Some(tmp),
            env: all,
            given_admin_token,
            s3_prefix,
            tls_ca,
            on: None,
            cluster: None,
        };
        s.spawn();
        s
    }

    /// A deployment of [`cluster::REPLICAS`] replicas behind a balancer on
    /// the process's shared cluster infrastructure, standing in for one
    /// server: its address is the balancer's.
    fn deployed(env: &[(&str, &str)]) -> Server {
        let extra: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = cluster::Cluster::on(cluster::shared(), &extra);
        let tmp = tempfile::tempdir().expect("tempdir");
        let port = c
            .front
            .rsplit_once(':')
            .expect("host:port")
            .1
            .parse()
            .expect("port");
        Server {
            child: None,
            port,
            data_dir: tmp.path().join("data"),
            log: tmp.path().join("berth.log"),
            _tmp: Some(tmp),
            env: extra,
            given_admin_token: true,
            s3_prefix: Some(c.prefix.clone()),
            tls_ca: None,
            on: None,
            cluster: Some(Box::new(c)),
        }
    }

    /// Whether its process (every replica of a deployment) runs.
    pub fn running(&self) -> bool {
        match &self.cluster {
            Some(c) => c.replicas.iter().all(Server::running),
            None => self.child.is_some(),
        }
    }

    /// A server on test host `host` (its own network namespace), on port
    /// 5000 of the host's address, with exactly the settings `env` (and
    /// the suites' admin token): one replica of a deployment the test
    /// builds ([`net`], [`garage::Garage::cluster`], [`balancer`]).
    pub fn on_host(host: &net::Host, env: Vec<(String, String)>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            port: 5000,
            data_dir: tmp.path().join("data"),
            log: tmp.path().join("berth.log"),
            _tmp: Some(tmp),
            env,
            given_admin_token: true,
            s3_prefix: None,
            tls_ca: None,
            on: Some(host.clone()),
            cluster: None,
        };
        s.spawn();
        s
    }

    /// `n` replicas of one registry: each its own process, port and data
    /// directory, all sharing one PostgreSQL schema (the process's
    /// `berth-pgtest` server) and one prefix of the process's Garage
    /// bucket, whatever `BERTH_TEST_METADATA` and `BERTH_TEST_BACKEND` say.
    pub fn replicas(n: usize, env: &[(&str, &str)]) -> Vec<Server> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("replicas-{}-{k}", std::process::id());
        let mut shared: Vec<(String, String)> = garage().berth_env(&prefix);
        shared.extend(postgres_env("replicas"));
        shared.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        (0..n)
            .map(|_| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let mut s = Server {
                    child: None,
                    port: free_port(),
                    data_dir: tmp.path().join("data"),
                    log: tmp.path().join("berth.log"),
                    _tmp: Some(tmp),
                    env: shared.clone(),
                    given_admin_token: true,
                    s3_prefix: Some(prefix.clone()),
                    tls_ca: None,
                    on: None,
                    cluster: None,
                };
                s.spawn();
                s
            })
            .collect()
    }

    /// A client for it: trusting its CA when it speaks HTTPS.
    pub fn client(&self) -> Client {
        match &self.tls_ca {
            Some(ca) => trusting_only(ca),
            None => Client::builder(),
        }
        .build()
        .expect("client")
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let r = self
            .client()
            .get(self.url("/metrics"))
            .send()
            .expect("metrics");
        assert_eq!(r.status(), 200);
        r.text().expect("metrics text")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = match &self.on {
            Some(h) => h.command(berth_bin()),
            None => Command::new(berth_bin()),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.host())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("RUST_LOG")
            .env_remove("BERTH_AUTH_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if self.given_admin_token {
            cmd.env("BERTH_AUTH_ADMIN_TOKEN", ADMIN_TOKEN);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn berth"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let c = self.client();
        loop {
            if let Ok(r) = c.get(self.url("/healthz")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("berth exited with {st} at start:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "berth did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Upload sessions with bytes staged: files in the data directory's
    /// `store/uploads`, or session folders in the bucket.
    pub fn staged_sessions(&self) -> usize {
        if let Some(c) = &self.cluster {
            return c.infra.garage.sessions_under(&c.prefix);
        }
        match &self.s3_prefix {
            Some(p) => garage().sessions_under(p),
            None => std::fs::read_dir(self.data_dir.join("store/uploads"))
                .map(|d| d.count())
                .unwrap_or(0),
        }
    }

    /// Its log (every replica's, one after the other, for a deployment).
    pub fn log_text(&self) -> String {
        match &self.cluster {
            Some(c) => c.replicas.iter().map(Server::log_text).collect(),
            None => std::fs::read_to_string(&self.log).unwrap_or_default(),
        }
    }

    /// Its processes: one, or a deployment's replicas.
    pub fn pids(&self) -> Vec<u32> {
        match &self.cluster {
            Some(c) => c.replicas.iter().map(Server::pid).collect(),
            None => vec![self.pid()],
        }
    }

    pub fn pid(&self) -> u32 {
        assert!(self.cluster.is_none(), "a deployment is several processes");
        self.child.as_ref().expect("running").id()
    }

    pub fn base(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    /// `address:port` of a Berth process itself, for raw HTTP no
    /// balancer would pass on unchanged: its own, or a deployment's first
    /// replica's.
    pub fn direct(&self) -> String {
        match &self.cluster {
            Some(c) => c.replicas[0].host(),
            None => self.host(),
        }
    }

    /// `address:port` it listens on.
    pub fn host(&self) -> String {
        if let Some(c) = &self.cluster {
            return c.front.clone();
        }
        let ip = self.on.as_ref().map_or("127.0.0.1", |h| h.ip.as_str());
        format!("{ip}:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(c) = &mut self.cluster {
            c.replicas.iter_mut().for_each(Server::kill9);
            return;
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        if let Some(c) = &mut self.cluster {
            // the first that did not exit cleanly, else the last
            let all: Vec<_> = c.replicas.iter_mut().map(Server::stop).collect();
            let bad = all.iter().find(|st| !st.success()).copied();
            return bad.or(all.last().copied()).expect("replicas");
        }
        let mut c = self.child.take().expect("running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "berth did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        if self.running() {
            self.stop();
        }
        self.start_again();
    }

    /// Change one setting for its next start (a stopped server).
    pub fn set_env(&mut self, key: &str, value: &str) {
        if let Some(c) = &mut self.cluster {
            c.replicas.iter_mut().for_each(|r| r.set_env(key, value));
            return;
        }
        assert!(self.child.is_none(), "stop it first");
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn start_again(&mut self) {
        if let Some(c) = &mut self.cluster {
            c.start_stopped();
            return;
        }
        assert!(self.child.is_none());
        self.spawn();
    }

    /// Peak resident memory of the server so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let f = std::fs::File::open(format!("/proc/{pid}/status")).expect("proc status");
    for line in std::io::BufReader::new(f).lines() {
        let line = line.expect("line");
        if let Some(v) = line.strip_prefix(field) {
            return v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .expect("number");
        }
    }
    panic!("{field} not in /proc/{pid}/status")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A response's OCI error code (the first one).
pub fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body:?}"));
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no errors[0].code in {body}"))
        .to_string()
}

/// Push a blob monolithically; returns its digest.
pub fn push_blob(c: &Client, s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .expect("push blob");
    assert_eq!(
        r.status(),
        201,
        "push blob: {}",
        r.text().unwrap_or_default()
    );
    d
}

/// Blob `digest` pulls from `repo` (200) and its bytes hash to it; `what`
/// names it in a failure.
pub fn assert_blob_pulls(c: &Client, s: &Server, repo: &str, digest: &str, what: &str) {
    let r = c
        .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .unwrap_or_else(|e| panic!("{what} {repo}@{digest}: {e}"));
    assert_eq!(r.status(), 200, "{what} {repo}@{digest} lost");
    assert_eq!(
        sha256(&r.bytes().unwrap()),
        digest,
        "{what} {repo}@{digest} corrupt"
    );
}

/// Push a manifest; returns its digest.
pub fn push_manifest(
    c: &Client,
    s: &Server,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let r = c
        .put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .expect("push manifest");
    let st = r.status();
    let d = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(st, 201, "push manifest: {}", r.text().unwrap_or_default());
    let d = d.expect("digest header");
    assert_eq!(d, sha256(body));
    d
}

/// An image pushed through the API: config, one layer, a manifest.
pub struct PushedImage {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: String,
    pub layer: String,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn push_image(c: &Client, s: &Server, repo: &str, tag: &str, seed: &str) -> PushedImage {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer bytes of {seed}").repeat(50);
    let cd = push_blob(c, s, repo, config.as_bytes());
    let ld = push_blob(c, s, repo, layer.as_bytes());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let digest = push_manifest(c, s, repo, tag, OCI_MANIFEST, &manifest);
    PushedImage {
        manifest,
        digest,
        config: cd,
        layer: ld,
    }
}

/// Read a whole response body, hashing it.
pub fn sha256_of_reader(mut r: impl Read) -> (String, u64) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    (format!("sha256:{}", hex::encode(h.finalize())), n)
}

/// Whether `tool` is on PATH.
/// A client builder that trusts the CA in `ca_pem` and no other.
pub fn trusting_only(ca_pem: &[u8]) -> reqwest::blocking::ClientBuilder {
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("CA PEM"))
        .tls_built_in_root_certs(false)
}

/// Where the test tools are installed (scripts/install-test-deps.sh).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("BERTH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/berth-tools"))
}

/// A tool installed under [`tools_dir`] (`bin/helm`, `venv/bin/…`); fails
/// loudly when it is missing.
pub fn installed(rel: &str) -> PathBuf {
    let p = tools_dir().join(rel);
    assert!(
        p.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// helm from the tools, with its homes under `home`.
pub fn helm(home: &Path) -> Command {
    let mut c = Command::new(installed("bin/helm"));
    c.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    c
}

/// A minimal Helm chart `name` (version 0.1.0, one ConfigMap) in
/// `dir/name`; returns its directory.
pub fn write_chart(dir: &Path, name: &str) -> PathBuf {
    let chart = dir.join(name);
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: {name}\nversion: 0.1.0\ndescription: a chart for the suite\n"
        ),
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: berth\ndata:\n  a: b\n",
    )
    .unwrap();
    chart
}

/// `helm package` the chart in `chart`, log in as the admin, push it to
/// `oci://<s>/charts`, pull it back and check it is byte-identical.
/// Returns the package's path.
pub fn helm_round_trip(home: &Path, s: &Server, chart: &Path, name: &str) -> PathBuf {
    let pkg = home.join("pkg");
    run(helm(home).arg("package").arg(chart).arg("-d").arg(&pkg));
    let tgz = pkg.join(format!("{name}-0.1.0.tgz"));
    run(helm(home).args([
        "registry",
        "login",
        &s.host(),
        "--username",
        "admin",
        "--password",
        ADMIN_TOKEN,
        "--plain-http",
    ]));
    run(helm(home)
        .arg("push")
        .arg(&tgz)
        .arg(format!("oci://{}/charts", s.host()))
        .arg("--plain-http"));
    let pulled = home.join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    run(helm(home)
        .arg("pull")
        .arg(format!("oci://{}/charts/{name}", s.host()))
        .args(["--version", "0.1.0", "--plain-http", "-d"])
        .arg(&pulled));
    assert_eq!(
        std::fs::read(&tgz).unwrap(),
        std::fs::read(pulled.join(format!("{name}-0.1.0.tgz"))).unwrap(),
        "pulled chart differs"
    );
    tgz
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A client tool that must be present: the suites never pass by skipping.
/// The docker CLI with a client configuration directory of the test's own
/// (its logins stay there).
pub fn docker_cli(config: &Path) -> Command {
    let mut c = Command::new(require("docker"));
    c.env("DOCKER_CONFIG", config);
    c
}

pub fn require(tool: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_TOOLS_DIR") {
        let p = PathBuf::from(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    let home_tools = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/berth-tools/bin")
        .join(tool);
    if home_tools.exists() {
        return home_tools;
    }
    assert!(
        have(tool),
        "{tool} is required by this suite and is not installed: run scripts/install-test-deps.sh (scripts/test.sh does)"
    );
    PathBuf::from(tool)
}

/// Run an offline administration command (`berth registry|user|token …`)
/// on a stopped server's data directory; returns its output.
pub fn cli(s: &Server, args: &[&str]) -> String {
    run(&mut s.offline(args))
}

impl Server {
    /// `berth <args> --data-dir <its data directory>` with its storage and
    /// metadata settings (its S3 prefix, its PostgreSQL schema) and the
    /// suites' admin token, for an offline command to run on it.
    pub fn offline(&self, args: &[&str]) -> Command {
        if let Some(c) = &self.cluster {
            // a deployment's state is in its database and bucket: any
            // replica's settings reach it
            return c.replicas[0].offline(args);
        }
        let mut cmd = Command::new(berth_bin());
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .envs(
                self.env
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with("BERTH_STORAGE_") || k.starts_with("BERTH_METADATA_")
                    })
                    .map(|(k, v)| (k, v)),
            )
            .env("BERTH_AUTH_ADMIN_TOKEN", ADMIN_TOKEN);
        cmd
    }
}

/// The value of a `key: value` line in a command's output.
pub fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .trim()
        .to_string()
}

/// The value of one sample in Prometheus text, by its full name with
/// labels as rendered (`berth_stored{kind="blobs"}`).
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// With `BERTH_TEST_BACKEND=s3-redirect`: the server sent blob reads to
/// presigned URLs, so a client that pulled every blob followed them.
pub fn assert_pulls_redirected(s: &Server) {
    if garage::redirecting() {
        let n = metric(
            &s.metrics(),
            "berth_blob_store_operations_total{op=\"redirects\"}",
        );
        assert!(
            n.is_some_and(|n| n > 0.0),
            "no blob read was redirected: {n:?}"
        );
    }
}

/// Run a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Build OCI image layouts on disk, with no engine: layers made with `tar`
/// and `gzip`, configs and manifests written by hand.
pub mod layout {
    use super::{run, sha256};
    use serde_json::json;
    use std::path::Path;
    use std::process::Command;

    pub struct Image {
        pub manifest: Vec<u8>,
        pub manifest_digest: String,
    }

    fn put_blob(dir: &Path, data: &[u8]) -> String {
        let d = sha256(data);
        let p = dir.join("blobs/sha256").join(&d[7..]);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
        d
    }

    /// A one-layer image for `arch` whose layer holds `/hello/<arch>.txt`.
    pub fn image(dir: &Path, arch: &str, content: &str) -> Image {
        image_with(dir, arch, &[(&format!("{arch}.txt"), content.as_bytes())])
    }

    /// A one-layer image for `arch` whose layer holds the files
    /// `(name, bytes)` under `/hello/`.
    pub fn image_with(dir: &Path, arch: &str, files: &[(&str, &[u8])]) -> Image {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("rootfs");
        std::fs::create_dir_all(root.join("hello")).unwrap();
        for (name, bytes) in files {
            std::fs::write(root.join("hello").join(name), bytes).unwrap();
        }
        let tar = work.path().join("layer.tar");
        run(Command::new("tar")
            .arg("--sort=name")
            .arg("--mtime=@0")
            .arg("--owner=0")
            .arg("--group=0")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .arg("hello"));
        let tar_bytes = std::fs::read(&tar).unwrap();
        let diff_id = sha256(&tar_bytes);
        run(Command::new("gzip").arg("-n").arg("-f").arg(&tar));
        let gz = std::fs::read(work.path().join("layer.tar.gz")).unwrap();
        let layer = put_blob(dir, &gz);
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "berth conformance"}],
        }))
        .unwrap();
        let cfg = put_blob(dir, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": gz.len()}],
        }))
        .unwrap();
        let manifest_digest = put_blob(dir, &manifest);
        Image {
            manifest,
            manifest_digest,
        }
    }

    /// Write `index.json` and `oci-layout` naming `(tag, media type, digest, size)` entries.
    pub fn write_index(dir: &Path, refs: &[(&str, &str, &str, usize)]) {
        let manifests: Vec<_> = refs
            .iter()
            .map(|(tag, mt, d, size)| {
                json!({"mediaType": mt, "digest": d, "size": size,
                       "annotations": {"org.opencontainers.image.ref.name": tag}})
            })
            .collect();
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    /// A layout with `single` (amd64 image) and `multi` (amd64 + arm64 index).
    /// Returns (single manifest digest, multi index digest, index bytes).
    pub fn single_and_multi(dir: &Path) -> (String, String, Vec<u8>) {
        let amd = image(dir, "amd64", "hello from amd64\n");
        let arm = image(dir, "arm64", "hello from arm64\n");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.manifest_digest,
                 "size": amd.manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.manifest_digest,
                 "size": arm.manifest.len(), "platform": {"os": "linux", "architecture": "arm64"}},
            ]
        }))
        .unwrap();
        let index_digest = put_blob(dir, &index);
        write_index(
            dir,
            &[
                (
                    "single",
                    "application/vnd.oci.image.manifest.v1+json",
                    &amd.manifest_digest,
                    amd.manifest.len(),
                ),
                (
                    "multi",
                    "application/vnd.oci.image.index.v1+json",
                    &index_digest,
                    index.len(),
                ),
            ],
        );
        (amd.manifest_digest, index_digest, index)
    }
}

/// A request to the management API (`/api/v1` + `path`), with a bearer
/// token or none.
pub fn api(
    s: &Server,
    token: Option<&str>,
    m: reqwest::Method,
    path: &str,
) -> reqwest::blocking::RequestBuilder {
    let rq = Client::new().request(m, s.url(&format!("/api/v1{path}")));
    match token {
        Some(t) => rq.bearer_auth(t),
        None => rq,
    }
}

/// Send a request; its status and JSON body (`null` when empty). Panics
/// on a body that is not JSON.
pub fn call(rq: reqwest::blocking::RequestBuilder) -> (u16, serde_json::Value) {
    let r = rq.send().unwrap();
    let st = r.status().as_u16();
    let text = r.text().unwrap();
    let v = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (st, v)
}

/// A Basic `Authorization` header value.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A JWT from GET /token for `scopes`, or the status when refused.
pub fn jwt(s: &Server, auth: Option<&str>, scopes: &[&str]) -> Result<String, u16> {
    let mut url = format!("{}?service=berth", s.url("/token"));
    for sc in scopes {
        url.push_str(&format!("&scope={sc}"));
    }
    let mut rq = anonymous_client().get(url);
    if let Some(a) = auth {
        rq = rq.header("authorization", a);
    }
    let r = rq.send().unwrap();
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    Ok(v["token"].as_str().unwrap().to_string())
}

/// Ask `f` until it has an answer, pausing `every` between questions —
/// for state a server reaches in the background (a collection run ending,
/// pull counts flushed). A liveness guard, not a speed claim: it gives up
/// only after `asks` questions, far more than the work needs anywhere.
pub fn poll<T>(what: &str, asks: u32, every: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..asks {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(every);
    }
    panic!("{what}: still not after {asks} asks");
}

/// Start a garbage collection through the management API (`body` as
/// `POST /api/v1/gc` takes it) and wait for it to end; its record.
pub fn run_gc(s: &Server, token: Option<&str>, body: serde_json::Value) -> serde_json::Value {
    let (st, v) = call(api(s, token, reqwest::Method::POST, "/gc").json(&body));
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    poll(
        &format!("run {id} ended"),
        2400,
        Duration::from_millis(50),
        || {
            let (st, r) = call(api(
                s,
                token,
                reqwest::Method::GET,
                &format!("/gc/runs/{id}"),
            ));
            assert_eq!(st, 200, "{r}");
            (r["status"] != "running").then_some(r)
        },
    )
}
