"""Spark engine against the local engine: throughput and memory, same run, same corpus.

Variants (each one a fresh subprocess, timed from spawn to exit, peak memory =
summed RSS of the process and all its children, the JVM and Spark's Python
workers included, sampled every 50 ms):

* ``local``         ``pixels catalog CORPUS --table T --workers N -q`` into a fresh
  Delta table (the baseline; the same command as ``bench_catalog.py``).
* ``local-rerun``   the same command again on the same table (nothing new).
* ``spark``         a Python process that starts ``local_session("local[N]")`` and
  runs ``Catalog(spark, table=T).catalog(CORPUS)`` + ``DicomMetaExtractor`` +
  ``catalog.save`` into a fresh table, then stops the session. Besides the
  spawn-to-exit time, the process reports (JSON on stdout) the time of each
  phase: imports, session start, ``catalog()`` (the listing),
  ``save`` (reading, writing, commit; the listing runs in ``catalog()``) and
  ``spark.stop()``; the CPU time of the driver, the JVM and the Python workers;
  and the tasks of every Spark stage.
* ``spark-rerun``   the same again on the same table (nothing new: no commit).
* with ``--thumbnails``: ``local-thumbs`` (``--thumbnails``: the thumbnail made
  in the same read), ``spark-thumbs`` (``DicomThumbnailExtractor`` after
  ``DicomMetaExtractor``: the dbx.pixels pipeline, a second read of the frame)
  and ``spark-thumbs-1pass`` (``DicomMetaExtractor(thumbnails=True)``: one read,
  as the local engine does).

* with ``--marginal N``: ``local``/``spark`` and their re-runs (most slots) on an
  N-file corpus too; the difference between the two sizes gives the rate once
  the fixed costs are paid, and the CPU time each further file costs.
* with ``--profile``: two more, untimed, Spark runs (fresh and re-run) with the
  event log on, summed per stage (task time, JVM CPU, GC, Python worker
  start/init/run time, bytes to and from Python, shuffle).

The page cache is warmed first (every file read once), and a Spark session is
started and stopped once so the jars are in the page cache too. The tables go
to ``bench/.work/tables/bs-*``.

Usage::

    python bench/bench_spark.py --files 20000 --repeat 2 --slots 1,2 --thumbnails \
        --marginal 100000 --profile --quiet-wait 300 --out bench/results/spark-20000.json
    python bench/bench_spark.py --files 500 --slots 2 --quiet-wait 5    # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    WORK_DIR,
    dump_json,
    machine_info,
    python_cmd,
    run_measured,
    source_digest,
)
from bench_catalog import (
    SUMMARY,
    _int,
    ensure_corpus,
    measured,
    pixels_exe,
    summarize,
    warm,
)

JOB_GROUP = "pixels-bench"

# --------------------------------------------------------------------------- Spark child
# Runs inside the child process started by the harness (``_spark`` sub-command).


def _cpu_by_role() -> dict[str, Any]:
    """CPU seconds and RSS (MB, now) of this process, the JVM and Spark's Python workers.

    Only processes alive at the call count (Python workers are reused and stay up
    until the session stops).
    """
    import psutil

    me = psutil.Process()
    out: dict[str, Any] = {"workers": 0}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            rss = p.memory_info().rss / 2**20
            if p.pid == me.pid:
                role = "driver_python"
            elif p.name() == "java":
                role = "jvm"
            elif "pyspark.daemon" in " ".join(p.cmdline()):
                role = "python_workers"
                out["workers"] += 1
            else:
                role = "other"
        except psutil.Error:
            continue
        out[role] = out.get(role, 0.0) + t.user + t.system
        out[role + "_rss_mb"] = out.get(role + "_rss_mb", 0.0) + rss
    return out


def _stages(sc: Any) -> list[dict[str, Any]]:
    """Tasks of every stage of the jobs run in the benchmark's job group."""
    tracker = sc.statusTracker()
    out = []
    for job in sorted(tracker.getJobIdsForGroup(JOB_GROUP)):
        info = tracker.getJobInfo(job)
        if info is None:
            continue
        for sid in sorted(info.stageIds):
            st = tracker.getStageInfo(sid)
            if st is not None and st.numCompletedTasks > 0:  # skipped stages: none
                out.append(
                    {
                        "job": job,
                        "stage": sid,
                        "name": st.name,
                        "tasks": st.numTasks,
                        "failed": st.numFailedTasks,
                    }
                )
    return out


