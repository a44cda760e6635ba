//! Manifests, tags, the catalog and the referrers API.

use crate::{
    full, json_response, pagination, status_response, ApiError, Body, Inner, Query, Result,
};
use berth_core::manifest::bare_content_type;
use berth_core::{media_types, Digest, ErrorCode, Manifest, ManifestError, Reference, RepoName};
use berth_meta::{now_millis, ManifestRecord, PutManifest, ReferrerRecord};
use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use serde_json::json;

fn manifest_unknown(r: &Reference) -> ApiError {
    ApiError::new(ErrorCode::ManifestUnknown).detail(r.to_string())
}

/// Resolve a reference to a digest (tags through the tag table).
fn resolve(s: &Inner, name: &RepoName, r: &Reference) -> Result<Digest> {
    match r {
        Reference::Digest(d) => Ok(d.clone()),
        Reference::Tag(t) => {
            let rec = s
                .meta
                .tag(name.as_str(), t)?
                .ok_or_else(|| manifest_unknown(r))?;
            Digest::parse(&rec.digest).map_err(ApiError::internal)
        }
    }
}

pub(crate) async fn get_manifest(
    s: &Inner,
    name: &RepoName,
    r: &Reference,
    head: bool,
) -> Result<Response<Body>> {
    let digest = resolve(s, name, r)?;
    let (rec, body) = s
        .meta
        .manifest(name.as_str(), &digest)?
        .ok_or_else(|| manifest_unknown(r))?;
    let mut resp = status_response(
        StatusCode::OK,
        &[
            ("content-type", rec.media_type.clone()),
            ("content-length", body.len().to_string()),
            ("docker-content-digest", digest.to_string()),
            ("etag", format!("\"{digest}\"")),
        ],
    );
    if let Some(subject) = &rec.subject {
        resp.headers_mut().insert("oci-subject", crate::hv(subject));
    }
    if !head {
        *resp.body_mut() = full(body);
    }
    Ok(resp)
}

async fn read_limited<S>(body: S, limit: u64, declared: Option<u64>) -> Result<Vec<u8>>
where
    S: futures::Stream<Item = std::result::Result<Bytes, String>> + Send,
{
    let too_large = || {
        ApiError::new(ErrorCode::PayloadTooLarge)
            .message("manifest too large")
            .detail(json!({ "limit": limit }))
    };
    if declared.is_some_and(|d| d > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(4096).min(limit) as usize);
    futures::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(ErrorCode::ManifestInvalid)
                .message("request body could not be read")
                .detail(e)
        })?;
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn invalid(e: ManifestError) -> ApiError {
    ApiError::new(ErrorCode::ManifestInvalid).detail(e.to_string())
}

pub(crate) async fn put_manifest<S>(
    s: &Inner,
    name: &RepoName,
    r: &Reference,
    h: &HeaderMap,
    body: S,
) -> Result<Response<Body>>
where
    S: futures::Stream<Item = std::result::Result<Bytes, String>> + Send,
{
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = read_limited(body, s.cfg.max_manifest_size, declared).await?;
    let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let m = Manifest::parse(&body, ct).map_err(invalid)?;

    let digest = match r {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), &body);
            if &actual != d {
                return Err(ApiError::new(ErrorCode::DigestInvalid)
                    .message("manifest digest does not match the reference")
                    .detail(json!({ "reference": d.to_string(), "actual": actual.to_string() })));
            }
            actual
        }
        Reference::Tag(_) => Digest::sha256_of(&body),
    };

    // Everything the manifest references must already be in the repository.
    let repo = name.as_str();
    for d in m.required_blobs() {
        match s.meta.link(repo, &d.digest)? {
            Some(l) if l.size == d.size => {}
            Some(l) => return Err(ApiError::new(ErrorCode::ManifestInvalid)
                .message("descriptor size does not match the blob")
                .detail(
                    json!({ "digest": d.digest.to_string(), "descriptor": d.size, "blob": l.size }),
                )),
            None => {
                // A config or layer that is itself a manifest in this
                // repository is fine too.
                if s.meta.manifest_exists(repo, &d.digest)? {
                    continue;
                }
                return Err(
                    ApiError::new(ErrorCode::ManifestBlobUnknown).detail(d.digest.to_string())
                );
            }
        }
    }
    for c in &m.manifests {
        if !s.meta.manifest_exists(repo, &c.digest)? {
            return Err(ApiError::new(ErrorCode::ManifestUnknown)
                .message("index references a manifest unknown to this repository")
                .detail(c.digest.to_string()));
        }
    }

    let subject = m.subject.as_ref().map(|d| d.digest.clone());
    let record = ManifestRecord {
        media_type: m.media_type.clone(),
        size: body.len() as u64,
        artifact_type: m.artifact_type.clone(),
        subject: subject.as_ref().map(|d| d.to_string()),
        blobs: m.required_blobs().map(|d| d.digest.to_string()).collect(),
        children: m.manifests.iter().map(|d| d.digest.to_string()).collect(),
        pushed_ms: now_millis(),
    };
    let referrer = subject.clone().map(|sd| {
        (
            sd,
            ReferrerRecord {
                media_type: m.media_type.clone(),
                digest: digest.to_string(),
                size: body.len() as u64,
                artifact_type: m.artifact_type.clone(),
                annotations: m.annotations.clone(),
            },
        )
    });
    let tag = match r {
        Reference::Tag(t) => Some(t.clone()),
        Reference::Digest(_) => None,
    };
    let (repo_s, dg) = (repo.to_string(), digest.clone());
    s.meta
        .run(move |meta| {
            meta.put_manifest(PutManifest {
                repo: &repo_s,
                digest: &dg,
                record,
                body: &body,
                tag: tag.as_deref(),
                referrer,
            })
        })
        .await?;

    let mut hdrs = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some(sd) = subject {
        hdrs.push(("oci-subject", sd.to_string()));
    }
    Ok(status_response(StatusCode::CREATED, &hdrs))
}

