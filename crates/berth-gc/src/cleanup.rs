//! Cleanup policies: which tags a policy deletes ([`plan`], a pure
//! function of the tags, the policy, the tag rules and the clock), and a
//! run ([`Cleaner::run`]) that deletes exactly the plan — each tag only if
//! it still points where the plan saw it, into the recycle bin.
//!
//! GitLab's order: tags matching `name_regex_delete`, less those matching
//! `name_regex_keep`, less the newest `keep_n` of them, less those pushed
//! within `older_than`. Never `latest`, never a tag a protected or
//! immutable rule covers.

use berth_meta::{CleanupPolicy, Meta, MetaError, TagRecord, TagRule};
use serde::{Deserialize, Serialize};

/// A tag a plan deletes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Doomed {
    /// Repository name within the registry.
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CleanupReport)]
pub struct CleanupReport {
    pub repositories: u64,
    /// Tags looked at.
    pub tags_seen: u64,
    /// The plan: every tag the policy deletes (a dry run's answer).
    pub planned: Vec<Doomed>,
    /// Of the plan, what was deleted (empty on a dry run).
    pub deleted: u64,
    /// Tags of the plan that had moved or gone meanwhile (left alone).
    pub skipped: u64,
    pub errors: Vec<String>,
}

/// A duration as policies write it: `30s`, `15min`, `12h`, `7d`, `2w`,
/// `1month` (30 days), `1y` (365 days). Milliseconds.
pub fn parse_age(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "month" | "months" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1000)
}

fn whole(p: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{p})$")).ok()
}

/// The tags of one repository (`repo`, its full name; `tags` with their
/// records) that `policy` deletes at `now`, given the registry's tag
/// `rules`. Newest first by push time (a tag's last push or move).
pub fn plan(
    repo: &str,
    tags: &[(String, TagRecord)],
    policy: &CleanupPolicy,
    rules: &[TagRule],
    now: u64,
) -> Vec<(String, String)> {
    let Some(delete) = whole(&policy.name_regex_delete) else {
        return Vec::new();
    };
    let keep = policy.name_regex_keep.as_deref().and_then(whole);
    let mut candidates: Vec<&(String, TagRecord)> = tags
        .iter()
        .filter(|(t, _)| t != "latest")
        .filter(|(t, _)| !rules.iter().any(|r| r.matches(repo, t)))
        .filter(|(t, _)| delete.is_match(t))
        .filter(|(t, _)| !keep.as_ref().is_some_and(|k| k.is_match(t)))
        .collect();
    candidates.sort_by(|a, b| {
        b.1.updated_ms
            .cmp(&a.1.updated_ms)
            .then_with(|| a.0.cmp(&b.0))
    });
    let skip = policy.keep_n.unwrap_or(0) as usize;
    candidates
        .into_iter()
        .skip(skip)
        .filter(|(_, r)| {
            policy
                .older_than_ms
                .is_none_or(|age| r.updated_ms.saturating_add(age) <= now)
        })
        .map(|(t, r)| (t.clone(), r.digest.clone()))
        .collect()
}

/// Runs policies over a metadata store.
#[derive(Clone)]
pub struct Cleaner {
    meta: Meta,
}

/// Rows read per page.
const PAGE: usize = 1000;

impl Cleaner {
    pub fn new(meta: Meta) -> Cleaner {
        Cleaner { meta }
    }

