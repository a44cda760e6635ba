//! `/registries/{name}/users`: the accounts `docker login` uses for one
//! registry (pull, or pull and push). Passwords are generated, returned
//! once, and stored only as hashes.

use crate::api::{json, Ctx, Sort};
use crate::error::ManagementError;
use crate::repositories::ms;
use berth_http::Body;
use berth_meta::{now_millis, UserRecord};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, ManagementError>;

/// A registry user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub name: String,
    pub registry: String,
    /// What `docker login -u` takes: `registry+name`.
    pub username: String,
    /// Pull and push (`false`: pull only).
    pub can_push: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub expired: bool,
}

/// A user with its password, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserWithPassword {
    #[serde(flatten)]
    pub user: UserView,
    pub password: String,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    /// 1–64 of `[a-z0-9._-]`.
    pub name: String,
    #[serde(default)]
    pub can_push: bool,
    /// RFC 3339; absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Changes to a user; absent fields stay, `expiresAt: null` removes the
/// expiry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub can_push: Option<bool>,
    #[serde(default, deserialize_with = "crate::api::present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
}

/// A registry's users.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<UserView>,
    pub total: usize,
    pub next: Option<String>,
}

/// Filters of a user list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)] // documents what list reads
pub struct UserQuery {
    /// Only names containing this.
    search: Option<String>,
    /// Only users that may (`true`) or may not (`false`) push.
    can_push: Option<bool>,
    /// `name`, `created` or `expires`, `-` before for descending.
    sort: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// Entries to skip.
    offset: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserSort {
    Name,
    Created,
    Expires,
}

/// An RFC 3339 expiry in the future, as milliseconds.
pub(crate) fn expiry(v: Option<&str>) -> Result<Option<u64>> {
    let Some(v) = v else { return Ok(None) };
    let at = berth_core::time::parse_rfc3339_ms(v).ok_or_else(|| {
        ManagementError::invalid(format!("expiresAt {v:?}: an RFC 3339 UTC time"))
    })?;
    if at <= now_millis() {
        return Err(ManagementError::invalid(format!(
            "expiresAt {v:?} is in the past"
        )));
    }
    Ok(Some(at))
}

fn view(registry: &str, name: &str, u: &UserRecord) -> UserView {
    UserView {
        name: name.to_string(),
        registry: registry.to_string(),
        username: format!("{registry}+{name}"),
        can_push: u.can_push,
        created_at: ms(u.created_ms),
        expires_at: u.expires_ms.map(ms),
        expired: u.expires_ms.is_some_and(|e| e <= now_millis()),
    }
}

impl Ctx<'_> {
    fn user_param(&self) -> Result<(String, String, UserRecord)> {
        let registry = self.registry_param()?;
        let name = self.param("user")?;
        let rec = self
            .meta()
            .user(&registry, &name)?
            .ok_or_else(|| ManagementError::not_found(format!("no user {name} in {registry}")))?;
        Ok((registry, name, rec))
    }
}

/// List a registry's users (registries hold few: read whole, then sorted
/// and filtered).
#[utoipa::path(get, path = "/registries/{name}/users", operation_id = "listUsers", tag = "users",
    params(("name" = String, Path, description = "registry name", example = "acme"), UserQuery),
    responses((status = 200, body = UserPage), (status = 400, description = "bad parameters"),
        (status = 404, description = "no such registry")))]
pub async fn list(c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    let q = c.page_query()?;
    let sort = c.sort(
        &[
            ("name", UserSort::Name),
            ("created", UserSort::Created),
            ("expires", UserSort::Expires),
        ],
        Sort {
            field: UserSort::Name,
            desc: false,
        },
    )?;
    let search = c.text("search")?;
    let can_push = match c.q("canPush") {
        None | Some("") => None,
        Some(_) => Some(c.flag("canPush")?),
    };
    let mut all: Vec<(String, UserRecord)> = c
        .meta()
        .list_users(&registry)?
        .into_iter()
        .filter(|(n, u)| {
            search.as_ref().is_none_or(|s| n.contains(s.as_str()))
                && can_push.is_none_or(|p| u.can_push == p)
        })
        .collect();
    match sort.field {
        UserSort::Name => {}
        UserSort::Created => all.sort_by_key(|(n, u)| (u.created_ms, n.clone())),
        UserSort::Expires => {
            all.sort_by_key(|(n, u)| (u.expires_ms.unwrap_or(u64::MAX), n.clone()))
        }
    }
    if sort.desc {
        all.reverse();
    }
    let total = all.len();
    let (page, next) = q.offset_page(all, &format!("/api/v1/registries/{registry}/users"));
    let items = page.iter().map(|(n, u)| view(&registry, n, u)).collect();
    Ok(json(StatusCode::OK, &UserPage { items, total, next }))
}

