//! Upload sessions kept in the object store itself (S3 and the like), so
//! that no byte of an open upload lives on the server's disk and any
//! replica can go on with a session another one began.
//!
//! A session `<id>` is, under `uploads/<id>/`:
//!
//! ```text
//! multipart        the id of its multipart upload (written before any part)
//! <offset>.state   what the session is at <offset> bytes: the multipart
//!                  upload, its parts, the running SHA-256, and the tail —
//!                  the bytes past the last part (fewer than PART)
//! data             the completed multipart object, until it is verified
//!                  and copied under its digest
//! ```
//!
//! Bytes are gathered into parts of exactly [`PART`] bytes (S3 wants every
//! part but the last to be at least 5 MiB); the rest of a request's bytes,
//! the tail, is written into the new state object, so when `append`
//! returns, everything it accepted is in the object store. State objects
//! are named by offset and the one for the previous offset stays until the
//! next append: the metadata store records a session's offset after the
//! append returns, so after a crash in between the next append starts from
//! the state of the offset the metadata store has (parts past it are
//! uploaded again under the same part numbers, which replaces them).
//! Memory per request: two part buffers (one being sent while the next is
//! read) and the chunk in hand.

use crate::blobs::{ByteStream, StorageError};
use berth_core::{Algorithm, Digest, Hasher, Sha256State};
use bytes::Bytes;
use futures::future::Either;
use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The size of every part but the last.
pub const PART: usize = 5 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"BERTHUP1";

/// A part being sent.
type Sending = futures::future::BoxFuture<'static, object_store::Result<PartId>>;

/// What a state object says besides its tail.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Head {
    /// The multipart upload, once a part was needed.
    upload: Option<String>,
    /// The parts' ids (ETags), in order; each `PART` bytes.
    parts: Vec<String>,
    /// The running SHA-256 of every byte so far, saved
    /// ([`Sha256State::save`], hex).
    sha256: Option<String>,
    /// The offset of the state object this one followed.
    prev: Option<u64>,
}

/// A session as loaded, or as an append left it for the commit that follows
/// in the same request.
pub struct Pending {
    head: Head,
    hash: Option<Sha256State>,
    tail: Vec<u8>,
    /// Bytes so far: the parts and the tail.
    offset: u64,
}

