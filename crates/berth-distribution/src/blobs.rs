//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use crate::{full, hv, status_response, ApiError, Body, Inner, Result};
use berth_core::{Digest, ErrorCode, RepoName};
use futures::TryStreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};

/// A byte range resolved against a blob's size: `start..end` (end exclusive).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeReq {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parse a `Range` header against `size`. Only single `bytes=` ranges are
/// served; anything malformed or out of bounds is unsatisfiable (416), never
/// a 500 and never an invalid 206.
pub(crate) fn parse_range(h: Option<&str>, size: u64) -> RangeReq {
    let Some(h) = h else { return RangeReq::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReq::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeReq::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Unsatisfiable;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // suffix: the last n bytes
        match num(b) {
            Some(0) | None => RangeReq::Unsatisfiable,
            Some(_) if size == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Partial(size.saturating_sub(n), size),
        }
    } else {
        let Some(start) = num(a) else {
            return RangeReq::Unsatisfiable;
        };
        if start >= size {
            return RangeReq::Unsatisfiable;
        }
        let end = if b.is_empty() {
            size
        } else {
            match num(b) {
                Some(e) if e >= start => e.saturating_add(1).min(size),
                _ => return RangeReq::Unsatisfiable,
            }
        };
        RangeReq::Partial(start, end)
    }
}

pub(crate) async fn get_blob(
    s: &Inner,
    name: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>> {
    let (repo, d) = (name.as_str().to_string(), digest.clone());
    let found = s
        .meta
        .read(move |m| match m.link(&repo, &d)? {
            Some(l) => Ok(Ok(l)),
            None => Ok(Err(m.manifest(&repo, &d)?)),
        })
        .await?;
    let link = match found {
        Ok(link) => link,
        Err(manifest) => {
            // Manifests are content too: serve them through the blob endpoint
            // as the reference registry does.
            if let Some((rec, body)) = manifest {
                let mut r = status_response(
                    StatusCode::OK,
                    &[
                        ("content-type", rec.media_type.clone()),
                        ("docker-content-digest", digest.to_string()),
                        ("content-length", body.len().to_string()),
                    ],
                );
                if !head {
                    *r.body_mut() = full(body);
                }
                return Ok(r);
            }
            return Err(ApiError::new(ErrorCode::BlobUnknown).detail(digest.to_string()));
        }
    };
    let size = link.size;
    // An object store that presigns: the client fetches the bytes (and any
    // range of them) from it. HEAD answers here.
    if !head && size > 0 {
        if let Some(url) = s.blobs.presigned_get(digest).await? {
            return Ok(status_response(
                StatusCode::TEMPORARY_REDIRECT,
                &[
                    ("location", url),
                    ("docker-content-digest", digest.to_string()),
                    ("content-length", "0".to_string()),
                ],
            ));
        }
    }
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, end) = match range {
        RangeReq::Full => (StatusCode::OK, 0, size),
        RangeReq::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        RangeReq::Unsatisfiable => {
            return Err(ApiError::new(ErrorCode::RangeInvalid)
                .detail(format!("blob size is {size}"))
                .header(header::CONTENT_RANGE, hv(&format!("bytes */{size}"))));
        }
    };
    let mut hdrs = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", digest.to_string()),
        ("content-length", (end - start).to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("etag", format!("\"{digest}\"")),
        ("cache-control", "max-age=31536000".to_string()),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        hdrs.push((
            "content-range",
            format!("bytes {}-{}/{}", start, end - 1, size),
        ));
    }
    let mut r = status_response(status, &hdrs);
    if head || end == start {
        return Ok(r);
    }
    let stream = s
        .blobs
        .get(
            digest,
            (status == StatusCode::PARTIAL_CONTENT).then_some(start..end),
        )
        .await?;
    let stream = stream
        .map_ok(http_body::Frame::data)
        .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) });
    *r.body_mut() = StreamBody::new(stream).boxed_unsync();
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    Ok(r)
}

pub(crate) async fn delete_blob(
    s: &Inner,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response<Body>> {
    let (repo, d) = (name.as_str().to_string(), digest.clone());
    if !s.meta.run(move |m| m.unlink_blob(&repo, &d)).await? {
        return Err(ApiError::new(ErrorCode::BlobUnknown).detail(digest.to_string()));
    }
    Ok(status_response(
        StatusCode::ACCEPTED,
        &[("docker-content-digest", digest.to_string())],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial(0, 5));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Partial(5, 10));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Partial(5, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial(7, 10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial(0, 10));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("items=0-1"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=+1-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-1"), 0), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 10),
            Unsatisfiable
        );
    }
}