    /// Plan `policy` of `registry` at `now` and, unless `dry_run`, delete
    /// the plan's tags `by` a principal. Blocking (metadata reads and one
    /// transaction per tag): call off the async executor.
    pub fn run(
        &self,
        registry: &str,
        policy: &CleanupPolicy,
        dry_run: bool,
        now: u64,
        by: &str,
    ) -> Result<CleanupReport, MetaError> {
        let m = &self.meta;
        let rules = m.tag_rules(registry)?;
        let repo_pattern = policy.repository_pattern.as_deref().and_then(whole);
        let prefix = format!("{registry}/");
        let mut r = CleanupReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = m.list_repos_with_prefix(&prefix, after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (repo, _) in page {
                let within = &repo[prefix.len()..];
                if repo_pattern.as_ref().is_some_and(|p| !p.is_match(within)) {
                    continue;
                }
                r.repositories += 1;
                let mut tags = Vec::new();
                let mut t_after: Option<String> = None;
                loop {
                    let page = m.list_tag_records(&repo, "", t_after.as_deref(), PAGE)?;
                    let Some((last, _)) = page.last() else { break };
                    t_after = Some(last.clone());
                    tags.extend(page);
                }
                r.tags_seen += tags.len() as u64;
                for (tag, digest) in plan(&repo, &tags, policy, &rules, now) {
                    r.planned.push(Doomed {
                        repository: within.to_string(),
                        tag,
                        digest,
                    });
                }
            }
        }
        if dry_run {
            return Ok(r);
        }
        for d in &r.planned {
            let repo = format!("{prefix}{}", d.repository);
            match m.delete_tag_if(&repo, &d.tag, &d.digest, by) {
                Ok(true) => r.deleted += 1,
                Ok(false) => r.skipped += 1,
                Err(e @ MetaError::TagRule(_)) => {
                    r.skipped += 1;
                    r.errors.push(e.to_string());
                }
                Err(e) => r.errors.push(format!("{}:{}: {e}", d.repository, d.tag)),
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn tags(list: &[(&str, u64)]) -> Vec<(String, TagRecord)> {
        list.iter()
            .map(|(t, ms)| {
                (
                    t.to_string(),
                    TagRecord {
                        digest: format!("sha256:{t}"),
                        created_ms: *ms,
                        updated_ms: *ms,
                    },
                )
            })
            .collect()
    }

    fn policy(delete: &str) -> CleanupPolicy {
        CleanupPolicy {
            id: "p".into(),
            repository_pattern: None,
            name_regex_delete: delete.into(),
            name_regex_keep: None,
            keep_n: None,
            older_than_ms: None,
            older_than: None,
            interval_secs: None,
            last_run_ms: None,
            created_ms: 0,
            created_by: "admin".into(),
        }
    }

    fn names(v: Vec<(String, String)>) -> Vec<String> {
        v.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("1h"), Some(3_600_000));
        assert_eq!(parse_age("7d"), Some(7 * DAY));
        assert_eq!(parse_age("1month"), Some(30 * DAY));
        assert_eq!(parse_age("15min"), Some(900_000));
        for bad in ["", "d", "7", "7x", "-1d", "1 d", "99999999999999999999d"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn regex_delete_and_keep_whole_names_never_latest() {
        let t = tags(&[
            ("v1", 1),
            ("v2", 2),
            ("v2-keep", 3),
            ("latest", 4),
            ("dev", 5),
        ]);
        let mut p = policy("v.*");
        assert_eq!(names(plan("r/a", &t, &p, &[], 10)), ["v2-keep", "v2", "v1"]);
        p.name_regex_keep = Some(".*-keep".into());
        assert_eq!(names(plan("r/a", &t, &p, &[], 10)), ["v2", "v1"]);
        // whole names only: `v` matches none
        assert!(plan("r/a", &t, &policy("v"), &[], 10).is_empty());
        // `.*` takes all but latest
        assert_eq!(plan("r/a", &t, &policy(".*"), &[], 10).len(), 4);
        // a bad pattern plans nothing
        assert!(plan("r/a", &t, &policy("("), &[], 10).is_empty());
    }

    #[test]
    fn keep_n_keeps_the_newest_and_older_than_reads_the_clock() {
        let now = 100 * DAY;
        let t = tags(&[
            ("a", now - 30 * DAY),
            ("b", now - 10 * DAY),
            ("c", now - DAY),
            ("d", now),
        ]);
        let mut p = policy(".*");
        p.keep_n = Some(2);
        assert_eq!(names(plan("r/a", &t, &p, &[], now)), ["b", "a"]);
        p.keep_n = None;
        p.older_than_ms = parse_age("7d");
        assert_eq!(names(plan("r/a", &t, &p, &[], now)), ["b", "a"]);
        // six days later c is a week old too (d is not yet)
        assert_eq!(
            names(plan("r/a", &t, &p, &[], now + 6 * DAY)),
            ["c", "b", "a"]
        );
        p.keep_n = Some(3);
        assert_eq!(names(plan("r/a", &t, &p, &[], now + 6 * DAY)), ["a"]);
    }

    #[test]
    fn protected_and_immutable_tags_never_go() {
        let t = tags(&[("v1", 1), ("v2", 2), ("rc", 3)]);
        let rule = |kind, pat: &str| TagRule {
            id: "r".into(),
            kind,
            tag_pattern: pat.into(),
            repository_pattern: None,
            created_ms: 0,
            created_by: "admin".into(),
        };
        let rules = [
            rule(berth_meta::TagRuleKind::Protected, "v1"),
            rule(berth_meta::TagRuleKind::Immutable, "v2"),
        ];
        assert_eq!(names(plan("r/a", &t, &policy(".*"), &rules, 10)), ["rc"]);
    }
}
