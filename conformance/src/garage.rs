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

/// A running Garage with a bucket and a key that may use it: one node on
/// loopback ([`garage`]), or a cluster of nodes on test hosts
/// ([`Garage::cluster`]).
pub struct Garage {
    /// Where its S3 API is reached (the first node's, unless the test
    /// puts a balancer in front and says so).
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    pub region: String,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// One `garage server` process.
struct Node {
    config: PathBuf,
    log: PathBuf,
    /// The test host it runs on; loopback when `None`.
    host: Option<crate::net::Host>,
    pid: std::sync::Mutex<Option<u32>>,
}

impl Node {
    fn command(&self) -> Command {
        match &self.host {
            Some(h) => h.command(garage_bin()),
            None => Command::new(garage_bin()),
        }
    }
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

/// A node's configuration: storage in `dir`, its RPC, S3 and admin
/// listeners at `bind` (ports), announced at `public`.
fn node_config(
    dir: &Path,
    secret: &str,
    replication: usize,
    bind: [String; 3],
    public: &str,
) -> String {
    let [rpc, s3, admin] = bind;
    format!(
        r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = {replication}
metadata_fsync = true
compression_level = "none"
data_fsync = true
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{public}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "{s3}"

[admin]
api_bind_addr = "{admin}"
"#,
        d = dir.display()
    )
}

impl Garage {
    fn start() -> Garage {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, s3, admin) = (port(), port(), port());
        let lo = |p: u16| format!("127.0.0.1:{p}");
        let g = Garage::launch(
            dir,
            vec![(None, [lo(rpc), lo(s3), lo(admin)], lo(rpc))],
            1,
            format!("http://127.0.0.1:{s3}"),
        );
        g.wait_for_s3();
        g
    }

    /// A cluster of one node on each of `hosts`, every object stored on
    /// every node (replication factor = the number of hosts, one zone per
    /// node), with the bucket and key made through the first node. Its S3
    /// API is at `http://<host>:3900` on each host; [`Garage::endpoint`]
    /// is the first node's until the test sets it.
    pub fn cluster(hosts: &[crate::net::Host]) -> Garage {
        let dir = tempfile::tempdir().expect("tempdir");
        let any = |p: u16| format!("0.0.0.0:{p}");
        let nodes = hosts
            .iter()
            .map(|h| {
                (
                    Some(h.clone()),
                    [any(3901), any(3900), any(3903)],
                    format!("{}:3901", h.ip),
                )
            })
            .collect();
        let g = Garage::launch(
            dir,
            nodes,
            hosts.len(),
            format!("http://{}:3900", hosts[0].ip),
        );
        for h in hosts {
            g.wait_for_s3_at(&format!("http://{}:3900", h.ip));
        }
        g
    }

    /// Start the nodes, join them, lay them out, make the bucket and key.
    fn launch(
        dir: tempfile::TempDir,
        nodes: Vec<(Option<crate::net::Host>, [String; 3], String)>,
        replication: usize,
        endpoint: String,
    ) -> Garage {
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + std::process::id() as usize) % 256))
            .collect();
        let nodes: Vec<Node> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (host, bind, public))| {
                let d = dir.path().join(format!("node{i}"));
                std::fs::create_dir_all(&d).expect("node dir");
                let config = d.join("garage.toml");
                std::fs::write(
                    &config,
                    node_config(&d, &secret, replication, bind, &public),
                )
                .expect("garage.toml");
                Node {
                    config,
                    log: d.join("garage.log"),
                    host,
                    pid: Default::default(),
                }
            })
            .collect();
        let mut g = Garage {
            endpoint,
            bucket: "berth".into(),
            key_id: String::new(),
            secret: String::new(),
            region: "us-east-1".into(),
            nodes,
            _dir: dir,
        };
        for i in 0..g.nodes.len() {
            g.start_node(i);
        }
        // every node answers; the first one learns the others' addresses
        let ids: Vec<String> = (0..g.nodes.len()).map(|i| g.node_id(i)).collect();
        for id in &ids[1..] {
            g.cli(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or("");
            let zone = format!("dc{}", i + 1);
            g.cli(&["layout", "assign", "-z", &zone, "-c", "1G", short]);
        }
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
        (g.key_id, g.secret) = (key_id, secret);
        g
    }

    /// Start node `i` (again: its data stays), dying with the test process.
    pub fn start_node(&self, i: usize) {
        let n = &self.nodes[i];
        let f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("garage log");
        let mut cmd = n.command();
        cmd.arg("-c")
            .arg(&n.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f);
        let pid = berth_pgtest::spawn_for_life("garage server", cmd);
        *self.nodes[i].pid.lock().unwrap() = Some(pid);
    }

    /// SIGKILL node `i`: a host gone without a word.
    pub fn kill_node(&self, i: usize) {
        let pid = self.nodes[i]
            .pid
            .lock()
            .unwrap()
            .take()
            .expect("node running");
        berth_pgtest::kill(pid);
    }

    /// Node `i`'s `id@address`, once it answers its CLI.
    fn node_id(&self, i: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // `status` goes through the server's RPC: it is up
            let out = self
                .cli_on(i, &["status"])
                .and_then(|_| self.cli_on(i, &["node", "id", "-q"]));
            if let Ok(id) = out {
                return id.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {:?}\n{}",
                out.err(),
                std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// S3 answers requests signed with the key (a new key takes a moment).
    fn wait_for_s3(&self) {
        self.wait_for_s3_at(&self.endpoint)
    }

    fn wait_for_s3_at(&self, endpoint: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = reqwest::blocking::Client::new()
                .get(format!("{endpoint}/{}", self.bucket))
                .send();
            // unsigned: 403 once the bucket's endpoint is up
            if r.as_ref().is_ok_and(|r| r.status().as_u16() == 403) {
                return;
            }
            assert!(Instant::now() < deadline, "garage S3 API not up: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The CLI of node `i`, run on its host.
    fn cli_on(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let n = &self.nodes[i];
        let out = n
            .command()
            .arg("-c")
            .arg(&n.config)
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

    /// A garage CLI command that must succeed, through the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_on(0, args).unwrap_or_else(|e| panic!("{e}"))
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

impl Drop for Garage {
    /// The nodes go with it (the process's own Garage is a static: it goes
    /// with the process).
    fn drop(&mut self) {
        for n in &self.nodes {
            if let Some(pid) = n.pid.lock().unwrap().take() {
                berth_pgtest::kill(pid);
            }
        }
    }
}
