"""``pixels deid``: de-identify a catalog's files into a folder, catalog them, keep an audit."""

from __future__ import annotations

import click

from pixels.cli.options import (
    QUIET_OPTION,
    TABLE_OPTION,
    exit_on_error,
    parse_storage_options,
    require_table,
    storage_option,
    warning_lines,
    workers_option,
)

__all__ = ["deid_cmd"]

_OPTION_NAMES = [
    "retain-dates",
    "retain-full-dates",
    "retain-uids",
    "retain-institution-identity",
    "retain-patient-characteristics",
    "retain-device-identity",
    "retain-safe-private",
    "clean-descriptors",
    "clean-structured-content",
    "clean-graphics",
]


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@click.command("deid")
@TABLE_OPTION
@click.option("--out", "out_dir", required=True, help="Folder for the de-identified files.")
@click.option(
    "--key-file",
    default="pixels-deid.key",
    show_default=True,
    help="Secret key (created, mode 0600, when missing); keep it outside --out.",
)
@click.option(
    "--options",
    "--option",
    "profile_options",
    multiple=True,
    metavar="NAME[,NAME]",
    help="Profile options (repeatable or comma-separated): "
    + ", ".join(_OPTION_NAMES)
    + ". clean-graphics keeps text annotations (Graphic Annotation Sequence), replacing "
    "only the texts that hold a name, identifier or date of the header, and overlay planes: "
    "region (R) ones, and graphics ones when a --blackout rule matches the file (its "
    "rectangles are cleared in the overlay too); without it overlays and curves are removed "
    "and every annotation text is a dummy. Not offered: Clean Recognizable Visual "
    "Features. clean-structured-content keeps SR content trees "
    "(and acquisition context, specimen preparation) with dates shifted, names given "
    "pseudonyms, UIDs replaced and free text replaced by a dummy; without it Content Sequence "
    "is kept with every date, name and free text replaced by a dummy. Descriptors Table "
    "E.1-1 does not list (Segment Label and Description, Document Title, Content Label and "
    "Description...) are kept unless clean-descriptors is on, as the Basic Profile keeps "
    "them (pixels.deid.profile.UNLISTED_DESCRIPTORS).",
)
@click.option(
    "--keep-descriptor",
    multiple=True,
    metavar="KEYWORD",
    help="With clean-descriptors: a descriptor you checked holds no identity, e.g. "
    "SeriesDescription or SegmentLabel, kept; the others are removed, emptied or given a "
    "dummy (repeatable or comma-separated).",
)
@click.option(
    "--blackout",
    "blackout_file",
    default=None,
    help="JSON rules of rectangles to black out, by rows/columns or manufacturer/model; "
    "files with possible burned-in text are written only when a rule matches.",
)
@click.option(
    "--burned-in-suspects",
    type=click.Choice(["conservative", "narrow"]),
    default="conservative",
    show_default=True,
    help="Images not written (unless a --blackout rule covers them) when Burned In "
    "Annotation (0028,0301) does not say NO: conservative = CR, DX, MG, IO, PX, XA, RF, US, "
    "SC, OT and visible light (photographs, endoscopy, microscopy, documents); narrow = US, "
    "SC, OT, XC, ES only (the earlier default). A YES is suspect whatever the modality, "
    "and so are whole-slide microscopy LABEL and OVERVIEW images whatever their flags.",
)
@click.option("--out-table", default=None, help="Catalog of the output [default: OUT/.catalog].")
@click.option(
    "--audit", default=None, help="Audit Delta table [default: KEY_FILE.audit; CSV beside it]."
)
@click.option("--no-catalog", is_flag=True, help="Do not catalog the output folder.")
@workers_option("Worker processes [default: CPUs; 0 = in-process].")
@storage_option("Object-store option to read the source files and table (repeatable).")
@QUIET_OPTION
def deid_cmd(
    table: str,
    out_dir: str,
    key_file: str,
    profile_options: tuple[str, ...],
    keep_descriptor: tuple[str, ...],
    blackout_file: str | None,
    burned_in_suspects: str,
    out_table: str | None,
    audit: str | None,
    no_catalog: bool,
    workers: int | None,
    storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """De-identify the files of the catalog --table into --out (DICOM PS3.15 Basic Profile).

    UIDs, patient pseudonyms and date offsets come from the key, so a re-run, or another
    catalog de-identified with the same key, maps every value the same way. Files that may
    show burned-in text are reported, not written, unless --blackout covers them: the
    summary counts them by reason (which rule made them suspect) and names one file each.
    The Clean Recognizable Visual Features option is not offered (see --options).
    """
    from pixels.deid import DeidOptions, Option, load_rules
    from pixels.deid.run import DeidStats, deidentify_table

    try:
        opts = [Option.parse(o) for o in _split(profile_options)]
        DeidOptions.of(*opts)  # refuses options that exclude each other
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--options") from None
    storage = parse_storage_options(storage_option)
    with exit_on_error():
        require_table(table, storage)
        rules = load_rules(blackout_file) if blackout_file else ()
        options = DeidOptions.of(
            *opts,
            keep_descriptors=tuple(_split(keep_descriptor)),
            blackout=rules,
            burned_in_suspects=burned_in_suspects,
        )

        def show(st: DeidStats) -> None:
            if not quiet:
                click.echo(
                    f"\r{st.written} written, {st.skipped} skipped, {st.failed} failed",
                    nl=False,
                    err=True,
                )

        stats = deidentify_table(
            table,
            out_dir,
            key_file=key_file,
            options=options,
            out_table=out_table,
            audit=audit,
            workers=workers,
            storage_options=storage,
            table_storage_options=storage,
            catalog=not no_catalog,
            progress=show,
        )
    if not quiet:
        click.echo("", err=True)
    if stats.key_created:
        click.echo(f"created key {key_file} (mode 0600): keep it secret, outside {out_dir}")
    click.echo(
        f"{stats.written} written, {stats.skipped} skipped, {stats.failed} failed, "
        f"{stats.done_before} done before; audit {stats.audit_csv}"
        + (f"; catalog {stats.out_table}" if stats.out_table else "")
    )
    for why, n in sorted(stats.skipped_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        example = stats.skipped_examples.get(why)
        click.echo(f"  skipped {n}: {why}" + (f" (e.g. {example})" if example else ""))
    for message in stats.error_samples:
        click.echo(f"  failed: {message}")
    if stats.warned:
        click.echo(f"warnings: {stats.warned} files read with warnings (pydicom, highdicom)")
        for line in warning_lines(stats.warning_kinds):
            click.echo(line)
