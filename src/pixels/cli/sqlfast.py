"""``pixels sql`` started fast: its options (one definition), a small parser, the
output writers, and the run that needs neither click, pyarrow, deltalake nor rich.

The console script (:data:`pixels.cli.main`) hands ``pixels sql ...`` to :func:`run`
before click is imported. :func:`run` answers when it can answer exactly as the click
command (:mod:`pixels.cli.query`) does, from the Delta log read by DuckDB
(:func:`pixels.sql.connect_from_log`), with the rows DuckDB fetches; for anything else
(``--help``, an option it does not parse, an object-store table, a table delta-rs
must read, a statement that is not one ``SELECT``, a query DuckDB refuses, a result
type it does not write the same way, Parquet output, a large result) it answers None before writing a
byte, and click runs the command as before.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = [
    "SQL_OPTIONS",
    "SqlOption",
    "cell",
    "emit",
    "parse",
    "printable_rows",
    "run",
    "write_json",
    "write_table",
]

#: The table every command reads by default (:data:`pixels.cli.options.DEFAULT_TABLE`).
DEFAULT_TABLE = "./catalog"

#: Rows a run fetches before it leaves a result to the Arrow writers of the click command.
MAX_FETCHED = 50_000


class SqlOption:
    """One option of ``pixels sql``: the click command is built from these, and
    :func:`parse` reads them (a plain class: ``dataclasses`` costs ~20 ms to import,
    a named tuple ~1 ms to define).

    Attributes
    ----------
    decls : tuple of str
        Its flags (``--table``, ``-t``).
    dest : str
        The name of its value.
    default, help, choices, multiple, type, metavar, show_default
        As click's ``Option`` takes them.
    """

    __slots__ = (
        "choices",
        "decls",
        "default",
        "dest",
        "help",
        "metavar",
        "multiple",
        "show_default",
        "type",
    )

    def __init__(
        self,
        decls: tuple[str, ...],
        dest: str,
        default: Any,
        help: str,
        choices: tuple[str, ...] | None = None,
        multiple: bool = False,
        type: type = str,
        metavar: str | None = None,
        show_default: bool = False,
    ) -> None:
        self.decls = decls
        self.dest = dest
        self.default = default
        self.help = help
        self.choices = choices
        self.multiple = multiple
        self.type = type
        self.metavar = metavar
        self.show_default = show_default


#: The options of ``pixels sql`` (its one argument is QUERY).
SQL_OPTIONS: tuple[SqlOption, ...] = (
    SqlOption(
        ("--table", "-t"), "table", DEFAULT_TABLE, "Delta table folder or URL.", show_default=True
    ),
    SqlOption(
        ("--format", "-f"),
        "fmt",
        "table",
        "Output format (json = one object per line).",
        choices=("table", "csv", "json", "parquet"),
        show_default=True,
    ),
    SqlOption(("--output", "-O"), "output", None, "Write to this file instead of standard output."),
    SqlOption(
        ("--max-rows",),
        "max_rows",
        100,
        "Rows shown by --format table.",
        type=int,
        show_default=True,
    ),
    SqlOption(
        ("--storage-option", "-o"),
        "storage_option",
        None,
        "Object-store option for a table URL (repeatable), e.g. key=..., endpoint_url=...",
        multiple=True,
        metavar="KEY=VALUE",
    ),
)


def parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """The values of ``pixels sql``'s arguments (after ``sql``), as click would read them;
    None for anything click should read itself (help, a bad or unknown option, a value
    that looks like an option)."""
    by_flag = {d: o for o in SQL_OPTIONS for d in o.decls}
    values: dict[str, Any] = {o.dest: [] if o.multiple else o.default for o in SQL_OPTIONS}
    args: list[str] = []
    i, only_args = 0, False
    while i < len(argv):
        a = argv[i]
        i += 1
        if only_args or a == "-" or not a.startswith("-"):
            args.append(a)
            continue
        if a == "--":
            only_args = True
            continue
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            opt = by_flag.get(name)
            inline = bool(eq)
        else:
            opt = by_flag.get(a[:2])
            value, inline = a[2:], len(a) > 2
        if opt is None:
            return None
        if not inline:
            if i >= len(argv):
                return None
            value = argv[i]
            i += 1
        if value.startswith("-"):
            return None
        if opt.choices is not None and value not in opt.choices:
            return None
        converted: Any = value
        if opt.type is int:
            try:
                converted = int(value)
            except ValueError:
                return None
        if opt.multiple:
            values[opt.dest].append(converted)
        else:
            values[opt.dest] = converted
    if len(args) != 1:
        return None
    values["query"] = args[0]
    values["storage_option"] = tuple(values["storage_option"])
    return values


# ------------------------------------------------------------------ writers
#: How a column is written as text: its bytes' length, its value as JSON, or as it is.
BINARY, NESTED, PLAIN = "binary", "nested", "plain"


def printable_rows(
    names: Sequence[str], kinds: Sequence[str], rows: Sequence[Sequence[Any]]
) -> tuple[list[str], list[list[Any]]]:
    """Binary and nested columns turned into text for CSV/JSON: a binary column
    ``name`` becomes ``name_bytes`` holding each value's length (as text), a list or
    struct its JSON."""
    out_names = [f"{n}_bytes" if k == BINARY else n for n, k in zip(names, kinds, strict=True)]
    out: list[list[Any]] = []
    for row in rows:
        vals = []
        for v, k in zip(row, kinds, strict=True):
            if v is not None and k == BINARY:
                v = str(len(v))
            elif v is not None and k == NESTED:
                v = json.dumps(v, default=str)
            vals.append(v)
        out.append(vals)
    return out_names, out


def write_json(names: Sequence[str], rows: Sequence[Sequence[Any]], fh: IO[str]) -> None:
    """One JSON object per line (rows from :func:`printable_rows`)."""
    for row in rows:
        fh.write(json.dumps(dict(zip(names, row, strict=True)), default=str, ensure_ascii=False))
        fh.write("\n")


def cell(v: Any, limit: int = 120) -> str:
    """A value as a cell of the table output."""
    if v is None:
        return "∅"
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    s = str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def write_table(
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    num_rows: int,
    max_rows: int,
    output: str | None,
) -> None:
    """The table output (rich's table, its look kept): the first ``max_rows`` of
    ``rows``, then the count."""
    cells = [[cell(v) for v in row] for row in rows[:max_rows]]
    if num_rows > max_rows:
        footer = f"({num_rows:,} rows, first {max_rows} shown; use --max-rows or --format csv)"
    else:
        footer = f"({num_rows:,} rows)"
    fh = open(output, "w", encoding="utf-8") if output else None  # noqa: SIM115
    try:
        width = _plain_width(fh)
        text = None if width is None else plain_table(list(names), cells, footer, width)
        if text is not None:
            (fh or sys.stdout).write(text)
            return
        from rich.console import Console
        from rich.table import Table

        console = Console(file=fh, width=200 if output else None)
        t = Table(show_lines=False)
        for name in names:
            t.add_column(name, overflow="fold")
        for row in cells:
            t.add_row(*row)
        console.print(t)
        console.print(footer)
    finally:
        if fh is not None:
            fh.close()


def _plain_width(fh: IO[str] | None) -> int | None:
    """The width rich's console would have, where it would write plain text (no colour,
    a Unicode box) to ``fh`` (None: standard output); None where it might not."""
    if sys.platform == "win32" or any(
        k in os.environ for k in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    ):
        return None
    out = fh or sys.stdout
    try:
        if out.isatty() or not (getattr(out, "encoding", None) or "utf-8").lower().startswith(
            "utf"
        ):
            return None
    except (ValueError, AttributeError):
        return None
    if fh is not None:
        return 200
    width = None
    for fd in (0, 1, 2):  # as rich's Console.size
        try:
            width = os.get_terminal_size(fd).columns
            break
        except (AttributeError, ValueError, OSError):
            pass
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        width = int(columns)
    return width or 80


#: What :func:`plain_table` writes as rich does: printable ASCII, and the two marks of
#: :func:`cell` (rich markup opens with ``[``, emoji codes are ``:name:``).
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"["} | {"∅", "…"}
_EMOJI = r":(\S*?)(?:(?:\-)(?:emoji|text))?:"  # compiled where a cell holds a colon


def _plain_text(texts: Sequence[str]) -> bool:
    if not all(_PLAIN.issuperset(t) for t in texts):
        return False
    names = {m for t in texts if ":" in t for m in re.findall(_EMOJI, t)}
    if names:
        from rich._emoji_codes import EMOJI

        return not any(n.lower() in EMOJI for n in names)
    return True


def _column_width(texts: Sequence[str], width: int) -> int:
    """rich's width of a column holding ``texts`` (header included) in ``width``.

    rich measures each cell (``Padding(Text(text), (0, 1))``) and takes the widest
    maximum: the longest line plus its padding, at most ``width`` (at least 1 wide).
    Plain text (:func:`_plain_text`) holds no line break, so its longest line is the
    text itself.
    """
    if width < 1:
        return 0
    return min(max(map(len, texts)) + 2, width)


def _ratio_reduce(
    total: int, ratios: list[int], maximums: list[int], values: list[int]
) -> list[int]:
    ratios = [r if m else 0 for r, m in zip(ratios, maximums, strict=True)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining, out = total, []
    for ratio, maximum, value in zip(ratios, maximums, values, strict=True):
        if ratio and total_ratio > 0:
            cut = min(maximum, round(ratio * remaining / total_ratio))
            out.append(value - cut)
            remaining -= cut
            total_ratio -= ratio
        else:
            out.append(value)
    return out


def _widths(columns: list[list[str]], width: int) -> list[int]:
    """rich's ``Table._calculate_column_widths`` (no fixed widths, every column wraps)."""
    widths = [_column_width(c, width) or 1 for c in columns]
    if sum(widths) > width:
        total, excess = sum(widths), sum(widths) - width
        while total and excess > 0:
            top = max(widths)
            second = max((w if w != top else 0) for w in widths)
            ratios = [1 if w == top else 0 for w in widths]
            if not any(ratios) or not top - second:
                break
            widths = _ratio_reduce(
                excess, ratios, [min(excess, top - second)] * len(widths), widths
            )
            total = sum(widths)
            excess = total - width
        if sum(widths) > width:
            widths = _ratio_reduce(sum(widths) - width, [1] * len(widths), widths, widths)
        widths = [_column_width(c, w) for c, w in zip(columns, widths, strict=True)]
    return widths


