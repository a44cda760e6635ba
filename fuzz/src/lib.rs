//! What the in-process API targets share: a runtime to drive handlers on
//! and an in-memory blob store.

use std::sync::Arc;

/// A single-threaded runtime with timers and I/O (handlers spawn blocking
/// metadata work and timers).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Blobs and upload sessions in memory (object_store's `InMemory`).
pub fn memory_blobs() -> Arc<berth_storage::BlobStore> {
    Arc::new(berth_storage::BlobStore::remote(
        Arc::new(object_store::memory::InMemory::new()),
        "",
    ))
}
