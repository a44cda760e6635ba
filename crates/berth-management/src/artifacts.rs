//! `/registries/{name}/repositories/{repository}/artifacts` (manifests),
//! `/tags` (with their history and restore) and `/cleanup` (bulk
//! deletion, answered item by item).

use crate::api::{json, too_many_to_sort, Ctx, PageQuery, Sort, SortQuery, MAX_SORTED};
use crate::error::ManagementError;
use crate::repositories::{ms, repo_path, KindView};
use berth_core::{Digest, Manifest, Reference};
use berth_http::Body;
use berth_meta::{ManifestDelete, ManifestRecord, TagEvent};
use futures::StreamExt;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// Largest config blob read for an image's platform.
const MAX_CONFIG: usize = 1 << 20;
/// Referrers and tags shown per artifact.
const MAX_PER_ARTIFACT: usize = 1000;

/// os/architecture/variant.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlatformView {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A blob a manifest references.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobView {
    pub digest: String,
    pub media_type: String,
    pub size_bytes: u64,
}

/// A child manifest of an index.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildView {
    pub digest: String,
    pub media_type: String,
    /// The child's manifest, config and layers.
    pub size_bytes: u64,
    pub platform: Option<PlatformView>,
}

/// A referrer (a signature, an SBOM, …) of an artifact.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerView {
    pub digest: String,
    pub media_type: String,
    pub size_bytes: u64,
    #[schema(value_type = Option<Object>)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An artifact: one manifest of a repository.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactView {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub kind: KindView,
    /// Manifest, config and layers (for an index: and its children's).
    pub size_bytes: u64,
    pub manifest_bytes: u64,
    pub tags: Vec<String>,
    /// An image's platform, from its config.
    pub platform: Option<PlatformView>,
    /// An index's children.
    pub children: Vec<ChildView>,
    pub config: Option<BlobView>,
    pub layers: Vec<BlobView>,
    /// The artifact this one refers to (when it is a signature, an SBOM…).
    pub subject: Option<String>,
    /// Its referrers, grouped by artifactType.
    pub referrers: BTreeMap<String, Vec<ReferrerView>>,
    pub pushed_at: String,
    pub last_pulled_at: Option<String>,
    pub pull_count: i64,
}

/// A page of artifacts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactPage {
    pub items: Vec<ArtifactView>,
    /// Artifacts in the repository.
    pub total: i64,
    pub next: Option<String>,
}

/// A tag.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagView {
    pub name: String,
    pub digest: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of tags, by name.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagPage {
    pub items: Vec<TagView>,
    pub total: i64,
    pub next: Option<String>,
}

/// Point a tag at a manifest of the repository (a restore from its
/// history, or a retag).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetTag {
    pub digest: String,
}

/// One move of a tag.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagEventView {
    pub tag: String,
    /// The digest before (`null`: the tag was created).
    pub from: Option<String>,
    /// The digest after (`null`: the tag was deleted).
    pub to: Option<String>,
    pub at: String,
    /// Who: `admin`, `token:<id>`, `user:<registry>+<name>`, `anonymous`.
    pub by: String,
}

/// A page of tag history, newest first (per tag).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagHistoryPage {
    pub items: Vec<TagEventView>,
    pub next: Option<String>,
}

/// What to delete from a repository.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CleanupRequest {
    /// Tags to remove (the manifests stay).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Manifests to remove, with all their tags.
    #[serde(default)]
    pub digests: Vec<String>,
}

/// One item that was not deleted, and why.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupFailure {
    /// The tag or digest as given.
    pub reference: String,
    /// `not_found`, `invalid`, `referenced` (an index still lists it).
    pub code: String,
    pub reason: String,
}

/// What a cleanup did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupResult {
    pub deleted_tags: Vec<String>,
    pub deleted_digests: Vec<String>,
    pub failed: Vec<CleanupFailure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArtifactSort {
    Digest,
    Pushed,
    Pulled,
    Size,
}

const ARTIFACT_SORTS: [(&str, ArtifactSort); 4] = [
    ("digest", ArtifactSort::Digest),
    ("pushed", ArtifactSort::Pushed),
    ("pulled", ArtifactSort::Pulled),
    ("size", ArtifactSort::Size),
];

