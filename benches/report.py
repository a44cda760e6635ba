"""The report of a results.jsonl written by benches/compare.sh: per workload
the median over the rounds with its spread (min-max), Berth/reference and
Berth/nginx ratios of the medians, the targets of the performance issue
with a flag where the spread of a ratio crosses its target, the ceilings
and the memory notes."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = defaultdict(list)  # (label, workload, clients) -> [row, ...]
for r in rows:
    runs[(r["label"], r["workload"], r["clients"])].append(r)


def value(r):
    """MB/s for transfers and the sha256 ceiling, req/s for the rest."""
    w = r["workload"]
    if r["bytes"] and ("push" in w or "pull" in w) or "sha256" in w or "disk" in w:
        return r["mb_per_s"]
    return r["req_per_s"]


def values(label, w, c):
    return [value(r) for r in runs.get((label, w, c), [])]


def med(vs):
    return statistics.median(vs) if vs else None


def cell(vs, width):
    """median, and the range when there were several rounds"""
    if not vs:
        return f"{'-':>{width}}"
    m = f"{med(vs):.0f}"
    if len(vs) > 1:
        m += f" ({min(vs):.0f}-{max(vs):.0f})"
    return f"{m:>{width}}"


def ratio(a, b):
    return a / b if a is not None and b else None


def rfmt(x, width):
    return f"{'-' if x is None else f'{x:.2f}':>{width}}"


rounds = sorted({r.get("round", 1) for r in rows})
print(f"rounds: {len(rounds)}; each cell: median (min-max) over the rounds; ratios of medians")
baseline = any(l == "baseline" for (l, _, _) in runs)
print(
    f"{'workload':<34} {'cl':>2} {'berth':>18} {'reference':>18} {'b/ref':>5}"
    f" {'baseline' if baseline else 'nosync':>18} {'nginx':>18} {'b/ngx':>5}"
    + ("  b/base" if baseline else "")
)
for w, c in sorted({(w, c) for (l, w, c) in runs if l == "berth"}):
    b, r, ns, n = (values(l, w, c) for l in ("berth", "reference", "berth-nosync", "nginx"))
    if baseline:
        # a before/after run: the baseline binary in place of nosync
        ns = values("baseline", w, c)
    unit = "MB/s" if ("push" in w or "pull" in w or "sha256" in w) else "req/s"
    errs = {l: sum(x["errors"] for x in runs[(l, w, c)]) for l in ("berth", "reference", "berth-nosync", "nginx") if (l, w, c) in runs}
    bad = "" if not any(errs.values()) else f"  errors {errs}"
    print(
        f"{w:<34} {c:>2} {cell(b, 18)} {cell(r, 18)} {rfmt(ratio(med(b), med(r)), 5)}"
        f" {cell(ns, 18)} {cell(n, 18)} {rfmt(ratio(med(b), med(n)), 5)}"
        + (f" {rfmt(ratio(med(b), med(ns)), 6)}" if baseline else "")
        + f"  {unit}{bad}"
    )


def target(name, w, c, base_label, base_w, base_c, want):
    """Berth's median over `base_label`'s (workload `base_w`) against
    `want`; the spread of the ratio is (min/max, max/min) of the rounds."""
    b = values("berth", w, c)
    o = values(base_label, base_w, base_c)
    if not b or not o:
        return
    m = med(b) / med(o)
    lo, hi = min(b) / max(o), max(b) / min(o)
    if lo >= want:
        flag = "met"
    elif hi < want:
        flag = "MISSED"
    else:
        flag = "spread crosses the target"
    print(f"{name:<58} {m:5.2f} ({lo:.2f}-{hi:.2f})  want >= {want:<4}  {flag}")


print()
print("targets (issue 16): ratio of medians (spread)")
for size in ("64MiB", "1GiB"):
    for kind in ("first", "again"):
        for c in (1, 8):
            w = f"pull {size} {kind}"
            target(f"{w}, {c} clients / reference", w, c, "reference", w, c, 1.0)
            target(f"{w}, {c} clients / nginx", w, c, "nginx", w, c, 0.95)
target("push 1MiB x200 mono, 8 clients (durable) / reference", "push 1MiB x200 mono", 8, "reference", "push 1MiB x200 mono", 8, 5.0)
target("push 1GiB x1 mono / sha256 on one core", "push 1GiB x1 mono", 1, "berth", "sha256 ceiling (1 core)", 1, 0.7)

print()
print("listings: page latency of n=100 at 100 and at 100,000 entries, not a full walk;")
for (l, w, c), rs in sorted(runs.items()):
    if w.startswith(("tags/list page", "_catalog page")) and l in ("berth", "reference"):
        notes = {x.get("note") for x in rs if x.get("note")}
        print(f"  {l:<10} {w:<32} {cell(values(l, w, c), 22)} req/s  ({', '.join(sorted(notes))})")
for (l, w, c), rs in sorted(runs.items()):
    if l == "reference" and w.startswith("tags/list page n=100 of"):
        got = [int(x["note"].split()[0]) for x in rs if x.get("note")]
        want = int(w.rsplit(" ", 1)[1])
        if got and max(got) > 100:
            print(f"  the reference ignores n on tags/list: its n=100 page of {want} tags held {max(got)} entries (all of them)")

print()
print(f"{'blobs in S3 (Garage)':<34} {'cl':>2} {'fs':>18} {'s3':>18} {'s3/fs':>5} {'streamed':>18} {'st/fs':>5}")
for w, c in sorted({(w, c) for (l, w, c) in runs if l == "berth-s3"}):
    f, s3, st = (values(l, w, c) for l in ("berth", "berth-s3", "berth-s3-streamed"))
    errs = {l: sum(x["errors"] for x in runs[(l, w, c)]) for l in ("berth-s3", "berth-s3-streamed") if (l, w, c) in runs}
    bad = "" if not any(errs.values()) else f"  errors {errs}"
    print(f"{w:<34} {c:>2} {cell(f, 18)} {cell(s3, 18)} {rfmt(ratio(med(s3), med(f)), 5)} {cell(st, 18)} {rfmt(ratio(med(st), med(f)), 5)}  MB/s{bad}")

print()
for (l, w, c), rs in sorted(runs.items()):
    if l == "berth-nostats" and ("berth", w, c) in runs:
        on, off = med(values("berth", w, c)), med(values(l, w, c))
        print(f"pull statistics: {w} ({c} clients) with/without {rfmt(ratio(on, off), 0).strip()}")
sha = values("berth", "sha256 ceiling (1 core)", 1)
if sha:
    print(f"ceiling: sha256 on one core {cell(sha, 0).strip()} MB/s")
for (l, w, c) in sorted(runs):
    if l == "ceiling":
        print(f"ceiling: {w} {cell(values(l, w, c), 0).strip()} MB/s")
peaks = defaultdict(int)  # (label, workload, clients) -> MiB, over the rounds


def peak_of(r):
    note = r.get("note") or ""
    return int(note.split("VmHWM")[1].split()[0]) if "VmHWM" in note else None


for r in rows:
    p = peak_of(r)
    if p is not None:
        k = (r["label"], r["workload"], r["clients"])
        peaks[k] = max(peaks[k], p)
print()
print("server peak RSS (VmHWM, MiB) during each workload, the highest of the rounds:")
for label in sorted({l for (l, _, _) in peaks}):
    ps = {(w, c): p for (l, w, c), p in peaks.items() if l == label}
    top = max(ps.values())
    detail = ", ".join(f"{w} ({c}): {p}" for (w, c), p in sorted(ps.items()))
    print(f"  {label}: at most {top}; {detail}")
