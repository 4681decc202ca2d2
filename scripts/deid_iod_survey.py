"""Which objects does de-identification leave invalid? dciodvfy on each output vs its source.

Runs :func:`pixels.deid.deidentify_file` (what ``pixels deid`` does for each file) with
several option sets over pydicom's and pydicom-data's test files, the presentation states,
KOS and SEG the tests build (``tests/deid/deid_corpus.py``: needs ``tests`` and
``tests/deid`` on PYTHONPATH) and any files given, and prints every error dciodvfy
(dicom3tools) finds in an output and not in its source (numbers masked), with the file, its
IOD and the options. A file suspect of burned-in text is surveyed with Burned In Annotation
set to NO, a deflated one inflated (dciodvfy reads none). This is how :data:`pixels.deid.iod.REQUIREMENTS` was found; exit status 1 when
an output has a new error.

``--types`` instead checks the table's Type 1 and 2 rows against dciodvfy's definition of
every storage SOP class it has (:func:`check_types`).

Usage::

    PYTHONPATH=src:tests:tests/deid python scripts/deid_iod_survey.py [FILE...]
    PYTHONPATH=src:tests:tests/deid python scripts/deid_iod_survey.py --types
"""

from __future__ import annotations

import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files

from pixels.deid import DeidKey, DeidOptions, deidentify_file

KEY = DeidKey(b"s" * 32)
OPTION_SETS = {
    "basic": DeidOptions(),
    "retain-dates": DeidOptions.of("retain-dates"),
    "retain-full-dates": DeidOptions.of("retain-full-dates"),
    "clean-graphics": DeidOptions.of("clean-graphics"),
    "clean-structured-content": DeidOptions.of("clean-structured-content"),
}
_NUMBER = re.compile(r"\b\d+(\.\d+)*\b")


def dciodvfy(path: Path) -> set[str]:
    """The errors dciodvfy finds in ``path``, numbers masked (UIDs, lengths differ)."""
    from deid_corpus import iod_errors

    return {_NUMBER.sub("N", ln) for ln in iod_errors(path)}


def built(folder: Path) -> list[Path]:
    """The objects the tests build (presentation states, KOS, SEG), written to ``folder``."""
    import deid_corpus as dc

    made = [
        dc.gsps_by_dcmpsmk(folder / f"dcmpsmk-{Path(n).stem}.dcm", n)
        for n in ("CT_small.dcm", "MR_small.dcm")
    ]
    made += [dc.presentation_state(k, folder / f"{k}.dcm") for k in dc.PRESENTATION_STATES]
    return [*made, dc.kos_of_ct(folder / "kos.dcm"), dc.seg_of_ct(folder / "seg.dcm")]


def survey(path: Path, work: Path, n: int) -> list[str]:
    """The lines to print for one source file (none when every output is as valid)."""
    try:
        ds = pydicom.dcmread(path, force=True)
        src = work / f"{n}.in.dcm"
        if "SOPClassUID" not in ds:
            return []
        ds.BurnedInAnnotation = "NO" if "PixelData" in ds else ds.get("BurnedInAnnotation")
        if ds.BurnedInAnnotation is None:
            del ds.BurnedInAnnotation
        if ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # dciodvfy
            # reads no deflated file: both sides inflated
        ds.save_as(src)
    except Exception:
        return []  # not a file pydicom can read and write back: nothing to compare
    iod, before = str(pydicom.uid.UID(str(ds.SOPClassUID)).name), dciodvfy(src)
    lines = []
    for name, opts in OPTION_SETS.items():
        try:
            res = deidentify_file(src.read_bytes(), KEY, opts, path=path.name)
        except Exception as e:
            lines.append(f"{path.name} [{iod}] {name}: refused: {e}")
            continue
        if res.data is None:
            continue
        out = work / f"{n}.{name}.dcm"
        out.write_bytes(res.data)
        lines += [f"{path.name} [{iod}] {name}: {e}" for e in sorted(dciodvfy(out) - before)]
    return lines


def check_types(work: Path) -> list[str]:
    """Where :data:`~pixels.deid.iod.REQUIREMENTS` and dciodvfy disagree on a Type 1 or 2.

    For every storage SOP class dciodvfy defines: CT_small given that class, without any
    attribute of the table, checked; each "Missing attribute for Type N Required" of those
    attributes must be the table's Type for that class, and each Type 1 or 2 row of the
    table must be reported missing.
    """
    import copy

    from deid_corpus import iod_errors
    from pydicom.uid import UID_dictionary

    from corpus import sample_file
    from pixels.deid.iod import REQUIREMENTS, requirement

    base = pydicom.dcmread(sample_file("CT_small.dcm"))
    for row in REQUIREMENTS:
        if row.tag in base:
            del base[row.tag]
    keywords = {row.keyword: row.tag for row in REQUIREMENTS}
    missing = re.compile(r"</(\w+)\(.*Missing attribute for Type (\d)")
    classes = [u for u, v in UID_dictionary.items() if v[1] == "SOP Class" and "Storage" in v[0]]

    def one(sop: str) -> list[str]:
        ds = copy.deepcopy(base)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop
        path = work / f"types-{sop}.dcm"
        ds.save_as(path, enforce_file_format=True)
        errors = iod_errors(path)  # numbers not masked: the Type
        if any("Information Object Not found" in e for e in errors):
            return []  # no definition of this IOD in dciodvfy
        said = {m[1]: m[2] for e in errors if (m := missing.search(e)) and m[1] in keywords}
        out = []
        for kw, tag in keywords.items():
            row = requirement(sop, tag)
            want = row.type if row is not None and row.type in "12" else None
            if said.get(kw) != want:
                out.append(f"{sop} {kw}: dciodvfy Type {said.get(kw)}, table Type {want}")
        return out

    with ThreadPoolExecutor(2) as pool:
        return [ln for lines in pool.map(one, classes) for ln in lines]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--types"]:
        with tempfile.TemporaryDirectory() as tmp:
            wrong = check_types(Path(tmp))
        print(*wrong, sep="\n")
        print(f"{len(wrong)} disagreements between pixels.deid.iod and dciodvfy")
        return 1 if wrong else 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = [Path(f) for f in sorted(set(get_testdata_files("*")))]
        files += [Path(a) for a in argv] + built(work)
        with ThreadPoolExecutor(2) as pool:
            found = [
                ln
                for lines in pool.map(survey, files, [work] * len(files), range(len(files)))
                for ln in lines
            ]
    errors = [ln for ln in found if ": Error" in ln]
    print(*found, sep="\n")
    print(f"{len(files)} files, {len(OPTION_SETS)} option sets: {len(errors)} new errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
