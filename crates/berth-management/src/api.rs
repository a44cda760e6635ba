//! The route table is the OpenAPI document: every operation declared with
//! `#[utoipa::path]` is in [`ApiDoc`], the router is built from that
//! document's paths, and a request is dispatched by its operation id. A
//! route cannot exist without being documented.

use crate::caller::Caller;
use crate::error::ManagementError;
use crate::registries;
use berth_http::Body;
use berth_meta::Meta;
use futures::StreamExt;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
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
        root, openapi_json,
        registries::list, registries::create, registries::get, registries::update,
        registries::delete, registries::check_name,
    ),
    components(schemas(
        Root, Problem,
        registries::RegistryView, registries::CreateRegistry, registries::UpdateRegistry,
        registries::RegistryPage, registries::NameCheck, registries::NameStatus,
        registries::VisibilityView,
    )),
    modifiers(&Security),
    security(("token" = [])),
    tags((name = "registries", description = "Tenants: the first component of every repository name")),
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

pub struct PageParams {
    pub limit: usize,
    pub cursor: Option<String>,
    pub prefix: Option<String>,
}

impl PageParams {
    /// The link to the page after `last`.
    pub fn next_link(&self, path: &str, last: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("limit", &self.limit.to_string());
        q.append_pair("cursor", last);
        if let Some(p) = &self.prefix {
            q.append_pair("prefix", p);
        }
        format!("{path}?{}", q.finish())
    }
}

impl Ctx<'_> {
    pub fn meta(&self) -> &Meta {
        self.api.admin.meta()
    }

    /// The request body as JSON (see [`read_json`]).
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ManagementError> {
        read_json(std::mem::replace(&mut self.body, berth_http::empty())).await
    }

    pub fn param(&self, name: &str) -> Result<String, ManagementError> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ManagementError::invalid(format!("missing {name}")))
    }

    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
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
        let text = |k: &str| -> Result<Option<String>, ManagementError> {
            match self.q(k) {
                None | Some("") => Ok(None),
                Some(v) if v.len() > 255 || v.contains('\0') => Err(ManagementError::invalid(
                    format!("{k}: at most 255 characters"),
                )),
                Some(v) => Ok(Some(v.to_string())),
            }
        };
        Ok(PageParams {
            limit,
            cursor: text("cursor")?,
            prefix: text("prefix")?,
        })
    }
}

/// A JSON request body: 413 past 64 KiB, 400 when it is no JSON, 422 when
/// it has the wrong shape (unknown or mistyped fields).
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ManagementError> {
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
    serde_json::from_slice(&buf).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ManagementError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            e.to_string(),
        ),
        _ => ManagementError::invalid(format!("not JSON: {e}")),
    })
}
