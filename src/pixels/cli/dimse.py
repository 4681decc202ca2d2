"""``pixels dimse``: DICOM networking. ``scp`` serves a catalog; ``echo``, ``find``, ``get``,
``move``, ``store`` and ``retrieve`` talk to a remote PACS (``AE@host:port``).

``pixels serve --dimse-port`` runs the SCP beside DICOMweb (:mod:`pixels.cli.serve`);
:func:`dimse_options` and :func:`server_config` are the options both share.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import click

from pixels.cli.options import TABLE_OPTION, note_if_no_table
from pixels.cli.portfile import (
    clear_port_file,
    port_file_option,
    port_option,
    write_port_file,
)
from pixels.cli.stopping import terminated_cleanly

__all__ = ["dimse_group", "dimse_options", "server_config"]


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not NAME=VALUE", param_hint=what)
        out[key.strip()] = value
    return out


def dimse_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The SCP's options (AE title, callers, destinations, users, TLS)."""
    options = [
        click.option("--ae-title", default="PIXELS", show_default=True, help="The SCP's AE title."),
        click.option(
            "--dimse-host",
            default="127.0.0.1",
            show_default=True,
            help="Address the SCP binds (another than loopback needs --user or TLS with a CA).",
        ),
        click.option(
            "--allow-caller",
            "allow_callers",
            multiple=True,
            metavar="AE",
            help="Calling AE title accepted (repeatable; default: any).",
        ),
        click.option(
            "--move-destination",
            "move_destinations",
            multiple=True,
            metavar="AE@HOST:PORT",
            help="A C-MOVE destination (repeatable); others answer 0xA801.",
        ),
        click.option(
            "--user",
            "users",
            multiple=True,
            metavar="NAME=PASSCODE",
            help="A user for user identity negotiation (repeatable): callers must give one.",
        ),
        click.option("--tls-cert", default=None, help="The SCP's certificate (PEM): speak TLS."),
        click.option("--tls-key", default=None, help="The key of --tls-cert (PEM)."),
        click.option(
            "--tls-ca", default=None, help="CA (PEM) callers' client certificates must chain to."
        ),
        click.option(
            "--find-limit",
            type=click.IntRange(min=1),
            default=1000,
            show_default=True,
            help="Most C-FIND answers; more matches end the C-FIND with 0xFE00.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def server_config(port: int, kw: dict[str, Any]) -> Any:
    """A :class:`~pixels.dimse.config.ServerConfig` of :func:`dimse_options`' values."""
    from pixels.dimse.config import Peer, ServerConfig

    dests = {}
    for text in kw.get("move_destinations") or ():
        peer = Peer.parse(text)
        dests[peer.ae_title] = (peer.host, peer.port)
    return ServerConfig(
        port=port,
        host=kw.get("dimse_host") or "127.0.0.1",
        ae_title=kw.get("ae_title") or "PIXELS",
        allowed_callers=tuple(kw.get("allow_callers") or ()),
        destinations=dests,
        users=_pairs(tuple(kw.get("users") or ()), "--user"),
        tls_cert=kw.get("tls_cert"),
        tls_key=kw.get("tls_key"),
        tls_ca=kw.get("tls_ca"),
        find_limit=kw.get("find_limit") or 1000,
    )


@click.group("dimse")
def dimse_group() -> None:
    """DICOM networking: serve the catalog (scp) or talk to a PACS (AE@host:port)."""


@dimse_group.command("scp")
@TABLE_OPTION
@port_option(11112, "DIMSE:")
@click.option(
    "--storage-root",
    default=None,
    help="Where C-STORE writes [default: stow/ next to the table]; one table per folder.",
)
@port_file_option("the port")
@dimse_options
@terminated_cleanly()  # kill PID: the port file removed, the DIMSE server stopped
def scp_cmd(
    table: str, port: int, storage_root: str | None, port_file: str | None, **kw: Any
) -> None:
    """Serve the catalog over DIMSE alone (C-ECHO/STORE/FIND/GET/MOVE) until stopped."""
    from pixels.dimse.server import DimseServer
    from pixels.errors import PixelsError
    from pixels.web.state import WebState

    clear_port_file(port_file)
    try:
        config = server_config(port, kw)
        server = DimseServer(WebState(table, storage_root=storage_root), config).start()
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"DIMSE: {config.ae_title}@{config.host}:{server.port}  (catalog {table})", err=True)
    note_if_no_table(table)
    try:
        if port_file:
            write_port_file(port_file, [server.port])
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        clear_port_file(port_file)


def _scu_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("peer"),
        click.option("--ae-title", default="PIXELS", show_default=True, help="Our AE title."),
        click.option("--username", default=None, help="User identity: username."),
        click.option("--passcode", default=None, envvar="PIXELS_DIMSE_PASSCODE"),
        click.option("--timeout", type=float, default=30.0, show_default=True),
        click.option("--tls", "use_tls", is_flag=True, help="Speak TLS to the peer."),
        click.option(
            "--tls-ca", "peer_ca", default=None, help="CA (PEM) of the peer's certificate."
        ),
        click.option(
            "--tls-cert", "client_cert", default=None, help="Our client certificate (PEM)."
        ),
        click.option("--tls-key", "client_key", default=None, help="The key of --tls-cert (PEM)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _client(
    peer: str,
    ae_title: str,
    username: str | None,
    passcode: str | None,
    timeout: float,
    use_tls: bool = False,
    peer_ca: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> Any:
    from pixels.dimse.config import client_tls
    from pixels.dimse.scu import Client

    try:
        tls = None
        if use_tls or peer_ca or client_cert:
            tls = client_tls(peer_ca, client_cert, client_key)
        return Client(
            peer,
            ae_title=ae_title,
            username=username,
            passcode=passcode,
            timeout=timeout,
            tls=tls,
        )
    except Exception as e:
        raise click.ClickException(str(e)) from e


_KEYS = click.option(
    "--key",
    "-k",
    "keys",
    multiple=True,
    metavar="NAME=VALUE",
    help="A matching / return key (keyword or GGGGEEEE; empty value: return it). Repeatable.",
)
_LEVEL = click.option(
    "--level",
    type=click.Choice(["PATIENT", "STUDY", "SERIES", "IMAGE"], case_sensitive=False),
    default="STUDY",
    show_default=True,
)
_MODEL = click.option(
    "--model",
    type=click.Choice(["STUDY", "PATIENT"], case_sensitive=False),
    default="STUDY",
    show_default=True,
    help="Study Root or Patient Root.",
)


def _run(fn: Callable[[], Any]) -> Any:
    from pixels.errors import PixelsError

    try:
        return fn()
    except PixelsError as e:
        raise click.ClickException(str(e)) from e


@dimse_group.command("echo")
@_scu_options
def echo_cmd(peer: str, **kw: Any) -> None:
    """C-ECHO a peer."""
    client = _client(peer, **kw)
    status = _run(client.echo)
    click.echo(f"C-ECHO {client.peer}: 0x{status:04X}")


@dimse_group.command("find")
@_scu_options
@_KEYS
@_LEVEL
@_MODEL
def find_cmd(peer: str, keys: tuple[str, ...], level: str, model: str, **kw: Any) -> None:
    """C-FIND: one DICOM JSON object per match, a line each."""
    client = _client(peer, **kw)
    found = _run(lambda: client.find(_pairs(keys, "--key"), level.upper(), model.upper()))
    for ds in found:
        click.echo(json.dumps(ds.to_json_dict()))


@dimse_group.command("get")
@_scu_options
@_KEYS
@_LEVEL
@_MODEL
@click.option("--out", "-o", required=True, help="Folder the instances are written to.")
def get_cmd(peer: str, keys: tuple[str, ...], level: str, model: str, out: str, **kw: Any) -> None:
    """C-GET into a folder ({SOPInstanceUID}.dcm): each instance written to a file as it
    arrives, under its name once whole."""
    client = _client(peer, **kw)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:  # a file of that name, a file on the way, no permission
        raise click.ClickException(
            f"cannot make the output folder {out} (--out): {e.strerror or e}"
        ) from e
    result = _run(
        lambda: client.get(_pairs(keys, "--key"), level.upper(), model.upper(), folder=out)
    )
    _report("C-GET", result, "C-GET", client.peer)


@dimse_group.command("move")
@_scu_options
@_KEYS
@_LEVEL
@_MODEL
@click.option("--dest", required=True, metavar="AE", help="The move destination's AE title.")
def move_cmd(
    peer: str, keys: tuple[str, ...], level: str, model: str, dest: str, **kw: Any
) -> None:
    """C-MOVE to a destination the peer knows."""
    client = _client(peer, **kw)
    result = _run(lambda: client.move(_pairs(keys, "--key"), dest, level.upper(), model.upper()))
    _report("C-MOVE", result, "C-MOVE", client.peer)


@dimse_group.command("store")
@_scu_options
@click.argument("files", nargs=-1, required=True)
def store_cmd(peer: str, files: tuple[str, ...], **kw: Any) -> None:
    """C-STORE files to a peer."""
    client = _client(peer, **kw)
    results = _run(lambda: client.store(files))
    failed = 0
    for path, status in results:
        click.echo(f"0x{status:04X}  {path}")
        failed += status != 0
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} not stored")


@dimse_group.command("retrieve")
@_scu_options
@TABLE_OPTION
@_KEYS
@_LEVEL
@click.option(
    "--move",
    "by_move",
    is_flag=True,
    help="C-MOVE to our AE (served on --port meanwhile) instead of C-GET.",
)
@click.option("--port", type=int, default=11112, show_default=True, help="For --move.")
@click.option(
    "--storage-root",
    default=None,
    help="Where files are written [default: stow/ next to the table]; one table per folder.",
)
def retrieve_cmd(
    peer: str,
    table: str,
    keys: tuple[str, ...],
    level: str,
    by_move: bool,
    port: int,
    storage_root: str | None,
    **kw: Any,
) -> None:
    """Pull a study / series / instances from a PACS straight into the catalog."""
    from pixels.dimse.scu import retrieve

    client = _client(peer, **kw)
    result = _run(
        lambda: retrieve(
            client.peer,
            table,
            _pairs(keys, "--key"),
            level.upper(),
            method="move" if by_move else "get",
            ae_title=client.ae_title,
            port=port,
            storage_root=storage_root,
            client=client,
        )
    )
    _report("retrieve", result, "C-MOVE" if by_move else "C-GET", client.peer)


def _report(what: str, result: Any, service: str, peer: Any) -> None:
    from pixels.dimse.scu import status_text

    click.echo(
        f"{what} {peer}: status {status_text(result.status, service)}, completed "
        f"{result.completed}, failed {result.failed}, warning {result.warning}"
        + (f" ({result.comment})" if result.comment else "")
    )
    for refused in getattr(result, "refused", []):
        click.echo(f"not stored: {refused}", err=True)
    if result.failed or result.status not in (0, 0xB000):
        hint = ""
        if not (result.completed or result.failed or result.warning):  # e.g. Orthanc: 0xC000
            hint = (
                ": nothing was sent. Does the peer hold what the keys name? `pixels dimse "
                "find` with the same --level and -k keys lists what it matches"
            )
        raise click.ClickException(f"{what} from {peer} did not complete{hint}")
