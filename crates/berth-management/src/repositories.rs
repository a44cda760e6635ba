//! `/registries/{name}/repositories`: a registry's repositories, with the
//! figures kept beside them (size, artifacts, tags, pulls, kind). A
//! repository's name in these paths is the part after the registry
//! (`app`, or `team%2Fapp` URL-encoded for `team/app`).

use crate::api::{json, too_many_to_sort, Ctx, PageQuery, Sort, SortQuery, MAX_SORTED};
use crate::error::ManagementError;
use berth_core::media_types::ArtifactKind;
use berth_core::RepoName;
use berth_http::Body;
use berth_meta::{counter, RepoRecord, RepoStats};
use http::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// What a repository or artifact holds, from its media types.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KindView {
    /// Container images and indexes of them.
    Image,
    /// Helm charts (`helm push oci://…`).
    HelmChart,
    /// Other OCI artifacts: signatures, SBOMs, `oras` pushes.
    Artifact,
}

impl From<ArtifactKind> for KindView {
    fn from(k: ArtifactKind) -> Self {
        match k {
            ArtifactKind::Image => KindView::Image,
            ArtifactKind::HelmChart => KindView::HelmChart,
            ArtifactKind::Artifact => KindView::Artifact,
        }
    }
}

/// A repository.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryView {
    /// The name within the registry (`app`, `team/app`).
    pub name: String,
    /// The whole name, as pushed: `registry/name`.
    pub full_name: String,
    pub registry: String,
    pub kind: KindView,
    /// Deduplicated bytes of its blobs plus its manifests.
    pub size_bytes: i64,
    pub blob_bytes: i64,
    pub manifest_bytes: i64,
    pub artifact_count: i64,
    pub tag_count: i64,
    /// Manifest GETs (HEAD not counted); flushed about once a second.
    pub pull_count: i64,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    pub last_pulled_at: Option<String>,
    /// What to pull: `host/registry/name`.
    pub pull_prefix: String,
}

/// A page of repositories.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryPage {
    pub items: Vec<RepositoryView>,
    /// Repositories in the registry.
    pub total: i64,
    /// Those matching `prefix` and `search`; `null` when counting them
    /// would read more than 10000 names.
    pub filtered: Option<i64>,
    /// The next page, or `null` on the last.
    pub next: Option<String>,
}

/// A page of repository names (names within the registry).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryNamePage {
    pub items: Vec<String>,
    pub total: i64,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepoSort {
    Name,
    Updated,
    Size,
}

const REPO_SORTS: [(&str, RepoSort); 3] = [
    ("name", RepoSort::Name),
    ("updated", RepoSort::Updated),
    ("size", RepoSort::Size),
];

/// `search` of a list of names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents what the lists read
pub struct RepoSearch {
    /// Only names containing this (bounded: reads at most 10000 names).
    search: Option<String>,
}

/// The API path of a repository (`full` is `registry/name`), with
/// `suffix` after it.
pub(crate) fn repo_path(full: &str, suffix: &str) -> String {
    let (registry, short) = full.split_once('/').unwrap_or((full, ""));
    format!(
        "/api/v1/registries/{registry}/repositories/{}{suffix}",
        percent_encoding::utf8_percent_encode(short, percent_encoding::NON_ALPHANUMERIC)
    )
}

pub(crate) fn ms(t: u64) -> String {
    berth_core::time::rfc3339_ms(t)
}

impl Ctx<'_> {
    /// The registry in the path, if the caller sees it and it exists.
    pub(crate) fn registry_param(&self) -> Result<String> {
        let name = self.param("name")?;
        if !self.caller.sees(&name) || self.meta().registry(&name)?.is_none() {
            return Err(ManagementError::not_found(format!("no registry {name}")));
        }
        Ok(name)
    }

    /// The repository in the path (its whole name), if it exists.
    pub(crate) fn repository_param(&self) -> Result<(String, RepoRecord)> {
        let registry = self.registry_param()?;
        let short = self.param("repository")?;
        let full = format!("{registry}/{short}");
        RepoName::parse(&full)
            .map_err(|e| ManagementError::invalid(format!("repository {short:?}: {e}")))?;
        let rec = self
            .meta()
            .repo(&full)?
            .ok_or_else(|| ManagementError::not_found(format!("no repository {full}")))?;
        Ok((full, rec))
    }

    fn repo_view(&self, full: &str, rec: RepoRecord, st: RepoStats) -> Result<RepositoryView> {
        let (registry, name) = full.split_once('/').unwrap_or((full, ""));
        Ok(RepositoryView {
            name: name.to_string(),
            full_name: full.to_string(),
            registry: registry.to_string(),
            kind: st.kind().into(),
            size_bytes: st.size(),
            blob_bytes: st.bytes,
            manifest_bytes: st.manifest_bytes,
            artifact_count: st.artifacts,
            tag_count: st.tags,
            pull_count: st.pulls,
            created_at: ms(rec.created_ms),
            updated_at: ms(rec.updated_ms),
            last_pulled_at: self.meta().pulled_at(full, None)?.map(ms),
            pull_prefix: format!("{}/{full}", self.api.host),
        })
    }
}

