//! Berth's metadata store.
//!
//! Two layers:
//! - [`KvStore`]: the engine seam. Ordered key-value column families, point
//!   reads, bounded ordered scans and atomic, durable write batches applied
//!   under conditions (a key's expected value or absence), with a distinct
//!   conflict error.
//!   [`RocksStore`] is the engine; [`MemStore`] is an in-memory engine used by
//!   the contract suite (and usable in tests). [`PgStore`] (feature
//!   `postgres`) is the engine several replicas share: PostgreSQL, each
//!   batch one transaction under advisory locks on the keys it names.
//! - [`Meta`]: typed records (repositories, manifests, tags, links, blobs,
//!   referrers, upload sessions) encoded into keys that sort the way listings
//!   page, so a page of `_catalog` or `tags/list` reads only that page.
//!   Every change is a transaction ([`Meta::transact`], `tx.rs`): reads,
//!   checks and writes commit together or retry on conflict. No locks.
//!
//! RocksDB says what exists; the blob store only holds bytes. A write here is
//! the moment something becomes visible.

mod bin;
pub mod cf;
mod check;
mod copy;
mod gc;
mod kv;
mod mem;
mod meta;
#[cfg(test)]
mod model;
#[cfg(feature = "postgres")]
mod pg;
mod policies;
mod principals;
mod repos;
#[cfg(feature = "rocksdb")]
mod rocks;
mod rules;
mod tx;
mod usage;

#[doc(hidden)]
pub mod contract;

pub use bin::{repo_bin_prefix, BinEntry, BinnedManifest, BinnedTag, Purged, Restored};
pub use check::CheckReport;
pub use copy::{copy_store, Copied, CopyError};
pub use gc::{Candidates, GcReach, GcRun, Lease, GC_LEASE_MS, GC_LOCK_TTL_MS, GC_RENEW_MS};
pub use kv::{counter_value, Batch, Cond, KvError, KvStore, Op, Rows};
pub use mem::MemStore;
pub use meta::{
    counter, now_millis, registry_of, BlobRecord, LinkRecord, ManifestRecord, Meta, MetaError,
    Page, PutManifest, Ref, ReferrerRecord, Refused, RepoRecord, TagRecord, UploadLimits,
    UploadRecord, UPLOAD_SLOTS,
};
#[cfg(feature = "postgres")]
pub use pg::{valid_schema, PgSettings, PgStore, MIGRATIONS, PARTITIONS};
pub use policies::{CleanupPolicy, CleanupRun};
pub use principals::{
    RegistryDelete, RegistryRecord, RegistryStatus, TokenRecord, TokenStatus, UserRecord,
    UserRefused, Visibility,
};
pub use repos::{AuditFilter, AuditPage, AuditRecord, ManifestDelete, RepoStats, TagEvent};
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;
pub use rules::{
    validate_pattern, RuleRefused, TagChange, TagRefusal, TagRule, TagRuleKind, ADMIN_SUBJECT,
    MAX_RULES,
};
pub use tx::{Tx, MAX_ATTEMPTS};
pub use usage::{Sampled, UsageSample};
