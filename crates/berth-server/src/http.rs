//! The server around the APIs: a table from path prefix to API, and for
//! every request an id, a tracing span, byte counts, and the request and
//! latency metrics. Each API parses, handles and renders its own errors
//! through [`berth_http::dispatch`].

use crate::inbound::{self, Inbound, Rest, RestSlot};
use crate::metrics::Metrics;
use crate::ops::Ops;
use berth_distribution::{Distribution, TokenService};
use berth_http::{dispatch, Body, ClientAddr, SendsFiles};
use berth_management::Management;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus::IntCounter;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

/// Which API serves a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v2/…`: the OCI distribution API.
    Distribution,
    /// `/token`: the docker token service.
    Token,
    /// `/api/v1/…`: the management API.
    Management,
    /// `/console/…`: the web console's page (`berth-console`).
    Console,
    /// `/healthz`, `/readyz`, `/metrics`, and everything else (404).
    Ops,
}

/// Path prefixes, matched on whole segments, first match wins.
pub const ROUTES: &[(&str, Api)] = &[
    ("/v2", Api::Distribution),
    ("/token", Api::Token),
    ("/api/v1", Api::Management),
    ("/console", Api::Console),
];

/// The API for `path`.
pub fn api_for(path: &str) -> Api {
    ROUTES
        .iter()
        .find(|(prefix, _)| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(|(_, api)| *api)
        .unwrap_or(Api::Ops)
}

pub struct Router {
    /// `http.body_idle_timeout_secs`.
    pub body_idle: std::time::Duration,
    pub dist: Distribution,
    pub token: TokenService,
    pub management: Management,
    pub console: berth_console::Console,
    pub ops: Ops,
    pub metrics: Metrics,
}

/// A body that counts the data bytes passing through it (responses, and
/// request bodies inside `inbound::Inbound`).
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

fn request_id<B>(req: &Request<B>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

impl Router {
    /// Whether the HTTP/1.1 connection can carry another request after this
    /// answer: the request body was read to its end, or its unread rest is
    /// short and is drained now (`inbound.rs`).
    async fn keeps_connection(&self, rest: Option<RestSlot>, waits_for_continue: bool) -> bool {
        let Some(slot) = rest else {
            return true;
        };
        let rest = std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
        let keep = match rest {
            Rest::Done => return true,
            Rest::Broken => false,
            // the client has not sent the body and waits to be told to
            Rest::Unread(_) if waits_for_continue => false,
            Rest::Unread(body) => inbound::drain(body).await,
        };
        if !keep {
            self.metrics.undrained.inc();
        }
        keep
    }

    /// Answer one request from `peer`; `sends_files`: the connection's
    /// writer sends runs of mapped files with sendfile (plain TCP).
    pub async fn serve(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: String,
        sends_files: bool,
    ) -> Response<Body> {
        let start = Instant::now();
        let rid = request_id(&req);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!("request", id = %rid, method = %method, path = %path);
        async move {
            let h1 = req.version() < http::Version::HTTP_2;
            let waits_for_continue = req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let mut rest = None;
            let mut req = req.map(|b| {
                // no body (GET, HEAD, most DELETEs): nothing to time out,
                // drain or count
                if http_body::Body::is_end_stream(&b) {
                    return berth_http::boxed(b);
                }
                let (b, slot) = Inbound::new(
                    b,
                    self.body_idle,
                    self.metrics.bytes_in.clone(),
                    self.metrics.body_timeouts.clone(),
                );
                rest = Some(slot);
                berth_http::boxed(b)
            });
            req.extensions_mut().insert(ClientAddr(peer));
            // HTTP/2 frames the bytes itself (it copies them)
            if sends_files && h1 {
                req.extensions_mut().insert(SendsFiles);
            }
            let (route, mut resp) = match api_for(&path) {
                Api::Distribution => dispatch(&self.dist, req).await,
                Api::Token => dispatch(&self.token, req).await,
                Api::Management => dispatch(&self.management, req).await,
                Api::Console => dispatch(&self.console, req).await,
                Api::Ops => dispatch(&self.ops, req).await,
            };
            if h1 && !self.keeps_connection(rest, waits_for_continue).await {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            let status = resp.status();
            let elapsed = start.elapsed();
            self.metrics
                .requests
                .with_label_values(&[route, method.as_str(), status.as_str()])
                .inc();
            self.metrics
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
            let out = self.metrics.bytes_out.clone();
            resp.map(|b| Counted::new(b, out).boxed_unsync())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert_eq!(api_for("/v2"), Api::Distribution);
        assert_eq!(api_for("/v2/a/b/manifests/x"), Api::Distribution);
        assert_eq!(api_for("/v2x"), Api::Ops);
        assert_eq!(api_for("/token"), Api::Token);
        assert_eq!(api_for("/tokens"), Api::Ops);
        assert_eq!(api_for("/api/v1"), Api::Management);
        assert_eq!(api_for("/api/v1/registries"), Api::Management);
        assert_eq!(api_for("/api/v2"), Api::Ops);
        assert_eq!(api_for("/metrics"), Api::Ops);
        assert_eq!(api_for("/console"), Api::Console);
        assert_eq!(api_for("/console/console.js"), Api::Console);
        assert_eq!(api_for("/consoles"), Api::Ops);
        assert_eq!(api_for("/"), Api::Ops);
    }
}
