//! Berth's blob store: content-addressed blobs over `object_store`, and
//! upload sessions that stream bytes to a staging area while hashing them.
//!
//! Layout under the store root (distribution's `paths.go` idea):
//!
//! ```text
//! <root>/
//!   blobs/
//!     sha256/
//!       ab/
//!         abcdef…          the blob's bytes, written once, renamed into place
//!     sha512/…
//!   uploads/
//!     <session id>        staged bytes of an open upload session
//! ```
//!
//! Contracts:
//! - A blob path only ever holds the complete, verified bytes of its digest:
//!   bytes are staged, fsynced, verified and then renamed (filesystem) or
//!   completed as one object (other stores).
//! - [`BlobStore::append`] makes the bytes it accepted durable before it
//!   returns; on any error it truncates the staged file back to where it
//!   started, so a failed request leaves no partial state.
//! - Nothing here holds a whole blob in memory.
//! - Which blobs a repository may see is not this crate's business: the
//!   metadata store records that after a commit here succeeds.

mod blobs;
#[doc(hidden)]
pub mod contract;
#[cfg(target_os = "linux")]
pub mod mapped;
pub mod metered;
mod pool;
pub mod remote;
mod s3;
mod staging;

pub use blobs::{
    blob_path, BlobStore, ByteStream, SessionGuard, SessionState, StorageError, Then, WriteActivity,
};
pub use s3::{client as s3_client, S3Settings};
