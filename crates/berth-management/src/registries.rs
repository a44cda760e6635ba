//! `/registries`: the tenants. Names are DNS labels; a name in use is 409,
//! a malformed one 400; callers see only the registries they may (others
//! are 404).

use crate::api::{json, too_many_to_sort, Ctx, PageQuery, Sort, SortQuery, MAX_SORTED};
use crate::error::ManagementError;
use berth_http::Body;
use berth_meta::{counter, RegistryRecord, Visibility};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// Who may pull.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VisibilityView {
    /// Credentials needed.
    Private,
    /// Anyone may pull, anonymously too.
    Public,
}

impl From<Visibility> for VisibilityView {
    fn from(v: Visibility) -> Self {
        match v {
            Visibility::Private => VisibilityView::Private,
            Visibility::Public => VisibilityView::Public,
        }
    }
}

impl From<VisibilityView> for Visibility {
    fn from(v: VisibilityView) -> Self {
        match v {
            VisibilityView::Private => Visibility::Private,
            VisibilityView::Public => Visibility::Public,
        }
    }
}

/// A registry (tenant).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryView {
    pub name: String,
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    pub visibility: VisibilityView,
    /// Bytes; `null`: unlimited (enforced with quotas).
    pub storage_limit_bytes: Option<u64>,
    /// Accepts manifests whose blobs or children are absent (mirrors).
    pub allow_sparse: bool,
    /// Repositories in the registry (exact).
    pub repository_count: i64,
    /// The distinct blobs its repositories link (each counted once), its
    /// manifests and the manifests in its recycle bin, in bytes (exact).
    pub bytes_used: i64,
    /// The part of `bytesUsed` the recycle bin holds.
    pub recycle_bin_bytes: i64,
    /// `bytesUsed` as a percentage of the limit; `null` without one.
    pub used_percent: Option<f64>,
    /// What to push to: `<host>/<registry>/<repository>:<tag>`.
    pub push_prefix: String,
}

/// A new registry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRegistry {
    /// 3–63 of `[a-z0-9-]`, starting and ending alphanumeric.
    pub name: String,
    #[serde(default)]
    pub visibility: Option<VisibilityView>,
    #[serde(default)]
    pub storage_limit_bytes: Option<u64>,
    #[serde(default)]
    pub allow_sparse: Option<bool>,
}

/// Changes to a registry; absent fields stay as they are,
/// `storageLimitBytes: null` removes the limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRegistry {
    #[serde(default)]
    pub visibility: Option<VisibilityView>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<u64>)]
    pub storage_limit_bytes: Option<Option<u64>>,
    #[serde(default)]
    pub allow_sparse: Option<bool>,
}

/// Whether a name can be used for a new registry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameCheck {
    pub name: String,
    pub status: NameStatus,
    pub detail: String,
}

#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NameStatus {
    Free,
    Taken,
    Invalid,
}

/// A page of registries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryPage {
    pub items: Vec<RegistryView>,
    /// All registries the caller sees (without `prefix`); `null` with one.
    pub total: Option<i64>,
    /// The next page, or `null` on the last.
    pub next: Option<String>,
}

