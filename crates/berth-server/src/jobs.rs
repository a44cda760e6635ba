//! Background jobs of a running server.

use berth_distribution::Distribution;
use berth_management::Management;
use std::time::Duration;

/// A collection of the instance every `every` (the first one interval
/// after start), as `POST /api/v1/gc` starts it: one at a time per scope,
/// shared by every replica (a replica whose turn meets a run in progress
/// leaves it be).
pub fn spawn_gc_schedule(api: Management, every: Duration, opts: berth_gc::Options) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match api.start_gc(opts.clone()).await {
                Ok(Ok(run)) => {
                    tracing::info!(run = %run.id, "scheduled garbage collection started")
                }
                Ok(Err(active)) => {
                    tracing::info!(running = %active.id, "scheduled garbage collection skipped: one is running")
                }
                Err(e) => tracing::warn!(error = %e, "scheduled garbage collection not started"),
            }
        }
    });
}

/// The reaper of abandoned upload sessions (`berth-gc`), every `every`.
pub fn spawn_upload_reaper(dist: Distribution, every: Duration) {
    tokio::spawn(async move {
        loop {
            match berth_gc::reap_uploads(dist.meta(), dist.blobs(), dist.upload_max_age()).await {
                Ok(r) => {
                    dist.uploads_removed(r.sessions);
                    if r != berth_gc::Reaped::default() {
                        tracing::info!(sessions = r.sessions, files = r.files, "upload reaper");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "upload reaper failed"),
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// Cleanup policies whose interval has passed, looked for every `every`.
pub fn spawn_cleanup_schedule(api: Management, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match api.run_due_cleanups().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(started = n, "scheduled cleanup policies"),
                Err(e) => tracing::warn!(error = %e, "scheduled cleanup policies not started"),
            }
        }
    });
}

/// Pull statistics to the metadata store, every `every`.
pub fn spawn_pull_flusher(dist: Distribution, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = dist.flush_pulls().await {
                tracing::warn!(error = %e, "pull statistics not written; kept for the next flush");
            }
        }
    });
}

/// Each registry's storage use, sampled every `every` (the first at start)
/// and kept for `keep` (`berth-meta/src/usage.rs`).
pub fn spawn_usage_sampler(dist: Distribution, every: Duration, keep: Duration) {
    tokio::spawn(async move {
        loop {
            let (every_ms, keep_ms) = (every.as_millis() as u64, keep.as_millis() as u64);
            let now = berth_meta::now_millis();
            match dist
                .meta()
                .run(move |m| m.sample_usage(now, every_ms, keep_ms))
                .await
            {
                Ok(r) => tracing::debug!(
                    registries = r.registries,
                    expired = r.expired,
                    "usage sampled"
                ),
                Err(e) => tracing::warn!(error = %e, "usage not sampled"),
            }
            // wake at the start of the next interval
            let next = every_ms - berth_meta::now_millis() % every_ms.max(1);
            tokio::time::sleep(Duration::from_millis(next.max(1))).await;
        }
    });
}
