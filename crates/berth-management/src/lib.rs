//! Berth's management plane.
//!
//! - [`Admin`]: registries, users and tokens, each change one metadata
//!   transaction (used by the offline CLI now).
//! - [`Management`]: the `/api/v1/` HTTP API, an [`ApiHandler`] served by
//!   the same server layer as `/v2/`. Today it answers its root with the
//!   API version; the resources come with the management API issue.

pub mod admin;
mod error;

pub use admin::{Admin, AdminError, Created};
pub use error::{ManagementError, PROBLEM_JSON};

use berth_http::{json_response, ApiHandler, Body};
use http::request::Parts;
use http::{Method, Response, StatusCode};

/// The `/api/v1/` API.
#[derive(Clone)]
pub struct Management {
    #[allow(dead_code)] // the resource handlers use it
    admin: Admin,
}

/// What a `/api/v1/` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/v1/`: which API and server version this is.
    Root,
}

impl Management {
    pub fn new(admin: Admin) -> Management {
        Management { admin }
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
        match rest {
            "" | "/" => match parts.method {
                Method::GET | Method::HEAD => Ok(Endpoint::Root),
                _ => Err(ManagementError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{} is not allowed on /api/v1/", parts.method),
                )),
            },
            _ => Err(ManagementError::not_found(format!("no route for {path}"))),
        }
    }

    fn route(ep: &Endpoint) -> &'static str {
        match ep {
            Endpoint::Root => "api.root",
        }
    }

    async fn handle(
        &self,
        ep: Endpoint,
        _parts: Parts,
        _body: Body,
    ) -> Result<Response<Body>, ManagementError> {
        match ep {
            Endpoint::Root => Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "api": "v1", "version": env!("CARGO_PKG_VERSION") }),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{MemStore, Meta};
    use http_body_util::BodyExt;

    async fn call(m: Method, path: &str) -> (StatusCode, String, serde_json::Value) {
        let api = Management::new(Admin::new(Meta::new(MemStore::new())));
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
        let (st, ct, v) = call(Method::GET, "/api/v1/registries").await;
        assert_eq!((st, ct.as_str()), (StatusCode::NOT_FOUND, PROBLEM_JSON));
        assert_eq!(
            (v["status"].as_u64(), v["code"].as_str()),
            (Some(404), Some("not_found"))
        );
        let (st, _, v) = call(Method::DELETE, "/api/v1").await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(v["code"], "method_not_allowed");
    }
}
