//! Media types Berth recognises.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";

/// Layer media types whose blobs may live elsewhere (`urls`): not required
/// to be in the repository.
pub fn is_foreign_layer(media_type: &str) -> bool {
    media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What a manifest holds, as the management API shows it: a runnable image
/// (or an index of them), a Helm chart, or some other OCI artifact
/// (signatures, SBOMs, `oras` pushes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArtifactKind {
    Image,
    HelmChart,
    Artifact,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 3] = [
        ArtifactKind::Image,
        ArtifactKind::HelmChart,
        ArtifactKind::Artifact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Image => "image",
            ArtifactKind::HelmChart => "helm_chart",
            ArtifactKind::Artifact => "artifact",
        }
    }

    /// The kind of a manifest from its media type, its config's media type
    /// (absent for an index) and its explicit `artifactType`. An index is
    /// an image unless it declares an artifact type.
    pub fn of(
        media_type: &str,
        config_media_type: Option<&str>,
        artifact_type: Option<&str>,
    ) -> ArtifactKind {
        let helm = |t: Option<&str>| t == Some(HELM_CONFIG);
        if helm(config_media_type) || helm(artifact_type) {
            return ArtifactKind::HelmChart;
        }
        match media_type {
            OCI_INDEX | DOCKER_MANIFEST_LIST => match artifact_type {
                None => ArtifactKind::Image,
                Some(_) => ArtifactKind::Artifact,
            },
            _ => match config_media_type {
                Some(OCI_IMAGE_CONFIG | DOCKER_IMAGE_CONFIG)
                    if artifact_type
                        .is_none_or(|a| a == OCI_IMAGE_CONFIG || a == DOCKER_IMAGE_CONFIG) =>
                {
                    ArtifactKind::Image
                }
                _ => ArtifactKind::Artifact,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_media_types() {
        let of = ArtifactKind::of;
        assert_eq!(
            of(OCI_MANIFEST, Some(OCI_IMAGE_CONFIG), None),
            ArtifactKind::Image
        );
        assert_eq!(
            of(
                DOCKER_MANIFEST,
                Some(DOCKER_IMAGE_CONFIG),
                Some(DOCKER_IMAGE_CONFIG)
            ),
            ArtifactKind::Image
        );
        assert_eq!(of(OCI_INDEX, None, None), ArtifactKind::Image);
        assert_eq!(
            of(OCI_MANIFEST, Some(HELM_CONFIG), None),
            ArtifactKind::HelmChart
        );
        assert_eq!(
            of(
                OCI_MANIFEST,
                Some(OCI_EMPTY),
                Some("application/vnd.dev.cosign.artifact.sig.v1+json")
            ),
            ArtifactKind::Artifact
        );
        assert_eq!(
            of(
                OCI_MANIFEST,
                Some(OCI_IMAGE_CONFIG),
                Some("application/spdx+json")
            ),
            ArtifactKind::Artifact
        );
        assert_eq!(
            of(OCI_INDEX, None, Some("application/x.bundle")),
            ArtifactKind::Artifact
        );
        for k in ArtifactKind::ALL {
            assert!(!k.as_str().is_empty());
        }
    }
}