impl Ctx<'_> {
    fn view(&self, name: &str, r: RegistryRecord) -> Result<RegistryView> {
        let (blob_bytes, manifest_bytes) = self.meta().registry_usage(name)?;
        let recycle_bin_bytes = self.meta().registry_bin_bytes(name)?;
        let bytes_used = blob_bytes + manifest_bytes + recycle_bin_bytes;
        Ok(RegistryView {
            bytes_used,
            recycle_bin_bytes,
            used_percent: r
                .storage_limit
                .map(|l| (bytes_used as f64 * 10_000.0 / l.max(1) as f64).round() / 100.0),
            name: name.to_string(),
            id: r.id,
            created_at: berth_core::time::rfc3339_ms(r.created_ms),
            visibility: r.visibility.into(),
            storage_limit_bytes: r.storage_limit,
            allow_sparse: r.allow_sparse,
            repository_count: self.meta().counter(&counter::registry_repositories(name))?,
            push_prefix: format!("{}/{name}", self.api.host),
        })
    }

    /// The registry named in the path, if the caller sees it.
    fn visible_registry(&self) -> Result<(String, RegistryRecord)> {
        let name = self.param("name")?;
        let missing = || ManagementError::not_found(format!("no registry {name}"));
        if !self.caller.sees(&name) {
            return Err(missing());
        }
        let rec = self.meta().registry(&name)?.ok_or_else(missing)?;
        Ok((name, rec))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistrySort {
    Name,
    Created,
    Size,
}

/// List registries: by name (keyset pages), or sorted by `created` or
/// `size`, or searched by a part of the name (at most 10000 read).
#[utoipa::path(get, path = "/registries", operation_id = "listRegistries", tag = "registries",
    params(PageQuery, SortQuery, crate::repositories::RepoSearch),
    responses((status = 200, body = RegistryPage), (status = 400, description = "bad parameters, or too many to sort"), (status = 401)))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let q = c.page_query()?;
    let sort = c.sort(
        &[
            ("name", RegistrySort::Name),
            ("created", RegistrySort::Created),
            ("size", RegistrySort::Size),
        ],
        Sort {
            field: RegistrySort::Name,
            desc: false,
        },
    )?;
    let search = c.text("search")?;
    let keyset = sort.field == RegistrySort::Name && !sort.desc && search.is_none();
    let prefix = q.prefix.as_deref().unwrap_or("");
    // The registries in name order after `after` (at most `n`) that the
    // caller sees, and how many it sees in all (without a prefix).
    let (rows, total) = match &c.caller {
        crate::Caller::Token {
            registries: Some(list),
            ..
        } => {
            // A scoped token lists its own registries (a short list), not
            // the instance's: each read once, errors reported.
            let mut names: Vec<&String> = list.iter().collect();
            names.sort();
            names.dedup();
            let mut existing = Vec::new();
            for n in names {
                if let Some(r) = c.meta().registry(n)? {
                    existing.push((n.clone(), r));
                }
            }
            let total = q.prefix.is_none().then_some(existing.len() as i64);
            let after = if keyset { q.cursor.clone() } else { None };
            let rows: Vec<_> = existing
                .into_iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .filter(|(n, _)| after.as_ref().is_none_or(|cur| n > cur))
                .collect();
            (rows, total)
        }
        _ => {
            let (after, n) = if keyset {
                (q.cursor.clone(), q.offset + q.limit + 1)
            } else {
                (None, MAX_SORTED + 1)
            };
            let rows = c
                .meta()
                .list_registries_with_prefix(prefix, after.as_deref(), n)?;
            let total = if q.prefix.is_none() {
                Some(c.meta().counter(counter::REGISTRIES)?)
            } else {
                None
            };
            (rows, total)
        }
    };
    let mut items = Vec::new();
    let next;
    if keyset {
        let more = rows.len() > q.offset + q.limit;
        for (n, r) in rows.into_iter().skip(q.offset).take(q.limit) {
            items.push(c.view(&n, r)?);
        }
        next = more
            .then(|| {
                items
                    .last()
                    .map(|l| q.next_link("/api/v1/registries", &l.name))
            })
            .flatten();
    } else {
        if rows.len() > MAX_SORTED {
            return Err(too_many_to_sort("registries"));
        }
        // (creation time, view): the view's time is to the second
        let mut all = Vec::with_capacity(rows.len());
        for (n, r) in rows {
            if search.as_ref().is_none_or(|s| n.contains(s.as_str())) {
                all.push((r.created_ms, c.view(&n, r)?));
            }
        }
        match sort.field {
            RegistrySort::Name => {}
            RegistrySort::Created => {
                all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)))
            }
            RegistrySort::Size => {
                all.sort_by(|a, b| (a.1.bytes_used, &a.1.name).cmp(&(b.1.bytes_used, &b.1.name)))
            }
        }
        if sort.desc {
            all.reverse();
        }
        let (page, n) = q.offset_page(all, "/api/v1/registries");
        items = page.into_iter().map(|(_, v)| v).collect();
        next = n;
    }
    Ok(json(StatusCode::OK, &RegistryPage { items, total, next }))
}

/// Create a registry.
#[utoipa::path(post, path = "/registries", operation_id = "createRegistry", tag = "registries",
    request_body = CreateRegistry,
    responses((status = 201, body = RegistryView), (status = 400, description = "malformed name or body"),
        (status = 403, description = "this caller may not create registries"), (status = 409, description = "the name is taken"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn create(mut c: Ctx<'_>) -> Result<Response<Body>> {
    if !c.caller.may_create_registries() {
        return Err(ManagementError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the admin or a read-write token for every registry may create registries",
        ));
    }
    let req: CreateRegistry = c.json().await?;
    let admin = c.api.admin.clone();
    let name = req.name.clone();
    let rec = c
        .meta()
        .run(move |_| {
            Ok(admin.create_registry_with(&req.name, |r| {
                if let Some(v) = req.visibility {
                    r.visibility = v.into();
                }
                r.storage_limit = req.storage_limit_bytes;
                r.allow_sparse = req.allow_sparse.unwrap_or(false);
            }))
        })
        .await??;
    let mut r = json(StatusCode::CREATED, &c.view(&name, rec)?);
    r.headers_mut().insert(
        "location",
        berth_http::hv(&format!("/api/v1/registries/{name}")),
    );
    Ok(r)
}

/// One registry.
#[utoipa::path(get, path = "/registries/{name}", operation_id = "getRegistry", tag = "registries",
    params(("name" = String, Path, description = "registry name", example = "acme")),
    responses((status = 200, body = RegistryView), (status = 404, description = "no such registry (or not visible to the caller)")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let (name, rec) = c.visible_registry()?;
    Ok(json(StatusCode::OK, &c.view(&name, rec)?))
}

/// One sample of a registry's storage use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSampleView {
    /// The start of the interval the sample was taken in.
    pub at: String,
    /// As the registry's `bytesUsed` then.
    pub bytes_used: i64,
    pub repository_count: i64,
}

