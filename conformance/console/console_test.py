"""The console in a real browser: Debian's Chromium, driven by Playwright.

Run by conformance/tests/console.rs against a fresh server, with:
  BASE        http://127.0.0.1:PORT (the server)
  TOKEN       the admin token
  LAYOUT      an OCI layout holding `multi` (amd64 + arm64 index) and `single`
  CHART       a packaged Helm chart (.tgz)
  HELM        the helm binary; HELM_* homes are set by the caller
  SHOTS       where the screenshots go (one per page)
Exits non-zero, with the step that failed, on any failure.
"""

import json
import os
import re
import subprocess
import sys
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE"]
TOKEN = os.environ["TOKEN"]
HOST = BASE.split("//", 1)[1]
SHOTS = os.environ["SHOTS"]
os.makedirs(SHOTS, exist_ok=True)
expect.set_options(timeout=15_000)


def api(method, path, body=None, token=TOKEN):
    req = urllib.request.Request(
        BASE + "/api/v1" + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def skopeo(*args):
    return run("skopeo", "--insecure-policy", *args)


def shot(page, name):
    """A screenshot of the page, after checking it shows no leaked value
    (a `null`, `undefined` or `[object …]` where text should be)."""
    text = page.locator("body").inner_text()
    leaked = [l for l in text.splitlines() if re.search(r"^(null|undefined)$|\[object |\bundefined\b|NaN", l.strip())]
    assert not leaked, (name, leaked)
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def used_bytes(name):
    status, r = api("GET", f"/registries/{name}")
    assert status == 200, r
    return r["bytesUsed"]


STEP = ["start"]


def at(step):
    STEP[0] = step
    print("step:", step, flush=True)


def unlabelled(page):
    """Form controls on the page with no accessible name."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !(el.textContent || '').trim())
        .map((el) => el.outerHTML.slice(0, 120))""")


def sign_in(page, token):
    page.goto(BASE + "/console/")
    expect(page.get_by_role("heading", name="Sign in to Berth")).to_be_visible()
    page.get_by_label("API token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Registries", exact=True)).to_be_visible()