/// `tag` of an artifact list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents what list reads
pub struct ArtifactSearch {
    /// Only artifacts with a tag starting with this (reads at most 10000
    /// tags). `prefix` filters by digest prefix (`sha256:ab…`).
    tag: Option<String>,
}

fn platform_of(v: &serde_json::Value) -> Option<PlatformView> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Some(PlatformView {
        os: s("os")?,
        architecture: s("architecture")?,
        variant: s("variant"),
    })
}

fn blob_view(d: &berth_core::Descriptor) -> BlobView {
    BlobView {
        digest: d.digest.to_string(),
        media_type: d.media_type.clone(),
        size_bytes: d.size,
    }
}

fn bad_digest(s: &str) -> ManagementError {
    ManagementError::invalid(format!("{s:?} is not a digest"))
}

/// What the artifact views read: the metadata and the blobs (not the
/// request, which is not `Sync`).
struct Reader<'a>(&'a crate::Inner);

impl Reader<'_> {
    fn meta(&self) -> &berth_meta::Meta {
        self.0.admin.meta()
    }

    /// The platform an image's config names (`None` when the config is not
    /// an image config, too large, or unreadable).
    async fn config_platform(&self, m: &Manifest) -> Option<PlatformView> {
        let cfg = m.config.as_ref()?;
        let blobs = self.0.blobs.as_ref()?;
        if cfg.size as usize > MAX_CONFIG {
            return None;
        }
        let mut s = blobs.get(&cfg.digest, None).await.ok()?;
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            buf.extend_from_slice(&chunk.ok()?);
            if buf.len() > MAX_CONFIG {
                return None;
            }
        }
        platform_of(&serde_json::from_slice(&buf).ok()?)
    }

    /// A manifest's total size: itself, its config and layers; for an
    /// index, its own bytes and its children's totals (one level).
    fn total_size(&self, repo: &str, rec: &ManifestRecord, m: &Manifest) -> Result<u64> {
        let own = rec.size
            + m.config
                .iter()
                .chain(&m.layers)
                .map(|d| d.size)
                .sum::<u64>();
        let mut children = 0;
        for c in &m.manifests {
            children += match self.meta().manifest(repo, &c.digest)? {
                Some((crec, body)) => match Manifest::parse(&body, Some(&crec.media_type)) {
                    Ok(cm) => {
                        crec.size
                            + cm.config
                                .iter()
                                .chain(&cm.layers)
                                .map(|d| d.size)
                                .sum::<u64>()
                    }
                    Err(_) => c.size,
                },
                None => c.size,
            };
        }
        Ok(own + children)
    }

    async fn artifact_view(
        &self,
        repo: &str,
        digest: &str,
        rec: ManifestRecord,
        body: &[u8],
    ) -> Result<ArtifactView> {
        let meta = self.meta();
        let m = Manifest::parse(body, Some(&rec.media_type)).ok();
        let size_bytes = match &m {
            Some(m) => self.total_size(repo, &rec, m)?,
            None => rec.size,
        };
        let mut children = Vec::new();
        let mut platform = None;
        if let Some(m) = &m {
            for c in &m.manifests {
                let size = match meta.manifest(repo, &c.digest)? {
                    Some((crec, cbody)) => match Manifest::parse(&cbody, Some(&crec.media_type)) {
                        Ok(cm) => self.total_size(repo, &crec, &cm)?,
                        Err(_) => c.size,
                    },
                    None => c.size,
                };
                children.push(ChildView {
                    digest: c.digest.to_string(),
                    media_type: c.media_type.clone(),
                    size_bytes: size,
                    platform: c.platform.as_ref().and_then(platform_of),
                });
            }
            if rec.kind() == berth_core::media_types::ArtifactKind::Image && m.config.is_some() {
                platform = self.config_platform(m).await;
            }
        }
        let d = Digest::parse(digest).map_err(|_| bad_digest(digest))?;
        let mut referrers: BTreeMap<String, Vec<ReferrerView>> = BTreeMap::new();
        for r in meta.referrers(repo, &d, MAX_PER_ARTIFACT)? {
            referrers
                .entry(
                    r.artifact_type
                        .clone()
                        .unwrap_or_else(|| r.media_type.clone()),
                )
                .or_default()
                .push(ReferrerView {
                    digest: r.digest,
                    media_type: r.media_type,
                    size_bytes: r.size,
                    annotations: r.annotations,
                });
        }
        Ok(ArtifactView {
            digest: digest.to_string(),
            media_type: rec.media_type.clone(),
            artifact_type: rec.artifact_type.clone(),
            kind: rec.kind().into(),
            size_bytes,
            manifest_bytes: rec.size,
            tags: meta.manifest_tags(repo, digest, MAX_PER_ARTIFACT)?,
            platform,
            children,
            config: m.as_ref().and_then(|m| m.config.as_ref()).map(blob_view),
            layers: m
                .as_ref()
                .map(|m| m.layers.iter().map(blob_view).collect())
                .unwrap_or_default(),
            subject: rec.subject.clone(),
            referrers,
            pushed_at: ms(rec.pushed_ms),
            last_pulled_at: meta.pulled_at(repo, Some(digest))?.map(ms),
            pull_count: meta.artifact_pulls(repo, digest)?,
        })
    }
}