def _lines(text: str, width: int) -> list[str] | None:
    """``text`` folded to ``width`` as rich folds it; None where rich would wrap at words."""
    if len(text) <= width:
        return [text.ljust(width)]
    if " " in text:
        return None
    return [text[i : i + width].ljust(width) for i in range(0, len(text), width)]


def plain_table(names: list[str], rows: list[list[str]], footer: str, width: int) -> str | None:
    """What rich prints for ``Table(show_lines=False)`` of ``names`` (each column
    ``overflow="fold"``) holding ``rows``, then ``footer``, on a plain console
    ``width`` columns wide; None where the text is not that simple (then rich prints it)."""
    if not names or len(footer) > width:
        return None
    if not _plain_text(names) or not all(_plain_text(r) for r in rows):
        return None
    columns = [[n, *(r[i] for r in rows)] for i, n in enumerate(names)]
    widths = _widths(columns, width - (len(names) + 1))
    if any(w < 3 for w in widths):
        return None
    out = ["┏" + "┳".join("━" * w for w in widths) + "┓"]
    inner = [w - 2 for w in widths]
    for index, row in enumerate([names, *rows]):
        edge = "┃" if index == 0 else "│"
        left, sep, right = edge + " ", " " + edge + " ", " " + edge
        if all(len(t) <= w for t, w in zip(row, inner, strict=True)):  # one line each
            out.append(
                left + sep.join([t.ljust(w) for t, w in zip(row, inner, strict=True)]) + right
            )
        else:
            cells = [_lines(t, w) for t, w in zip(row, inner, strict=True)]
            if any(c is None for c in cells):
                return None
            height = max(len(c) for c in cells if c is not None)
            shaped = []
            for c, w in zip(cells, inner, strict=True):
                assert c is not None
                blank = [" " * w] * (height - len(c))
                shaped.append(blank + c if index == 0 else c + blank)  # header: bottom-aligned
            out.extend([left + sep.join(parts) + right for parts in zip(*shaped, strict=True)])
        if index == 0:
            out.append("┡" + "╇".join("━" * w for w in widths) + "┩")
    out.append("└" + "┴".join("─" * w for w in widths) + "┘")
    out.append(footer)
    return "\n".join(out) + "\n"


