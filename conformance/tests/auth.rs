//! Auth on `/v2/` end to end: principals × endpoints with Basic and with
//! Bearer JWTs from `/token`, revocation, tampered tokens, public
//! registries, catalog filtering, the failed-login limit.

use berth_conformance::*;
use serde_json::Value;
use std::collections::HashMap;

fn challenge(r: &reqwest::blocking::Response) -> String {
    r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

struct Fixture {
    s: Server,
    creds: HashMap<&'static str, (String, String)>,
    token_ids: HashMap<&'static str, String>,
    digest: String,
}

fn setup() -> Fixture {
    let mut s = Server::start();
    let admin = admin_client();
    let img = push_image(&admin, &s, "acme/app", "v1", "acme");
    push_image(&admin, &s, "beta/app", "v1", "beta");
    s.stop();
    cli(&s, &["registry", "create", "pubreg", "--public"]);
    let mut creds = HashMap::new();
    let mut token_ids = HashMap::new();
    for (key, reg, name, extra) in [
        ("puller", "acme", "puller", vec![]),
        ("pusher", "acme", "pusher", vec!["--push"]),
        ("other", "beta", "other", vec!["--push"]),
        (
            "expired",
            "acme",
            "old",
            vec!["--push", "--expires-days", "0"],
        ),
        ("doomed", "acme", "doomed", vec!["--push"]),
    ] {
        let mut a = vec!["user", "create", "--registry", reg, name];
        a.extend(extra);
        let out = cli(&s, &a);
        creds.insert(key, (field(&out, "username"), field(&out, "password")));
    }
    for (key, extra) in [
        ("ro", vec!["--registry", "acme", "--read-only"]),
        ("rw_beta", vec!["--registry", "beta"]),
        ("rw_all", vec![]),
        ("revoked", vec![]),
    ] {
        let mut a = vec!["token", "create", key];
        a.extend(extra);
        let out = cli(&s, &a);
        assert!(field(&out, "token").starts_with("berth_"));
        creds.insert(key, ("token".to_string(), field(&out, "token")));
        token_ids.insert(key, field(&out, "id"));
    }
    creds.insert("admin", ("admin".to_string(), ADMIN_TOKEN.to_string()));
    s.start_again();
    Fixture {
        s,
        creds,
        token_ids,
        digest: img.digest,
    }
}

/// (endpoint name, method, path, needed scope): every `/v2/` endpoint.
fn endpoints(d: &str) -> Vec<(&'static str, &'static str, String, &'static str)> {
    let absent = sha256(b"absent");
    let session = "/v2/acme/app/blobs/uploads/00000000-0000-4000-8000-000000000000";
    vec![
        ("base", "GET", "/v2/".into(), ""),
        ("catalog", "GET", "/v2/_catalog".into(), ""),
        (
            "get manifest",
            "GET",
            "/v2/acme/app/manifests/v1".into(),
            "pull",
        ),
        (
            "head manifest",
            "HEAD",
            format!("/v2/acme/app/manifests/{d}"),
            "pull",
        ),
        (
            "get blob",
            "GET",
            format!("/v2/acme/app/blobs/{absent}"),
            "pull",
        ),
        (
            "head blob",
            "HEAD",
            format!("/v2/acme/app/blobs/{absent}"),
            "pull",
        ),
        ("tags", "GET", "/v2/acme/app/tags/list".into(), "pull"),
        (
            "referrers",
            "GET",
            format!("/v2/acme/app/referrers/{d}"),
            "pull",
        ),
        (
            "start upload",
            "POST",
            "/v2/acme/app/blobs/uploads/".into(),
            "pull,push",
        ),
        ("upload status", "GET", session.into(), "pull,push"),
        ("patch upload", "PATCH", session.into(), "pull,push"),
        (
            "close upload",
            "PUT",
            format!("{session}?digest={absent}"),
            "pull,push",
        ),
        ("cancel upload", "DELETE", session.into(), "pull,push"),
        (
            "put manifest",
            "PUT",
            "/v2/acme/app/manifests/matrix".into(),
            "pull,push",
        ),
        (
            "delete manifest",
            "DELETE",
            "/v2/acme/app/manifests/no-such-tag".into(),
            "delete",
        ),
        (
            "delete blob",
            "DELETE",
            format!("/v2/acme/app/blobs/{absent}"),
            "delete",
        ),
    ]
}

fn call(s: &Server, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let c = anonymous_client();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rq = c.request(m, s.url(path));
    if let Some(a) = auth {
        rq = rq.header("authorization", a);
    }
    rq.send().unwrap().status().as_u16()
}

/// What each principal gets: (base, pull, push, delete) as allowed (A),
/// 401 or 403.
fn expected(who: &str) -> [&'static str; 4] {
    match who {
        "anonymous" => ["401", "401", "401", "401"],
        "puller" | "ro" => ["A", "A", "403", "403"],
        "pusher" | "rw_all" | "admin" => ["A", "A", "A", "A"],
        "other" | "rw_beta" => ["A", "403", "403", "403"],
        "expired" => ["401", "401", "401", "401"],
        _ => unreachable!(),
    }
}

fn verdict(status: u16) -> &'static str {
    match status {
        // 429: a refused login, rate-limited after repeated failures
        401 | 429 => "401",
        403 => "403",
        // authorised, then answered on the content: 404 unknown, 400 invalid
        s if s < 400 || s == 404 || s == 400 => "A",
        _ => "?",
    }
}

