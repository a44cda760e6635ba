//! Prometheus metrics of the whole server: requests, bytes, the process
//! (CPU, memory, file descriptors), the metadata engine, what is stored,
//! the blob store's operations, refused logins and upload sessions.
//! Figures owned by other parts are read at each scrape.

use berth_distribution::Distribution;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    /// Client connections being served.
    pub connections: IntGauge,
    /// Request bodies abandoned for sending nothing within the idle timeout.
    pub body_timeouts: IntCounter,
    /// Connections closed after an answer given before the request body
    /// was read (the rest was too long to drain).
    pub undrained: IntCounter,
    pub open_uploads: IntGauge,
    session_locks: IntGauge,
    stored: IntGaugeVec,
    registry_used: IntGaugeVec,
    registry_limit: IntGaugeVec,
    keys: GaugeVec,
    engine: GaugeVec,
    blob_ops: IntCounterVec,
    store_requests: IntCounterVec,
    store_latency: HistogramVec,
    refusals: IntCounterVec,
    /// One scrape at a time: scrapes set the read-at-scrape families.
    scrape: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Metrics {
    /// What a metered object store reports its requests to.
    pub fn object_store_observer(&self) -> berth_storage::metered::Observer {
        let (n, t) = (self.store_requests.clone(), self.store_latency.clone());
        std::sync::Arc::new(move |op, took, ok| {
            n.with_label_values(&[op, if ok { "ok" } else { "error" }])
                .inc();
            if !took.is_zero() {
                t.with_label_values(&[op]).observe(took.as_secs_f64());
            }
        })
    }

    pub fn new() -> Metrics {
        let r = Registry::new();
        let requests = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "berth_http_requests_total",
                    "HTTP requests by route, method and status",
                ),
                &["route", "method", "status"],
            )
            .expect("metric"),
        );
        let latency = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "berth_http_request_duration_seconds",
                    "Time to the response head, by route",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ]),
                &["route"],
            )
            .expect("metric"),
        );
        let bytes_in = reg(
            &r,
            IntCounter::new(
                "berth_http_received_bytes_total",
                "Request body bytes received",
            )
            .expect("metric"),
        );
        let bytes_out = reg(
            &r,
            IntCounter::new("berth_http_sent_bytes_total", "Response body bytes sent")
                .expect("metric"),
        );
        let connections = reg(
            &r,
            IntGauge::new(
                "berth_http_connections_open",
                "Client connections being served (at most http.max_connections)",
            )
            .expect("metric"),
        );
        let body_timeouts = reg(
            &r,
            IntCounter::new(
                "berth_http_body_timeouts_total",
                "Request bodies abandoned after sending nothing for http.body_idle_timeout_secs",
            )
            .expect("metric"),
        );
        let undrained = reg(
            &r,
            IntCounter::new(
                "berth_http_undrained_closes_total",
                "Connections closed after an answer because the request body was not read to its end (longer than is drained, stalled, or awaiting 100-continue)",
            )
            .expect("metric"),
        );
        let open_uploads = reg(
            &r,
            IntGauge::new("berth_upload_sessions_open", "Open blob upload sessions")
                .expect("metric"),
        );
        let session_locks = reg(
            &r,
            IntGauge::new(
                "berth_upload_session_locks",
                "Entries in the in-memory upload session lock table (tracks sessions in use, not the ids clients send)",
            )
            .expect("metric"),
        );
        let stored = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "berth_stored",
                    "What the instance stores, exactly: blobs, blob_bytes, repositories, registries",
                ),
                &["kind"],
            )
            .expect("metric"),
        );
        let registry_used = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "berth_registry_used_bytes",
                    "Storage a registry uses, exactly: its distinct blobs once, plus its manifests",
                ),
                &["registry"],
            )
            .expect("metric"),
        );
        let registry_limit = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "berth_registry_limit_bytes",
                    "A registry's storage limit (registries without one are absent)",
                ),
                &["registry"],
            )
            .expect("metric"),
        );
        let keys = reg(
            &r,
            GaugeVec::new(
                Opts::new(
                    "berth_metadata_keys_estimate",
                    "Keys per metadata column family (the engine's estimate; manifests, tags, links, ...)",
                ),
                &["cf"],
            )
            .expect("metric"),
        );
        let engine = reg(
            &r,
            GaugeVec::new(
                Opts::new(
                    "berth_metadata_engine",
                    "Metadata engine figures: live_data_bytes, sst_bytes, memtable_bytes, pending_compaction_bytes, running_compactions, block_cache_bytes, log_syncs (syncs of the write-ahead log since start, shared by concurrent synced writes)",
                ),
                &["figure"],
            )
            .expect("metric"),
        );
        let blob_ops = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "berth_blob_store_operations_total",
                    "Blob store operations since start: commits, committed_bytes, reads, deletes, digest_mismatches, redirects, sendfile_bytes (blob bytes sent from the page cache with sendfile)",
                ),
                &["op"],
            )
            .expect("metric"),
        );
        let store_requests = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "berth_object_store_requests_total",
                    "Requests to a remote object store (S3) by operation and outcome (ok, error)",
                ),
                &["op", "outcome"],
            )
            .expect("metric"),
        );
        let store_latency = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "berth_object_store_request_duration_seconds",
                    "Time of requests to a remote object store (S3), by operation",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &["op"],
            )
            .expect("metric"),
        );
        for op in berth_storage::metered::OPERATIONS {
            for outcome in ["ok", "error"] {
                store_requests.with_label_values(&[op, outcome]);
            }
        }
        let refusals = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "berth_auth_refusals_total",
                    "Refused logins and bearer tokens since start, by reason",
                ),
                &["reason"],
            )
            .expect("metric"),
        );
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector");
        Metrics {
            registry: r,
            requests,
            latency,
            bytes_in,
            bytes_out,
            connections,
            body_timeouts,
            undrained,
            open_uploads,
            session_locks,
            stored,
            registry_used,
            registry_limit,
            keys,
            engine,
            blob_ops,
            store_requests,
            store_latency,
            refusals,
            scrape: Default::default(),
        }
    }

    /// Read the figures other parts own, then render every family.
    pub async fn render(&self, dist: &Distribution, auth: &berth_auth::Auth) -> Vec<u8> {
        let _one = self.scrape.lock().await;
        let meta = dist.meta().clone();
        match meta.run(|m| Ok((m.counters()?, m.engine_stats()))).await {
            Ok((counters, stats)) => {
                for (name, n) in counters {
                    self.stored.with_label_values(&[name]).set(n);
                }
                for (name, v) in stats {
                    match name.strip_prefix("keys:") {
                        Some(cf) => self.keys.with_label_values(&[cf]).set(v),
                        None => self.engine.with_label_values(&[&name]).set(v),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: metadata figures unavailable"),
        }
        match meta.run(registry_usage).await {
            Ok(rows) => {
                // Deleted registries go from the families.
                self.registry_used.reset();
                self.registry_limit.reset();
                for (name, used, limit) in rows {
                    self.registry_used.with_label_values(&[&name]).set(used);
                    if let Some(l) = limit {
                        self.registry_limit
                            .with_label_values(&[&name])
                            .set(l.min(i64::MAX as u64) as i64);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: registry usage unavailable"),
        }
        // Open sessions as the store has them: the replicas share them (one
        // opens, another commits, a third reaps), so no process's own
        // count of opens and closes is the figure.
        if let Err(e) = dist.count_uploads().await {
            tracing::warn!(error = %e, "metrics: open upload sessions unavailable");
        }
        self.session_locks
            .set(dist.blobs().session_entries() as i64);
        set_counters(&self.blob_ops, dist.blobs().op_counts().iter().copied());
        set_counters(&self.refusals, auth.refusals().into_iter());
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        buf
    }
}

/// Most registries a scrape reports usage for.
const MAX_REGISTRIES: usize = 10_000;

/// Each registry's usage and limit (three counter reads each).
fn registry_usage(
    m: &berth_meta::Meta,
) -> Result<Vec<(String, i64, Option<u64>)>, berth_meta::MetaError> {
    let mut out = Vec::new();
    for (name, r) in m.list_registries(None, MAX_REGISTRIES)? {
        let (blobs, manifests) = m.registry_usage(&name)?;
        let bin = m.registry_bin_bytes(&name)?;
        out.push((name, blobs + manifests + bin, r.storage_limit));
    }
    Ok(out)
}

/// Counters whose values are kept elsewhere: set each child to its total.
fn set_counters<'a>(vec: &IntCounterVec, totals: impl Iterator<Item = (&'a str, u64)>) {
    for (label, total) in totals {
        let c = vec.with_label_values(&[label]);
        let now = c.get();
        if total > now {
            c.inc_by(total - now);
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
