//! Docker token scopes: `repository:<name>:<actions>` and
//! `registry:catalog:*`.

use serde::{Deserialize, Serialize};

/// One requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// Parse `type:name:actions`; the name may itself hold `:` (a port).
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions,
        })
    }
}

/// A granted access entry, as carried in a JWT's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let s = Scope::parse("repository:acme/web:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("repository", "acme/web")
        );
        assert_eq!(s.actions, vec!["pull", "push"]);
        let s = Scope::parse("registry:catalog:*").unwrap();
        assert_eq!(s.actions, vec!["*"]);
        let s = Scope::parse("repository:host:5000/x:pull").unwrap();
        assert_eq!(s.name, "host:5000/x");
        assert!(Scope::parse("nonsense").is_none());
        assert!(Scope::parse("repository::pull").is_none());
    }
}
