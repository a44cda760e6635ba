//! Test hosts on one machine: network namespaces, each with an address of
//! its own on a private /24, joined by a bridge. The bridge lives in a
//! namespace of its own (the "switch"), so the traffic between hosts never
//! meets the machine's firewall (the Docker engine's FORWARD policy drops
//! bridged packets in the root namespace). The test process stays in the
//! root namespace and reaches every host through the switch at the
//! subnet's `.1`, where the servers it runs for the hosts (a balancer, a
//! database) listen.
//!
//! Needs root (`ip netns`), as the suites have on the project's machines;
//! without it a test using this fails and says so. Namespaces of test
//! processes that are gone are removed when the next one starts.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// A private network of test hosts.
pub struct Net {
    /// The root namespace's address on it: where hosts reach the test
    /// process's servers.
    pub gateway: String,
    /// `10.a.b.0/24`.
    pub cidr: String,
    prefix: String,
    subnet: String,
    switch: String,
    hosts: Mutex<Vec<String>>,
    next: AtomicU32,
}

/// One host on a [`Net`]: a network namespace with one address.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ip: String,
    ns: String,
}

/// `ip …`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("ip {args:?}: {e} (iproute2 is installed by install-test-deps.sh)")
        });
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Remove the namespaces of earlier test processes that are gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("berth-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Net {
    /// A new network with nobody on it yet.
    pub fn new() -> Net {
        // SAFETY: geteuid has no preconditions
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the test hosts are network namespaces: this suite must run as root"
        );
        sweep_stale();
        static K: AtomicU32 = AtomicU32::new(0);
        let k = K.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = format!("10.{}.{}", 200 + k % 50, pid % 250);
        let prefix = format!("berth-{pid}-{k}");
        let switch = format!("{prefix}-switch");
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "set", "lo", "up"]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        // the root namespace's leg; it goes with the switch
        let leg = format!("bt{pid}r{k}");
        ip(&[
            "link", "add", &leg, "type", "veth", "peer", "name", "up0", "netns", &switch,
        ]);
        ip(&["-n", &switch, "link", "set", "up0", "master", "br0", "up"]);
        let gateway = format!("{subnet}.1");
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &leg]);
        ip(&["link", "set", &leg, "up"]);
        Net {
            gateway,
            cidr: format!("{subnet}.0/24"),
            prefix,
            subnet,
            switch,
            hosts: Mutex::new(Vec::new()),
            next: AtomicU32::new(2),
        }
    }

    /// A new host on the network, named `name` in messages.
    pub fn host(&self, name: &str) -> Host {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        assert!(i < 255, "a /24 holds 253 hosts");
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.lock().unwrap().push(ns.clone());
        let port = format!("h{i}");
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ]);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        let addr = format!("{}.{i}", self.subnet);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Host {
            name: name.to_string(),
            ip: addr,
            ns,
        }
    }
}

impl Default for Net {
    fn default() -> Net {
        Net::new()
    }
}

impl Host {
    /// `program` run on this host (in its namespace; the same process, so
    /// a kill reaches it).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.lock().unwrap().iter() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch])
            .output();
    }
}
