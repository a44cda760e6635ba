//! Berth's management plane.
//!
//! - [`Admin`]: registries, users and tokens, each change one metadata
//!   transaction (used by the offline CLI now).
//! - [`Management`]: the `/api/v1/` HTTP API, an [`ApiHandler`] served by
//!   the same server layer as `/v2/`. Its routes are the operations of the
//!   OpenAPI document ([`ApiDoc`], served at `/api/v1/openapi.json`);
//!   registries so far, the other resources to come.

pub mod admin;
mod api;
mod artifacts;
mod audit;
mod bin;
mod caller;
mod error;
mod gc;
mod kept;
mod policies;
mod registries;
mod repositories;
mod rules;
mod tokens;
mod users;

pub use admin::{Admin, AdminError, Created};
pub use api::ApiDoc;
pub use caller::Caller;
pub use error::{ManagementError, PROBLEM_JSON, PROBLEM_JSON_UTF8};

use api::{Ctx, Routes};
use berth_http::{ApiHandler, Body, ClientAddr};
use http::request::Parts;
use http::Response;
use std::sync::Arc;

/// The `/api/v1/` API. Cheap to clone.
#[derive(Clone)]
pub struct Management {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub admin: Admin,
    /// `None` (or disabled): no credentials asked, everyone is the admin.
    pub auth: Option<Arc<berth_auth::Auth>>,
    /// `host[:port]` clients push to (shown as `pushPrefix`).
    pub host: String,
    pub routes: Routes,
    /// Where blobs are read from (image configs, for platforms); `None`
    /// shows no platforms.
    pub blobs: Option<Arc<berth_storage::BlobStore>>,
    /// The garbage collector (with the blobs), and the runs this process
    /// runs, by id.
    pub gc: Option<berth_gc::Collector>,
    pub gc_live: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<berth_gc::Progress>>>>,
    /// The grace runs, estimates, kept-by answers and bin purges use when
    /// not given one (`gc.grace_secs`).
    pub grace_secs: u64,
}

/// What a `/api/v1/` request asks for: an operation of the OpenAPI
/// document, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub operation: String,
    pub params: Vec<(String, String)>,
}

impl Management {
    pub fn new(admin: Admin, auth: Option<Arc<berth_auth::Auth>>, host: String) -> Management {
        Management {
            inner: Arc::new(Inner {
                admin,
                auth,
                host,
                routes: Routes::from_doc(),
                blobs: None,
                gc: None,
                gc_live: Default::default(),
                grace_secs: 3600,
            }),
        }
    }

    /// Start a collection as `POST /gc` does (for the server's schedule):
    /// the new run, or the running one of its scope.
    pub async fn start_gc(
        &self,
        opts: berth_gc::Options,
    ) -> Result<Result<berth_meta::GcRun, berth_meta::GcRun>, berth_meta::MetaError> {
        let Some(collector) = self.inner.gc.clone() else {
            return Err(berth_meta::MetaError::Task(
                "no blob store to collect".into(),
            ));
        };
        self.inner.launch_gc(&collector, opts).await
    }

    /// Start the runs of every cleanup policy whose interval has passed
    /// (each claimed in a transaction: one replica runs it). Returns how
    /// many started.
    pub async fn run_due_cleanups(&self) -> Result<usize, berth_meta::MetaError> {
        let meta = self.inner.admin.meta().clone();
        let all = meta.run(|m| m.all_cleanup_policies()).await?;
        let mut started = 0;
        for (registry, p) in all {
            if p.interval_secs.is_none() {
                continue;
            }
            let (r, id) = (registry.clone(), p.id.clone());
            let claimed = meta
                .run(move |m| m.claim_due_policy(&r, &id, berth_meta::now_millis()))
                .await?;
            if let Some(p) = claimed {
                policies::start(&meta, &registry, p, false, "schedule".into()).await?;
                started += 1;
            }
        }
        Ok(started)
    }

