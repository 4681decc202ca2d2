"""Helpers shared by the benchmarks in this folder (not part of the package)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"  # git-ignored: corpora, tables, results


def corpus_dir(files: int, seed: int) -> Path:
    """Default location of the corpus of ``files`` files built with ``seed``."""
    return WORK_DIR / f"corpus-{files}-s{seed}"


def iter_paths(root: str | os.PathLike[str]) -> Iterator[str]:
    """Every ``*.dcm`` under ``root`` (os.walk order; hidden files skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".dcm"):
                yield os.path.join(dirpath, name)


def warm_page_cache(paths: Sequence[str], block: int = 1 << 20) -> int:
    """Read every file once so later passes read from the page cache; returns bytes read."""
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while chunk := fh.read(block):
                total += len(chunk)
    return total


def machine_info() -> dict[str, object]:
    """CPU model, cores, RAM, Python and library versions, for the results file."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["cores_physical"] = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover
        pass
    for mod in ("pydicom", "pyarrow", "deltalake", "psutil"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - a missing library is just not reported
            info[mod] = None
    try:
        from importlib.metadata import version

        info["pixels"] = version("pixels-lake")
    except Exception:  # pragma: no cover
        info["pixels"] = None
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["git_head"] = out.stdout.strip() or None
    except OSError:  # pragma: no cover
        info["git_head"] = None
    info["src_digest"] = source_digest()
    return info


def source_digest() -> str:
    """Short SHA-1 of every ``*.py`` under src/pixels (the work tree may be uncommitted)."""
    import hashlib

    h = hashlib.sha1()
    src = BENCH_DIR.parent / "src" / "pixels"
    for path in sorted(src.rglob("*.py")):
        h.update(str(path.relative_to(src)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


class TreeMemorySampler:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread.

    RSS counts pages shared between a parent and its forked children once per
    process, so the sum is an upper bound of the real footprint; the summed PSS
    (shared pages divided among the processes sharing them) is also kept. RSS is
    read every ``interval``; the process list, CPU times and PSS every 4th time,
    to keep the sampler's own cost low on a small machine.
    """

    def __init__(
        self,
        pid: int,
        interval: float = 0.05,
        with_pss: bool = True,
        pss_interval: float | None = None,
    ):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes = 0
        self.peak_pss_bytes = 0  # proportional set size: shared pages split between sharers
        self.slow_every = 4  # PSS (smaps_rollup) and CPU times cost more: every 4th sample
        self._procs: list[Any] = []
        self.with_pss = with_pss
        self.samples = 0
        self.max_procs = 0
        self.cpu_by_pid: dict[int, float] = {}  # last CPU seconds seen per process
        # PSS reads /proc/PID/smaps_rollup, which walks every page table of the process
        # (~40 ms for a catalog's 5 processes): at most every ``pss_interval`` seconds
        # when given (None: every slow sample)
        self.pss_interval = pss_interval
        self._pss_at = float("-inf")
        #: pid -> [depth, first seen, CPU ns, run-queue wait ns, last seen, CPU ns, wait ns]
        #: (``/proc/PID/schedstat`` on slow samples; depth 0: the command, 1: its children)
        self.sched: dict[int, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        ps = self._psutil
        slow = self.samples % self.slow_every == 0  # process discovery, CPU times and PSS
        if slow or not self._procs:
            try:
                self._procs = self._tree()
            except ps.Error:
                return
        total = pss = 0
        now = time.perf_counter()
        with_pss = slow and self.with_pss
        if with_pss and self.pss_interval is not None:
            with_pss = now - self._pss_at >= self.pss_interval
            if with_pss:
                self._pss_at = now
        for p in self._procs:
            try:
                total += p.memory_info().rss
                if slow:
                    t = p.cpu_times()
                    self.cpu_by_pid[p.pid] = t.user + t.system
                    self._schedstat(p, now)
                    if with_pss:
                        pss += p.memory_full_info().pss
            except ps.Error:
                continue
            except (AttributeError, OSError):  # no PSS on this platform
                self.with_pss = False
        self.samples += 1
        self.max_procs = max(self.max_procs, len(self._procs))
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)

    def _tree(self) -> list[Any]:
        """The root and its descendants: ``/proc/PID/task/TID/children`` where the kernel
        has it (reads only the tree), else psutil (which reads every process's ``stat``)."""
        root = self.root.pid
        if not os.path.exists(f"/proc/{root}/task/{root}/children"):
            return [self.root, *self.root.children(recursive=True)]
        known = {p.pid: p for p in self._procs}
        todo, out = [root], []
        while todo:
            pid = todo.pop()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except FileNotFoundError:
                continue  # ended
            for tid in tids:
                with (
                    contextlib.suppress(FileNotFoundError),
                    open(f"/proc/{pid}/task/{tid}/children") as fh,
                ):
                    todo += [int(c) for c in fh.read().split()]
            p = known.get(pid)
            if p is None:
                try:
                    p = self.root if pid == root else self._psutil.Process(pid)
                except self._psutil.Error:
                    continue
            out.append(p)
        return out

    def _schedstat(self, p: Any, now: float) -> None:
        try:
            with open(f"/proc/{p.pid}/schedstat", "rb") as fh:
                cpu_ns, wait_ns = (float(x) for x in fh.read().split()[:2])
        except (OSError, ValueError):
            return
        got = self.sched.get(p.pid)
        if got is None:
            depth = 0 if p.pid == self.root.pid else 1 if p.ppid() == self.root.pid else 2
            self.sched[p.pid] = [depth, now, cpu_ns, wait_ns, now, cpu_ns, wait_ns]
        else:
            got[4:] = [now, cpu_ns, wait_ns]

    def sched_summary(self) -> dict[str, dict[str, float]]:
        """Seconds each level of the tree was seen, on a CPU, waiting for one, and blocked.

        ``blocked`` (seen - on CPU - waiting for a CPU) is time asleep: waiting for
        the disk or for work. Levels: ``command`` (depth 0), ``children`` (1: a
        forkserver, a resource tracker) and ``grandchildren`` (2: pool workers).
        """
        out: dict[str, dict[str, float]] = {}
        for name, depth in (("command", 0), ("children", 1), ("grandchildren", 2)):
            rows = [v for v in self.sched.values() if v[0] == depth]
            seen = sum(v[4] - v[1] for v in rows)
            cpu = sum(v[5] - v[2] for v in rows) / 1e9
            wait = sum(v[6] - v[3] for v in rows) / 1e9
            out[name] = {"processes": len(rows), "seen_s": round(seen, 1),
                         "cpu_s": round(cpu, 1), "runq_wait_s": round(wait, 1),
                         "blocked_s": round(max(0.0, seen - cpu - wait), 1)}  # fmt: skip
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def peak_pss_mb(self) -> float:
        return self.peak_pss_bytes / 2**20


