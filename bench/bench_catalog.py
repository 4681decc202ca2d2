"""Catalog throughput and memory: ``pixels catalog`` against two baselines, same run, same corpus.

Variants (each one a fresh subprocess, timed from spawn to exit, peak memory =
summed RSS of the process and all its children sampled every 50 ms):

* ``header-loop``  os.walk + ``pydicom.dcmread(path, stop_before_pixels=True)``
  per file; the floor for anything that parses headers with pydicom.
* ``dbx-method``   the same read + ``ds.to_json_dict()`` + ``json.dumps`` per file
  (the per-file work of the dbx.pixels metadata extractor), the JSON strings
  sent back to the parent; optionally on an evenly spaced subset of the files.
* ``pixels``       ``pixels catalog CORPUS --table T --workers N -q`` into a fresh
  Delta table on the same disk.
* ``pixels-rerun`` the same command again on the same table (nothing new).

Baselines use a ``multiprocessing`` pool (fork) over chunks of 64 paths when run
with 2 processes, and a plain loop with 1. The page cache is warmed first, so
every variant reads from memory.

Usage::

    python bench/bench_catalog.py --files 20000                  # full comparison
    python bench/bench_catalog.py --memory-only --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    WORK_DIR,
    corpus_dir,
    dump_json,
    iter_paths,
    machine_info,
    python_cmd,
    run_measured,
    source_digest,
    wait_for_quiet,
    warm_page_cache,
)

CHUNK = 64

# --------------------------------------------------------------------------- baselines
# These run inside the child process started by the harness (``_baseline`` sub-command).


def _header_chunk(paths: list[str]) -> tuple[int, int]:
    import pydicom

    ok = err = 0
    for p in paths:
        try:
            pydicom.dcmread(p, stop_before_pixels=True)
            ok += 1
        except Exception:
            err += 1
    return ok, err


def _dbx_chunk(paths: list[str]) -> tuple[list[str], int]:
    import pydicom

    out: list[str] = []
    err = 0
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            out.append(json.dumps(ds.to_json_dict()))
        except Exception:
            err += 1
    return out, err


def _quiet_worker() -> None:
    warnings.simplefilter("ignore")


def subset(paths: list[str], k: int) -> list[str]:
    """``k`` evenly spaced paths (all of them when k <= 0 or k >= len)."""
    if k <= 0 or k >= len(paths):
        return paths
    step = len(paths) / k
    return [paths[int(i * step)] for i in range(k)]


def baseline_main(method: str, root: str, processes: int, limit: int) -> None:
    """Entry of the baseline child: list, read, print one JSON line of counts."""
    import multiprocessing

    import pydicom  # noqa: F401  (imported before the fork, as a real tool would)

    _quiet_worker()
    t0 = time.perf_counter()
    paths = subset(list(iter_paths(root)), limit)
    t_list = time.perf_counter() - t0
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    ok = err = json_bytes = 0
    if processes <= 1:
        for chunk in chunks:
            if method == "header":
                a, b = _header_chunk(chunk)
                ok, err = ok + a, err + b
            else:
                docs, b = _dbx_chunk(chunk)
                ok, err = ok + len(docs), err + b
                json_bytes += sum(len(d) for d in docs)
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes, initializer=_quiet_worker) as pool:
            if method == "header":
                for a, b in pool.imap_unordered(_header_chunk, chunks):
                    ok, err = ok + a, err + b
            else:
                for docs, b in pool.imap_unordered(_dbx_chunk, chunks):
                    ok, err = ok + len(docs), err + b
                    json_bytes += sum(len(d) for d in docs)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "files": len(paths),
                "ok": ok,
                "errors": err,
                "json_bytes": json_bytes,
                "inner_seconds": seconds,
                "listing_seconds": t_list,
            }
        )
    )


# --------------------------------------------------------------------------- harness

SUMMARY = re.compile(
    r"listed ([\d,]+) · unchanged ([\d,]+) · read ([\d,]+) \(([\d,]+) DICOM\) · "
    r"written ([\d,]+) · errors ([\d,]+) · ([\d.]+) s"
)


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def pixels_exe() -> str:
    exe = Path(sys.executable).parent / "pixels"
    if exe.exists():
        return str(exe)
    found = shutil.which("pixels")
    if not found:
        raise SystemExit("the `pixels` command is not installed in this environment")
    return found


def run_pixels(corpus: Path, table: Path, workers: int, fresh: bool) -> dict[str, Any]:
    if fresh and table.exists():
        shutil.rmtree(table)
    cmd = [
        pixels_exe(),
        "catalog",
        str(corpus),
        "--table",
        str(table),
        "--workers",
        str(workers),
        "-q",
    ]
    m = run_measured(cmd)
    row: dict[str, Any] = {
        "seconds": m.seconds,
        "peak_mb": m.peak_mb,
        "peak_pss_mb": m.peak_pss_mb,
        "returncode": m.returncode,
        "max_procs": m.max_procs,
        "cpu_seconds": m.cpu_seconds,
        "other_cores": m.other_cores,
        "harness_cpu": m.harness_cpu,
        "command": " ".join(cmd),
    }
    match = SUMMARY.search(" ".join(m.stderr.split()))  # rich wraps the summary line
    if match:
        listed, unchanged, read, dicom, written, errors = (_int(g) for g in match.groups()[:6])
        row.update(
            listed=listed,
            unchanged=unchanged,
            read=read,
            dicom=dicom,
            written=written,
            errors=errors,
            inner_seconds=float(match.group(7)),
        )
    if m.returncode != 0 or not match:
        row["stderr_tail"] = m.stderr[-3000:]
    return row


def run_baseline(method: str, corpus: Path, processes: int, limit: int) -> dict[str, Any]:
    cmd = python_cmd(
        str(Path(__file__).resolve()), "_baseline", method, str(corpus), str(processes), str(limit)
    )
    m = run_measured(cmd)
    row: dict[str, Any] = {
        "seconds": m.seconds,
        "peak_mb": m.peak_mb,
        "peak_pss_mb": m.peak_pss_mb,
        "returncode": m.returncode,
        "max_procs": m.max_procs,
        "cpu_seconds": m.cpu_seconds,
        "other_cores": m.other_cores,
        "harness_cpu": m.harness_cpu,
    }
    try:
        inner = json.loads(m.stdout.strip().splitlines()[-1])
        row.update(inner)
    except (ValueError, IndexError):
        row["stderr_tail"] = m.stderr[-3000:]
    return row


def measured(a: argparse.Namespace, label: str, run: Any) -> list[dict[str, Any]]:
    """Run one variant after waiting for a quiet machine; again (at most ``a.retries`` times)
    while other processes kept more than ``a.max_other_load`` cores busy during the run.

    Every attempt is returned; disturbed ones are flagged and only count when no
    undisturbed attempt exists (see :func:`summarize`).
    """
    out: list[dict[str, Any]] = []
    for _ in range(a.retries + 1):
        busy = wait_for_quiet(a.quiet_wait)
        print(
            f"{label} (idle check: {busy:.2f} cores busy) ...", file=sys.stderr, end=" ", flush=True
        )
        r = run()
        r["disturbed"] = r.get("other_cores", 0.0) > a.max_other_load
        out.append(r)
        print(
            f"{r['seconds']:.2f} s, {r['peak_mb']:.0f} MB, other load {r.get('other_cores', 0):.2f}"
            + (" (disturbed)" if r["disturbed"] else ""),
            file=sys.stderr,
        )
        if r.get("stderr_tail"):
            print(r["stderr_tail"], file=sys.stderr)
        if not r["disturbed"] or r.get("returncode") != 0:
            break
    return out


def ensure_corpus(files: int, seed: int, corpus: str | None) -> Path:
    import make_corpus

    root = Path(corpus) if corpus else corpus_dir(files, seed)
    make_corpus.build(root, files, seed)
    return root


def warm(corpus: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    paths = list(iter_paths(corpus))
    nbytes = warm_page_cache(paths)
    return {"files": len(paths), "bytes": nbytes, "seconds": time.perf_counter() - t0}


def files_of(row: dict[str, Any], default: int) -> int:
    if "read" in row:
        return int(row["read"])
    return int(row.get("files", default))


def summarize(runs: list[dict[str, Any]], default_files: int) -> dict[str, Any]:
    """Best (fastest) of the rounds, with the median and the spread kept alongside.

    The best round is the least disturbed by other work on the machine, which is
    why it is the headline figure; ``spread_pct`` says how much the rounds differ.
    """
    clean = [r for r in runs if not r.get("disturbed")]
    disturbed = not clean
    runs = clean or runs
    secs = [r["seconds"] for r in runs]
    files = files_of(runs[0], default_files)
    best = min(secs)
    med = statistics.median(secs)
    fastest = runs[secs.index(best)]
    return {
        "files": files,
        "seconds": best,
        "seconds_median": med,
        "seconds_all": secs,
        "spread_pct": 100 * (max(secs) - best) / best if best else 0.0,
        "files_per_s": files / best if best else 0.0,
        "files_per_s_median": files / med if med else 0.0,
        "peak_mb": max(r["peak_mb"] for r in runs),
        "peak_pss_mb": max(r.get("peak_pss_mb", 0.0) for r in runs),
        "cpu_seconds": fastest.get("cpu_seconds", 0.0),
        "other_cores": fastest.get("other_cores", 0.0),
        "other_cores_max": max(r.get("other_cores", 0.0) for r in runs),
        "inner_seconds": fastest.get("inner_seconds"),
        "errors": runs[0].get("errors"),
        "ok": all(r.get("returncode") == 0 for r in runs),
        "rounds": len(runs),
        "disturbed": disturbed,
    }


def markdown(rows: list[tuple[str, int, dict[str, Any]]], repeat: int) -> str:
    head = (
        "| variant | processes | files | seconds | files/s | peak MB (RSS sum) | peak PSS MB "
        "| CPU s | other load |"
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if repeat > 1:
        head += " median s | spread |"
        sep += "---:|---:|"
    lines = [head, sep]
    for name, procs, s in rows:
        line = (
            f"| {name} | {procs} | {s['files']:,} | {s['seconds']:.2f} | {s['files_per_s']:,.0f} "
            f"| {s['peak_mb']:,.0f} | {s['peak_pss_mb']:,.0f} | {s['cpu_seconds']:.1f} "
            f"| {s['other_cores']:.2f} |"
        )
        if repeat > 1:
            line += f" {s['seconds_median']:.2f} | {s['spread_pct']:.0f}% |"
        if not s["ok"]:
            line += " FAILED"
        if s["disturbed"]:
            line += " (every round disturbed by other load)"
        lines.append(line)
    return "\n".join(lines)


def full_comparison(a: argparse.Namespace) -> dict[str, Any]:
    corpus = ensure_corpus(a.files, a.seed, a.corpus)
    tables = WORK_DIR / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    print(f"warming the page cache: {corpus}", file=sys.stderr)
    w = warm(corpus)
    print(
        f"  {w['files']:,} files, {w['bytes'] / 2**20:,.0f} MiB in {w['seconds']:.1f} s",
        file=sys.stderr,
    )
    # warm the interpreters' imports too (bytecode, shared libraries)
    run_measured(python_cmd("-c", "import pydicom, multiprocessing"))
    run_measured([pixels_exe(), "--help"])

    n = w["files"]
    dbx_limit = a.dbx_subset if 0 < a.dbx_subset < n else 0
    plan: list[tuple[str, int]] = [
        ("header-loop", 1),
        ("header-loop", 2),
        ("dbx-method", 1),
        ("dbx-method", 2),
        ("pixels", 1),
        ("pixels", 2),
    ]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {
        k: [] for k in [*plan, ("pixels-rerun", 2)]
    }
    for rnd in range(a.repeat):
        for name, procs in plan:
            if a.skip_baselines and name != "pixels":
                continue
            label = f"[{rnd + 1}/{a.repeat}] {name} x{procs}"
            if name == "header-loop":
                runs[(name, procs)] += measured(
                    a, label, lambda p=procs: run_baseline("header", corpus, p, 0)
                )
            elif name == "dbx-method":
                runs[(name, procs)] += measured(
                    a, label, lambda p=procs: run_baseline("dbx", corpus, p, dbx_limit)
                )
            else:
                table = tables / f"pixels-w{procs}"
                runs[(name, procs)] += measured(
                    a, label, lambda p=procs, t=table: run_pixels(corpus, t, p, fresh=True)
                )
                if procs == 2:  # the table now holds every file: a no-op re-run
                    runs[("pixels-rerun", 2)] += measured(
                        a,
                        f"[{rnd + 1}/{a.repeat}] pixels-rerun x2",
                        lambda t=table: run_pixels(corpus, t, 2, fresh=False),
                    )

    summary: list[tuple[str, int, dict[str, Any]]] = []
    for (name, procs), rs in runs.items():
        if not rs:
            continue
        s = summarize(rs, n)
        if name == "pixels-rerun":
            s["files_listed"] = rs[0].get("listed")
            s["files"] = rs[0].get("listed", n)  # rate of the no-op pass over the listing
            s["files_per_s"] = s["files"] / s["seconds"] if s["seconds"] else 0.0
        if name == "dbx-method":
            s["subset"] = bool(dbx_limit)
        summary.append((name, procs, s))
    fps = {(name, procs): s["files_per_s"] for name, procs, s in summary if s["ok"]}

    def ratio(x: tuple[str, int], y: tuple[str, int]) -> float | None:
        return fps[x] / fps[y] if fps.get(x) and fps.get(y) else None

    ratios = {
        "pixels2/dbx2": ratio(("pixels", 2), ("dbx-method", 2)),
        "pixels2/header2": ratio(("pixels", 2), ("header-loop", 2)),
        "pixels2/pixels1": ratio(("pixels", 2), ("pixels", 1)),
        "header2/header1": ratio(("header-loop", 2), ("header-loop", 1)),
        "dbx2/dbx1": ratio(("dbx-method", 2), ("dbx-method", 1)),
    }
    targets = {
        "pixels2/dbx2 >= 3": (ratios["pixels2/dbx2"] or 0) >= 3,
        "pixels2/header2 >= 0.5": (ratios["pixels2/header2"] or 0) >= 0.5,
        "pixels2/pixels1 >= 1.7": (ratios["pixels2/pixels1"] or 0) >= 1.7,
    }
    table = markdown(summary, a.repeat)
    lines = [table, ""]
    if dbx_limit:
        lines.append(f"dbx-method measured on {dbx_limit:,} evenly spaced files of {n:,}.")
    lines.append("pixels-rerun: files = files listed (nothing new to read).")
    lines.append("")
    lines.append("| ratio (files/s) | value | target |")
    lines.append("|---|---:|---|")
    goal = {"pixels2/dbx2": ">= 3", "pixels2/header2": ">= 0.5", "pixels2/pixels1": ">= 1.7"}
    for k, v in ratios.items():
        lines.append(f"| {k} | {'n/a' if v is None else f'{v:.2f}'} | {goal.get(k, '')} |")
    text = "\n".join(lines)
    print(text)
    return {
        "kind": "full",
        "corpus": str(corpus),
        "files": n,
        "corpus_bytes": w["bytes"],
        "repeat": a.repeat,
        "dbx_subset": dbx_limit or None,
        "results": [{"variant": name, "processes": procs, **s} for name, procs, s in summary],
        "raw": {f"{name}/{procs}": rs for (name, procs), rs in runs.items()},
        "ratios": ratios,
        "targets_met": targets,
        "markdown": text,
    }


def memory_only(a: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in a.sizes.split(",") if s]
    tables = WORK_DIR / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sizes:
        corpus = ensure_corpus(size, a.seed, None)
        w = warm(corpus)
        print(
            f"{size:,} files: warmed {w['bytes'] / 2**20:,.0f} MiB in {w['seconds']:.1f} s",
            file=sys.stderr,
        )
        table = tables / f"mem-{size}"
        for rnd in range(a.repeat):
            fresh = functools.partial(run_pixels, corpus, table, 2, True)
            again = functools.partial(run_pixels, corpus, table, 2, False)
            r = measured(a, f"  {size:,} pixels x2", fresh)[-1]  # last = undisturbed if any
            r2 = measured(a, f"  {size:,} rerun x2", again)[-1]
            rows.append(
                {
                    "files": size,
                    "round": rnd + 1,
                    "corpus_bytes": w["bytes"],
                    "seconds": r["seconds"],
                    "files_per_s": r.get("read", size) / r["seconds"],
                    "peak_mb": r["peak_mb"],
                    "peak_pss_mb": r["peak_pss_mb"],
                    "errors": r.get("errors"),
                    "returncode": r["returncode"],
                    "cpu_seconds": r["cpu_seconds"],
                    "other_cores": r["other_cores"],
                    "rerun_seconds": r2["seconds"],
                    "rerun_peak_mb": r2["peak_mb"],
                    "rerun_peak_pss_mb": r2["peak_pss_mb"],
                    "rerun_read": r2.get("read"),
                    "disturbed": r["disturbed"],
                }
            )
        if not a.keep_tables:
            shutil.rmtree(table, ignore_errors=True)
    lines = [
        "| files | seconds | files/s | peak MB (RSS sum) | peak PSS MB | other load "
        "| no-op re-run s | re-run peak MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['files']:,} | {r['seconds']:.1f} | {r['files_per_s']:,.0f} "
            f"| {r['peak_mb']:,.0f} | {r['peak_pss_mb']:,.0f} | {r['other_cores']:.2f} "
            f"| {r['rerun_seconds']:.1f} | {r['rerun_peak_mb']:,.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    return {"kind": "memory", "sizes": sizes, "results": rows, "markdown": text}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_baseline":
        method, root, procs, limit = argv[1:5]
        baseline_main(method, root, int(procs), int(limit))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000, help="corpus size [20000]")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed [0]")
    ap.add_argument("--corpus", default=None, help="corpus folder [bench/.work/corpus-N-sSEED]")
    ap.add_argument("--out", default=None, help="results JSON [bench/.work/results-*.json]")
    ap.add_argument(
        "--dbx-subset",
        type=int,
        default=5000,
        help="files for the dbx-method baseline, evenly spaced; 0 = all [5000]",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every variant [1]")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each variant, wait up to this many seconds for an idle machine [120]",
    )
    ap.add_argument(
        "--max-other-load",
        type=float,
        default=0.25,
        help="a run during which other processes kept more cores busy is disturbed [0.25]",
    )
    ap.add_argument("--retries", type=int, default=2, help="re-runs of a disturbed run [2]")
    ap.add_argument("--skip-baselines", action="store_true", help="only the pixels variants")
    ap.add_argument("--memory-only", action="store_true", help="only pixels x2, at each of --sizes")
    ap.add_argument("--sizes", default="10000,100000", help="corpus sizes for --memory-only")
    ap.add_argument("--keep-tables", action="store_true", help="keep the --memory-only tables")
    a = ap.parse_args(argv)

    t0 = time.time()
    digest = source_digest()
    result = memory_only(a) if a.memory_only else full_comparison(a)
    result["machine"] = machine_info()
    if result["machine"]["src_digest"] != digest:
        result["src_changed_during_run"] = True
        print(
            "warning: src/pixels changed during the run; rerun for clean figures", file=sys.stderr
        )
    result["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0))
    result["argv"] = argv
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t0))
    out = a.out or str(WORK_DIR / f"results-{result['kind']}-{stamp}.json")
    dump_json(out, result)
    print(f"\nresults: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