#[test]
fn principals_by_endpoints_basic_and_bearer() {
    let f = setup();
    let s = &f.s;
    let mut failures = Vec::new();
    for who in [
        "anonymous",
        "puller",
        "pusher",
        "other",
        "expired",
        "ro",
        "rw_beta",
        "rw_all",
        "admin",
    ] {
        let exp = expected(who);
        let basic_h = f.creds.get(who).map(|(u, p)| basic(u, p));
        for (name, method, path, scope) in endpoints(&f.digest) {
            let col = match scope {
                "" => 0,
                "pull" => 1,
                "pull,push" => 2,
                _ => 3,
            };
            // Basic straight on /v2/
            let got = verdict(call(s, method, &path, basic_h.as_deref()));
            if got != exp[col] {
                failures.push(format!("{who} basic {name}: got {got}, want {}", exp[col]));
            }
            // Bearer from the token service
            let scopes: Vec<String> = if scope.is_empty() {
                vec![]
            } else {
                vec![format!("repository:acme/app:{scope}")]
            };
            let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let got = match jwt(s, basic_h.as_deref(), &scope_refs) {
                Ok(t) => verdict(call(s, method, &path, Some(&format!("Bearer {t}")))),
                Err(401 | 429) => "401",
                Err(other) => panic!("{who}: /token answered {other}"),
            };
            if got != exp[col] {
                failures.push(format!("{who} bearer {name}: got {got}, want {}", exp[col]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // the challenge names realm, service and scope
    let r = anonymous_client()
        .get(s.url("/v2/acme/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer realm=\"{}\",service=\"berth\",scope=\"repository:acme/app:pull\"",
            s.url("/token")
        )
    );
    // without auth.external_url, the realm is on the host the client reached
    let r = anonymous_client()
        .get(s.url("/v2/"))
        .header("host", "registry.example:5000")
        .send()
        .unwrap();
    assert!(
        challenge(&r).starts_with("Bearer realm=\"http://registry.example:5000/token\""),
        "{}",
        challenge(&r)
    );
    assert_eq!(error_code(&r.text().unwrap()), "UNAUTHORIZED");
    let r = anonymous_client()
        .get(s.url("/v2/acme/app/manifests/v1"))
        .header(
            "authorization",
            basic(&f.creds["other"].0, &f.creds["other"].1),
        )
        .send()
        .unwrap();
    assert_eq!(error_code(&r.text().unwrap()), "DENIED");
}

#[test]
fn revocation_is_immediate_even_for_issued_jwts() {
    let mut f = setup();
    let (pu, pp) = f.creds["doomed"].clone();
    let (_, tok) = f.creds["revoked"].clone();
    let j_user = jwt(&f.s, Some(&basic(&pu, &pp)), &["repository:acme/app:pull"]).unwrap();
    let j_tok = jwt(
        &f.s,
        Some(&basic("token", &tok)),
        &["repository:acme/app:pull"],
    )
    .unwrap();
    let path = "/v2/acme/app/manifests/v1";
    assert_eq!(
        call(&f.s, "GET", path, Some(&format!("Bearer {j_user}"))),
        200
    );
    assert_eq!(
        call(&f.s, "GET", path, Some(&format!("Bearer {j_tok}"))),
        200
    );
    f.s.stop();
    cli(&f.s, &["user", "delete", "--registry", "acme", "doomed"]);
    cli(&f.s, &["token", "revoke", &f.token_ids["revoked"]]);
    // an expiry in the past (refresh to 0 days) ends the all-registry token
    cli(
        &f.s,
        &[
            "token",
            "refresh",
            &f.token_ids["rw_all"],
            "--expires-days",
            "0",
        ],
    );
    let listed = cli(&f.s, &["token", "list"]);
    assert!(listed.contains("revoked"), "{listed}");
    let out = cli(
        &f.s,
        &["user", "reset-password", "--registry", "acme", "pusher"],
    );
    let new_pusher = field(&out, "password");
    f.s.start_again();
    assert_eq!(
        call(&f.s, "GET", path, Some(&format!("Bearer {j_user}"))),
        401
    );
    assert_eq!(
        call(&f.s, "GET", path, Some(&format!("Bearer {j_tok}"))),
        401
    );
    assert_eq!(call(&f.s, "GET", path, Some(&basic(&pu, &pp))), 401);
    assert_eq!(call(&f.s, "GET", path, Some(&basic("token", &tok))), 401);
    let (_, all) = f.creds["rw_all"].clone();
    assert_eq!(call(&f.s, "GET", path, Some(&basic("token", &all))), 401);
    let (u, old) = f.creds["pusher"].clone();
    assert_eq!(call(&f.s, "GET", path, Some(&basic(&u, &old))), 401);
    assert_eq!(call(&f.s, "GET", path, Some(&basic(&u, &new_pusher))), 200);
}

#[test]
fn tampered_and_foreign_jwts_are_refused() {
    use base64::Engine;
    let f = setup();
    let (u, p) = f.creds["puller"].clone();
    let t = jwt(&f.s, Some(&basic(&u, &p)), &["repository:acme/app:pull"]).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = t.split('.').collect();
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["access"][0]["actions"] = serde_json::json!(["pull", "push"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut aud = claims.clone();
    aud["aud"] = "elsewhere".into();
    let wrong_aud = format!("{}.{}.{}", parts[0], b64.encode(aud.to_string()), parts[2]);
    let path = "/v2/acme/app/blobs/uploads/";
    for (what, tok) in [
        ("forged claims", forged),
        ("alg none", none),
        ("wrong audience", wrong_aud),
        ("garbage", "a.b.c".into()),
    ] {
        assert_eq!(
            call(&f.s, "POST", path, Some(&format!("Bearer {tok}"))),
            401,
            "{what}"
        );
    }
    // a token from another Berth (another key) is refused
    let other = Server::start();
    let t2 = jwt(&other, Some(&admin_basic()), &["repository:acme/app:pull"]).unwrap();
    assert_eq!(
        call(
            &f.s,
            "GET",
            "/v2/acme/app/manifests/v1",
            Some(&format!("Bearer {t2}"))
        ),
        401
    );
    // the genuine one still works for what it grants, and no more
    assert_eq!(
        call(
            &f.s,
            "GET",
            "/v2/acme/app/manifests/v1",
            Some(&format!("Bearer {t}"))
        ),
        200
    );
    assert_eq!(call(&f.s, "POST", path, Some(&format!("Bearer {t}"))), 403);

    // A token narrower than its holder's rights: 401 naming the scope to
    // ask for, with error="insufficient_scope" (what clients refetch on),
    // on every push endpoint, upload status and cancel included.
    let (u, p) = f.creds["pusher"].clone();
    let narrow = jwt(&f.s, Some(&basic(&u, &p)), &["repository:acme/app:pull"]).unwrap();
    let r = anonymous_client()
        .post(f.s.url(path))
        .header("authorization", format!("Bearer {narrow}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer realm=\"{}\",service=\"berth\",scope=\"repository:acme/app:pull,push\",error=\"insufficient_scope\"",
            f.s.url("/token")
        )
    );
    let wide = jwt(
        &f.s,
        Some(&basic(&u, &p)),
        &["repository:acme/app:pull,push"],
    )
    .unwrap();
    let r = anonymous_client()
        .post(f.s.url(path))
        .header("authorization", format!("Bearer {wide}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let session = r.headers()["location"].to_str().unwrap().to_string();
    for method in ["GET", "DELETE", "PATCH"] {
        assert_eq!(
            call(&f.s, method, &session, Some(&format!("Bearer {narrow}"))),
            401,
            "{method} of an upload with a pull-only token"
        );
    }
    assert_eq!(
        call(&f.s, "GET", &session, Some(&format!("Bearer {wide}"))),
        204
    );
    assert_eq!(
        call(&f.s, "DELETE", &session, Some(&format!("Bearer {wide}"))),
        204
    );
}

#[test]
fn public_registries_catalog_and_login_limits() {
    let f = setup();
    let s = &f.s;
    let admin = admin_client();
    push_image(&admin, s, "pubreg/app", "v1", "public");
    // anonymous pull of a public registry, with Basic-less GET /token
    assert_eq!(call(s, "GET", "/v2/pubreg/app/manifests/v1", None), 200);
    let t = jwt(s, None, &["repository:pubreg/app:pull,push"]).unwrap();
    assert_eq!(
        call(
            s,
            "GET",
            "/v2/pubreg/app/manifests/v1",
            Some(&format!("Bearer {t}"))
        ),
        200
    );
    assert_eq!(
        call(
            s,
            "POST",
            "/v2/pubreg/app/blobs/uploads/",
            Some(&format!("Bearer {t}"))
        ),
        401
    );
    // one-component names are outside every registry; unknown registries
    let r = admin.get(s.url("/v2/lonely/tags/list")).send().unwrap();
    assert_eq!(error_code(&r.text().unwrap()), "NAME_INVALID");
    let (u, p) = f.creds["pusher"].clone();
    let r = anonymous_client()
        .post(s.url("/v2/nowhere/app/blobs/uploads/"))
        .header("authorization", basic(&u, &p))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.text().unwrap()), "NAME_UNKNOWN");
    // the catalog shows what the caller may pull
    let cat = |auth: &str| -> Vec<String> {
        let v: Value = anonymous_client()
            .get(s.url("/v2/_catalog"))
            .header("authorization", auth)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        cat(&admin_basic()),
        vec!["acme/app", "beta/app", "pubreg/app"]
    );
    assert_eq!(cat(&basic(&u, &p)), vec!["acme/app", "pubreg/app"]);
    let (_, rwb) = f.creds["rw_beta"].clone();
    assert_eq!(cat(&basic("token", &rwb)), vec!["beta/app", "pubreg/app"]);
    // failed logins are limited per address and user
    for _ in 0..10 {
        assert_eq!(call(s, "GET", "/v2/", Some(&basic(&u, "wrong"))), 401);
    }
    assert_eq!(call(s, "GET", "/v2/", Some(&basic(&u, &p))), 429);
    assert!(!s.log_text().contains(&p), "a secret reached the log");
    // POST /token: the OAuth2 password grant and its refresh token
    let r = anonymous_client()
        .post(s.url("/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_TOKEN),
            ("service", "berth"),
            ("scope", "repository:acme/app:pull"),
            ("client_id", "suite"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    let r = anonymous_client()
        .post(s.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", "berth"),
            ("scope", "repository:acme/app:pull"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let t = v["access_token"].as_str().unwrap();
    assert_eq!(
        call(
            s,
            "GET",
            "/v2/acme/app/manifests/v1",
            Some(&format!("Bearer {t}"))
        ),
        200
    );
    // a refresh token is not an access token
    assert_eq!(
        call(
            s,
            "GET",
            "/v2/acme/app/manifests/v1",
            Some(&format!("Bearer {refresh}"))
        ),
        401
    );
}

#[test]
fn auth_can_be_turned_off_for_local_use() {
    let s = Server::start_with(&[("BERTH_AUTH_ENABLED", "false")]);
    assert_eq!(call(&s, "GET", "/v2/", None), 200);
    let c = anonymous_client();
    push_image(&c, &s, "local", "v1", "open");
    assert_eq!(call(&s, "GET", "/v2/local/manifests/v1", None), 200);
}
