//! `/audit`: the log of every change made through this API and every push
//! and delete on `/v2/` (written by each API's dispatcher once a request
//! is answered), newest first, with filters.

use crate::api::{json, Ctx, PageQuery};
use crate::caller::Caller;
use crate::error::ManagementError;
use crate::repositories::ms;
use berth_http::Body;
use berth_meta::AuditFilter;
use http::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// Entries read at most for one page (filters that match little stop a
/// page early, with a `next` link to go on).
const SCAN_BUDGET: usize = 10_000;

/// One entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: String,
    pub at_ms: u64,
    /// `admin`, `token:<id>`, `user:<registry>+<name>`, `anonymous`.
    pub principal: String,
    /// The client's address.
    pub client: String,
    /// The operation: the route label (`api.registries.create`,
    /// `v2.manifest.put`, `v2.manifest.delete`, …).
    pub action: String,
    /// What it acted on: the request path below the API's root.
    pub target: String,
    pub registry: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next: Option<String>,
}

/// Filters of the audit log.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents what list reads
pub struct AuditQuery {
    /// Only this registry's entries.
    registry: Option<String>,
    /// Only this principal's (`admin`, `token:<id>`, …).
    principal: Option<String>,
    /// Only this action.
    action: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    since: Option<String>,
    /// Up to this time (RFC 3339, inclusive).
    until: Option<String>,
}

pub(crate) fn time_param(c: &Ctx<'_>, k: &str) -> Result<Option<u64>> {
    match c.text(k)? {
        None => Ok(None),
        Some(v) => berth_core::time::parse_rfc3339_ms(&v)
            .map(Some)
            .ok_or_else(|| {
                ManagementError::invalid(format!(
                    "{k}={v:?}: an RFC 3339 UTC time such as 2026-12-01T00:00:00Z"
                ))
            }),
    }
}

/// The audit log, newest first. A scoped token sees its registries'
/// entries only.
#[utoipa::path(get, path = "/audit", operation_id = "listAudit", tag = "audit",
    params(PageQuery, AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, description = "bad parameters"), (status = 401)))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let q = c.page_query()?;
    let within = match &c.caller {
        Caller::Token {
            registries: Some(l),
            ..
        } => Some(l.clone()),
        _ => None,
    };
    let f = AuditFilter {
        registry: c.text("registry")?,
        principal: c.text("principal")?,
        action: c.text("action")?,
        since_ms: time_param(&c, "since")?,
        until_ms: time_param(&c, "until")?,
        within,
    };
    let cursor = q.cursor.clone();
    let limit = q.limit;
    let page = c
        .meta()
        .run(move |m| m.list_audit(&f, cursor.as_deref(), limit, SCAN_BUDGET))
        .await?;
    let next = page.next.map(|n| q.next_link("/api/v1/audit", &n));
    let items = page
        .items
        .into_iter()
        .map(|(_, r)| AuditEntry {
            at: ms(r.at_ms),
            at_ms: r.at_ms,
            principal: r.principal,
            client: r.client,
            action: r.action,
            target: r.target,
            registry: r.registry,
            status: r.status,
        })
        .collect();
    Ok(json(StatusCode::OK, &AuditPage { items, next }))
}
