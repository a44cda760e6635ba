//! Berth's metadata store.
//!
//! Two layers:
//! - [`KvStore`]: the engine seam. Ordered key-value column families, point
//!   reads, bounded ordered scans and atomic, durable write batches.
//!   [`RocksStore`] is the engine; [`MemStore`] is an in-memory engine used by
//!   the contract suite (and usable in tests). A distributed engine can take
//!   RocksDB's place by implementing this trait.
//! - [`Meta`]: typed records (repositories, manifests, tags, links, blobs,
//!   referrers, upload sessions) encoded into keys that sort the way listings
//!   page, so a page of `_catalog` or `tags/list` reads only that page.
//!
//! RocksDB says what exists; the blob store only holds bytes. A write here is
//! the moment something becomes visible.

pub mod cf;
mod kv;
mod mem;
mod meta;
mod principals;
mod rocks;

#[doc(hidden)]
pub mod contract;

pub use kv::{Batch, KvError, KvStore, Op, Rows};
pub use mem::MemStore;
pub use meta::{
    now_millis, BlobRecord, LinkRecord, ManifestRecord, Meta, MetaError, Page, PutManifest,
    ReferrerRecord, RepoRecord, TagRecord, UploadRecord,
};
pub use principals::{RegistryRecord, TokenRecord, UserRecord, Visibility};
pub use rocks::RocksStore;
