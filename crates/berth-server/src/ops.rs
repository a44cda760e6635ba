//! The operations endpoints (`/healthz`, `/readyz`, `/metrics`) and the
//! answer to paths no API serves: an API of their own on the server layer.

use crate::metrics::Metrics;
use berth_distribution::Distribution;
use berth_http::{body_response, ApiHandler, Body};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use std::sync::Arc;

pub struct Ops {
    pub dist: Distribution,
    pub auth: Arc<berth_auth::Auth>,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Readyz,
    Metrics,
}

/// No such route (or method): the OCI error envelope, which every client
/// of a registry understands.
#[derive(Debug)]
pub struct OpsError(StatusCode, &'static str, std::borrow::Cow<'static, str>);

impl berth_http::ApiError for OpsError {
    fn status(&self) -> StatusCode {
        self.0
    }

    fn bad_request(detail: String) -> OpsError {
        OpsError(StatusCode::BAD_REQUEST, "BAD_REQUEST", detail.into())
    }

    fn render(self, head: bool) -> Response<Body> {
        let body = serde_json::json!({"errors": [{"code": self.1, "message": self.2}]});
        berth_http::error_response(
            self.0,
            serde_json::to_vec(&body).expect("json"),
            "application/json",
            head,
        )
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    body_response(status, body.as_bytes().to_vec(), "text/plain")
}

impl ApiHandler for Ops {
    type Endpoint = Endpoint;
    type Error = OpsError;
    const UNROUTED: &'static str = "unrouted";

    fn parse(&self, parts: &Parts) -> Result<Endpoint, OpsError> {
        let ep = match parts.uri.path() {
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/metrics" => Endpoint::Metrics,
            _ => {
                return Err(OpsError(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "no such route".into(),
                ))
            }
        };
        match parts.method {
            Method::GET | Method::HEAD => Ok(ep),
            _ => Err(OpsError(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "the operation is unsupported".into(),
            )),
        }
    }

    fn route(ep: &Endpoint) -> &'static str {
        match ep {
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
        }
    }

    async fn handle(&self, ep: Endpoint, _: Parts, _: Body) -> Result<Response<Body>, OpsError> {
        Ok(match ep {
            Endpoint::Healthz => text(StatusCode::OK, "ok\n"),
            Endpoint::Readyz => match self.dist.meta().read(|m| m.list_repos(None, 1)).await {
                Ok(_) => text(StatusCode::OK, "ready\n"),
                Err(e) => {
                    tracing::error!(error = %e, "not ready");
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "metadata store unavailable\n",
                    )
                }
            },
            Endpoint::Metrics => body_response(
                StatusCode::OK,
                self.metrics.render(&self.dist, &self.auth).await,
                "text/plain; version=0.0.4",
            ),
        })
    }
}
