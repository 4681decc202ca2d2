"""pixels.dicom.deflate: deflated data sets are inflated streamed, under a cap.

The bombs are real deflated files (pydicom's ``image_dfl.dcm``) with one huge
zero-filled element spliced into their deflate stream: 4 GiB of zeros compress
to ~4 MB. Reading their header must fail with an error naming the limit while
the process stays small (measured in a subprocess whose address space is capped,
so a regression fails the test instead of the machine).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble

from corpus import sample_file
from pixels.dicom.deflate import InflatingReader, inflate, inflate_chunks
from pixels.dicom.meta import read_header
from pixels.errors import DicomReadError

ZEROS_CHUNK = 16 << 20


def _split_dfl() -> tuple[bytes, bytes]:
    """image_dfl.dcm as (preamble + file meta, inflated data set)."""
    raw = sample_file("image_dfl.dcm").read_bytes()
    fp = io.BytesIO(raw)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    start = fp.tell()
    return raw[:start], zlib.decompress(raw[start:], -zlib.MAX_WBITS)


def _offset_of(dataset: bytes, first_tag: int) -> int:
    """Offset of the first top-level element whose tag is `first_tag` or more."""
    fp = io.BytesIO(dataset)
    gen = data_element_generator(fp, False, True)
    while True:
        pos = fp.tell()
        if next(gen).tag >= first_tag:
            return pos


def _deflate(parts: list[bytes], zeros: int, tail: bytes) -> bytes:
    """A raw deflate stream of parts + `zeros` zero bytes + tail, built without holding it."""
    head = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [b"".join(head.compress(p) for p in parts) + head.flush(zlib.Z_FULL_FLUSH)]
    block = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = block.compress(bytes(ZEROS_CHUNK)) + block.flush(zlib.Z_FULL_FLUSH)
    assert zeros % ZEROS_CHUNK == 0
    out += [chunk] * (zeros // ZEROS_CHUNK)  # each chunk is self-contained and byte-aligned
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.append(end.compress(tail) + end.flush())
    return b"".join(out)


def _ob(tag: int, length: int) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"OB\0\0" + struct.pack("<L", length)


def bomb(where: str, zeros: int = 255 * ZEROS_CHUNK) -> bytes:
    """image_dfl.dcm with `zeros` zero bytes in a private OB in the header, or as pixel data."""
    meta, dataset = _split_dfl()
    if where == "header":
        at = _offset_of(dataset, 0x00090000)
        creator = b"\x09\x00\x10\x00LO\x08\x00PIXELS  "
        parts = [dataset[:at], creator, _ob(0x00091001, zeros)]
        return meta + _deflate(parts, zeros, dataset[at:])
    at = _offset_of(dataset, 0x7FE00010)
    return meta + _deflate([dataset[:at], _ob(0x7FE00010, zeros)], zeros, b"")


def test_bomb_is_the_real_file_plus_zeros() -> None:
    """The bomb builder itself: with a small zero run, the file reads and inflates exactly."""
    meta, dataset = _split_dfl()
    small = bomb("header", ZEROS_CHUNK)
    assert small.startswith(meta)
    inflated = inflate(io.BytesIO(small[len(meta) :]))
    at = _offset_of(dataset, 0x00090000)
    assert inflated[:at] == dataset[:at]
    assert inflated[-(len(dataset) - at) :] == dataset[at:]
    assert len(inflated) == len(dataset) + 16 + 12 + ZEROS_CHUNK
    header = read_header(io.BytesIO(small), path="small.dcm", bulk_threshold=1024)
    js = json.loads(header.meta)
    assert js["00091001"] == {"vr": "OB", "BulkDataURI": "bulkdata/00091001"}
    original = read_header(io.BytesIO(sample_file("image_dfl.dcm").read_bytes()), path="x")
    assert header.keys == original.keys


_PROBE = r"""
import json, resource, sys
from pixels.dicom.meta import read_header
from pixels.errors import DicomReadError
vm = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open(sys.argv[1], "rb") as f:
        header = read_header(f, path=sys.argv[1])
    error = f"{sys.argv[1]}: {header.trailing}" if header.trailing else None
except DicomReadError as e:
    error = str(e)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"error": error, "grew_kb": peak - base}))
"""


@pytest.mark.parametrize(
    "where,message",
    [
        ("header", "more than 67108864 inflated bytes to hold at once (the limit)"),
        ("pixels", "inflates to more than 1073741824 bytes (the limit)"),
    ],
)
def test_deflate_bomb_is_refused_in_bounded_memory(
    tmp_path: Path, where: str, message: str
) -> None:
    path = tmp_path / f"bomb_{where}.dcm"
    path.write_bytes(bomb(where))
    assert path.stat().st_size < 8 << 20  # ~4 GiB inflated
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] in (
        f"{path}: deflated data set {message}",
        f"{path}: deflated data set: {message}",
    ), result
    assert result["grew_kb"] < 200_000, result


# -- the functions ------------------------------------------------------------------------------


def _stream() -> tuple[bytes, bytes]:
    """image_dfl.dcm's raw deflate stream and its inflated bytes."""
    raw = sample_file("image_dfl.dcm").read_bytes()
    meta, dataset = _split_dfl()
    return raw[len(meta) :], dataset


def test_inflate_equals_zlib() -> None:
    stream, dataset = _stream()
    assert inflate(io.BytesIO(stream)) == dataset
    assert b"".join(inflate_chunks(io.BytesIO(stream))) == dataset
    assert inflate(io.BytesIO(stream), limit=len(dataset)) == dataset


def test_inflate_limit_corrupt_and_cut() -> None:
    stream, dataset = _stream()
    with pytest.raises(DicomReadError, match=rf"more than {len(dataset) - 1} bytes \(the limit\)"):
        inflate(io.BytesIO(stream), limit=len(dataset) - 1, path="p.dcm")
    with pytest.raises(DicomReadError, match="cut short"):
        inflate(io.BytesIO(stream[: len(stream) // 2]))
    with pytest.raises(DicomReadError, match="corrupt"):
        inflate(io.BytesIO(b"\xff" * 100))


def test_inflating_reader() -> None:
    stream, dataset = _stream()
    r = InflatingReader(io.BytesIO(stream))
    assert r.read(132) == dataset[:132]
    assert r.seek(-12, io.SEEK_CUR) == 120  # a step back within what is held
    assert r.read(12) == dataset[120:132]
    assert r.available(len(dataset)) and not r.available(len(dataset) + 1)
    assert r.inflated == len(dataset)
    r.seek(1000)
    assert r.read(100) == dataset[1000:1100]
    assert r.read() == dataset[1100:]
    assert r.read(10) == b""
    # skipping forward holds nothing of what it skips
    r = InflatingReader(io.BytesIO(stream), retain=1 << 10)
    r.seek(len(dataset) - 100)
    assert r.read(100) == dataset[-100:]
    r = InflatingReader(io.BytesIO(stream), retain=1 << 10)
    with pytest.raises(DicomReadError, match="1024 inflated bytes to hold"):
        r.read(1 << 20)
