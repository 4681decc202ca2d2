"""The ``pixels`` command: one click group, its commands in modules named after what they do.

``catalog`` (and ``--watch``) in :mod:`pixels.cli.catalog`; ``sql`` in
:mod:`pixels.cli.query`; ``thumbnails``, ``show``, ``patches`` in
:mod:`pixels.cli.images`; ``segment``, ``models`` in :mod:`pixels.cli.ml`;
``serve`` in :mod:`pixels.cli.serve`; ``optimize``, ``upgrade``, ``schema`` in
:mod:`pixels.cli.maintenance`; ``demo`` in :mod:`pixels.cli.demo`; ``dimse`` in :mod:`pixels.cli.dimse`. Options they
share are in :mod:`pixels.cli.options`. ``python -m pixels.cli`` runs it too.
"""

from __future__ import annotations

import click

from pixels.cli.catalog import catalog_cmd
from pixels.cli.deid import deid_cmd
from pixels.cli.demo import demo_cmd
from pixels.cli.dimse import dimse_group
from pixels.cli.images import patches_cmd, show_cmd, thumbnails_cmd
from pixels.cli.maintenance import optimize_cmd, schema_cmd, upgrade_cmd
from pixels.cli.ml import models_cmd, segment_cmd
from pixels.cli.query import sql_cmd
from pixels.cli.serve import serve_cmd

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pixels-lake", prog_name="pixels")
def main() -> None:
    """Pixels: catalog medical image files into a SQL-queryable Delta Lake table."""


for _command in (
    catalog_cmd,
    sql_cmd,
    thumbnails_cmd,
    show_cmd,
    patches_cmd,
    segment_cmd,
    models_cmd,
    serve_cmd,
    optimize_cmd,
    upgrade_cmd,
    schema_cmd,
    demo_cmd,
    deid_cmd,
    dimse_group,
):
    main.add_command(_command)