def cpu_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, /proc/stat)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
    except OSError:  # pragma: no cover - not Linux
        return 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float, threshold_cores: float = 0.25, window: float = 1.0) -> float:
    """Wait (at most ``max_wait`` s) for a ``window`` in which the machine is almost idle.

    Other people's test runs on a shared 2-core machine distort timings; this
    returns the busy cores seen in the last window (lower is better).
    """
    deadline = time.monotonic() + max_wait
    while True:
        b0 = cpu_busy_seconds()
        time.sleep(window)
        busy = (cpu_busy_seconds() - b0) / window
        if busy <= threshold_cores or time.monotonic() >= deadline:
            return busy


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Measured:
    """One timed subprocess.

    ``cpu_seconds`` is the CPU time of the process and the descendants it reaped;
    ``other_cores`` the average number of cores other processes on the machine
    (kernel threads included, this harness excluded) kept busy during the run: a
    contention indicator, near 0 on a quiet machine. ``harness_cpu`` is the CPU
    the sampling itself cost.
    """

    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str
    samples: int
    max_procs: int
    cpu_seconds: float = 0.0
    other_cores: float = 0.0
    peak_pss_mb: float = 0.0
    harness_cpu: float = 0.0
    #: CPU seconds of the command's own process (the rest of ``cpu_seconds``: its descendants).
    root_cpu: float = 0.0
    #: :meth:`TreeMemorySampler.sched_summary`: on a CPU, waiting for one, blocked, per level.
    sched: dict[str, dict[str, float]] | None = None


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    interval: float = 0.05,
    timeout: float | None = None,
    pss_interval: float | None = None,
) -> Measured:
    """Run ``cmd``; wall-clock seconds from spawn to exit, and peak RSS of its process tree.

    ``interval``: seconds between RSS samples (process list, CPU times and run-queue
    figures every 4th); ``pss_interval``: at least this many seconds between PSS samples
    (None: with every 4th sample), which cost the sampler and the measured processes most.
    """
    c0 = _children_cpu()
    s0 = time.process_time()  # this process: the sampler thread's own cost
    b0 = cpu_busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with TreeMemorySampler(proc.pid, interval, pss_interval=pss_interval) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    # reaped descendants (rusage) or, when a grandchild is not reaped by its parent
    # (forkserver), the CPU seen by the sampler: whichever is larger
    cpu = max(_children_cpu() - c0, sum(sampler.cpu_by_pid.values()))
    busy = cpu_busy_seconds() - b0
    harness = time.process_time() - s0
    other = max(0.0, busy - cpu - harness) / seconds if seconds > 0 else 0.0
    return Measured(
        seconds,
        sampler.peak_mb,
        proc.returncode,
        out,
        err,
        sampler.samples,
        sampler.max_procs,
        cpu,
        other,
        sampler.peak_pss_mb,
        harness,
        sampler.cpu_by_pid.get(proc.pid, 0.0),
        sampler.sched_summary(),
    )


