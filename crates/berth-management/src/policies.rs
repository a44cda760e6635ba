//! `/registries/{name}/cleanup-policies`: GitLab-style expiration policies
//! per registry (or, with `repositoryPattern`, per repository), run on
//! demand (202 and a run to poll) or on their interval; and their runs.

use crate::api::{json, Ctx};
use crate::error::ManagementError;
use crate::repositories::ms;
use berth_gc::cleanup::parse_age;
use berth_gc::{Cleaner, CleanupReport};
use berth_http::Body;
use berth_meta::{now_millis, validate_pattern, CleanupPolicy, CleanupRun, Meta};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// A cleanup policy.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub id: String,
    pub registry: String,
    /// Repositories (names within the registry) it covers, as a regular
    /// expression; `null`: all.
    pub repository_pattern: Option<String>,
    /// Tags matching this (whole) may go.
    pub name_regex_delete: String,
    /// Tags matching this (whole) stay.
    pub name_regex_keep: Option<String>,
    /// Per repository, this many newest of the tags that may go stay.
    pub keep_n: Option<u32>,
    /// Only tags pushed longer ago than this go (`1h`, `7d`, `1month`).
    pub older_than: Option<String>,
    /// Seconds between scheduled runs; `null`: on demand only.
    pub interval_secs: Option<u64>,
    pub last_run_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// A new policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePolicy {
    #[serde(default)]
    pub repository_pattern: Option<String>,
    #[schema(example = ".*")]
    pub name_regex_delete: String,
    #[serde(default)]
    #[schema(example = "v[0-9]+\\.[0-9]+\\.[0-9]+")]
    pub name_regex_keep: Option<String>,
    #[serde(default)]
    pub keep_n: Option<u32>,
    /// `30s`, `15min`, `12h`, `7d`, `2w`, `1month`, `1y`.
    #[serde(default)]
    #[schema(example = "30d")]
    pub older_than: Option<String>,
    /// At least 3600.
    #[serde(default)]
    pub interval_secs: Option<u64>,
}

/// Changes to a policy; absent fields stay as they are, `null` clears an
/// optional one (`nameRegexDelete` cannot be cleared).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicy {
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<String>)]
    pub repository_pattern: Option<Option<String>>,
    /// Cannot be `null`.
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<String>)]
    pub name_regex_delete: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<String>)]
    pub name_regex_keep: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<u32>)]
    pub keep_n: Option<Option<u32>>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<String>, example = "14d")]
    pub older_than: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<u64>)]
    pub interval_secs: Option<Option<u64>>,
}

/// A registry's policies.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    pub items: Vec<PolicyView>,
}

/// A run to start.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunPolicy {
    /// List what would go; delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A run of a policy.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupRunView {
    pub id: String,
    pub registry: String,
    pub policy: String,
    pub dry_run: bool,
    /// `running`, `succeeded`, `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub report: Option<CleanupReport>,
    pub error: Option<String>,
}

/// A registry's runs, newest first (the last 100).
#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupRunList {
    pub items: Vec<CleanupRunView>,
}

fn view(registry: &str, p: CleanupPolicy) -> PolicyView {
    PolicyView {
        id: p.id,
        registry: registry.to_string(),
        repository_pattern: p.repository_pattern,
        name_regex_delete: p.name_regex_delete,
        name_regex_keep: p.name_regex_keep,
        keep_n: p.keep_n,
        older_than: p.older_than,
        interval_secs: p.interval_secs,
        last_run_at: p.last_run_ms.map(ms),
        created_at: ms(p.created_ms),
        created_by: p.created_by,
    }
}

fn run_view(r: CleanupRun) -> CleanupRunView {
    CleanupRunView {
        report: r
            .report
            .and_then(|v| serde_json::from_value::<CleanupReport>(v).ok()),
        id: r.id,
        registry: r.registry,
        policy: r.policy,
        dry_run: r.dry_run,
        status: r.status,
        started_at: ms(r.started_ms),
        finished_at: r.finished_ms.map(ms),
        error: r.error,
    }
}

/// A registry's cleanup policies.
#[utoipa::path(get, path = "/registries/{name}/cleanup-policies", operation_id = "listCleanupPolicies", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme")),
    responses((status = 200, body = PolicyList), (status = 404, description = "no such registry")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let items = c
        .meta()
        .cleanup_policies(&registry)?
        .into_iter()
        .map(|p| view(&registry, p))
        .collect();
    Ok(json(StatusCode::OK, &PolicyList { items }))
}

