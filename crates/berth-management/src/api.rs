//! The route table is the OpenAPI document: every operation declared with
//! `#[utoipa::path]` is in [`ApiDoc`], the router is built from that
//! document's paths, and a request is dispatched by its operation id. A
//! route cannot exist without being documented.

use crate::caller::Caller;
use crate::error::{ManagementError, PROBLEM_JSON};
use crate::{
    artifacts, audit, bin, gc, kept, policies, registries, repositories, rules, tokens, users,
};
use berth_http::Body;
use berth_meta::Meta;
use futures::StreamExt;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::OpenApi;

/// Largest JSON request body.
const MAX_BODY: usize = 64 * 1024;
/// Page sizes.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(OpenApi)]
#[openapi(
    info(title = "Berth management API", description = "Registries, and (to come) repositories, artifacts, users, tokens, credentials, cleanup and garbage collection. Errors are RFC 9457 problem details with a stable `code`."),
    servers((url = "/api/v1")),
    paths(
        root, openapi_json, session,
        registries::list, registries::create, registries::get, registries::update,
        registries::delete, registries::check_name, registries::usage,
        repositories::list, repositories::names, repositories::get, repositories::delete,
        artifacts::list, artifacts::get, artifacts::delete, artifacts::list_tags,
        artifacts::set_tag, artifacts::delete_tag, artifacts::tag_history,
        artifacts::repository_history, artifacts::cleanup,
        audit::list,
        users::list, users::create, users::get, users::update, users::reset_password, users::delete,
        tokens::list, tokens::create, tokens::get, tokens::update, tokens::refresh,
        tokens::regenerate, tokens::revoke, tokens::delete, tokens::docker_credentials,
        gc::start, gc::list, gc::get, gc::cancel, gc::estimate,
        rules::list, rules::create, rules::get, rules::delete,
        bin::list, bin::restore, bin::purge, bin::empty,
        kept::blob, kept::manifest,
        policies::list, policies::create, policies::get, policies::update, policies::delete, policies::run,
        policies::runs, policies::get_run,
    ),
    components(schemas(
        Root, Problem, Session,
        registries::UsageSampleView, registries::UsageHistory,
        registries::RegistryView, registries::CreateRegistry, registries::UpdateRegistry,
        registries::RegistryPage, registries::NameCheck, registries::NameStatus,
        registries::VisibilityView,
        repositories::KindView, repositories::RepositoryView, repositories::RepositoryPage,
        repositories::RepositoryNamePage,
        artifacts::PlatformView, artifacts::BlobView, artifacts::ChildView, artifacts::ReferrerView,
        artifacts::ArtifactView, artifacts::ArtifactPage, artifacts::TagView, artifacts::TagPage,
        artifacts::SetTag, artifacts::TagEventView, artifacts::TagHistoryPage,
        artifacts::CleanupRequest, artifacts::CleanupFailure, artifacts::CleanupResult,
        audit::AuditEntry, audit::AuditPage,
        users::UserView, users::UserWithPassword, users::CreateUser, users::UpdateUser, users::UserPage,
        tokens::TokenStatusView, tokens::TokenView, tokens::DockerConfig, tokens::TokenWithSecret,
        tokens::CreateToken, tokens::UpdateToken, tokens::RefreshToken, tokens::CreateCredentials,
        tokens::TokenPage,
        gc::StartGc, berth_gc::Report, gc::GcRunView, gc::GcRunPage, gc::GcEstimate,
        rules::TagRuleKindView, rules::TagRuleView, rules::CreateTagRule, rules::TagRuleList,
        bin::BinEntryView, bin::BinPage, bin::Restore, bin::Emptied,
        kept::Referencing, kept::BlobHolder, kept::BlobKeepers, kept::ManifestKeepers,
        policies::PolicyView, policies::CreatePolicy, policies::UpdatePolicy, policies::PolicyList, policies::RunPolicy,
        policies::CleanupRunView, policies::CleanupRunList, berth_gc::CleanupReport, berth_gc::Doomed,
    )),
    modifiers(&Security, &Errors),
    security(("token" = [])),
    tags((name = "registries", description = "Tenants: the first component of every repository name"),
        (name = "repositories", description = "A registry's repositories, with their sizes, counts and kinds"),
        (name = "artifacts", description = "Manifests of a repository, their tags, tag history and bulk cleanup"),
        (name = "users", description = "A registry's docker login accounts"),
        (name = "tokens", description = "API tokens, and docker / Kubernetes credentials"),
        (name = "cleanup", description = "Cleanup policies (keep/delete patterns, keep N newest, older than), run on demand or on a schedule"),
        (name = "recycle-bin", description = "Deleted manifests and tags, restorable until garbage collection lets them go"),
        (name = "tag-rules", description = "Protected and immutable tags: rules per registry, on /v2/ and here"),
        (name = "gc", description = "Online garbage collection: start, follow, list, cancel"),
        (name = "audit", description = "Every change through this API and every push and delete on /v2/")),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("an API token (berth_…) or the admin token"))
                        .build(),
                ),
            );
    }
}

