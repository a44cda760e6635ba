//! Principals and what they may do.

/// What a request wants to do in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// The instance administrator (the admin token).
    Admin,
    /// A user of one registry: pull-only, or pull and push.
    User {
        registry: String,
        name: String,
        can_push: bool,
    },
    /// An API token: all registries or a list; read-only or read-write.
    Token {
        id: String,
        registries: Option<Vec<String>>,
        read_write: bool,
    },
}

impl Principal {
    /// Whether the principal may do `action` in `registry` (whose
    /// visibility is `public`). Delete needs write permission.
    pub fn may(&self, registry: &str, action: Action, public: bool) -> bool {
        if action == Action::Pull && public {
            return true;
        }
        match self {
            Principal::Anonymous => false,
            Principal::Admin => true,
            Principal::User {
                registry: r,
                can_push,
                ..
            } => r == registry && (action == Action::Pull || *can_push),
            Principal::Token {
                registries,
                read_write,
                ..
            } => {
                registries
                    .as_ref()
                    .is_none_or(|l| l.iter().any(|r| r == registry))
                    && (action == Action::Pull || *read_write)
            }
        }
    }

    /// A stable subject for logs and JWTs.
    pub fn subject(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Admin => "admin".into(),
            Principal::User { registry, name, .. } => format!("user:{registry}+{name}"),
            Principal::Token { id, .. } => format!("token:{id}"),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        let pull = Principal::User {
            registry: "acme".into(),
            name: "ci".into(),
            can_push: false,
        };
        assert!(pull.may("acme", Action::Pull, false));
        assert!(!pull.may("acme", Action::Push, false));
        assert!(!pull.may("acme", Action::Delete, false));
        assert!(!pull.may("other", Action::Pull, false));
        assert!(pull.may("other", Action::Pull, true));
        let ro = Principal::Token {
            id: "t".into(),
            registries: Some(vec!["acme".into()]),
            read_write: false,
        };
        assert!(ro.may("acme", Action::Pull, false));
        assert!(!ro.may("acme", Action::Push, false));
        assert!(!ro.may("beta", Action::Pull, false));
        let rw_all = Principal::Token {
            id: "t".into(),
            registries: None,
            read_write: true,
        };
        assert!(rw_all.may("beta", Action::Delete, false));
        assert!(!Principal::Anonymous.may("acme", Action::Pull, false));
        assert!(Principal::Anonymous.may("acme", Action::Pull, true));
        assert!(!Principal::Anonymous.may("acme", Action::Push, true));
        assert!(Principal::Admin.may("x", Action::Delete, false));
    }
}
