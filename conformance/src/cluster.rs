//! Berth deployed as a cluster of hosts, the way a company runs it: Berth
//! replicas, each on a host of its own (a network namespace with its own
//! address, [`crate::net`]), behind a load balancer (HAProxy, round-robin
//! per request, [`crate::balancer`]) that is the registry's one name;
//! metadata in one PostgreSQL on the database host (the test machine, at the
//! network's gateway address); blobs in a three-node Garage cluster, each
//! node on a host of its own and holding every object, reached through a
//! second balancer (active/standby: the first live node takes the S3
//! traffic, the next one takes over when it dies).
//!
//! [`Infra`] is the shared part (network, PostgreSQL, Garage); a
//! [`Cluster`] is one deployment on it: its own replicas, balancer,
//! PostgreSQL schema and bucket prefix. `BERTH_TEST_DEPLOYMENT=cluster`
//! makes every [`crate::Server::start`] such a deployment on the process's
//! shared infrastructure ([`shared`]), so a whole suite runs through a
//! balancer with its requests spread over three replicas.

use crate::balancer::{Balancer, Policy, Pool, Served};
use crate::garage::Garage;
use crate::net::{Host, Net};
use crate::{free_port, Client, Server};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Replicas per deployment.
pub const REPLICAS: usize = 3;

/// Whether the suites run every server as a cluster
/// (`BERTH_TEST_DEPLOYMENT=cluster`) rather than one process.
pub fn cluster_mode() -> bool {
    match std::env::var("BERTH_TEST_DEPLOYMENT").as_deref() {
        Ok("cluster") => true,
        Ok("single") | Err(_) => false,
        Ok(other) => panic!("BERTH_TEST_DEPLOYMENT={other}: single or cluster"),
    }
}

/// The network, the database and the object store deployments share.
/// Fields drop in order: the network last.
pub struct Infra {
    pub garage: Garage,
    /// The balancer in front of the Garage nodes.
    pub s3_lb: Balancer,
    pub pg: berth_pgtest::PgServer,
    pub net: Net,
    deployments: AtomicU32,
}

impl Infra {
    pub fn start() -> Infra {
        let net = Net::new();
        let pg = berth_pgtest::start_listening(&net.gateway, &net.cidr);
        let stores: Vec<Host> = (1..=3).map(|i| net.host(&format!("garage{i}"))).collect();
        let mut garage = Garage::cluster(&stores);
        let s3 = format!("{}:{}", net.gateway, free_port());
        let s3_lb = Balancer::start(&[Pool {
            name: "s3".into(),
            bind: s3.clone(),
            policy: Policy::First,
            servers: stores
                .iter()
                .map(|h| (h.name.clone(), format!("{}:3900", h.ip)))
                .collect(),
            health: None,
        }]);
        garage.endpoint = format!("http://{s3}");
        Infra {
            garage,
            s3_lb,
            pg,
            net,
            deployments: AtomicU32::new(0),
        }
    }
}

/// The process's shared infrastructure, started on first use (it lives as
/// long as the process; its namespaces are swept by the next process).
pub fn shared() -> Arc<Infra> {
    static I: OnceLock<Arc<Infra>> = OnceLock::new();
    I.get_or_init(|| Arc::new(Infra::start())).clone()
}

/// One deployment: replicas and the balancer in front of them.
pub struct Cluster {
    pub replicas: Vec<Server>,
    pub lb: Balancer,
    /// `127.0.0.1:<port>`: the balancer, the registry's one name.
    pub front: String,
    /// Its blobs' prefix in the bucket.
    pub prefix: String,
    /// The balancer's log entries of the start (503s until the first
    /// health checks pass), left out of [`Cluster::served_by`].
    ready: usize,
    pub infra: Arc<Infra>,
}

impl Cluster {
    /// A deployment on infrastructure of its own (a test that kills a
    /// Garage node must not share it).
    pub fn start() -> Cluster {
        Cluster::on(Arc::new(Infra::start()), &[])
    }

    /// A deployment on `infra`, its replicas started with `extra` settings
    /// on top of the deployment's.
    pub fn on(infra: Arc<Infra>, extra: &[(String, String)]) -> Cluster {
        let k = infra.deployments.fetch_add(1, Ordering::Relaxed);
        let hosts: Vec<Host> = (1..=REPLICAS)
            .map(|i| infra.net.host(&format!("d{k}-berth{i}")))
            .collect();
        let front = format!("127.0.0.1:{}", free_port());
        let lb = Balancer::start(&[Pool {
            name: "registry".into(),
            bind: front.clone(),
            policy: Policy::RoundRobin,
            servers: hosts
                .iter()
                .map(|h| (h.name.clone(), format!("{}:5000", h.ip)))
                .collect(),
            health: Some("/healthz".into()),
        }]);
        let prefix = format!("deployment-{k}");
        let mut env = infra.garage.berth_env(&prefix);
        env.extend(
            [
                ("BERTH_METADATA_BACKEND", "postgres".to_string()),
                (
                    "BERTH_METADATA_POSTGRES_URL",
                    infra.pg.url_via(&infra.net.gateway),
                ),
                ("BERTH_METADATA_POSTGRES_SCHEMA", format!("deployment_{k}")),
                ("BERTH_METADATA_POSTGRES_POOL_SIZE", "8".to_string()),
                ("BERTH_AUTH_EXTERNAL_URL", format!("http://{front}")),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env.extend(extra.iter().cloned());
        let replicas = hosts
            .iter()
            .map(|h| Server::on_host(h, env.clone()))
            .collect();
        let c = Cluster {
            replicas,
            lb,
            front,
            prefix,
            ready: 0,
            infra,
        };
        c.wait_all_in_rotation(0);
        let ready = c.lb.served().len();
        Cluster { ready, ..c }
    }

    /// Until the balancer has passed a request to every replica since its
    /// `since`th one (its health checks let a server in once it answers).
    pub fn wait_all_in_rotation(&self, since: usize) {
        let c = Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // 503 from the balancer until a health check has let one in
            let st = c
                .get(format!("http://{}/v2/", self.front))
                .send()
                .expect("the balancer answers")
                .status();
            assert!(
                st == 401 || st == 503,
                "anonymous /v2/ through the balancer: {st}"
            );
            let mut served = self.served_by("registry");
            let served = served.split_off(since.min(served.len()));
            if (0..self.replicas.len()).all(|i| served.iter().any(|x| x.server == self.name(i))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not every replica in rotation:\n{}",
                self.lb.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the balancers passed on to `pool` (`registry` or `s3`) since
    /// this deployment started.
    pub fn served_by(&self, pool: &str) -> Vec<Served> {
        let lb = if pool == "s3" {
            &self.infra.s3_lb
        } else {
            &self.lb
        };
        let all = lb.served();
        let from = if pool == "s3" { 0 } else { self.ready };
        all.into_iter()
            .skip(from)
            .filter(|s| s.pool == pool)
            .collect()
    }

    /// Replica `i`'s host name (its server name on the balancer).
    pub fn name(&self, i: usize) -> String {
        self.replicas[i]
            .on
            .as_ref()
            .expect("a replica on a host")
            .name
            .clone()
    }

    /// Start every stopped replica again and wait until all are in
    /// rotation.
    pub fn start_stopped(&mut self) {
        let since = self.served_by("registry").len();
        for r in &mut self.replicas {
            if !r.running() {
                r.start_again();
            }
        }
        self.wait_all_in_rotation(since);
    }
}
