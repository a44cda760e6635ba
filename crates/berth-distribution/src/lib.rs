//! Berth's `/v2/` API: the OCI distribution-spec 1.1 protocol over the
//! metadata store and the blob store.
//!
//! One request path (garage's shape): [`router::parse`] turns the request
//! into an [`Endpoint`] before any I/O, a handler does the work, and every
//! error becomes the spec's JSON in one place ([`ApiError`]). The server
//! crate wraps [`Distribution::handle`] with tracing, metrics and listeners;
//! authorisation will sit between parsing and handling.

mod access;
mod blobs;
mod error;
mod manifests;
pub mod router;
mod token;
mod uploads;

pub use access::ClientAddr;
pub use error::ApiError;
pub use router::Endpoint;

use berth_core::ErrorCode;
use berth_meta::Meta;
use berth_storage::BlobStore;
use bytes::Bytes;
use futures::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use std::sync::Arc;
use std::time::Duration;

/// Response bodies: full buffers or streams from the blob store.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The route label a response was served by, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// Settings of the `/v2/` API.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest manifest accepted (bytes); larger ones get 413.
    pub max_manifest_size: u64,
    /// Upload sessions idle longer than this are removed with their bytes.
    pub upload_max_age: Duration,
    /// Page size of `tags/list` and `_catalog` when the client sends no `n`.
    pub default_page_size: usize,
    /// Largest page served; a larger `n` is clamped (and `Link` says more).
    pub max_page_size: usize,
    /// Most referrers returned for one subject.
    pub max_referrers: usize,
    /// The token endpoint named in `WWW-Authenticate` challenges.
    pub realm: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_manifest_size: 4 * 1024 * 1024,
            upload_max_age: Duration::from_secs(24 * 3600),
            default_page_size: 1000,
            max_page_size: 10_000,
            max_referrers: 10_000,
            realm: "http://127.0.0.1:5000/token".into(),
        }
    }
}

/// Hooks the server gives the API to report into its metrics.
#[derive(Clone, Default)]
pub struct Gauges {
    pub open_uploads: Option<prometheus::IntGauge>,
}

/// The `/v2/` API. Cheap to clone.
#[derive(Clone)]
pub struct Distribution {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub auth: Option<Arc<berth_auth::Auth>>,
    pub meta: Meta,
    pub blobs: Arc<BlobStore>,
    pub cfg: Config,
    pub gauges: Gauges,
}

pub(crate) type Result<T> = std::result::Result<T, ApiError>;

impl Distribution {
    /// `auth`: `None` (or disabled) serves an open registry.
    pub fn new(
        meta: Meta,
        blobs: Arc<BlobStore>,
        auth: Option<Arc<berth_auth::Auth>>,
        cfg: Config,
        gauges: Gauges,
    ) -> Distribution {
        Distribution {
            inner: Arc::new(Inner {
                auth,
                meta,
                blobs,
                cfg,
                gauges,
            }),
        }
    }

    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    /// Serve the docker token service (`GET`/`POST /token`).
    pub async fn token<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let head = req.method() == http::Method::HEAD;
        match token::serve(&self.inner, req).await {
            Ok(r) => r,
            Err(e) => error_response(e, head),
        }
    }

    /// Serve one `/v2/` request. Never fails: errors become OCI error JSON.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let client = parts
            .extensions
            .get::<ClientAddr>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let (route, res) = match router::parse(&parts.method, parts.uri.path()) {
            Ok(ep) => {
                let route = ep.route();
                let res = async {
                    let caller =
                        self.inner
                            .authenticate(&parts.headers, &client, Inner::scope_for(&ep))?;
                    self.inner.authorize(&ep, &caller)?;
                    self.inner.dispatch(ep, &parts, body, &caller).await
                }
                .await;
                (route, res)
            }
            Err(e) => ("v2.unrouted", Err(e)),
        };
        let mut resp = match res {
            Ok(r) => r,
            Err(e) => error_response(e, head),
        };
        resp.headers_mut()
            .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
        resp.extensions_mut().insert(RouteLabel(route));
        resp
    }

    /// Remove upload sessions idle for longer than the configured age, and
    /// staged files that no session owns. Returns how many were removed.
    pub async fn reap_uploads(&self) -> Result<usize> {
        uploads::reap(&self.inner).await
    }

    /// Count open sessions into the gauge (at start-up).
    pub async fn count_uploads(&self) -> Result<usize> {
        uploads::count(&self.inner).await
    }
}