    /// The grace when a caller gives none (`gc.grace_secs`).
    pub fn with_gc_grace(mut self, secs: u64) -> Management {
        Arc::get_mut(&mut self.inner)
            .expect("with_gc_grace before the API is shared")
            .grace_secs = secs;
        self
    }

    /// Read image configs from `blobs` (for the platforms artifacts show).
    pub fn with_blobs(mut self, blobs: Arc<berth_storage::BlobStore>) -> Management {
        let inner = Arc::get_mut(&mut self.inner).expect("with_blobs before the API is shared");
        inner.gc = Some(berth_gc::Collector::new(
            inner.admin.meta().clone(),
            blobs.clone(),
        ));
        inner.blobs = Some(blobs);
        self
    }
}

/// Metrics labels: one per operation of the document.
fn label(op: &str) -> &'static str {
    match op {
        "root" => "api.root",
        "openapi" => "api.openapi",
        "listRegistries" => "api.registries.list",
        "createRegistry" => "api.registries.create",
        "getRegistry" => "api.registries.get",
        "getRegistryUsage" => "api.registries.usage",
        "getSession" => "api.session",
        "updateRegistry" => "api.registries.update",
        "deleteRegistry" => "api.registries.delete",
        "checkRegistryName" => "api.registry_names.check",
        "listRepositories" => "api.repositories.list",
        "listRepositoryNames" => "api.repository_names.list",
        "getRepository" => "api.repositories.get",
        "deleteRepository" => "api.repositories.delete",
        "listArtifacts" => "api.artifacts.list",
        "getArtifact" => "api.artifacts.get",
        "deleteArtifact" => "api.artifacts.delete",
        "listTags" => "api.tags.list",
        "setTag" => "api.tags.set",
        "deleteTag" => "api.tags.delete",
        "getTagHistory" => "api.tags.history",
        "getRepositoryHistory" => "api.repositories.history",
        "cleanupRepository" => "api.repositories.cleanup",
        "listAudit" => "api.audit.list",
        "listUsers" => "api.users.list",
        "createUser" => "api.users.create",
        "getUser" => "api.users.get",
        "updateUser" => "api.users.update",
        "resetUserPassword" => "api.users.reset_password",
        "deleteUser" => "api.users.delete",
        "listTokens" => "api.tokens.list",
        "createToken" => "api.tokens.create",
        "getToken" => "api.tokens.get",
        "updateToken" => "api.tokens.update",
        "refreshToken" => "api.tokens.refresh",
        "regenerateToken" => "api.tokens.regenerate",
        "revokeToken" => "api.tokens.revoke",
        "deleteToken" => "api.tokens.delete",
        "createDockerCredentials" => "api.docker_credentials.create",
        "startGc" => "api.gc.start",
        "listGcRuns" => "api.gc.list",
        "getGcRun" => "api.gc.get",
        "cancelGcRun" => "api.gc.cancel",
        "estimateGc" => "api.gc.estimate",
        "listTagRules" => "api.tag_rules.list",
        "createTagRule" => "api.tag_rules.create",
        "getTagRule" => "api.tag_rules.get",
        "deleteTagRule" => "api.tag_rules.delete",
        "listRecycleBin" => "api.recycle_bin.list",
        "restoreFromBin" => "api.recycle_bin.restore",
        "purgeFromBin" => "api.recycle_bin.purge",
        "emptyRecycleBin" => "api.recycle_bin.empty",
        "getBlobKeepers" => "api.blobs.kept_by",
        "getArtifactKeepers" => "api.artifacts.kept_by",
        "listCleanupPolicies" => "api.cleanup_policies.list",
        "createCleanupPolicy" => "api.cleanup_policies.create",
        "getCleanupPolicy" => "api.cleanup_policies.get",
        "updateCleanupPolicy" => "api.cleanup_policies.update",
        "deleteCleanupPolicy" => "api.cleanup_policies.delete",
        "runCleanupPolicy" => "api.cleanup_policies.run",
        "listCleanupRuns" => "api.cleanup_runs.list",
        "getCleanupRun" => "api.cleanup_runs.get",
        _ => "api.other",
    }
}

