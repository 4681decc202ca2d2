"""Servers started as subprocesses with ``--port 0 --port-file PATH``: their ports.

The server binds a free port itself and writes it once listening: no port is picked
here, closed and bound later by the server (another process could take it in between).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

__all__ = ["port_file_args", "wait_for_ports"]


def port_file_args(path: str | os.PathLike[str]) -> list[str]:
    """``--port 0 --port-file PATH``: a server's options for a free port named in ``path``."""
    return ["--port", "0", "--port-file", str(path)]


def _output(proc: subprocess.Popen[str]) -> str:
    """What an exited ``proc`` wrote to a pipe (stderr, else stdout), for a failure."""
    pipe = proc.stderr or proc.stdout
    return pipe.read() if pipe is not None else f"exit status {proc.returncode}"


def wait_for_ports(
    path: str | os.PathLike[str], proc: subprocess.Popen[str], timeout: float = 60
) -> list[int]:
    """The ports a server wrote to its ``--port-file`` once listening (one a line).

    Raises
    ------
    AssertionError
        ``proc`` exited first (with its output), or no file came in ``timeout`` seconds.
    """
    file = Path(path)
    deadline = time.monotonic() + timeout
    while not file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the server exited before listening: {_output(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no port file {file} after {timeout:.0f} s")
        time.sleep(0.05)
    return [int(line) for line in file.read_text().split()]
