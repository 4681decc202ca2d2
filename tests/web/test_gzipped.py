"""gzip bodies joined from parts deflated once (pixels.web.gzipped), on real file bytes."""

from __future__ import annotations

import gzip
import zlib

import pytest

from corpus import sample_file
from pixels.web.gzipped import Deflated, accepts_gzip, gzip_join


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False),
        ("", False),
        ("identity", False),
        ("gzip", True),
        ("GZip", True),
        ("x-gzip", True),
        ("gzip, deflate, br, zstd", True),  # Chromium's
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("br, deflate", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # gzip refused by name
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(header: str | None, ok: bool) -> None:
    assert accepts_gzip(header) is ok


def test_parts_deflated_once_join_into_one_member_anywhere_in_the_body() -> None:
    ct = sample_file("CT_small.dcm").read_bytes()
    mr = sample_file("MR_small.dcm").read_bytes()
    d_ct, d_mr = Deflated.of(ct), Deflated.of(mr, level=6)
    assert len(d_ct.blocks) < len(ct) and d_ct.crc == zlib.crc32(ct)
    for parts in (
        [d_ct],
        [b"", d_ct, b""],
        [b"--head\r\n", d_ct, b"\r\n--tail--\r\n"],
        [d_ct, d_mr],
        [b"a" * 1000, d_mr, b"a" * 1000, d_ct, ct[:500]],  # plain parts that d_ct repeats
        [b"nothing deflated"],
        [],
    ):
        want = b"".join(p.raw if isinstance(p, Deflated) else p for p in parts)
        body = gzip_join(parts)
        one = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one member (httpx reads no more)
        assert one.decompress(body) == want and one.eof and one.unused_data == b""
        assert gzip.decompress(body) == want
    # the deflated part is copied as it is: joining costs no compression of it
    assert d_ct.blocks in gzip_join([b"head", d_ct, b"tail"])