/// A registry's storage use over time, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageHistory {
    pub registry: String,
    pub items: Vec<UsageSampleView>,
}

/// The most samples one answer holds (a year of hourly samples).
const MAX_SAMPLES: usize = 10_000;

/// A registry's storage use over time: one sample per `stats.usage_interval_secs`
/// (an hour by default), kept `stats.usage_retention_days`, oldest first,
/// from `since` (default 30 days ago).
#[utoipa::path(get, path = "/registries/{name}/usage", operation_id = "getRegistryUsage", tag = "registries",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("since" = Option<String>, Query, description = "RFC 3339 UTC; default 30 days ago")),
    responses((status = 200, body = UsageHistory), (status = 404, description = "no such registry")))]
pub async fn usage(c: Ctx<'_>) -> Result<Response<Body>> {
    let (name, rec) = c.visible_registry()?;
    let since = crate::audit::time_param(&c, "since")?
        .unwrap_or_else(|| berth_meta::now_millis().saturating_sub(30 * 86_400_000));
    let id = rec.id.clone();
    let samples = c
        .meta()
        .run(move |m| m.usage_history(&id, since, MAX_SAMPLES))
        .await?;
    let items = samples
        .into_iter()
        .map(|s| UsageSampleView {
            at: berth_core::time::rfc3339_ms(s.at_ms),
            bytes_used: s.bytes_used,
            repository_count: s.repositories,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &UsageHistory {
            registry: name,
            items,
        },
    ))
}

/// Change a registry's visibility, storage limit or sparse setting.
#[utoipa::path(patch, path = "/registries/{name}", operation_id = "updateRegistry", tag = "registries",
    params(("name" = String, Path, description = "registry name", example = "acme")), request_body = UpdateRegistry,
    responses((status = 200, body = RegistryView), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry"), (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn update(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let (name, _) = c.visible_registry()?;
    c.caller.need_write()?;
    let req: UpdateRegistry = c.json().await?;
    let admin = c.api.admin.clone();
    let n = name.clone();
    let rec = c
        .meta()
        .run(move |_| {
            Ok(admin.update_registry_with(&n, |r| {
                if let Some(v) = req.visibility {
                    r.visibility = v.into();
                }
                if let Some(l) = req.storage_limit_bytes {
                    r.storage_limit = l;
                }
                if let Some(s) = req.allow_sparse {
                    r.allow_sparse = s;
                }
            }))
        })
        .await??;
    Ok(json(StatusCode::OK, &c.view(&name, rec)?))
}

/// Delete a registry with its repositories (manifests, tags, links), its
/// users and the grants of tokens to it; blobs are left to garbage
/// collection.
#[utoipa::path(delete, path = "/registries/{name}", operation_id = "deleteRegistry", tag = "registries",
    params(("name" = String, Path, description = "registry name", example = "acme")),
    responses((status = 204, description = "deleted"), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry"), (status = 409, description = "pushes kept creating repositories during the deletion; try again, or a tag rule keeps a tag (remove the rule first)")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    let (name, _) = c.visible_registry()?;
    c.caller.need_write()?;
    let (n, by) = (name.clone(), c.caller.subject());
    let admin = c.api.admin.clone();
    c.meta()
        .run(move |_| Ok(admin.delete_registry(&n, &by)))
        .await??;
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}

/// Whether a name is free for a new registry, taken, or malformed.
#[utoipa::path(get, path = "/registry-names/{name}", operation_id = "checkRegistryName", tag = "registries",
    params(("name" = String, Path, description = "the name to check")),
    responses((status = 200, body = NameCheck), (status = 403, description = "this caller may not create registries")))]
pub async fn check_name(c: Ctx<'_>) -> Result<Response<Body>> {
    if !c.caller.may_create_registries() {
        return Err(ManagementError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only callers that may create registries may check names",
        ));
    }
    let name = c.param("name")?;
    let (status, detail) = if !berth_core::name::valid_registry_name(&name) {
        (NameStatus::Invalid, berth_core::name::REGISTRY_NAME_RULE)
    } else if c.meta().registry(&name)?.is_some() {
        (NameStatus::Taken, "a registry of this name exists")
    } else {
        (NameStatus::Free, "the name can be used")
    };
    Ok(json(
        StatusCode::OK,
        &NameCheck {
            name,
            status,
            detail: detail.to_string(),
        },
    ))
}
