"""A hostile corpus: deterministic mutations of real DICOM files.

Every case starts from one of pydicom's real test files (or pydicom-data's) and is
changed in one way a broken device, a cut transfer or an attacker would change it:

``good``
    the file unchanged (its row must have no error);
``flip``
    1-16 bytes anywhere after the preamble set to random values;
``flip-header``
    1-8 bytes of the first 2 KiB set to random values;
``truncate``
    the file cut at a random byte (or inside the pixel data);
``huge-length``
    one top-level element's length field set to a huge value (0xFFFF for short VRs,
    up to 0xFFFFFFFE for long ones) or to just past the end of the file;
``lie``
    a header value that sizes everything else rewritten with pydicom to a lie:
    NumberOfFrames 2**31-1 with 65535 x 65535 frames (issue 9's 400-byte case),
    Rows/Columns 65535, BitsAllocated 0/7/64, SamplesPerPixel 0/4, ...;
``nesting``
    a sequence nested 200-20,000 levels deep inserted at the start of the dataset
    or appended after the pixel data (as (FFFA,FFFA) Digital Signatures);
``codestream``
    encapsulated pixel data corrupted inside the compressed stream: bytes flipped,
    zeroed, RLE headers with lying segment counts and offsets, an RLE run that
    replicates past the segment's end (the Rust decoder's panic);
``junk``
    not DICOM: empty, random bytes, a 'DICM' prefix with nothing after it.

The corpus is a pure function of the seed: :func:`build` writes it and returns a
manifest (one :class:`Case` per file). Run as a script to write one to a folder::

    python tests/hostile.py /tmp/hostile --seed 9
"""

from __future__ import annotations

import argparse
import io
import json
import random
import struct
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement

#: Real files the corpus starts from: one per kind of pixel data Pixels decodes, plus
#: files without pixel data.
SOURCES = (
    "CT_small.dcm",  # explicit VR LE, 16-bit signed
    "MR_small_implicit.dcm",  # implicit VR LE
    "MR_small_bigendian.dcm",  # explicit VR BE
    "image_dfl.dcm",  # deflated
    "MR_small_RLE.dcm",  # RLE, 16-bit
    "SC_rgb_rle_2frame.dcm",  # RLE colour, 2 frames
    "emri_small_jpeg_2k_lossless.dcm",  # J2K, 10 frames
    "JPEG2000.dcm",  # J2K
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline YBR
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG baseline RGB
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1
    "emri_small.dcm",  # native multi-frame
    "liver_1frame.dcm",  # 1-bit SEG
    "SC_rgb_small_odd.dcm",  # odd-sized RGB
    "rtdose.dcm",  # 15 frames 32-bit
    "rtplan.dcm",  # no pixel data
    "OBXXXX1A.dcm",  # PALETTE COLOR
)

#: More unchanged real files, to have many good rows next to the bad ones.
MORE_GOOD = (
    "MR_small.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "SC_rgb.dcm",
    "SC_rgb_2frame.dcm",
    "SC_rgb_16bit.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_expb.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "rtdose_1frame.dcm",
    "rtdose_rle.dcm",
    "rtstruct.dcm",
    "693_J2KR.dcm",
    "JPEG-LL.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "liver.dcm",
    "OBXXXX1A_rle.dcm",
    "examples_palette.dcm",
    "explicit_VR-UN.dcm",
    "ExplVR_BigEnd.dcm",
    "MR2_J2KR.dcm",
    "US1_J2KR.dcm",
)

KINDS = (
    "flip",
    "flip-header",
    "truncate",
    "huge-length",
    "lie",
    "nesting",
    "codestream",
)


@dataclass(frozen=True)
class Case:
    """One file of the corpus."""

    name: str
    source: str
    kind: str
    detail: str
    good: bool


def _source(name: str) -> Path | None:
    p = get_testdata_file(name, download=False)
    return Path(str(p)) if p else None


# --------------------------------------------------------------------------- byte mutations


def _flip(data: bytes, rng: random.Random, lo: int, hi: int, count: int) -> tuple[bytes, str]:
    out = bytearray(data)
    hi = min(hi, len(out))
    where = sorted(rng.randrange(lo, hi) for _ in range(count)) if hi > lo else []
    for i in where:
        out[i] = rng.randrange(256)
    return bytes(out), f"bytes {where[:4]}{'...' if len(where) > 4 else ''} changed"


