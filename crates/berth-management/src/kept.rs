//! Why is this kept: for a blob, the repositories of a registry that link
//! it and the manifests (with their tags) that reference it there; for a
//! manifest, its tags, the indexes listing it, the subject it refers to and
//! what the recycle bin holds of it. What garbage collection would keep,
//! and why, before anyone runs it.

use crate::api::{json, Ctx};
use crate::error::ManagementError;
use crate::repositories::ms;
use berth_core::Digest;
use berth_http::Body;
use http::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// Most repositories, and manifests per repository, listed.
const MAX_LISTED: usize = 1000;

/// A manifest that references the blob.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Referencing {
    pub digest: String,
    /// Its tags (none: kept by an index, a subject, the bin or the grace).
    pub tags: Vec<String>,
    /// It is in the recycle bin (and keeps the blob until the bin lets it go).
    pub in_recycle_bin: bool,
}

/// One repository holding the blob.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobHolder {
    /// Repository name within the registry.
    pub repository: String,
    pub linked_at: String,
    /// Manifests that reference it; empty: only the link holds it (an
    /// upload not yet in a manifest, or garbage the next collection
    /// unlinks once the grace has passed).
    pub manifests: Vec<Referencing>,
}

/// What keeps a blob in a registry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobKeepers {
    pub digest: String,
    /// Bytes (absent: the instance does not store it).
    pub size: Option<u64>,
    pub repositories: Vec<BlobHolder>,
}

/// What keeps a manifest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestKeepers {
    pub digest: String,
    pub tags: Vec<String>,
    /// Indexes of the repository listing it (`inRecycleBin` for those in
    /// the bin).
    pub indexes: Vec<Referencing>,
    /// The stored manifest it refers to as a referrer (a signature, an
    /// SBOM): kept as long as that is.
    pub subject: Option<String>,
    /// Its own tags deleted into the recycle bin (restorable).
    pub binned_tags: Vec<String>,
    pub pushed_at: String,
    /// Whether `deleteUntagged` collection would take it now (past a grace
    /// of `graceSeconds`, default `gc.grace_secs`): nothing above keeps it.
    pub collectable: bool,
}

fn bad_digest(d: &str) -> ManagementError {
    ManagementError::invalid(format!("{d:?} is not a digest"))
}

/// What keeps a blob in the registry: every repository linking it, and
/// every manifest referencing it there.
#[utoipa::path(get, path = "/registries/{name}/blobs/{digest}/kept-by", operation_id = "getBlobKeepers", tag = "gc",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("digest" = String, Path, description = "blob digest", example = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")),
    responses((status = 200, body = BlobKeepers), (status = 400, description = "malformed digest"),
        (status = 404, description = "no such registry, or no repository of it links the blob")))]
pub async fn blob(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let raw = c.param("digest")?;
    let digest = Digest::parse(&raw).map_err(|_| bad_digest(&raw))?;
    let d = digest.to_string();
    let (r, dd) = (registry.clone(), digest.clone());
    let out = c
        .meta()
        .read(move |m| {
            let prefix = format!("{r}/");
            let mut repos = Vec::new();
            let mut after: Option<String> = None;
            // the blob's repositories, in name order: skip to this registry's
            loop {
                // (`acme/` sorts after `acme-x/…`, before `acme/app`)
                let start = after.clone().unwrap_or_else(|| prefix.clone());
                let page = m.blob_repos(&dd, Some(&start), MAX_LISTED)?;
                let Some(last) = page.last().cloned() else {
                    break;
                };
                let mine: Vec<String> = page
                    .into_iter()
                    .filter(|rp| rp.starts_with(&prefix))
                    .collect();
                let done = mine.is_empty() || !last.starts_with(&prefix);
                repos.extend(mine);
                if done || repos.len() >= MAX_LISTED {
                    break;
                }
                after = Some(last);
            }
            let mut holders = Vec::new();
            for repo in repos {
                let Some(link) = m.link(&repo, &dd)? else {
                    continue;
                };
                let mut manifests = Vec::new();
                for (md, binned) in m.references_to(&repo, &dd.to_string(), MAX_LISTED)? {
                    let tags = m.manifest_tags(&repo, &md, MAX_LISTED)?;
                    manifests.push(Referencing {
                        digest: md,
                        tags,
                        in_recycle_bin: binned,
                    });
                }
                holders.push(BlobHolder {
                    repository: repo[prefix.len()..].to_string(),
                    linked_at: ms(link.linked_ms),
                    manifests,
                });
            }
            Ok((m.blob(&dd)?.map(|b| b.size), holders))
        })
        .await?;
    let (size, repositories) = out;
    if repositories.is_empty() {
        return Err(ManagementError::not_found(format!(
            "no repository of {registry} links {d}"
        )));
    }
    Ok(json(
        StatusCode::OK,
        &BlobKeepers {
            digest: d,
            size,
            repositories,
        },
    ))
}

/// What keeps a manifest: its tags, the indexes listing it, its subject,
/// its binned tags; and whether a collection deleting untagged manifests
/// would take it.
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}/artifacts/{reference}/kept-by", operation_id = "getArtifactKeepers", tag = "gc",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        ("reference" = String, Path, description = "a digest or a tag", example = "v1"),
        ("graceSeconds" = Option<u64>, Query, description = "the grace a collection would use (default gc.grace_secs, 3600)")),
    responses((status = 200, body = ManifestKeepers), (status = 400, description = "malformed reference"),
        (status = 404, description = "no such registry, repository, tag or manifest")))]
pub async fn manifest(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    let d = c.resolve(&repo)?;
    let grace = c.grace_secs()?;
    let (r, dd) = (repo.clone(), d.clone());
    let bin_ms = c.meta().recycle_bin_ms();
    let out = c
        .meta()
        .read(move |m| {
            let now = berth_meta::now_millis();
            let Some(reach) = m.gc_reach(&r, &dd, now.saturating_sub(bin_ms))? else {
                return Ok(None);
            };
            let tags = m.manifest_tags(&r, &dd, MAX_LISTED)?;
            let indexes = m
                .references_to(&r, &dd, MAX_LISTED)?
                .into_iter()
                .map(|(digest, binned)| Referencing {
                    tags: Vec::new(),
                    digest,
                    in_recycle_bin: binned,
                })
                .collect::<Vec<_>>();
            let binned_tags = m.binned_tags(&r, &dd, MAX_LISTED)?;
            let young = reach.pushed_ms >= now.saturating_sub(grace.saturating_mul(1000));
            let collectable = !reach.tagged
                && !reach.held
                && reach.parents.is_empty()
                && reach.subject.is_none()
                && !young;
            Ok(Some(ManifestKeepers {
                digest: dd,
                tags,
                indexes,
                subject: reach.subject,
                binned_tags,
                pushed_at: ms(reach.pushed_ms),
                collectable,
            }))
        })
        .await?;
    let out =
        out.ok_or_else(|| ManagementError::not_found(format!("no manifest {d} in {repo}")))?;
    Ok(json(StatusCode::OK, &out))
}
