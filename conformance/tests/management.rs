//! The management API `/api/v1/` over HTTP against the real binary: the
//! generated OpenAPI document, who may call what, and the registries
//! resource (create, check a name, list in pages, get, update, delete),
//! with its changes visible at once on `/v2/`.

use berth_conformance::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};

struct Fixture {
    s: Server,
    /// read-only, for registry `acme` only
    ro_acme: String,
    /// read-write, every registry
    rw_all: String,
    /// a registry user of `acme`, with push
    user: (String, String),
}

fn setup() -> Fixture {
    let mut s = Server::start();
    push_image(&admin_client(), &s, "acme/app", "v1", "management");
    s.stop();
    let ro = cli(
        &s,
        &["token", "create", "ro", "--registry", "acme", "--read-only"],
    );
    let rw = cli(&s, &["token", "create", "rw"]);
    let u = cli(
        &s,
        &["user", "create", "--registry", "acme", "ci", "--push"],
    );
    s.start_again();
    Fixture {
        s,
        ro_acme: field(&ro, "token"),
        rw_all: field(&rw, "token"),
        user: (field(&u, "username"), field(&u, "password")),
    }
}

use reqwest::Method as M;

#[test]
fn openapi_document_lists_every_operation() {
    let s = Server::start();
    let (st, doc) = call(api(&s, None, M::GET, "/openapi.json"));
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let ops: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_string))
        .collect();
    for want in [
        "listRegistries",
        "createRegistry",
        "getRegistry",
        "updateRegistry",
        "deleteRegistry",
        "checkRegistryName",
    ] {
        assert!(ops.iter().any(|o| o == want), "{want} in {ops:?}");
    }
    assert!(doc["components"]["schemas"]["RegistryView"].is_object());
    // a route the document does not have does not exist
    let (st, v) = call(api(&s, Some(ADMIN_TOKEN), M::GET, "/registries/acme/nope"));
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")));
    let r = api(&s, Some(ADMIN_TOKEN), M::PUT, "/registries")
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
}

#[test]
fn who_may_call() {
    let f = setup();
    let s = &f.s;
    let r = api(s, None, M::GET, "/registries").send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json; charset=utf-8"
    );
    let (st, _) = call(api(
        s,
        Some("berth_nope_0123456789abcdefghijklmn"),
        M::GET,
        "/registries",
    ));
    assert_eq!(st, 401);
    // registry users cannot use the management API
    let (st, v) = call(
        Client::new()
            .get(s.url("/api/v1/registries"))
            .basic_auth(&f.user.0, Some(&f.user.1)),
    );
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthorized")));
    // Basic with a token secret works like Bearer
    let (st, _) = call(
        Client::new()
            .get(s.url("/api/v1/registries"))
            .basic_auth("anything", Some(&f.rw_all)),
    );
    assert_eq!(st, 200);

    // a scoped read-only token: sees acme only, changes nothing
    let ro = Some(f.ro_acme.as_str());
    let (st, list) = call(api(s, ro, M::GET, "/registries"));
    assert_eq!(st, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"]);
    assert_eq!(call(api(s, ro, M::GET, "/registries/acme")).0, 200);
    let (st, _) =
        call(api(s, Some(ADMIN_TOKEN), M::POST, "/registries").json(&json!({"name": "other"})));
    assert_eq!(st, 201);
    assert_eq!(
        call(api(s, ro, M::GET, "/registries/other")).0,
        404,
        "not 403: names do not leak"
    );
    let (st, v) =
        call(api(s, ro, M::PATCH, "/registries/acme").json(&json!({"visibility": "public"})));
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(call(api(s, ro, M::DELETE, "/registries/acme")).0, 403);
    assert_eq!(
        call(api(s, ro, M::POST, "/registries").json(&json!({"name": "mine"}))).0,
        403
    );
    assert_eq!(call(api(s, ro, M::GET, "/registry-names/free-one")).0, 403);
    // a read-write token for every registry may create
    let (st, _) =
        call(api(s, Some(&f.rw_all), M::POST, "/registries").json(&json!({"name": "by-token"})));
    assert_eq!(st, 201);
}

