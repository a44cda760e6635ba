//! Test servers. A real PostgreSQL for the suites (Debian's `postgresql`, installed by
//! `scripts/install-test-deps.sh`): one server per test process, started on
//! first use in a temporary directory on a free loopback port, and killed
//! with the process (a parent-death signal set from a thread that lives as
//! long as the process, as `conformance/src/garage.rs` does for Garage).
//!
//! Each test takes a schema of its own ([`fresh_schema`]), so tests share
//! the server without seeing each other's rows.
//!
//! `BERTH_TEST_POSTGRES_URL` points the suites at a server already running
//! instead (its user must be allowed to create schemas).
//!
//! PostgreSQL refuses to run as root: when the tests do, the server runs as
//! the `postgres` user the Debian package creates.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running server: connect with [`PgServer::url`].
pub struct PgServer {
    url: String,
    port: u16,
    /// The server process, when this started it.
    pid: Option<u32>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for PgServer {
    /// A server of the caller's own ([`start_listening`]) goes with it
    /// (the process's own is a static: it goes with the process).
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            kill(pid);
        }
    }
}

/// SIGKILL a server this process started.
pub fn kill(pid: u32) {
    // SAFETY: a signal to a child of ours (unreaped: the pid is not reused)
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

impl PgServer {
    /// `postgres://…` of a superuser on the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same superuser's URL through another of the addresses the
    /// server listens on ([`start_listening`]).
    pub fn url_via(&self, addr: &str) -> String {
        format!("postgres://berth@{addr}:{}/postgres", self.port)
    }
}

/// The process's server, started on first use.
pub fn server() -> &'static PgServer {
    static S: OnceLock<PgServer> = OnceLock::new();
    S.get_or_init(|| match std::env::var("BERTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => PgServer {
            url,
            port: 0,
            pid: None,
            _dir: None,
        },
        _ => start(None, None),
    })
}

/// A schema name no other test of any process has used: the process id, a
/// counter and the clock (a server given by URL outlives test processes).
pub fn fresh_schema(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(24)
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "t_{tag}_{}_{}_{ms}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The directory of the newest PostgreSQL's programs
/// (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            e.path()
                .join("bin/postgres")
                .exists()
                .then_some((v, e.path()))
        })
        .max();
    match newest {
        Some((_, p)) => p.join("bin"),
        None => panic!(
            "PostgreSQL is required by this suite and is not installed \
             (no /usr/lib/postgresql/*/bin/postgres): run scripts/install-test-deps.sh \
             (scripts/test.sh does), or set BERTH_TEST_POSTGRES_URL"
        ),
    }
}

