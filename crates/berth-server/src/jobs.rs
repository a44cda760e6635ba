//! Background jobs of a running server.

use berth_distribution::Distribution;
use std::time::Duration;

/// The reaper of abandoned upload sessions, every `every`.
pub fn spawn_upload_reaper(dist: Distribution, every: Duration) {
    tokio::spawn(async move {
        loop {
            match dist.reap_uploads().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "upload reaper"),
                Err(e) => tracing::warn!(error = %e, "upload reaper failed"),
            }
            tokio::time::sleep(every).await;
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