def spark_main(
    corpus: str, table: str, master: str, thumbs: str, driver_memory: str, event_log: str
) -> None:
    """Entry of the Spark child: one catalog + save, one JSON line of timings on stdout."""
    t0 = time.perf_counter()
    from pixels import Catalog
    from pixels.dicom import DicomMetaExtractor, DicomThumbnailExtractor
    from pixels.engines.spark import local_session

    t_import = time.perf_counter()
    conf = {}
    if event_log:
        Path(event_log).mkdir(parents=True, exist_ok=True)
        conf = {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": event_log,
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false",
        }
    spark = local_session(master, driver_memory=driver_memory, conf=conf)
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    t_session = time.perf_counter()

    sc.setJobGroup(JOB_GROUP, "catalog + save")
    catalog = Catalog(spark, table=table)
    df = catalog.catalog(corpus)
    t_catalog = time.perf_counter()
    out = DicomMetaExtractor(catalog, thumbnails=thumbs == "1pass").transform(df)
    if thumbs == "extractor":
        out = DicomThumbnailExtractor().transform(out)
    result = catalog.save(out)
    t_save = time.perf_counter()

    cpu = _cpu_by_role()
    stages = _stages(sc)
    app_id = sc.applicationId
    slots = sc.defaultParallelism
    t_stop0 = time.perf_counter()
    spark.stop()
    t_stop = time.perf_counter()
    print(
        json.dumps(
            {
                "rows": result.rows,
                "data_files": result.files,
                "replaced": result.replaced,
                "skipped": result.skipped,
                "version": result.version,
                "save_result_seconds": result.seconds,
                "import_seconds": t_import - t0,
                "session_seconds": t_session - t_import,
                "catalog_seconds": t_catalog - t_session,
                "save_seconds": t_save - t_catalog,
                "pipeline_seconds": t_save - t_session,
                "stop_seconds": t_stop - t_stop0,
                "inner_seconds": t_stop - t0,
                "cpu_by_role": cpu,
                "stages": stages,
                "task_slots": slots,
                "app_id": app_id,
            }
        )
    )


# --------------------------------------------------------------------------- harness