#[test]
fn registries_create_check_get_update_delete() {
    let f = setup();
    let s = &f.s;
    let a = Some(ADMIN_TOKEN);
    let r = api(s, a, M::POST, "/registries")
        .json(&json!({"name": "team-a", "storageLimitBytes": 1000000, "allowSparse": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/api/v1/registries/team-a");
    let v: Value = r.json().unwrap();
    assert_eq!(v["name"], "team-a");
    assert_eq!(v["visibility"], "private");
    assert_eq!(v["storageLimitBytes"], 1000000);
    assert_eq!(v["allowSparse"], true);
    assert_eq!(v["repositoryCount"], 0);
    assert_eq!(v["pushPrefix"], format!("{}/team-a", s.host()));
    assert!(v["createdAt"].as_str().unwrap().ends_with('Z'));

    // refusals, each with its own code
    for (body, status, code) in [
        (json!({"name": "team-a"}), 409, "conflict"),
        (json!({"name": "Team_A"}), 400, "invalid_request"),
        (
            json!({"name": "ok-name", "colour": "red"}),
            422,
            "unprocessable",
        ),
        (json!({"name": 5}), 422, "unprocessable"),
    ] {
        let (st, v) = call(api(s, a, M::POST, "/registries").json(&body));
        assert_eq!((st, v["code"].as_str()), (status, Some(code)), "{body}");
    }
    let (st, v) = call(api(s, a, M::POST, "/registries").body("{not json"));
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_request")));
    let (st, _) = call(api(s, a, M::POST, "/registries").body(vec![b' '; 70_000]));
    assert_eq!(st, 413);
    assert_eq!(
        call(api(s, a, M::GET, "/registries/ok-name")).0,
        404,
        "a refused create left nothing"
    );

    // name checks
    for (name, status) in [
        ("team-a", "taken"),
        ("team-b", "free"),
        ("x", "invalid"),
        ("UP", "invalid"),
    ] {
        let (st, v) = call(api(s, a, M::GET, &format!("/registry-names/{name}")));
        assert_eq!((st, v["status"].as_str()), (200, Some(status)), "{name}");
    }

    // update: visibility, limit cleared, visible at once on /v2/
    let (st, v) = call(
        api(s, a, M::PATCH, "/registries/acme")
            .json(&json!({"visibility": "public", "storageLimitBytes": 5})),
    );
    assert_eq!((st, v["visibility"].as_str()), (200, Some("public")));
    assert_eq!(v["storageLimitBytes"], 5);
    assert_eq!(v["repositoryCount"], 1);
    let anon = anonymous_client()
        .get(s.url("/v2/acme/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(anon.status(), 200, "public at once");
    let (_, v) =
        call(api(s, a, M::PATCH, "/registries/acme").json(&json!({"storageLimitBytes": null})));
    assert_eq!(v["storageLimitBytes"], Value::Null);
    assert_eq!(v["visibility"], "public", "absent fields stay");
    let (st, _) =
        call(api(s, a, M::PATCH, "/registries/acme").json(&json!({"visibility": "secret"})));
    assert_eq!(st, 422);
    assert_eq!(
        call(api(s, a, M::PATCH, "/registries/nope").json(&json!({}))).0,
        404
    );

    // delete: with its repositories, users and token grants, at once on /v2/
    let user = || {
        Client::new()
            .get(s.url("/v2/acme/app/manifests/v1"))
            .basic_auth(&f.user.0, Some(&f.user.1))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(user(), 200);
    assert_eq!(call(api(s, a, M::DELETE, "/registries/acme")).0, 204);
    assert_eq!(call(api(s, a, M::GET, "/registries/acme")).0, 404);
    assert_eq!(user(), 401, "its users are gone");
    let gone = admin_client()
        .get(s.url("/v2/acme/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(gone.status(), 404, "its repositories are gone");
    // a registry made again under the name is not the token's
    call(api(s, a, M::POST, "/registries").json(&json!({"name": "acme"})));
    assert_eq!(
        call(api(s, Some(&f.ro_acme), M::GET, "/registries/acme")).0,
        404,
        "grants went with the registry"
    );
    assert_eq!(call(api(s, a, M::DELETE, "/registries/team-a")).0, 204);
    assert_eq!(call(api(s, a, M::GET, "/registries/team-a")).0, 404);
    assert_eq!(call(api(s, a, M::DELETE, "/registries/team-a")).0, 404);
}

#[test]
fn registries_list_in_pages() {
    let s = Server::start();
    let a = Some(ADMIN_TOKEN);
    let (_, empty) = call(api(&s, a, M::GET, "/registries"));
    assert_eq!(
        (
            empty["items"].as_array().unwrap().len(),
            empty["total"].as_i64()
        ),
        (0, Some(0))
    );
    assert_eq!(empty["next"], Value::Null);
    let names: Vec<String> = (0..7)
        .map(|i| format!("reg-{i}"))
        .chain(["other".to_string()])
        .collect();
    for n in &names {
        assert_eq!(
            call(api(&s, a, M::POST, "/registries").json(&json!({"name": n}))).0,
            201
        );
        // creation times are milliseconds: apart, so `sort=created` has
        // one order to check (two in one millisecond tie, by name)
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    // walk with limit 3 through `next`
    let mut seen = Vec::new();
    let mut url = "/registries?limit=3".to_string();
    loop {
        let (st, page) = call(api(&s, a, M::GET, &url));
        assert_eq!(st, 200);
        assert_eq!(page["total"], 8);
        for r in page["items"].as_array().unwrap() {
            seen.push(r["name"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => url = n.strip_prefix("/api/v1").unwrap().to_string(),
            None => break,
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    // exactly a page: no next
    let (_, p) = call(api(&s, a, M::GET, "/registries?limit=8"));
    assert_eq!(
        (p["items"].as_array().unwrap().len(), &p["next"]),
        (8, &Value::Null)
    );
    // prefix search, paged
    let (_, p) = call(api(&s, a, M::GET, "/registries?prefix=reg-&limit=5"));
    assert_eq!(p["items"].as_array().unwrap().len(), 5);
    assert_eq!(p["total"], Value::Null);
    let next = p["next"]
        .as_str()
        .unwrap()
        .strip_prefix("/api/v1")
        .unwrap()
        .to_string();
    let (_, p) = call(api(&s, a, M::GET, &next));
    let rest: Vec<&str> = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["reg-5", "reg-6"]);
    // sorted by size (bytes used), by creation, searched, in both directions
    push_image(&admin_client(), &s, "reg-3/app", "v1", "big one");
    let names = |q: &str| -> Vec<String> {
        let (st, p) = call(api(&s, a, M::GET, &format!("/registries?{q}")));
        assert_eq!(st, 200, "{q}: {p}");
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("sort=-size&limit=1"), ["reg-3"]);
    let (_, p) = call(api(&s, a, M::GET, "/registries/reg-3"));
    assert!(p["bytesUsed"].as_i64().unwrap() > 1000, "{p}");
    assert_eq!(names("sort=created&limit=2"), ["reg-0", "reg-1"]);
    assert_eq!(names("sort=-created&limit=1&search=reg"), ["reg-6"]);
    assert_eq!(names("search=g-4"), ["reg-4"]);
    assert_eq!(names("sort=-name&offset=6"), ["reg-0", "other"]);
    assert_eq!(names("sort=-created&limit=1"), ["other"]);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "sort=colour",
        "offset=10001",
    ] {
        let (st, v) = call(api(&s, a, M::GET, &format!("/registries?{bad}")));
        assert_eq!(
            (st, v["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
}

/// The secret's token id (`berth_<id>_…`).
fn token_id(secret: &str) -> String {
    secret.split('_').nth(1).unwrap().to_string()
}

/// Every operation of the OpenAPI document × every kind of caller: what
/// each may do is decided before any handler runs its change, the same
/// way on every route.
#[test]
fn permissions_matrix_over_every_route() {
    let f = setup();
    let s = &f.s;
    let (_, rwa) = call(
        api(s, Some(ADMIN_TOKEN), M::POST, "/tokens")
            .json(&json!({"name": "rw-acme", "registries": ["acme"], "readWrite": true})),
    );
    let rw_acme = rwa["secret"].as_str().unwrap().to_string();
    let (_, oth) = call(
        api(s, Some(ADMIN_TOKEN), M::POST, "/tokens")
            .json(&json!({"name": "other", "registries": ["other"], "readWrite": true})),
    );
    let other = oth["secret"].as_str().unwrap().to_string();
    let id = token_id(&f.rw_all);
    // a collection run of acme (a dry run), for the run routes
    let (st, run) = call(
        api(s, Some(ADMIN_TOKEN), M::POST, "/gc")
            .json(&json!({"registry": "acme", "dryRun": true})),
    );
    assert_eq!(st, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    // a tag rule (matching nothing), and acme/app's layer, for the rule
    // and blob routes
    let (st, rule) = call(
        api(s, Some(ADMIN_TOKEN), M::POST, "/registries/acme/tag-rules")
            .json(&json!({"kind": "protected", "tagPattern": "matches-nothing"})),
    );
    assert_eq!(st, 201, "{rule}");
    let rule_id = rule["id"].as_str().unwrap().to_string();
    let (_, art) = call(api(
        s,
        Some(ADMIN_TOKEN),
        M::GET,
        "/registries/acme/repositories/app/artifacts/v1",
    ));
    let layer = art["layers"][0]["digest"].as_str().unwrap().to_string();
    // a cleanup policy (matching nothing) and a dry run of it
    let (st, pol) = call(
        api(
            s,
            Some(ADMIN_TOKEN),
            M::POST,
            "/registries/acme/cleanup-policies",
        )
        .json(&json!({"nameRegexDelete": "matches-nothing"})),
    );
    assert_eq!(st, 201, "{pol}");
    let policy_id = pol["id"].as_str().unwrap().to_string();
    let (st, crun) = call(
        api(
            s,
            Some(ADMIN_TOKEN),
            M::POST,
            &format!("/registries/acme/cleanup-policies/{policy_id}/run"),
        )
        .json(&json!({"dryRun": true})),
    );
    assert_eq!(st, 202, "{crun}");
    let crun_id = crun["id"].as_str().unwrap().to_string();
    let (_, doc) = call(api(s, None, M::GET, "/openapi.json"));
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = if path.starts_with("/gc/runs/") {
                &run_id
            } else {
                &id
            };
            let concrete = path
                .replace("{name}", "acme")
                .replace("{repository}", "app")
                .replace("{reference}", "v1")
                .replace("{tag}", "v1")
                .replace("{user}", "ci")
                .replace("{rule}", &rule_id)
                .replace("{policy}", &policy_id)
                .replace("{run}", &crun_id)
                .replace("{digest}", &layer)
                .replace("{entry}", "no-such-entry")
                .replace("{id}", id);
            routes.push((
                method.to_uppercase(),
                concrete,
                op["operationId"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(routes.len() >= 37, "{} routes", routes.len());
    let public = ["root", "openapi"];
    let token_admin = [
        "listTokens",
        "createToken",
        "getToken",
        "updateToken",
        "refreshToken",
        "regenerateToken",
        "revokeToken",
        "deleteToken",
        "createRegistry",
        "checkRegistryName",
        // with no registry in the body: the instance's collection
        "startGc",
    ];
    // the run routes name acme's run: as if under acme
    let of_acme = ["getGcRun", "cancelGcRun"];
    let mut checked = 0;
    for (method, path, op) in &routes {
        let m: M = method.parse().unwrap();
        let read = m == M::GET;
        let in_acme = path.starts_with("/registries/acme") || of_acme.contains(&op.as_str());
        let st = |tok: Option<&str>| {
            let rq = api(s, tok, m.clone(), path);
            let rq = if read { rq } else { rq.json(&json!({})) };
            call(rq).0
        };
        if public.contains(&op.as_str()) {
            assert_eq!(st(None), 200, "{method} {path}");
            continue;
        }
        // no credentials, a registry user's password: 401
        assert_eq!(st(None), 401, "anonymous {method} {path}");
        let user = Client::new()
            .request(m.clone(), s.url(&format!("/api/v1{path}")))
            .basic_auth(&f.user.0, Some(&f.user.1));
        assert_eq!(call(user).0, 401, "registry user {method} {path}");
        // another registry's token: acme does not exist for it
        let o = st(Some(&other));
        if in_acme {
            assert_eq!(o, 404, "other-registry token {method} {path}");
        } else if token_admin.contains(&op.as_str()) {
            assert_eq!(o, 403, "other-registry token {method} {path}");
        } else {
            assert_eq!(o, 200, "other-registry token {method} {path}");
        }
        // the read-only token for acme: reads, never changes
        let r = st(Some(&f.ro_acme));
        if token_admin.contains(&op.as_str()) || !read {
            assert_eq!(r, 403, "read-only token {method} {path}");
        } else {
            assert_eq!(r, 200, "read-only token {method} {path}");
        }
        // reads: the admin and acme's read-write token
        if read {
            assert_eq!(st(Some(ADMIN_TOKEN)), 200, "admin {method} {path}");
            let w = st(Some(&rw_acme));
            let want = if token_admin.contains(&op.as_str()) {
                403
            } else {
                200
            };
            assert_eq!(w, want, "acme read-write token {method} {path}");
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        routes.len() - 2,
        "every route but the two public ones"
    );
    // nothing above changed anything: the image is still there
    let r = admin_client()
        .get(s.url("/v2/acme/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `berth ARGS` with `ENV` and no CLI file or URL/token variables of the
/// caller's: (success, stdout, stderr).
fn online_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(berth_bin())
        .args(args)
        .env_remove("BERTH_URL")
        .env_remove("BERTH_TOKEN")
        .env("BERTH_CLI_CONFIG", "/nonexistent/berth-cli.toml")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `berth tag-rule|cleanup|bin …`: a rule freezes a tag, a policy's dry
/// run names what its real run deletes, the deleted tag waits in the bin
/// and comes back from it.
#[test]
fn the_cli_manages_rules_policies_and_the_bin() {
    let s = Server::start();
    let c = admin_client();
    push_image(&c, &s, "acme/app", "v1", "rel");
    push_image(&c, &s, "acme/app", "dev-1", "d1");
    std::thread::sleep(std::time::Duration::from_millis(5));
    push_image(&c, &s, "acme/app", "dev-2", "d2");
    let url = s.base();
    let run = |args: &[&str]| -> String {
        let mut a = args.to_vec();
        a.extend(["--url", url.as_str(), "--token", ADMIN_TOKEN]);
        let (ok, out, err) = online_cli(&a, &[]);
        assert!(ok, "berth {a:?}: {err}");
        out
    };
    // a rule, listed, holding
    let out = run(&[
        "tag-rule",
        "create",
        "acme",
        "--kind",
        "immutable",
        "--tag",
        "v[0-9]+",
    ]);
    let rule = out.split('\t').next().unwrap().to_string();
    assert!(out.contains("\timmutable\ttag=v[0-9]+\t"), "{out}");
    assert!(run(&["tag-rule", "list", "acme"]).starts_with(&rule));
    let (st, _) = call(api(
        &s,
        Some(ADMIN_TOKEN),
        M::DELETE,
        "/registries/acme/repositories/app/tags/v1",
    ));
    assert_eq!(st, 409, "the rule freezes v1");
    let mut a = vec![
        "tag-rule", "create", "acme", "--kind", "sticky", "--tag", "x",
    ];
    a.extend(["--url", url.as_str(), "--token", ADMIN_TOKEN]);
    let (ok, _, err) = online_cli(&a, &[]);
    assert!(
        !ok && err.contains("422"),
        "a bad kind is the API's 422: {err}"
    );
    // a policy: the dry run names dev-1, the real run deletes exactly it
    let out = run(&[
        "cleanup", "create", "acme", "--delete", "dev-.*", "--keep-n", "1",
    ]);
    let policy = out.split('\t').next().unwrap().to_string();
    assert!(
        out.contains("\tdelete=dev-.*\t") && out.contains("\tkeepN=1\t"),
        "{out}"
    );
    assert!(run(&["cleanup", "list", "acme"]).starts_with(&policy));
    let dry = run(&["cleanup", "run", "acme", &policy, "--dry-run"]);
    assert!(dry.starts_with("would delete\tapp:dev-1\n"), "{dry}");
    assert!(dry.contains("1 planned, 0 deleted"), "{dry}");
    let real = run(&["cleanup", "run", "acme", &policy]);
    assert!(real.starts_with("deleted\tapp:dev-1\n"), "{real}");
    assert!(real.contains("1 planned, 1 deleted"), "{real}");
    let tags = |s: &Server| -> Value {
        c.get(s.url("/v2/acme/app/tags/list"))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["tags"]
            .clone()
    };
    assert_eq!(tags(&s), json!(["dev-2", "v1"]));
    // the tag is in the bin; restored from it
    let out = run(&["bin", "list", "acme"]);
    let line = out
        .lines()
        .find(|l| l.contains("\tapp:dev-1\t"))
        .unwrap_or_else(|| panic!("{out}"));
    let entry = line.split('\t').next().unwrap();
    assert!(line.contains("\ttag\t"), "{line}");
    run(&["bin", "restore", "acme", entry]);
    assert_eq!(tags(&s), json!(["dev-1", "dev-2", "v1"]));
    // deleted again, then the bin emptied: gone for good
    run(&["cleanup", "run", "acme", &policy]);
    let out = run(&["bin", "empty", "acme"]);
    assert!(out.starts_with("purged 1 entries"), "{out}");
    assert_eq!(run(&["bin", "list", "acme"]), "");
    // changed in place: given options set, --clear removes
    let out = run(&[
        "cleanup",
        "update",
        "acme",
        &policy,
        "--keep-n",
        "5",
        "--older-than",
        "1d",
    ]);
    assert!(
        out.contains("\tdelete=dev-.*\t")
            && out.contains("\tkeepN=5\t")
            && out.contains("\tolderThan=1d\t"),
        "{out}"
    );
    let out = run(&[
        "cleanup",
        "update",
        "acme",
        &policy,
        "--clear",
        "keep-n",
        "--clear",
        "older-than",
    ]);
    assert!(
        out.contains("\tkeepN=-\t") && out.contains("\tolderThan=-\t"),
        "{out}"
    );
    assert_eq!(run(&["cleanup", "list", "acme"]), out);
    for (args, says) in [
        (
            &["--keep-n", "2", "--clear", "keep-n"][..],
            "keepN both set and cleared",
        ),
        (&[][..], "nothing to change"),
        (&["--older-than", "soon"][..], "400"),
    ] {
        let mut a = vec!["cleanup", "update", "acme", policy.as_str()];
        a.extend(args);
        a.extend(["--url", url.as_str(), "--token", ADMIN_TOKEN]);
        let (ok, _, err) = online_cli(&a, &[]);
        assert!(!ok && err.contains(says), "{a:?}: {err}");
    }
    run(&["cleanup", "delete", "acme", &policy]);
    assert_eq!(run(&["cleanup", "list", "acme"]), "");
    for cmd in [
        &["gc", "--offline"][..],
        &["bin", "list", "acme", "--data-dir", "/nonexistent"],
    ] {
        let (ok, _, err) = online_cli(cmd, &[]);
        assert!(!ok && err.contains("running server only"), "{cmd:?}: {err}");
    }
    run(&["tag-rule", "delete", "acme", &rule]);
    let (st, _) = call(api(
        &s,
        Some(ADMIN_TOKEN),
        M::DELETE,
        "/registries/acme/repositories/app/tags/v1",
    ));
    assert_eq!(st, 204, "the rule is gone");
}

/// `berth registry|user|token|repo …` against the running server, through
/// the API: flags, environment, the CLI file; `--json` for scripts.
#[test]
fn the_cli_goes_online() {
    let s = Server::start();
    push_image(&admin_client(), &s, "acme/team/app", "v1", "cli");
    let online = online_cli;
    let url = s.base();
    let flags = ["--url", url.as_str(), "--token", ADMIN_TOKEN];
    let with = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .map(|x| x.to_string())
            .chain(flags.iter().map(|x| x.to_string()))
            .collect()
    };
    let run_ok = |args: Vec<String>, env: &[(&str, &str)]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = online(&a, env);
        assert!(ok, "berth {a:?}: {err}");
        out
    };
    let out = run_ok(
        with(&["registry", "create", "beta", "--storage-limit", "1000000"]),
        &[],
    );
    assert!(out.starts_with("created registry beta ("), "{out}");
    // the server sees it at once (it is running: this went through the API)
    let (_, v) = call(api(&s, Some(ADMIN_TOKEN), M::GET, "/registries/beta"));
    assert_eq!(v["storageLimitBytes"], 1_000_000);
    let out = run_ok(
        with(&["user", "create", "--registry", "beta", "ci", "--push"]),
        &[],
    );
    assert_eq!(field(&out, "username"), "beta+ci");
    let pw = field(&out, "password");
    let r = Client::new()
        .get(s.url("/v2/_catalog"))
        .basic_auth("beta+ci", Some(&pw))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the printed password works");
    // environment instead of flags; --json for scripts
    let env = [("BERTH_URL", url.as_str()), ("BERTH_TOKEN", ADMIN_TOKEN)];
    let out = run_ok(
        vec![
            "token".into(),
            "create".into(),
            "ro".into(),
            "--registry".into(),
            "acme".into(),
            "--read-only".into(),
            "--json".into(),
        ],
        &env,
    );
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (t["readWrite"].as_bool(), t["registries"].clone()),
        (Some(false), json!(["acme"]))
    );
    let id = t["id"].as_str().unwrap().to_string();
    let out = run_ok(vec!["token".into(), "list".into()], &env);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{id}\tro\tacme\tread-only\tactive"))),
        "{out}"
    );
    // a CLI file
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli.toml");
    std::fs::write(
        &file,
        format!("url = \"{url}\"\ntoken = \"{ADMIN_TOKEN}\"\n"),
    )
    .unwrap();
    let (ok, out, err) = {
        let o = std::process::Command::new(berth_bin())
            .args(["repo", "list", "acme"])
            .env_remove("BERTH_URL")
            .env_remove("BERTH_TOKEN")
            .env("BERTH_CLI_CONFIG", &file)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert!(ok, "{err}");
    assert_eq!(out, "team/app\n");
    let out = run_ok(with(&["repo", "show", "acme", "team/app", "--json"]), &[]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["kind"].as_str(), r["tagCount"].as_i64()),
        (Some("image"), Some(1))
    );
    run_ok(with(&["repo", "delete", "acme", "team/app"]), &[]);
    assert_eq!(
        admin_client()
            .get(s.url("/v2/acme/team/app/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let out = run_ok(with(&["registry", "list"]), &[]);
    assert!(
        out.lines().any(|l| l.starts_with("beta\tprivate\t")),
        "{out}"
    );
    // errors: no token, a wrong one, nothing listening
    let (ok, _, err) = online(&["registry", "list", "--url", &url], &[]);
    assert!(
        !ok && err.contains("401") && err.contains("--token"),
        "{err}"
    );
    let (ok, _, err) = online(
        &[
            "registry",
            "show",
            "nope",
            "--url",
            &url,
            "--token",
            ADMIN_TOKEN,
        ],
        &[],
    );
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = online(
        &[
            "registry",
            "list",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            ADMIN_TOKEN,
        ],
        &[],
    );
    assert!(!ok && err.contains("cannot reach"), "{err}");
}
