//! `/v2/` requests parsed into an [`Endpoint`] before any I/O (garage's
//! `router.rs` idea). Names may contain `/`, so paths are read from the right:
//! the operation's fixed segments are at the end.

use crate::error::ApiError;
use berth_core::{Digest, ErrorCode, Reference, RepoName};
use http::Method;
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Base,
    Catalog,
    TagsList {
        name: RepoName,
    },
    GetManifest {
        name: RepoName,
        reference: Reference,
        head: bool,
    },
    PutManifest {
        name: RepoName,
        reference: Reference,
    },
    DeleteManifest {
        name: RepoName,
        reference: Reference,
    },
    GetBlob {
        name: RepoName,
        digest: Digest,
        head: bool,
    },
    DeleteBlob {
        name: RepoName,
        digest: Digest,
    },
    StartUpload {
        name: RepoName,
    },
    GetUpload {
        name: RepoName,
        id: String,
    },
    PatchUpload {
        name: RepoName,
        id: String,
    },
    PutUpload {
        name: RepoName,
        id: String,
    },
    DeleteUpload {
        name: RepoName,
        id: String,
    },
    Referrers {
        name: RepoName,
        digest: Digest,
    },
}

impl Endpoint {
    /// A stable label for metrics and logs.
    pub fn route(&self) -> &'static str {
        match self {
            Endpoint::Base => "v2.base",
            Endpoint::Catalog => "v2.catalog",
            Endpoint::TagsList { .. } => "v2.tags.list",
            Endpoint::GetManifest { head: false, .. } => "v2.manifest.get",
            Endpoint::GetManifest { head: true, .. } => "v2.manifest.head",
            Endpoint::PutManifest { .. } => "v2.manifest.put",
            Endpoint::DeleteManifest { .. } => "v2.manifest.delete",
            Endpoint::GetBlob { head: false, .. } => "v2.blob.get",
            Endpoint::GetBlob { head: true, .. } => "v2.blob.head",
            Endpoint::DeleteBlob { .. } => "v2.blob.delete",
            Endpoint::StartUpload { .. } => "v2.upload.start",
            Endpoint::GetUpload { .. } => "v2.upload.get",
            Endpoint::PatchUpload { .. } => "v2.upload.patch",
            Endpoint::PutUpload { .. } => "v2.upload.put",
            Endpoint::DeleteUpload { .. } => "v2.upload.delete",
            Endpoint::Referrers { .. } => "v2.referrers",
        }
    }

    /// The repository the endpoint acts on, if any (for scope checks).
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::TagsList { name }
            | Endpoint::GetManifest { name, .. }
            | Endpoint::PutManifest { name, .. }
            | Endpoint::DeleteManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::DeleteBlob { name, .. }
            | Endpoint::StartUpload { name }
            | Endpoint::GetUpload { name, .. }
            | Endpoint::PatchUpload { name, .. }
            | Endpoint::PutUpload { name, .. }
            | Endpoint::DeleteUpload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }
}

fn name(segs: &[String]) -> Result<RepoName, ApiError> {
    let joined = segs.join("/");
    RepoName::parse(&joined)
        .map_err(|e| ApiError::new(ErrorCode::NameInvalid).detail(e.to_string()))
}

/// Parse a digest from a path or query parameter; a bad one is `DIGEST_INVALID`.
pub(crate) fn digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::new(ErrorCode::DigestInvalid).detail(e.to_string()))
}

/// A manifest reference. A string that is no valid tag names no manifest
/// that could exist: reading or deleting it is `MANIFEST_UNKNOWN` (404, as
/// the spec's conformance suite and the reference registry expect), pushing
/// it is `TAG_INVALID` (400).
fn reference(s: &str, method: &Method) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        berth_core::NameError::BadDigest(_) => {
            ApiError::new(ErrorCode::DigestInvalid).detail(e.to_string())
        }
        _ if *method == Method::PUT => ApiError::new(ErrorCode::TagInvalid)
            .message("invalid tag")
            .detail(e.to_string()),
        _ => ApiError::new(ErrorCode::ManifestUnknown).detail(e.to_string()),
    })
}

fn not_allowed(m: &Method) -> ApiError {
    ApiError::new(ErrorCode::Unsupported).detail(format!("method {m} is not allowed here"))
}

