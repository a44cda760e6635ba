//! Berth's management plane.
//!
//! - [`Admin`]: registries, users and tokens, each change one metadata
//!   transaction (used by the offline CLI now).
//! - [`Management`]: the `/api/v1/` HTTP API, an [`ApiHandler`] served by
//!   the same server layer as `/v2/`. Its routes are the operations of the
//!   OpenAPI document ([`ApiDoc`], served at `/api/v1/openapi.json`);
//!   registries so far, the other resources to come.

pub mod admin;
mod api;
mod caller;
mod error;
mod registries;

pub use admin::{Admin, AdminError, Created};
pub use api::ApiDoc;
pub use caller::Caller;
pub use error::{ManagementError, PROBLEM_JSON};

use api::{Ctx, Routes};
use berth_http::{ApiHandler, Body, ClientAddr};
use http::request::Parts;
use http::Response;
use std::sync::Arc;

/// The `/api/v1/` API. Cheap to clone.
#[derive(Clone)]
pub struct Management {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub admin: Admin,
    /// `None` (or disabled): no credentials asked, everyone is the admin.
    pub auth: Option<Arc<berth_auth::Auth>>,
    /// `host[:port]` clients push to (shown as `pushPrefix`).
    pub host: String,
    pub routes: Routes,
}

/// What a `/api/v1/` request asks for: an operation of the OpenAPI
/// document, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub operation: String,
    pub params: Vec<(String, String)>,
}

impl Management {
    pub fn new(admin: Admin, auth: Option<Arc<berth_auth::Auth>>, host: String) -> Management {
        Management {
            inner: Arc::new(Inner {
                admin,
                auth,
                host,
                routes: Routes::from_doc(),
            }),
        }
    }
}

/// Metrics labels: one per operation of the document.
fn label(op: &str) -> &'static str {
    match op {
        "root" => "api.root",
        "openapi" => "api.openapi",
        "listRegistries" => "api.registries.list",
        "createRegistry" => "api.registries.create",
        "getRegistry" => "api.registries.get",
        "updateRegistry" => "api.registries.update",
        "deleteRegistry" => "api.registries.delete",
        "checkRegistryName" => "api.registry_names.check",
        _ => "api.other",
    }
}

impl ApiHandler for Management {
    type Endpoint = Endpoint;
    type Error = ManagementError;
    const UNROUTED: &'static str = "api.unrouted";

    fn parse(&self, parts: &Parts) -> Result<Endpoint, ManagementError> {
        let path = parts.uri.path();
        let rest = path
            .strip_prefix("/api/v1")
            .ok_or_else(|| ManagementError::not_found(format!("no route for {path}")))?;
        let (operation, params) = self.inner.routes.find(&parts.method, rest)?;
        Ok(Endpoint { operation, params })
    }

    fn route(ep: &Endpoint) -> &'static str {
        label(&ep.operation)
    }

    async fn handle(
        &self,
        ep: Endpoint,
        parts: Parts,
        body: Body,
    ) -> Result<Response<Body>, ManagementError> {
        let caller = if api::PUBLIC.contains(&ep.operation.as_str()) {
            Caller::Admin // answers that need no credentials read nothing
        } else {
            match self.inner.auth.as_deref() {
                Some(auth) => {
                    let client = parts
                        .extensions
                        .get::<ClientAddr>()
                        .map(|c| c.0.clone())
                        .unwrap_or_default();
                    caller::identify(auth, &parts.headers, &client)?
                }
                None => Caller::Admin,
            }
        };
        let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let c = Ctx {
            api: &self.inner,
            caller,
            params: ep.params,
            query,
            body,
        };
        match ep.operation.as_str() {
            "root" => api::root(c).await,
            "openapi" => api::openapi_json(c).await,
            "listRegistries" => registries::list(c).await,
            "createRegistry" => registries::create(c).await,
            "getRegistry" => registries::get(c).await,
            "updateRegistry" => registries::update(c).await,
            "deleteRegistry" => registries::delete(c).await,
            "checkRegistryName" => registries::check_name(c).await,
            other => Err(ManagementError::new(
                http::StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                format!("operation {other} has no handler"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{MemStore, Meta};
    use http::{Method, StatusCode};
    use http_body_util::BodyExt;

    async fn call(m: Method, path: &str) -> (StatusCode, String, serde_json::Value) {
        let api = Management::new(Admin::new(Meta::new(MemStore::new())), None, "h".into());
        let req = http::Request::builder()
            .method(m)
            .uri(path)
            .body(berth_http::empty())
            .unwrap();
        let (_, r) = berth_http::dispatch(&api, req).await;
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let st = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (st, ct, serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn root_and_problem_json() {
        let (st, _, v) = call(Method::GET, "/api/v1/").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["api"], "v1");
        let (st, ct, v) = call(Method::GET, "/api/v1/nothing").await;
        assert_eq!((st, ct.as_str()), (StatusCode::NOT_FOUND, PROBLEM_JSON));
        assert_eq!(
            (v["status"].as_u64(), v["code"].as_str()),
            (Some(404), Some("not_found"))
        );
        let (st, _, v) = call(Method::DELETE, "/api/v1").await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(v["code"], "method_not_allowed");
    }

    /// Every operation of the document has a handler and a metrics label.
    #[test]
    fn every_documented_operation_is_handled() {
        use utoipa::OpenApi;
        let doc = ApiDoc::openapi();
        for item in doc.paths.paths.values() {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.clone().expect("every operation has an id");
                assert_ne!(label(&id), "api.other", "{id} has no label");
            }
        }
    }
}
