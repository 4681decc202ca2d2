"""Burned-in text in pixel data: which files are suspect, and blacking out rectangles.

A file with pixels (Pixel Data, Float Pixel Data or Double Float Pixel Data) is
**suspect** (:func:`burned_in_reason`) when a Burned In Annotation (0028,0301) anywhere in
it (functional groups included) is ``YES``, when its Recognizable Visual Features
(0028,0302) or Specimen Label in Image (0048,0010: a slide's label, which carries the
patient's name or number) is ``YES``, or when it does not say ``NO`` and its modality or
SOP class commonly carries text in its pixels. A whole-slide microscopy image (VL Whole
Slide Microscopy Image Storage, or Modality SM) whose Image Type (0008,0008) value 3 is
``LABEL`` or ``OVERVIEW`` is suspect whatever its flags say (the label photograph and the
whole-slide overview show the slide's label: patient name, accession number, barcode), a
``THUMBNAIL`` one unless Specimen Label in Image says ``NO``. Suspect files are not written unless a
:class:`BlackoutRule` matches them.

Which modalities and SOP classes are suspect when Burned In Annotation is absent (or empty,
or neither YES nor NO): by default (``conservative``, :data:`SUSPECT_MODALITIES`,
:data:`SUSPECT_SOP_CLASSES`) every projection radiograph, fluoroscopy and angiography
(CR, DX, MG, IO, PX, XA, RF: technologists' initials, the patient's name on older
consoles, dose and laterality text), ultrasound, secondary capture and every visible-light
photograph or video (XC, ES, GM, OP, DOC...); these are the images de-identification
services (TCIA's, CTP's pixel anonymizer scripts) look at by hand or black out by device.
The standard makes Burned In Annotation Type 1 in the DX, mammography, intra-oral, US and
visible-light IODs, so a conformant file of those says NO when it has no text; one that does
not say is not to be trusted. ``narrow`` (:data:`NARROW_SUSPECT_MODALITIES`,
:data:`NARROW_SUSPECT_SOP_CLASSES`; ``pixels deid --burned-in-suspects narrow``) is the
earlier behaviour: US, SC, OT, XC, ES and the ultrasound and secondary capture classes only.
Cross-sectional images (CT, MR, PT, NM...) are not suspect without a YES.

A rule matches by image size (Rows, Columns) or by device (Manufacturer, Manufacturer's
Model Name) and lists rectangles ``(x, y, width, height)`` in pixels (x: column, y: row,
from the top left). :func:`black_out` decodes every frame with
:func:`pixels.dicom.decode.decode_frame`, fills the rectangles with the darkest value
(the largest for MONOCHROME1; YBR colour is converted to RGB first), and writes the pixel
data **native** (uncompressed): Explicit VR Little Endian, or the source's own native
syntax when it was implicit or explicit little endian or deflated. Native is the lossless
choice: re-encoding a lossy JPEG would lose quality again, and a lossless re-encoder is
not available for every syntax. Lossy Image Compression (0028,2110) stays as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixels.dicom import codecs
from pixels.dicom.decode import PixelInfo, decode_frame
from pixels.dicom.words import swap_bytes
from pixels.errors import DecodeError, DeidError

__all__ = [
    "NARROW_SUSPECT_MODALITIES",
    "NARROW_SUSPECT_SOP_CLASSES",
    "PIXEL_KEYWORDS",
    "SUSPECT_MODALITIES",
    "SUSPECT_SETS",
    "SUSPECT_SOP_CLASSES",
    "BlackoutRule",
    "black_out",
    "burned_in_reason",
    "clear_embedded_overlays",
    "load_rules",
    "matching_rule",
    "trim_native_pixel_data",
]

#: Modalities whose images commonly carry burned-in text, ``narrow`` set (the earlier default).
NARROW_SUSPECT_MODALITIES = frozenset({"US", "SC", "OT", "XC", "ES"})

#: SOP classes suspect in the ``narrow`` set: ultrasound, secondary capture.
NARROW_SUSPECT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image",
    "1.2.840.10008.5.1.4.1.1.6.2": "Enhanced US Volume",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
}

#: Modalities suspect by default (``conservative``): the narrow set, projection radiography,
#: fluoroscopy and angiography, and visible light (photographs, endoscopy, microscopy,
#: ophthalmic photography, scanned documents).
SUSPECT_MODALITIES = NARROW_SUSPECT_MODALITIES | frozenset(
    {"CR", "DX", "MG", "IO", "PX", "XA", "RF", "DF", "DS", "GM", "OP", "DOC", "BMD"}
)

#: SOP classes suspect by default (``conservative``), whatever the Modality says.
SUSPECT_SOP_CLASSES = {
    **NARROW_SUSPECT_SOP_CLASSES,
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.3": "Digital Intra-Oral X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.3.1": "Digital Intra-Oral X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image",
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA Image",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic Image",
    "1.2.840.10008.5.1.4.1.1.12.2.1": "Enhanced XRF Image",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL Microscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "Video Microscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.3": "VL Slide-Coordinates Microscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image",
}

#: VL Whole Slide Microscopy Image Storage: its LABEL and OVERVIEW images show the slide's label.
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"

#: The sets by name (``pixels deid --burned-in-suspects``).
SUSPECT_SETS = {
    "conservative": (SUSPECT_MODALITIES, SUSPECT_SOP_CLASSES),
    "narrow": (NARROW_SUSPECT_MODALITIES, NARROW_SUSPECT_SOP_CLASSES),
}

_KEEP_NATIVE = {codecs.IMPLICIT_LE, codecs.EXPLICIT_LE, codecs.DEFLATED_LE}

#: The elements that hold an image's pixels (integer, float, double float).
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class BlackoutRule:
    """Rectangles to black out in the images a rule matches.

    Parameters
    ----------
    rectangles : sequence of (x, y, width, height)
        In pixels; x is the column, y the row of the top-left corner.
    rows, columns : int, optional
        Match images of this size (both given: both must match).
    manufacturer, model : str, optional
        Match Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090),
        compared without surrounding spaces, case-insensitively.

    A rule with neither size nor device matches nothing.
    """

    rectangles: tuple[tuple[int, int, int, int], ...]
    rows: int | None = None
    columns: int | None = None
    manufacturer: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        for rect in self.rectangles:
            if len(rect) != 4 or any(int(v) < 0 for v in rect) or rect[2] <= 0 or rect[3] <= 0:
                raise ValueError(f"a rectangle is x, y, width, height (>= 0, size > 0): {rect}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlackoutRule:
        """From ``{"rows": 480, "columns": 640, "rectangles": [[0, 0, 640, 40]]}``."""
        unknown = set(d) - {"rectangles", "rows", "columns", "manufacturer", "model"}
        if unknown:
            raise ValueError(
                f"unknown key(s) {sorted(unknown)} in a blackout rule; "
                "valid: rectangles, rows, columns, manufacturer, model"
            )
        rects = tuple(tuple(int(v) for v in r) for r in d.get("rectangles") or ())
        return cls(
            rectangles=rects,  # type: ignore[arg-type]
            rows=d.get("rows"),
            columns=d.get("columns"),
            manufacturer=d.get("manufacturer"),
            model=d.get("model"),
        )

    def matches(self, ds: Any) -> bool:
        """Whether this rule applies to the dataset ``ds``."""
        by_size = self.rows is not None or self.columns is not None
        by_device = self.manufacturer is not None or self.model is not None
        if not (by_size or by_device):
            return False
        if self.rows is not None and int(ds.get("Rows", -1) or -1) != self.rows:
            return False
        if self.columns is not None and int(ds.get("Columns", -1) or -1) != self.columns:
            return False

        def same(a: str | None, keyword: str) -> bool:
            return a is None or str(ds.get(keyword, "") or "").strip().lower() == a.strip().lower()

        return same(self.manufacturer, "Manufacturer") and same(self.model, "ManufacturerModelName")


def load_rules(path: str | os.PathLike[str]) -> tuple[BlackoutRule, ...]:
    """Rules from a JSON file holding a list of :meth:`BlackoutRule.from_dict` objects."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            items = json.load(f)
        if not isinstance(items, list):
            raise ValueError("expected a JSON list of rules")
        return tuple(BlackoutRule.from_dict(d) for d in items)
    except (OSError, ValueError, TypeError) as e:
        raise DeidError(f"bad blackout rules: {e}", name) from e


