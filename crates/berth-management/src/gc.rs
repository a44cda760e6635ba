//! `/gc`: start an online garbage collection (the instance, or one
//! registry), follow it, list past runs, cancel. The run is
//! `berth-gc`'s; its record (in the metadata store) is what every replica
//! shows, and one scope runs one collection at a time.

use crate::api::{json, Ctx, PageQuery};
use crate::caller::Caller;
use crate::error::ManagementError;
use crate::repositories::ms;
use berth_gc::{GcError, Options, Progress, Report};
use berth_http::Body;
use berth_meta::GcRun;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// A collection to start.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartGc {
    /// Only this registry (absent: the instance; the admin's or an
    /// all-registry read-write token's).
    #[serde(default)]
    pub registry: Option<String>,
    /// Also delete manifests no tag, index or stored subject reaches.
    #[serde(default)]
    pub delete_untagged: bool,
    /// Count what would go; delete nothing (the estimate).
    #[serde(default)]
    pub dry_run: bool,
    /// Keep what is younger than this (default `gc.grace_secs`, 3600: uploads and pushes in
    /// flight).
    #[serde(default)]
    pub grace_seconds: Option<u64>,
}

/// A collection run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcRunView {
    pub id: String,
    /// `null`: the instance.
    pub registry: Option<String>,
    pub delete_untagged: bool,
    pub dry_run: bool,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// While running, on the replica that runs it: the phase
    /// (`starting`, `bin`, `manifests`, `links`, `blobs`) and candidates seen.
    pub phase: Option<String>,
    pub seen: Option<u64>,
    pub report: Option<Report>,
    pub error: Option<String>,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcRunPage {
    pub items: Vec<GcRunView>,
    pub next: Option<String>,
}

fn view(api: &crate::Inner, r: GcRun) -> GcRunView {
    let live = api
        .gc_live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&r.id)
        .cloned();
    GcRunView {
        phase: live.as_ref().map(|p| p.phase().to_string()),
        seen: live.as_ref().map(|p| p.seen()),
        report: r
            .report
            .and_then(|v| serde_json::from_value::<Report>(v).ok()),
        id: r.id,
        registry: r.registry,
        delete_untagged: r.delete_untagged,
        dry_run: r.dry_run,
        status: r.status,
        started_at: ms(r.started_ms),
        finished_at: r.finished_ms.map(ms),
        error: r.error,
    }
}

fn forbidden(why: &str) -> ManagementError {
    ManagementError::new(StatusCode::FORBIDDEN, "forbidden", why)
}

/// May the caller see (and, `write`, run) collections of `registry`?
fn allowed(c: &Caller, registry: Option<&str>, write: bool) -> Result<()> {
    if write {
        c.need_write()?;
    }
    match registry {
        None if c.may_create_registries() || !write => Ok(()),
        None => Err(forbidden(
            "an instance collection takes the admin or a read-write token for every registry",
        )),
        Some(r) if c.sees(r) => Ok(()),
        Some(r) => Err(ManagementError::not_found(format!("no registry {r}"))),
    }
}

/// Start a collection: 202 with the run to follow; 409 while one runs in
/// the same scope.
#[utoipa::path(post, path = "/gc", operation_id = "startGc", tag = "gc",
    request_body = StartGc,
    responses((status = 202, body = GcRunView), (status = 403, description = "read-only token, or an instance run by a scoped token"),
        (status = 404, description = "no such registry"), (status = 409, description = "a collection of this scope is running"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn start(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let req: StartGc = c.json_or_default().await?;
    allowed(&c.caller, req.registry.as_deref(), true)?;
    if let Some(r) = &req.registry {
        if c.meta().registry(r)?.is_none() {
            return Err(ManagementError::not_found(format!("no registry {r}")));
        }
    }
    let Some(collector) = c.api.gc.clone() else {
        return Err(ManagementError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "garbage collection is not available on this server",
        ));
    };
    let opts = Options {
        registry: req.registry,
        delete_untagged: req.delete_untagged,
        dry_run: req.dry_run,
        grace_ms: req
            .grace_seconds
            .unwrap_or(c.api.grace_secs)
            .saturating_mul(1000),
    };
    let launched = c.api.launch_gc(&collector, opts).await?;
    let run = match launched {
        Ok(x) => x,
        Err(active) => {
            return Err(ManagementError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("collection {} of this scope is running", active.id),
            ))
        }
    };
    let mut resp = json(StatusCode::ACCEPTED, &view(c.api, run.clone()));
    resp.headers_mut().insert(
        "location",
        berth_http::hv(&format!("/api/v1/gc/runs/{}", run.id)),
    );
    Ok(resp)
}

/// Runs, newest first (a scoped token sees its registries' runs).
#[utoipa::path(get, path = "/gc/runs", operation_id = "listGcRuns", tag = "gc",
    params(PageQuery),
    responses((status = 200, body = GcRunPage), (status = 400, description = "bad parameters")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let q = c.page_query()?;
    let (cursor, n) = (q.cursor.clone(), q.limit + 1);
    let rows = c
        .meta()
        .run(move |m| m.gc_runs(cursor.as_deref(), n))
        .await?;
    let more = rows.len() > q.limit;
    let last = rows
        .get(q.limit.saturating_sub(1))
        .map(|r| format!("{}-{}", r.started_ms, r.id));
    let items = rows
        .into_iter()
        .take(q.limit)
        .filter(|r| match &r.registry {
            Some(g) => c.caller.sees(g),
            None => true,
        })
        .map(|r| view(c.api, r))
        .collect();
    let next = more
        .then(|| last.map(|l| q.next_link("/api/v1/gc/runs", &l)))
        .flatten();
    Ok(json(StatusCode::OK, &GcRunPage { items, next }))
}

