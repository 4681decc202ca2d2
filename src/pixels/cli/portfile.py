"""``--port-file PATH``: the ports a server listens on, for scripts (``--port 0``).

The file is written once the server listens, atomically (a temporary file in the same
folder renamed over it): a reader sees no file or the whole file, never part of it. It
holds one port a line, in decimal: ``pixels serve``'s HTTP port, then, with
``--dimse-port``, the DIMSE port; ``pixels dimse scp``'s port. The server removes the
file when it stops, and one a killed run left before it binds; a script that reuses a
path removes the file before it starts the server (it could read a stale one before the
server has started). In a shell::

    rm -f ports; pixels serve -t ./catalog --port 0 --dimse-port 0 --port-file ports &
    until [ -s ports ]; do sleep 0.1; done
    { read http; read dimse; } < ports
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import click

__all__ = ["clear_port_file", "port_file_option", "port_option", "write_port_file"]


def port_option(default: int, line: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A server command's ``--port/-p`` (0: a free port, said in its ``line`` start-up
    line and ``--port-file``)."""
    return click.option(
        "--port",
        "-p",
        type=click.IntRange(0, 65535),
        default=default,
        show_default=True,
        help=f"Port to listen on; 0: a free one, named in the {line} line and --port-file.",
    )


def port_file_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--port-file PATH`` option of a server command; ``what``: the ports written,
    in order."""
    return click.option(
        "--port-file",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="PATH",
        help=f"Write {what} to PATH once listening, one a line (a temporary file renamed: "
        "a reader never sees part of it); removed when the server stops. With --port 0: "
        "how a script learns the port.",
    )


def clear_port_file(path: str | None) -> None:
    """Remove a port file an earlier run left (none: nothing to do).

    Raises
    ------
    click.ClickException
        It exists and cannot be removed (the message names it).
    """
    if path is None:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    except OSError as e:
        raise click.ClickException(f"cannot remove the old port file {path}: {e}") from e


def write_port_file(path: str, ports: Iterable[int]) -> None:
    """Write ``ports`` to ``path``, one a line, atomically (a temporary file renamed).

    Raises
    ------
    click.ClickException
        The file cannot be written (the message names it).

    Examples
    --------
    >>> write_port_file("ports", [43117, 40123])   # doctest: +SKIP
    >>> open("ports").read()                       # doctest: +SKIP
    '43117\\n40123\\n'
    """
    tmp = os.path.join(
        os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write("".join(f"{int(p)}\n" for p in ports))
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise click.ClickException(f"cannot write the port file {path}: {e}") from e