impl ApiHandler for Management {
    type Endpoint = Endpoint;
    type Error = ManagementError;
    const UNROUTED: &'static str = "api.unrouted";

    fn parse(&self, parts: &Parts) -> Result<Endpoint, ManagementError> {
        let path = parts.uri.path();
        let rest = path
            .strip_prefix("/api/v1")
            .ok_or_else(|| ManagementError::not_found(format!("no route for {path}")))?;
        let (operation, params) = self.inner.routes.find(&parts.method, rest)?;
        Ok(Endpoint { operation, params })
    }

    fn route(ep: &Endpoint) -> &'static str {
        label(&ep.operation)
    }

    async fn handle(
        &self,
        ep: Endpoint,
        parts: Parts,
        body: Body,
    ) -> Result<Response<Body>, ManagementError> {
        let client = parts
            .extensions
            .get::<ClientAddr>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let caller = if api::PUBLIC.contains(&ep.operation.as_str()) {
            Caller::Admin // answers that need no credentials read nothing
        } else {
            match self.inner.auth.as_deref() {
                Some(auth) => caller::identify(auth, &parts.headers, &client)?,
                None => Caller::Admin,
            }
        };
        // Changes are audited once answered, with their outcome.
        let audit =
            (parts.method != http::Method::GET && parts.method != http::Method::HEAD).then(|| {
                let registry = ep
                    .params
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.clone());
                let target = parts
                    .uri
                    .path()
                    .strip_prefix("/api/v1")
                    .unwrap_or("")
                    .to_string();
                (caller.subject(), target, registry)
            });
        let operation = ep.operation.clone();
        let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let c = Ctx {
            api: &self.inner,
            caller,
            params: ep.params,
            query,
            body,
        };
        let out = self.route_op(&operation, c).await;
        if let Some((principal, target, mut registry)) = audit {
            let status = match &out {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.status.as_u16(),
            };
            // A created registry is named by where it now is.
            if let (None, Ok(r)) = (&registry, &out) {
                registry = r
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| l.strip_prefix("/api/v1/registries/"))
                    .map(|rest| rest.split('/').next().unwrap_or(rest).to_string());
            }
            self.inner
                .admin
                .meta()
                .audit(berth_meta::AuditRecord {
                    at_ms: berth_meta::now_millis(),
                    principal,
                    client,
                    action: label(&operation).to_string(),
                    target,
                    registry,
                    status,
                })
                .await;
        }
        out
    }
}

