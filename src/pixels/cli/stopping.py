"""SIGTERM stops a server command as Ctrl-C does: its clean-up runs, then it dies of it.

``kill PID`` (SIGTERM) is how scripts, ``timeout``, systemd and container runtimes stop
``pixels serve`` and ``pixels dimse scp``. Without a handler Python dies at once, and
``pixels serve``'s uvicorn, which handles SIGTERM while it runs, raises it again once it
has shut down, with the default handler back: either way the ``finally`` blocks after it
never ran (the DIMSE server was not stopped, its pending rows not committed, the
``--port-file`` not removed). Inside :func:`terminated_cleanly` a SIGTERM becomes an
exception that unwinds them; the process then ends by SIGTERM all the same (exit status
143 in a shell), as a terminated process does.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["terminated_cleanly"]


class _Terminated(BaseException):
    """A SIGTERM arrived (a BaseException: ``except Exception`` clauses let it through)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
    """Run the block with SIGTERM unwinding it (its ``finally`` clauses run), then die
    of the SIGTERM. Main thread only (where Python runs signal handlers)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)  # ends the process, its clean-up done
        raise  # not reached
    finally:
        signal.signal(signal.SIGTERM, previous)