impl Inner {
    async fn dispatch<B>(
        &self,
        ep: Endpoint,
        parts: &http::request::Parts,
        body: B,
        caller: &access::Caller,
    ) -> Result<Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let q = Query::parse(parts.uri.query())?;
        let h = &parts.headers;
        match ep {
            Endpoint::Base => Ok(json_response(
                StatusCode::OK,
                b"{}".to_vec(),
                "application/json",
            )),
            Endpoint::Catalog => manifests::catalog(self, &q, caller).await,
            Endpoint::TagsList { name } => manifests::tags_list(self, &name, &q).await,
            Endpoint::GetManifest {
                name,
                reference,
                head,
            } => manifests::get_manifest(self, &name, &reference, head).await,
            Endpoint::PutManifest { name, reference } => {
                manifests::put_manifest(self, &name, &reference, &q, h, body_stream(body)).await
            }
            Endpoint::DeleteManifest { name, reference } => {
                manifests::delete_manifest(self, &name, &reference).await
            }
            Endpoint::Referrers { name, digest } => {
                manifests::referrers(self, &name, &digest, &q).await
            }
            Endpoint::GetBlob { name, digest, head } => {
                blobs::get_blob(self, &name, &digest, h, head).await
            }
            Endpoint::DeleteBlob { name, digest } => blobs::delete_blob(self, &name, &digest).await,
            Endpoint::StartUpload { name } => {
                uploads::start_blob_upload(self, &name, &q, h, body_stream(body), caller).await
            }
            Endpoint::GetUpload { name, id } => uploads::get_blob_upload(self, &name, &id).await,
            Endpoint::PatchUpload { name, id } => {
                uploads::patch_blob_data(self, &name, &id, h, body_stream(body)).await
            }
            Endpoint::PutUpload { name, id } => {
                uploads::put_blob_upload_complete(self, &name, &id, &q, h, body_stream(body)).await
            }
            Endpoint::DeleteUpload { name, id } => {
                uploads::cancel_blob_upload(self, &name, &id).await
            }
        }
    }
}

/// The request body as a stream of data chunks.
pub(crate) fn body_stream<B>(
    body: B,
) -> impl futures::Stream<Item = std::result::Result<Bytes, String>> + Send + 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    TryStreamExt::map_err(http_body_util::BodyStream::new(body), |e| e.to_string())
        .try_filter_map(|frame| futures::future::ready(Ok(frame.into_data().ok())))
}

/// Query parameters, first value of each.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Result<Query> {
        Ok(Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter, in order.
    pub fn get_all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn full(b: Vec<u8>) -> Body {
    Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn json_response(
    status: StatusCode,
    body: Vec<u8>,
    content_type: &str,
) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// A header value from text we built (always valid visible ASCII).
pub(crate) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// An empty response with a status and headers.
pub(crate) fn status_response(status: StatusCode, headers: &[(&str, String)]) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in headers {
        if let Ok(name) = http::HeaderName::from_bytes(k.as_bytes()) {
            h.insert(name, hv(v));
        }
    }
    if !h.contains_key(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    }
    r
}

fn error_response(e: ApiError, head: bool) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = e.body();
    let mut r = if head {
        let mut r = status_response(status, &[]);
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        r
    } else {
        json_response(status, body, "application/json")
    };
    *r.status_mut() = status;
    for (k, v) in e.headers {
        r.headers_mut().insert(k, v);
    }
    r
}

/// Parse `n` and `last` of a listing.
pub(crate) fn pagination(cfg: &Config, q: &Query) -> Result<(usize, Option<String>)> {
    let n = match q.get("n") {
        None | Some("") => cfg.default_page_size,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| {
                ApiError::new(ErrorCode::PaginationNumberInvalid).detail(format!("n={s:?}"))
            })?
            .min(cfg.max_page_size as u64) as usize,
    };
    let last = match q.get("last") {
        None | Some("") => None,
        Some(l) if l.contains('\0') || l.len() > 1024 => {
            return Err(ApiError::new(ErrorCode::BadRequest).message("invalid last parameter"))
        }
        Some(l) => Some(l.to_string()),
    };
    Ok((n, last))
}