/// Add a policy.
#[utoipa::path(post, path = "/registries/{name}/cleanup-policies", operation_id = "createCleanupPolicy", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme")), request_body = CreatePolicy,
    responses((status = 201, body = PolicyView), (status = 400, description = "a pattern that is not a regular expression, an age or interval out of range"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such registry"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn create(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    c.caller.need_write()?;
    let req: CreatePolicy = c.json().await?;
    check_patterns([
        Some(&req.name_regex_delete),
        req.name_regex_keep.as_ref(),
        req.repository_pattern.as_ref(),
    ])?;
    let older_than_ms = req.older_than.as_deref().map(age_ms).transpose()?;
    check_interval(req.interval_secs)?;
    let p = CleanupPolicy {
        id: format!("pol_{}", &Meta::new_rule_id()[5..]),
        repository_pattern: req.repository_pattern,
        name_regex_delete: req.name_regex_delete,
        name_regex_keep: req.name_regex_keep,
        keep_n: req.keep_n,
        older_than_ms,
        older_than: req.older_than,
        interval_secs: req.interval_secs,
        last_run_ms: None,
        created_ms: now_millis(),
        created_by: c.caller.subject(),
    };
    let (r, pp) = (registry.clone(), p.clone());
    if !c.meta().run(move |m| m.put_cleanup_policy(&r, &pp)).await? {
        return Err(ManagementError::not_found(format!(
            "no registry {registry}"
        )));
    }
    let location = format!("/api/v1/registries/{registry}/cleanup-policies/{}", p.id);
    let mut resp = json(StatusCode::CREATED, &view(&registry, p));
    resp.headers_mut()
        .insert("location", berth_http::hv(&location));
    Ok(resp)
}

/// Each given pattern is a regular expression.
fn check_patterns<'a>(ps: impl IntoIterator<Item = Option<&'a String>>) -> Result<()> {
    for p in ps.into_iter().flatten() {
        validate_pattern(p).map_err(|e| ManagementError::invalid(format!("pattern {p:?}: {e}")))?;
    }
    Ok(())
}

/// An `olderThan` in milliseconds.
fn age_ms(a: &str) -> Result<u64> {
    parse_age(a).ok_or_else(|| {
        ManagementError::invalid(format!(
            "olderThan {a:?}: a number and s, min, h, d, w, month or y"
        ))
    })
}

fn check_interval(i: Option<u64>) -> Result<()> {
    if i.is_some_and(|i| i < 3600) {
        return Err(ManagementError::invalid("intervalSecs: at least 3600"));
    }
    Ok(())
}

fn find(c: &Ctx<'_>) -> Result<(String, CleanupPolicy)> {
    let registry = c.registry_param()?;
    let id = c.param("policy")?;
    let p = c
        .meta()
        .cleanup_policy(&registry, &id)?
        .ok_or_else(|| ManagementError::not_found(format!("no policy {id} in {registry}")))?;
    Ok((registry, p))
}

/// One policy.
#[utoipa::path(get, path = "/registries/{name}/cleanup-policies/{policy}", operation_id = "getCleanupPolicy", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("policy" = String, Path, description = "policy id", example = "pol_0123456789abcdef")),
    responses((status = 200, body = PolicyView), (status = 404, description = "no such registry or policy")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, p) = find(&c)?;
    Ok(json(StatusCode::OK, &view(&registry, p)))
}