def table_facts(table: Path) -> dict[str, Any]:
    """Rows, rows with an error, data files and version of the table (read after the run)."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    if not (table / "_delta_log").is_dir():
        return {"table_rows": 0, "table_errors": 0, "table_data_files": 0}
    dt = DeltaTable(str(table))
    uris = list(dt.file_uris())
    rows = errors = 0
    for uri in uris:
        col = pq.read_table(uri.removeprefix("file://"), columns=["error"])["error"]
        rows += len(col)
        errors += len(col) - col.null_count
    return {
        "table_rows": rows,
        "table_errors": errors,
        "table_data_files": len(uris),
        "table_version": dt.version(),
    }


def _row(m: Any) -> dict[str, Any]:
    return {
        "seconds": m.seconds,
        "peak_mb": m.peak_mb,
        "peak_pss_mb": m.peak_pss_mb,
        "returncode": m.returncode,
        "max_procs": m.max_procs,
        "cpu_seconds": m.cpu_seconds,
        "other_cores": m.other_cores,
        "harness_cpu": m.harness_cpu,
    }


def run_local(
    corpus: Path, table: Path, workers: int, fresh: bool, thumbnails: bool = False
) -> dict[str, Any]:
    """``pixels catalog`` (the local engine) as in ``bench_catalog.run_pixels``, plus --thumbnails."""
    if fresh and table.exists():
        shutil.rmtree(table)
    cmd = [pixels_exe(), "catalog", str(corpus), "--table", str(table)]
    cmd += ["--workers", str(workers), "-q"] + (["--thumbnails"] if thumbnails else [])
    m = run_measured(cmd)
    row = _row(m)
    row["command"] = " ".join(cmd)
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
    row.update(table_facts(table))
    return row


def run_spark(
    corpus: Path,
    table: Path,
    slots: int,
    fresh: bool,
    thumbs: str = "none",
    driver_memory: str = "2g",
    event_log: str = "",
) -> dict[str, Any]:
    """The Spark child (``_spark``): spawn to exit, with its own JSON of phase timings."""
    if fresh and table.exists():
        shutil.rmtree(table)
    cmd = python_cmd(
        str(Path(__file__).resolve()),
        "_spark",
        str(corpus),
        str(table),
        f"local[{slots}]",
        thumbs,
        driver_memory,
        event_log,
    )
    m = run_measured(cmd)
    row = _row(m)
    try:
        line = [s for s in m.stdout.splitlines() if s.startswith("{")][-1]
        row.update(json.loads(line))
        row["files"] = row["rows"]  # files cataloged (= read: the listing drops known files)
    except (ValueError, IndexError):
        row["stderr_tail"] = m.stderr[-3000:]
    facts = table_facts(table)
    row.update(facts)
    row["errors"] = facts["table_errors"]
    return row


def _warm_spark(driver_memory: str) -> None:
    """Start and stop one session: the jars and Python modules are then in the page cache."""
    code = (
        "from pixels.engines.spark import local_session\n"
        f"local_session('local[1]', driver_memory={driver_memory!r}).stop()\n"
    )
    run_measured(python_cmd("-c", code))


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def markdown(rows: list[tuple[str, int, dict[str, Any]]], repeat: int) -> str:
    head = (
        "| variant | slots | files | seconds | files/s | session s | save s | save files/s "
        "| data files | peak MB (RSS sum) | peak PSS MB | CPU s | other load |"
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if repeat > 1:
        head += " median s | spread |"
        sep += "---:|---:|"
    lines = [head, sep]
    for name, slots, s in rows:
        save = s.get("save_seconds")
        save_fps = s["files"] / save if save else None
        line = (
            f"| {name} | {slots} | {s['files']:,} | {s['seconds']:.2f} | {s['files_per_s']:,.0f} "
            f"| {_fmt(s.get('session_seconds'), '.2f')} | {_fmt(save, '.2f')} "
            f"| {_fmt(save_fps, ',.0f')} | {_fmt(s.get('data_files'), 'd')} "
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


def _details(runs: list[dict[str, Any]], s: dict[str, Any]) -> None:
    """Copy the phase timings of the fastest clean round into its summary ``s``."""
    clean = [r for r in runs if not r.get("disturbed")] or runs
    best = min(clean, key=lambda r: r["seconds"])
    for k in (
        "session_seconds",
        "catalog_seconds",
        "save_seconds",
        "pipeline_seconds",
        "stop_seconds",
        "import_seconds",
        "save_result_seconds",
        "cpu_by_role",
        "stages",
        "table_rows",
        "table_errors",
        "table_data_files",
        "listed",
        "read",
        "inner_seconds",
    ):
        if k in best:
            s[k] = best[k]
    s["rounds_disturbed"] = sum(1 for r in runs if r.get("disturbed"))


def _marginal(
    stats: dict[tuple[str, int], dict[str, Any]], n: int, big_n: int, k: int
) -> dict[str, dict[str, float | None]]:
    """Rate of the files beyond the first ``n``: (big_n - n) / (t(big_n) - t(n)), per engine.

    The fixed costs (interpreter and JVM start, Spark's first jobs, Python worker
    start-up) cancel out; what remains is the steady per-file rate of ``k`` slots,
    and the CPU time (all processes) each further file costs.
    """
    out: dict[str, dict[str, float | None]] = {}
    for engine, inner in (("local", "inner_seconds"), ("spark", "save_seconds")):
        small, large = stats.get((engine, k)), stats.get((f"{engine}-{big_n}", k))
        if not small or not large or big_n <= n:
            continue
        extra = big_n - n

        def rate(dt: float | None, extra: int = extra) -> float | None:
            return extra / dt if dt and dt > 0 else None

        d_inner = None
        if large.get(inner) is not None and small.get(inner) is not None:
            d_inner = large[inner] - small[inner]
        out[engine] = {
            "files_per_s": rate(large["seconds"] - small["seconds"]),
            "inner_files_per_s": rate(d_inner),
            "cpu_ms_per_file": 1000 * (large["cpu_seconds"] - small["cpu_seconds"]) / extra,
        }
    return out


def _units(corpus: Path, slots: int) -> int:
    """Listing units the driver cuts ``corpus`` into at ``slots`` task slots (catalog()'s rule)."""
    from pixels.engines.spark.listing import plan_units

    return len(plan_units(str(corpus), target=4 * slots))


PLAN_ORDER = ("local", "spark", "local-thumbs", "spark-thumbs", "spark-thumbs-1pass")


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
    run_measured([pixels_exe(), "--help"])
    _warm_spark(a.driver_memory)

    n = w["files"]
    slots = [int(s) for s in a.slots.split(",") if s]
    plan: list[tuple[str, int]] = []
    for name in PLAN_ORDER:
        if "thumbs" in name and not a.thumbnails:
            continue
        for k in slots if "thumbs" not in name else [max(slots)]:
            plan.append((name, k))
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(a.repeat):
        for name, k in plan:
            label = f"[{rnd + 1}/{a.repeat}] {name} x{k}"
            table = tables / f"bs-{name}-{k}"
            if name.startswith("local"):
                th = name == "local-thumbs"
                runs.setdefault((name, k), []).extend(
                    measured(
                        a, label, lambda k=k, t=table, th=th: run_local(corpus, t, k, True, th)
                    )
                )
                if name == "local":
                    runs.setdefault(("local-rerun", k), []).extend(
                        measured(
                            a,
                            f"[{rnd + 1}/{a.repeat}] local-rerun x{k}",
                            lambda k=k, t=table: run_local(corpus, t, k, False),
                        )
                    )
            else:
                thumbs = {"spark": "none", "spark-thumbs": "extractor"}.get(name, "1pass")
                runs.setdefault((name, k), []).extend(
                    measured(
                        a,
                        label,
                        lambda k=k, t=table, th=thumbs: run_spark(
                            corpus, t, k, True, th, a.driver_memory
                        ),
                    )
                )
                if name == "spark":
                    runs.setdefault(("spark-rerun", k), []).extend(
                        measured(
                            a,
                            f"[{rnd + 1}/{a.repeat}] spark-rerun x{k}",
                            lambda k=k, t=table: run_spark(
                                corpus, t, k, False, "none", a.driver_memory
                            ),
                        )
                    )

    big_n = 0
    if a.marginal:
        # the same two variants on a larger corpus: the rate once fixed costs are paid
        big = ensure_corpus(a.marginal, a.seed, None)
        wb = warm(big)
        big_n = wb["files"]
        print(f"  {big_n:,} files warmed in {wb['seconds']:.1f} s", file=sys.stderr)
        k = max(slots)
        for rnd in range(a.repeat):
            for engine in ("local", "spark"):
                table = tables / f"bs-{engine}-{big_n}-{k}"
                for rerun in (False, True):  # fresh table, then the no-op re-run on it
                    name = f"{engine}{'-rerun' if rerun else ''}-{big_n}"
                    run = (
                        (lambda k=k, t=table, f=not rerun: run_local(big, t, k, f))
                        if engine == "local"
                        else (
                            lambda k=k, t=table, f=not rerun: run_spark(
                                big, t, k, f, "none", a.driver_memory
                            )
                        )
                    )
                    runs.setdefault((name, k), []).extend(
                        measured(a, f"[{rnd + 1}/{a.repeat}] {name} x{k}", run)
                    )

    summary: list[tuple[str, int, dict[str, Any]]] = []
    order = ["local", "local-rerun", "spark", "spark-rerun", *PLAN_ORDER[2:]]
    if big_n:
        order += [f"{e}-{big_n}" for e in ("local", "local-rerun", "spark", "spark-rerun")]
    for name in order:
        files = big_n if big_n and name.endswith(f"-{big_n}") else n
        for k in sorted({k for nm, k in runs if nm == name}):
            rs = runs[(name, k)]
            s = summarize(rs, files)
            _details(rs, s)
            if "rerun" in name:
                s["files"] = files  # rate of the no-op pass over the listing
                s["files_per_s"] = files / s["seconds"] if s["seconds"] else 0.0
                s["data_files"] = None
            else:
                s["data_files"] = s.get("table_data_files")
                bad = s.get("table_rows") != files
                s["ok"] = s["ok"] and not bad
            summary.append((name, k, s))
    fps = {(name, k): s["files_per_s"] for name, k, s in summary if s["ok"]}
    stats = {(name, k): s for name, k, s in summary}

    def ratio(x: tuple[str, int], y: tuple[str, int]) -> float | None:
        return fps[x] / fps[y] if fps.get(x) and fps.get(y) else None

    ratios: dict[str, float | None] = {}
    for k in slots:
        ratios[f"spark{k}/local{k}"] = ratio(("spark", k), ("local", k))
        sp, lo = stats.get(("spark", k)), stats.get(("local", k))
        if sp and lo and sp.get("save_seconds") and lo.get("inner_seconds"):
            # both without process start: Spark's save (session up) vs the local command's own timer
            ratios[f"spark{k}-save/local{k}-inner"] = lo["inner_seconds"] / sp["save_seconds"]
        ratios[f"spark-rerun{k}/local-rerun{k}"] = ratio(("spark-rerun", k), ("local-rerun", k))
    if len(slots) > 1:
        lo_k, hi_k = min(slots), max(slots)
        ratios[f"spark{hi_k}/spark{lo_k}"] = ratio(("spark", hi_k), ("spark", lo_k))
        ratios[f"local{hi_k}/local{lo_k}"] = ratio(("local", hi_k), ("local", lo_k))
    if a.thumbnails:
        k = max(slots)
        ratios[f"spark-thumbs{k}/local-thumbs{k}"] = ratio(("spark-thumbs", k), ("local-thumbs", k))
        ratios[f"spark-thumbs-1pass{k}/local-thumbs{k}"] = ratio(
            ("spark-thumbs-1pass", k), ("local-thumbs", k)
        )

    marginal = _marginal(stats, n, big_n, max(slots)) if big_n else None
    if big_n:
        k = max(slots)
        ratios[f"spark{k}/local{k} ({big_n} files)"] = ratio(
            (f"spark-{big_n}", k), (f"local-{big_n}", k)
        )
        ratios[f"spark-rerun{k}/local-rerun{k} ({big_n} files)"] = ratio(
            (f"spark-rerun-{big_n}", k), (f"local-rerun-{big_n}", k)
        )
    if marginal and "spark" in marginal and "local" in marginal:
        sp, lo = marginal["spark"], marginal["local"]
        for key in ("files_per_s", "inner_files_per_s"):
            if sp[key] and lo[key]:
                ratios[f"marginal spark{max(slots)}/local{max(slots)} ({key})"] = sp[key] / lo[key]
    lines = [markdown(summary, a.repeat), ""]
    lines.append(
        "seconds: spawn to exit; session s: Spark session start; save s: catalog.save() "
        "(every Spark job); save files/s = files / save s. Reruns: files = files listed."
    )
    lines += ["", "| ratio (files/s) | value |", "|---|---:|"]
    lines += [f"| {k} | {'n/a' if v is None else f'{v:.2f}'} |" for k, v in ratios.items()]
    if marginal:
        lines += ["", f"Marginal ({n:,} -> {big_n:,} files, x{max(slots)}):", ""]
        lines += ["| engine | files/s (spawn to exit) | files/s (save / inner) | CPU ms per file |"]
        lines += ["|---|---:|---:|---:|"]
        for engine, m in marginal.items():
            lines.append(
                f"| {engine} | {_fmt(m['files_per_s'], ',.0f')} | {_fmt(m['inner_files_per_s'], ',.0f')} "
                f"| {_fmt(m['cpu_ms_per_file'], '.3f')} |"
            )
    for name, k, s in summary:
        if name.startswith("spark") and s.get("cpu_by_role"):
            c = s["cpu_by_role"]
            tasks = ", ".join(str(st["tasks"]) for st in s.get("stages", []))
            lines.append(
                f"\n{name} x{k}: CPU s driver {c.get('driver_python', 0):.1f}, "
                f"JVM {c.get('jvm', 0):.1f}, Python workers {c.get('python_workers', 0):.1f} "
                f"({c['workers']} processes); RSS at the end of save: driver "
                f"{c.get('driver_python_rss_mb', 0):.0f} MB, JVM {c.get('jvm_rss_mb', 0):.0f} MB, "
                f"workers {c.get('python_workers_rss_mb', 0):.0f} MB; "
                f"phases: import {s.get('import_seconds', 0):.2f}, session "
                f"{s.get('session_seconds', 0):.2f}, catalog() {s.get('catalog_seconds', 0):.2f}, "
                f"save {s.get('save_seconds', 0):.2f}, stop {s.get('stop_seconds', 0):.2f} s; "
                f"tasks per stage: {tasks}"
            )
    text = "\n".join(lines)
    print(text)
    profile = spark_profile(a, corpus, tables) if a.profile else None
    return {
        "kind": "spark",
        "corpus": str(corpus),
        "files": n,
        "corpus_bytes": w["bytes"],
        "repeat": a.repeat,
        "results": [{"variant": name, "slots": k, **s} for name, k, s in summary],
        "raw": {f"{name}/{k}": rs for (name, k), rs in runs.items()},
        "ratios": ratios,
        "listing_units": {str(k): _units(corpus, k) for k in slots},
        "marginal": marginal,
        "profile": profile,
        "markdown": text,
    }


# --------------------------------------------------------------------------- profile


#: Stage accumulables kept by the profile: name -> (key, divisor to seconds or MB).
_STAGE_METRICS = {
    "internal.metrics.executorRunTime": ("task_run_s", 1e3),
    "internal.metrics.executorCpuTime": ("jvm_task_cpu_s", 1e9),
    "internal.metrics.jvmGCTime": ("gc_s", 1e3),
    "internal.metrics.shuffle.write.bytesWritten": ("shuffle_write_mb", 2**20),
    "time to start Python workers": ("py_start_s", 1e3),
    "time to initialize Python workers": ("py_init_s", 1e3),
    "time to run Python workers": ("py_run_s", 1e3),
    "time to execute Python code": ("py_exec_s", 1e3),
    "data sent to Python workers": ("to_python_mb", 2**20),
    "data returned from Python workers": ("from_python_mb", 2**20),
}


def _stage_table(log: Path) -> list[dict[str, Any]]:
    """Per stage, from a Spark event log: wall time, tasks, task and Python-worker metrics.

    Sums over the stage's tasks (and over its Python operators when it has several).
    """
    stages = []
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("Event") != "SparkListenerStageCompleted":
            continue
        info = ev["Stage Info"]
        sub, done = info.get("Submission Time"), info.get("Completion Time")
        st: dict[str, Any] = {
            "stage": info["Stage ID"],
            "name": info.get("Stage Name"),
            "tasks": info.get("Number of Tasks"),
            "wall_s": (done - sub) / 1000 if sub and done else None,
        }
        for acc in info.get("Accumulables", []):
            key = _STAGE_METRICS.get(acc.get("Name", ""))
            if key is None:
                continue
            try:
                value = float(acc["Value"]) / key[1]
            except (KeyError, TypeError, ValueError):
                continue
            st[key[0]] = st.get(key[0], 0.0) + value
        stages.append(st)
    return sorted(stages, key=lambda st: st["stage"])


_PROFILE_COLUMNS = [
    ("tasks", "tasks", "d"),
    ("wall s", "wall_s", ".2f"),
    ("task run s", "task_run_s", ".2f"),
    ("JVM task CPU s", "jvm_task_cpu_s", ".2f"),
    ("GC s", "gc_s", ".2f"),
    ("Python start s", "py_start_s", ".2f"),
    ("Python init s", "py_init_s", ".2f"),
    ("Python run s", "py_run_s", ".2f"),
    ("Python exec s", "py_exec_s", ".2f"),
    ("to Python MB", "to_python_mb", ".1f"),
    ("from Python MB", "from_python_mb", ".1f"),
    ("shuffle write MB", "shuffle_write_mb", ".1f"),
]


def spark_profile(a: argparse.Namespace, corpus: Path, tables: Path) -> dict[str, Any]:
    """Two more (untimed) Spark runs with the event log on, fresh and no-op: where ``save`` goes."""
    k = max(int(s) for s in a.slots.split(",") if s)
    out: dict[str, Any] = {}
    texts = []
    for label, fresh in (("fresh", True), ("rerun", False)):
        logs = WORK_DIR / "spark-events" / label
        if logs.exists():
            shutil.rmtree(logs)
        print(f"profile: spark x{k} ({label}) with the event log", file=sys.stderr)
        table = tables / f"bs-profile-{k}"
        r = run_spark(corpus, table, k, fresh, "none", a.driver_memory, str(logs))
        files = sorted(p for p in logs.rglob("*") if p.is_file() and not p.name.startswith("."))
        stages = _stage_table(files[-1]) if files else []
        lines = [
            "| stage | " + " | ".join(c[0] for c in _PROFILE_COLUMNS) + " |",
            "|---:|" + "---:|" * len(_PROFILE_COLUMNS),
        ]
        for st in stages:
            cells = [_fmt(st.get(key), spec) for _, key, spec in _PROFILE_COLUMNS]
            lines.append(f"| {st['stage']} | " + " | ".join(cells) + " |")
        text = (
            f"profile, spark x{k}, {label} ({r.get('rows', '?')} files cataloged; session "
            f"{r.get('session_seconds', 0):.2f} s, catalog() {r.get('catalog_seconds', 0):.2f} s, "
            f"save {r.get('save_seconds', 0):.2f} s):\n\n" + "\n".join(lines)
        )
        texts.append(text)
        out[label] = {"run": r, "stages": stages}
    out["markdown"] = (
        "\n\n".join(texts) + "\n\nSums over the tasks of a stage (and over its Python "
        "operators); Python run = wall time of a Python operator in its tasks, exec = time "
        "inside the Python function (a writer's includes waiting for its input)."
    )
    print("\n" + out["markdown"])
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_spark":
        corpus, table, master, thumbs, driver_memory, event_log = argv[1:7]
        spark_main(corpus, table, master, thumbs, driver_memory, event_log)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000, help="corpus size [20000]")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed [0]")
    ap.add_argument("--corpus", default=None, help="corpus folder [bench/.work/corpus-N-sSEED]")
    ap.add_argument("--out", default=None, help="results JSON [bench/.work/results-spark-*.json]")
    ap.add_argument(
        "--slots",
        default="1,2",
        help="task slots (local[N]) and local-engine workers, comma-separated [1,2]",
    )
    ap.add_argument(
        "--thumbnails", action="store_true", help="also the thumbnail variants (at the most slots)"
    )
    ap.add_argument("--driver-memory", default="2g", help="Spark driver memory [2g]")
    ap.add_argument(
        "--marginal",
        type=int,
        default=0,
        metavar="N",
        help="also run local and spark (most slots) on an N-file corpus: the rate beyond "
        "the fixed costs [off]",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="one more untimed Spark run with the event log: time and CPU per stage",
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
    a = ap.parse_args(argv)

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    t0 = time.time()
    digest = source_digest()
    result = full_comparison(a)
    result["machine"] = machine_info()
    try:
        import pyspark

        result["machine"]["pyspark"] = pyspark.__version__
    except ImportError:  # pragma: no cover
        result["machine"]["pyspark"] = None
    result["machine"]["java"] = _java_version()
    if result["machine"]["src_digest"] != digest:
        result["src_changed_during_run"] = True
        print(
            "warning: src/pixels changed during the run; rerun for clean figures", file=sys.stderr
        )
    result["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0))
    result["argv"] = argv
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t0))
    out = a.out or str(WORK_DIR / f"results-spark-{stamp}.json")
    dump_json(out, result)
    print(f"\nresults: {out}", file=sys.stderr)


def _java_version() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    m = re.search(r'version "([^"]+)"', out.stderr)
    return m.group(1) if m else None


if __name__ == "__main__":
    main()
