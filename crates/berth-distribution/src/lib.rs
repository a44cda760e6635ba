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
pub mod pulls;
pub mod router;
mod token;
mod uploads;

pub use error::ApiError;
pub use router::Endpoint;
pub use token::TokenService;

use berth_core::ErrorCode;
pub(crate) use berth_http::{full, hv, status_response};
use berth_http::{ApiHandler, Body, ClientAddr, SendsFiles};
use berth_meta::{now_millis, Meta};
use berth_storage::BlobStore;
use bytes::Bytes;
use futures::TryStreamExt;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

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
    /// With no external URL configured: the realm is `<scheme>://<Host>/token`
    /// on the host each request reached (`realm` when it has none).
    pub realm_scheme_from_host: Option<String>,
    /// Count manifest GETs (pull statistics).
    pub count_pulls: bool,
    /// Most upload sessions open per principal and in total.
    pub upload_limits: berth_meta::UploadLimits,
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
            realm_scheme_from_host: None,
            count_pulls: true,
            upload_limits: berth_meta::UploadLimits {
                per_principal: Some(1000),
                total: Some(10_000),
            },
        }
    }
}

/// Hooks the server gives the API to report into its metrics.
#[derive(Clone, Default)]
pub struct Gauges {
    pub open_uploads: Option<prometheus::IntGauge>,
}

/// The `/v2/` API. Cheap to clone. Served through [`berth_http::dispatch`]
/// (it is an [`ApiHandler`]); [`Distribution::token_service`] is its
/// sibling for `/token`.
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
    pub pulls: pulls::PullStats,
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
                pulls: pulls::PullStats::default(),
            }),
        }
    }

    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// Write the pulls counted since the last flush (a server job's
    /// work, about once a second; blocking). Returns how many artifacts
    /// had pulls.
    pub async fn flush_pulls(&self) -> std::result::Result<usize, berth_meta::MetaError> {
        let inner = self.inner.clone();
        self.inner.meta.run(move |m| inner.pulls.flush(m)).await
    }

    /// The docker token service (`GET`/`POST /token`) over the same auth.
    pub fn token_service(&self) -> token::TokenService {
        token::TokenService {
            inner: self.inner.clone(),
        }
    }

    /// How long an idle upload session lives (for the reaper, `berth-gc`).
    pub fn upload_max_age(&self) -> std::time::Duration {
        self.inner.cfg.upload_max_age
    }

    /// `n` sessions were removed behind this front (the reaper): the
    /// open-sessions gauge follows.
    pub fn uploads_removed(&self, n: usize) {
        if let Some(g) = &self.inner.gauges.open_uploads {
            g.add(-(n as i64));
        }
    }

    /// Count open sessions into the gauge (at start-up).
    pub async fn count_uploads(&self) -> std::result::Result<usize, berth_meta::MetaError> {
        uploads::count(&self.inner).await
    }
}

impl ApiHandler for Distribution {
    type Endpoint = Endpoint;
    type Error = ApiError;
    const UNROUTED: &'static str = "v2.unrouted";

    fn parse(&self, parts: &Parts) -> Result<Endpoint> {
        router::parse(&parts.method, parts.uri.path())
    }

    fn route(ep: &Endpoint) -> &'static str {
        ep.route()
    }

    /// Authenticate, authorise (both need the endpoint: which repository,
    /// which action), then handle.
    async fn handle(&self, ep: Endpoint, parts: Parts, body: Body) -> Result<Response<Body>> {
        let client = parts
            .extensions
            .get::<ClientAddr>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let caller = self
            .inner
            .authenticate(&parts.headers, &client, Inner::scope_for(&ep))?;
        let audit = audit_target(&ep);
        let action = ep.route();
        let out = match self.inner.authorize(&ep, &caller, &parts.headers).await {
            Ok(()) => self.inner.dispatch(ep, &parts, body, &caller).await,
            Err(e) => Err(e),
        };
        if let Some((target, registry)) = audit {
            let rec = berth_meta::AuditRecord {
                at_ms: now_millis(),
                principal: caller.principal.subject(),
                client,
                action: action.to_string(),
                target,
                registry: Some(registry),
                status: match &out {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => berth_http::ApiError::status(e).as_u16(),
                },
            };
            self.inner.meta.audit(rec).await;
        }
        out
    }

    fn finish(&self, resp: &mut Response<Body>) {
        resp.headers_mut()
            .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    }
}

impl Inner {
    async fn dispatch(
        &self,
        ep: Endpoint,
        parts: &Parts,
        body: Body,
        caller: &access::Caller,
    ) -> Result<Response<Body>> {
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
                let by = caller.principal.subject();
                manifests::put_manifest(self, &name, &reference, &q, h, body_stream(body), by).await
            }
            Endpoint::DeleteManifest { name, reference } => {
                manifests::delete_manifest(self, &name, &reference, caller.principal.subject())
                    .await
            }
            Endpoint::Referrers { name, digest } => {
                manifests::referrers(self, &name, &digest, &q).await
            }
            Endpoint::GetBlob { name, digest, head } => {
                let sends_files = parts.extensions.get::<SendsFiles>().is_some();
                blobs::get_blob(self, &name, &digest, h, head, sends_files).await
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

/// What a push or delete acts on (`repo:tag`, `repo@digest`) and its
/// registry, for the audit log; `None` for requests that are not audited.
fn audit_target(ep: &Endpoint) -> Option<(String, String)> {
    let (name, what) = match ep {
        Endpoint::PutManifest { name, reference }
        | Endpoint::DeleteManifest { name, reference } => {
            let sep = if matches!(reference, berth_core::Reference::Tag(_)) {
                ":"
            } else {
                "@"
            };
            (name, format!("{sep}{reference}"))
        }
        Endpoint::DeleteBlob { name, digest } => (name, format!("@{digest}")),
        _ => return None,
    };
    Some((format!("{name}{what}"), name.first_component().to_string()))
}

/// The request body as a stream of data chunks.
pub(crate) fn body_stream(
    body: Body,
) -> impl futures::Stream<Item = std::result::Result<Bytes, String>> + Send + 'static {
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

/// A response with a body of the given content type.
pub(crate) fn json_response(
    status: StatusCode,
    body: Vec<u8>,
    content_type: &str,
) -> Response<Body> {
    berth_http::body_response(status, body, content_type)
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
