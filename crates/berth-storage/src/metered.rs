//! An object store that reports each request it makes — operation, how
//! long it took, whether it failed — to an observer (the server's
//! `/metrics`). Wraps the remote stores (S3), whose requests are the ones
//! that cost.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Told of every request: operation, duration, success.
pub type Observer = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

/// Where the observer is set once the server has built its metrics.
pub type ObserverSlot = Arc<OnceLock<Observer>>;

/// The requests the blob store makes, by these names.
pub const OPERATIONS: [&str; 11] = [
    "get",
    "head",
    "put",
    "delete",
    "list",
    "copy",
    "create_multipart",
    "put_part",
    "complete_multipart",
    "abort_multipart",
    "sign",
];

pub struct Metered<S> {
    inner: Arc<S>,
    slot: ObserverSlot,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> Metered<S> {
    pub fn new(inner: Arc<S>, slot: ObserverSlot) -> Metered<S> {
        Metered { inner, slot }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let t = Instant::now();
        let out = f.await;
        if let Some(o) = self.slot.get() {
            // a missing object is an answer, not a failure
            let ok = matches!(&out, Ok(_) | Err(object_store::Error::NotFound { .. }));
            o(op, t.elapsed(), ok);
        }
        out
    }

    fn count(&self, op: &'static str, ok: bool) {
        if let Some(o) = self.slot.get() {
            o(op, Duration::ZERO, ok);
        }
    }
}

impl<S: std::fmt::Display> std::fmt::Display for Metered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Metered<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.timed("put", self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.timed(
            "create_multipart",
            self.inner.put_multipart_opts(location, opts),
        )
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        self.timed(op, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        self.timed("get", self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let slot = self.slot.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| {
                if let Some(o) = slot.get() {
                    o("delete", Duration::ZERO, r.is_ok());
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count("list", true);
        let slot = self.slot.clone();
        self.inner
            .list(prefix)
            .inspect(move |r| {
                if r.is_err() {
                    if let Some(o) = slot.get() {
                        o("list", Duration::ZERO, false);
                    }
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.timed("list", self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.timed("copy", self.inner.copy_opts(from, to, options))
            .await
    }
}

#[async_trait]
impl<S: MultipartStore> MultipartStore for Metered<S> {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        self.timed("create_multipart", self.inner.create_multipart(path))
            .await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        self.timed("put_part", self.inner.put_part(path, id, part_idx, data))
            .await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        self.timed(
            "complete_multipart",
            self.inner.complete_multipart(path, id, parts),
        )
        .await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        self.timed("abort_multipart", self.inner.abort_multipart(path, id))
            .await
    }
}

#[async_trait]
impl<S: Signer> Signer for Metered<S> {
    async fn signed_url(
        &self,
        method: http::Method,
        path: &Path,
        expires_in: Duration,
    ) -> Result<url::Url> {
        self.timed("sign", self.inner.signed_url(method, path, expires_in))
            .await
    }
}