impl Management {
    async fn route_op(
        &self,
        operation: &str,
        c: Ctx<'_>,
    ) -> Result<Response<Body>, ManagementError> {
        match operation {
            "root" => api::root(c).await,
            "openapi" => api::openapi_json(c).await,
            "listRegistries" => registries::list(c).await,
            "createRegistry" => registries::create(c).await,
            "getRegistry" => registries::get(c).await,
            "getRegistryUsage" => registries::usage(c).await,
            "getSession" => api::session(c).await,
            "updateRegistry" => registries::update(c).await,
            "deleteRegistry" => registries::delete(c).await,
            "checkRegistryName" => registries::check_name(c).await,
            "listRepositories" => repositories::list(c).await,
            "listRepositoryNames" => repositories::names(c).await,
            "getRepository" => repositories::get(c).await,
            "deleteRepository" => repositories::delete(c).await,
            "listArtifacts" => artifacts::list(c).await,
            "getArtifact" => artifacts::get(c).await,
            "deleteArtifact" => artifacts::delete(c).await,
            "listTags" => artifacts::list_tags(c).await,
            "setTag" => artifacts::set_tag(c).await,
            "deleteTag" => artifacts::delete_tag(c).await,
            "getTagHistory" => artifacts::tag_history(c).await,
            "getRepositoryHistory" => artifacts::repository_history(c).await,
            "cleanupRepository" => artifacts::cleanup(c).await,
            "listAudit" => audit::list(c).await,
            "listUsers" => users::list(c).await,
            "createUser" => users::create(c).await,
            "getUser" => users::get(c).await,
            "updateUser" => users::update(c).await,
            "resetUserPassword" => users::reset_password(c).await,
            "deleteUser" => users::delete(c).await,
            "listTokens" => tokens::list(c).await,
            "createToken" => tokens::create(c).await,
            "getToken" => tokens::get(c).await,
            "updateToken" => tokens::update(c).await,
            "refreshToken" => tokens::refresh(c).await,
            "regenerateToken" => tokens::regenerate(c).await,
            "revokeToken" => tokens::revoke(c).await,
            "deleteToken" => tokens::delete(c).await,
            "createDockerCredentials" => tokens::docker_credentials(c).await,
            "startGc" => gc::start(c).await,
            "listGcRuns" => gc::list(c).await,
            "getGcRun" => gc::get(c).await,
            "cancelGcRun" => gc::cancel(c).await,
            "estimateGc" => gc::estimate(c).await,
            "listTagRules" => rules::list(c).await,
            "createTagRule" => rules::create(c).await,
            "getTagRule" => rules::get(c).await,
            "deleteTagRule" => rules::delete(c).await,
            "listRecycleBin" => bin::list(c).await,
            "restoreFromBin" => bin::restore(c).await,
            "purgeFromBin" => bin::purge(c).await,
            "emptyRecycleBin" => bin::empty(c).await,
            "getBlobKeepers" => kept::blob(c).await,
            "getArtifactKeepers" => kept::manifest(c).await,
            "listCleanupPolicies" => policies::list(c).await,
            "createCleanupPolicy" => policies::create(c).await,
            "getCleanupPolicy" => policies::get(c).await,
            "updateCleanupPolicy" => policies::update(c).await,
            "deleteCleanupPolicy" => policies::delete(c).await,
            "runCleanupPolicy" => policies::run(c).await,
            "listCleanupRuns" => policies::runs(c).await,
            "getCleanupRun" => policies::get_run(c).await,
            other => Err(ManagementError::new(
                http::StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                format!("operation {other} has no handler"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{MemStore, Meta};
    use http::{Method, StatusCode};
    use http_body_util::BodyExt;

    async fn call(m: Method, path: &str) -> (StatusCode, String, serde_json::Value) {
        let api = Management::new(Admin::new(Meta::new(MemStore::new())), None, "h".into());
        let req = http::Request::builder()
            .method(m)
            .uri(path)
            .header("host", "127.0.0.1:5000")
            .body(berth_http::empty())
            .unwrap();
        let (_, r) = berth_http::dispatch(&api, req).await;
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let st = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (st, ct, serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn root_and_problem_json() {
        let (st, _, v) = call(Method::GET, "/api/v1/").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["api"], "v1");
        let (st, ct, v) = call(Method::GET, "/api/v1/nothing").await;
        assert_eq!(
            (st, ct.as_str()),
            (StatusCode::NOT_FOUND, PROBLEM_JSON_UTF8)
        );
        assert_eq!(
            (v["status"].as_u64(), v["code"].as_str()),
            (Some(404), Some("not_found"))
        );
        let (st, _, v) = call(Method::DELETE, "/api/v1").await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(v["code"], "method_not_allowed");
    }

    /// Every operation of the document has a handler and a metrics label.
    #[test]
    fn every_documented_operation_is_handled() {
        use utoipa::OpenApi;
        let doc = ApiDoc::openapi();
        for item in doc.paths.paths.values() {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.clone().expect("every operation has an id");
                assert_ne!(label(&id), "api.other", "{id} has no label");
            }
        }
    }
}