/// Every operation may answer with these (besides what it declares): the
/// problem+json errors of the server layer and of every handler.
const COMMON_ERRORS: [(&str, &str); 6] = [
    (
        "400",
        "malformed request: a path parameter, query parameter or body",
    ),
    ("401", "no or invalid credentials"),
    ("405", "method not allowed here"),
    ("413", "request body over 64 KiB"),
    ("429", "too many failed logins from this client"),
    ("503", "the metadata store is busy; try again"),
];

/// Every error response of every operation carries the problem schema, and
/// the errors any operation can give are declared on all of them.
struct Errors;

impl utoipa::Modify for Errors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, RefOr, Response};
        let problem = || {
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "Problem",
            ))))
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let public = op
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| PUBLIC.contains(&id));
                for (code, what) in COMMON_ERRORS {
                    if public && code != "405" {
                        continue;
                    }
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| RefOr::T(Response::new(what)));
                }
                for (code, r) in op.responses.responses.iter_mut() {
                    if let (true, RefOr::T(r)) = (code.starts_with('4') || code.starts_with('5'), r)
                    {
                        r.content.insert(PROBLEM_JSON.to_string(), problem());
                    }
                }
            }
        }
    }
}

/// An error: RFC 9457 problem details.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the schema of what error.rs renders
pub struct Problem {
    r#type: String,
    title: String,
    status: u16,
    /// Stable, machine-readable: `not_found`, `invalid_request`, `conflict`, …
    code: String,
    detail: String,
}

/// Which API this is.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Root {
    api: String,
    version: String,
}

/// Which API and server version this is (no credentials needed).
#[utoipa::path(get, path = "/", operation_id = "root", tag = "meta", security(()),
    responses((status = 200, body = Root)))]
pub async fn root(_c: Ctx<'_>) -> Result<http::Response<Body>, ManagementError> {
    Ok(berth_http::json_response(
        StatusCode::OK,
        &serde_json::json!({ "api": "v1", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

/// This document (OpenAPI 3.1), generated from the code.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "meta", security(()),
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json(_c: Ctx<'_>) -> Result<http::Response<Body>, ManagementError> {
    Ok(berth_http::body_response(
        StatusCode::OK,
        ApiDoc::openapi()
            .to_json()
            .expect("openapi serialises")
            .into_bytes(),
        "application/json",
    ))
}

/// Who is calling: what the console shows and which of its controls it
/// offers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// `admin` or `token`.
    kind: String,
    token_id: Option<String>,
    token_name: Option<String>,
    /// The registries the caller sees; `null`: every one.
    registries: Option<Vec<String>>,
    read_write: bool,
    /// Creating registries, managing tokens and collecting the whole
    /// instance: the admin or a read-write token for every registry.
    may_create_registries: bool,
}

/// The caller: the admin or an API token, with its scope and mode.
#[utoipa::path(get, path = "/session", operation_id = "getSession", tag = "meta",
    responses((status = 200, body = Session)))]
pub async fn session(c: Ctx<'_>) -> Result<http::Response<Body>, ManagementError> {
    let (kind, token_id, token_name, registries) = match &c.caller {
        Caller::Admin => ("admin", None, None, None),
        Caller::Token { id, registries, .. } => {
            let name = c.meta().token(id)?.map(|t| t.name);
            ("token", Some(id.clone()), name, registries.clone())
        }
    };
    Ok(json(
        StatusCode::OK,
        &Session {
            kind: kind.into(),
            token_id,
            token_name,
            registries,
            read_write: c.caller.may_write(),
            may_create_registries: c.caller.may_create_registries(),
        },
    ))
}

/// Operations that need no credentials.
pub const PUBLIC: [&str; 2] = ["root", "openapi"];

/// The router: OpenAPI path → (method → operation id).
pub struct Routes {
    router: matchit::Router<Vec<(Method, String)>>,
}

impl Routes {
    pub fn from_doc() -> Routes {
        let doc = ApiDoc::openapi();
        let mut router = matchit::Router::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ]
            .into_iter()
            .filter_map(|(m, op)| {
                let id = op.as_ref()?.operation_id.clone()?;
                Some((m, id))
            })
            .collect::<Vec<_>>();
            router
                .insert(path.clone(), ops)
                .expect("distinct OpenAPI paths");
        }
        Routes { router }
    }

    /// The operation for `method` on `path` (below `/api/v1`), with its
    /// path parameters; 404 or 405 otherwise.
    pub fn find(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<(String, Vec<(String, String)>), ManagementError> {
        let path = if path.is_empty() { "/" } else { path };
        let m = self
            .router
            .at(path)
            .map_err(|_| ManagementError::not_found(format!("no route /api/v1{path}")))?;
        let method = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let allowed: Vec<&str> = m.value.iter().map(|(m, _)| m.as_str()).collect();
        let (_, op) = m.value.iter().find(|(m, _)| m == method).ok_or_else(|| {
            ManagementError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            )
            .header("allow", allowed.join(", "))
        })?;
        let params = m
            .params
            .iter()
            .map(|(k, v)| {
                let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                (k.to_string(), v.into_owned())
            })
            .collect();
        Ok((op.clone(), params))
    }
}

