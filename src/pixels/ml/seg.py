"""DICOM SEG out: a model's label map as a Segmentation instance, written atomically.

:func:`build_seg` makes the SEG with highdicom from the catalog rows of the
source series (their headers come from the catalog's ``meta``: no file is read
again): binary (overlapping segments allowed, union segments such as ``Body``
included; bit-packed) or label map (one 8-bit value per voxel, RLE Lossless),
referencing the source instances, series and frame of reference.

Over a multi-frame source (an enhanced CT) each SEG frame references its source
frame (Source Image Sequence > Referenced Frame Number), so one source instance
stands for several SEG frames per segment: read such a SEG by source frame
(highdicom's ``get_pixels_by_source_frame``); reading it by source instance is
for series of single-frame sources. Both kinds pass dciodvfy (tests).

UIDs are derived from the source series and the model name, so the SEG of a
series by a model always has the same Series/SOP Instance UID and the same path
``{root}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm``: a
re-run replaces it instead of adding a second one. :func:`write_seg` writes it
to a temporary file next to that path and renames it into place (local folders;
on object stores one PUT), so a reader never sees half a file.

:func:`segmentations` answers "which series have a segmentation by model X"
from the catalog alone.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from pixels.dicom.tags import PIXEL_DATA_KEYS
from pixels.errors import ModelError
from pixels.ml.deps import need
from pixels.ml.models.base import Code, Model, Segment
from pixels.ml.volume import Volume

if TYPE_CHECKING:
    import pandas as pd

    from pixels.catalog import Catalog

__all__ = ["SEG_SOP_CLASSES", "build_seg", "seg_uids", "segmentations", "write_seg"]

#: Segmentation Storage and Label Map Segmentation Storage.
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
SERIES_NUMBER = 900


def seg_uids(source_series: str, model_name: str) -> tuple[str, str]:
    """``(SeriesInstanceUID, SOPInstanceUID)`` of the SEG of ``source_series`` by ``model_name``."""
    from pydicom.uid import generate_uid

    series = generate_uid(entropy_srcs=["pixels-seg-series", source_series, model_name])
    sop = generate_uid(entropy_srcs=["pixels-seg-instance", source_series, model_name])
    return str(series), str(sop)


def _source_datasets(vol: Volume) -> list[Any]:
    """pydicom Datasets of the source instances (from ``meta``), in the order of their first slice."""
    from pydicom import Dataset

    def no_bulk(*_args: Any) -> bytes:
        return b""

    out = []
    for r in dict.fromkeys(s.row for s in vol.plan.slices):
        row = vol.rows[r]
        raw = row["meta"]
        meta = json.loads(raw) if isinstance(raw, str) else dict(raw)
        popped = [meta.pop(tag, None) for tag in PIXEL_DATA_KEYS]
        # pydicom inspects the handler's signature once per element: pass it only when an
        # element left (not the pixel data) refers to bulk data
        text = raw if isinstance(raw, str) else json.dumps(raw)
        left = text.count('"BulkDataURI"') - sum(1 for p in popped if p and "BulkDataURI" in p)
        bulk = no_bulk if left > 0 else None
        ds = Dataset.from_json(meta, bulk_data_uri_handler=bulk)
        out.append(ds)
    return out


def _code(code: Code) -> Any:
    hd = need("highdicom", "writing DICOM SEG")
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def _content_label(name: str) -> str:
    return (re.sub(r"[^A-Z0-9_ ]", "_", name.upper()) or "SEG")[:16]


def _descriptions(model: Model, segments: list[Segment], numbers: list[int]) -> list[Any]:
    hd = need("highdicom", "writing DICOM SEG")
    from pydicom.sr.codedict import codes

    family = getattr(model, "family", None)
    algo = hd.AlgorithmIdentificationSequence(
        name=model.name,
        family=_code(family) if isinstance(family, Code) else codes.cid7162.ArtificialIntelligence,
        version=str(model.version),
    )
    out = []
    for n, seg in zip(numbers, segments, strict=True):
        kw: dict[str, Any] = {}
        if seg.color is not None:
            kw["display_color"] = hd.color.CIELabColor.from_rgb(*seg.color)
        out.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=seg.name,
                segmented_property_category=_code(seg.category),
                segmented_property_type=_code(seg.type),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                **kw,
            )
        )
    return out


def build_seg(vol: Volume, labels: np.ndarray, model: Model, *, labelmap: bool = False) -> Any:
    """The SEG (a highdicom ``Segmentation``) of ``labels`` over the source series of ``vol``.

    Parameters
    ----------
    vol : Volume
        The source series as read by :func:`pixels.ml.volume.read_volume`.
    labels : numpy.ndarray
        Integer label map ``[X, Y, Z]`` (same shape as ``vol.array``).
    model : Model
        Gives the segments, the algorithm name and version.
    labelmap : bool
        Write a Label Map SEG (only the model's plain labels) instead of a binary one.

    Raises
    ------
    ModelError
        The label map does not match the volume, or holds labels the model does not declare.
    """
    hd = need("highdicom", "writing DICOM SEG")
    from pixels import __version__

    if labels.shape != vol.array.shape:
        raise ModelError(
            f"model {model.name} returned a label map of shape {labels.shape} for a volume of "
            f"shape {vol.array.shape}"
        )
    plain = [s for s in model.segments if not s.includes]
    declared = {s.label for s in plain}
    sources = _source_datasets(vol)
    # frames in the order highdicom pairs them with the sources: one per single-frame
    # instance (sources are in slice order), or the frames of one multi-frame instance
    n = len(vol.plan.slices)
    if len(sources) == n:
        order: list[int] | slice = slice(None)
    elif len(sources) == 1:
        order = sorted(range(n), key=lambda k: vol.plan.slices[k].frame)
    else:
        raise ModelError(
            f"series {vol.plan.series_uid}: a SEG over several multi-frame instances is not supported"
        )
    frames = np.ascontiguousarray(labels.transpose(2, 1, 0)[order])  # (slices, rows, cols)
    if frames.dtype == np.uint8:  # a histogram: one pass, no sort of the whole volume
        found = {int(v) for v in np.flatnonzero(np.bincount(frames.ravel(), minlength=256))}
    else:
        found = {int(v) for v in np.unique(frames)}
    found -= {0}
    if found - declared:
        raise ModelError(
            f"model {model.name} returned labels {sorted(found - declared)} it does not declare "
            f"(its segments: {sorted(declared)})"
        )
    segments = plain if labelmap else list(model.segments)
    numbers = list(range(1, len(segments) + 1))
    if labelmap:
        lut = np.zeros(max(declared | {0}) + 1, np.uint8)
        for n, s in zip(numbers, segments, strict=True):
            lut[s.label] = n
        pixel_array = lut[frames]
        seg_type = hd.seg.SegmentationTypeValues.LABELMAP
        syntax = RLE_LOSSLESS
    else:
        # (slices, rows, cols, segments) as a view of one contiguous plane per segment:
        # each plane is one gather through a 256-entry table, highdicom's checks (a sum
        # over the segments axis) add whole planes, and its frames are contiguous slices
        index = frames if frames.dtype.kind in "iub" else frames.astype(np.int64)
        planes = np.empty((len(segments), *frames.shape), np.bool_)
        for k, seg in enumerate(segments):
            table = np.zeros(max(found | declared | {0}) + 1, np.bool_)
            table[[v for v in (seg.includes or (seg.label,)) if v < len(table)]] = True
            np.take(table, index, out=planes[k])
        pixel_array = planes.transpose(1, 2, 3, 0)
        seg_type = hd.seg.SegmentationTypeValues.BINARY
        syntax = "1.2.840.10008.1.2.1"  # bit-packed: 1 bit per voxel and segment
    series_uid, sop_uid = seg_uids(vol.plan.series_uid, model.name)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixel_array,
        segmentation_type=seg_type,
        segment_descriptions=_descriptions(model, segments, numbers),
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="Pixels",
        manufacturer_model_name=model.name,
        software_versions=f"pixels {__version__}",
        device_serial_number="none",
        content_label=_content_label(model.name),
        content_description=f"{model.name} {model.version} segmentation"[:64],
        series_description=f"{model.name} segmentation"[:64],
        transfer_syntax_uid=syntax,
        omit_empty_frames=False,
    )
    return seg


def default_root(table_uri: str) -> str:
    """Where SEGs go for a table: ``seg`` next to the table folder (as STOW-RS uses ``stow``)."""
    uri = table_uri.rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        return uri.rsplit("/", 1)[0] + "/seg"
    local = os.path.abspath(uri.removeprefix("file://"))
    return os.path.join(os.path.dirname(local), "seg")


def write_seg(seg: Any, root: str, storage_options: dict[str, Any] | None = None) -> str:
    """Write ``seg`` to ``{root}/{Study}/{Series}/{SOP}.dcm`` atomically; return the path."""
    parts = (str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID), f"{seg.SOPInstanceUID}.dcm")
    if "://" in root and not root.startswith("file://"):
        from pixels.sources.remote import url_to_fs

        buf = io.BytesIO()
        seg.save_as(buf, enforce_file_format=True)
        url = "/".join([root.rstrip("/"), *parts])
        fs, path = url_to_fs(url, storage_options)
        fs.pipe_file(path, buf.getvalue())  # one PUT: all or nothing
        return url
    folder = os.path.join(root.removeprefix("file://"), *parts[:2])
    os.makedirs(folder, exist_ok=True)
    dest = os.path.join(folder, parts[2])
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".dcm.partial")
    try:
        with os.fdopen(fd, "wb") as f:
            seg.save_as(f, enforce_file_format=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return dest


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)


def segmentations(catalog: Catalog, model: str | None = None) -> pd.DataFrame:
    """The SEGs in the catalog: which source series each segments, by which model.

    Columns: ``ReferencedSeriesInstanceUID`` (the source series),
    ``SeriesInstanceUID`` (the SEG's), ``model`` (Segment Algorithm Name of its
    first segment), ``path``. ``model`` filters on that name.
    """
    sql = (
        'SELECT json_extract_string(meta, \'$."00081115".Value[0]."0020000E".Value[0]\') '
        "AS ReferencedSeriesInstanceUID, SeriesInstanceUID, "
        'json_extract_string(meta, \'$."00620002".Value[0]."00620009".Value[0]\') AS model, '
        "path FROM object_catalog WHERE Modality = 'SEG' AND error IS NULL"
    )
    df = catalog.sql(f"SELECT * FROM ({sql}) WHERE ? IS NULL OR model = ?", [model, model])
    return df
