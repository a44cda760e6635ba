//! Manifests and indexes as pushed, with any Content-Type: parsing never
//! panics; what parses has only valid descriptors, and a body with a
//! repeated key never parses.
#![no_main]
use berth_core::manifest::bare_content_type;
use berth_core::media_types as mt;
use berth_core::{Manifest, ManifestKind};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 8] = [
    None,
    Some(mt::OCI_MANIFEST),
    Some(mt::OCI_INDEX),
    Some(mt::DOCKER_MANIFEST),
    Some(mt::DOCKER_MANIFEST_LIST),
    Some("application/json"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|input: (u8, &[u8])| {
    let (which, body) = input;
    let ct = TYPES[usize::from(which) % TYPES.len()];
    let Ok(m) = Manifest::parse(body, ct) else {
        return;
    };
    // the same bytes read by a strict parser: no key repeats anywhere
    assert!(berth_core::json::unique_keys(body).is_ok());
    if let Some(h) = ct.map(bare_content_type) {
        if h != "application/json" && h != "application/octet-stream" && !h.is_empty() {
            assert_eq!(m.media_type, h);
        }
    }
    match m.kind {
        ManifestKind::Image => assert!(m.manifests.is_empty()),
        ManifestKind::Index => assert!(m.config.is_none() && m.layers.is_empty()),
    }
    for d in m.required_blobs() {
        assert_eq!(d.digest.hex().len(), d.digest.algorithm().hex_len());
    }
});
