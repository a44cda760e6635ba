//! Repository names, references (tags and digests), digests, registry
//! names and token scopes: parse anything; what parses prints back to the
//! same text and parses again to the same value.
#![no_main]
use berth_core::name::{valid_registry_name, valid_tag};
use berth_core::{Digest, Reference, RepoName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(n) = RepoName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert_eq!(RepoName::parse(&n.to_string()).unwrap(), n);
        assert!(!n.first_component().is_empty());
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        if let Reference::Tag(t) = &r {
            assert!(valid_tag(t) && t.len() <= 128);
        }
    }
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
    }
    let _ = valid_registry_name(s);
    if let Some(sc) = berth_auth::scope::Scope::parse(s) {
        assert!(!sc.kind.is_empty() || sc.name.is_empty() || s.starts_with(':'));
    }
});
