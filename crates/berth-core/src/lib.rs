//! Core types shared by every Berth crate: digests, repository names and
//! references, media types, manifest parsing and the OCI error codes.
//!
//! Nothing here does I/O or knows about HTTP.

pub mod digest;
pub mod error;
pub mod json;
pub mod manifest;
pub mod media_types;
pub mod name;
pub mod range;
pub mod resumable;
pub mod time;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind};
pub use name::{NameError, Reference, RepoName};
pub use resumable::Sha256State;