impl Ctx<'_> {
    fn reader(&self) -> Reader<'_> {
        Reader(self.api)
    }

    /// The digest a `reference` path parameter (a digest or a tag) names.
    pub(crate) fn resolve(&self, repo: &str) -> Result<String> {
        let r = self.param("reference")?;
        match Reference::parse(&r) {
            Ok(Reference::Digest(d)) => Ok(d.to_string()),
            Ok(Reference::Tag(t)) => self
                .meta()
                .tag(repo, &t)?
                .map(|t| t.digest)
                .ok_or_else(|| ManagementError::not_found(format!("no tag {t} in {repo}"))),
            Err(e) => Err(ManagementError::invalid(format!("reference {r:?}: {e}"))),
        }
    }

    fn tag_param(&self) -> Result<String> {
        let t = self.param("tag")?;
        if !berth_core::name::valid_tag(&t) {
            return Err(ManagementError::invalid(format!(
                "{t:?} is not a valid tag"
            )));
        }
        Ok(t)
    }

    fn by(&self) -> String {
        self.caller.subject()
    }
}

/// List a repository's artifacts: by digest (keyset pages; `prefix` is a
/// digest prefix), or sorted by `pushed`, `pulled` or `size` (at most
/// 10000 read).
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}/artifacts", operation_id = "listArtifacts", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        PageQuery, SortQuery, ArtifactSearch),
    responses((status = 200, body = ArtifactPage), (status = 400, description = "bad parameters, or too many to sort"),
        (status = 404, description = "no such registry or repository")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    let q = c.page_query()?;
    let sort = c.sort(
        &ARTIFACT_SORTS,
        Sort {
            field: ArtifactSort::Digest,
            desc: false,
        },
    )?;
    let tag = c.text("tag")?;
    let meta = c.meta().clone();
    let total = meta.repo_stats(&repo)?.artifacts;
    let digest_prefix = q.prefix.clone().unwrap_or_default();
    let path = repo_path(&repo, "/artifacts");
    let keyset = sort.field == ArtifactSort::Digest && !sort.desc && tag.is_none();
    let mut rows: Vec<String> = Vec::new();
    let next = if keyset {
        let page = meta.list_manifests(
            &repo,
            &digest_prefix,
            q.cursor.as_deref(),
            q.offset + q.limit + 1,
        )?;
        let more = page.len() > q.offset + q.limit;
        rows.extend(
            page.into_iter()
                .skip(q.offset)
                .take(q.limit)
                .map(|(d, _)| d),
        );
        more.then(|| rows.last().map(|d| q.next_link(&path, d)))
            .flatten()
    } else {
        let mut all: Vec<(String, ManifestRecord)> = match &tag {
            Some(t) => {
                let tags = meta.list_tag_records(&repo, t, None, MAX_SORTED + 1)?;
                if tags.len() > MAX_SORTED {
                    return Err(too_many_to_sort("tags"));
                }
                let mut ds: Vec<String> = tags.into_iter().map(|(_, r)| r.digest).collect();
                ds.sort();
                ds.dedup();
                let mut out = Vec::new();
                for d in ds.into_iter().filter(|d| d.starts_with(&digest_prefix)) {
                    let dg = Digest::parse(&d).map_err(|_| bad_digest(&d))?;
                    if let Some((rec, _)) = meta.manifest(&repo, &dg)? {
                        out.push((d, rec));
                    }
                }
                out
            }
            None => {
                let all = meta.list_manifests(&repo, &digest_prefix, None, MAX_SORTED + 1)?;
                if all.len() > MAX_SORTED {
                    return Err(too_many_to_sort("artifacts"));
                }
                all
            }
        };
        let mut keyed: Vec<(u64, String, ManifestRecord)> = Vec::with_capacity(all.len());
        for (d, rec) in all.drain(..) {
            let k = match sort.field {
                ArtifactSort::Digest => 0,
                ArtifactSort::Pushed => rec.pushed_ms,
                ArtifactSort::Pulled => meta.pulled_at(&repo, Some(&d))?.unwrap_or(0),
                ArtifactSort::Size => {
                    let dg = Digest::parse(&d).map_err(|_| bad_digest(&d))?;
                    match meta.manifest(&repo, &dg)? {
                        Some((r, body)) => match Manifest::parse(&body, Some(&r.media_type)) {
                            Ok(m) => c.reader().total_size(&repo, &r, &m)?,
                            Err(_) => r.size,
                        },
                        None => rec.size,
                    }
                }
            };
            keyed.push((k, d, rec));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        if sort.desc {
            keyed.reverse();
        }
        let (page, next) = q.offset_page(keyed, &path);
        rows.extend(page.into_iter().map(|(_, d, _)| d));
        next
    };
    let mut items = Vec::with_capacity(rows.len());
    for d in rows {
        let dg = Digest::parse(&d).map_err(|_| bad_digest(&d))?;
        if let Some((rec, body)) = meta.manifest(&repo, &dg)? {
            items.push(c.reader().artifact_view(&repo, &d, rec, &body).await?);
        }
    }
    Ok(json(StatusCode::OK, &ArtifactPage { items, total, next }))
}

/// One artifact, by digest or by tag.
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}/artifacts/{reference}", operation_id = "getArtifact", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        ("reference" = String, Path, description = "a digest or a tag", example = "v1")),
    responses((status = 200, body = ArtifactView), (status = 400, description = "malformed reference"),
        (status = 404, description = "no such registry, repository, tag or manifest")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    let d = c.resolve(&repo)?;
    let dg = Digest::parse(&d).map_err(|_| bad_digest(&d))?;
    let (rec, body) = c
        .meta()
        .manifest(&repo, &dg)?
        .ok_or_else(|| ManagementError::not_found(format!("no manifest {d} in {repo}")))?;
    let view = c.reader().artifact_view(&repo, &d, rec, &body).await?;
    Ok(json(StatusCode::OK, &view))
}

