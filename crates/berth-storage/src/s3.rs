//! An S3 (or S3-compatible) bucket as the blob store: object_store's
//! `AmazonS3`, with upload sessions in the bucket (`remote.rs`) and
//! presigned GET URLs for redirects.

use crate::blobs::{BlobStore, StorageError};
use crate::metered::{Metered, ObserverSlot};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use std::sync::Arc;
use std::time::Duration;

/// Where the bucket is and how to reach it; unset values come from the
/// standard `AWS_*` variables (`AmazonS3Builder::from_env`).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Presigned GET URLs valid this long for redirects; `None`: none.
    pub redirect: Option<Duration>,
}

/// The S3 client from the settings.
pub fn client(s: &S3Settings) -> Result<AmazonS3, StorageError> {
    // https endpoints: rustls with ring (a provider set before wins)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = AmazonS3Builder::from_env().with_virtual_hosted_style_request(!s.path_style);
    if let Some(e) = &s.endpoint {
        b = b
            .with_endpoint(e.trim_end_matches('/'))
            .with_allow_http(e.starts_with("http://"));
    }
    if let Some(v) = &s.bucket {
        b = b.with_bucket_name(v);
    }
    // S3-compatible stores mostly accept any region name; AWS wants the
    // bucket's.
    let region = s
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    if let Some(v) = &s.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &s.secret_access_key {
        b = b.with_secret_access_key(v);
    }
    Ok(b.build()?)
}

impl BlobStore {
    /// Blobs and upload sessions in an S3 bucket.
    pub fn s3(s: &S3Settings) -> Result<BlobStore, StorageError> {
        let slot = ObserverSlot::default();
        let c = Arc::new(Metered::new(Arc::new(client(s)?), slot.clone()));
        let store = BlobStore::remote(c.clone(), &s.prefix).observed_by(slot);
        Ok(match s.redirect {
            Some(ttl) => store.with_signer(c, ttl),
            None => store,
        })
    }
}
