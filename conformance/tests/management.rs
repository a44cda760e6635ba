//! The management API `/api/v1/` over HTTP against the real binary: the
//! generated OpenAPI document, who may call what, and the registries
//! resource (create, check a name, list in pages, get, update, delete),
//! with its changes visible at once on `/v2/`.

use berth_conformance::*;
use reqwest::blocking::{Client, RequestBuilder};
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

fn api(s: &Server, token: Option<&str>, m: reqwest::Method, path: &str) -> RequestBuilder {
    let rq = Client::new().request(m, s.url(&format!("/api/v1{path}")));
    match token {
        Some(t) => rq.bearer_auth(t),
        None => rq,
    }
}

fn call(rq: RequestBuilder) -> (u16, Value) {
    let r = rq.send().unwrap();
    let st = r.status().as_u16();
    let text = r.text().unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (st, v)
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
        "application/problem+json"
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

    // delete: refused while repositories remain, else gone (users too)
    let (st, v) = call(api(s, a, M::DELETE, "/registries/acme"));
    assert_eq!((st, v["code"].as_str()), (409, Some("registry_not_empty")));
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
    for bad in ["limit=0", "limit=1001", "limit=x"] {
        let (st, v) = call(api(&s, a, M::GET, &format!("/registries?{bad}")));
        assert_eq!(
            (st, v["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
}
