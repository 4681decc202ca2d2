"""PyTorch datasets over the catalog: one SQL query, then frames read through the frame index.

- :class:`SeriesDataset`: one item per series, the slices sorted along the slice
  normal, Hounsfield units (modality LUT), an affine MONAI's ``Spacing`` /
  ``Orientation`` accept (the image is a ``monai.data.MetaTensor`` when MONAI is
  installed).
- :class:`FrameDataset`: one item per frame, optionally resized and/or through
  the display pipeline.
- :class:`PatchDataset`: an iterable dataset of fixed-size tiles
  (:func:`pixels.dicom.patches.patch_file`, the logic of ``pixels patches``).

Items are MONAI-style dicts (``{"image": ..., "SeriesInstanceUID": ...}``) so
``monai.transforms`` compose on them unchanged. The query runs once, in the
constructor; the dataset then holds only plain rows and plans, so it pickles
cheaply to ``DataLoader`` workers, which open the files themselves.

Bad input: a series that cannot be one volume (mixed sizes, gaps, inconsistent
orientation, a file the catalog could not read) is found in the constructor,
from metadata alone; a file that cannot be decoded is found when its item is
read. With ``on_error="raise"`` (default) both raise
:class:`~pixels.errors.SeriesError` naming the series and the file; with
``"skip"`` the series is left out with a warning (listed in
:attr:`SeriesDataset.problems`), and an item that fails to decode is replaced by
the next readable one, with a warning naming the file.

Examples
--------
>>> from pixels import Catalog                                    # doctest: +SKIP
>>> from pixels.ml import SeriesDataset                           # doctest: +SKIP
>>> ds = SeriesDataset(Catalog("./catalog"), where="Modality = 'CT' AND SliceThickness <= 2.5")
>>> item = ds[0]                                                  # doctest: +SKIP
>>> item["image"].shape, item["spacing"]                          # doctest: +SKIP
(torch.Size([1, 512, 512, 120]), (0.7, 0.7, 2.5))
>>> loader = torch.utils.data.DataLoader(ds, num_workers=4, batch_size=None)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, BinaryIO

import numpy as np

from pixels.errors import PixelsError, SeriesError
from pixels.ml.deps import need
from pixels.ml.resize import resize
from pixels.ml.volume import (
    SeriesRows,
    Volume,
    read_volume,
    select_rows,
    select_series,
    to_modality,
)
from pixels.row_pixels import RowPixels

need("torch", "pixels.ml datasets")

import torch  # noqa: E402
from torch.utils.data import Dataset, IterableDataset  # noqa: E402

__all__ = ["FrameDataset", "PatchDataset", "SeriesDataset", "volume_item"]

ON_ERROR = ("raise", "skip")


def _catalog(catalog: Any, storage_options: dict[str, Any] | None) -> Any:
    from pixels.catalog import Catalog

    if isinstance(catalog, str | os.PathLike):
        return Catalog(catalog, storage_options=storage_options)
    return catalog


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


#: In a ``DataLoader`` worker, the C heap keeps up to this many MiB of freed memory for
#: reuse, and serves blocks below it from the heap rather than from fresh ``mmap`` pages
#: (glibc ``mallopt`` ``M_TRIM_THRESHOLD`` / ``M_MMAP_THRESHOLD``). Every item allocates
#: and frees frame-sized buffers; by default each comes back as fresh pages, and a page
#: fault per 4 KiB page costs more than reading and converting the frame (about 1 ms per
#: MiB on a virtual machine: 0.5 vs 1.3-1.8 ms of CPU per 512x512 CT item). 0 leaves the
#: allocator alone. Set once per worker process, on its first item; never in the main process.
WORKER_HEAP_MB = 64
_heap_tuned = False


def _tune_worker_heap() -> None:
    """Apply :data:`WORKER_HEAP_MB` once, in a ``DataLoader`` worker process only (glibc)."""
    global _heap_tuned
    if _heap_tuned or WORKER_HEAP_MB <= 0 or torch.utils.data.get_worker_info() is None:
        return
    _heap_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        size = int(WORKER_HEAP_MB) << 20
        libc.mallopt(-1, size)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, size)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _meta_tensor(array: Any, affine: np.ndarray, meta: dict[str, Any]) -> Any:
    """A MONAI MetaTensor carrying the affine when MONAI is installed, else a plain tensor."""
    t = torch.from_numpy(array)  # any positive strides: no copy
    try:
        from monai.data import MetaTensor
    except ImportError:
        return t
    return MetaTensor(t, affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


def volume_item(vol: Volume) -> dict[str, Any]:
    """The dataset item of a volume: ``image`` ``[1, X, Y, Z]`` and its geometry and keys."""
    plan = vol.plan
    first = vol.first
    meta = {
        "original_affine": torch.as_tensor(plan.affine, dtype=torch.float64),
        "spatial_shape": np.asarray(plan.shape),
        "pixdim": np.asarray([1.0, *plan.spacing, 1.0, 1.0, 1.0, 1.0]),
        "original_channel_dim": 0,  # channel first already
        "space": "RAS",
        "filename_or_obj": plan.series_uid,
    }
    return {
        "image": _meta_tensor(vol.array[None], plan.affine, meta),
        "affine": torch.as_tensor(plan.affine, dtype=torch.float64),
        "spacing": tuple(float(s) for s in plan.spacing),
        "SeriesInstanceUID": plan.series_uid,
        "StudyInstanceUID": first.get("StudyInstanceUID"),
        "Modality": first.get("Modality"),
        "paths": plan.paths,
    }


class SeriesDataset(Dataset):
    """One item per series of the catalog rows matching ``where``.

    Parameters
    ----------
    catalog : Catalog or str
        The catalog (or its table path / URL).
    where : str, optional
        SQL predicate over ``object_catalog``; may also use ``SliceThickness``,
        ``SpacingBetweenSlices``, ``KVP``, ``ConvolutionKernel``, ``ImageType``
        (read from ``meta``).
    on_error : {"raise", "skip"}
        See the module docstring.
    min_slices : int
        Series with fewer slices are problems.
    transform : callable, optional
        Applied to each item (a ``monai.transforms.Compose`` for instance).
    storage_options : dict, optional
        fsspec options for the table and the files (``s3://`` catalogs).
    threads : int, optional
        Files of a series read and decoded at once; default
        :func:`pixels.ml.volume.default_threads` (the CPUs, or 1 in a ``DataLoader``
        worker).

    Attributes
    ----------
    series : list of SeriesRows
        The series, in the order of the items.
    problems : list of SeriesRows
        Series left out, each with its ``problem``.

    Items
    -----
    ``image``: ``float32`` ``[1, X, Y, Z]`` (columns, rows, slices) in modality
    units, a ``MetaTensor`` whose ``affine`` maps voxels to RAS mm; ``affine``:
    the same 4x4; ``spacing``: mm along X, Y, Z; ``SeriesInstanceUID``,
    ``StudyInstanceUID``, ``Modality``; ``paths``: the files in slice order.
    """

    def __init__(
        self,
        catalog: Any,
        where: str | None = None,
        *,
        on_error: str = "raise",
        min_slices: int = 1,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        _check_on_error(on_error)
        self.threads = threads
        found = select_series(_catalog(catalog, storage_options), where, min_slices=min_slices)
        self.series: list[SeriesRows] = found.series
        self.problems: list[SeriesRows] = found.problems
        self.on_error = on_error
        self.transform = transform
        self.storage_options = storage_options
        if self.problems:
            listed = "; ".join(str(p.problem) for p in self.problems[:3])
            more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
            if on_error == "raise":
                raise SeriesError(
                    f"{len(self.problems)} series cannot be read as volumes: {listed}{more} "
                    "(on_error='skip' leaves them out)"
                )
            warnings.warn(f"{len(self.problems)} series left out: {listed}{more}", stacklevel=2)

    def __len__(self) -> int:
        return len(self.series)

    def volume(self, index: int) -> Volume:
        """The :class:`Volume` of item ``index`` (no transform)."""
        return read_volume(
            self.series[index], storage_options=self.storage_options, threads=self.threads
        )

    def __getitem__(self, index: int) -> Any:
        _tune_worker_heap()
        n = len(self.series)
        if not -n <= index < n:
            raise IndexError(f"series {index} out of range: the dataset has {n}")
        index %= n
        for attempt in range(n):
            k = (index + attempt) % n
            try:
                item = volume_item(self.volume(k))
            except SeriesError as e:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"{e} (skipped: the next series is returned)", stacklevel=2)
                continue
            return self.transform(item) if self.transform is not None else item
        raise SeriesError("no series of the dataset could be read")


# --------------------------------------------------------------------------- frames


#: Rows whose parsed meta a dataset keeps (per process) when items need all of it (the
#: display pipeline): the frames of a multi-frame file are read one after the other, its
#: meta parsed once.
PARSED_ROWS = 64
#: Rows kept when items need only the modality LUT (``display=False``): each row then
#: keeps only :data:`MODALITY_TAGS` of its meta (a few hundred bytes for a CT slice), so
#: a worker parses each file's JSON once, not once per epoch, for datasets up to this size.
TRIMMED_ROWS = 4096
#: The meta a modality-value item reads (:func:`pixels.ml.volume.to_modality`): Rescale
#: Intercept / Slope / Type, Modality LUT Sequence, shared and per-frame functional groups.
MODALITY_TAGS = ("00281052", "00281053", "00281054", "00283000", "52009229", "52009230")
#: ... and at most this many frames in all among the rows kept (a row's per-frame
#: functional groups grow with its frames: a few large multi-frame files fill the cache).
PARSED_FRAMES = 16384


class _Parsed:
    """Rows of a dataset parsed on first use (:class:`pixels.row_pixels.RowPixels`), the
    last ``keep`` kept (and no more than :data:`PARSED_FRAMES` frames among them, the
    last row always kept); each ``DataLoader`` worker has its own.

    ``tags``: keep only these keys of each row's meta (None: all of it).
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        keep: int = PARSED_ROWS,
        tags: tuple[str, ...] | None = None,
    ) -> None:
        self.rows = rows
        self.keep = keep
        self.tags = tags
        self.cache: OrderedDict[int, RowPixels] = OrderedDict()
        self.frames = 0  # frames of the rows in the cache

    def __getitem__(self, i: int) -> RowPixels:
        px = self.cache.get(i)
        if px is None:
            px = RowPixels.of(self.rows[i])
            if self.tags is not None:
                meta = {t: px.meta[t] for t in self.tags if t in px.meta}
                px = dataclasses.replace(px, meta=meta)
            self.cache[i] = px
            self.frames += px.n_frames
            while len(self.cache) > 1 and (
                len(self.cache) > self.keep or self.frames > PARSED_FRAMES
            ):
                self.frames -= self.cache.popitem(last=False)[1].n_frames
        else:
            self.cache.move_to_end(i)
        return px

    def __getstate__(self) -> dict[str, Any]:  # workers start with an empty cache
        return {**self.__dict__, "cache": OrderedDict(), "frames": 0}


