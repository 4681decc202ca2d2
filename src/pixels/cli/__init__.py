"""The ``pixels`` command: one click group, its commands in modules named after what they do.

``catalog`` (and ``--watch``) in :mod:`pixels.cli.catalog`; ``sql`` in
:mod:`pixels.cli.query`; ``thumbnails``, ``show``, ``patches`` in
:mod:`pixels.cli.images`; ``segment``, ``models`` in :mod:`pixels.cli.ml`;
``serve`` in :mod:`pixels.cli.serve`; ``optimize``, ``upgrade``, ``schema`` in
:mod:`pixels.cli.maintenance`; ``demo`` in :mod:`pixels.cli.demo`; ``deid`` in
:mod:`pixels.cli.deid`; ``dimse`` in :mod:`pixels.cli.dimse`. Each command's module is
imported when that command runs. Options they share are in :mod:`pixels.cli.options`.
``python -m pixels.cli`` runs it too.

:data:`main` is that group, and one thing more: when the process runs ``pixels sql``
(the console script, ``python -m pixels.cli``), :func:`pixels.cli.sqlfast.run` answers
first, before click is imported, where it can answer as the command does.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

__all__ = ["main"]

#: command name -> (module of pixels.cli, attribute): imported only when that command
#: runs (or ``--help`` lists them), so ``pixels sql`` does not import the catalog's,
#: the server's and the images' modules before its query
COMMANDS: dict[str, tuple[str, str]] = {
    "catalog": ("catalog", "catalog_cmd"),
    "sql": ("query", "sql_cmd"),
    "thumbnails": ("images", "thumbnails_cmd"),
    "show": ("images", "show_cmd"),
    "patches": ("images", "patches_cmd"),
    "segment": ("ml", "segment_cmd"),
    "models": ("ml", "models_cmd"),
    "serve": ("serve", "serve_cmd"),
    "optimize": ("maintenance", "optimize_cmd"),
    "upgrade": ("maintenance", "upgrade_cmd"),
    "schema": ("maintenance", "schema_cmd"),
    "demo": ("demo", "demo_cmd"),
    "deid": ("deid", "deid_cmd"),
    "dimse": ("dimse", "dimse_group"),
}


@functools.cache
def group() -> Any:
    """The ``pixels`` click group (built, and click imported, when first asked for)."""
    import click

    class _LazyGroup(click.Group):
        """A group whose commands (:data:`COMMANDS`) are imported when first asked for."""

        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted({*COMMANDS, *self.commands})

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            if cmd_name not in self.commands and cmd_name in COMMANDS:
                module, attr = COMMANDS[cmd_name]
                import importlib  # here: not on the ``pixels sql`` fast path

                command: Any = getattr(importlib.import_module(f"pixels.cli.{module}"), attr)
                self.add_command(command, cmd_name)
            return self.commands.get(cmd_name)

    @click.group("main", cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="pixels-lake", prog_name="pixels")
    def pixels() -> None:
        """Pixels: catalog medical image files into a SQL-queryable Delta Lake table."""

    return pixels


class _Main:
    """The ``pixels`` command: the click group (every attribute is the group's), called
    as the console script calls it with ``pixels sql`` answered by
    :func:`pixels.cli.sqlfast.run` first."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and sys.argv[1:2] == ["sql"]:
            import gc

            gc.disable()  # a short process: its collections were ~3 ms of a look-up
            from pixels.cli.sqlfast import run

            try:
                code = run(sys.argv[2:])
            except BaseException:
                gc.enable()
                raise
            if code is not None:
                _leave(code)
            gc.enable()
        return group()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(group(), name)


def _leave(code: int) -> None:
    """End the process with ``code`` once its output is flushed, without the
    interpreter's teardown: freeing every module and DuckDB's instance took ~10 ms of
    a ``pixels sql`` look-up, after its answer. Where flushing fails (a closed pipe),
    as :func:`sys.exit` does."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        sys.exit(code)
    os._exit(code)


#: The ``pixels`` command (``pixels.cli:main``, the console script).
main: Any = _Main()
