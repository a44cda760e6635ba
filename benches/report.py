"""Berth/reference ratios, the ceilings and the memory notes of a
results.jsonl written by benches/compare.sh."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["label"], r["workload"], r["clients"]): r for r in rows}


def value(r):
    """MB/s for transfers and the sha256 ceiling, req/s for the rest."""
    if r is None:
        return None
    w = r["workload"]
    if r["bytes"] and ("push" in w or "pull" in w) or "sha256" in w:
        return r["mb_per_s"]
    return r["req_per_s"]


def fmt(v, width):
    return f"{'-' if v is None else round(v, 1)!s:>{width}}"


def ratio(a, b, width):
    return f"{a / b:{width}.2f}" if a is not None and b else f"{'-':>{width}}"


print(
    f"{'workload':<36} {'clients':>7} {'berth':>10} {'reference':>10} {'b/ref':>6}"
    f" {'nosync':>10} {'ns/ref':>6} {'nginx':>10} {'b/nginx':>7}"
)
for w, c in sorted({(w, c) for (l, w, c) in by if l == "berth"}):
    b = value(by[("berth", w, c)])
    r = value(by.get(("reference", w, c)))
    ns = value(by.get(("berth-nosync", w, c)))
    n = value(by.get(("nginx", w, c)))
    unit = "MB/s" if ("push" in w or "pull" in w or "sha256" in w) else "req/s"
    errs = {l: by[(l, w, c)]["errors"] for l in ("berth", "reference", "berth-nosync", "nginx") if (l, w, c) in by}
    bad = "" if not any(errs.values()) else f"  errors {errs}"
    print(
        f"{w:<36} {c:>7} {fmt(b, 10)} {fmt(r, 10)} {ratio(b, r, 6)}"
        f" {fmt(ns, 10)} {ratio(ns, r, 6)} {fmt(n, 10)} {ratio(b, n, 7)}  {unit}{bad}"
    )

print()
print(f"{'blobs in S3 (Garage)':<36} {'clients':>7} {'fs':>10} {'s3':>10} {'s3/fs':>6} {'streamed':>10} {'st/fs':>6}")
for w, c in sorted({(w, c) for (l, w, c) in by if l == "berth-s3"}):
    f = value(by.get(("berth", w, c)))
    s3 = value(by[("berth-s3", w, c)])
    st = value(by.get(("berth-s3-streamed", w, c)))
    errs = {l: by[(l, w, c)]["errors"] for l in ("berth-s3", "berth-s3-streamed") if (l, w, c) in by}
    bad = "" if not any(errs.values()) else f"  errors {errs}"
    print(f"{w:<36} {c:>7} {fmt(f, 10)} {fmt(s3, 10)} {ratio(s3, f, 6)} {fmt(st, 10)} {ratio(st, f, 6)}  MB/s{bad}")

print()
for (l, w, c), r in sorted(by.items()):
    if l == "berth-nostats" and ("berth", w, c) in by:
        on, off = value(by[("berth", w, c)]), value(r)
        print(f"pull statistics: {w} ({c} clients) with/without {ratio(on, off, 0).strip()}")
sha = by.get(("berth", "sha256 ceiling (1 core)", 1))
if sha:
    print(f"ceiling: sha256 on one core {sha['mb_per_s']:.0f} MB/s")
for r in rows:
    if r["label"] == "ceiling":
        print(f"ceiling: {r['workload']} {r['mb_per_s']:.0f} MB/s")
for r in rows:
    if r.get("note") and "VmHWM" in r["note"]:
        print(f"{r['label']:<13} {r['workload']}: {r['note']}")