class FrameDataset(Dataset):
    """One item per frame of the catalog rows matching ``where``.

    Parameters
    ----------
    catalog : Catalog or str
        The catalog (or its table path / URL).
    where : str, optional
        SQL predicate (see :class:`SeriesDataset`).
    size : int or (height, width), optional
        Resize every frame to this (bilinear, antialiased), so items batch.
    display : bool
        ``False`` (default): modality values (``float32``, Hounsfield units for
        CT; colour as decoded). ``True``: the viewer's display pipeline
        (:func:`pixels.dicom.display.to_display`: VOI window, MONOCHROME1
        inversion, YBR -> RGB), ``uint8`` scaled to ``float32`` 0..1.
    on_error : {"raise", "skip"}
        A frame that cannot be read: raise naming the file, or warn and return
        the next frame.
    transform : callable, optional
        Applied to each item.
    storage_options : dict, optional
        fsspec options.
    encoded : bool
        Items are the frames' bytes, not decoded (:class:`pixels.ml.gpudecode.EncodedFrame`):
        ``DataLoader`` workers then only read, and
        :class:`~pixels.ml.gpudecode.FrameDecoder` decodes each batch on the GPU
        (``collate_fn=list``). Not with ``display`` or ``transform``.

    Items
    -----
    ``image``: ``[C, H, W]`` ``float32``; ``path``, ``frame``, ``SOPInstanceUID``,
    ``SeriesInstanceUID``, ``Modality``.

    Speed: in a ``DataLoader``, prefer ``batch_size`` (a worker then reads a whole batch
    in one call, :meth:`__getitems__`, and the loader moves one tensor per batch to the
    main process instead of one per frame); see ``bench/README.md``.
    """

    def __init__(
        self,
        catalog: Any,
        where: str | None = None,
        *,
        size: int | tuple[int, int] | None = None,
        display: bool = False,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        encoded: bool = False,
    ) -> None:
        _check_on_error(on_error)
        if encoded and (display or transform is not None):
            raise ValueError(
                "encoded=True gives undecoded frames: display and transform apply after "
                "FrameDecoder, not here"
            )
        rows = select_rows(_catalog(catalog, storage_options), where)
        self.rows = [r for r in rows if r.get("frame_offsets") and not r.get("error")]
        self._parsed = (
            _Parsed(self.rows)
            if display
            else _Parsed(self.rows, keep=TRIMMED_ROWS, tags=MODALITY_TAGS)
        )
        self.items: list[tuple[int, int]] = [
            (i, f) for i, r in enumerate(self.rows) for f in range(len(r["frame_offsets"]))
        ]
        self.size = size
        self.display = display
        self.on_error = on_error
        self.transform = transform
        self.storage_options = storage_options
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.items)

    def _item(self, k: int, files: tuple[ExitStack, dict[int, BinaryIO]] | None = None) -> Any:
        """Item ``k`` (a dict; an ``EncodedFrame`` when ``encoded``); ``files``: the files of
        a batch already open (by row), reused and added to (closed with the stack)."""
        from pixels.dicom.display import to_display

        i, frame = self.items[k]
        row = self.rows[i]
        px = self._parsed[i]
        if px.index is None or px.index.bit_offsets is not None:
            raise PixelsError("no frame index (deflated, 1-bit or no pixel data)", px.path)
        if files is None:
            with px.open(self.storage_options) as fp:
                data = px.read(fp, frame)  # one ranged read (one per fragment)
        else:
            stack, opened = files
            if i not in opened:
                opened[i] = stack.enter_context(px.open(self.storage_options))
            data = px.read(opened[i], frame)
        if self.encoded:
            from pixels.ml.gpudecode import encoded_frame
            from pixels.ml.volume import linear_rescale

            rescale = linear_rescale(px.meta, frame)
            return encoded_frame(data, px.info, px.meta, rescale, self.size, row, frame)
        arr = px.decode(data)
        del data
        if self.display:
            img = to_display(arr, px.meta, frame=frame).astype(np.float32) / 255.0
        elif arr.ndim == 2:
            img = np.empty(arr.shape, np.float32)
            to_modality(arr, px.meta, frame, img)
        else:
            img = arr.astype(np.float32)
        t = torch.from_numpy(img)
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        return {
            "image": resize(t.contiguous(), self.size),
            "path": row["path"],
            "frame": frame,
            "SOPInstanceUID": row.get("SOPInstanceUID"),
            "SeriesInstanceUID": row.get("SeriesInstanceUID"),
            "Modality": row.get("Modality"),
        }

    def __getitems__(self, indices: list[int]) -> list[Any]:
        """The items of ``indices`` (what ``DataLoader`` calls with a whole batch when
        ``batch_size`` is set): ``[self[i] for i in indices]``, each file of the batch
        opened once and its frames read in file order."""
        _tune_worker_heap()
        if type(self).__getitem__ is not FrameDataset.__getitem__:  # a subclass's items
            return [self[i] for i in indices]
        n = len(self.items)
        for index in indices:
            if not -n <= index < n:
                raise IndexError(f"frame {index} out of range: the dataset has {n}")
        order = sorted(range(len(indices)), key=lambda j: self.items[indices[j] % n])
        out: list[Any] = [None] * len(indices)
        with ExitStack() as stack:
            files: tuple[ExitStack, dict[int, BinaryIO]] = (stack, {})
            for j in order:
                try:
                    item = self._item(indices[j] % n, files)
                except PixelsError:
                    out[j] = self[indices[j]]  # raises, or skips to the next readable frame
                    continue
                out[j] = self.transform(item) if self.transform is not None else item
        return out

    def __getitem__(self, index: int) -> Any:
        _tune_worker_heap()
        n = len(self.items)
        if not -n <= index < n:
            raise IndexError(f"frame {index} out of range: the dataset has {n}")
        index %= n
        for attempt in range(n):
            k = (index + attempt) % n
            try:
                item = self._item(k)
            except PixelsError as e:
                i, frame = self.items[k]
                message = f"{self.rows[i]['path']}: frame {frame}: {e.reason}"
                if self.on_error == "raise":
                    raise PixelsError(f"frame {frame}: {e.reason}", self.rows[i]["path"]) from e
                warnings.warn(message + " (skipped: the next frame is returned)", stacklevel=2)
                continue
            return self.transform(item) if self.transform is not None else item
        raise PixelsError("no frame of the dataset could be read")


