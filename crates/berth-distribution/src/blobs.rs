//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use crate::{full, hv, status_response, ApiError, Body, Inner, Result};
use berth_core::range::{parse_range, RangeReq};
use berth_core::{Digest, ErrorCode, RepoName};
use futures::TryStreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};

pub(crate) async fn get_blob(
    s: &Inner,
    name: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
    sends_files: bool,
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
        .get_for(
            digest,
            (status == StatusCode::PARTIAL_CONTENT).then_some(start..end),
            sends_files,
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
