"""C-FIND answers in the query's character set when their values fit it (PS3.4
C.4.1.1.3.1, PS3.5 6.1.2): findscu asking in Latin-1, Japanese, Korean, GB18030 or the
default repertoire, over pydicom's character set files; the answers' bytes as written."""

from __future__ import annotations

import os
import shutil

import pydicom
import pytest
from pydicom.data import get_charset_files

from dimse.conftest import dcmtk
from pixels import Catalog
from pixels.dimse.config import ServerConfig
from pixels.dimse.server import DimseServer

FILES = ("chrFren.dcm", "chrH31.dcm", "chrI2.dcm", "chrX1.dcm", "chrX2.dcm")


def _held(name: str) -> pydicom.Dataset:
    (path,) = get_charset_files(name)
    return pydicom.dcmread(path)


def _raw(ds: pydicom.Dataset, tag: int) -> bytes:
    """An element's value as its bytes in the file (not decoded; a person name's empty
    trailing groups, which DICOM JSON does not keep, left out)."""
    return bytes(ds.get_item(tag).value).rstrip(b" ").rstrip(b"=")


def test_answers_are_written_in_the_querys_character_set_when_they_fit(
    tmp_path: pytest.TempPathFactory,
) -> None:
    root = str(tmp_path)
    names = os.path.join(root, "names")
    os.makedirs(names)
    for name in FILES:
        (path,) = get_charset_files(name)
        shutil.copyfile(path, os.path.join(names, name))
    # chrGerm.dcm (ISO_IR 100) with a coded procedure whose meaning is not ASCII
    germ = _held("chrGerm.dcm")
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "RPID", "RADLEX", "Röntgen"
    germ.ProcedureCodeSequence = [code]
    germ.save_as(os.path.join(names, "chrGerm.dcm"))
    catalog = os.path.join(root, "catalog")
    Catalog(catalog).catalog(names, workers=0)
    with DimseServer(catalog, ServerConfig(port=0, timeout=10)) as server:

        def find(
            patient_id: str, *charset: str, name: bool = True, level: str = "PATIENT"
        ) -> pydicom.Dataset:
            out = os.path.join(root, f"out{len(os.listdir(root))}")
            os.makedirs(out)
            keys = ["-k", f"QueryRetrieveLevel={level}", "-k", f"PatientID={patient_id}",
                    *(["-k", "PatientName"] if name else [])]  # fmt: skip
            if level == "STUDY":
                keys += ["-k", "ProcedureCodeSequence"]
            if charset:
                keys += ["-k", f"0008,0005={charset[0]}"]
            res = dcmtk("findscu", "-P", "-aec", "PIXELS", "-X", "-od", out, *keys,
                        "127.0.0.1", str(server.port))  # fmt: skip
            assert res.returncode == 0, res.stderr
            (answer,) = os.listdir(out)
            return pydicom.dcmread(os.path.join(out, answer))

        fren, h31, i2, x1, x2 = (_raw(_held(n), 0x00100010) for n in FILES)
        # Latin-1 asked: Latin-1 bytes (were UTF-8 under ISO_IR 192)
        got = find("SCSFREN", "ISO_IR 100")
        assert got.SpecificCharacterSet == "ISO_IR 100"
        assert _raw(got, 0x00100010) == b"Buc^J\xe9r\xf4me" == fren
        # the default repertoire asked and the name does not fit it: as held (Latin-1)
        got = find("SCSFREN")
        assert got.SpecificCharacterSet == "ISO_IR 100"
        assert _raw(got, 0x00100010) == fren
        # UTF-8 asked for a name held in Latin-1
        got = find("SCSFREN", "ISO_IR 192")
        assert got.SpecificCharacterSet == "ISO_IR 192"
        assert _raw(got, 0x00100010) == "Buc^Jérôme".encode()
        # ISO 2022 IR 87 / IR 149 asked (code extensions): the escape sequences as held
        got = find("H31EXAMPLE", "\\ISO 2022 IR 87")
        assert got.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
        assert _raw(got, 0x00100010) == h31
        assert str(got.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
        got = find("I2EXAMPLE", "\\ISO 2022 IR 149")
        assert got.SpecificCharacterSet == ["", "ISO 2022 IR 149"]
        assert _raw(got, 0x00100010) == i2
        # GB18030 asked for a name held in UTF-8: GB18030 bytes
        got = find("X1EXAMPLE", "GB18030")
        assert got.SpecificCharacterSet == "GB18030"
        assert _raw(got, 0x00100010) == "Wang^XiaoDong=王^小東".encode("gb18030")
        got = find("X2EXAMPLE", "GB18030")
        assert _raw(got, 0x00100010) == x2
        # Latin-1 asked, Chinese held: cannot fit, answered as held and said so
        got = find("X1EXAMPLE", "ISO_IR 100")
        assert got.SpecificCharacterSet == "ISO_IR 192"
        assert _raw(got, 0x00100010) == x1
        got = find("X2EXAMPLE", "ISO_IR 100")
        assert got.SpecificCharacterSet == "GB18030"
        assert _raw(got, 0x00100010) == x2
        # Japanese asked, a Latin-1 name held: é is in neither ASCII nor JIS X 0208
        got = find("SCSFREN", "\\ISO 2022 IR 87")
        assert got.SpecificCharacterSet == "ISO_IR 100"
        # an ASCII answer: in the query's character set, none (default) when none asked
        got = find("SCSFREN", "ISO_IR 100", name=False)
        assert got.SpecificCharacterSet == "ISO_IR 100"
        got = find("SCSFREN", name=False)
        assert "SpecificCharacterSet" not in got
        assert got.PatientID == "SCSFREN"
        # a sequence item's values are written in the answer's character set too
        got = find("SCSGERM", name=False, level="STUDY")
        assert got.SpecificCharacterSet == "ISO_IR 100"
        assert _raw(got.ProcedureCodeSequence[0], 0x00080104) == b"R\xf6ntgen"