# --------------------------------------------------------------------------- patches


class PatchDataset(IterableDataset):
    """Fixed-size tiles of every frame of the matching rows (an iterable dataset).

    Tiling is :func:`pixels.dicom.patches.iter_patches` (the logic of
    ``pixels patches``); files are split between ``DataLoader`` workers. Values
    are modality values (``float32``) for greyscale, stored values for colour.

    Parameters
    ----------
    catalog : Catalog or str
        The catalog.
    where : str, optional
        SQL predicate.
    size : int or (height, width)
        Tile size.
    stride, pad, pad_value, min_foreground, background
        As :func:`pixels.dicom.patches.iter_patches` (``background`` in stored values).
    frames : {"all", "middle"}
        Every frame, or only the middle one.
    on_error : {"raise", "skip"}
        A file that cannot be read: raise naming it, or warn and go on.
    storage_options : dict, optional
        fsspec options.

    Items
    -----
    ``image`` ``[C, h, w]``; ``path``, ``frame``, ``x``, ``y``, ``SOPInstanceUID``.
    """

    def __init__(
        self,
        catalog: Any,
        where: str | None = None,
        *,
        size: int | tuple[int, int] = 256,
        stride: int | tuple[int, int] | None = None,
        pad: bool = False,
        pad_value: float = 0,
        min_foreground: float | None = None,
        background: float | None = None,
        frames: str = "all",
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        _check_on_error(on_error)
        if frames not in ("all", "middle"):
            raise ValueError(f"frames must be 'all' or 'middle', got {frames!r}")
        rows = select_rows(_catalog(catalog, storage_options), where)
        self.rows = [r for r in rows if r.get("frame_offsets") and not r.get("error")]
        self.tiling = {
            "size": size,
            "stride": stride,
            "pad": pad,
            "pad_value": pad_value,
            "min_foreground": min_foreground,
            "background": background,
        }
        self.frames = frames
        self.on_error = on_error
        self.transform = transform
        self.storage_options = storage_options

    def _rows_of_worker(self) -> list[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self.rows
        return self.rows[info.id :: info.num_workers]

    def __iter__(self) -> Iterator[Any]:
        from pixels.dicom.display import modality_lut
        from pixels.dicom.patches import patch_file

        for row in self._rows_of_worker():
            try:
                px = RowPixels.of(row)
                if px.index is None:
                    raise PixelsError("no frame index in the catalog row", px.path)
                n = len(px.index)
                todo = [n // 2] if self.frames == "middle" else None
                with px.open(self.storage_options) as fp:
                    for p in patch_file(
                        fp,
                        px.meta,
                        px.transfer_syntax,
                        px.index,
                        frames=todo,
                        path=px.path,
                        **self.tiling,
                    ):
                        if p.pixels.ndim == 2:
                            img = modality_lut(p.pixels, px.meta, frame=p.frame).astype(np.float32)
                            t = torch.from_numpy(img)[None]
                        else:
                            t = torch.from_numpy(p.pixels.astype(np.float32)).permute(2, 0, 1)
                        item = {
                            "image": t.contiguous(),
                            "path": row["path"],
                            "frame": p.frame,
                            "x": p.x,
                            "y": p.y,
                            "SOPInstanceUID": row.get("SOPInstanceUID"),
                        }
                        yield self.transform(item) if self.transform is not None else item
            except PixelsError as e:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"{e} (skipped)", stacklevel=2)
