"""Patches for deep learning from catalog rows: :class:`DicomPatcher` and :func:`write_patches`.

Rows are taken from the catalog, never re-parsed from the files: each file is
opened only to read its frames at the offsets of the row's frame index, decoded
one frame at a time (:func:`pixels.dicom.patches.patch_file`), and its patches
become rows of :data:`PATCH_SCHEMA`. A file that fails becomes one row with
``error`` set (after the patches of the frames that did decode); the run goes on.

The output of :func:`write_patches` is a Delta table like the catalog: query it
with ``pixels sql --table ./patches "SELECT ... FROM object_catalog"`` (the view
keeps the catalog's name), or read it with ``deltalake`` / Spark / DuckDB.
Rebuild a patch's pixels with::

    raw: numpy.frombuffer(data, dtype).reshape(height, width[, samples])
    png: numpy.asarray(PIL.Image.open(io.BytesIO(data))), then for signed dtypes
         .astype("uint16" or "uint8").view(dtype)

Examples
--------
>>> from pixels import Catalog                                     # doctest: +SKIP
>>> from pixels.patching import write_patches                      # doctest: +SKIP
>>> write_patches(Catalog("./catalog"), "./patches", where="Modality = 'MG'",
...               size=256, min_foreground=0.05)                   # doctest: +SKIP
{'files': 12, 'patches': 30411, 'errors': 0, 'seconds': 41.2}
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixels.dicom.patches import FORMATS, encode_patch, patch_file, png_supported
from pixels.errors import PixelsError, QueryError
from pixels.row_pixels import PIXEL_COLUMNS, RowPixels
from pixels.rows import PATCH_SCHEMA
from pixels.sources import ArchiveLimits

if TYPE_CHECKING:
    import pandas as pd

    from pixels.catalog import Catalog

__all__ = ["PATCH_SCHEMA", "DicomPatcher", "write_patches"]

#: Catalog columns the patcher reads (:data:`pixels.row_pixels.PIXEL_COLUMNS`).
ROW_COLUMNS = PIXEL_COLUMNS

FRAME_CHOICES = ("all", "middle")

#: A batch is also closed once its patch bytes pass this size.
BATCH_BYTES = 64 << 20


class DicomPatcher:
    """Turn catalog rows into patch rows (the dbx.pixels name; local engine).

    Parameters
    ----------
    size : int
        Tile side in pixels.
    stride : int, optional
        Step between tiles; default ``size``.
    pad : bool
        Also make edge tiles, padded with ``pad_value``.
    pad_value : int or float
        Fill value of padding.
    min_foreground : float, optional
        Skip tiles whose fraction of non-background pixels is below this.
    background : float, optional
        Background value for ``min_foreground``; default each frame's minimum.
    fmt : {"png", "raw"}
        Encoding of ``data``. Pixels PNG cannot hold exactly (32-bit, 16-bit
        colour, 2 or 4 samples) are written ``raw`` and their row says so in ``format``.
    frames : {"all", "middle"}
        Every frame, or only the middle one (``n // 2``).
    batch_rows : int
        Patch rows per record batch (a batch is also closed past 64 MiB of data).
    storage_options : dict, optional
        fsspec options to open files on object stores.
    limits : ArchiveLimits, optional
        Limits for zip members.

    Examples
    --------
    >>> patcher = DicomPatcher(256, min_foreground=0.05)           # doctest: +SKIP
    >>> for batch in patcher.transform(catalog.sql_arrow("SELECT * FROM object_catalog")):
    ...     ...                                                    # doctest: +SKIP
    """

    def __init__(
        self,
        size: int = 256,
        stride: int | None = None,
        *,
        pad: bool = False,
        pad_value: int | float = 0,
        min_foreground: float | None = None,
        background: float | None = None,
        fmt: str = "png",
        frames: str = "all",
        batch_rows: int = 2048,
        storage_options: dict[str, Any] | None = None,
        limits: ArchiveLimits | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown patch format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if frames not in FRAME_CHOICES:
            raise ValueError(
                f"unknown frames {frames!r}: expected one of {', '.join(FRAME_CHOICES)}"
            )
        if int(size) <= 0 or (stride is not None and int(stride) <= 0):
            raise ValueError(f"size and stride must be positive, got {size} and {stride}")
        if min_foreground is not None and not 0 <= min_foreground <= 1:
            raise ValueError(f"min_foreground must be between 0 and 1, got {min_foreground}")
        if batch_rows <= 0:
            raise ValueError(f"batch_rows must be positive, got {batch_rows}")
        self.tiling: dict[str, Any] = {
            "size": int(size),
            "stride": None if stride is None else int(stride),
            "pad": pad,
            "pad_value": pad_value,
            "min_foreground": min_foreground,
            "background": background,
        }
        self.fmt = fmt
        self.frames = frames
        self.batch_rows = batch_rows
        self.storage_options = storage_options
        self.limits = limits or ArchiveLimits()

    def __repr__(self) -> str:
        t = self.tiling
        return (
            f"DicomPatcher(size={t['size']}, stride={t['stride']}, pad={t['pad']}, "
            f"min_foreground={t['min_foreground']}, fmt={self.fmt!r}, frames={self.frames!r})"
        )

    def rows_of(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Patch rows of one catalog row (never raises: a failure is a row with ``error``)."""
        path = row.get("path") or ""
        uid = row.get("SOPInstanceUID")
        try:
            if not row.get("frame_offsets"):
                raise PixelsError("no frame index in the catalog row (no pixel data?)", path)
            rp = RowPixels.of(row)
            assert rp.index is not None
            frames = [len(rp.index) // 2] if self.frames == "middle" else None
            with rp.open(self.storage_options, self.limits) as fp:
                for p in patch_file(
                    fp,
                    rp.meta,
                    rp.transfer_syntax,
                    rp.index,
                    frames=frames,
                    path=path,
                    **self.tiling,
                ):
                    px = p.pixels
                    samples = px.shape[2] if px.ndim == 3 else 1
                    fmt = self.fmt
                    if fmt == "png" and not png_supported(px.dtype, samples):
                        fmt = "raw"
                    yield {
                        "source_path": path,
                        "SOPInstanceUID": uid,
                        "frame": p.frame,
                        "x": p.x,
                        "y": p.y,
                        "width": p.width,
                        "height": p.height,
                        "valid_width": p.valid_width,
                        "valid_height": p.valid_height,
                        "dtype": np.dtype(px.dtype).name,
                        "samples": samples,
                        "format": fmt,
                        "data": encode_patch(p, fmt),  # type: ignore[arg-type]
                        "error": None,
                    }
        except PixelsError as e:
            yield _error_row(path, uid, str(e) if path in str(e) else f"{path}: {e}")
        except Exception as e:  # a codec failing on a broken frame: still one row
            yield _error_row(path, uid, f"{path}: {type(e).__name__}: {e}")

    def transform(
        self, rows: pa.Table | pa.RecordBatch | pd.DataFrame | Iterable[dict[str, Any]] | Any
    ) -> Any:
        """Patch the files of catalog rows: record batches of :data:`PATCH_SCHEMA`.

        Given a Spark DataFrame of catalog rows, returns a Spark DataFrame of patch
        rows (the patching runs in the executors); otherwise an iterator of batches.

        ``rows`` needs the columns of :data:`ROW_COLUMNS` (at least ``path``,
        ``meta``, ``TransferSyntaxUID`` and the ``frame_*`` columns, plus
        ``local_path`` / ``original_path`` to find the file). Batches hold at most
        ``batch_rows`` rows and close early past 64 MiB of patch data.
        """
        from pixels.engines.spark.session import is_spark_dataframe

        if is_spark_dataframe(rows):
            from pixels.engines.spark.transform import patch_transform

            return patch_transform(rows, self)
        return self._batches(rows)

    def _batches(self, rows: Any) -> Iterator[pa.RecordBatch]:
        buf: list[dict[str, Any]] = []
        size = 0
        for row in _iter_rows(rows):
            for out in self.rows_of(row):
                buf.append(out)
                size += len(out["data"] or b"")
                if len(buf) >= self.batch_rows or size >= BATCH_BYTES:
                    yield pa.RecordBatch.from_pylist(buf, schema=PATCH_SCHEMA)
                    buf, size = [], 0
        if buf:
            yield pa.RecordBatch.from_pylist(buf, schema=PATCH_SCHEMA)


def _error_row(path: str, uid: str | None, message: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(PATCH_SCHEMA.names)
    row.update(source_path=path, SOPInstanceUID=uid, error=message)
    return row


def _iter_rows(rows: Any) -> Iterator[dict[str, Any]]:
    """Catalog rows as dicts of Python values, a record batch at a time."""
    if isinstance(rows, pa.RecordBatch):
        yield from rows.to_pylist()
        return
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(rows, preserve_index=False)  # lists become Python lists
    if isinstance(rows, pa.Table):
        for batch in rows.to_batches(max_chunksize=64):
            yield from batch.to_pylist()
        return
    yield from rows


def write_patches(
    catalog: Catalog,
    out: str | os.PathLike[str],
    *,
    where: str | None = None,
    size: int = 256,
    stride: int | None = None,
    pad: bool = False,
    pad_value: int | float = 0,
    min_foreground: float | None = None,
    background: float | None = None,
    fmt: str = "png",
    frames: str = "all",
    batch_rows: int = 2048,
    storage_options: dict[str, Any] | None = None,
    out_storage_options: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Patch the catalog's images and append the patches to the Delta table ``out``.

    Parameters
    ----------
    catalog : Catalog
        The source catalog.
    out : str
        Folder or URL of the patch table (created, or appended to).
    where : str, optional
        SQL predicate on ``object_catalog`` (``"Modality = 'CT'"``); rows without a
        frame index are always left out.
    size, stride, pad, pad_value, min_foreground, background, fmt, frames, batch_rows
        See :class:`DicomPatcher`.
    storage_options : dict, optional
        fsspec options to read the image files.
    out_storage_options : dict, optional
        delta-rs options of the output table.

    Returns
    -------
    dict
        ``files`` (rows patched, failed ones included), ``patches``, ``errors``
        (files with an error row), ``seconds``.

    Raises
    ------
    QueryError
        ``where`` is not valid SQL (DuckDB's message).
    """
    import duckdb
    from deltalake import write_deltalake

    from pixels.sql import connect

    out = os.fspath(out)
    patcher = DicomPatcher(
        size,
        stride,
        pad=pad,
        pad_value=pad_value,
        min_foreground=min_foreground,
        background=background,
        fmt=fmt,
        frames=frames,
        batch_rows=batch_rows,
        storage_options=storage_options,
    )
    t0 = time.perf_counter()
    stats: dict[str, Any] = {"files": 0, "patches": 0, "errors": 0, "seconds": 0.0}
    con = connect(catalog.table)
    try:
        have = {r[0] for r in con.execute("DESCRIBE object_catalog").fetchall()}
        cols = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in ROW_COLUMNS)
        sql = f"SELECT {cols} FROM object_catalog WHERE frame_offsets IS NOT NULL"
        if where:
            sql += f" AND ({where})"
        try:
            reader = con.sql(sql).to_arrow_reader(64)
        except duckdb.Error as e:
            raise QueryError(str(e)) from e

        def batches() -> Iterator[pa.RecordBatch]:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except duckdb.Error as e:
                    raise QueryError(str(e)) from e
                stats["files"] += batch.num_rows
                yield batch

        written = False
        for patch_batch in patcher.transform(_chain_rows(batches())):
            written = True
            write_deltalake(
                out,
                patch_batch,
                mode="append",
                storage_options=out_storage_options,
            )
            n_err = patch_batch.num_rows - patch_batch.column("error").null_count
            stats["errors"] += n_err
            stats["patches"] += patch_batch.num_rows - n_err
        if not written:  # an empty result is still a table, with the schema
            write_deltalake(
                out, PATCH_SCHEMA.empty_table(), mode="append", storage_options=out_storage_options
            )
    finally:
        con.close()
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return stats


def _chain_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        yield from batch.to_pylist()