/// What a handler gets.
pub struct Ctx<'a> {
    pub api: &'a crate::Inner,
    pub caller: Caller,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Body,
}

/// `limit`, `cursor` and `prefix` of a list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters page_query reads
pub struct PageQuery {
    /// Entries per page, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// The last name of the previous page (from `next`).
    cursor: Option<String>,
    /// Only names starting with this.
    prefix: Option<String>,
}

/// `offset` and `sort` of a list that can also be sorted by other keys
/// than its natural order.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters page_query and sort read
pub struct SortQuery {
    /// Entries to skip, 0 to 10000 (the seeds' limit/offset paging;
    /// `cursor` is the cheaper way through a long list).
    offset: Option<usize>,
    /// A field to sort by, `-field` for descending; which fields, the
    /// operation says. Orders other than the natural one read at most
    /// 10000 entries (more is 400 `too_many_to_sort`).
    sort: Option<String>,
}

pub struct PageParams {
    pub limit: usize,
    pub cursor: Option<String>,
    pub prefix: Option<String>,
    pub offset: usize,
    /// Other query parameters to keep in the `next` link.
    pub keep: Vec<(String, String)>,
}

/// How many entries a list sorted by something other than its keys reads
/// at most (and how far `offset` goes).
pub const MAX_SORTED: usize = 10_000;

impl PageParams {
    /// The link to the page after `last` (keyset).
    pub fn next_link(&self, path: &str, last: &str) -> String {
        self.link(path, Some(last), None)
    }

    /// The page of an already sorted list `all` at `offset`, and the link
    /// to the next page (`None` on the last).
    pub fn offset_page<T>(&self, all: Vec<T>, path: &str) -> (Vec<T>, Option<String>) {
        let end = (self.offset + self.limit).min(all.len());
        let next = (end < all.len()).then(|| self.next_offset_link(path, end));
        let page = all.into_iter().skip(self.offset).take(self.limit).collect();
        (page, next)
    }

    /// The link to the page at `offset` (for sorted lists).
    fn next_offset_link(&self, path: &str, offset: usize) -> String {
        self.link(path, None, Some(offset))
    }

    fn link(&self, path: &str, last: Option<&str>, offset: Option<usize>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("limit", &self.limit.to_string());
        if let Some(l) = last {
            q.append_pair("cursor", l);
        }
        if let Some(o) = offset {
            q.append_pair("offset", &o.to_string());
        }
        if let Some(p) = &self.prefix {
            q.append_pair("prefix", p);
        }
        for (k, v) in &self.keep {
            q.append_pair(k, v);
        }
        format!("{path}?{}", q.finish())
    }
}

/// A sort order from `sort`: the field and whether descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<F> {
    pub field: F,
    pub desc: bool,
}

/// A field that is present (even as `null`) is `Some`: tells "set to
/// null" from "leave as is" in a PATCH.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A JSON response of a view.
pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> http::Response<Body> {
    berth_http::json_response(status, &serde_json::to_value(v).expect("views serialise"))
}

/// 400 for a list that would have to sort more than [`MAX_SORTED`].
pub fn too_many_to_sort(what: &str) -> ManagementError {
    ManagementError::new(
        StatusCode::BAD_REQUEST,
        "too_many_to_sort",
        format!("more than {MAX_SORTED} {what}: only the default order pages through them"),
    )
}