/// Parse a request under `/v2`. `path` is the raw (still percent-encoded)
/// path. Errors are ready-to-serve API errors.
pub fn parse(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    let rest = path
        .strip_prefix("/v2")
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    if rest.is_empty() || rest == "/" {
        return match *method {
            Method::GET | Method::HEAD => Ok(Endpoint::Base),
            _ => Err(not_allowed(method)),
        };
    }
    let rest = rest
        .strip_prefix('/')
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let n = segs.len();
    let is_get = matches!(*method, Method::GET | Method::HEAD);
    let head = *method == Method::HEAD;

    if n == 1 && segs[0] == "_catalog" {
        return if is_get {
            Ok(Endpoint::Catalog)
        } else {
            Err(not_allowed(method))
        };
    }
    // <name>/tags/list
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        let name = name(&segs[..n - 2])?;
        return if is_get {
            Ok(Endpoint::TagsList { name })
        } else {
            Err(not_allowed(method))
        };
    }
    // <name>/blobs/uploads/ and <name>/blobs/uploads/<id>
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let name = name(&segs[..n - 3])?;
        let id = segs[n - 1].clone();
        if id.is_empty() {
            return if *method == Method::POST {
                Ok(Endpoint::StartUpload { name })
            } else {
                Err(not_allowed(method))
            };
        }
        return match *method {
            Method::GET | Method::HEAD => Ok(Endpoint::GetUpload { name, id }),
            Method::PATCH => Ok(Endpoint::PatchUpload { name, id }),
            Method::PUT => Ok(Endpoint::PutUpload { name, id }),
            Method::DELETE => Ok(Endpoint::DeleteUpload { name, id }),
            _ => Err(not_allowed(method)),
        };
    }
    // <name>/blobs/uploads (no trailing slash) for POST
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" && *method == Method::POST {
        return Ok(Endpoint::StartUpload {
            name: name(&segs[..n - 2])?,
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        let name = name(&segs[..n - 2])?;
        let digest = digest(&segs[n - 1])?;
        return match *method {
            Method::GET | Method::HEAD => Ok(Endpoint::GetBlob { name, digest, head }),
            Method::DELETE => Ok(Endpoint::DeleteBlob { name, digest }),
            _ => Err(not_allowed(method)),
        };
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        let name = name(&segs[..n - 2])?;
        let reference = reference(&segs[n - 1], method)?;
        return match *method {
            Method::GET | Method::HEAD => Ok(Endpoint::GetManifest {
                name,
                reference,
                head,
            }),
            Method::PUT => Ok(Endpoint::PutManifest { name, reference }),
            Method::DELETE => Ok(Endpoint::DeleteManifest { name, reference }),
            _ => Err(not_allowed(method)),
        };
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        let name = name(&segs[..n - 2])?;
        let digest = digest(&segs[n - 1])?;
        return if is_get {
            Ok(Endpoint::Referrers { name, digest })
        } else {
            Err(not_allowed(method))
        };
    }
    Err(ApiError::new(ErrorCode::NotFound).detail(format!("no /v2/ route for {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn code(r: Result<Endpoint, ApiError>) -> &'static str {
        r.unwrap_err().code.as_str()
    }

    #[test]
    fn routes() {
        assert_eq!(parse(&Method::GET, "/v2/").unwrap(), Endpoint::Base);
        assert_eq!(parse(&Method::GET, "/v2").unwrap(), Endpoint::Base);
        assert_eq!(
            parse(&Method::GET, "/v2/_catalog").unwrap(),
            Endpoint::Catalog
        );
        assert_eq!(
            parse(&Method::GET, "/v2/a/b/tags/list").unwrap().route(),
            "v2.tags.list"
        );
        assert!(matches!(
            parse(&Method::POST, "/v2/a/b/blobs/uploads/").unwrap(),
            Endpoint::StartUpload { name } if name.as_str() == "a/b"
        ));
        assert!(matches!(
            parse(&Method::POST, "/v2/a/blobs/uploads").unwrap(),
            Endpoint::StartUpload { .. }
        ));
        assert!(matches!(
            parse(&Method::PATCH, "/v2/a/blobs/uploads/abc").unwrap(),
            Endpoint::PatchUpload { id, .. } if id == "abc"
        ));
        // a repository called ".../blobs"
        assert!(matches!(
            parse(&Method::GET, &format!("/v2/x/blobs/blobs/{D}")).unwrap(),
            Endpoint::GetBlob { name, .. } if name.as_str() == "x/blobs"
        ));
        assert!(matches!(
            parse(
                &Method::HEAD,
                &format!("/v2/x/manifests/{}", D.replace(':', "%3A"))
            )
            .unwrap(),
            Endpoint::GetManifest {
                head: true,
                reference: Reference::Digest(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&Method::GET, &format!("/v2/x/referrers/{D}")).unwrap(),
            Endpoint::Referrers { .. }
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(code(parse(&Method::GET, "/v2/A/tags/list")), "NAME_INVALID");
        assert_eq!(
            code(parse(
                &Method::GET,
                &format!("/v2/{}/tags/list", "a".repeat(256))
            )),
            "NAME_INVALID"
        );
        assert_eq!(
            code(parse(&Method::GET, "/v2/a/blobs/sha256:xyz")),
            "DIGEST_INVALID"
        );
        assert_eq!(
            code(parse(&Method::GET, "/v2/a/manifests/sha256:xyz")),
            "DIGEST_INVALID"
        );
        // no manifest can have an invalid tag: unknown to read, invalid to push
        for m in [Method::GET, Method::HEAD, Method::DELETE] {
            assert_eq!(
                code(parse(&m, "/v2/a/manifests/.INVALID_MANIFEST_NAME")),
                "MANIFEST_UNKNOWN"
            );
        }
        assert_eq!(
            code(parse(&Method::PUT, "/v2/a/manifests/-bad")),
            "TAG_INVALID"
        );
        assert_eq!(
            code(parse(&Method::POST, "/v2/a/manifests/x")),
            "UNSUPPORTED"
        );
        assert_eq!(code(parse(&Method::GET, "/v2/a/nothing")), "NOT_FOUND");
        assert_eq!(code(parse(&Method::PUT, "/v2/")), "UNSUPPORTED");
        assert_eq!(
            code(parse(&Method::GET, "/v2/a//tags/list")),
            "NAME_INVALID"
        );
    }
}