def matching_rule(ds: Any, rules: Iterable[BlackoutRule]) -> BlackoutRule | None:
    """The first rule that matches ``ds``."""
    return next((r for r in rules if r.matches(ds)), None)


def burned_in_reason(ds: Any, suspects: str = "conservative") -> str | None:
    """Why the pixels of ``ds`` may hold burned-in text, or None.

    None when there is no Pixel Data, or Burned In Annotation is ``NO`` (and nothing else
    says YES), or the image's modality and SOP class are not in the ``suspects`` set
    (``"conservative"``, the default, or ``"narrow"``: :data:`SUSPECT_SETS`).
    """
    try:
        modalities, classes = SUSPECT_SETS[suspects]
    except KeyError:
        raise ValueError(
            f"unknown burned-in suspect set {suspects!r}; valid: {', '.join(SUSPECT_SETS)}"
        ) from None
    if not any(kw in ds for kw in PIXEL_KEYWORDS):
        return None
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "Burned In Annotation (0028,0301) is YES"
    for keyword, tag in (
        ("RecognizableVisualFeatures", "(0028,0302)"),
        ("SpecimenLabelInImage", "(0048,0010)"),
    ):
        if str(ds.get(keyword, "") or "").strip().upper() == "YES":
            return f"{_words(keyword)} {tag} is YES"
    nested = _nested_yes(ds)
    if nested:
        return f"Burned In Annotation (0028,0301) is YES in {nested}"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    meta = ds.get("file_meta") if hasattr(ds, "file_meta") else None
    sop = str(ds.get("SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", "") or "")
    sop = sop.strip().rstrip("\x00")
    slide = _slide_label_image(ds, modality, sop)
    if slide:
        return slide
    if flag == "NO":
        return None
    if modality in modalities:
        return f"modality {modality} commonly has burned-in text and Burned In Annotation is not NO"
    if sop in classes:
        return (
            f"SOP class {classes[sop]} commonly has burned-in text and "
            "Burned In Annotation is not NO"
        )
    return None