fn referenced(repo: &str, d: &str, index: &str) -> ManagementError {
    ManagementError::new(
        StatusCode::CONFLICT,
        "referenced",
        format!("{repo}@{d} is listed by the index {index}; delete that first"),
    )
}

/// Delete an artifact (by digest, or the manifest a tag points at) with
/// all its tags. 409 while an index of the repository lists it.
#[utoipa::path(delete, path = "/registries/{name}/repositories/{repository}/artifacts/{reference}", operation_id = "deleteArtifact", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        ("reference" = String, Path, description = "a digest or a tag", example = "v1")),
    responses((status = 204, description = "deleted"), (status = 400, description = "malformed reference"),
        (status = 403, description = "read-only token"), (status = 404, description = "not found"),
        (status = 409, description = "an index still references it (named in the detail)")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    c.caller.need_write()?;
    let d = c.resolve(&repo)?;
    let (r, dd, by) = (repo.clone(), d.clone(), c.by());
    match c
        .meta()
        .run(move |m| m.delete_manifest_unreferenced(&r, &dd, &by))
        .await?
    {
        ManifestDelete::Deleted => Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[])),
        ManifestDelete::NotFound => Err(ManagementError::not_found(format!(
            "no manifest {d} in {repo}"
        ))),
        ManifestDelete::ReferencedBy(i) => Err(referenced(&repo, &d, &i)),
    }
}