def python_cmd(*args: str) -> list[str]:
    """The current interpreter, unbuffered, with ``args``."""
    return [sys.executable, "-u", *args]


def dump_json(path: str | os.PathLike[str], data: object) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ servers and latency


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    cmd: Sequence[str],
    url: str,
    probe: str,
    *,
    name: str = "server",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` and wait until ``GET url + probe`` answers; the process.

    The probe's answer need not be 200 (only that the server answers); the
    process is killed when it does not answer within ``timeout`` seconds.
    """
    import httpx

    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            httpx.get(url + probe, timeout=timeout)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name} did not start in {timeout:.0f} s")


def percentiles(xs: Sequence[float]) -> dict[str, float]:
    """``n``, p50, p95 and max of durations in seconds, as milliseconds."""
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=20, method="inclusive") if len(xs) > 1 else [xs[0]] * 19
    return {
        "n": len(xs),
        "p50_ms": round(statistics.median(xs) * 1e3, 2),
        "p95_ms": round(q[18] * 1e3, 2),
        "max_ms": round(xs[-1] * 1e3, 2),
    }


def timed_get(client: Any, path: str, **kwargs: Any) -> tuple[float, Any]:
    """``client.get(path)`` timed (seconds), the answer checked for success."""
    t0 = time.perf_counter()
    r = client.get(path, **kwargs)
    seconds = time.perf_counter() - t0
    r.raise_for_status()
    return seconds, r


def child_json(script: str, src: str, args: Sequence[str]) -> dict[str, float]:
    """Run ``script`` with ``args`` in a process importing ``pixels`` from ``src`` (a
    before/after comparison's side); its last stdout line, parsed as JSON."""
    out = subprocess.run(
        [sys.executable, script, *args],
        env={**os.environ, "PYTHONPATH": src},
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
