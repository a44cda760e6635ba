//! The generic server: one place for request ids, tracing spans, metrics,
//! and routing between the APIs (`/v2/`, and later `/api/v1/`, `/token`).

use crate::metrics::Metrics;
use berth_distribution::{Body, Distribution, RouteLabel};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use prometheus::IntCounter;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

pub struct State {
    pub dist: Distribution,
    pub metrics: Metrics,
}

/// A body that counts the data bytes passing through it.
pub struct Counted<B> {
    inner: B,
    counter: IntCounter,
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: IntCounter) -> Counted<B> {
        Counted { inner, counter }
    }
}

impl<B> http_body::Body for Counted<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.counter.inc_by(d.len() as u64);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn simple(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn request_id(req: &Request<hyper::body::Incoming>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

pub async fn serve(
    state: Arc<State>,
    mut req: Request<hyper::body::Incoming>,
    peer: String,
) -> Response<Body> {
    req.extensions_mut()
        .insert(berth_distribution::ClientAddr(peer));
    let start = Instant::now();
    let rid = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", id = %rid, method = %method, path = %path);
    async move {
        let req = req.map(|b| Counted::new(b, state.metrics.bytes_in.clone()));
        let (route, mut resp) = if path == "/v2" || path.starts_with("/v2/") {
            let r = state.dist.handle(req).await;
            let route = r
                .extensions()
                .get::<RouteLabel>()
                .map(|l| l.0)
                .unwrap_or("v2");
            (route, r)
        } else {
            match path.as_str() {
                "/token" => ("token", state.dist.token(req).await),
                "/healthz" => (
                    "healthz",
                    simple(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
                ),
                "/readyz" => match state.dist.meta().list_repos(None, 1) {
                    Ok(_) => (
                        "readyz",
                        simple(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "not ready");
                        (
                            "readyz",
                            simple(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "text/plain",
                                b"metadata store unavailable\n".to_vec(),
                            ),
                        )
                    }
                },
                "/metrics" => (
                    "metrics",
                    simple(
                        StatusCode::OK,
                        "text/plain; version=0.0.4",
                        state.metrics.render(),
                    ),
                ),
                _ => (
                    "unrouted",
                    simple(
                        StatusCode::NOT_FOUND,
                        "application/json",
                        br#"{"errors":[{"code":"NOT_FOUND","message":"no such route"}]}"#.to_vec(),
                    ),
                ),
            }
        };
        let status = resp.status();
        let elapsed = start.elapsed();
        state
            .metrics
            .requests
            .with_label_values(&[route, method.as_str(), status.as_str()])
            .inc();
        state
            .metrics
            .latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                route,
                ms = elapsed.as_millis() as u64,
                "request failed"
            );
        } else {
            tracing::info!(
                status = status.as_u16(),
                route,
                ms = elapsed.as_millis() as u64,
                "request"
            );
        }
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let out = state.metrics.bytes_out.clone();
        resp.map(|b| Counted::new(b, out).boxed_unsync())
    }
    .instrument(span)
    .await
}
