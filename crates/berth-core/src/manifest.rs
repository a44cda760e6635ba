//! Manifest parsing and validation for the OCI image manifest and index, the
//! Docker schema2 manifest and manifest list, and OCI 1.1 artifacts.
//!
//! Validation here is structural (JSON shape, schemaVersion, media types,
//! descriptors). Whether the referenced blobs and manifests exist is the
//! caller's check, since it needs the metadata store.

use crate::digest::Digest;
use crate::media_types as mt;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema2), possibly an artifact.
    Image,
    /// An index (OCI image index or Docker manifest list).
    Index,
}

/// A content descriptor, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
    pub platform: Option<Value>,
    pub urls: Vec<String>,
}

/// A parsed, structurally valid manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub kind: ManifestKind,
    /// The media type the manifest is stored and served with.
    pub media_type: String,
    /// `artifactType`, or for an image manifest without one, the config's
    /// media type (what the referrers API reports).
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// Index children.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest must be a JSON object")]
    NotAnObject,
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("Docker schema1 manifests are not supported")]
    Schema1,
    #[error("mediaType {body:?} in the manifest does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("invalid descriptor in {field}: {reason}")]
    Descriptor { field: String, reason: String },
    #[error("image manifest needs a config descriptor")]
    MissingConfig,
    #[error("index needs a manifests array")]
    MissingManifests,
    #[error("field {0} has the wrong type")]
    FieldType(&'static str),
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<serde_json::Number>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    annotations: Option<Map<String, Value>>,
    platform: Option<Value>,
    urls: Option<Vec<String>>,
}

fn descriptor(field: &str, v: &Value) -> Result<Descriptor, ManifestError> {
    let err = |reason: &str| ManifestError::Descriptor {
        field: field.to_string(),
        reason: reason.to_string(),
    };
    let raw: RawDescriptor = serde_json::from_value(v.clone()).map_err(|e| err(&e.to_string()))?;
    let digest_s = raw.digest.ok_or_else(|| err("missing digest"))?;
    let digest = Digest::parse(&digest_s).map_err(|e| err(&format!("digest {digest_s:?}: {e}")))?;
    let size = raw.size.ok_or_else(|| err("missing size"))?;
    let size = size
        .as_u64()
        .ok_or_else(|| err("size must be a non-negative integer"))?;
    if size > i64::MAX as u64 {
        return Err(err("size too large"));
    }
    let media_type = raw.media_type.ok_or_else(|| err("missing mediaType"))?;
    if !valid_media_type(&media_type) {
        return Err(err(&format!(
            "mediaType {media_type:?} is not a valid media type"
        )));
    }
    if let Some(at) = &raw.artifact_type {
        if !valid_media_type(at) {
            return Err(err(&format!(
                "artifactType {at:?} is not a valid media type"
            )));
        }
    }
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type: raw.artifact_type,
        annotations: raw.annotations,
        platform: raw.platform,
        urls: raw.urls.unwrap_or_default(),
    })
}

/// `type/subtype` with RFC 6838 restricted-name characters (and `+`), no
/// parameters.
pub fn valid_media_type(s: &str) -> bool {
    let Some((t, st)) = s.split_once('/') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    ok(t) && ok(st)
}

fn descriptors(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<Descriptor>>, ManifestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| descriptor(&format!("{field}[{i}]"), v))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ManifestError::FieldType(field)),
    }
}

fn opt_str(obj: &Map<String, Value>, field: &'static str) -> Result<Option<String>, ManifestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ManifestError::FieldType(field)),
    }
}

/// Strip parameters (`; charset=…`) and whitespace from a Content-Type.
pub fn bare_content_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