/// Create a user; the password is in this answer only.
#[utoipa::path(post, path = "/registries/{name}/users", operation_id = "createUser", tag = "users",
    params(("name" = String, Path, description = "registry name", example = "acme")), request_body = CreateUser,
    responses((status = 201, body = UserWithPassword), (status = 400, description = "malformed name or expiry"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such registry"),
        (status = 409, description = "the user exists"), (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn create(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let registry = c.registry_param()?;
    c.caller.need_write()?;
    let req: CreateUser = c.json().await?;
    let expires = expiry(req.expires_at.as_deref())?;
    let name = req.name.clone();
    let (admin, r, n) = (c.api.admin.clone(), registry.clone(), name.clone());
    let created = c
        .meta()
        .run(move |_| Ok(admin.create_user(&r, &n, req.can_push, expires)))
        .await??;
    let rec = c
        .meta()
        .user(&registry, &name)?
        .ok_or_else(|| ManagementError::not_found("the user was deleted meanwhile"))?;
    let mut r = json(
        StatusCode::CREATED,
        &UserWithPassword {
            user: view(&registry, &name, &rec),
            password: created.secret,
        },
    );
    r.headers_mut().insert(
        "location",
        berth_http::hv(&format!("/api/v1/registries/{registry}/users/{name}")),
    );
    Ok(r)
}

/// One user.
#[utoipa::path(get, path = "/registries/{name}/users/{user}", operation_id = "getUser", tag = "users",
    params(("name" = String, Path, description = "registry name", example = "acme"), ("user" = String, Path, description = "user name", example = "ci")),
    responses((status = 200, body = UserView), (status = 404, description = "no such registry or user")))]
pub async fn get(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, name, rec) = c.user_param()?;
    Ok(json(StatusCode::OK, &view(&registry, &name, &rec)))
}

/// Change a user's permission or expiry (at once on `/v2/`).
#[utoipa::path(patch, path = "/registries/{name}/users/{user}", operation_id = "updateUser", tag = "users",
    params(("name" = String, Path, description = "registry name", example = "acme"), ("user" = String, Path, description = "user name", example = "ci")),
    request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 400, description = "malformed expiry"),
        (status = 403, description = "read-only token"), (status = 404, description = "no such user"),
        (status = 422, description = "a field of the wrong type or unknown")))]
pub async fn update(mut c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, name, _) = c.user_param()?;
    c.caller.need_write()?;
    let req: UpdateUser = c.json().await?;
    let expires = match &req.expires_at {
        Some(e) => Some(expiry(e.as_deref())?),
        None => None,
    };
    let (admin, r, n) = (c.api.admin.clone(), registry.clone(), name.clone());
    let rec = c
        .meta()
        .run(move |_| {
            Ok(admin.update_user(&r, &n, |u| {
                if let Some(p) = req.can_push {
                    u.can_push = p;
                }
                if let Some(e) = expires {
                    u.expires_ms = e;
                }
            }))
        })
        .await??;
    Ok(json(StatusCode::OK, &view(&registry, &name, &rec)))
}

/// A new password, in this answer only; the old one stops working at once.
#[utoipa::path(post, path = "/registries/{name}/users/{user}/reset-password", operation_id = "resetUserPassword", tag = "users",
    params(("name" = String, Path, description = "registry name", example = "acme"), ("user" = String, Path, description = "user name", example = "ci")),
    responses((status = 200, body = UserWithPassword), (status = 403, description = "read-only token"),
        (status = 404, description = "no such user")))]
pub async fn reset_password(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, name, _) = c.user_param()?;
    c.caller.need_write()?;
    let (admin, r, n) = (c.api.admin.clone(), registry.clone(), name.clone());
    let created = c
        .meta()
        .run(move |_| Ok(admin.reset_password(&r, &n)))
        .await??;
    let rec = c
        .meta()
        .user(&registry, &name)?
        .ok_or_else(|| ManagementError::not_found(format!("no user {name} in {registry}")))?;
    Ok(json(
        StatusCode::OK,
        &UserWithPassword {
            user: view(&registry, &name, &rec),
            password: created.secret,
        },
    ))
}

/// Delete a user: its next `/v2/` request fails, with tokens issued to it
/// before too.
#[utoipa::path(delete, path = "/registries/{name}/users/{user}", operation_id = "deleteUser", tag = "users",
    params(("name" = String, Path, description = "registry name", example = "acme"), ("user" = String, Path, description = "user name", example = "ci")),
    responses((status = 204, description = "deleted"), (status = 403, description = "read-only token"),
        (status = 404, description = "no such user")))]
pub async fn delete(c: Ctx<'_>) -> Result<Response<Body>> {
    let (registry, name, _) = c.user_param()?;
    c.caller.need_write()?;
    let admin = c.api.admin.clone();
    c.meta()
        .run(move |_| Ok(admin.delete_user(&registry, &name)))
        .await??;
    Ok(berth_http::status_response(StatusCode::NO_CONTENT, &[]))
}
