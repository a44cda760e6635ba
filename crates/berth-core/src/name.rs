//! Repository names, tags and references, per the distribution-spec grammar.

use crate::digest::{Digest, DigestError};
use std::fmt;

/// Longest repository name accepted (the reference registry's limit).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted by the spec's tag grammar.
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name must not be empty")]
    Empty,
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("repository name component {0:?} does not match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*")]
    BadComponent(String),
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    BadTag(String),
    #[error("invalid digest: {0}")]
    BadDigest(#[from] DigestError),
}

/// A validated repository name such as `library/ubuntu`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<RepoName, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        for comp in s.split('/') {
            if !valid_component(comp) {
                return Err(NameError::BadComponent(comp.to_string()));
            }
        }
        Ok(RepoName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path component: the registry (tenant) the repository
    /// belongs to once tenancy is enforced.
    pub fn first_component(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-+"
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
/// The registry-name rule, as messages state it.
pub const REGISTRY_NAME_RULE: &str =
    "3-63 characters of lowercase letters, digits and '-', not starting or ending with '-'";

/// A registry (tenant) name: DNS-label rules, 3–63 of `[a-z0-9-]`,
/// starting and ending alphanumeric.
pub fn valid_registry_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'.' || x == b'_' || x == b'-')
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// A reference with a `:` is a digest (tags cannot contain one), so a
    /// digest "used as a tag" is recognised and validated as a digest.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            return Ok(Reference::Digest(Digest::parse(s)?));
        }
        if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(NameError::BadTag(s.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b_c__d---e/f0",
            "acme/web/frontend",
            "0/1",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a_", "a/B", "a b", "a:b",
            "a@b", "a/./b", "a/../b",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(256);
        assert_eq!(RepoName::parse(&long), Err(NameError::TooLong));
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
        assert_eq!(
            RepoName::parse("acme/web").unwrap().first_component(),
            "acme"
        );
    }

    #[test]
    fn registry_names() {
        for ok in ["acme", "a-1", "abc", &"a".repeat(63)] {
            assert!(valid_registry_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "-ab",
            "ab-",
            "Acme",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "",
        ] {
            assert!(!valid_registry_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags_and_references() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("_x.Y-1"));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag(""));
        assert!(!valid_tag("a/b"));
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::BadDigest(_))
        ));
    }
}