def _elements(data: bytes) -> list[RawDataElement]:
    """Top-level raw elements (with their value offsets) of a file pydicom parses."""
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=None, force=True)
    raws = [e for e in ds._dict.values() if isinstance(e, RawDataElement)]
    return [e for e in raws if e.value_tell is not None and e.tag != 0x7FE00010]


def _long_vr(el: RawDataElement) -> bool:
    return el.is_implicit_VR or el.VR in (
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "SQ",
        "SV",
        "UC",
        "UN",
        "UR",
        "UT",
        "UV",
    )


def _huge_length(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    elements = _elements(data)
    el = rng.choice(elements)
    order = "<" if el.is_little_endian else ">"
    out = bytearray(data)
    if _long_vr(el):
        value = rng.choice([0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, len(data) * 2, len(data) + 1])
        out[el.value_tell - 4 : el.value_tell] = struct.pack(f"{order}L", value)
    else:
        value = rng.choice([0xFFFF, 0xFFFE, 0x8000])
        out[el.value_tell - 2 : el.value_tell] = struct.pack(f"{order}H", value)
    return bytes(out), f"length of ({el.tag.group:04X},{el.tag.element:04X}) set to {value}"


def _pixel_value(data: bytes) -> tuple[int, int] | None:
    """(offset, length) of the pixel data value (length 0xFFFFFFFF: encapsulated)."""
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=None, force=True)
    el = ds._dict.get(pydicom.tag.Tag(0x7FE00010))
    if not isinstance(el, RawDataElement) or el.value_tell is None:
        return None
    return el.value_tell, el.length


def _codestream(data: bytes, rng: random.Random, source: str) -> tuple[bytes, str]:
    """Corrupt the first fragment of encapsulated pixel data (or native data for native files)."""
    pv = _pixel_value(data)
    if pv is None:
        return _flip(data, rng, 132, len(data), 8)
    start, length = pv
    out = bytearray(data)
    if length != 0xFFFFFFFF:  # native: flip inside the pixels (a valid file, odd values)
        flipped, what = _flip(data, rng, start, start + length, 32)
        return flipped, f"native pixels: {what}"
    bot_len = struct.unpack("<L", data[start + 4 : start + 8])[0]
    frag = start + 8 + bot_len  # item header of fragment 0
    flen = struct.unpack("<L", data[frag + 4 : frag + 8])[0]
    value = frag + 8
    end = min(value + flen, len(data))
    is_rle = "RLE" in source or "rle" in source
    how = rng.choice(
        ["flip", "zero", "tail"] + (["rle-header", "rle-count", "rle-run"] * 2 if is_rle else [])
    )
    if how == "flip":
        flipped, what = _flip(data, rng, value, end, rng.randint(1, 32))
        return flipped, f"fragment 0: {what}"
    if how == "zero":
        a = rng.randrange(value, end)
        b = min(end, a + rng.randint(16, 512))
        out[a:b] = bytes(b - a)
        return bytes(out), f"fragment 0: bytes {a}..{b} zeroed"
    if how == "tail":
        a = max(value, end - rng.randint(2, 64))
        out[a:end] = bytes(rng.randrange(256) for _ in range(end - a))
        return bytes(out), "fragment 0: its last bytes (end marker) replaced"
    if how == "rle-count":
        count = rng.choice([0, 15, 16, 255, 0xFFFFFFFF])
        out[value : value + 4] = struct.pack("<L", count)
        return bytes(out), f"RLE header: {count} segments"
    if how == "rle-header":
        k = rng.randrange(1, 16)
        off = rng.choice([0, 1, 63, flen, flen + 1000, 0xFFFFFFFF])
        out[value + 4 * k : value + 4 * k + 4] = struct.pack("<L", off)
        return bytes(out), f"RLE header: segment offset {k} set to {off}"
    seg1 = struct.unpack("<L", data[value + 4 : value + 8])[0]
    if value + seg1 < end:
        out[value + seg1] = rng.choice([0x81, 0x80, 0x7F])
    return bytes(out), "RLE: first run of segment 1 replicates past the row"


# --------------------------------------------------------------------------- header lies


