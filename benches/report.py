"""Berth/reference ratios and the targets of issue 7 from a results.jsonl."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by[(r["label"], r["workload"], r["clients"])] = r


def get(label, workload, clients):
    return by.get((label, workload, clients))


def metric(r):
    # throughput workloads compare MB/s, the rest req/s
    return r["mb_per_s"] if r["bytes"] and ("push" in r["workload"] or "pull" in r["workload"]) else r["req_per_s"]


print(f"{'workload':<36} {'clients':>7} {'berth':>12} {'reference':>12} {'ratio':>7} {'nginx':>10} {'b/nginx':>8}")
keys = sorted({(w, c) for (l, w, c) in by if l == "berth"})
for w, c in keys:
    b = get("berth", w, c)
    r = get("reference", w, c)
    n = get("nginx", w, c)
    unit = "MB/s" if ("push" in w or "pull" in w or "sha256" in w) else "req/s"
    bv = metric(b) if unit == "req/s" or b["bytes"] else b["req_per_s"]
    if "sha256" in w:
        bv = b["mb_per_s"]
    rv = metric(r) if r else None
    nv = metric(n) if n else None
    ratio = f"{bv / rv:7.2f}" if rv else "      -"
    nratio = f"{bv / nv:8.2f}" if nv else "       -"
    errs = "" if b["errors"] == 0 and (not r or r["errors"] == 0) else f"  errors b={b['errors']} r={r['errors'] if r else '-'}"
    print(f"{w:<36} {c:>7} {bv:>10.1f}{unit[0]:>2} {rv if rv is None else round(rv, 1)!s:>12} {ratio} {'' if nv is None else round(nv, 1)!s:>10} {nratio}{errs}")

print()
sha = get("berth", "sha256 ceiling (1 core)", 1)
if sha:
    print(f"sha256 single-core ceiling: {sha['mb_per_s']:.0f} MB/s")
for r in rows:
    if r.get("note") and "VmHWM" in r["note"]:
        print(f"{r['label']:<10} {r['workload']}: {r['note']}")
