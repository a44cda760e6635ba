//! The OCI distribution error codes, registered once with their HTTP status
//! and default message (distribution's `errcode/register.go` idea).

use serde::{Serialize, Serializer};

/// Serialised as its wire name ([`ErrorCode::as_str`]), the one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not in the spec's table (distribution's): a bad `n` on a listing.
    PaginationNumberInvalid,
    /// Not in the spec's table: no such route.
    NotFound,
    /// Not in the spec's table: a range the blob cannot satisfy.
    RangeInvalid,
    /// Not in the spec's table: the request could not be parsed.
    BadRequest,
    /// Not in the spec's table: payload larger than the configured limit.
    PayloadTooLarge,
    /// Not in the spec's table: a failure of ours, never the client's.
    Internal,
    /// Not in the spec's table: the server is shutting down or overloaded.
    Unavailable,
    /// The registry's storage is full (507): not the client's fault, not
    /// retried at once.
    InsufficientStorage,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::PayloadTooLarge => "SIZE_INVALID",
            ErrorCode::Internal => "UNKNOWN",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::InsufficientStorage => "INSUFFICIENT_STORAGE",
        }
    }

    /// The HTTP status the code is served with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown => 404,
            ErrorCode::BlobUploadInvalid => 400,
            ErrorCode::BlobUploadUnknown => 404,
            ErrorCode::DigestInvalid => 400,
            ErrorCode::ManifestBlobUnknown => 400,
            ErrorCode::ManifestInvalid => 400,
            ErrorCode::ManifestUnknown => 404,
            ErrorCode::NameInvalid => 400,
            ErrorCode::NameUnknown => 404,
            ErrorCode::SizeInvalid => 400,
            ErrorCode::TagInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::PaginationNumberInvalid => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::BadRequest => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::InsufficientStorage => 507,
        }
    }

    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown to registry",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::TagInvalid => "manifest tag did not match URI",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::PaginationNumberInvalid => "invalid number of results requested",
            ErrorCode::NotFound => "no such route",
            ErrorCode::RangeInvalid => "requested range not satisfiable",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::PayloadTooLarge => "payload too large",
            ErrorCode::Internal => "internal server error",
            ErrorCode::Unavailable => "service unavailable",
            ErrorCode::InsufficientStorage => "the registry's storage is full",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn serialises_as_its_wire_name() {
        for c in [
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
            ErrorCode::TooManyRequests,
            ErrorCode::TagInvalid,
        ] {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
    }
}
