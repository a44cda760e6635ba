//! `/registries/{name}/recycle-bin`: deleted manifests (with their tags)
//! and deleted tags, restorable until garbage collection lets them go
//! (`gc.recycle_bin_secs` after the deletion). What the bin holds counts in
//! the registry's usage; emptying it releases that at once.

use crate::api::{json, Ctx, PageQuery};
use crate::error::ManagementError;
use crate::repositories::ms;
use base64::Engine;
use berth_http::Body;
use berth_meta::{BinEntry, Restored};
use http::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// One entry of the bin.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinEntryView {
    /// Opaque: the entry's id for restore and purge.
    pub id: String,
    /// `manifest` (deleted with the tags it had) or `tag` (deleted alone).
    pub kind: String,
    /// Repository name within the registry.
    pub repository: String,
    pub digest: String,
    /// The tag, for a `tag` entry.
    pub tag: Option<String>,
    /// The tags it had, for a `manifest` entry.
    pub tags: Vec<String>,
    pub media_type: Option<String>,
    /// Bytes of the manifest (what the entry holds of the usage; 0 for a tag).
    pub size: u64,
    pub deleted_at: String,
    pub deleted_by: String,
    /// When garbage collection may let it go.
    pub expires_at: String,
}

/// A page of the bin, by repository then digest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinPage {
    pub items: Vec<BinEntryView>,
    /// Bytes the registry's bin holds.
    pub bytes: i64,
    pub next: Option<String>,
}

/// What a restore brought back.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    pub repository: String,
    pub digest: String,
    /// Tags pointing at it again.
    pub restored_tags: Vec<String>,
    /// Tags it had that point at another manifest now (left there).
    pub skipped_tags: Vec<String>,
}

/// What emptying the bin released.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Emptied {
    pub purged: u64,
    /// Bytes of the purged manifests.
    pub manifest_bytes: u64,
    /// Links removed with them (blobs only they referenced), and their bytes.
    pub links_removed: u64,
    pub link_bytes: u64,
}

fn id_of(e: &BinEntry) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(e.key())
}

fn view(registry: &str, bin_ms: u64, e: &BinEntry) -> BinEntryView {
    let within = |repo: &str| {
        repo.strip_prefix(registry)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(repo)
            .to_string()
    };
    let deleted = e.deleted_ms();
    let (kind, digest, tag, tags, media_type, size, by) = match e {
        BinEntry::Manifest { digest, entry, .. } => (
            "manifest",
            digest.clone(),
            None,
            entry.tags.clone(),
            Some(entry.record.media_type.clone()),
            entry.record.size,
            entry.by.clone(),
        ),
        BinEntry::Tag {
            digest, tag, entry, ..
        } => (
            "tag",
            digest.clone(),
            Some(tag.clone()),
            Vec::new(),
            None,
            0,
            entry.by.clone(),
        ),
    };
    BinEntryView {
        id: id_of(e),
        kind: kind.into(),
        repository: within(e.repo()),
        digest,
        tag,
        tags,
        media_type,
        size,
        deleted_at: ms(deleted),
        deleted_by: by,
        expires_at: ms(deleted.saturating_add(bin_ms)),
    }
}

impl Ctx<'_> {
    /// The entry in the path, as a key of this registry's bin.
    fn bin_key(&self, registry: &str) -> Result<Vec<u8>> {
        let id = self.param("entry")?;
        let missing =
            || ManagementError::not_found(format!("no entry {id} in the bin of {registry}"));
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id.as_bytes())
            .map_err(|_| missing())?;
        let mine = key.starts_with(format!("{registry}/").as_bytes())
            || key.starts_with(format!("{registry}\0").as_bytes());
        if !mine {
            return Err(missing());
        }
        Ok(key)
    }
}

/// The registry's recycle bin (`repository`: one repository's entries).
#[utoipa::path(get, path = "/registries/{name}/recycle-bin", operation_id = "listRecycleBin", tag = "recycle-bin",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = Option<String>, Query, description = "only this repository (its name within the registry)"),
        PageQuery),
    responses((status = 200, body = BinPage), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let q = c.page_query()?;
    let prefix = match c.text("repository")? {
        Some(r) => berth_meta::repo_bin_prefix(&format!("{registry}/{r}")),
        None => format!("{registry}/"),
    };
    let after = match &q.cursor {
        Some(cur) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cur.as_bytes())
                .map_err(|_| {
                    ManagementError::invalid(format!("cursor {cur:?}: not from a next link"))
                })?,
        ),
        None => None,
    };
    let mut rows = c.meta().list_bin(&prefix, after.as_deref(), q.limit + 1)?;
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    let bin_ms = c.meta().recycle_bin_ms();
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some(q.next_link(
            &format!("/api/v1/registries/{registry}/recycle-bin"),
            &id_of(last),
        )),
        _ => None,
    };
    let items = rows.iter().map(|e| view(&registry, bin_ms, e)).collect();
    let bytes = c.meta().registry_bin_bytes(&registry)?;
    Ok(json(StatusCode::OK, &BinPage { items, bytes, next }))
}