impl Pending {
    fn fresh(upload: Option<String>) -> Pending {
        Pending {
            head: Head {
                upload,
                ..Head::default()
            },
            hash: Some(Sha256State::new()),
            tail: Vec::new(),
            offset: 0,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// The object store's sessions.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    parts: Arc<dyn MultipartStore>,
    /// Where everything lives in the bucket (empty: at its root).
    root: ObjPath,
}

fn missing(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Remote {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        parts: Arc<dyn MultipartStore>,
        root: ObjPath,
    ) -> Remote {
        Remote { store, parts, root }
    }

    /// `rel` under the root.
    pub fn at(&self, rel: &ObjPath) -> ObjPath {
        self.root.parts().chain(rel.parts()).collect()
    }

    fn dir(&self, id: &str) -> ObjPath {
        self.at(&ObjPath::from("uploads")).join(id)
    }

    fn state_path(&self, id: &str, offset: u64) -> ObjPath {
        self.dir(id).join(format!("{offset}.state"))
    }

    fn marker(&self, id: &str) -> ObjPath {
        self.dir(id).join("multipart")
    }

    fn data(&self, id: &str) -> ObjPath {
        self.dir(id).join("data")
    }

    /// The session at `offset`: its state object, or at 0 a new session
    /// (reusing a multipart upload a failed first request began).
    pub async fn load(&self, id: &str, offset: u64) -> Result<Pending, StorageError> {
        match self.store.get(&self.state_path(id, offset)).await {
            Ok(r) => {
                let b = r.bytes().await?;
                decode(&b, offset)
            }
            Err(e) if missing(&e) && offset == 0 => {
                let upload = match self.store.get(&self.marker(id)).await {
                    Ok(r) => Some(String::from_utf8_lossy(&r.bytes().await?).into_owned()),
                    Err(e) if missing(&e) => None,
                    Err(e) => return Err(e.into()),
                };
                Ok(Pending::fresh(upload))
            }
            Err(e) if missing(&e) => Err(StorageError::SessionNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// The multipart upload of a session, begun (and its id recorded in
    /// the marker) if it has none.
    async fn upload(&self, id: &str, p: &mut Pending) -> Result<String, StorageError> {
        if let Some(u) = &p.head.upload {
            return Ok(u.clone());
        }
        let u = self.parts.create_multipart(&self.data(id)).await?;
        self.store
            .put(&self.marker(id), PutPayload::from(u.clone()))
            .await?;
        p.head.upload = Some(u.clone());
        Ok(u)
    }

    /// The tail, sent as part number `idx`: a future that owns what it
    /// needs, so that it can run while the next part is read. Dropping it
    /// cancels the request (no upload outlives its request).
    fn part(&self, id: &str, upload: String, idx: usize, p: &mut Pending) -> Sending {
        let bytes = Bytes::from(std::mem::replace(&mut p.tail, Vec::with_capacity(PART)));
        let (parts, path) = (self.parts.clone(), self.data(id));
        Box::pin(async move { parts.put_part(&path, &upload, idx, bytes.into()).await })
    }

    /// Send the tail as the next part and wait for it.
    async fn put_part(&self, id: &str, p: &mut Pending) -> Result<(), StorageError> {
        let upload = self.upload(id, p).await?;
        let idx = p.head.parts.len();
        let part = self.part(id, upload, idx, p).await?;
        p.head.parts.push(part.content_id);
        Ok(())
    }

    /// Append `body` to the session at `offset` (see the module's text).
    /// With `stage`, the new state is written before returning; else it is
    /// handed back for a commit in the same request.
    pub async fn append<S, E>(
        &self,
        id: &str,
        held: Option<Pending>,
        offset: u64,
        body: S,
        exact_len: Option<u64>,
        stage: bool,
    ) -> Result<Pending, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut p = match held {
            Some(p) if p.offset == offset => p,
            _ => self.load(id, offset).await?,
        };
        let loaded_prev = p.head.prev;
        let mut body = std::pin::pin!(body);
        let mut n = 0u64;
        // one part on its way while the next is read
        let mut sending: Option<Sending> = None;
        loop {
            let next = match sending.as_mut() {
                None => body.next().await,
                Some(f) => match futures::future::select(f, body.next()).await {
                    Either::Left((sent, _)) => {
                        p.head.parts.push(sent?.content_id);
                        sending = None;
                        continue;
                    }
                    Either::Right((c, _)) => c,
                },
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
            n += chunk.len() as u64;
            if let Some(l) = exact_len.filter(|l| n > *l) {
                return Err(StorageError::LengthMismatch {
                    expected: l,
                    got: n,
                });
            }
            if let Some(h) = p.hash.as_mut() {
                h.update(&chunk);
            }
            let mut c = &chunk[..];
            while !c.is_empty() {
                if p.tail.capacity() < PART {
                    p.tail.reserve_exact(PART - p.tail.len());
                }
                let take = (PART - p.tail.len()).min(c.len());
                p.tail.extend_from_slice(&c[..take]);
                c = &c[take..];
                if p.tail.len() == PART {
                    if let Some(f) = sending.take() {
                        p.head.parts.push(f.await?.content_id);
                    }
                    let upload = self.upload(id, &mut p).await?;
                    let idx = p.head.parts.len();
                    sending = Some(self.part(id, upload, idx, &mut p));
                }
            }
        }
        if let Some(f) = sending.take() {
            p.head.parts.push(f.await?.content_id);
        }
        if let Some(l) = exact_len.filter(|l| n != *l) {
            return Err(StorageError::LengthMismatch {
                expected: l,
                got: n,
            });
        }
        p.offset = offset + n;
        if stage {
            p.head.prev = Some(offset);
            p.head.sha256 = p.hash.as_ref().map(|h| hex::encode(h.save()));
            self.store
                .put(&self.state_path(id, p.offset), encode(&p).into())
                .await?;
            // the metadata store has `offset`: the state before it is done with
            if let Some(old) = loaded_prev.filter(|o| *o != p.offset) {
                self.delete(&self.state_path(id, old)).await?;
            }
        }
        Ok(p)
    }

    /// Make the session's `size` bytes the blob `expected` at `target` if
    /// they hash to it; the session is gone afterwards either way (not on
    /// an object store error, so the client may retry). Returns the digest
    /// the bytes have.
    pub async fn commit(
        &self,
        id: &str,
        held: Option<Pending>,
        size: u64,
        expected: &Digest,
        target: &ObjPath,
    ) -> Result<Digest, StorageError> {
        let mut p = match held {
            Some(p) if p.offset == size => p,
            _ => self.load(id, size).await?,
        };
        let running = p
            .hash
            .take()
            .filter(|_| expected.algorithm() == Algorithm::Sha256);
        let actual = if p.head.upload.is_none() {
            // all of it is the tail: one PUT
            let actual = match running {
                Some(h) => h.finish(),
                None => {
                    let mut h = Hasher::new(expected.algorithm());
                    h.update(&p.tail);
                    h.finish()
                }
            };
            if &actual == expected {
                let tail = Bytes::from(std::mem::take(&mut p.tail));
                self.store.put(target, tail.into()).await?;
            }
            actual
        } else {
            if !p.tail.is_empty() {
                self.put_part(id, &mut p).await?;
            }
            let upload = p.head.upload.clone().expect("a multipart upload");
            let parts = p
                .head
                .parts
                .iter()
                .map(|c| PartId {
                    content_id: c.clone(),
                })
                .collect();
            let data = self.data(id);
            self.parts.complete_multipart(&data, &upload, parts).await?;
            let actual = match running {
                Some(h) => h.finish(),
                None => {
                    let mut h = Hasher::new(expected.algorithm());
                    let mut s: ByteStream = self
                        .store
                        .get(&data)
                        .await?
                        .into_stream()
                        .map(|c| c.map_err(StorageError::from))
                        .boxed();
                    while let Some(c) = s.next().await {
                        h.update(&c?);
                    }
                    h.finish()
                }
            };
            if &actual == expected {
                // S3's CopyObject: up to 5 GiB in one request
                self.store.copy(&data, target).await?;
            }
            actual
        };
        self.abort(id, false).await?;
        Ok(actual)
    }

    async fn delete(&self, path: &ObjPath) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove everything of a session; with `multipart`, abort its
    /// multipart upload first (a committed session's is complete).
    pub async fn abort(&self, id: &str, multipart: bool) -> Result<(), StorageError> {
        if multipart {
            match self.store.get(&self.marker(id)).await {
                Ok(r) => {
                    let upload = String::from_utf8_lossy(&r.bytes().await?).into_owned();
                    match self.parts.abort_multipart(&self.data(id), &upload).await {
                        Ok(()) => {}
                        Err(e) if missing(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) if missing(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let dir = self.dir(id);
        let mut objects = self.store.list(Some(&dir));
        let mut paths = Vec::new();
        while let Some(m) = objects.next().await {
            paths.push(m?.location);
        }
        // the marker last: until it goes, a retried abort finds the upload
        paths.sort_by_key(|p| p.filename() == Some("multipart"));
        for p in paths {
            self.delete(&p).await?;
        }
        Ok(())
    }

    /// Sessions with objects in the store, each with its newest object's
    /// time (for the reaper).
    pub async fn sessions(&self) -> Result<Vec<(String, SystemTime)>, StorageError> {
        let dir = self.at(&ObjPath::from("uploads"));
        let mut objects = self.store.list(Some(&dir));
        let mut newest: HashMap<String, SystemTime> = HashMap::new();
        while let Some(m) = objects.next().await {
            let m = m?;
            let Some(id) = m.location.prefix_match(&dir).and_then(|mut p| p.next()) else {
                continue;
            };
            let t = SystemTime::from(m.last_modified);
            let e = newest
                .entry(id.as_ref().to_string())
                .or_insert(SystemTime::UNIX_EPOCH);
            *e = (*e).max(t);
        }
        Ok(newest.into_iter().collect())
    }
}

/// A state object: magic, the head's length (u32, big-endian), the head
/// as JSON, the tail.
fn encode(p: &Pending) -> Bytes {
    let head = serde_json::to_vec(&p.head).expect("a head serialises");
    let mut v = Vec::with_capacity(MAGIC.len() + 4 + head.len() + p.tail.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(head.len() as u32).to_be_bytes());
    v.extend_from_slice(&head);
    v.extend_from_slice(&p.tail);
    Bytes::from(v)
}

fn decode(b: &[u8], offset: u64) -> Result<Pending, StorageError> {
    let bad = || StorageError::Corrupt(format!("upload state at {offset} is not readable"));
    if b.len() < MAGIC.len() + 4 || &b[..MAGIC.len()] != MAGIC {
        return Err(bad());
    }
    let at = MAGIC.len();
    let n = u32::from_be_bytes(b[at..at + 4].try_into().map_err(|_| bad())?) as usize;
    let head_end = (at + 4)
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(bad)?;
    let head: Head = serde_json::from_slice(&b[at + 4..head_end]).map_err(|_| bad())?;
    let tail = b[head_end..].to_vec();
    if head.parts.len() as u64 * PART as u64 + tail.len() as u64 != offset {
        return Err(bad());
    }
    // a state that does not restore (or covers other bytes) is re-hashed
    // at the commit instead
    let hash = head
        .sha256
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|s| Sha256State::restore(&s))
        .filter(|h| h.len() == offset);
    Ok(Pending {
        head,
        hash,
        tail,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_objects_round_trip_and_are_checked() {
        let mut p = Pending::fresh(Some("up-1".into()));
        p.hash.as_mut().unwrap().update(b"hello");
        p.tail = b"hello".to_vec();
        p.offset = 5;
        p.head.sha256 = Some(hex::encode(p.hash.as_ref().unwrap().save()));
        let b = encode(&p);
        let q = decode(&b, 5).unwrap();
        assert_eq!((q.tail.as_slice(), q.offset), (&b"hello"[..], 5));
        assert_eq!(q.head.upload.as_deref(), Some("up-1"));
        assert_eq!(q.hash.unwrap().finish(), Digest::sha256_of(b"hello"));
        // at another offset, cut short, or not a state object at all
        assert!(decode(&b, 6).is_err());
        assert!(decode(&b[..b.len() - 1], 5).is_err());
        assert!(decode(b"nonsense", 0).is_err());
    }
}