/// Change a policy: the fields given, the rest as they were, in one
/// transaction on the stored policy (a run already going on keeps the
/// policy it started with).
#[utoipa::path(patch, path = "/registries/{name}/cleanup-policies/{policy}", operation_id = "updateCleanupPolicy", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("policy" = String, Path, description = "policy id", example = "pol_0123456789abcdef")),
    request_body = UpdatePolicy,
    responses((status = 200, body = PolicyView), (status = 400, description = "a pattern that is not a regular expression, an age or interval out of range"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such registry or policy"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn update(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, p) = find(&c)?;
    c.caller.need_write()?;
    let req: UpdatePolicy = c.json().await?;
    let name_regex_delete = match req.name_regex_delete {
        Some(None) => return Err(ManagementError::invalid("nameRegexDelete cannot be null")),
        Some(Some(p)) => Some(p),
        None => None,
    };
    check_patterns([
        name_regex_delete.as_ref(),
        req.name_regex_keep.as_ref().and_then(|o| o.as_ref()),
        req.repository_pattern.as_ref().and_then(|o| o.as_ref()),
    ])?;
    let older_than = match req.older_than {
        Some(Some(a)) => Some(Some((age_ms(&a)?, a))),
        Some(None) => Some(None),
        None => None,
    };
    if let Some(i) = req.interval_secs {
        check_interval(i)?;
    }
    let (r, id) = (registry.clone(), p.id.clone());
    let changed = c
        .meta()
        .run(move |m| {
            m.update_cleanup_policy(&r, &id, |p| {
                if let Some(v) = &req.repository_pattern {
                    p.repository_pattern = v.clone();
                }
                if let Some(v) = &name_regex_delete {
                    p.name_regex_delete = v.clone();
                }
                if let Some(v) = &req.name_regex_keep {
                    p.name_regex_keep = v.clone();
                }
                if let Some(v) = req.keep_n {
                    p.keep_n = v;
                }
                if let Some(v) = &older_than {
                    p.older_than_ms = v.as_ref().map(|(ms, _)| *ms);
                    p.older_than = v.as_ref().map(|(_, a)| a.clone());
                }
                if let Some(v) = req.interval_secs {
                    p.interval_secs = v;
                }
            })
        })
        .await?
        .ok_or_else(|| ManagementError::not_found(format!("no policy {} in {registry}", p.id)))?;
    Ok(json(StatusCode::OK, &view(&registry, changed)))
}

/// Remove a policy.
#[utoipa::path(delete, path = "/registries/{name}/cleanup-policies/{policy}", operation_id = "deleteCleanupPolicy", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("policy" = String, Path, description = "policy id", example = "pol_0123456789abcdef")),
    responses((status = 204, description = "removed"), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry or policy")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, p) = find(&c)?;
    c.caller.need_write()?;
    let id = p.id.clone();
    if !c
        .meta()
        .run(move |m| m.delete_cleanup_policy(&registry, &id))
        .await?
    {
        return Err(ManagementError::not_found(format!("no policy {}", p.id)));
    }
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}

/// Start a run of a policy: 202 with the run to poll. A dry run lists
/// exactly what would go; a real run deletes its plan (each tag only if it
/// still points where the plan saw it), into the recycle bin.
#[utoipa::path(post, path = "/registries/{name}/cleanup-policies/{policy}/run", operation_id = "runCleanupPolicy", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("policy" = String, Path, description = "policy id", example = "pol_0123456789abcdef")),
    request_body = RunPolicy,
    responses((status = 202, body = CleanupRunView), (status = 403, description = "read-only token"),
        (status = 404, description = "no such registry or policy"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn run(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, p) = find(&c)?;
    c.caller.need_write()?;
    let req: RunPolicy = c.json_or_default().await?;
    let rec = start(c.meta(), &registry, p, req.dry_run, c.caller.subject()).await?;
    let location = format!("/api/v1/registries/{registry}/cleanup-runs/{}", rec.id);
    let mut resp = json(StatusCode::ACCEPTED, &run_view(rec));
    resp.headers_mut()
        .insert("location", berth_http::hv(&location));
    Ok(resp)
}

/// Record a run as running, run it in the background, record its end.
pub(crate) async fn start(
    meta: &Meta,
    registry: &str,
    p: CleanupPolicy,
    dry_run: bool,
    by: String,
) -> std::result::Result<CleanupRun, berth_meta::MetaError> {
    let rec = CleanupRun {
        id: uuid::Uuid::new_v4().simple().to_string(),
        registry: registry.to_string(),
        policy: p.id.clone(),
        dry_run,
        status: "running".into(),
        started_ms: now_millis(),
        finished_ms: None,
        report: None,
        error: None,
    };
    let r = rec.clone();
    meta.run(move |m| m.put_cleanup_run(&r)).await?;
    let (m, inner, id) = (meta.clone(), rec.clone(), rec.id.clone());
    tokio::spawn(async move {
        let out = m
            .run(move |m| {
                let mut done = inner;
                let by = format!("cleanup:{}:{by}", p.id);
                match Cleaner::new(m.clone()).run(&done.registry, &p, dry_run, now_millis(), &by) {
                    Ok(report) => {
                        done.status = "succeeded".into();
                        done.report = serde_json::to_value(&report).ok();
                    }
                    Err(e) => {
                        done.status = "failed".into();
                        done.error = Some(e.to_string());
                    }
                }
                done.finished_ms = Some(now_millis());
                m.put_cleanup_run(&done)?;
                Ok(done)
            })
            .await;
        match out {
            Ok(d) => tracing::info!(run = %d.id, status = %d.status, "cleanup policy run ended"),
            Err(e) => {
                tracing::error!(run = %id, error = %e, "cleanup policy run record not written")
            }
        }
    });
    Ok(rec)
}

/// A registry's cleanup runs, newest first.
#[utoipa::path(get, path = "/registries/{name}/cleanup-runs", operation_id = "listCleanupRuns", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme")),
    responses((status = 200, body = CleanupRunList), (status = 404, description = "no such registry")))]
pub async fn runs(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let items = c
        .meta()
        .cleanup_runs(&registry, 100)?
        .into_iter()
        .map(run_view)
        .collect();
    Ok(json(StatusCode::OK, &CleanupRunList { items }))
}

/// One run, with its report once it ended.
#[utoipa::path(get, path = "/registries/{name}/cleanup-runs/{run}", operation_id = "getCleanupRun", tag = "cleanup",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("run" = String, Path, description = "run id", example = "0123456789abcdef0123456789abcdef")),
    responses((status = 200, body = CleanupRunView), (status = 404, description = "no such registry or run")))]
pub async fn get_run(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let id = c.param("run")?;
    let r = c
        .meta()
        .cleanup_run(&registry, &id)?
        .ok_or_else(|| ManagementError::not_found(format!("no cleanup run {id}")))?;
    Ok(json(StatusCode::OK, &run_view(r)))
}
