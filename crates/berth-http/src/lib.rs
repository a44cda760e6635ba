//! The server layer every Berth HTTP API plugs into (garage's `ApiHandler`
//! shape): an API parses a request into its own `Endpoint` before any I/O,
//! handles it, and owns one error type that knows how it is rendered.
//! [`dispatch`] is the one path from request to response for every API;
//! the server wraps it with request ids, spans and metrics, and routes by
//! path prefix (`berth-server/src/http.rs`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{request::Parts, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use std::future::Future;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request and response bodies: full buffers or streams (uploads, blob
/// reads), boxed once at the edge.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Box any body into a [`Body`].
pub fn boxed<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// The client's address, set by the server as a request extension (for
/// rate limits and logs).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// Set by the server on requests whose connection sends runs of mapped
/// blob files with `sendfile` (plain HTTP/1.1): a large blob read may hand
/// out slices of a mapping instead of copies.
#[derive(Debug, Clone, Copy)]
pub struct SendsFiles;

/// An API's error: its status, and its rendering in the API's own format
/// (OCI error JSON on `/v2/`, problem JSON on `/api/v1/`).
pub trait ApiError: Send {
    fn status(&self) -> StatusCode;
    /// The response (for `HEAD`: the same head, no body).
    fn render(self, head: bool) -> Response<Body>;
    /// A 400 for a request refused before its API looks at it
    /// ([`malformed`]).
    fn bad_request(detail: String) -> Self
    where
        Self: Sized;
}

/// One HTTP API.
pub trait ApiHandler: Send + Sync + 'static {
    /// What a request asks for, known before any I/O.
    type Endpoint: Send;
    type Error: ApiError;

    /// The metrics label of requests that did not parse.
    const UNROUTED: &'static str;

    /// Parse the request head into an endpoint.
    fn parse(&self, parts: &Parts) -> Result<Self::Endpoint, Self::Error>;

    /// The metrics label of an endpoint.
    fn route(ep: &Self::Endpoint) -> &'static str;

    /// Do the work.
    fn handle(
        &self,
        ep: Self::Endpoint,
        parts: Parts,
        body: Body,
    ) -> impl Future<Output = Result<Response<Body>, Self::Error>> + Send;

    /// Headers every response of the API carries (success or error).
    fn finish(&self, _resp: &mut Response<Body>) {}
}

/// Parse, handle, render: every request of every API takes this path.
/// Returns the route label and the response; never fails.
pub async fn dispatch<A: ApiHandler>(
    api: &A,
    req: Request<Body>,
) -> (&'static str, Response<Body>) {
    let head = req.method() == Method::HEAD;
    let (parts, body) = req.into_parts();
    let parsed = match malformed(&parts) {
        Some(why) => Err(A::Error::bad_request(why)),
        None => api.parse(&parts),
    };
    let (route, res) = match parsed {
        Ok(ep) => {
            let route = A::route(&ep);
            (route, api.handle(ep, parts, body).await)
        }
        Err(e) => (A::UNROUTED, Err(e)),
    };
    let mut resp = match res {
        Ok(r) => r,
        Err(e) => e.render(head),
    };
    api.finish(&mut resp);
    (route, resp)
}

/// What makes a request unservable whatever its path (RFC 9112, 3.2): an
/// HTTP/1.1 request needs exactly one `Host` header, `host[:port]` or empty.
/// (HTTP/1.0 may omit it; HTTP/2 carries `:authority` instead.) Framing
/// conflicts — two `Content-Length`s that differ, a `Transfer-Encoding` not
/// ending in `chunked` — are refused by hyper before a request exists; with
/// both `Transfer-Encoding: chunked` and `Content-Length`, hyper reads the
/// body chunked and closes the connection after the answer, as RFC 9112 6.3
/// allows.
pub fn malformed(parts: &Parts) -> Option<String> {
    if parts.version != http::Version::HTTP_11 {
        return None;
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Some("an HTTP/1.1 request needs a Host header (RFC 9112, 3.2)".into()),
        (Some(_), Some(_)) => Some("more than one Host header (RFC 9112, 3.2)".into()),
        (Some(h), None) if !valid_host(h.as_bytes()) => {
            Some("the Host header is not host[:port] (RFC 9112, 3.2)".into())
        }
        _ => None,
    }
}

/// `uri-host [":" port]` of RFC 3986, or empty (a request target with no
/// authority).
fn valid_host(h: &[u8]) -> bool {
    let (host, port) = if h.first() == Some(&b'[') {
        let Some(end) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &h[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        (&h[..=end], &h[end + 1..])
    } else {
        match h.iter().rposition(|&b| b == b':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, &h[h.len()..]),
        }
    };
    let reg_name = host.first() == Some(&b'[')
        || host.iter().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        });
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    reg_name && port_ok && (!host.is_empty() || port.is_empty())
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A header value from text we built (always visible ASCII; anything else
/// becomes `invalid` rather than a panic).
pub fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A response with a body of the given type and its length.
pub fn body_response(status: StatusCode, body: Vec<u8>, content_type: &str) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    body_response(
        status,
        serde_json::to_vec(v).expect("json values serialise"),
        "application/json",
    )
}

