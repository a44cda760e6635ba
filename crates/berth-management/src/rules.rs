//! `/registries/{name}/tag-rules`: protected and immutable tags. Anyone
//! who sees the registry may read its rules; only the admin may add or
//! remove one (a rule a registry's own tokens could remove would protect
//! nothing from them).

use crate::api::{json, Ctx};
use crate::caller::Caller;
use crate::error::ManagementError;
use crate::repositories::ms;
use berth_http::Body;
use berth_meta::{now_millis, validate_pattern, Meta, RuleRefused, TagRule, TagRuleKind};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// What a rule does to the tags it matches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TagRuleKindView {
    /// Only the admin may create, push over or delete the tag.
    Protected,
    /// The tag may be created, then never pushed over or deleted, by
    /// anyone, until the rule is removed.
    Immutable,
}

/// A tag rule.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagRuleView {
    pub id: String,
    pub registry: String,
    pub kind: TagRuleKindView,
    /// A regular expression the whole tag must match.
    pub tag_pattern: String,
    /// A regular expression the whole repository name within the registry
    /// must match (`app`, `team/app`); absent: every repository.
    pub repository_pattern: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// A new rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTagRule {
    pub kind: TagRuleKindView,
    /// 1–255 characters: a regular expression (RE2 syntax), matched
    /// against the whole tag.
    #[schema(example = "v[0-9]+\\.[0-9]+\\.[0-9]+")]
    pub tag_pattern: String,
    #[serde(default)]
    pub repository_pattern: Option<String>,
}

/// A registry's rules, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagRuleList {
    pub items: Vec<TagRuleView>,
}

fn view(registry: &str, r: TagRule) -> TagRuleView {
    TagRuleView {
        id: r.id,
        registry: registry.to_string(),
        kind: match r.kind {
            TagRuleKind::Protected => TagRuleKindView::Protected,
            TagRuleKind::Immutable => TagRuleKindView::Immutable,
        },
        tag_pattern: r.tag_pattern,
        repository_pattern: r.repository_pattern,
        created_at: ms(r.created_ms),
        created_by: r.created_by,
    }
}

fn need_admin(c: &Ctx<'_>) -> Result<()> {
    if c.caller == Caller::Admin {
        Ok(())
    } else {
        Err(ManagementError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the admin may change tag rules",
        ))
    }
}

/// A registry's tag rules.
#[utoipa::path(get, path = "/registries/{name}/tag-rules", operation_id = "listTagRules", tag = "tag-rules",
    params(("name" = String, Path, description = "registry name", example = "acme")),
    responses((status = 200, body = TagRuleList), (status = 404, description = "no such registry")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let items = c
        .meta()
        .tag_rules(&registry)?
        .into_iter()
        .map(|r| view(&registry, r))
        .collect();
    Ok(json(StatusCode::OK, &TagRuleList { items }))
}

/// Add a rule (the admin only). It applies to the next tag change: pushes
/// in flight either see it or run again.
#[utoipa::path(post, path = "/registries/{name}/tag-rules", operation_id = "createTagRule", tag = "tag-rules",
    params(("name" = String, Path, description = "registry name", example = "acme")), request_body = CreateTagRule,
    responses((status = 201, body = TagRuleView), (status = 400, description = "a pattern that is not a regular expression, or too long"),
        (status = 403, description = "not the admin"), (status = 404, description = "no such registry"),
        (status = 409, description = "the registry has 100 rules already"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn create(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    need_admin(&c)?;
    let req: CreateTagRule = c.json().await?;
    for p in std::iter::once(&req.tag_pattern).chain(req.repository_pattern.as_ref()) {
        validate_pattern(p).map_err(|e| ManagementError::invalid(format!("pattern {p:?}: {e}")))?;
    }
    let rule = TagRule {
        id: Meta::new_rule_id(),
        kind: match req.kind {
            TagRuleKindView::Protected => TagRuleKind::Protected,
            TagRuleKindView::Immutable => TagRuleKind::Immutable,
        },
        tag_pattern: req.tag_pattern,
        repository_pattern: req.repository_pattern,
        created_ms: now_millis(),
        created_by: c.caller.subject(),
    };
    let (r, rl) = (registry.clone(), rule.clone());
    match c.meta().run(move |m| m.add_tag_rule(&r, &rl)).await? {
        Ok(()) => {}
        Err(RuleRefused::NoRegistry) => {
            return Err(ManagementError::not_found(format!(
                "no registry {registry}"
            )))
        }
        Err(RuleRefused::TooMany) => {
            return Err(ManagementError::new(
                StatusCode::CONFLICT,
                "too_many_rules",
                format!(
                    "registry {registry} has {} rules already",
                    berth_meta::MAX_RULES
                ),
            ))
        }
    }
    let location = format!("/api/v1/registries/{registry}/tag-rules/{}", rule.id);
    let mut resp = json(StatusCode::CREATED, &view(&registry, rule));
    resp.headers_mut()
        .insert("location", berth_http::hv(&location));
    Ok(resp)
}

fn find(c: &Ctx<'_>) -> Result<(String, TagRule)> {
    let registry = c.registry_param()?;
    let id = c.param("rule")?;
    let rule = c
        .meta()
        .tag_rules(&registry)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ManagementError::not_found(format!("no rule {id} in {registry}")))?;
    Ok((registry, rule))
}

/// One rule.
#[utoipa::path(get, path = "/registries/{name}/tag-rules/{rule}", operation_id = "getTagRule", tag = "tag-rules",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("rule" = String, Path, description = "rule id", example = "rule_0123456789abcdef")),
    responses((status = 200, body = TagRuleView), (status = 404, description = "no such registry or rule")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, rule) = find(&c)?;
    Ok(json(StatusCode::OK, &view(&registry, rule)))
}

/// Remove a rule (the admin only): its tags may change again at once.
#[utoipa::path(delete, path = "/registries/{name}/tag-rules/{rule}", operation_id = "deleteTagRule", tag = "tag-rules",
    params(("name" = String, Path, description = "registry name", example = "acme"),
        ("rule" = String, Path, description = "rule id", example = "rule_0123456789abcdef")),
    responses((status = 204, description = "removed"), (status = 403, description = "not the admin"),
        (status = 404, description = "no such registry or rule")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, rule) = find(&c)?;
    need_admin(&c)?;
    let (r, id) = (registry.clone(), rule.id.clone());
    if !c.meta().run(move |m| m.delete_tag_rule(&r, &id)).await? {
        return Err(ManagementError::not_found(format!(
            "no rule {} in {registry}",
            rule.id
        )));
    }
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}
