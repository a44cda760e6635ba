//! Tag rules: per registry, a tag pattern (and optionally a repository
//! pattern) that makes matching tags **protected** (created, moved or
//! deleted only by the admin) or **immutable** (created once, then never
//! moved or deleted by anyone until the rule goes).
//!
//! A registry's rules are one record in [`Cf::TagRules`], rewritten whole
//! (with a fresh `rev`) by every rule change. Every tag change reads it
//! with `get` in its own transaction ([`check_tag_change`]), so a rule
//! added while a push is in flight either applies to the push or makes it
//! run again: no push slips past a rule that committed before it.

use crate::cf::Cf;
use crate::meta::{fresh_rev, now_millis, registry_of, Meta, MetaError};
use crate::tx::Tx;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

type Result<T> = std::result::Result<T, MetaError>;

/// The subject of the instance administrator (`Principal::subject`, the
/// management API's caller): the one principal protected tags let through.
pub const ADMIN_SUBJECT: &str = "admin";

/// Longest pattern accepted.
pub const MAX_PATTERN: usize = 255;
/// Most rules per registry.
pub const MAX_RULES: usize = 100;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TagRuleKind {
    Protected,
    Immutable,
}

impl TagRuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TagRuleKind::Protected => "protected",
            TagRuleKind::Immutable => "immutable",
        }
    }
}

/// One rule. Patterns are regular expressions matched against the whole
/// tag, and against the whole repository name within the registry (`app`,
/// `team/app`; absent: every repository).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRule {
    pub id: String,
    pub kind: TagRuleKind,
    pub tag_pattern: String,
    #[serde(default)]
    pub repository_pattern: Option<String>,
    pub created_ms: u64,
    pub created_by: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct TagRules {
    rules: Vec<TagRule>,
    rev: u64,
}

/// A tag change a rule refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tag {tag} of {repo} is {reason} (rule {rule}, tag pattern {pattern:?})")]
pub struct TagRefusal {
    pub repo: String,
    pub tag: String,
    pub rule: String,
    /// `protected` or `immutable`.
    pub kind: &'static str,
    pub reason: String,
    pub pattern: String,
}

/// What is done to a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChange {
    Create,
    Move,
    Delete,
}

/// A compiled whole-match pattern, from a cache shared by every
/// transaction (patterns are few and checked on every tagged push).
fn compiled(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().expect("regex cache").get(pattern) {
        return Ok(r.clone());
    }
    let r = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()?;
    let mut c = cache.lock().expect("regex cache");
    if c.len() >= 4096 {
        c.clear();
    }
    c.insert(pattern.to_string(), r.clone());
    Ok(r)
}

/// Check a pattern for a new rule: a valid regular expression of at most
/// [`MAX_PATTERN`] bytes. The error says what is wrong.
pub fn validate_pattern(pattern: &str) -> std::result::Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN {
        return Err(format!("a pattern has 1 to {MAX_PATTERN} characters"));
    }
    compiled(pattern)
        .map(|_| ())
        .map_err(|e| format!("not a regular expression: {e}"))
}

impl TagRule {
    /// Whether the rule covers `tag` of repository `repo` (a full name).
    pub fn matches(&self, repo: &str, tag: &str) -> bool {
        let within = repo
            .split_once('/')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        compiled(&self.tag_pattern).is_ok_and(|r| r.is_match(tag))
            && self
                .repository_pattern
                .as_deref()
                .is_none_or(|p| compiled(p).is_ok_and(|r| r.is_match(within)))
    }
}

fn refused(rule: &TagRule, repo: &str, tag: &str, change: TagChange) -> MetaError {
    MetaError::TagRule(Box::new(TagRefusal {
        repo: repo.to_string(),
        tag: tag.to_string(),
        rule: rule.id.clone(),
        kind: rule.kind.as_str(),
        reason: match (rule.kind, change) {
            (TagRuleKind::Immutable, TagChange::Move) => {
                "immutable: it cannot be pushed over".to_string()
            }
            (TagRuleKind::Immutable, _) => "immutable: it cannot be deleted".to_string(),
            (TagRuleKind::Protected, _) => {
                "protected: only the admin may push or delete it".to_string()
            }
        },
        pattern: rule.tag_pattern.clone(),
    }))
}

/// Refuse a tag change a rule of the repository's registry forbids
/// ([`MetaError::TagRule`]). The rules record is read with `get`: a rule
/// change commits before this transaction or makes it run again.
pub(crate) fn check_tag_change(
    tx: &mut Tx<'_>,
    repo: &str,
    tag: &str,
    change: TagChange,
    by: &str,
) -> Result<()> {
    let Some(rules) = tx.get_as::<TagRules>(Cf::TagRules, registry_of(repo).as_bytes())? else {
        return Ok(());
    };
    for rule in rules.rules.iter().filter(|r| r.matches(repo, tag)) {
        let forbidden = match rule.kind {
            TagRuleKind::Immutable => change != TagChange::Create,
            TagRuleKind::Protected => by != ADMIN_SUBJECT,
        };
        if forbidden {
            return Err(refused(rule, repo, tag, change));
        }
    }
    Ok(())
}

/// Why a rule was not added.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleRefused {
    NoRegistry,
    TooMany,
}

impl Meta {
    /// A registry's tag rules, oldest first.
    pub fn tag_rules(&self, registry: &str) -> Result<Vec<TagRule>> {
        Ok(self
            .get::<TagRules>(Cf::TagRules, registry.as_bytes())?
            .map(|r| r.rules)
            .unwrap_or_default())
    }

    /// Add a rule to an existing registry (patterns checked by the caller
    /// with [`validate_pattern`]).
    pub fn add_tag_rule(
        &self,
        registry: &str,
        rule: &TagRule,
    ) -> Result<std::result::Result<(), RuleRefused>> {
        self.transact(|tx| {
            if tx.get(Cf::Registries, registry.as_bytes())?.is_none() {
                return Ok(Err(RuleRefused::NoRegistry));
            }
            let mut rules = tx
                .get_as::<TagRules>(Cf::TagRules, registry.as_bytes())?
                .unwrap_or_default();
            if rules.rules.len() >= MAX_RULES {
                return Ok(Err(RuleRefused::TooMany));
            }
            rules.rules.push(rule.clone());
            rules.rev = fresh_rev();
            tx.put_as(Cf::TagRules, registry.as_bytes(), &rules);
            Ok(Ok(()))
        })
    }

    /// Remove a rule. Returns whether it existed.
    pub fn delete_tag_rule(&self, registry: &str, id: &str) -> Result<bool> {
        self.transact(|tx| {
            let Some(mut rules) = tx.get_as::<TagRules>(Cf::TagRules, registry.as_bytes())? else {
                return Ok(false);
            };
            let before = rules.rules.len();
            rules.rules.retain(|r| r.id != id);
            if rules.rules.len() == before {
                return Ok(false);
            }
            rules.rev = fresh_rev();
            tx.put_as(Cf::TagRules, registry.as_bytes(), &rules);
            Ok(true)
        })
    }

    /// A new rule id.
    pub fn new_rule_id() -> String {
        format!("rule_{:016x}", fresh_rev() ^ now_millis())
    }
}