/// An empty response with a status and headers.
pub fn status_response(status: StatusCode, headers: &[(&str, String)]) -> Response<Body> {
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

/// An error response: `body` for GET and the rest, only its length for HEAD.
pub fn error_response(
    status: StatusCode,
    body: Vec<u8>,
    content_type: &str,
    head: bool,
) -> Response<Body> {
    if head {
        let mut r = status_response(status, &[("content-type", content_type.to_string())]);
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        r
    } else {
        body_response(status, body, content_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    struct Bad(StatusCode);
    impl ApiError for Bad {
        fn status(&self) -> StatusCode {
            self.0
        }
        fn render(self, head: bool) -> Response<Body> {
            error_response(self.0, b"{\"bad\":1}".to_vec(), "application/json", head)
        }
        fn bad_request(_: String) -> Bad {
            Bad(StatusCode::BAD_REQUEST)
        }
    }
    impl ApiHandler for Echo {
        type Endpoint = &'static str;
        type Error = Bad;
        const UNROUTED: &'static str = "echo.unrouted";
        fn parse(&self, parts: &Parts) -> Result<&'static str, Bad> {
            match parts.uri.path() {
                "/ok" => Ok("echo.ok"),
                "/fail" => Ok("echo.fail"),
                _ => Err(Bad(StatusCode::NOT_FOUND)),
            }
        }
        fn route(ep: &&'static str) -> &'static str {
            ep
        }
        async fn handle(
            &self,
            ep: &'static str,
            _parts: Parts,
            _body: Body,
        ) -> Result<Response<Body>, Bad> {
            match ep {
                "echo.ok" => Ok(status_response(StatusCode::NO_CONTENT, &[])),
                _ => Err(Bad(StatusCode::CONFLICT)),
            }
        }
        fn finish(&self, resp: &mut Response<Body>) {
            resp.headers_mut().insert("x-api", hv("echo"));
        }
    }

    fn req(m: Method, p: &str) -> Request<Body> {
        Request::builder()
            .method(m)
            .uri(p)
            .header("host", "registry.example:5000")
            .body(empty())
            .unwrap()
    }

    #[tokio::test]
    async fn http11_needs_exactly_one_valid_host() {
        let with = |hosts: &[&str], v: http::Version| {
            let mut b = Request::builder().uri("/ok").version(v);
            for h in hosts {
                b = b.header("host", *h);
            }
            b.body(empty()).unwrap()
        };
        use http::Version as V;
        for (hosts, v, status) in [
            (&[][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["a", "a"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["a", "b"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["a b"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["a/b"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["u@a"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["a:80x"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&["[::1"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&[":80"][..], V::HTTP_11, StatusCode::BAD_REQUEST),
            (&[""][..], V::HTTP_11, StatusCode::NO_CONTENT),
            (&["127.0.0.1:5000"][..], V::HTTP_11, StatusCode::NO_CONTENT),
            (&["[::1]:5000"][..], V::HTTP_11, StatusCode::NO_CONTENT),
            (
                &["registry.example"][..],
                V::HTTP_11,
                StatusCode::NO_CONTENT,
            ),
            (&["a:"][..], V::HTTP_11, StatusCode::NO_CONTENT),
            (&[][..], V::HTTP_10, StatusCode::NO_CONTENT),
            (&[][..], V::HTTP_2, StatusCode::NO_CONTENT),
        ] {
            let (route, r) = dispatch(&Echo, with(hosts, v)).await;
            assert_eq!(r.status(), status, "{hosts:?} {v:?}");
            if status == StatusCode::BAD_REQUEST {
                assert_eq!(route, "echo.unrouted", "refused before routing");
            }
        }
    }

    #[tokio::test]
    async fn parse_handle_render_finish() {
        let (route, r) = dispatch(&Echo, req(Method::GET, "/ok")).await;
        assert_eq!((route, r.status()), ("echo.ok", StatusCode::NO_CONTENT));
        assert_eq!(r.headers()["x-api"], "echo");
        let (route, r) = dispatch(&Echo, req(Method::GET, "/fail")).await;
        assert_eq!((route, r.status()), ("echo.fail", StatusCode::CONFLICT));
        assert_eq!(r.headers()["x-api"], "echo", "errors are finished too");
        let (route, r) = dispatch(&Echo, req(Method::HEAD, "/nope")).await;
        assert_eq!(
            (route, r.status()),
            ("echo.unrouted", StatusCode::NOT_FOUND)
        );
        assert_eq!(r.headers()["content-length"], "9");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "HEAD has no body");
    }
}