pub(crate) async fn delete_manifest(
    s: &Inner,
    name: &RepoName,
    r: &Reference,
) -> Result<Response<Body>> {
    let repo = name.as_str().to_string();
    let existed = match r.clone() {
        Reference::Tag(t) => s.meta.run(move |m| m.delete_tag(&repo, &t)).await?,
        Reference::Digest(d) => s.meta.run(move |m| m.delete_manifest(&repo, &d)).await?,
    };
    if !existed {
        return Err(manifest_unknown(r));
    }
    Ok(status_response(StatusCode::ACCEPTED, &[]))
}

fn link_next(path: &str, n: usize, last: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    format!("<{path}?{q}>; rel=\"next\"")
}

pub(crate) async fn tags_list(s: &Inner, name: &RepoName, q: &Query) -> Result<Response<Body>> {
    let (n, last) = pagination(&s.cfg, q)?;
    if s.meta.repo(name.as_str())?.is_none() {
        return Err(ApiError::new(ErrorCode::NameUnknown).detail(name.to_string()));
    }
    let page = s.meta.list_tags(name.as_str(), last.as_deref(), n)?;
    let body =
        serde_json::to_vec(&json!({ "name": name.as_str(), "tags": page.items })).expect("json");
    let mut r = json_response(StatusCode::OK, body, "application/json");
    if page.more {
        if let Some(l) = page.items.last() {
            let link = link_next(&format!("/v2/{name}/tags/list"), n, l);
            r.headers_mut().insert(header::LINK, crate::hv(&link));
        }
    }
    Ok(r)
}

pub(crate) async fn catalog(
    s: &Inner,
    q: &Query,
    caller: &crate::access::Caller,
) -> Result<Response<Body>> {
    let (n, last) = pagination(&s.cfg, q)?;
    // Read pages until `n + 1` visible names (or the end): a caller sees
    // only repositories it may pull.
    let mut items: Vec<String> = Vec::new();
    let mut more = false;
    let mut after = last.clone();
    // one permission lookup per registry, not per repository
    let mut visible: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    loop {
        let page = s.meta.list_repos(after.as_deref(), n.max(100))?;
        after = page.items.last().cloned();
        for r in page.items {
            let registry = r.split('/').next().unwrap_or(&r).to_string();
            let ok = *visible
                .entry(registry)
                .or_insert_with(|| s.catalog_visible(caller, &r));
            if ok {
                if items.len() == n {
                    more = true;
                    break;
                }
                items.push(r);
            }
        }
        if more || !page.more {
            break;
        }
    }
    let page = berth_meta::Page { items, more };
    let body = serde_json::to_vec(&json!({ "repositories": page.items })).expect("json");
    let mut r = json_response(StatusCode::OK, body, "application/json");
    if page.more {
        if let Some(l) = page.items.last() {
            r.headers_mut()
                .insert(header::LINK, crate::hv(&link_next("/v2/_catalog", n, l)));
        }
    }
    Ok(r)
}

pub(crate) async fn referrers(
    s: &Inner,
    name: &RepoName,
    subject: &Digest,
    q: &Query,
) -> Result<Response<Body>> {
    let filter = q.get("artifactType").filter(|a| !a.is_empty());
    let mut items = s
        .meta
        .referrers(name.as_str(), subject, s.cfg.max_referrers)?;
    if let Some(at) = filter {
        let at = bare_content_type(at);
        items.retain(|r| r.artifact_type.as_deref() == Some(at));
    }
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": items,
    }))
    .expect("json");
    let mut r = json_response(StatusCode::OK, body, media_types::OCI_INDEX);
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}
