//! The web console, served at `/console/` from the same port as the APIs.
//!
//! Three files (`assets/`), embedded in the binary with `include_bytes!`:
//! no build step, nothing fetched at run time. The page is a framework-free
//! front end that calls only the public management API (`/api/v1/`) with the
//! token the operator signs in with, so it can do nothing that token cannot.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles
//! from this origin only, no inline code, no framing), `nosniff`, no
//! referrer; assets are revalidated on each load (`no-cache` with a strong
//! `ETag` of their content), so a new binary's console is seen at once and an
//! unchanged one costs a 304.

use berth_http::{ApiError, ApiHandler, Body};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: String,
}

const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
];

/// The console's handler on the server layer.
pub struct Console {
    assets: Vec<Asset>,
}

impl Default for Console {
    fn default() -> Console {
        Console::new()
    }
}

impl Console {
    pub fn new() -> Console {
        let assets = FILES
            .iter()
            .map(|(name, content_type, body)| Asset {
                name,
                content_type,
                body,
                etag: format!("\"{}\"", &hex::encode(Sha256::digest(body))[..32]),
            })
            .collect();
        Console { assets }
    }
}

/// What a request asks for.
#[derive(Debug)]
pub enum Endpoint {
    /// `/console`: to `/console/`, where relative asset paths resolve.
    Redirect,
    /// An asset (the index for `/console/`).
    Asset(usize),
}

/// A console error: a short HTML page (people, not programs, read it).
#[derive(Debug)]
pub struct ConsoleError(StatusCode, &'static str);

impl ApiError for ConsoleError {
    fn status(&self) -> StatusCode {
        self.0
    }

    fn bad_request(_: String) -> ConsoleError {
        ConsoleError(StatusCode::BAD_REQUEST, "Bad request.")
    }

    fn render(self, head: bool) -> Response<Body> {
        let body = format!(
            "<!doctype html><meta charset=\"utf-8\"><title>Berth console</title>\
             <p>{}</p><p><a href=\"/console/\">Open the console</a></p>\n",
            self.1
        );
        let mut r =
            berth_http::error_response(self.0, body.into_bytes(), "text/html; charset=utf-8", head);
        if self.0 == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

impl ApiHandler for Console {
    type Endpoint = Endpoint;
    type Error = ConsoleError;
    const UNROUTED: &'static str = "console.unrouted";

    fn parse(&self, parts: &Parts) -> Result<Endpoint, ConsoleError> {
        let rest = parts.uri.path().strip_prefix(PREFIX).unwrap_or("");
        let ep = match rest {
            "" => Endpoint::Redirect,
            "/" => Endpoint::Asset(0),
            _ => rest
                .strip_prefix('/')
                .and_then(|n| self.assets.iter().position(|a| a.name == n))
                .map(Endpoint::Asset)
                .ok_or(ConsoleError(
                    StatusCode::NOT_FOUND,
                    "No such page in the console.",
                ))?,
        };
        match parts.method {
            Method::GET | Method::HEAD => Ok(ep),
            _ => Err(ConsoleError(
                StatusCode::METHOD_NOT_ALLOWED,
                "The console's pages are only read.",
            )),
        }
    }

    fn route(ep: &Endpoint) -> &'static str {
        match ep {
            Endpoint::Redirect => "console.redirect",
            Endpoint::Asset(_) => "console.asset",
        }
    }

    async fn handle(
        &self,
        ep: Endpoint,
        parts: Parts,
        _: Body,
    ) -> Result<Response<Body>, ConsoleError> {
        let a = match ep {
            Endpoint::Redirect => {
                return Ok(berth_http::status_response(
                    StatusCode::PERMANENT_REDIRECT,
                    &[("location", format!("{PREFIX}/"))],
                ))
            }
            Endpoint::Asset(i) => &self.assets[i],
        };
        let fresh = parts
            .headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t == "*" || t.strip_prefix("W/").unwrap_or(t) == a.etag
            });
        let mut r = if fresh {
            berth_http::status_response(StatusCode::NOT_MODIFIED, &[])
        } else if parts.method == Method::HEAD {
            let mut r = berth_http::status_response(
                StatusCode::OK,
                &[("content-type", a.content_type.to_string())],
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(a.body.len()));
            r
        } else {
            berth_http::body_response(StatusCode::OK, a.body.to_vec(), a.content_type)
        };
        if fresh {
            r.headers_mut().remove(header::CONTENT_LENGTH);
        }
        let h = r.headers_mut();
        h.insert(header::ETAG, berth_http::hv(&a.etag));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(r)
    }

    fn finish(&self, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use http_body_util::BodyExt;

    async fn get(c: &Console, method: Method, path: &str, inm: Option<&str>) -> Response<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "x");
        if let Some(t) = inm {
            b = b.header("if-none-match", t);
        }
        berth_http::dispatch(c, b.body(berth_http::empty()).unwrap())
            .await
            .1
    }

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_assets_with_types_policy_and_revalidation() {
        let c = Console::new();
        let r = get(&c, Method::GET, "/console", None).await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()["location"], "/console/");

        for (path, ty, needle) in [
            (
                "/console/",
                "text/html; charset=utf-8",
                "<script type=\"module\" src=\"console.js\">",
            ),
            (
                "/console/console.js",
                "text/javascript; charset=utf-8",
                "/api/v1",
            ),
            ("/console/console.css", "text/css; charset=utf-8", ":root"),
        ] {
            let r = get(&c, Method::GET, path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()["content-type"], ty);
            assert_eq!(r.headers()["content-security-policy"], CSP);
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            assert_eq!(r.headers()["cache-control"], "no-cache");
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            let len: usize = r.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let body = text(r).await;
            assert_eq!(body.len(), len);
            assert!(body.contains(needle), "{path}");

            let r = get(&c, Method::HEAD, path, None).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["content-length"], len.to_string().as_str());
            assert!(text(r).await.is_empty());

            let r = get(&c, Method::GET, path, Some(&format!("\"other\", {etag}"))).await;
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
            assert_eq!(r.headers()["etag"], etag.as_str());
            assert!(text(r).await.is_empty());
            let r = get(&c, Method::GET, path, Some("\"stale\"")).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused_with_the_policy() {
        let c = Console::new();
        for p in [
            "/console/nope.js",
            "/console/../api/v1/",
            "/console/index.html/x",
            "/consolex",
        ] {
            let r = get(&c, Method::GET, p, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{p}");
            assert_eq!(r.headers()["content-security-policy"], CSP);
        }
        let r = get(&c, Method::POST, "/console/", None).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }

    /// No inline script or style anywhere: the policy would block it.
    #[test]
    fn the_page_needs_nothing_inline() {
        let html = std::str::from_utf8(FILES[0].2).unwrap();
        assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("<style"));
        let js = std::str::from_utf8(FILES[1].2).unwrap();
        assert!(!js.contains("innerHTML") && !js.contains("eval("));
    }
}
