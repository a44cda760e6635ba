//! A real S3 server for the suites: Garage (installed by
//! scripts/install-test-deps.sh into the tools cache), one single-node
//! instance per test process, started on first use on 127.0.0.1 with its
//! own layout, bucket and key made with its CLI. It dies with the process
//! (parent-death signal from a thread that lives as long as the process).
//!
//! `BERTH_TEST_BACKEND=s3` (or `s3-redirect`) makes every
//! [`crate::Server`] keep its blobs there, each under a prefix of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running Garage with a bucket and a key that may use it.
pub struct Garage {
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    pub region: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether the suites run with blobs in S3: `BERTH_TEST_BACKEND=s3`
/// (Berth streams blob reads) or `s3-redirect` (blob GETs are 307s to
/// presigned URLs, for clients that follow them).
pub fn s3_backend() -> bool {
    s3_mode().is_some()
}

/// Whether blob GETs are redirected (`BERTH_TEST_BACKEND=s3-redirect`).
pub fn redirecting() -> bool {
    s3_mode() == Some(true)
}

/// `Some(redirect)` when the suites run on S3.
fn s3_mode() -> Option<bool> {
    match std::env::var("BERTH_TEST_BACKEND").as_deref() {
        Ok("s3") => Some(false),
        Ok("s3-redirect") => Some(true),
        Ok("filesystem") | Err(_) => None,
        Ok(other) => panic!("BERTH_TEST_BACKEND={other}: filesystem, s3 or s3-redirect"),
    }
}

/// The process's Garage, started on first use.
pub fn garage() -> &'static Garage {
    static G: OnceLock<Garage> = OnceLock::new();
    G.get_or_init(Garage::start)
}

fn garage_bin() -> PathBuf {
    crate::require("garage")
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Garage {
    fn start() -> Garage {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, s3, admin) = (port(), port(), port());
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + std::process::id() as usize) % 256))
            .collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = true
compression_level = "none"
data_fsync = true
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                d = dir.path().display()
            ),
        )
        .expect("garage.toml");
        let log = dir.path().join("garage.log");
        let bin = garage_bin();
        spawn_for_life(&bin, &config, &log);
        let g = Garage {
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "berth".into(),
            key_id: String::new(),
            secret: String::new(),
            region: "us-east-1".into(),
            config,
            _dir: dir,
        };
        // the node answers, then gets a role in a one-node layout
        let deadline = Instant::now() + Duration::from_secs(60);
        let node = loop {
            // `status` goes through the server's RPC: it is up
            let out = g
                .cli_try(&["status"])
                .and_then(|_| g.cli_try(&["node", "id", "-q"]));
            if let Ok(id) = out {
                break id.trim().split('@').next().unwrap_or("").to_string();
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {:?}\n{}",
                out.err(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", &g.bucket]);
        let key = g.cli(&["key", "create", "berth-tests"]);
        let field = |name: &str| -> String {
            key.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in `garage key create`:\n{key}"))
        };
        let (key_id, secret) = (field("Key ID"), field("Secret key"));
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &g.bucket,
            "--key",
            "berth-tests",
        ]);
        let g = Garage {
            key_id,
            secret,
            ..g
        };
        g.wait_for_s3();
        g
    }

    /// S3 answers requests signed with the key (a new key takes a moment).
    fn wait_for_s3(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = reqwest::blocking::Client::new()
                .get(format!("{}/{}", self.endpoint, self.bucket))
                .send();
            // unsigned: 403 once the bucket's endpoint is up
            if r.as_ref().is_ok_and(|r| r.status().as_u16() == 403) {
                return;
            }
            assert!(Instant::now() < deadline, "garage S3 API not up: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn cli_try(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "garage {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A garage CLI command that must succeed.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_try(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Object keys under `prefix` in the bucket, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let settings = berth_storage::S3Settings {
            endpoint: Some(self.endpoint.clone()),
            bucket: Some(self.bucket.clone()),
            region: Some(self.region.clone()),
            prefix: String::new(),
            path_style: true,
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            redirect: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            let c = berth_storage::s3_client(&settings).expect("S3 client");
            let p = object_store::path::Path::from(prefix);
            let mut v: Vec<String> = c
                .list(Some(&p))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .expect("listing the bucket");
            v.sort();
            v
        })
    }

    /// Upload sessions with objects under `prefix/uploads/`.
    pub fn sessions_under(&self, prefix: &str) -> usize {
        let dir = format!("{prefix}/uploads/");
        let mut ids: Vec<String> = self
            .keys(&format!("{prefix}/uploads"))
            .iter()
            .filter_map(|k| k.strip_prefix(&dir)?.split('/').next().map(String::from))
            .collect();
        ids.dedup();
        ids.len()
    }

    /// The `BERTH_*` settings of a server whose blobs live here under
    /// `prefix`; redirects as `BERTH_TEST_BACKEND` says (off unless
    /// `s3-redirect`).
    pub fn berth_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("BERTH_STORAGE_BACKEND", "s3"),
            ("BERTH_STORAGE_S3_ENDPOINT", &self.endpoint),
            ("BERTH_STORAGE_S3_BUCKET", &self.bucket),
            ("BERTH_STORAGE_S3_REGION", &self.region),
            ("BERTH_STORAGE_S3_PREFIX", prefix),
            ("BERTH_STORAGE_S3_ACCESS_KEY_ID", &self.key_id),
            ("BERTH_STORAGE_S3_SECRET_ACCESS_KEY", &self.secret),
            (
                "BERTH_STORAGE_S3_REDIRECT",
                if s3_mode() == Some(true) {
                    "true"
                } else {
                    "false"
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Start `garage server` so that it dies with the test process
/// ([`berth_pgtest::spawn_for_life`]).
fn spawn_for_life(bin: &Path, config: &Path, log: &Path) {
    let f = std::fs::File::create(log).expect("garage log");
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(config)
        .arg("server")
        .env("RUST_LOG", "garage=warn")
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("log"))
        .stderr(f);
    berth_pgtest::spawn_for_life("garage server", cmd);
}
