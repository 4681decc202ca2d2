"""``pixels deid`` over a real catalog: outputs, references, audit, output catalog, re-runs.

The source catalog holds real files from several vendors (GE CT, Toshiba MR, RT structure
set, an ultrasound with possible burned-in text, a truncated file), zip members (RT plan,
implicit VR MR), and a DICOM SEG written by highdicom that references the CT.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from deid_corpus import leaked, phi_strings, seg_of_ct
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from corpus import sample_file
from pixels import Catalog
from pixels.deid import DeidKey, DeidOptions, deidentify_table
from pixels.errors import DeidError

SOURCES = ["CT_small.dcm", "MR_small.dcm", "rtstruct.dcm", "examples_jpeg2k.dcm"]
#: MR_small_implicit is MR_small in another syntax: the same SOP instance, a duplicate
ZIPPED = ["rtplan.dcm", "waveform_ecg.dcm", "MR_small_implicit.dcm"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("deid")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copyfile(sample_file(name), src / name)
    (src / "cut.dcm").write_bytes(sample_file("CT_small.dcm").read_bytes()[:1500])
    seg_of_ct(src / "seg.dcm")
    with zipfile.ZipFile(src / "more.zip", "w") as z:
        for name in ZIPPED:
            z.write(sample_file(name), f"inner/{name}")
    Catalog(root / "cat").catalog(src, workers=0)
    phi: set[str] = set()
    for name in [*SOURCES, *ZIPPED]:
        phi |= phi_strings(pydicom.dcmread(sample_file(name), force=True))
    phi |= phi_strings(pydicom.dcmread(src / "seg.dcm"))
    kept = {"TOSHIBA_MEC", "GE MEDICAL SYSTEMS", "Pixels tests"}  # Manufacturer: not identifying
    phi = {s for s in phi if not any(s in k for k in kept)}
    return {"root": root, "src": src, "table": str(root / "cat"), "phi": phi}


def _outputs(out: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file (the hidden catalog aside)."""
    found = {}
    for d, dirs, files in os.walk(out):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            p = Path(d) / f
            found[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def run(source: dict[str, Any]) -> dict[str, Any]:
    root = source["root"]
    out = root / "out"
    key_file = root / "private" / "deid.key"
    stats = deidentify_table(source["table"], out, key_file=key_file, workers=0)
    return {"stats": stats, "out": out, "key_file": key_file, "hashes": _outputs(out)}


def test_every_file_is_written_skipped_or_failed_with_a_reason(run: dict[str, Any]) -> None:
    stats = run["stats"]
    assert (stats.written, stats.skipped, stats.failed) == (6, 2, 1)
    assert stats.key_created and stats.listed == 9
    assert stats.catalog.written == 6 and stats.catalog.errors == 0
    assert len(run["hashes"]) == 6
    for rel in run["hashes"]:
        ds = pydicom.dcmread(run["out"] / rel)
        assert rel == f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"


def test_no_source_phi_in_any_output_byte(run: dict[str, Any], source: dict[str, Any]) -> None:
    assert len(source["phi"]) > 40
    for rel in run["hashes"]:
        data = (run["out"] / rel).read_bytes().replace(PYDICOM_IMPLEMENTATION_UID.encode(), b"")
        assert not leaked(data, source["phi"]), rel
    done = subprocess.run(
        ["dcmdump", "-q", *[str(run["out"] / r) for r in run["hashes"]]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "E:" not in done.stderr, done.stderr


def test_the_seg_still_references_the_de_identified_ct(run: dict[str, Any]) -> None:
    files = [pydicom.dcmread(run["out"] / r) for r in run["hashes"]]
    ct = next(d for d in files if d.Modality == "CT")
    seg = next(d for d in files if d.Modality == "SEG")
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == ct.SeriesInstanceUID
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    src_refs = [
        e.value
        for e in seg.iterall()
        if e.keyword == "ReferencedSOPInstanceUID"  # also in the per-frame derivation items
    ]
    assert src_refs and set(src_refs) == {ct.SOPInstanceUID}
    assert seg.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.PatientID == ct.PatientID and seg.PatientName == ct.PatientName
    assert seg.DeviceSerialNumber == "ANONYMIZED"  # X/Z/D: a dummy (Type 1 in a SEG)


def test_audit_is_beside_the_key_owner_only_and_phi_free_on_the_output_side(
    run: dict[str, Any], source: dict[str, Any]
) -> None:
    stats, key_file = run["stats"], run["key_file"]
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert Path(stats.audit_csv).parent == key_file.parent
    assert stat.S_IMODE(os.stat(stats.audit_csv).st_mode) == 0o600
    # the Delta audit holds the same source paths: its folder is owner-only too
    assert stat.S_IMODE(os.stat(stats.audit_table).st_mode) == 0o700
    assert not any(key_file.name in p or "audit" in p for p in run["hashes"])
    with open(stats.audit_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    by = {r["source_path"].split("::")[0].rsplit("/", 1)[-1]: r for r in rows}
    assert by["examples_jpeg2k.dcm"]["status"] == "skipped"
    assert "burned-in" in by["examples_jpeg2k.dcm"]["reason"]
    assert by["MR_small_implicit.dcm"]["status"] == "skipped"
    assert "duplicate SOP Instance UID" in by["MR_small_implicit.dcm"]["reason"]
    assert by["cut.dcm"]["status"] == "failed"
    assert "cut.dcm" in by["cut.dcm"]["reason"] and "truncated" in by["cut.dcm"]["reason"]
    assert any(r["source_path"].startswith("zip://inner/rtplan.dcm::") for r in rows)
    key = DeidKey.load(key_file)
    for r in rows:
        assert r["key_fingerprint"] == key.fingerprint
        deid_side = " ".join(
            r[c] for c in ("output_path", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        )
        assert not leaked(deid_side.encode(), source["phi"]), r
        if r["status"] == "written":
            assert int(r["actions"]) > 0 and r["output_path"] in run["hashes"]


def test_the_output_catalog_loads_in_duckdb(run: dict[str, Any]) -> None:
    cat = Catalog(run["stats"].out_table)
    got = cat.sql_arrow(
        "SELECT count(*) n, count(DISTINCT StudyInstanceUID) studies, "
        "bool_and(PatientID LIKE 'PX%') pseudonyms, count(error) errors FROM object_catalog"
    ).to_pylist()[0]
    assert got == {"n": 6, "studies": 5, "pseudonyms": True, "errors": 0}


def test_a_rerun_is_idempotent_resumable_and_the_key_decides(
    run: dict[str, Any], source: dict[str, Any], tmp_path: Path
) -> None:
    before = {r: (run["out"] / r).stat().st_mtime_ns for r in run["hashes"]}
    again = deidentify_table(source["table"], run["out"], key_file=run["key_file"], workers=0)
    assert (again.listed, again.done_before, again.written, again.failed) == (1, 8, 0, 1)
    assert _outputs(run["out"]) == run["hashes"]
    assert {r: (run["out"] / r).stat().st_mtime_ns for r in run["hashes"]} == before
    # from scratch with the same key (another audit): the very same files
    fresh = tmp_path / "fresh"
    deidentify_table(
        source["table"],
        fresh,
        key_file=run["key_file"],
        audit=tmp_path / "a2",
        workers=0,
        catalog=False,
    )
    assert _outputs(fresh) == run["hashes"]
    # another key: other UIDs, so other paths
    other = tmp_path / "other"
    deidentify_table(source["table"], other, key_file=tmp_path / "k2", workers=0, catalog=False)
    assert not set(_outputs(other)) & set(run["hashes"])
    # the same audit with other options is refused
    with pytest.raises(DeidError, match="other output folder"):
        deidentify_table(
            source["table"],
            run["out"],
            key_file=run["key_file"],
            options=DeidOptions.of("retain-dates"),
            workers=0,
        )
    with pytest.raises(DeidError, match="outside the de-identified output"):
        deidentify_table(source["table"], tmp_path / "o", key_file=tmp_path / "o" / "k", workers=0)


def test_another_output_folder_with_the_same_key_gets_every_file(
    run: dict[str, Any], source: dict[str, Any], tmp_path: Path
) -> None:
    """The audit lives beside the key, not in the output: a run into a new folder with the
    same key (and so the same audit) once wrote nothing there, every file "done before"."""
    second = tmp_path / "second"
    stats = deidentify_table(
        source["table"], second, key_file=run["key_file"], workers=0, catalog=False
    )
    # skipped files (burned-in text, a duplicate) stay done: nothing of theirs is written
    assert (stats.written, stats.skipped, stats.failed, stats.done_before) == (6, 0, 1, 2)
    assert _outputs(second) == run["hashes"]
    # an output file deleted since is written again; the others stay done
    gone = sorted(run["hashes"])[0]
    (second / gone).unlink()
    again = deidentify_table(
        source["table"], second, key_file=run["key_file"], workers=0, catalog=False
    )
    assert (again.written, again.done_before) == (1, 7)
    assert _outputs(second) == run["hashes"]


def test_cli_runs_with_workers_and_options(source: dict[str, Any], tmp_path: Path) -> None:
    from pixels.cli import main

    out, key = tmp_path / "out", tmp_path / "keys" / "k.key"
    res = CliRunner().invoke(
        main,
        [
            "deid",
            "--table",
            source["table"],
            "--out",
            str(out),
            "--key-file",
            str(key),
            "--options",
            "retain-dates,retain-device-identity",
            "--workers",
            "1",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "6 written, 2 skipped, 1 failed" in res.output and "created key" in res.output
    assert "failed: " in res.output and "cut.dcm: truncated" in res.output
    files = [p for p in out.rglob("*.dcm") if ".catalog" not in p.parts]
    assert len(files) == 6
    seg = next(pydicom.dcmread(p) for p in files if pydicom.dcmread(p).Modality == "SEG")
    assert seg.DeviceSerialNumber == "SEG-SN-4711"  # retain-device-identity
    codes = {c.CodeValue for c in seg.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107", "113109"}
    bad = CliRunner().invoke(
        main, ["deid", "--table", source["table"], "--out", str(out), "--options", "keep-all"]
    )
    assert bad.exit_code == 2 and "valid: retain-dates" in bad.output


def test_pydicom_warnings_are_summarised_by_file_not_printed(tmp_path: Path) -> None:
    """pydicom's warnings (a value invalid for its VR...) went to stderr from the
    workers, naming no file; the summary now counts them and names the files."""
    from pixels.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for name in ("badVR.dcm", "CT_small.dcm"):
        shutil.copyfile(sample_file(name), src / name)
    Catalog(tmp_path / "cat").catalog(src, workers=0)
    args = ["deid", "-t", str(tmp_path / "cat"), "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(main, [*args, "--key-file", str(tmp_path / "k" / "k"), "-w", "0"])
    assert res.exit_code == 0, res.output
    assert "warnings: 1 files read with warnings" in res.output, res.output
    assert "× Invalid value for VR IS" in res.output
    assert f"e.g. {src / 'badVR.dcm'}" in res.output
    assert "UserWarning" not in res.output and "'1A'" not in res.output  # no raw warning


def test_files_on_s3_are_read_through_the_sources(s3_server: Any, tmp_path: Path) -> None:
    import uuid

    import s3fs

    bucket = f"deid-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.mkdir(bucket)
    names = ["CT_small.dcm", "MR_small.dcm"]
    for name in names:
        fs.pipe(f"{bucket}/data/{name}", sample_file(name).read_bytes())
    table = tmp_path / "cat"
    Catalog(table).catalog(
        f"s3://{bucket}/data", workers=0, storage_options=s3_server.storage_options
    )
    stats = deidentify_table(
        table,
        tmp_path / "out",
        key_file=tmp_path / "private" / "k",
        workers=0,
        storage_options=s3_server.storage_options,
        catalog=False,
    )
    assert (stats.written, stats.failed) == (2, 0)
    phi = set().union(*(phi_strings(pydicom.dcmread(sample_file(n))) for n in names))
    phi = {s for s in phi if "TOSHIBA" not in s and "GE MEDICAL" not in s}
    outs = [p for p in (tmp_path / "out").rglob("*.dcm")]
    assert len(outs) == 2
    for p in outs:
        data = p.read_bytes().replace(PYDICOM_IMPLEMENTATION_UID.encode(), b"")
        assert not leaked(data, phi), p