/// List a repository's tags, by name.
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}/tags", operation_id = "listTags", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        PageQuery),
    responses((status = 200, body = TagPage), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry or repository")))]
pub async fn list_tags(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    let q = c.page_query()?;
    let rows = c.meta().list_tag_records(
        &repo,
        q.prefix.as_deref().unwrap_or(""),
        q.cursor.as_deref(),
        q.offset + q.limit + 1,
    )?;
    let more = rows.len() > q.offset + q.limit;
    let items: Vec<TagView> = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|(name, t)| TagView {
            name,
            digest: t.digest,
            created_at: ms(t.created_ms),
            updated_at: ms(t.updated_ms),
        })
        .collect();
    let path = repo_path(&repo, "/tags");
    let next = more
        .then(|| items.last().map(|l| q.next_link(&path, &l.name)))
        .flatten();
    let total = c.meta().repo_stats(&repo)?.tags;
    Ok(json(StatusCode::OK, &TagPage { items, total, next }))
}

/// Point a tag at a manifest of the repository: a restore to an earlier
/// digest from the tag's history, or a new tag. Recorded in the history.
#[utoipa::path(put, path = "/registries/{name}/repositories/{repository}/tags/{tag}", operation_id = "setTag", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        ("tag" = String, Path, description = "tag", example = "v1")),
    request_body = SetTag,
    responses((status = 200, body = TagView), (status = 400, description = "malformed tag or digest"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such repository or manifest"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn set_tag(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    c.caller.need_write()?;
    let tag = c.tag_param()?;
    let req: SetTag = c.json().await?;
    let d = Digest::parse(&req.digest)
        .map_err(|_| bad_digest(&req.digest))?
        .to_string();
    let (r, t, dd, by) = (repo.clone(), tag.clone(), d.clone(), c.by());
    if !c.meta().run(move |m| m.set_tag(&r, &t, &dd, &by)).await? {
        return Err(ManagementError::not_found(format!(
            "no manifest {d} in {repo} (a tag can only point at a stored manifest)"
        )));
    }
    let t = c
        .meta()
        .tag(&repo, &tag)?
        .ok_or_else(|| ManagementError::not_found(format!("no tag {tag}")))?;
    Ok(json(
        StatusCode::OK,
        &TagView {
            name: tag,
            digest: t.digest,
            created_at: ms(t.created_ms),
            updated_at: ms(t.updated_ms),
        },
    ))
}

/// Delete one tag (the manifest stays).
#[utoipa::path(delete, path = "/registries/{name}/repositories/{repository}/tags/{tag}", operation_id = "deleteTag", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        ("tag" = String, Path, description = "tag", example = "v1")),
    responses((status = 204, description = "deleted"), (status = 400, description = "malformed tag"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such tag")))]
pub async fn delete_tag(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    c.caller.need_write()?;
    let tag = c.tag_param()?;
    let (r, t, by) = (repo.clone(), tag.clone(), c.by());
    if !c.meta().run(move |m| m.delete_tag(&r, &t, &by)).await? {
        return Err(ManagementError::not_found(format!(
            "no tag {tag} in {repo}"
        )));
    }
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}

fn history_page(c: &Ctx<'_>, repo: &str, tag: Option<&str>, path: &str) -> Result<Response<Body>> {
    let q = c.page_query()?;
    let rows = c
        .meta()
        .tag_history(repo, tag, q.cursor.as_deref(), q.limit + 1)?;
    let more = rows.len() > q.limit;
    let last = rows.get(q.limit.saturating_sub(1)).map(|r| r.0.clone());
    let items = rows
        .into_iter()
        .take(q.limit)
        .map(|(_, tag, e): (String, String, TagEvent)| TagEventView {
            tag,
            from: e.from,
            to: e.to,
            at: ms(e.at_ms),
            by: e.by,
        })
        .collect();
    let next = more.then(|| last.map(|l| q.next_link(path, &l))).flatten();
    Ok(json(StatusCode::OK, &TagHistoryPage { items, next }))
}

/// Every move of one tag, newest first (created, moved, deleted; by whom).
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}/tags/{tag}/history", operation_id = "getTagHistory", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        ("tag" = String, Path, description = "tag", example = "v1"), PageQuery),
    responses((status = 200, body = TagHistoryPage), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry or repository")))]
pub async fn tag_history(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    let tag = c.tag_param()?;
    let path = repo_path(&repo, &format!("/tags/{tag}/history"));
    history_page(&c, &repo, Some(&tag), &path)
}

/// Every tag move in a repository: by tag name, then newest first.
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}/history", operation_id = "getRepositoryHistory", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app"),
        PageQuery),
    responses((status = 200, body = TagHistoryPage), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry or repository")))]
pub async fn repository_history(c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    let path = repo_path(&repo, "/history");
    history_page(&c, &repo, None, &path)
}

/// Delete many tags and manifests of a repository; each item succeeds or
/// fails on its own (one transaction each), and the answer says which
/// and why.
#[utoipa::path(post, path = "/registries/{name}/repositories/{repository}/cleanup", operation_id = "cleanupRepository", tag = "artifacts",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app")),
    request_body = CleanupRequest,
    responses((status = 200, body = CleanupResult), (status = 400, description = "not JSON, or more than 1000 items"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such repository"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn cleanup(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let (repo, _) = c.repository_param()?;
    c.caller.need_write()?;
    let req: CleanupRequest = c.json().await?;
    if req.tags.len() + req.digests.len() > 1000 {
        return Err(ManagementError::invalid(
            "at most 1000 tags and digests in one cleanup",
        ));
    }
    let by = c.by();
    let r = repo.clone();
    let out = c
        .meta()
        .run(move |m| {
            let mut out = CleanupResult {
                deleted_tags: Vec::new(),
                deleted_digests: Vec::new(),
                failed: Vec::new(),
            };
            let fail = |out: &mut CleanupResult, reference: &str, code: &str, reason: String| {
                out.failed.push(CleanupFailure {
                    reference: reference.to_string(),
                    code: code.to_string(),
                    reason,
                })
            };
            for t in &req.tags {
                if !berth_core::name::valid_tag(t) {
                    fail(&mut out, t, "invalid", "not a valid tag".into());
                    continue;
                }
                match ruled(m.delete_tag(&r, t, &by))? {
                    Ok(true) => out.deleted_tags.push(t.clone()),
                    Ok(false) => fail(&mut out, t, "not_found", format!("no tag {t} in {r}")),
                    Err((code, why)) => fail(&mut out, t, code, why),
                }
            }
            for d in &req.digests {
                let Ok(dg) = Digest::parse(d) else {
                    fail(&mut out, d, "invalid", "not a digest".into());
                    continue;
                };
                match ruled(m.delete_manifest_unreferenced(&r, &dg.to_string(), &by))? {
                    Err((code, why)) => fail(&mut out, d, code, why),
                    Ok(ManifestDelete::Deleted) => out.deleted_digests.push(d.clone()),
                    Ok(ManifestDelete::NotFound) => {
                        fail(&mut out, d, "not_found", format!("no manifest {d} in {r}"))
                    }
                    Ok(ManifestDelete::ReferencedBy(i)) => fail(
                        &mut out,
                        d,
                        "referenced",
                        format!("listed by the index {i}"),
                    ),
                }
            }
            Ok(out)
        })
        .await?;
    Ok(json(StatusCode::OK, &out))
}

/// A refusal by a tag rule as one item's failure (its code and reason),
/// any other error as the whole request's.
fn ruled<T>(
    r: std::result::Result<T, berth_meta::MetaError>,
) -> std::result::Result<std::result::Result<T, (&'static str, String)>, berth_meta::MetaError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(berth_meta::MetaError::TagRule(r)) => {
            Ok(Err((crate::error::tag_rule_code(&r).1, r.to_string())))
        }
        Err(e) => Err(e),
    }
}