def _lie(src: Path, rng: random.Random) -> tuple[bytes, str]:
    ds = pydicom.dcmread(src, force=True)
    choices: list[tuple[str, Callable[[pydicom.Dataset], None]]] = [
        ("NumberOfFrames 2147483647 of 65535 x 65535", _frames_lie),
        ("Rows and Columns 65535", lambda d: _set(d, Rows=65535, Columns=65535)),
        ("Rows 0", lambda d: _set(d, Rows=0)),
        ("Columns 1, Rows 65535", lambda d: _set(d, Rows=65535, Columns=1)),
        ("BitsAllocated 64", lambda d: _set(d, BitsAllocated=64, BitsStored=64)),
        ("BitsAllocated 7", lambda d: _set(d, BitsAllocated=7)),
        ("BitsAllocated 0", lambda d: _set(d, BitsAllocated=0)),
        ("BitsStored 40", lambda d: _set(d, BitsStored=40, HighBit=39)),
        ("SamplesPerPixel 0", lambda d: _set(d, SamplesPerPixel=0)),
        ("SamplesPerPixel 4", lambda d: _set(d, SamplesPerPixel=4)),
        ("NumberOfFrames -5", lambda d: _set(d, NumberOfFrames=-5)),
        ("NumberOfFrames 1000", lambda d: _set(d, NumberOfFrames=1000)),
        ("PhotometricInterpretation PALETTE COLOR without LUTs", _palette_lie),
        ("PixelRepresentation 7", lambda d: _set(d, PixelRepresentation=7)),
    ]
    label, edit = rng.choice(choices)
    edit(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue(), label


def _set(ds: pydicom.Dataset, **values: int) -> None:
    for k, v in values.items():
        setattr(ds, k, v)


def _frames_lie(ds: pydicom.Dataset) -> None:
    ds.NumberOfFrames = 2147483647
    ds.Rows = ds.Columns = 65535
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.PixelData = bytes(64)


def _palette_lie(ds: pydicom.Dataset) -> None:
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for tag in (0x00281101, 0x00281102, 0x00281103):
        ds.add_new(tag, "US", [0, 0, 16])


def _lying_frames_small() -> bytes:
    """Issue 9's case: a few hundred bytes declaring 2**31-1 frames of 65535 x 65535 16-bit."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = pydicom.dcmread(_source("CT_small.dcm"), stop_before_pixels=True)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = src.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["hostile-400"])
    ds.SOPClassUID = src.SOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = 2147483647
    ds.Rows = ds.Columns = 65535
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(16)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# --------------------------------------------------------------------------- nesting


def _nested(depth: int, tag: int, little: bool, explicit: bool) -> bytes:
    """A sequence `depth` levels deep: SQ (undefined length) > item > SQ > item ... ."""
    o = "<" if little else ">"
    group, elem = tag >> 16, tag & 0xFFFF
    if explicit:
        sq = struct.pack(f"{o}HH", group, elem) + b"SQ\x00\x00" + struct.pack(f"{o}L", 0xFFFFFFFF)
    else:
        sq = struct.pack(f"{o}HHL", group, elem, 0xFFFFFFFF)
    item = struct.pack(f"{o}HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack(f"{o}HHL", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack(f"{o}HHL", 0xFFFE, 0xE0DD, 0)
    return (sq + item) * depth + (item_end + seq_end) * depth


def _nesting(data: bytes, rng: random.Random, source: str) -> tuple[bytes, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or ts.is_deflated:
        return _flip(data, rng, 132, len(data), 4)
    little, explicit = ts.is_little_endian, not ts.is_implicit_VR
    depth = rng.choice([200, 1000, 5000, 20000])
    elements = _elements(data)
    first = min((e for e in elements if e.tag.group > 2), key=lambda e: e.value_tell, default=None)
    if first is None or rng.random() < 0.5:
        return data + _nested(
            depth, 0xFFFAFFFA, little, explicit
        ), f"(FFFA,FFFA) {depth} deep at the end"
    head = 8 if (first.is_implicit_VR or not _long_vr(first)) else 12
    at = first.value_tell - head
    return (
        data[:at] + _nested(depth, 0x00081115, little, explicit) + data[at:],
        f"(0008,1115) {depth} deep before ({first.tag.group:04X},{first.tag.element:04X})",
    )


# --------------------------------------------------------------------------- the corpus


def build(out: Path, *, seed: int = 9, per_kind: int = 2) -> list[Case]:
    """Write the corpus into `out` (created) and return its manifest.

    ``per_kind`` mutations of each kind are made of each source file (more for the byte
    flips and truncations, which are cheap); the same seed gives the same bytes.
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cases: list[Case] = []

    def write(name: str, data: bytes, source: str, kind: str, detail: str, good: bool) -> None:
        (out / name).write_bytes(data)
        cases.append(Case(name, source, kind, detail, good))

    for name in dict.fromkeys(SOURCES + MORE_GOOD):
        src = _source(name)
        if src is not None:
            write(f"good_{name}", src.read_bytes(), name, "good", "unchanged", True)
    for name in SOURCES:
        src = _source(name)
        if src is None:
            continue
        data = src.read_bytes()
        stem = name.removesuffix(".dcm")
        for k in range(per_kind * 2):
            blob, what = _flip(data, rng, 132, len(data), rng.randint(1, 16))
            write(f"flip_{stem}_{k}.dcm", blob, name, "flip", what, False)
            blob, what = _flip(data, rng, 132, min(len(data), 2048), rng.randint(1, 8))
            write(f"fliph_{stem}_{k}.dcm", blob, name, "flip-header", what, False)
            cut = rng.randrange(133, len(data))
            write(f"cut_{stem}_{k}.dcm", data[:cut], name, "truncate", f"cut at {cut}", False)
        for k in range(per_kind):
            blob, what = _huge_length(data, rng)
            write(f"huge_{stem}_{k}.dcm", blob, name, "huge-length", what, False)
            blob, what = _lie(src, rng)
            write(f"lie_{stem}_{k}.dcm", blob, name, "lie", what, False)
            blob, what = _nesting(data, rng, name)
            write(f"nest_{stem}_{k}.dcm", blob, name, "nesting", what, False)
            blob, what = _codestream(data, rng, name)
            write(f"codestream_{stem}_{k}.dcm", blob, name, "codestream", what, False)
    write(
        "lie_frames_400_bytes.dcm", _lying_frames_small(), "CT_small.dcm", "lie", "issue 9", False
    )
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm"):
        src = _source(name)
        if src is not None:  # the decoder sizes its buffer from the header (RLE) or checks it
            ds = pydicom.dcmread(src)
            _set(ds, Rows=65535, Columns=65535)
            buf = io.BytesIO()
            ds.save_as(buf)
            stem = name.removesuffix(".dcm")
            write(
                f"lie_{stem}_65535.dcm", buf.getvalue(), name, "lie", "Rows, Columns 65535", False
            )
    for name, marker, at, size in (
        ("JPEG2000.dcm", b"\xff\x4f\xff\x51", 8, 4),  # SIZ
        ("SC_rgb_jpeg_dcmtk.dcm", b"\xff\xc0", 5, 2),  # SOF0
    ):
        src = _source(name)
        pixels = _pixel_value(src.read_bytes()) if src is not None else None
        if src is not None and pixels is not None:  # the codestream lies, the header does not
            blob = bytearray(src.read_bytes())
            pos = blob.index(marker, pixels[0]) + at
            blob[pos : pos + 2 * size] = (65535).to_bytes(size, "big") * 2
            stem = name.removesuffix(".dcm")
            write(f"codestream_{stem}_65535.dcm", bytes(blob), name, "codestream", "65535", False)
    write("junk_empty.dcm", b"", "", "junk", "empty", False)
    write("junk_random.dcm", rng.randbytes(4096), "", "junk", "random bytes", False)
    write("junk_dicm_only.dcm", bytes(128) + b"DICM", "", "junk", "preamble and prefix only", False)
    return cases


def main(argv: list[str] | None = None) -> None:
    """``python tests/hostile.py OUT [--seed N] [--per-kind K]``: write a corpus and its manifest."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--per-kind", type=int, default=2)
    args = parser.parse_args(argv)
    cases = build(args.out, seed=args.seed, per_kind=args.per_kind)
    (args.out.parent / f"{args.out.name}.manifest.json").write_text(
        json.dumps([asdict(c) for c in cases], indent=1)
    )
    print(f"{len(cases)} files in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