/// Restore an entry: a manifest with its tags (those that point nowhere
/// else now), or a tag (with its manifest if that is in the bin too). Tag
/// rules apply to the tags put back.
#[utoipa::path(post, path = "/registries/{name}/recycle-bin/{entry}/restore", operation_id = "restoreFromBin", tag = "recycle-bin",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("entry" = String, Path, description = "entry id (from the list)")),
    responses((status = 200, body = Restore), (status = 403, description = "read-only token, or a tag rule"),
        (status = 404, description = "no such registry or entry"),
        (status = 409, description = "something it needs is gone (a blob, a child manifest, the tag's manifest)")))]
pub async fn restore(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    c.caller.need_write()?;
    let key = c.bin_key(&registry)?;
    let entry = c
        .meta()
        .bin_entry(&key)?
        .ok_or_else(|| ManagementError::not_found("no such entry in the bin"))?;
    let (k, by) = (key.clone(), c.caller.subject());
    match c.meta().run(move |m| m.restore(&k, &by)).await? {
        Restored::Done { tags, skipped } => {
            let v = view(&registry, 0, &entry);
            Ok(json(
                StatusCode::OK,
                &Restore {
                    repository: v.repository,
                    digest: v.digest,
                    restored_tags: tags,
                    skipped_tags: skipped,
                },
            ))
        }
        Restored::NotFound => Err(ManagementError::not_found("no such entry in the bin")),
        Restored::Missing(what) => Err(ManagementError::new(
            StatusCode::CONFLICT,
            "cannot_restore",
            format!("{what} is gone: the entry cannot be restored"),
        )),
    }
}

/// Let one entry go for good (its bytes leave the usage at once).
#[utoipa::path(delete, path = "/registries/{name}/recycle-bin/{entry}", operation_id = "purgeFromBin", tag = "recycle-bin",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("entry" = String, Path, description = "entry id (from the list)")),
    responses((status = 204, description = "purged"), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry or entry")))]
pub async fn purge(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    c.caller.need_write()?;
    let key = c.bin_key(&registry)?;
    let cutoff = link_cutoff(&c);
    if c.meta()
        .run(move |m| m.purge(&key, None, cutoff))
        .await?
        .is_none()
    {
        return Err(ManagementError::not_found("no such entry in the bin"));
    }
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}

/// Links younger than this are kept by a purge (an upload for a push in
/// flight), as garbage collection's grace (`gc.grace_secs`) does.
fn link_cutoff(c: &Ctx<'_>) -> u64 {
    berth_meta::now_millis().saturating_sub(c.api.grace_secs.saturating_mul(1000))
}

/// Empty the registry's bin (or, with `repository`, one repository's).
#[utoipa::path(delete, path = "/registries/{name}/recycle-bin", operation_id = "emptyRecycleBin", tag = "recycle-bin",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("repository" = Option<String>, Query, description = "only this repository (its name within the registry)")),
    responses((status = 200, body = Emptied), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry")))]
pub async fn empty(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    c.caller.need_write()?;
    let prefix = match c.text("repository")? {
        Some(r) => berth_meta::repo_bin_prefix(&format!("{registry}/{r}")),
        None => format!("{registry}/"),
    };
    let cutoff = link_cutoff(&c);
    let out = c
        .meta()
        .run(move |m| {
            let mut out = Emptied {
                purged: 0,
                manifest_bytes: 0,
                links_removed: 0,
                link_bytes: 0,
            };
            loop {
                let page = m.list_bin(&prefix, None, 1000)?;
                if page.is_empty() {
                    break;
                }
                for e in page {
                    // (an entry another purge took meanwhile is skipped)
                    if let Some(p) = m.purge(&e.key(), None, cutoff)? {
                        out.purged += 1;
                        out.manifest_bytes += p.manifest_bytes;
                        out.links_removed += p.links.len() as u64;
                        out.link_bytes += p.links.iter().map(|(_, s)| s).sum::<u64>();
                    }
                }
            }
            Ok(out)
        })
        .await?;
    Ok(json(StatusCode::OK, &out))
}
