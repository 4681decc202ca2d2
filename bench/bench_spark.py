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
  phase: imports, session start, ``catalog()`` (driver-side planning),
  ``save`` (where every Spark job runs: listing, reading, writing, commit) and
  ``spark.stop()``; the CPU time of the driver, the JVM and the Python workers;
  and the tasks of every Spark stage.
* ``spark-rerun``   the same again on the same table (nothing new: no commit).
* with ``--thumbnails``: ``local-thumbs`` (``--thumbnails``: the thumbnail made
  in the same read), ``spark-thumbs`` (``DicomThumbnailExtractor`` after
  ``DicomMetaExtractor``: the dbx.pixels pipeline, a second read of the frame)
  and ``spark-thumbs-1pass`` (``DicomMetaExtractor(thumbnails=True)``: one read,
  as the local engine does).

The page cache is warmed first (every file read once), and a Spark session is
started and stopped once so the jars are in the page cache too.

Usage::

    python bench/bench_spark.py --files 20000 --repeat 2 --thumbnails
    python bench/bench_spark.py --files 500 --slots 2          # a quick try
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
    """CPU seconds of this process, the JVM and Spark's Python workers (alive now)."""
    import psutil

    me = psutil.Process()
    out: dict[str, Any] = {"driver_python": 0.0, "jvm": 0.0, "python_workers": 0.0, "workers": 0}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            cpu = t.user + t.system
            if p.pid == me.pid:
                out["driver_python"] += cpu
            elif p.name() == "java":
                out["jvm"] += cpu
            elif "pyspark.daemon" in " ".join(p.cmdline()):
                out["python_workers"] += cpu
                out["workers"] += 1
            else:
                out.setdefault("other", 0.0)
                out["other"] += cpu
        except psutil.Error:
            continue
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
            if st is not None:
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
        conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": event_log}
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


def _quiet_spark_start(driver_memory: str) -> None:
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
            f"| {_fmt(save_fps, ',.0f')} | {s.get('data_files', '')} "
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
    _quiet_spark_start(a.driver_memory)

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

    summary: list[tuple[str, int, dict[str, Any]]] = []
    order = ["local", "local-rerun", "spark", "spark-rerun", *PLAN_ORDER[2:]]
    for name in order:
        for k in sorted({k for nm, k in runs if nm == name}):
            rs = runs[(name, k)]
            s = summarize(rs, n)
            _details(rs, s)
            if name.endswith("rerun"):
                s["files"] = n  # rate of the no-op pass over the listing
                s["files_per_s"] = n / s["seconds"] if s["seconds"] else 0.0
                s["data_files"] = None
            else:
                s["data_files"] = s.get("table_data_files")
                bad = s.get("table_rows") != n
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

    lines = [markdown(summary, a.repeat), ""]
    lines.append(
        "seconds: spawn to exit; session s: Spark session start; save s: catalog.save() "
        "(every Spark job); save files/s = files / save s. Reruns: files = files listed."
    )
    lines += ["", "| ratio (files/s) | value |", "|---|---:|"]
    lines += [f"| {k} | {'n/a' if v is None else f'{v:.2f}'} |" for k, v in ratios.items()]
    for name, k, s in summary:
        if name.startswith("spark") and s.get("cpu_by_role"):
            c = s["cpu_by_role"]
            tasks = ", ".join(str(st["tasks"]) for st in s.get("stages", []))
            lines.append(
                f"\n{name} x{k}: CPU s driver {c['driver_python']:.1f}, JVM {c['jvm']:.1f}, "
                f"Python workers {c['python_workers']:.1f} ({c['workers']} processes); "
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
        "profile": profile,
        "markdown": text,
    }


# --------------------------------------------------------------------------- profile


def _stage_table(log: Path) -> list[dict[str, Any]]:
    """Per stage, from a Spark event log: wall time, tasks and the sums of task metrics."""
    stages: dict[int, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        kind = ev.get("Event")
        if kind == "SparkListenerStageCompleted":
            info = ev["Stage Info"]
            st = stages.setdefault(info["Stage ID"], {"stage": info["Stage ID"]})
            st["name"] = info.get("Stage Name")
            st["tasks"] = info.get("Number of Tasks")
            sub, done = info.get("Submission Time"), info.get("Completion Time")
            st["wall_s"] = (done - sub) / 1000 if sub and done else None
        elif kind == "SparkListenerTaskEnd":
            m = ev.get("Task Metrics") or {}
            st = stages.setdefault(ev["Stage ID"], {"stage": ev["Stage ID"]})
            for key, out, scale in (
                ("Executor Run Time", "task_run_s", 1e3),
                ("Executor CPU Time", "jvm_task_cpu_s", 1e9),
                ("JVM GC Time", "gc_s", 1e3),
                ("Executor Deserialize Time", "deserialize_s", 1e3),
            ):
                st[out] = st.get(out, 0.0) + (m.get(key) or 0) / scale
            rd = m.get("Shuffle Read Metrics") or {}
            wr = m.get("Shuffle Write Metrics") or {}
            st["shuffle_read_mb"] = (
                st.get("shuffle_read_mb", 0.0)
                + ((rd.get("Remote Bytes Read") or 0) + (rd.get("Local Bytes Read") or 0)) / 2**20
            )
            st["shuffle_write_mb"] = (
                st.get("shuffle_write_mb", 0.0) + (wr.get("Shuffle Bytes Written") or 0) / 2**20
            )
    return [stages[k] for k in sorted(stages)]


def spark_profile(a: argparse.Namespace, corpus: Path, tables: Path) -> dict[str, Any]:
    """One more (untimed) Spark run with the event log on: where the time of ``save`` goes."""
    k = max(int(s) for s in a.slots.split(",") if s)
    logs = WORK_DIR / "spark-events"
    if logs.exists():
        shutil.rmtree(logs)
    print(f"profile: spark x{k} with the event log", file=sys.stderr)
    r = run_spark(corpus, tables / f"bs-profile-{k}", k, True, "none", a.driver_memory, str(logs))
    files = sorted(logs.iterdir())
    stages = _stage_table(files[-1]) if files else []
    print(
        "\n| stage | name | tasks | wall s | task run s (sum) | task JVM CPU s | GC s "
        "| shuffle write MB |\n|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    for st in stages:
        print(
            f"| {st['stage']} | {(st.get('name') or '')[:40]} | {st.get('tasks')} "
            f"| {_fmt(st.get('wall_s'), '.2f')} | {st.get('task_run_s', 0):.2f} "
            f"| {st.get('jvm_task_cpu_s', 0):.2f} | {st.get('gc_s', 0):.2f} "
            f"| {st.get('shuffle_write_mb', 0):.1f} |"
        )
    return {"run": r, "stages": stages}


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