/// List a registry's repositories: by name (keyset pages with `cursor`),
/// or sorted by `updated` or `size` (at most 10000 read).
#[utoipa::path(get, path = "/registries/{name}/repositories", operation_id = "listRepositories", tag = "repositories",
    params(("name" = String, Path, description = "registry name", example = "acme"), PageQuery, SortQuery, RepoSearch),
    responses((status = 200, body = RepositoryPage), (status = 400, description = "bad parameters, or too many to sort"),
        (status = 404, description = "no such registry")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let q = c.page_query()?;
    let sort = c.sort(
        &REPO_SORTS,
        Sort {
            field: RepoSort::Name,
            desc: false,
        },
    )?;
    let search = c.text("search")?;
    let total = c
        .meta()
        .counter(&counter::registry_repositories(&registry))?;
    let base = format!("{registry}/");
    let prefix = format!("{base}{}", q.prefix.as_deref().unwrap_or(""));
    let path = format!("/api/v1/registries/{registry}/repositories");
    let keyset =
        sort == (Sort {
            field: RepoSort::Name,
            desc: false,
        }) && search.is_none();
    let (items, filtered, next) = if keyset {
        let after = q.cursor.as_ref().map(|c| format!("{base}{c}"));
        let rows =
            c.meta()
                .list_repos_with_prefix(&prefix, after.as_deref(), q.offset + q.limit + 1)?;
        let more = rows.len() > q.offset + q.limit;
        let mut items = Vec::new();
        for (full, rec) in rows.into_iter().skip(q.offset).take(q.limit) {
            let st = c.meta().repo_stats(&full)?;
            items.push(c.repo_view(&full, rec, st)?);
        }
        let filtered = if q.prefix.is_none() {
            Some(total)
        } else {
            let n = c
                .meta()
                .list_repos_with_prefix(&prefix, None, MAX_SORTED + 1)?
                .len();
            (n <= MAX_SORTED).then_some(n as i64)
        };
        let next = more
            .then(|| items.last().map(|l| q.next_link(&path, &l.name)))
            .flatten();
        (items, filtered, next)
    } else {
        let rows = c
            .meta()
            .list_repos_with_prefix(&prefix, None, MAX_SORTED + 1)?;
        if rows.len() > MAX_SORTED {
            return Err(too_many_to_sort("repositories"));
        }
        let mut all = Vec::new();
        for (full, rec) in rows {
            let short = &full[base.len()..];
            if search.as_ref().is_some_and(|s| !short.contains(s.as_str())) {
                continue;
            }
            let st = c.meta().repo_stats(&full)?;
            all.push((full, rec, st));
        }
        match sort.field {
            RepoSort::Name => {}
            RepoSort::Updated => {
                all.sort_by(|a, b| a.1.updated_ms.cmp(&b.1.updated_ms).then(a.0.cmp(&b.0)))
            }
            RepoSort::Size => all.sort_by(|a, b| a.2.size().cmp(&b.2.size()).then(a.0.cmp(&b.0))),
        }
        if sort.desc {
            all.reverse();
        }
        let filtered = all.len();
        let (page, next) = q.offset_page(all, &path);
        let mut items = Vec::new();
        for (full, rec, st) in page {
            items.push(c.repo_view(&full, rec, st)?);
        }
        (items, Some(filtered as i64), next)
    };
    Ok(json(
        StatusCode::OK,
        &RepositoryPage {
            items,
            total,
            filtered,
            next,
        },
    ))
}

/// Names only, in name order (keyset pages; the cheapest listing).
#[utoipa::path(get, path = "/registries/{name}/repository-names", operation_id = "listRepositoryNames", tag = "repositories",
    params(("name" = String, Path, description = "registry name", example = "acme"), PageQuery),
    responses((status = 200, body = RepositoryNamePage), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry")))]
pub async fn names(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let q = c.page_query()?;
    let base = format!("{registry}/");
    let prefix = format!("{base}{}", q.prefix.as_deref().unwrap_or(""));
    let after = q.cursor.as_ref().map(|c| format!("{base}{c}"));
    let rows =
        c.meta()
            .list_repos_with_prefix(&prefix, after.as_deref(), q.offset + q.limit + 1)?;
    let more = rows.len() > q.offset + q.limit;
    let items: Vec<String> = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|(full, _)| full[base.len()..].to_string())
        .collect();
    let path = format!("/api/v1/registries/{registry}/repository-names");
    let next = more
        .then(|| items.last().map(|l| q.next_link(&path, l)))
        .flatten();
    let total = c
        .meta()
        .counter(&counter::registry_repositories(&registry))?;
    Ok(json(
        StatusCode::OK,
        &RepositoryNamePage { items, total, next },
    ))
}

/// One repository.
#[utoipa::path(get, path = "/registries/{name}/repositories/{repository}", operation_id = "getRepository", tag = "repositories",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded (`team%2Fapp`)", example = "app")),
    responses((status = 200, body = RepositoryView), (status = 400, description = "malformed repository name"),
        (status = 404, description = "no such registry or repository")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let (full, rec) = c.repository_param()?;
    let st = c.meta().repo_stats(&full)?;
    Ok(json(StatusCode::OK, &c.repo_view(&full, rec, st)?))
}

/// Delete a repository: its manifests, tags and links go at once (one
/// transaction); its blobs are left to garbage collection.
#[utoipa::path(delete, path = "/registries/{name}/repositories/{repository}", operation_id = "deleteRepository", tag = "repositories",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = String, Path, description = "repository name within the registry, URL-encoded", example = "app")),
    responses((status = 204, description = "deleted"), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry or repository")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    let (full, _) = c.repository_param()?;
    c.caller.need_write()?;
    let (f, by) = (full.clone(), c.caller.subject());
    let existed = c.meta().run(move |m| m.delete_repository(&f, &by)).await?;
    if !existed {
        return Err(ManagementError::not_found(format!("no repository {full}")));
    }
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}
