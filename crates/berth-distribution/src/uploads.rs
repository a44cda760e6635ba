//! Blob uploads: `POST`/`PATCH`/`PUT`/`GET`/`DELETE` on
//! `/v2/<name>/blobs/uploads/…`, cross-repository mounts, and the reaper of
//! abandoned sessions.
//!
//! Session state lives in the metadata store (so sessions survive a
//! restart); the staged bytes live in the blob store. The offset recorded in
//! the metadata store is the acknowledged length: bytes past it (a crash
//! mid-PATCH) are cut off by the next append.

use crate::{status_response, ApiError, Body, Inner, Query, Result};
use berth_core::range::parse_content_range;
use berth_core::{Digest, ErrorCode, RepoName};
use berth_meta::{now_millis, UploadRecord};
use berth_storage::{SessionState, Then};
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};

fn location(name: &RepoName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` header of an upload: the inclusive range received so far
/// (`0-0` when nothing has been, as the reference registry answers).
fn range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn session_headers(name: &RepoName, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", location(name, id)),
        ("range", range(offset)),
        ("docker-upload-uuid", id.to_string()),
    ]
}

fn created(name: &RepoName, digest: &Digest) -> Response<Body> {
    status_response(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
        ],
    )
}

fn unknown_upload(id: &str) -> ApiError {
    ApiError::new(ErrorCode::BlobUploadUnknown).detail(id.to_string())
}

/// Session ids are UUIDs we minted; anything else cannot name a session
/// (and must never reach the filesystem).
fn check_id(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| unknown_upload(id))
}

/// Refuse a blob of `size` bytes the registry does not hold yet that would
/// take it over its storage limit, before the bytes are read (the linking
/// transaction checks again).
async fn precheck_quota(s: &Inner, name: &RepoName, digest: &Digest, size: u64) -> Result<()> {
    let (registry, d) = (name.first_component().to_string(), digest.to_string());
    s.meta
        .run(move |m| m.check_quota(&registry, &d, size))
        .await?;
    Ok(())
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::new(ErrorCode::BadRequest).message("invalid Content-Length")),
    }
}

/// How many bytes the body must carry, checked against the session's
/// offset: `Content-Range` must start where the session ends (else 416:
/// out of order, overlapping or repeated), and agree with `Content-Length`.
fn expected_len(h: &HeaderMap, name: &RepoName, id: &str, offset: u64) -> Result<Option<u64>> {
    let cl = content_length(h)?;
    let Some(cr) = h.get(header::CONTENT_RANGE) else {
        return Ok(cl);
    };
    let bad = |msg: String| {
        let mut e = ApiError::new(ErrorCode::RangeInvalid).message(msg);
        for (k, v) in session_headers(name, id, offset) {
            e = e.header(http::HeaderName::from_static(k), crate::hv(&v));
        }
        e
    };
    let Some((start, end)) = cr.to_str().ok().and_then(parse_content_range) else {
        return Err(bad("malformed Content-Range".into()));
    };
    if start != offset {
        return Err(bad(format!(
            "chunk starts at {start} but the upload has {offset} bytes: chunks must be sent in order, without gaps or overlaps"
        )));
    }
    let len = end - start + 1;
    if let Some(cl) = cl {
        if cl != len {
            return Err(ApiError::new(ErrorCode::SizeInvalid)
                .message("Content-Length does not match Content-Range")
                .detail(serde_json::json!({ "contentLength": cl, "contentRange": len })));
        }
    }
    Ok(Some(len))
}

async fn session(s: &Inner, name: &RepoName, id: &str) -> Result<UploadRecord> {
    let idc = id.to_string();
    match s.meta.read(move |m| m.upload(&idc)).await? {
        Some(r) if r.repo == name.as_str() => Ok(r),
        _ => Err(unknown_upload(id)),
    }
}

/// Exclusive access to a session that exists, and its record. An unknown
/// id is refused before the lock table is touched, and an entry made for a
/// session removed while we waited is dropped again: the table holds live
/// sessions only, whatever ids clients send.
async fn locked_session(
    s: &Inner,
    name: &RepoName,
    id: &str,
) -> Result<(berth_storage::SessionGuard, UploadRecord)> {
    session(s, name, id).await?;
    let guard = s.blobs.lock_session(id).await;
    match session(s, name, id).await {
        Ok(rec) => Ok((guard, rec)),
        Err(e) => {
            drop(guard);
            s.blobs.forget(id);
            Err(e)
        }
    }
}

async fn save_offset(s: &Inner, id: &str, mut rec: UploadRecord, offset: u64) -> Result<()> {
    rec.offset = offset;
    rec.updated_ms = now_millis();
    let idc = id.to_string();
    if !s.meta.run(move |m| m.put_upload(&idc, &rec)).await? {
        // Removed meanwhile (cancelled elsewhere, or reaped): not revived.
        return Err(unknown_upload(id));
    }
    Ok(())
}

fn gauge_add(s: &Inner, n: i64) {
    if let Some(g) = &s.gauges.open_uploads {
        g.add(n);
    }
}

pub(crate) async fn start_blob_upload<S>(
    s: &Inner,
    name: &RepoName,
    q: &Query,
    h: &HeaderMap,
    body: S,
    caller: &crate::access::Caller,
) -> Result<Response<Body>>
where
    S: futures::Stream<Item = std::result::Result<Bytes, String>> + Send,
{
    if let Some(mount) = q.get("mount") {
        let digest = crate::router::digest(mount)?;
        // Where to mount from: `Some(Some(repo))` a source repository,
        // `Some(None)` any repository (content discovery), `None` nowhere.
        let source = match q.get("from") {
            // A bad `from`, or one the caller may not pull from, cannot
            // name a source: fall back to an upload, as the spec says.
            Some(from) => match RepoName::parse(from) {
                Ok(from) if s.may_pull(caller, &from) => Some(Some(from.as_str().to_string())),
                _ => None,
            },
            // Automatic content discovery: the blob is already stored. Only
            // for callers who may read every registry (nobody learns of
            // content they could not pull).
            None if s.may_read_everything(caller) => Some(None),
            None => None,
        };
        if let Some(from) = source {
            let (repo, d) = (name.as_str().to_string(), digest.clone());
            let mounted = s
                .meta
                .run(move |m| m.mount_blob(&repo, &d, from.as_deref()))
                .await?;
            if mounted.is_some() {
                return Ok(created(name, &digest));
            }
        }
    } else if let Some(d) = q.get("digest") {
        // Monolithic upload: the whole blob in this request.
        let digest = crate::router::digest(d)?;
        let len = content_length(h)?;
        if let Some(n) = len {
            precheck_quota(s, name, &digest, n).await?;
        }
        let id = uuid::Uuid::new_v4().to_string();
        s.blobs.create_upload(&id).await?;
        let mut state = SessionState::default();
        let res = async {
            let size = s
                .blobs
                .append(&id, &mut state, 0, body, len, Then::Commit)
                .await?;
            s.blobs.commit(&id, &mut state, size, &digest).await?;
            Ok::<u64, ApiError>(size)
        }
        .await;
        let size = match res {
            Ok(size) => size,
            Err(e) => {
                s.blobs.abort(&id).await?;
                return Err(e);
            }
        };
        let (repo, dg) = (name.as_str().to_string(), digest.clone());
        s.meta.run(move |m| m.link_blob(&repo, &dg, size)).await?;
        return Ok(created(name, &digest));
    }

    let id = uuid::Uuid::new_v4().to_string();
    s.blobs.create_upload(&id).await?;
    let now = now_millis();
    let rec = UploadRecord {
        repo: name.as_str().to_string(),
        offset: 0,
        started_ms: now,
        updated_ms: now,
        by: Some(caller.principal.subject()),
        slot: None,
        counted: false,
    };
    let idc = id.clone();
    let limits = s.cfg.upload_limits;
    if let Err(e) = s.meta.run(move |m| m.open_upload(&idc, &rec, limits)).await {
        s.blobs.abort(&id).await?;
        return Err(e.into());
    }
    gauge_add(s, 1);
    Ok(status_response(
        StatusCode::ACCEPTED,
        &session_headers(name, &id, 0),
    ))
}

pub(crate) async fn get_blob_upload(
    s: &Inner,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>> {
    let id = check_id(id)?;
    let rec = session(s, name, &id).await?;
    Ok(status_response(
        StatusCode::NO_CONTENT,
        &session_headers(name, &id, rec.offset),
    ))
}

pub(crate) async fn patch_blob_data<S>(
    s: &Inner,
    name: &RepoName,
    id: &str,
    h: &HeaderMap,
    body: S,
) -> Result<Response<Body>>
where
    S: futures::Stream<Item = std::result::Result<Bytes, String>> + Send,
{
    let id = check_id(id)?;
    let (mut guard, rec) = locked_session(s, name, &id).await?;
    let len = expected_len(h, name, &id, rec.offset)?;
    let offset = s
        .blobs
        .append(&id, &mut guard, rec.offset, body, len, Then::Stage)
        .await?;
    save_offset(s, &id, rec, offset).await?;
    Ok(status_response(
        StatusCode::ACCEPTED,
        &session_headers(name, &id, offset),
    ))
}

pub(crate) async fn put_blob_upload_complete<S>(
    s: &Inner,
    name: &RepoName,
    id: &str,
    q: &Query,
    h: &HeaderMap,
    body: S,
) -> Result<Response<Body>>
where
    S: futures::Stream<Item = std::result::Result<Bytes, String>> + Send,
{
    let id = check_id(id)?;
    let digest = match q.get("digest") {
        None | Some("") => {
            return Err(
                ApiError::new(ErrorCode::DigestInvalid).message("the digest parameter is required")
            )
        }
        Some(d) => crate::router::digest(d)?,
    };
    let (mut guard, rec) = locked_session(s, name, &id).await?;
    let len = expected_len(h, name, &id, rec.offset)?;
    if let Some(n) = len {
        precheck_quota(s, name, &digest, rec.offset + n).await?;
    }
    let mut offset = rec.offset;
    if len != Some(0) {
        offset = s
            .blobs
            .append(&id, &mut guard, rec.offset, body, len, Then::Commit)
            .await?;
    }
    match s.blobs.commit(&id, &mut guard, offset, &digest).await {
        Ok(()) => {}
        Err(e @ berth_storage::StorageError::DigestMismatch { .. }) => {
            // The staged bytes are gone: so is the session.
            let idc = id.clone();
            s.meta.run(move |m| m.delete_upload(&idc)).await?;
            gauge_add(s, -1);
            return Err(e.into());
        }
        Err(e) => {
            if offset != rec.offset {
                save_offset(s, &id, rec, offset).await?;
            }
            return Err(e.into());
        }
    }
    let (idc, repo, d) = (id.clone(), name.as_str().to_string(), digest.clone());
    s.meta
        .run(move |m| m.complete_upload(&idc, &repo, &d, offset))
        .await?;
    gauge_add(s, -1);
    Ok(created(name, &digest))
}

pub(crate) async fn cancel_blob_upload(
    s: &Inner,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>> {
    let id = check_id(id)?;
    let _guard = locked_session(s, name, &id).await?;
    s.blobs.abort(&id).await?;
    let idc = id.clone();
    s.meta.run(move |m| m.delete_upload(&idc)).await?;
    gauge_add(s, -1);
    Ok(status_response(StatusCode::NO_CONTENT, &[]))
}

pub(crate) async fn count(s: &Inner) -> std::result::Result<usize, berth_meta::MetaError> {
    let mut n = 0;
    let mut after: Option<String> = None;
    loop {
        let from = after.clone();
        let page = s
            .meta
            .read(move |m| m.list_uploads(from.as_deref(), 1000))
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        n += page.len();
    }
    if let Some(g) = &s.gauges.open_uploads {
        g.set(n as i64);
    }
    Ok(n)
}
