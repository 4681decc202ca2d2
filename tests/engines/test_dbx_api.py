"""dbx.pixels' API and schema without Spark: signatures, refusals that say why, rowId,
is_anon and path_tags (real files; old tables: tests/test_table_upgrade.py)."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from corpus import sample_file
from pixels import Catalog
from pixels.errors import PixelsError
from pixels.schema import row_id


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "patient5397").mkdir(parents=True)
    shutil.copyfile(sample_file("CT_small.dcm"), root / "patient5397" / "patient5397_ct.dcm")
    shutil.copyfile(sample_file("MR_small.dcm"), root / "patient5397" / "mr_small.dcm")
    return root


def test_dicom_star_import_gives_dbx_pixels_names() -> None:
    """``from pixels.dicom import *`` gives what ``from dbx.pixels.dicom import *`` does."""
    scope: dict[str, object] = {}
    exec("from pixels.dicom import *", scope)
    # the classes dbx/pixels/dicom/__init__.py imports (dbx.pixels 3.0), and the README's
    dbx = {
        "DicomAnonymizerExtractor", "DicomMetaExtractor", "DicomPlot", "PresidioTransformer",
        "DicomThumbnailExtractor", "DicomPatcher", "Redactor", "StowProcessor",
        "DicomMetaAnonymizerExtractor", "DicomPillowThumbnailExtractor",
    }  # fmt: skip
    assert dbx <= set(scope)
    from pixels import transformers
    from pixels.dicom import DBX_NAMES

    assert set(DBX_NAMES) == set(transformers.__all__) and dbx <= set(DBX_NAMES) <= set(scope)
    for name in ("DicomAnonymizerExtractor", "DicomMetaAnonymizerExtractor",
                 "PresidioTransformer", "Redactor", "VLMPhiExtractor"):  # fmt: skip
        with pytest.raises(
            NotImplementedError, match=r"transformers are not in Pixels; .* `pixels deid --table T"
        ):
            scope[name](None)  # type: ignore[operator]
    with pytest.raises(NotImplementedError, match="pixels show"):
        scope["DicomPlot"]()  # type: ignore[operator]
    with pytest.raises(NotImplementedError, match="STOW-RS"):
        scope["StowProcessor"]()  # type: ignore[operator]


def test_top_level_names_and_version() -> None:
    from pixels import PathExtractor, TagExtractor, __version__
    from pixels.transformers import PathExtractor as P
    from pixels.version import __version__ as v

    assert PathExtractor is P and TagExtractor.__name__ == "TagExtractor"
    assert __version__ == v and v.count(".") == 2


def test_signatures_follow_dbx_pixels_order() -> None:
    """Positional arguments mean what they mean in dbx.pixels (its order, its defaults)."""
    from pixels.engines.spark.catalog import SparkCatalog
    from pixels.transformers import DicomMetaExtractor, DicomThumbnailExtractor, PathExtractor

    def params(f: object) -> list[str]:
        return [
            p.name
            for p in inspect.signature(f).parameters.values()  # type: ignore[arg-type]
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
        ]

    assert params(SparkCatalog.catalog)[:10] == [
        "path", "pattern", "recurse", "streaming", "streamCheckpointBasePath",
        "triggerProcessingTime", "triggerAvailableNow", "extractZip", "extractZipBasePath",
        "maxFilesPerTrigger",
    ]  # fmt: skip
    assert params(SparkCatalog.save)[:7] == [
        "df", "path", "table", "mode", "mergeSchema", "hasBinary", "userMetadata",
    ]  # fmt: skip
    assert params(SparkCatalog.__init__)[:3] == ["spark", "table", "volume"]
    assert params(DicomMetaExtractor.__init__) == [
        "catalog", "inputCol", "outputCol", "basePath", "deep", "useVariant", "maxWorkers",
        "remove_un_tags", "permissive",
    ]  # fmt: skip
    defaults = inspect.signature(DicomMetaExtractor.__init__).parameters
    assert defaults["deep"].default is False and defaults["useVariant"].default is True
    assert params(DicomThumbnailExtractor.__init__) == ["inputCol", "outputCol", "method"]
    assert params(PathExtractor.__init__) == ["inputCol", "tagsCol", "basePath"]


def test_refusals_say_what_pixels_does_instead() -> None:
    from pixels.dicom import DicomMetaExtractor, DicomPatcher, DicomThumbnailExtractor

    with pytest.raises(PixelsError, match="pure DICOM JSON"):
        DicomMetaExtractor(None, deep=True)
    with pytest.raises(PixelsError, match="outputCol='header'"):
        DicomMetaExtractor(None, outputCol="header")
    with pytest.raises(PixelsError, match="PathExtractor"):
        DicomMetaExtractor(None, inputCol="uri")
    with pytest.raises(PixelsError, match="with_thumbnail_image"):
        DicomThumbnailExtractor(outputCol="image")
    with pytest.raises(PixelsError, match="unknown method 'opencv'"):
        DicomThumbnailExtractor(method="opencv")
    with pytest.raises(PixelsError, match="square tiles"):
        DicomPatcher(size_x=256, size_y=128)
    p = DicomPatcher(size_x=128, size_y=128, stride_x=64, stride_y=64)
    assert p.tiling["size"] == 128 and p.tiling["stride"] == 64


def test_meta_extractor_arguments_on_arrow(files: Path, tmp_path: Path) -> None:
    """remove_un_tags drops UN elements (in sequences too); maxWorkers keeps rows in order."""
    from pixels.dicom import DicomMetaExtractor, PathExtractor

    un = tmp_path / "un"
    un.mkdir()
    for name in ("J2K_pixelrep_mismatch.dcm", "nested_priv_SQ.dcm"):
        shutil.copyfile(sample_file(name), un / name)
    listing = PathExtractor(basePath=str(un)).transform(
        pa.table({"path": sorted(str(p) for p in un.iterdir())})
    )
    full = DicomMetaExtractor().transform(listing).to_pylist()
    clean = DicomMetaExtractor(remove_un_tags=True, maxWorkers=2).transform(listing).to_pylist()
    assert [r["path"] for r in clean] == [r["path"] for r in full]

    def un_tags(ds: dict) -> list[str]:
        found = []
        for tag, el in ds.items():
            if el.get("vr") == "UN":
                found.append(tag)
            for item in el.get("Value", []) if el.get("vr") == "SQ" else []:
                found += un_tags(item)
        return found

    for before, after in zip(full, clean, strict=True):
        assert un_tags(json.loads(before["meta"])), before["path"]
        assert un_tags(json.loads(after["meta"])) == [], after["path"]
        assert after["SOPInstanceUID"] == before["SOPInstanceUID"]
        assert after["frame_offsets"] == before["frame_offsets"]


def test_tag_extractor_path_form_as_dbx_pixels() -> None:
    from pixels import TagExtractor

    paths = ["/data/benigns/patient0007/0007.LEFT_MLO.dcm", "/data/a-b/x_y.dcm"]
    out = TagExtractor(inputCol="path", outputCol="tags").transform(pa.table({"path": paths}))
    assert out["tags"].to_pylist() == [
        ["data", "benigns", "patient0007", "0007", "LEFT", "MLO", "dcm"],
        ["data", "a-b", "x", "y", "dcm"],
    ]
    positional = TagExtractor("path", "words").transform(pa.table({"path": paths}))
    assert positional["words"].to_pylist() == out["tags"].to_pylist()


def test_row_id_is_path_identity_and_stable_across_runs(files: Path, tmp_path: Path) -> None:
    a, b = Catalog(tmp_path / "a"), Catalog(tmp_path / "b")
    a.catalog(files, workers=0)
    b.catalog(files, workers=1)
    q = "SELECT path, rowId, is_anon, path_tags FROM object_catalog ORDER BY path"
    ra, rb = a.sql(q).to_dict("records"), b.sql(q).to_dict("records")
    assert [(r["path"], r["rowId"]) for r in ra] == [(r["path"], r["rowId"]) for r in rb]
    assert all(r["rowId"] == row_id(r["path"]) for r in ra)
    assert len({r["rowId"] for r in ra}) == 2
    assert all(r["is_anon"] for r in ra)
    ct = next(r for r in ra if r["path"].endswith("patient5397_ct.dcm"))
    assert list(ct["path_tags"]) == ["patient5397", "patient5397", "ct", "dcm"]
    # a changed file keeps its row's id
    (files / "patient5397" / "mr_small.dcm").write_bytes(sample_file("CT_small.dcm").read_bytes())
    a.catalog(files, workers=0)
    again = a.sql(q).to_dict("records")
    assert [(r["path"], r["rowId"]) for r in again] == [(r["path"], r["rowId"]) for r in ra]
    assert a.sql("SELECT count(*) n FROM object_catalog WHERE Modality = 'CT'")["n"][0] == 2