async fn find(api: &crate::Inner, caller: &Caller, id: String) -> Result<GcRun> {
    let i = id.clone();
    let run = api.admin.meta().run(move |m| m.gc_run(&i)).await?;
    match run {
        Some(r) if r.registry.as_deref().is_none_or(|g| caller.sees(g)) => Ok(r),
        _ => Err(ManagementError::not_found(format!(
            "no collection run {id}"
        ))),
    }
}

/// One run, with its progress while it runs.
#[utoipa::path(get, path = "/gc/runs/{id}", operation_id = "getGcRun", tag = "gc",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = GcRunView), (status = 404, description = "no such run")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let r = find(c.api, &c.caller, c.param("id")?).await?;
    Ok(json(StatusCode::OK, &view(c.api, r)))
}

/// Cancel a running collection, through any replica: the one running it
/// stops at its next page of candidates (at once when it is this one, at
/// its next lease renewal — within 10 s — otherwise); what it deleted
/// stays deleted.
#[utoipa::path(post, path = "/gc/runs/{id}/cancel", operation_id = "cancelGcRun", tag = "gc",
    params(("id" = String, Path, description = "run id")),
    responses((status = 202, body = GcRunView), (status = 403, description = "read-only token"),
        (status = 404, description = "no such run"), (status = 409, description = "the run is not running")))]
pub async fn cancel(c: Ctx<'_>) -> Result<Response<Body>> {
    let r = find(c.api, &c.caller, c.param("id")?).await?;
    allowed(&c.caller, r.registry.as_deref(), true)?;
    let live = c
        .api
        .gc_live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&r.id)
        .cloned();
    match live {
        Some(p) => {
            p.cancel();
            Ok(json(StatusCode::ACCEPTED, &view(c.api, r)))
        }
        // running on another replica: asked through the store, seen
        // there at its next lease renewal
        None => {
            let id = r.id.clone();
            match c.meta().run(move |m| m.gc_request_cancel(&id)).await? {
                Some(_) => Ok(json(StatusCode::ACCEPTED, &view(c.api, r))),
                None => Err(ManagementError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("collection {} is {}, not running", r.id, r.status),
                )),
            }
        }
    }
}

/// What a collection would free now (the Selectel seed's figures).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcEstimate {
    pub registry: Option<String>,
    /// Bytes of blobs no manifest references, of blob files no record
    /// owns and of expired recycle-bin entries (what a run frees).
    pub size_non_referenced: u64,
    /// Bytes more with `deleteUntagged`: the untagged manifests nothing
    /// reaches and the blobs only they use.
    pub size_untagged: u64,
    pub size_summary: u64,
    pub non_referenced: Report,
    pub with_untagged: Report,
}

/// `registry` and `graceSeconds` of an estimate.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)] // documents what estimate reads
pub struct EstimateQuery {
    /// Only this registry (absent: the instance).
    registry: Option<String>,
    /// Keep what is younger than this (default `gc.grace_secs`, 3600).
    grace_seconds: Option<u64>,
}

/// Estimate what a collection would free, deleting nothing: equal to what
/// the run frees if nothing changes in between.
#[utoipa::path(get, path = "/gc/estimate", operation_id = "estimateGc", tag = "gc",
    params(EstimateQuery),
    responses((status = 200, body = GcEstimate), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry")))]
pub async fn estimate(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.text("registry")?;
    allowed(&c.caller, registry.as_deref(), false)?;
    if let Some(r) = &registry {
        if c.meta().registry(r)?.is_none() {
            return Err(ManagementError::not_found(format!("no registry {r}")));
        }
    }
    let grace = c.grace_secs()?;
    let Some(collector) = c.api.gc.clone() else {
        return Err(ManagementError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "garbage collection is not available on this server",
        ));
    };
    let mut o = Options {
        registry: registry.clone(),
        delete_untagged: false,
        dry_run: true,
        grace_ms: grace.saturating_mul(1000),
    };
    let p = Progress::default();
    let plain = collector.estimate(&o, &p).await.map_err(gc_error)?;
    o.delete_untagged = true;
    let full = collector.estimate(&o, &p).await.map_err(gc_error)?;
    // (files no record owns and expired recycle-bin entries go in both)
    let non_ref = plain.bytes_freed + plain.orphan_bytes + plain.bin_bytes;
    let total = full.bytes_freed + full.manifest_bytes + full.orphan_bytes + full.bin_bytes;
    Ok(json(
        StatusCode::OK,
        &GcEstimate {
            registry,
            size_non_referenced: non_ref,
            size_untagged: total.saturating_sub(non_ref),
            size_summary: total.max(non_ref),
            non_referenced: plain,
            with_untagged: full,
        },
    ))
}

fn gc_error(e: GcError) -> ManagementError {
    match e {
        GcError::Meta(m) => m.into(),
        GcError::Cancelled(_) => ManagementError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the estimate was cancelled",
        ),
    }
}

impl crate::Inner {
    /// Start a run, its progress shown by this replica while it runs.
    pub(crate) async fn launch_gc(
        &self,
        collector: &berth_gc::Collector,
        opts: Options,
    ) -> std::result::Result<std::result::Result<GcRun, GcRun>, berth_meta::MetaError> {
        let (live, live2) = (self.gc_live.clone(), self.gc_live.clone());
        let launched = collector
            .launch(
                opts,
                move |run, progress| {
                    live.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(run.id.clone(), progress.clone());
                },
                move |done| {
                    live2
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&done.id);
                },
            )
            .await?;
        Ok(launched.map(|(run, _)| run))
    }
}