def _slide_label_image(ds: Any, modality: str, sop: str) -> str | None:
    """Why a whole-slide microscopy image shows the slide's label, or None.

    A LABEL image is the photograph of the slide's label (patient name, accession number,
    barcode), an OVERVIEW image the whole slide, label included: both are suspect whatever
    Burned In Annotation and Specimen Label in Image say (a converter writes NO for every
    image of a pyramid). A THUMBNAIL is suspect unless Specimen Label in Image says NO.
    """
    if sop != WSI_SOP_CLASS and modality != "SM":
        return None
    image_type = ds.get("ImageType")
    values = [str(v).strip().upper() for v in image_type] if image_type is not None else []
    kind = values[2] if len(values) > 2 else ""
    if kind in ("LABEL", "OVERVIEW"):
        return (
            f"a whole-slide microscopy {kind} image (Image Type (0008,0008) value 3) shows the "
            "slide's label"
        )
    label = str(ds.get("SpecimenLabelInImage", "") or "").strip().upper()
    if kind == "THUMBNAIL" and label != "NO":
        return (
            "a whole-slide microscopy THUMBNAIL image (Image Type (0008,0008) value 3) and "
            "Specimen Label In Image (0048,0010) is not NO"
        )
    return None


def _words(keyword: str) -> str:
    return "".join(" " + c if c.isupper() and i else c for i, c in enumerate(keyword))