impl Ctx<'_> {
    pub fn meta(&self) -> &Meta {
        self.api.admin.meta()
    }

    /// The request body as JSON (see [`read_json`]).
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ManagementError> {
        read_json(std::mem::replace(&mut self.body, berth_http::empty())).await
    }

    /// The request body as JSON, or `T::default()` when there is none.
    pub async fn json_or_default<T: DeserializeOwned + Default>(
        &mut self,
    ) -> Result<T, ManagementError> {
        let buf = read_body(std::mem::replace(&mut self.body, berth_http::empty())).await?;
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        parse_json(&buf)
    }

    pub fn param(&self, name: &str) -> Result<String, ManagementError> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ManagementError::invalid(format!("missing {name}")))
    }

    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// `graceSeconds` from the query, else the instance's (`gc.grace_secs`).
    pub fn grace_secs(&self) -> Result<u64, ManagementError> {
        match self.q("graceSeconds") {
            None | Some("") => Ok(self.api.grace_secs),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ManagementError::invalid(format!("graceSeconds={v:?}: seconds"))),
        }
    }

    pub fn page_query(&self) -> Result<PageParams, ManagementError> {
        let limit = match self.q("limit") {
            None | Some("") => DEFAULT_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ManagementError::invalid(format!(
                        "limit={s:?}: 1 to {MAX_LIMIT}"
                    )))
                }
            },
        };
        let offset = match self.q("offset") {
            None | Some("") => 0,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n <= MAX_SORTED => n,
                _ => {
                    return Err(ManagementError::invalid(format!(
                        "offset={s:?}: 0 to {MAX_SORTED}"
                    )))
                }
            },
        };
        let keep = [
            "sort",
            "search",
            "tag",
            "registry",
            "principal",
            "action",
            "since",
            "until",
            "scope",
            "mode",
            "status",
        ]
        .iter()
        .filter_map(|k| self.q(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
        Ok(PageParams {
            limit,
            cursor: self.text("cursor")?,
            prefix: self.text("prefix")?,
            offset,
            keep,
        })
    }

    /// A short text filter (`search`, `tag`, …): at most 255 characters.
    pub fn text(&self, k: &str) -> Result<Option<String>, ManagementError> {
        match self.q(k) {
            None | Some("") => Ok(None),
            Some(v) if v.len() > 255 || v.contains('\0') => Err(ManagementError::invalid(format!(
                "{k}: at most 255 characters"
            ))),
            Some(v) => Ok(Some(v.to_string())),
        }
    }

    /// `sort`: one of `fields` (by name), `-` before it for descending;
    /// `default` when absent.
    pub fn sort<F: Copy>(
        &self,
        fields: &[(&str, F)],
        default: Sort<F>,
    ) -> Result<Sort<F>, ManagementError> {
        let Some(s) = self.q("sort").filter(|s| !s.is_empty()) else {
            return Ok(default);
        };
        let (desc, name) = match s.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s),
        };
        match fields.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => Ok(Sort { field: *f, desc }),
            None => Err(ManagementError::invalid(format!(
                "sort={s:?}: one of {}, with - for descending",
                fields
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// A boolean query parameter (`true`/`false`), `false` when absent.
    pub fn flag(&self, k: &str) -> Result<bool, ManagementError> {
        match self.q(k) {
            None | Some("") | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(ManagementError::invalid(format!(
                "{k}={v:?}: true or false"
            ))),
        }
    }
}

/// A JSON request body: 413 past 64 KiB, 400 when it is no JSON, 422 when
/// it has the wrong shape (unknown or mistyped fields).
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ManagementError> {
    parse_json(&read_body(body).await?)
}

async fn read_body(body: Body) -> Result<Vec<u8>, ManagementError> {
    let mut buf = Vec::new();
    let mut s = http_body_util::BodyStream::new(body);
    while let Some(frame) = s.next().await {
        let frame = frame.map_err(|e| ManagementError::invalid(format!("body: {e}")))?;
        if let Ok(d) = frame.into_data() {
            if buf.len() + d.len() > MAX_BODY {
                return Err(ManagementError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("request bodies are at most {MAX_BODY} bytes"),
                ));
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(buf)
}

fn parse_json<T: DeserializeOwned>(buf: &[u8]) -> Result<T, ManagementError> {
    serde_json::from_slice(buf).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ManagementError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            e.to_string(),
        ),
        _ => ManagementError::invalid(format!("not JSON: {e}")),
    })
}
