//! Cleanup policies against the real binary: a dry run lists exactly what
//! the real run then deletes (into the recycle bin); `latest`, kept names,
//! the newest N and protected tags stay; runs are polled as jobs.

use berth_conformance::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::Duration;

const A: Option<&str> = Some(ADMIN_TOKEN);

fn run(s: &Server, policy: &str, dry: bool) -> Value {
    let (st, v) = call(
        api(
            s,
            A,
            M::POST,
            &format!("/registries/cln/cleanup-policies/{policy}/run"),
        )
        .json(&json!({"dryRun": dry})),
    );
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let done = poll(
        "the cleanup run ended",
        400,
        Duration::from_millis(25),
        || {
            let (st, r) = call(api(
                s,
                A,
                M::GET,
                &format!("/registries/cln/cleanup-runs/{id}"),
            ));
            assert_eq!(st, 200, "{r}");
            (r["status"] != "running").then_some(r)
        },
    );
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

fn planned(r: &Value) -> Vec<String> {
    let mut v: Vec<String> = r["report"]["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["repository"].as_str().unwrap(),
                d["tag"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

fn tags(c: &Client, s: &Server, repo: &str) -> Vec<String> {
    let v: Value = c
        .get(s.url(&format!("/v2/{repo}/tags/list")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

#[test]
fn dry_run_lists_what_the_run_deletes() {
    let s = Server::start();
    let c = admin_client();
    let (st, _) = call(api(&s, A, M::POST, "/registries").json(&json!({"name": "cln"})));
    assert_eq!(st, 201);
    // pushed in this order: newest last
    for (repo, tag) in [
        ("cln/app", "dev-1"),
        ("cln/app", "dev-2"),
        ("cln/app", "dev-3"),
        ("cln/app", "dev-4"),
        ("cln/app", "release-1"),
        ("cln/app", "latest"),
        ("cln/app", "dev-guarded"),
        ("cln/other", "dev-1"),
    ] {
        push_image(&c, &s, repo, tag, &format!("{repo} {tag}"));
        std::thread::sleep(Duration::from_millis(5)); // distinct push times
    }
    let (st, _) = call(
        api(&s, A, M::POST, "/registries/cln/tag-rules")
            .json(&json!({"kind": "protected", "tagPattern": "dev-guarded"})),
    );
    assert_eq!(st, 201);
    for bad in [
        json!({"nameRegexDelete": "("}),
        json!({"nameRegexDelete": ".*", "olderThan": "7 days"}),
        json!({"nameRegexDelete": ".*", "intervalSecs": 5}),
        json!({"nameRegexDelete": ".*", "colour": "red"}),
    ] {
        let (st, v) = call(api(&s, A, M::POST, "/registries/cln/cleanup-policies").json(&bad));
        assert!(st == 400 || st == 422, "{bad}: {st} {v}");
    }
    let (st, p) = call(
        api(&s, A, M::POST, "/registries/cln/cleanup-policies").json(&json!({
            "repositoryPattern": "app",
            "nameRegexDelete": ".*",
            "nameRegexKeep": "release-.*",
            "keepN": 1,
        })),
    );
    assert_eq!(st, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let (st, l) = call(api(&s, A, M::GET, "/registries/cln/cleanup-policies"));
    assert_eq!((st, l["items"].as_array().map(Vec::len)), (200, Some(1)));

    // dry: the newest deletable (dev-4) stays, so do latest, release-1,
    // the protected tag and the other repository; nothing is deleted
    let dry = run(&s, &id, true);
    assert_eq!(
        planned(&dry),
        ["app:dev-1", "app:dev-2", "app:dev-3"],
        "{dry}"
    );
    assert_eq!(dry["report"]["deleted"], 0);
    assert_eq!(tags(&c, &s, "cln/app").len(), 7);

    // the real run deletes exactly that list
    let real = run(&s, &id, false);
    assert_eq!(planned(&real), planned(&dry), "{real}");
    assert_eq!(real["report"]["deleted"], 3, "{real}");
    assert_eq!(
        tags(&c, &s, "cln/app"),
        ["dev-4", "dev-guarded", "latest", "release-1"]
    );
    assert_eq!(tags(&c, &s, "cln/other"), ["dev-1"]);
    // into the recycle bin, by the policy
    let (_, bin) = call(api(&s, A, M::GET, "/registries/cln/recycle-bin"));
    let items = bin["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{bin}");
    assert!(items.iter().all(|e| e["deletedBy"]
        .as_str()
        .unwrap()
        .starts_with(&format!("cleanup:{id}"))));
    // again: nothing left to do
    assert!(planned(&run(&s, &id, true)).is_empty());
    let (_, runs) = call(api(&s, A, M::GET, "/registries/cln/cleanup-runs"));
    assert_eq!(runs["items"].as_array().unwrap().len(), 3);

    // olderThan: nothing is a day old yet
    let (_, p2) = call(
        api(&s, A, M::POST, "/registries/cln/cleanup-policies").json(&json!({
            "nameRegexDelete": "dev-.*", "olderThan": "1d",
        })),
    );
    let p2 = p2["id"].as_str().unwrap().to_string();
    assert!(planned(&run(&s, &p2, true)).is_empty());

    // PATCH: the fields given change, the rest stay; null clears
    let path2 = format!("/registries/cln/cleanup-policies/{p2}");
    let patch = |body: Value| call(api(&s, A, M::PATCH, &path2).json(&body));
    for bad in [
        json!({"olderThan": "soon"}),
        json!({"nameRegexKeep": "("}),
        json!({"intervalSecs": 10}),
        json!({"nameRegexDelete": null}),
        json!({"keepN": "two"}),
        json!({"colour": "red"}),
    ] {
        let (st, v) = patch(bad.clone());
        assert!(st == 400 || st == 422, "{bad}: {st} {v}");
    }
    let (_, unchanged) = call(api(&s, A, M::GET, &path2));
    assert_eq!(unchanged["olderThan"], "1d", "bad bodies change nothing");
    std::thread::sleep(Duration::from_millis(1100));
    let (st, v) = patch(json!({"olderThan": "1s"}));
    assert_eq!(
        (st, &v["olderThan"], &v["nameRegexDelete"]),
        (200, &json!("1s"), &json!("dev-.*")),
        "{v}"
    );
    // dev-guarded is protected
    assert_eq!(planned(&run(&s, &p2, true)), ["app:dev-4", "other:dev-1"]);
    let (st, v) = patch(json!({"repositoryPattern": "other"}));
    assert_eq!((st, &v["olderThan"]), (200, &json!("1s")), "{v}");
    assert_eq!(planned(&run(&s, &p2, true)), ["other:dev-1"]);
    let (st, v) = patch(json!({"repositoryPattern": null, "olderThan": null, "keepN": 5}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["repositoryPattern"], &v["olderThan"], &v["keepN"]),
        (&Value::Null, &Value::Null, &json!(5))
    );
    let (_, got) = call(api(&s, A, M::GET, &path2));
    assert_eq!(got, v, "GET shows what PATCH answered");
    // keepN 5 keeps all (one deletable tag per repository)
    assert!(planned(&run(&s, &p2, true)).is_empty());
    let (st, v) = patch(json!({"keepN": null}));
    assert_eq!((st, &v["keepN"]), (200, &Value::Null), "{v}");
    assert_eq!(planned(&run(&s, &p2, true)), ["app:dev-4", "other:dev-1"]);
    let (st, _) = call(
        api(&s, A, M::PATCH, "/registries/cln/cleanup-policies/pol_none")
            .json(&json!({"keepN": 1})),
    );
    assert_eq!(st, 404);
    let (st, _) = call(api(
        &s,
        A,
        M::DELETE,
        &format!("/registries/cln/cleanup-policies/{id}"),
    ));
    assert_eq!(st, 204);
    let (st, _) = call(api(
        &s,
        A,
        M::GET,
        &format!("/registries/cln/cleanup-policies/{id}"),
    ));
    assert_eq!(st, 404);
}
