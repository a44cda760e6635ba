//! Manifests, tags, the catalog and the referrers API.

use crate::{
    full, json_response, pagination, status_response, ApiError, Body, Inner, Query, Result,
};
use berth_core::manifest::bare_content_type;
use berth_core::{media_types, Digest, ErrorCode, Manifest, ManifestError, Reference, RepoName};
use berth_meta::{now_millis, ManifestRecord, PutManifest, Ref, ReferrerRecord, Refused};
use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use serde_json::json;

fn manifest_unknown(r: &Reference) -> ApiError {
    ApiError::new(ErrorCode::ManifestUnknown).detail(r.to_string())
}

pub(crate) async fn get_manifest(
    s: &Inner,
    name: &RepoName,
    r: &Reference,
    head: bool,
) -> Result<Response<Body>> {
    let (repo, rc) = (name.as_str().to_string(), r.clone());
    // Resolve a tag through the tag table, then read the manifest.
    let found = s
        .meta
        .read(move |m| {
            let digest = match rc {
                Reference::Digest(d) => d,
                Reference::Tag(t) => match m.tag(&repo, &t)? {
                    Some(rec) => {
                        Digest::parse(&rec.digest).map_err(|e| berth_meta::MetaError::Corrupt {
                            cf: "tags",
                            reason: e.to_string(),
                        })?
                    }
                    None => return Ok(None),
                },
            };
            Ok(m.manifest(&repo, &digest)?.map(|found| (digest, found)))
        })
        .await?;
    let (digest, (rec, body)) = found.ok_or_else(|| manifest_unknown(r))?;
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
        if s.cfg.count_pulls {
            s.pulls.count(name.as_str(), &digest, now_millis());
        }
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
    q: &Query,
    h: &HeaderMap,
    body: S,
    by: String,
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

    // Tags: the reference itself when it is one, and `tag` parameters
    // (distribution-spec: several tags in one push by digest).
    let mut tags: Vec<String> = Vec::new();
    if let Reference::Tag(t) = r {
        tags.push(t.clone());
    }
    for t in q.get_all("tag") {
        if !berth_core::name::valid_tag(t) {
            return Err(ApiError::new(ErrorCode::TagInvalid).detail(t.to_string()));
        }
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }

    let repo = name.as_str();
    let refs: Vec<Ref> = m
        .required_blobs()
        .map(|d| Ref::Blob {
            digest: d.digest.clone(),
            size: d.size,
        })
        .chain(m.manifests.iter().map(|d| Ref::Manifest {
            digest: d.digest.clone(),
        }))
        .collect();
    let registry = name.first_component().to_string();
    let allow_missing = s
        .meta
        .read(move |meta| Ok(meta.registry(&registry)?.is_some_and(|r| r.allow_sparse)))
        .await?;

    let subject = m.subject.as_ref().map(|d| d.digest.clone());
    let record = ManifestRecord {
        media_type: m.media_type.clone(),
        size: body.len() as u64,
        artifact_type: m.artifact_type.clone(),
        subject: subject.as_ref().map(|d| d.to_string()),
        config_media_type: m.config.as_ref().map(|c| c.media_type.clone()),
        blobs: Vec::new(),
        children: Vec::new(),
        pushed_ms: now_millis(),
        rev: 0,
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
    let (repo_s, dg, tags_c) = (repo.to_string(), digest.clone(), tags.clone());
    // The references are checked inside the transaction that stores the
    // manifest: a blob deleted meanwhile cannot be left dangling.
    let stored = s
        .meta
        .run(move |meta| {
            meta.put_manifest(PutManifest {
                repo: &repo_s,
                digest: &dg,
                record,
                body: &body,
                tags: &tags_c,
                referrer,
                refs,
                allow_missing,
                by: &by,
            })
        })
        .await?;
    match stored {
        Ok(()) => {}
        Err(Refused::SizeMismatch {
            digest,
            declared,
            stored,
        }) => {
            return Err(ApiError::new(ErrorCode::ManifestInvalid)
                .message("descriptor size does not match the blob")
                .detail(
                    json!({ "digest": digest.to_string(), "descriptor": declared, "blob": stored }),
                ))
        }
        Err(Refused::Missing(Ref::Blob { digest, .. })) => {
            return Err(ApiError::new(ErrorCode::ManifestBlobUnknown).detail(digest.to_string()))
        }
        Err(Refused::Missing(Ref::Manifest { digest })) => {
            return Err(ApiError::new(ErrorCode::ManifestUnknown)
                .message("index references a manifest unknown to this repository")
                .detail(digest.to_string()))
        }
    }

    let mut hdrs = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some(sd) = subject {
        hdrs.push(("oci-subject", sd.to_string()));
    }
    let mut resp = status_response(StatusCode::CREATED, &hdrs);
    if !q.get_all("tag").is_empty() {
        for t in &tags {
            resp.headers_mut().append("oci-tag", crate::hv(t));
        }
    }
    Ok(resp)
}

pub(crate) async fn delete_manifest(
    s: &Inner,
    name: &RepoName,
    r: &Reference,
    by: String,
) -> Result<Response<Body>> {
    let repo = name.as_str().to_string();
    let existed = match r.clone() {
        Reference::Tag(t) => s.meta.run(move |m| m.delete_tag(&repo, &t, &by)).await?,
        Reference::Digest(d) => {
            s.meta
                .run(move |m| m.delete_manifest(&repo, &d, &by))
                .await?
        }
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
    let repo = name.as_str().to_string();
    let page = s
        .meta
        .read(move |m| match m.repo(&repo)? {
            None => Ok(None),
            Some(_) => m.list_tags(&repo, last.as_deref(), n).map(Some),
        })
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NameUnknown).detail(name.to_string()))?;
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
        let from = after.clone();
        let page = s
            .meta
            .read(move |m| m.list_repos(from.as_deref(), n.max(100)))
            .await?;
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
    let (repo, sd, max) = (
        name.as_str().to_string(),
        subject.clone(),
        s.cfg.max_referrers,
    );
    let mut items = s.meta.read(move |m| m.referrers(&repo, &sd, max)).await?;
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
