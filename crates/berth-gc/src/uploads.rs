//! The upload reaper: upload sessions idle for longer than their maximum
//! age go (their staged bytes and their record), and so do staged files
//! that no session owns (a crash between creating the file and recording
//! the session, or a monolithic upload cut short). A session in use in this
//! process right now (its lock held) is not abandoned and stays.

use berth_meta::{Meta, MetaError};
use berth_storage::{BlobStore, StorageError};
use std::time::{Duration, SystemTime};

/// What a reaper pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Session records (with their staged bytes).
    pub sessions: usize,
    /// Staged files no session owned.
    pub files: usize,
}

/// How a reaper pass failed (what it removed before stays removed).
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One pass over the sessions and the staging area: remove what has been
/// idle for longer than `max_age`.
pub async fn reap_uploads(
    meta: &Meta,
    blobs: &BlobStore,
    max_age: Duration,
) -> Result<Reaped, ReapError> {
    let cutoff = berth_meta::now_millis().saturating_sub(max_age.as_millis() as u64);
    let mut out = Reaped::default();
    let mut after: Option<String> = None;
    loop {
        let from = after.take();
        let page = meta
            .read(move |m| m.list_uploads(from.as_deref(), 1000))
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, rec) in page {
            if rec.updated_ms >= cutoff {
                continue;
            }
            let Some(_g) = blobs.try_lock_session(&id) else {
                continue;
            };
            blobs.abort(&id).await?;
            let idc = id.clone();
            meta.run(move |m| m.delete_upload(&idc)).await?;
            out.sessions += 1;
            tracing::info!(session = %id, repo = %rec.repo, "reaped abandoned upload session");
        }
    }
    let cutoff_t = SystemTime::now() - max_age;
    let mut flushed = false;
    for (name, mtime) in blobs.staged_files().await? {
        let id = name.clone();
        if mtime >= cutoff_t || meta.read(move |m| m.upload(&id)).await?.is_some() {
            continue;
        }
        // A session's removal may be visible before it is durable (the
        // metadata log's group commit): flush once before any bytes go on
        // the strength of a record read missing.
        if !flushed {
            meta.run(|m| m.flush()).await?;
            flushed = true;
        }
        let Some(_g) = blobs.try_lock_session(&name) else {
            continue;
        };
        blobs.abort(&name).await?;
        out.files += 1;
        tracing::info!(file = %name, "removed orphaned staged upload");
    }
    Ok(out)
}