/// uid and gid to run the server as: ours, or `postgres`'s when we are root.
fn identity() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!("running as root, and there is no `postgres` user to run PostgreSQL as")
            })
    };
    Some((id("-u"), id("-g")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A command that drops to `who` before it runs.
fn command(program: &Path, who: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = who {
        // SAFETY: only async-signal-safe calls between fork and exec
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// Start a test server that dies with this process: spawned from a thread
/// that lives as long as the process, with the parent-death signal set in
/// the child (after any `pre_exec` of `cmd`'s own, such as a `setuid`,
/// which would clear it). Panics naming `name` when it cannot start.
/// Returns its process id (a test may kill it; it stays unreaped).
pub fn spawn_for_life(name: &str, mut cmd: Command) -> u32 {
    // SAFETY: prctl in the child before exec, no allocation
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let child = cmd.spawn();
            let ok = child.is_ok();
            tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()))
                .expect("send");
            if ok {
                loop {
                    std::thread::park();
                }
            }
        })
        .expect("server thread");
    rx.recv()
        .expect("server thread")
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// Remove the directories of earlier test processes' servers that are gone
/// (the server dies with its process; its directory stays behind).
fn sweep_stale() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("berth-pg") {
            continue;
        }
        let pid_file = e.path().join("data/postmaster.pid");
        let gone = match std::fs::read_to_string(&pid_file) {
            // SAFETY: kill with signal 0 only checks the process exists
            Ok(s) => s
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
                .is_some_and(|pid| {
                    let r = unsafe { libc::kill(pid, 0) };
                    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
                }),
            // no server ever ran there: stale once it is an hour old
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A server of the caller's own (not the process's), listening on
/// 127.0.0.1 and on `addr` too, where clients from `allow` (a CIDR) are
/// let in: the database host of a test network (`conformance/src/net.rs`).
/// It lives as long as the process.
pub fn start_listening(addr: &str, allow: &str) -> PgServer {
    start(Some((addr, allow)), None)
}

/// A server of the caller's own that takes TCP connections over TLS only
/// (every `host` line of its `pg_hba.conf` made `hostssl`), with the
/// certificate `cert_pem` and its key `key_pem`. It lives as long as the
/// process, or until dropped.
pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgServer {
    start(None, Some((cert_pem, key_pem)))
}

fn start(extra: Option<(&str, &str)>, tls: Option<(&str, &str)>) -> PgServer {
    sweep_stale();
    let bin = bin_dir();
    let who = identity();
    let dir = tempfile::Builder::new()
        .prefix("berth-pg")
        .tempdir()
        .expect("tempdir");
    let data = dir.path().join("data");
    if let Some((uid, gid)) = who {
        // SAFETY: a valid NUL-terminated path
        let p = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).expect("path");
        assert_eq!(unsafe { libc::chown(p.as_ptr(), uid, gid) }, 0, "chown");
    }
    let out = command(&bin.join("initdb"), who)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "berth",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut listen = "127.0.0.1".to_string();
    if let Some((addr, allow)) = extra {
        listen = format!("{listen},{addr}");
        let hba = data.join("pg_hba.conf");
        let mut conf = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        conf.push_str(&format!("host all all {allow} trust\n"));
        std::fs::write(&hba, conf).expect("pg_hba.conf");
    }
    let mut tls_args = Vec::new();
    if let Some((cert, key)) = tls {
        let hba = data.join("pg_hba.conf");
        let conf = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let conf: String = conf
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, conf).expect("pg_hba.conf");
        let (crt, k) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&crt, cert).expect("server.crt");
        std::fs::write(&k, key).expect("server.key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("key mode");
        if let Some((uid, gid)) = who {
            for f in [&crt, &k] {
                let p = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).expect("path");
                // SAFETY: a valid NUL-terminated path
                unsafe { libc::chown(p.as_ptr(), uid, gid) };
            }
        }
        tls_args = vec![
            "-c".to_string(),
            "ssl=on".to_string(),
            "-c".to_string(),
            format!("ssl_cert_file={}", crt.display()),
            "-c".to_string(),
            format!("ssl_key_file={}", k.display()),
        ];
    }
    let port = free_port();
    let log = dir.path().join("postgres.log");
    let f = std::fs::File::create(&log).expect("postgres log");
    if let Some((uid, gid)) = who {
        let p = std::ffi::CString::new(log.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path
        unsafe { libc::chown(p.as_ptr(), uid, gid) };
    }
    let mut cmd = command(&bin.join("postgres"), who);
    cmd.arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(dir.path())
        .args(["-p", &port.to_string()])
        // durable as in production: fsync on; room for several test
        // servers' pools at once
        .args(["-c", &format!("listen_addresses={listen}")])
        .args(["-c", "max_connections=400"])
        .args(["-c", "max_locks_per_transaction=256"])
        .args(["-c", "shared_buffers=128MB"])
        .args(&tls_args)
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("log"))
        .stderr(f);
    let pid = spawn_for_life("postgres", cmd);
    // ready once it accepts connections (pg_isready)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "berth"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    PgServer {
        url: format!("postgres://berth@127.0.0.1:{port}/postgres"),
        port,
        pid: Some(pid),
        _dir: Some(dir),
    }
}