def _nested_yes(ds: Any) -> str | None:
    """The sequence holding a Burned In Annotation of YES below the top level, or None.

    Only public sequences are read (private ones are removed; a safe private element is
    never one), and nothing else is converted: a bad value is for the walk to name.
    """
    from pydicom.datadict import dictionary_VR

    for tag in list(ds.keys()):
        if tag.is_private:
            continue
        vr = getattr(ds.get_item(tag), "VR", None)
        if vr is None:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr != "SQ":
            continue
        try:
            elem = ds[tag]
        except Exception:
            continue
        for item in elem.value:
            if str(item.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
                return elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            found = _nested_yes(item)
            if found:
                return found
    return None


def _fill_value(info: PixelInfo, photometric: str, dtype: np.dtype[Any]) -> int:
    bits = info.bits_stored
    signed = info.pixel_representation == 1
    if photometric == "MONOCHROME1":
        return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if photometric == "MONOCHROME2" and signed:
        return -(1 << (bits - 1))
    return 0


def _frames(ds: Any, info: PixelInfo) -> list[bytes]:
    data = ds.PixelData
    if info.is_native:
        n = info.frame_length
        return [data[i * n : (i + 1) * n] for i in range(info.number_of_frames)]
    from pydicom.encaps import generate_frames

    return list(generate_frames(data, number_of_frames=info.number_of_frames))


def black_out(
    ds: Any,
    rectangles: Sequence[tuple[int, int, int, int]],
    transfer_syntax: str,
    *,
    path: str = "",
) -> str:
    """Fill ``rectangles`` in every frame of ``ds`` and store its pixel data natively.

    ``ds`` is changed in place (Pixel Data, and Photometric Interpretation / Planar
    Configuration when colour is converted). Returns the transfer syntax the dataset must
    now be written with. An empty ``rectangles`` re-encodes without changing a pixel (big
    endian input is written little endian this way).

    Raises
    ------
    DeidError
        The pixel data cannot be decoded (the message names the file, the tag and the
        frame) or is 1-bit.
    """
    from pydicom.pixels import convert_color_space

    if "PixelData" not in ds:
        return _black_out_float(ds, rectangles, transfer_syntax, path=path)
    info = PixelInfo.from_dataset(ds)
    if info.transfer_syntax != transfer_syntax:
        info = PixelInfo(**{**_asdict(info), "transfer_syntax": transfer_syntax})
    if not rectangles and transfer_syntax == codecs.EXPLICIT_BE:
        return _little_endian(ds, info)
    if info.bits_allocated == 1 or info.bits_allocated % 8:
        raise DeidError(
            f"(7FE0,0010) Pixel Data with Bits Allocated {info.bits_allocated} cannot be blacked out",
            path or None,
        )
    photometric = info.decoded_photometric
    out: list[bytes] = []
    width = info.bits_allocated // 8
    dtype = np.dtype(f"<{'i' if info.pixel_representation else 'u'}{width}")
    try:
        frames = _frames(ds, info)
    except Exception as e:
        raise DeidError(
            f"(7FE0,0010) Pixel Data cannot be split into frames: {e}", path or None
        ) from e
    for k, frame in enumerate(frames):
        try:
            arr = decode_frame(frame, info, path=path)
        except DecodeError as e:
            raise DeidError(
                f"(7FE0,0010) frame {k} cannot be decoded: {e.reason}", path or None
            ) from e
        if photometric == "YBR_FULL" and arr.ndim == 3:
            arr = convert_color_space(arr, "YBR_FULL", "RGB")
            photometric_out = "RGB"
        else:
            photometric_out = photometric
        arr = np.array(arr, dtype=dtype, copy=True)
        fill = _fill_value(info, photometric_out, dtype)
        for x, y, w, h in rectangles:
            arr[y : y + h, x : x + w, ...] = fill
        out.append(arr.tobytes())
    data = b"".join(out)
    if len(data) % 2:
        data += b"\x00"
    for tag in (0x7FE00001, 0x7FE00002, 0x7FE00010):  # offset tables, then the data itself
        if tag in ds:
            del ds[tag]
    ds.add_new(0x7FE00010, "OB" if width == 1 else "OW", data)
    ds.PhotometricInterpretation = photometric_out
    if info.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    return transfer_syntax if transfer_syntax in _KEEP_NATIVE else codecs.EXPLICIT_LE


def _black_out_float(
    ds: Any, rectangles: Sequence[tuple[int, int, int, int]], transfer_syntax: str, *, path: str
) -> str:
    """Float Pixel Data (7FE0,0008) or Double Float Pixel Data (7FE0,0009): always native.

    The rectangles get the smallest value of the image; big endian input is written little
    endian.
    """
    double = "DoubleFloatPixelData" in ds
    keyword, tag = (
        ("DoubleFloatPixelData", "(7FE0,0009)") if double else ("FloatPixelData", "(7FE0,0008)")
    )
    width = 8 if double else 4
    order = ">" if transfer_syntax == codecs.EXPLICIT_BE else "<"
    try:
        shape = (
            int(ds.get("NumberOfFrames", 1) or 1),
            int(ds.Rows),
            int(ds.Columns),
            int(ds.get("SamplesPerPixel", 1) or 1),
        )
    except (AttributeError, TypeError, ValueError) as e:
        raise DeidError(f"{tag} {keyword}: no usable image size: {e}", path or None) from e
    data = bytes(ds[keyword].value)
    count = shape[0] * shape[1] * shape[2] * shape[3]
    if len(data) < count * width:
        raise DeidError(
            f"{tag} {keyword} holds {len(data)} bytes, {count * width} expected", path or None
        )
    arr = np.frombuffer(data[: count * width], dtype=f"{order}f{width}").reshape(shape)
    arr = arr.astype(f"<f{width}", copy=True)
    if rectangles and arr.size:
        fill = np.nanmin(arr) if not np.isnan(arr).all() else 0.0
        for x, y, w, h in rectangles:
            arr[:, y : y + h, x : x + w, :] = fill
    ds[keyword].value = arr.tobytes()
    return transfer_syntax if transfer_syntax in _KEEP_NATIVE else codecs.EXPLICIT_LE


def clear_embedded_overlays(ds: Any, transfer_syntax: str, *, path: str = "") -> int:
    """Clear the bits of native Pixel Data that hold overlays (retired embedded overlays).

    An overlay plane (60xx) without Overlay Data (60xx,3000) lives in the unused high bits
    of Pixel Data, at Overlay Bit Position (60xx,0102): removing the 60xx group (as the
    profile does) hides it from viewers but leaves the text it draws in the file. Those
    bits are zeroed here, in every frame; stored pixel values do not change. Returns the
    number of bit planes cleared.

    Raises
    ------
    DeidError
        The overlay is embedded in compressed pixel data, which cannot be changed without
        decoding (names the file and the tag).
    """
    if "PixelData" not in ds:
        return 0
    bits: dict[int, int] = {}
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x0010) not in ds or (group << 16 | 0x3000) in ds:
            continue  # no overlay, or one with its own data
        position = ds.get((group << 16) | 0x0102)
        try:
            bit = int(position.value) if position is not None else -1
        except (TypeError, ValueError):
            bit = -1
        if bit >= 0:
            bits[bit] = group
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    high = int(ds.get("HighBit", stored - 1) or 0)
    low = high - stored + 1
    outside = {b: g for b, g in bits.items() if b < allocated and not low <= b <= high}
    if not outside or allocated not in (8, 16, 32):
        return 0
    if transfer_syntax not in (*_KEEP_NATIVE, codecs.EXPLICIT_BE):
        group = min(outside.values())
        raise DeidError(
            f"({group:04X},0102) an overlay embedded in compressed Pixel Data cannot be removed",
            path or None,
        )
    order = ">" if transfer_syntax == codecs.EXPLICIT_BE else "<"
    dtype = np.dtype(f"{order}u{allocated // 8}")
    data = bytes(ds.PixelData)
    n = len(data) - len(data) % dtype.itemsize
    words = np.frombuffer(data[:n], dtype=dtype).copy()
    mask = 0
    for b in outside:
        mask |= 1 << b
    words &= dtype.type(~mask & ((1 << allocated) - 1))
    ds.PixelData = words.tobytes() + data[n:]
    return len(outside)