def _csv_text(v: str) -> str:
    return '"' + v.replace('"', '""') + '"'


def _csv_timestamp(v: Any) -> str:
    from datetime import UTC

    return str(v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%fZ"))


#: DuckDB result types :func:`run` writes as the click command does, per format: the
#: CSV writer of each (pyarrow's text for that type), None where only table and JSON.
_CSV: dict[str, Callable[[Any], str] | None] = {
    "VARCHAR": _csv_text,
    "BOOLEAN": lambda v: "true" if v else "false",
    "TINYINT": str,
    "SMALLINT": str,
    "INTEGER": str,
    "BIGINT": str,
    "UTINYINT": str,
    "USMALLINT": str,
    "UINTEGER": str,
    "UBIGINT": str,
    "DATE": lambda v: str(v.isoformat()),
    "TIMESTAMP WITH TIME ZONE": _csv_timestamp,
    "BLOB": _csv_text,  # (its length, as text)
    "DOUBLE": None,
    "FLOAT": None,
}


def _kind(duck_type: str) -> str:
    return BINARY if duck_type == "BLOB" else NESTED if duck_type.endswith("[]") else PLAIN


def _writes(duck_type: str, fmt: str) -> bool:
    """Whether :func:`run` writes a column of ``duck_type`` in ``fmt`` as the click command
    does: the types of :data:`_CSV` and lists of them (written as their JSON)."""
    base = duck_type
    while base.endswith("[]"):
        base = base[:-2]
    if base not in _CSV:
        return False
    return fmt != "csv" or base != duck_type or _CSV[base] is not None


def write_csv(names: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``rows`` (from :func:`printable_rows`) as pyarrow's CSV writer writes them."""
    writers = [_csv_text if t.endswith("[]") else _CSV[t] for t in types]
    lines = [",".join(_csv_text(n) for n in names)]
    for row in rows:
        lines.append(
            ",".join("" if v is None else w(v) for v, w in zip(row, writers, strict=True))  # type: ignore[misc]
        )
    return "\n".join(lines) + "\n"


def emit(text: str, output: str | None) -> None:
    """Write ``text`` to the file ``output``, or to standard output when it is None."""
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


# --------------------------------------------------------------------- run
def run(argv: Sequence[str]) -> int | None:
    """Run ``pixels sql`` with ``argv`` (the arguments after ``sql``): its exit status,
    or None (nothing written) where the click command must run it."""
    opts = parse(argv)
    if opts is None or opts["storage_option"] or opts["fmt"] == "parquet":
        return None
    from pixels.storage import is_local

    if not is_local(opts["table"]):
        return None
    from pixels.sql import connect_from_log, duckdb_module

    duck = duckdb_module()
    con = duck.connect()
    try:
        if not connect_from_log(opts["table"], opts["query"], con):
            return None
        try:
            con.execute(opts["query"])
            described = con.description
            if described is None:
                return None
            names = [str(d[0]) for d in described]
            types = [str(d[1]) for d in described]
            if len(set(names)) != len(names) or not all(_writes(t, opts["fmt"]) for t in types):
                return None
            rows = con.fetchmany(MAX_FETCHED + 1)
        except duck.Error:
            # the click command words DuckDB's message as the ``duckdb`` package gives
            # it (one SELECT: nothing was changed by running it here)
            return None
        if len(rows) > MAX_FETCHED:
            return None  # the click command's Arrow writers for a large result
    finally:
        con.close()
    fmt, output = opts["fmt"], opts["output"]
    if fmt == "table":
        write_table(names, rows, len(rows), opts["max_rows"], output)
        return 0
    kinds = [_kind(t) for t in types]
    out_names, out_rows = printable_rows(names, kinds, rows)
    if fmt == "csv":
        emit(write_csv(out_names, types, out_rows), output)
    elif output:
        with open(output, "w", encoding="utf-8") as fh:
            write_json(out_names, out_rows, fh)
    else:
        write_json(out_names, out_rows, sys.stdout)
    return 0