def main():
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=BASE)
        page = ctx.new_page()
        # any script error or refused resource (a CSP violation among them) fails the run
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and not re.search(r"status of (401|403|404|409)", m.text) and problems.append(f"console: {m.text}"))

        at("a wrong token is refused with a message")
        page.goto(BASE + "/console/")
        page.get_by_label("API token", exact=True).fill("berth_admin_notTheRightTokenAtAll0123456789")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not accepted")
        shot(page, "01-sign-in-refused")

        at("sign in as the admin")
        sign_in(page, TOKEN)
        expect(page.locator("#who-label")).to_contain_text("admin")
        shot(page, "02-registries-empty")

        at("create a registry, its name checked live")
        page.get_by_text("Create a registry").click()
        page.get_by_label("Name", exact=True).fill("Bad_Name")
        expect(page.locator("#new-reg-name-hint")).not_to_contain_text("available")
        page.get_by_label("Name", exact=True).fill("acme")
        expect(page.locator("#new-reg-name-hint")).to_contain_text("“acme” is available")
        page.locator("#new-reg-limit").fill("1")
        page.locator("#new-reg-limit-unit").select_option("GB")
        page.get_by_role("button", name="Create registry").click()
        expect(page.get_by_role("heading", name="acme", exact=True)).to_be_visible()
        status, reg = api("GET", "/registries/acme")
        assert status == 200 and reg["storageLimitBytes"] == 1_000_000_000, reg
        shot(page, "03-registry-new")

        at("push an image (skopeo, multi-arch) and a chart (helm)")
        creds = f"admin:{TOKEN}"
        skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds,
               f"oci:{os.environ['LAYOUT']}:multi", f"docker://{HOST}/acme/app:v1")
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds,
               f"oci:{os.environ['LAYOUT']}:single", f"docker://{HOST}/acme/app:old")
        helm = os.environ["HELM"]
        run(helm, "registry", "login", HOST, "--username", "admin", "--password", TOKEN, "--plain-http")
        run(helm, "push", os.environ["CHART"], f"oci://{HOST}/acme/charts", "--plain-http")

        at("the images, with their kinds")
        page.reload()
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(2)
        app_row = page.locator("tr", has=page.get_by_role("link", name="app", exact=True))
        expect(app_row).to_contain_text("image")
        chart_row = page.locator("tr", has=page.get_by_role("link", name=re.compile(r"^charts.consolechart")))
        expect(chart_row).to_contain_text("Helm chart")
        shot(page, "04-images")

        at("the artifacts of the image: tags, sizes, platforms")
        page.get_by_role("link", name="app", exact=True).click()
        expect(page.get_by_role("heading", name="acme/app")).to_be_visible()
        arts = page.get_by_role("table", name="Artifacts")
        multi = arts.locator("tbody tr", has=page.get_by_role("link", name="v1", exact=True))
        expect(multi).to_contain_text("linux/amd64, linux/arm64")
        expect(multi).to_contain_text(re.compile(r"\d kB"))
        expect(arts.locator("tbody tr", has=page.get_by_role("link", name="old", exact=True))).to_contain_text("linux/amd64")
        shot(page, "05-artifacts")

        at("an artifact's page: pull command, platforms, layers, what keeps it")
        multi.get_by_role("link", name=re.compile(r"^sha256:")).click()
        expect(page.get_by_role("heading", name="Platforms")).to_be_visible()
        expect(page.get_by_label("pull command", exact=True)).to_have_text(f"docker pull {HOST}/acme/app:v1")
        expect(page.get_by_role("heading", name="What keeps it")).to_be_visible()
        shot(page, "06-artifact")

        at("the chart's pull command is helm's")
        page.goto(BASE + "/console/#/registries/acme")
        page.get_by_role("link", name=re.compile(r"^charts.consolechart")).click()
        page.get_by_role("table", name="Artifacts").locator("tbody tr a.mono").first.click()
        expect(page.get_by_label("pull command", exact=True)).to_contain_text(f"helm pull oci://{HOST}/acme/charts/")
        shot(page, "07-chart")

        at("a pull-only user: its password shown once, usable with skopeo")
        page.goto(BASE + "/console/#/registries/acme/users")
        page.get_by_text("Create a user").click()
        page.get_by_label("Name", exact=True).fill("puller")
        page.get_by_role("button", name="Create user").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("This is shown once")
        password = dialog.get_by_label("password", exact=True).inner_text()
        expect(dialog.get_by_label("docker login command", exact=True)).to_have_text(f"docker login {HOST} -u acme+puller")
        shot(page, "08-user-password")
        dialog.get_by_role("button", name="Done").click()
        expect(page.locator("tbody tr", has_text="acme+puller")).to_contain_text("pull only")
        skopeo("inspect", "--tls-verify=false", "--creds", f"acme+puller:{password}", f"docker://{HOST}/acme/app:old")
        denied = subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-creds", f"acme+puller:{password}",
                                 f"oci:{os.environ['LAYOUT']}:single", f"docker://{HOST}/acme/app:pushed-by-puller"], capture_output=True)
        assert denied.returncode != 0, "a pull-only user pushed"
        shot(page, "09-users")

        at("delete a tag")
        page.goto(BASE + "/console/#/registries/acme/repositories/app")
        page.get_by_role("table", name="Artifacts").locator("tbody tr", has=page.get_by_role("link", name="old", exact=True)).get_by_role("link", name=re.compile(r"^sha256:")).click()
        page.get_by_role("button", name="Delete tag old").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page.get_by_text("Untagged.")).to_be_visible()
        status, _ = api("GET", "/registries/acme/repositories/app/tags/old/history")
        assert status == 200
        status, tag = api("GET", "/registries/acme/repositories/app/artifacts/old")
        assert status == 404, tag

        at("the tag's history, and a restore from it")
        page.goto(BASE + "/console/#/registries/acme/repositories/app/tags/old")
        history = page.get_by_role("table", name="Tag history")
        expect(history.locator("tbody tr").first).to_contain_text("deleted")
        shot(page, "10-tag-history")
        history.locator("tbody tr").first.get_by_role("button", name=re.compile(r"^Restore")).click()
        page.get_by_role("dialog").get_by_role("button", name="Restore").click()
        expect(history.locator("tbody tr").first).to_contain_text("created")
        status, tag = api("GET", "/registries/acme/repositories/app/artifacts/old")
        assert status == 200 and "old" in tag["tags"], tag

        at("a cleanup policy's dry run lists exactly the tags it would delete")
        page.goto(BASE + "/console/#/registries/acme/cleanup")
        page.get_by_text("Add a policy").click()
        page.get_by_label("Repository pattern (optional)").fill("app")
        page.get_by_label("Delete tags matching").fill("o.*")
        page.get_by_role("button", name="Add policy").click()
        policies = page.get_by_role("table", name="Cleanup policies")
        expect(policies.locator("tbody tr")).to_have_count(1)
        policies.get_by_role("button", name="Dry run").click()
        planned = page.get_by_role("table", name="Tags the policy deletes")
        expect(planned.locator("tbody tr")).to_have_count(1)
        expect(planned.locator("tbody tr")).to_contain_text("old")
        shot(page, "11-cleanup-dry-run")
        status, tag = api("GET", "/registries/acme/repositories/app/artifacts/old")
        assert status == 200, "a dry run deleted a tag"

        at("delete the chart's tag and then the chart, then collect: the storage bar goes down")
        page.goto(BASE + "/console/#/registries/acme")
        page.get_by_role("link", name=re.compile(r"^charts.consolechart")).click()
        page.get_by_role("table", name="Artifacts").locator("tbody tr a.mono").first.click()
        page.get_by_role("button", name="Delete tag 0.1.0").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page.get_by_text("Untagged.")).to_be_visible()
        page.get_by_role("button", name="Delete artifact…").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name="acme/charts/consolechart", exact=True)).to_be_visible()
        expect(page.get_by_text("No artifacts.")).to_be_visible()

        at("the recycle bin: the chart restored from it, deleted again, then let go")
        page.goto(BASE + "/console/#/registries/acme/bin")
        binned = page.get_by_role("table", name="Recycle bin")
        chart_entry = binned.locator("tbody tr", has_text="charts/consolechart").filter(has_text="manifest")
        expect(chart_entry).to_have_count(1)
        shot(page, "12-recycle-bin")
        chart_entry.get_by_role("button", name="Restore").click()
        expect(page.get_by_role("status")).to_contain_text("Restored")
        status, arts = api("GET", "/registries/acme/repositories/charts%2Fconsolechart/artifacts")
        assert status == 200 and len(arts["items"]) == 1, arts
        status, _ = api("DELETE", "/registries/acme/repositories/charts%2Fconsolechart/artifacts/" + arts["items"][0]["digest"])
        assert status == 204, status
        # the server keeps binned entries 2 s (gc.recycle_bin_secs): past
        # that a collection lets the chart go with its blobs
        page.wait_for_timeout(2500)

        at("collect: the storage bar goes down")
        before = used_bytes("acme")
        page.goto(BASE + "/console/#/registries/acme/gc")
        meter = page.locator(".card meter")
        assert int(float(meter.get_attribute("value"))) == before
        page.get_by_label("Also delete untagged manifests").check()
        page.get_by_role("button", name="Start garbage collection").click()
        expect(page.get_by_role("status")).to_contain_text("Garbage collection finished", timeout=60_000)
        expect(page.locator("tbody tr").first).to_contain_text("succeeded")
        after = used_bytes("acme")
        assert after < before, (before, after)
        page.reload()
        expect(page.locator(".card meter")).to_have_attribute("value", str(after))
        shot(page, "13-gc")

        at("tokens: create one read-only for acme, with its pull secret")
        page.goto(BASE + "/console/#/tokens")
        page.get_by_text("Create a token").click()
        page.get_by_label("Name", exact=True).fill("viewer")
        page.get_by_label("Registries (comma-separated; empty: every registry)").fill("acme")
        page.get_by_role("button", name="Create token").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("read-only, acme")
        viewer = dialog.get_by_label("token secret", exact=True).inner_text()
        with page.expect_download() as dl:
            dialog.get_by_role("button", name="Download .dockerconfigjson").click()
        config = json.load(open(dl.value.path()))
        assert HOST in config["auths"], config
        shot(page, "14-token-created")
        dialog.get_by_role("button", name="Done").click()
        expect(page.locator("tbody tr", has_text="viewer")).to_contain_text("read-only")
        shot(page, "15-tokens")

        at("usage over time, audit log")
        page.goto(BASE + "/console/#/registries/acme/usage")
        expect(page.locator("svg.chart polyline")).to_have_count(1)
        shot(page, "16-usage")
        page.goto(BASE + "/console/#/audit")
        expect(page.locator("tbody tr", has_text="api.registries.create").first).to_be_visible()
        shot(page, "17-audit")

        at("a read-only token's console offers no change, and the API refuses one")
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, viewer)
        expect(page.locator("#who-label")).to_contain_text("read-only")
        expect(page.get_by_text("Create a registry")).to_have_count(0)
        expect(page.get_by_role("link", name="API tokens")).to_be_hidden()
        page.get_by_role("link", name="acme", exact=True).click()
        expect(page.get_by_role("link", name="app", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
        expect(page.get_by_role("link", name="Settings")).to_have_count(0)
        page.goto(BASE + "/console/#/registries/acme/users")
        expect(page.locator("tbody tr", has_text="acme+puller")).to_be_visible()
        expect(page.get_by_text("Create a user")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("Reset password|Delete|Allow push"))).to_have_count(0)
        page.goto(BASE + "/console/#/registries/acme/gc")
        expect(page.get_by_role("button", name="Start garbage collection")).to_have_count(0)
        shot(page, "18-read-only")
        refused = page.evaluate("""async (t) => {
            const r = await fetch('/api/v1/registries/acme', {method: 'PATCH', headers: {Authorization: 'Bearer ' + t, 'Content-Type': 'application/json'}, body: '{"visibility":"public"}'});
            return r.status; }""", viewer)
        assert refused == 403, refused

        at("readable at a phone's width")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(BASE + "/console/#/registries")
        expect(page.get_by_role("link", name="acme", exact=True)).to_be_visible()
        shot(page, "19-phone")

        at("every control has an accessible name")
        for where in ["#/registries", "#/registries/acme/images", "#/registries/acme/users", "#/registries/acme/gc", "#/audit"]:
            page.goto(BASE + "/console/" + where)
            expect(page.locator("main h1")).to_be_visible()
            page.wait_for_load_state("networkidle")
            for d in page.locator("details").all():
                d.evaluate("(el) => { el.open = true; }")
            missing = unlabelled(page)
            assert not missing, (where, missing)

        browser.close()
    assert not problems, problems
    print("console: every step passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report which step failed, then fail
        print(f"console test failed at step {STEP[0]!r}: {type(e).__name__}: {e}", file=sys.stderr)
        raise
