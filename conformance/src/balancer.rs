//! A real load balancer for the suites: HAProxy (Debian's `haproxy`,
//! installed by scripts/install-test-deps.sh), in HTTP mode, started with
//! a configuration of the test's and dying with the test process. Each
//! request is balanced on its own (no stickiness: a client's keep-alive
//! connection does not pin it to one server), failed connection attempts
//! are retried on another server, and servers are health-checked so that
//! one killed drops out within a second. Every request it passes is
//! logged with the server that answered it ([`Balancer::served`]).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a pool picks a server for a request.
#[derive(Clone, Copy, Debug)]
pub enum Policy {
    /// Each request to the next live server.
    RoundRobin,
    /// Every request to the first live server in the list; the next one
    /// takes over when it is down (active/standby).
    First,
}

/// One listener and the servers behind it.
pub struct Pool {
    pub name: String,
    /// `address:port` to listen on.
    pub bind: String,
    pub policy: Policy,
    /// `(name, address:port)`.
    pub servers: Vec<(String, String)>,
    /// A path whose 2xx answer means a server is up; TCP connect when
    /// `None`.
    pub health: Option<String>,
}

/// A running HAProxy.
pub struct Balancer {
    log: PathBuf,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        berth_pgtest::kill(self.pid);
    }
}

/// One request it passed on.
#[derive(Debug, Clone)]
pub struct Served {
    pub pool: String,
    pub server: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Balancer {
    pub fn start(pools: &[Pool]) -> Balancer {
        let bin = crate::require("haproxy");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conf = String::from(
            "global\n  maxconn 4096\n  log stdout format raw local0 info\n\
             defaults\n  mode http\n  log global\n\
             \x20 log-format \"served %b %s %HM %HP %ST\"\n\
             \x20 timeout connect 1s\n  timeout client 10m\n  timeout server 10m\n\
             \x20 timeout http-request 10m\n  timeout queue 30s\n\
             \x20 retries 3\n  option redispatch 1\n\
             \x20 default-server inter 250ms fall 1 rise 2\n",
        );
        for p in pools {
            let balance = match p.policy {
                Policy::RoundRobin => "roundrobin",
                Policy::First => "first",
            };
            conf.push_str(&format!(
                "frontend {n}\n  bind {b}\n  default_backend {n}-servers\n\
                 backend {n}-servers\n  balance {balance}\n",
                n = p.name,
                b = p.bind
            ));
            if let Some(h) = &p.health {
                conf.push_str(&format!("  option httpchk GET {h}\n"));
            }
            for (name, addr) in &p.servers {
                // `first` fills a server up to maxconn before the next
                conf.push_str(&format!("  server {name} {addr} check maxconn 1000\n"));
            }
        }
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, &conf).expect("haproxy.cfg");
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refused its configuration:\n{conf}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.path().join("haproxy.log");
        let f = std::fs::File::create(&log).expect("haproxy log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f);
        let pid = berth_pgtest::spawn_for_life("haproxy", cmd);
        let b = Balancer {
            log,
            pid,
            _dir: dir,
        };
        // listening on every bind address
        for p in pools {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(&p.bind).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "haproxy does not listen on {}:\n{}",
                    p.bind,
                    b.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        b
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every request passed on so far (logged when its answer ended).
    pub fn served(&self) -> Vec<Served> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == "served").then_some(())?;
                Some(Served {
                    pool: f.next()?.trim_end_matches("-servers").to_string(),
                    server: f.next()?.to_string(),
                    method: f.next()?.to_string(),
                    path: f.next()?.to_string(),
                    status: f.next()?.parse().unwrap_or(0),
                })
            })
            .collect()
    }
}