impl Manifest {
    /// Parse and validate `body`, pushed with `content_type` (the request's
    /// `Content-Type`, if any).
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let v = crate::json::unique_keys(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        let obj = v.as_object().ok_or(ManifestError::NotAnObject)?;

        let header = content_type.map(bare_content_type).filter(|h| {
            !h.is_empty() && *h != "application/json" && *h != "application/octet-stream"
        });
        let body_mt = opt_str(obj, "mediaType")?;

        if matches!(
            body_mt.as_deref(),
            Some(mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED)
        ) || matches!(header, Some(mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED))
        {
            return Err(ManifestError::Schema1);
        }
        match obj.get("schemaVersion") {
            Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
            Some(Value::Number(n)) if n.as_u64() == Some(1) => return Err(ManifestError::Schema1),
            _ => return Err(ManifestError::SchemaVersion),
        }

        if let (Some(b), Some(h)) = (body_mt.as_deref(), header) {
            if b != h {
                return Err(ManifestError::MediaTypeMismatch {
                    body: b.to_string(),
                    header: h.to_string(),
                });
            }
        }
        let media_type = match body_mt.clone().or(header.map(str::to_string)) {
            Some(m) => m,
            // Neither says: infer from the shape, as the OCI image-spec allows.
            None if obj.contains_key("manifests") => mt::OCI_INDEX.to_string(),
            None => mt::OCI_MANIFEST.to_string(),
        };
        let kind = match media_type.as_str() {
            mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => ManifestKind::Image,
            mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => ManifestKind::Index,
            other => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
        };

        let artifact_type = opt_str(obj, "artifactType")?;
        if let Some(at) = &artifact_type {
            if !valid_media_type(at) {
                return Err(ManifestError::Descriptor {
                    field: "artifactType".into(),
                    reason: format!("{at:?} is not a valid media type"),
                });
            }
        }
        let subject = match obj.get("subject") {
            None | Some(Value::Null) => None,
            Some(v) => Some(descriptor("subject", v)?),
        };
        let annotations = match obj.get("annotations") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                if m.values().any(|v| !v.is_string()) {
                    return Err(ManifestError::FieldType("annotations"));
                }
                Some(m.clone())
            }
            Some(_) => return Err(ManifestError::FieldType("annotations")),
        };

        let mut m = Manifest {
            kind: kind.clone(),
            media_type,
            artifact_type: artifact_type.clone(),
            config: None,
            layers: Vec::new(),
            manifests: Vec::new(),
            subject,
            annotations,
        };
        match kind {
            ManifestKind::Image => {
                let config = match obj.get("config") {
                    None | Some(Value::Null) => return Err(ManifestError::MissingConfig),
                    Some(v) => descriptor("config", v)?,
                };
                m.layers = descriptors(obj, "layers")?.unwrap_or_default();
                if m.artifact_type.is_none() {
                    m.artifact_type = Some(config.media_type.clone());
                }
                m.config = Some(config);
            }
            ManifestKind::Index => {
                m.manifests =
                    descriptors(obj, "manifests")?.ok_or(ManifestError::MissingManifests)?;
            }
        }
        Ok(m)
    }

    /// Blobs the repository must hold for this manifest to be accepted:
    /// the config and every layer that is not a foreign layer.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|d| !mt::is_foreign_layer(&d.media_type) || d.urls.is_empty()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":0}}]{extra}}}"#,
            mt::OCI_MANIFEST
        )
    }

    #[test]
    fn parses_image_manifest() {
        let m = Manifest::parse(image("").as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn helm_style_without_media_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{D1}","size":0}},"layers":[]}}"#,
            mt::HELM_CONFIG
        );
        let m = Manifest::parse(body.as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
    }

    #[test]
    fn a_duplicate_key_makes_a_manifest_invalid() {
        // serde_json alone would keep the second mediaType and accept it
        let body = image(r#","annotations":{"a":"1","a":"2"}"#);
        let e = Manifest::parse(body.as_bytes(), Some(mt::OCI_MANIFEST)).unwrap_err();
        assert!(
            matches!(&e, ManifestError::Json(m) if m.contains("duplicate key")),
            "{e}"
        );
        let twice = image("").replacen(
            "{\"schemaVersion\":2,",
            "{\"schemaVersion\":2,\"schemaVersion\":2,",
            1,
        );
        assert!(Manifest::parse(twice.as_bytes(), None).is_err());
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(matches!(
            Manifest::parse(b"{", None),
            Err(ManifestError::Json(_))
        ));
        assert_eq!(
            Manifest::parse(b"[]", None).unwrap_err(),
            ManifestError::NotAnObject
        );
        assert_eq!(
            Manifest::parse(b"{}", None).unwrap_err(),
            ManifestError::SchemaVersion
        );
        assert_eq!(
            Manifest::parse(br#"{"schemaVersion":1}"#, None).unwrap_err(),
            ManifestError::Schema1
        );
        let neg = image("").replacen("\"size\":0", "\"size\":-1", 1);
        assert!(matches!(
            Manifest::parse(neg.as_bytes(), None),
            Err(ManifestError::Descriptor { .. })
        ));
        let subj = image(r#","subject":"garbage""#);
        assert!(matches!(
            Manifest::parse(subj.as_bytes(), None),
            Err(ManifestError::Descriptor { .. })
        ));
        assert!(matches!(
            Manifest::parse(image("").as_bytes(), Some(mt::OCI_INDEX)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let no_config = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#,
            mt::OCI_MANIFEST
        );
        assert_eq!(
            Manifest::parse(no_config.as_bytes(), None).unwrap_err(),
            ManifestError::MissingConfig
        );
    }

    #[test]
    fn subject_and_index() {
        let s = image(&format!(
            r#","subject":{{"mediaType":"{}","digest":"{D1}","size":10}},"artifactType":"application/x.sig""#,
            mt::OCI_MANIFEST
        ));
        let m = Manifest::parse(s.as_bytes(), None).unwrap();
        assert_eq!(m.subject.unwrap().size, 10);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sig"));
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            mt::OCI_INDEX,
            mt::OCI_MANIFEST
        );
        let m = Manifest::parse(idx.as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
    }
}
