//! The blob store contract against each backend.

use berth_storage::{contract, BlobStore};
use std::sync::Arc;

#[tokio::test]
async fn local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::local(dir.path()).unwrap();
    contract::run_all(&s).await;
}

#[tokio::test]
async fn in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        BlobStore::with_store(Arc::new(object_store::memory::InMemory::new()), dir.path()).unwrap();
    contract::run_all(&s).await;
}
