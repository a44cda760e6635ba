//! The blob store contract against each backend.

use berth_storage::{contract, BlobStore};
use std::sync::Arc;

#[tokio::test]
async fn local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::local(dir.path()).unwrap();
    contract::run_all(&s).await;
}

/// Object store sessions (`remote.rs`) over object_store's in-memory
/// store, under a prefix.
#[tokio::test]
async fn in_memory() {
    let s = BlobStore::remote(
        Arc::new(object_store::memory::InMemory::new()),
        "some/prefix",
    );
    contract::run_all(&s).await;
}