def trim_native_pixel_data(ds: Any, transfer_syntax: str) -> int:
    """Drop the bytes of native Pixel Data beyond the last frame; returns how many.

    Rows x Columns x Samples per Pixel x Number of Frames x Bits Allocated say how long
    the pixels are; anything after them (and the one byte of padding to an even length) is
    no image, and nothing is known of what it holds. Encapsulated and float pixel data
    are left alone; so is a header whose size cannot be read.
    """
    if "PixelData" not in ds or transfer_syntax not in (*_KEEP_NATIVE, codecs.EXPLICIT_BE):
        return 0
    try:
        bits = int(ds.BitsAllocated)
        count = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1) or 1)
            * int(ds.get("NumberOfFrames", 1) or 1)
        )
    except (AttributeError, TypeError, ValueError):
        return 0
    if bits <= 0 or count <= 0:
        return 0
    need = (count * bits + 7) // 8
    need += need % 2
    data = ds.PixelData
    extra = len(data) - need
    if extra <= 0:
        return 0
    ds.PixelData = bytes(data[:need])
    return extra


def _little_endian(ds: Any, info: PixelInfo) -> str:
    """Big endian native Pixel Data as little endian: OW words swapped, OB as it is.

    No decoding: every Bits Allocated (1-bit included) keeps its exact bytes' meaning.
    """
    elem = ds["PixelData"]
    data = bytes(elem.value)
    if elem.VR == "OW" or (elem.VR != "OB" and info.bits_allocated > 8):
        width = 4 if info.bits_allocated == 32 else 2
        data = swap_bytes(data, width)
    elem.value = data
    return codecs.EXPLICIT_LE


def _asdict(info: PixelInfo) -> dict[str, Any]:
    return {f: getattr(info, f) for f in info.__slots__}
