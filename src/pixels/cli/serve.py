"""``pixels serve``: the catalog over DICOMweb, the OHIF viewer at ``/``."""

from __future__ import annotations

import os

import click

from pixels.cli.dimse import dimse_options, server_config
from pixels.cli.options import (
    TABLE_OPTION,
    note_if_no_table,
    parse_storage_options,
    storage_option,
)
from pixels.cli.portfile import (
    clear_port_file,
    port_file_option,
    port_option,
    write_port_file,
)
from pixels.cli.stopping import terminated_cleanly

__all__ = ["serve_cmd"]


@click.command("serve")
@TABLE_OPTION
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (loopback unless told otherwise).",
)
@port_option(8042, "DICOMweb:")
@click.option(
    "--token",
    default=None,
    envvar="PIXELS_TOKEN",
    help="Bearer token required on /dicomweb [env PIXELS_TOKEN].",
)
@click.option(
    "--storage-root",
    default=None,
    help="Where STOW-RS writes files [default: stow/ next to the table]; one table per folder.",
)
@click.option(
    "--public-url", default=None, help="URL clients reach the server at (behind a proxy)."
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Another host name clients may send in the Host header (repeatable; '*.example.org' "
    "patterns; '*' for any). Loopback names and the address bound are always allowed.",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Serve on an address other than loopback without a token (anyone who can reach "
    "it can read the catalog).",
)
@storage_option(
    "Object-store option for a table URL and the files it lists (repeatable), "
    "e.g. key=..., endpoint_url=..."
)
@click.option(
    "--dimse-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve DIMSE (C-ECHO/STORE/FIND/GET/MOVE) on this port, over the same catalog "
    "(0: a free one, named in the DIMSE: line and --port-file).",
)
@port_file_option("the HTTP port (then the DIMSE port of --dimse-port on a second line)")
@dimse_options
@terminated_cleanly()  # kill PID: the port file removed, the DIMSE server stopped
def serve_cmd(
    table: str,
    host: str,
    port: int,
    token: str | None,
    storage_root: str | None,
    public_url: str | None,
    allowed_hosts: tuple[str, ...],
    allow_unauthenticated: bool,
    storage_option: tuple[str, ...] = (),
    dimse_port: int | None = None,
    port_file: str | None = None,
    **dimse: object,
) -> None:
    """Serve the catalog over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) at /dicomweb, OHIF at /."""
    from pixels.errors import PixelsError
    from pixels.storage import delta_options, is_local
    from pixels.web.app import serve
    from pixels.web.listen import bind, bound_port
    from pixels.web.ohif import installed_version
    from pixels.web.security import check_binding, is_wildcard

    try:
        check_binding(host, token, allow_unauthenticated)
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    # the server reads the table (delta-rs) and the files it lists (fsspec) from
    # many places: -o options become this process's environment, read by both
    options = parse_storage_options(storage_option)
    if options:
        where = table if not is_local(table) else "s3://"
        os.environ.update(delta_options(where, options) or {})
    if dimse_port is not None:  # refused before anything is bound or said to listen
        try:
            config = server_config(dimse_port, dimse)
            from pixels.dimse.config import check_listen

            check_listen(config)
        except PixelsError as e:
            raise click.ClickException(str(e)) from e
    clear_port_file(port_file)
    try:
        sockets = bind(host, port)  # here: port 0's port is known before any line is printed
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    shown = f"[{host}]" if ":" in host else host
    listening = f"http://{shown}:{bound_port(sockets)}"
    # a wildcard address is no URL to open (its Host is refused): this machine's, here
    here = f"http://{'[::1]' if ':' in host else '127.0.0.1'}:{bound_port(sockets)}"
    wildcard = is_wildcard(host)
    base = public_url.rstrip("/") if public_url else here if wildcard else listening
    catalog = table if not is_local(table) else os.path.abspath(table)
    click.echo(f"DICOMweb: {base}/dicomweb  (catalog {catalog})", err=True)
    if public_url or wildcard:
        every = "  (every address of this machine)" if wildcard else ""
        click.echo(f"Bound:    {listening}{every}", err=True)
    note_if_no_table(catalog, options)  # a mistyped --table served an empty viewer silently
    if installed_version():
        hint = "  (viewer URLs take ?token=...)" if token else ""
        click.echo(f"Viewer:   {base}/{hint}", err=True)
    else:
        click.echo("Viewer:   not installed (python -m pixels.web.ohif install)", err=True)
    ports = [bound_port(sockets)]  # what --port-file gets once both listen
    on_start = None
    if dimse_port is not None:

        def on_start(state: object) -> object:
            from pixels.dimse.server import DimseServer

            server = DimseServer(state, config).start()  # type: ignore[arg-type]
            ports.append(server.port)
            click.echo(
                f"DIMSE:    {config.ae_title}@{config.host}:{server.port}  (same catalog)", err=True
            )
            return server.stop

    try:
        serve(
            table,
            host=host,
            port=port,
            token=token,
            storage_root=storage_root,
            public_url=public_url,
            allowed_hosts=allowed_hosts,
            allow_unauthenticated=allow_unauthenticated,
            on_start=on_start,  # type: ignore[arg-type]
            sockets=sockets,
            on_listening=(lambda: write_port_file(port_file, ports)) if port_file else None,
        )
    except PixelsError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:  # Ctrl-C (uvicorn raises it again once shut down): a stop
        pass  # as asked, exit status 0 as 'pixels dimse scp', not click's 'Aborted!'
    finally:
        clear_port_file(port_file)  # its ports are no one's now
