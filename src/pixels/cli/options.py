"""What the ``pixels`` commands share: the table and object-store options, error lines."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

__all__ = [
    "DEFAULT_TABLE",
    "QUIET_OPTION",
    "TABLE_OPTION",
    "TABLE_STORAGE_OPTION",
    "choice_option",
    "exit_on_error",
    "keep_pandas_out",
    "parse_storage_options",
    "print_error",
    "require_table",
    "storage_option",
    "warning_lines",
    "where_option",
    "workers_option",
]

DEFAULT_TABLE = "./catalog"

#: The catalog table option every command shares.
TABLE_OPTION = click.option(
    "--table", "-t", default=DEFAULT_TABLE, show_default=True, help="Delta table folder or URL."
)


def storage_option(help_text: str) -> Any:
    """The repeatable ``-o KEY=VALUE`` fsspec option."""
    return click.option(
        "--storage-option",
        "-o",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help=help_text,
    )


#: ``-o`` for a command that reads or rewrites only the table.
TABLE_STORAGE_OPTION = storage_option(
    "Object-store option for a table URL (repeatable), e.g. key=..., endpoint_url=..."
)

#: ``--quiet``: a command with a progress bar runs without it.
QUIET_OPTION = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")


def workers_option(help_text: str) -> Any:
    """``--workers``/``-w``: how many processes (None, the default: the command decides)."""
    return click.option("--workers", "-w", type=int, default=None, help=help_text)


def where_option(modality: str) -> Any:
    """``--where``: a SQL predicate choosing rows, its example a ``Modality`` test."""
    return click.option(
        "--where",
        default=None,
        help=f"SQL predicate on the catalog, e.g. \"Modality = '{modality}'\".",
    )


def choice_option(
    *decls: str, choices: list[str], default: str, help_text: str | None = None
) -> Any:
    """An option taking one of ``choices`` (listed in the help), its default shown."""
    return click.option(
        *decls, type=click.Choice(choices), default=default, show_default=True, help=help_text
    )


def parse_storage_options(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """``-o KEY=VALUE`` pairs as fsspec options (``true``/``false`` become booleans); None if none."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(
                f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option"
            )
        key, value = pair.split("=", 1)
        val: Any = value
        if value.lower() in ("true", "false"):
            val = value.lower() == "true"
        out[key] = val
    return out


def require_table(table: str, storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`~pixels.errors.TableError` naming ``table`` when no catalog table is there.

    The commands that only read or rewrite a catalog (``sql``, ``show``, ``patches``,
    ``thumbnails``, ``segment``, ``optimize``, ``upgrade``) call it first, so a mistyped
    ``--table`` is an error instead of an empty answer.
    """
    from pixels.errors import TableError
    from pixels.table import CatalogTable

    t = CatalogTable(table, storage_options=storage_options)
    if not t.exists():
        raise TableError(
            "no catalog table here (no _delta_log): run `pixels catalog` first, or pass --table",
            t.uri,
        )


def note_if_no_table(table: str, storage_options: dict[str, Any] | None = None) -> None:
    """Say on stderr when ``table`` holds no catalog table yet (``serve``, ``dimse scp``).

    Those serve it anyway (STOW-RS and C-STORE create it), so a mistyped ``--table``
    would otherwise serve an empty catalog without a word. Nothing is said when the
    store cannot be asked (the server reports that itself).
    """
    from pixels.table import CatalogTable

    try:
        if CatalogTable(table, storage_options=storage_options).exists():
            return
    except Exception:
        return
    click.echo(
        f"note: no catalog table at {table} yet: serving an empty catalog "
        "(STOW-RS and C-STORE create it; `pixels catalog DIR --table ...` fills it)",
        err=True,
    )


def warning_lines(kinds: dict[str, list[Any]]) -> list[str]:
    """A run's warnings by kind, most frequent first, for its summary: ``  N × kind`` and an
    indented ``e.g. PATH`` for each example (``kinds`` as
    :func:`pixels.dicom.notices.tally_warnings` counts them: kind -> ``[files, examples]``).

    Examples
    --------
    >>> warning_lines({"Invalid value for VR IS": [1200, ["a.dcm"]]})
    ['  1,200 × Invalid value for VR IS', '      e.g. a.dcm']
    """
    lines = []
    for kind, (n, examples) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"  {n:,} × {kind}")
        lines.extend(f"      e.g. {e}" for e in examples)
    return lines


def print_error(console: Any, e: BaseException) -> None:
    """``error: <message>`` on one line (a path is never wrapped, nor read as markup)."""
    from rich.text import Text

    console.print(Text.assemble(("error:", "red"), " ", str(e)), soft_wrap=True)


def keep_pandas_out() -> None:
    """Keep pandas out of this process while the running command lasts (~50 MB it never uses).

    The import hook goes when the command's click context closes, so a command invoked
    in a process that goes on (``pixels demo``, click's test runner, a notebook) leaves
    pandas importable after it.
    """
    from pixels.engines.worker import block_pandas

    before = list(sys.meta_path)
    block_pandas()
    added = [f for f in sys.meta_path if not any(f is b for b in before)]

    def restore() -> None:
        for finder in added:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(finder)

    click.get_current_context().call_on_close(restore)


@contextlib.contextmanager
def exit_on_error(sql: str = "SQL error in --where") -> Iterator[None]:
    """Errors of a command's work as exit codes, the message on stderr.

    A bad query (:class:`~pixels.errors.QueryError`) exits 1 with ``{sql}: message``;
    any other :class:`~pixels.errors.PixelsError` exits 2 with ``error: message``.
    """
    from pixels.errors import PixelsError, QueryError

    try:
        yield
    except QueryError as e:
        click.echo(f"{sql}: {e}", err=True)
        sys.exit(1)
    except PixelsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
