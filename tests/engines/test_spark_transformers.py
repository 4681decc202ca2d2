"""The transformers on Spark DataFrames give what they give on Arrow tables and what the local engine writes.

Real files in (pydicom's test files, a zip with an unsafe member), every check
against the local engine's per-file functions (or pydicom) on the same files.
"""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pydicom
import pytest
from PIL import Image

import pixels
from corpus import copy_tree, sample_file
from pixels import Catalog
from pixels.dicom.record import catalog_record
from pixels.errors import PixelsError
from pixels.patching import PATCH_SCHEMA, DicomPatcher
from pixels.rows import refs_to_batch
from pixels.schema import SCHEMA, THUMBNAIL_COLUMNS
from pixels.sources import iter_files
from pixels.transformers import (
    DicomMetaExtractor,
    DicomThumbnailExtractor,
    PathExtractor,
    TagExtractor,
)

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::FutureWarning")]

#: Catalog columns compared between engines (``cataloged_at`` is the time of the read).
COMPARED = [n for n in SCHEMA.names if n != "cataloged_at"]
THUMBS = [c.name for c in THUMBNAIL_COLUMNS]
IMAGES = ("CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm")
ODD_NAME = "é name.dcm"  # in the folder "sub dir": a space and a non-ASCII letter
NOTES = "50% off #1.txt"  # not an image; '%' and '#' mean something in URIs
UTF8_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real DICOM files (native, RLE, RGB, JPEG 2000, no pixel data) and two non-DICOM files."""
    root = tmp_path_factory.mktemp("spark_transformers") / "data"
    copy_tree([sample_file(n) for n in (*IMAGES, "rtplan.dcm")], root)
    ds = pydicom.dcmread(sample_file("MR_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = UTF8_NAME
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]  # an empty value in the middle
    (root / "sub dir").mkdir()
    ds.save_as(root / "sub dir" / ODD_NAME)
    (root / "sub dir" / "vol.nii.gz").write_bytes(gzip.compress(b"\0" * 400))
    (root / NOTES).write_text("not an image")
    return root


@pytest.fixture(scope="module")
def arrow_listing(data: Path) -> pa.Table:
    """The local engine's listing of ``data`` as an Arrow table (the Spark listing's columns)."""
    return pa.Table.from_batches([refs_to_batch(iter_files(str(data)))])


@pytest.fixture(scope="module")
def local_meta(arrow_listing: pa.Table) -> pa.Table:
    """DicomMetaExtractor run in this process on the Arrow listing."""
    return DicomMetaExtractor().transform(arrow_listing)


def _spark_meta(spark: Any, data: Path, tmp_path: Path) -> Any:
    cat = Catalog(spark, table=str(tmp_path / "table"))
    return DicomMetaExtractor(cat, useVariant=False).transform(
        cat.catalog(str(data), numPartitions=2)
    )


def _arrow_of(df: Any) -> pa.Table:
    """A Spark DataFrame as Arrow, with Spark's own Arrow types (``toArrow`` is Spark 4+)."""
    if hasattr(df, "toArrow"):
        return df.toArrow()
    batches = df._collect_as_arrow()
    assert batches, "no rows"
    return pa.Table.from_batches(batches)


def _by_path(rows: list[dict[str, Any]], key: str = "path") -> dict[str, dict[str, Any]]:
    out = {r[key]: r for r in rows}
    assert len(out) == len(rows), "duplicate paths"
    return out


def _pick(row: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {n: row[n] for n in names}


# ------------------------------------------------------------------ DicomMetaExtractor
def test_meta_on_spark_equals_arrow_and_catalog_record(
    spark: Any, data: Path, arrow_listing: pa.Table, tmp_path: Path
) -> None:
    from pyspark.sql import functions as sf

    cat = Catalog(spark, table=str(tmp_path / "table"))
    listing = (
        cat.catalog(str(data), numPartitions=2)
        .withColumn("label", sf.upper(sf.col("extension")))
        .withColumn("twice", sf.col("length") * 2)
        .withColumn("names", sf.array(sf.col("relative_path"), sf.lit(None).cast("string")))
    )
    out = DicomMetaExtractor(cat, useVariant=False).transform(listing)
    assert out.columns == [*SCHEMA.names, "label", "twice", "names"]
    table = _arrow_of(out)
    for name in SCHEMA.names:  # the catalog's own types, not Spark's defaults
        assert table.schema.field(name).type == SCHEMA.field(name).type, name
    got = _by_path(table.to_pylist())
    labels = [e.upper() for e in arrow_listing.column("extension").to_pylist()]
    local_out = DicomMetaExtractor().transform(
        arrow_listing.append_column("label", pa.array(labels))
    )
    assert local_out.column_names == [*SCHEMA.names, "label"]
    local = _by_path(local_out.to_pylist())

    refs = list(iter_files(str(data)))
    assert len(refs) == 8
    assert set(got) == set(local) == {r.path for r in refs}
    for ref in refs:
        expected = _pick(catalog_record(ref), COMPARED)
        assert _pick(got[ref.path], COMPARED) == expected, ref.path
        assert _pick(local[ref.path], COMPARED) == expected, ref.path
        # the extra columns ride along, unchanged, on their own row
        row = got[ref.path]
        assert row["label"] == local[ref.path]["label"] == ref.extension.upper()
        assert row["twice"] == 2 * ref.length
        assert row["names"] == [ref.relative_path, None]

    # and the values are the files' own
    for name in (*IMAGES, f"sub dir/{ODD_NAME}"):
        path = data / name
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        row = got[str(path)]
        assert row["error"] is None and row["file_type"] == "dicom"
        assert row["SOPInstanceUID"] == ds.SOPInstanceUID and row["Modality"] == ds.Modality
        assert row["Rows"] == ds.Rows and row["frame_offsets"]
        assert row["cataloged_at"] is not None
    assert got[str(data / "sub dir" / ODD_NAME)]["PatientName"] == UTF8_NAME
    assert got[str(data / "rtplan.dcm")]["frame_offsets"] is None
    notes = got[str(data / NOTES)]
    assert notes["meta"] is None and str(data / NOTES) in notes["error"]
    nifti = got[str(data / "sub dir/vol.nii.gz")]  # an image Pixels knows, not read as DICOM
    assert nifti["extension"] == "nii.gz" and nifti["file_type"] == "nifti"
    assert nifti["meta"] is None and nifti["error"] is None


# ------------------------------------------------------------------ DicomThumbnailExtractor
def _pixels(png_or_jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png_or_jpeg)))


def test_thumbnails_on_spark_equal_arrow(
    spark: Any, data: Path, local_meta: pa.Table, tmp_path: Path
) -> None:
    from pyspark.sql import functions as sf

    meta_df = _spark_meta(spark, data, tmp_path).withColumn("label", sf.upper("extension"))
    out = DicomThumbnailExtractor(max_size=48, fmt="png").transform(meta_df)
    assert out.columns == meta_df.columns  # the thumbnail columns are set, not added again
    got = _by_path(_arrow_of(out).to_pylist())
    local = _by_path(
        DicomThumbnailExtractor(max_size=48, fmt="png").transform(local_meta).to_pylist()
    )
    assert set(got) == set(local)

    for name in (*IMAGES, f"sub dir/{ODD_NAME}"):
        s, loc = got[str(data / name)], local[str(data / name)]
        assert s["thumbnail_error"] is None and loc["thumbnail_error"] is None, name
        assert _pick(s, THUMBS[1:]) == _pick(loc, THUMBS[1:]), name
        assert s["thumbnail_format"] == "png" and s["thumbnail_frame"] == 0
        assert max(s["thumbnail_width"], s["thumbnail_height"]) <= 48
        a, b = _pixels(s["thumbnail"]), _pixels(loc["thumbnail"])
        assert a.shape[:2] == (s["thumbnail_height"], s["thumbnail_width"])
        assert np.array_equal(a, b), name
        assert a.std() > 0, name  # a real picture, not a blank
    assert _pixels(got[str(data / "SC_rgb_rle.dcm")]["thumbnail"]).ndim == 3  # colour kept
    # the other columns are untouched
    others = [c for c in COMPARED if c not in THUMBS]
    for path, row in got.items():
        assert _pick(row, others) == _pick(local[path], others), path
        assert row["label"] == row["extension"].upper()

    # rows without pixel data keep null thumbnails on Spark
    for name in ("rtplan.dcm", NOTES, "sub dir/vol.nii.gz"):
        assert all(got[str(data / name)][c] is None for c in THUMBS), name
    assert all(local[str(data / "rtplan.dcm")][c] is None for c in THUMBS)


def test_thumbnails_of_rows_without_pixel_data_are_null_on_arrow_too(
    local_meta: pa.Table, data: Path
) -> None:
    # Spark skips rows without a frame index (above); the Arrow path must give the same row
    local = _by_path(DicomThumbnailExtractor(max_size=48).transform(local_meta).to_pylist())
    for name in (NOTES, "sub dir/vol.nii.gz"):
        row = local[str(data / name)]
        assert row["thumbnail"] is None
        assert row["thumbnail_error"] is None, (
            f"BUG: DicomThumbnailExtractor on Arrow sets a thumbnail_error on a non-DICOM row "
            f"(Spark leaves it null): {row['thumbnail_error']!r}"
        )


def test_thumbnails_need_catalog_columns_on_spark(spark: Any, data: Path, tmp_path: Path) -> None:
    listing = Catalog(spark, table=str(tmp_path / "table")).catalog(str(data))
    with pytest.raises(PixelsError) as err:
        DicomThumbnailExtractor().transform(listing)  # a listing: no meta, no frame index
    message = str(err.value)
    for col in ("meta", "frame_offsets", "frame_lengths", "TransferSyntaxUID"):
        assert col in message
    assert "path" not in message.split("missing columns:")[1]


def test_thumbnails_need_catalog_columns_on_arrow(arrow_listing: pa.Table) -> None:
    # the same listing as on Spark (no meta, no frame index): the Arrow path must refuse it too
    try:
        out = DicomThumbnailExtractor().transform(arrow_listing)
    except PixelsError as e:
        message = str(e)
    else:
        errors = out.column("thumbnail_error").to_pylist()
        pytest.fail(
            "BUG: DicomThumbnailExtractor on an Arrow table without 'meta' does not raise "
            f"(Spark raises PixelsError); every row gets a thumbnail_error instead, e.g. {errors[0]!r}"
        )
    for col in ("meta", "frame_offsets", "frame_lengths", "TransferSyntaxUID"):
        assert col in message


# ------------------------------------------------------------------ DicomPatcher
def _signed(arr: np.ndarray, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    return arr.astype(f"u{dt.itemsize}").view(dt)


def test_patches_on_spark_equal_arrow(
    spark: Any, data: Path, local_meta: pa.Table, tmp_path: Path
) -> None:
    patcher = DicomPatcher(size=32)
    out = patcher.transform(_spark_meta(spark, data, tmp_path))
    assert out.columns == PATCH_SCHEMA.names
    table = _arrow_of(out)
    for f in PATCH_SCHEMA:
        assert table.schema.field(f.name).type == f.type, f.name
    local = pa.Table.from_batches(list(patcher.transform(local_meta)), schema=PATCH_SCHEMA)

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["source_path"], r["frame"] or -1, r["y"] or -1, r["x"] or -1)

    got = sorted(table.to_pylist(), key=key)
    want = sorted(local.to_pylist(), key=key)
    assert len(got) == len(want)
    cols = ["source_path", "frame", "x", "y", "data", "error"]
    assert [_pick(r, cols) for r in got] == [_pick(r, cols) for r in want]
    assert got == want  # every column

    # 128x128 CT -> 16 patches whose pixels are the image's
    ct_path = str(data / "CT_small.dcm")
    ct = [r for r in got if r["source_path"] == ct_path]
    assert len(ct) == 16 and all(r["error"] is None and r["format"] == "png" for r in ct)
    image = pydicom.dcmread(ct_path).pixel_array
    for r in ct:
        tile = _signed(np.asarray(Image.open(io.BytesIO(r["data"]))), r["dtype"])
        assert np.array_equal(tile, image[r["y"] : r["y"] + 32, r["x"] : r["x"] + 32])
    # files without pixel data: one row each, with the error, on both engines
    errors = {r["source_path"]: r["error"] for r in got if r["error"]}
    assert set(errors) == {str(data / n) for n in ("rtplan.dcm", NOTES, "sub dir/vol.nii.gz")}
    assert all(p in e for p, e in errors.items())


# ------------------------------------------------------------------ PathExtractor
def test_path_extractor_on_spark_file_uris(spark: Any, data: Path) -> None:
    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(str(data))
        .select("path", "modificationTime", "length")
        .withColumnRenamed("path", "uri")
    )
    files = files.withColumn("uri_copy", files["uri"])
    out = PathExtractor(inputCol="uri", basePath=f"file:{data}").transform(files)
    assert "uri" not in out.columns and out.columns[-1] == "uri_copy"
    got = _by_path(_arrow_of(out).to_pylist())
    refs = {r.path: r for r in iter_files(str(data))}
    assert set(got) == set(refs)
    for path, ref in refs.items():
        row = got[path]
        assert row["uri_copy"].startswith("file:") and row["uri_copy"].endswith(ref.relative_path)
        assert row["relative_path"] == ref.relative_path
        assert row["local_path"] == path == ref.local_path
        assert row["extension"] == ref.extension
        assert row["path_tags"] == list(ref.path_tags)
        assert row["length"] == ref.length
        assert row["original_path"] is None and row["error"] is None
        # Spark's file source keeps milliseconds
        assert abs((row["modificationTime"] - ref.modificationTime).total_seconds()) < 0.001
    odd = got[str(data / "sub dir" / ODD_NAME)]
    assert odd["path_tags"] == ["sub dir", "é name", "dcm"] and odd["extension"] == "dcm"
    assert got[str(data / "sub dir" / "vol.nii.gz")]["extension"] == "nii.gz"

    # without basePath, relative to the file system's root
    plain = _by_path(_arrow_of(PathExtractor(inputCol="uri").transform(files)).to_pylist())
    assert plain[str(data / NOTES)]["relative_path"] == str(data / NOTES).lstrip("/")


def test_path_extractor_on_arrow_file_uris(data: Path) -> None:
    paths = [data / "sub dir" / ODD_NAME, data / "sub dir" / "vol.nii.gz", data / "CT_small.dcm"]
    table = pa.table({"path": [f"file:{p}" for p in paths], "label": ["a", "b", "c"]})
    out = PathExtractor(basePath=str(data)).transform(table)
    rows = out.to_pylist()
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    assert [r["local_path"] for r in rows] == [str(p) for p in paths]
    assert [r["relative_path"] for r in rows] == [f"sub dir/{ODD_NAME}", "sub dir/vol.nii.gz",
                                                  "CT_small.dcm"]  # fmt: skip
    assert [r["extension"] for r in rows] == ["dcm", "nii.gz", "dcm"]
    assert rows[0]["path_tags"] == ["sub dir", "é name", "dcm"]
    assert [r["label"] for r in rows] == ["a", "b", "c"]
    # the catalog's file columns, so DicomMetaExtractor reads them
    meta = _by_path(DicomMetaExtractor().transform(out).to_pylist())
    assert meta[str(paths[0])]["PatientName"] == UTF8_NAME


def test_path_extractor_on_plain_local_paths(data: Path) -> None:
    path = data / "sub dir" / ODD_NAME
    (row,) = (
        PathExtractor(basePath=str(data)).transform(pa.table({"path": [str(path)]})).to_pylist()
    )
    assert row["path"] == str(path) and row["relative_path"] == f"sub dir/{ODD_NAME}"
    assert row["local_path"] == str(path), (
        "BUG: PathExtractor gives local_path=None for a plain absolute local path "
        "(only 'file:' URIs get one); the catalog's local_path is the file on disk"
    )


# ------------------------------------------------------------------ TagExtractor
def _alphabetic(value: Any) -> str:
    return str(value.components[0])


def test_tag_extractor_on_spark_and_arrow(
    spark: Any, data: Path, local_meta: pa.Table, tmp_path: Path
) -> None:
    tags: dict[str, str] = {"ImageType": "ImageType", "00100020": "00100020"}
    named = {"who": "PatientName", "height": "(0028,0010)"}
    meta_df = _spark_meta(spark, data, tmp_path)
    out = TagExtractor(named).transform(TagExtractor(list(tags)).transform(meta_df))
    new = ["ImageType", "00100020", "who", "height"]
    assert out.columns == [*meta_df.columns, *new]
    got = _by_path(_arrow_of(out.select("path", *[f"`{c}`" for c in new])).to_pylist())
    arrow = TagExtractor(named).transform(TagExtractor(list(tags)).transform(local_meta))
    assert arrow.column_names == [*local_meta.column_names, *new]
    local = _by_path(arrow.select(["path", *new]).to_pylist())
    assert got == local

    for name in (*IMAGES, f"sub dir/{ODD_NAME}", "rtplan.dcm"):
        ds = pydicom.dcmread(data / name, stop_before_pixels=True)
        row = got[str(data / name)]
        assert row["ImageType"] == ("\\".join(ds.ImageType) if "ImageType" in ds else None)
        assert row["00100020"] == ds.PatientID
        assert row["who"] == _alphabetic(ds.PatientName)
        assert row["height"] == (str(ds.Rows) if "Rows" in ds else None)
    odd = got[str(data / "sub dir" / ODD_NAME)]
    assert odd["ImageType"] == "ORIGINAL\\\\AXIAL"  # the empty value stays in its place
    assert odd["who"] == "Yamada^Tarou"  # PN: the Alphabetic group only
    assert got[str(data / "CT_small.dcm")]["ImageType"] == "ORIGINAL\\PRIMARY\\AXIAL"
    for name in (NOTES, "sub dir/vol.nii.gz"):
        assert set(got[str(data / name)].values()) == {str(data / name), None}


def test_tag_extractor_unknown_keyword(spark: Any, local_meta: pa.Table) -> None:
    df = spark.createDataFrame([("/x.dcm", None)], "path string, meta string")
    for data_in in (df, local_meta):
        with pytest.raises(PixelsError, match="NoSuchKeyword"):
            TagExtractor(["Modality", "NoSuchKeyword"]).transform(data_in)
        with pytest.raises(PixelsError, match="'NoSuchKeyword'"):
            TagExtractor({"col": "NoSuchKeyword"}).transform(data_in)
    with pytest.raises(PixelsError, match="meta"):
        TagExtractor(["Modality"]).transform(df.drop("meta"))


def test_tag_extractor_keyword_of_a_catalog_column(
    spark: Any, data: Path, local_meta: pa.Table, tmp_path: Path
) -> None:
    # TagExtractor(["Modality", ...]) on catalog rows: "Modality" is already a column
    meta_df = _spark_meta(spark, data, tmp_path)
    arrow = TagExtractor(["Modality", "00100020"]).transform(local_meta)
    out = TagExtractor(["Modality", "00100020"]).transform(meta_df)
    assert arrow.column_names.count("Modality") == 1 and out.columns.count("Modality") == 1, (
        "BUG: TagExtractor adds a second 'Modality' column next to the catalog's "
        f"(Spark columns: {out.columns.count('Modality')}, Arrow: "
        f"{arrow.column_names.count('Modality')}); on Spark the DataFrame cannot be "
        "selected from (AMBIGUOUS_REFERENCE) or collected (Arrow buffer error in the JVM)"
    )
    got = _by_path(_arrow_of(out.select("path", "Modality")).to_pylist())
    assert got[str(data / "CT_small.dcm")]["Modality"] == "CT"
    assert got[str(data / NOTES)]["Modality"] is None


# ------------------------------------------------------------------ zip archives
def test_zip_members_on_spark_equal_local_engine(spark: Any, tmp_path: Path) -> None:
    root = tmp_path / "zipdata"
    root.mkdir()
    archive = root / "study.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, src in (
            ("p1/ct/CT_small.dcm", "CT_small.dcm"),
            ("p1/mr.dcm", "MR_small_RLE.dcm"),
        ):
            info = zipfile.ZipInfo(name, date_time=(2021, 3, 4, 5, 6, 8))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, sample_file(src).read_bytes())
        zf.writestr("../evil.dcm", sample_file("CT_small.dcm").read_bytes())
    shutil.copyfile(sample_file("rtplan.dcm"), root / "plain.dcm")

    cat = Catalog(spark, table=str(tmp_path / "spark_table"))
    got = _by_path(
        _arrow_of(
            DicomMetaExtractor(cat, useVariant=False).transform(
                cat.catalog(str(root), extractZip=True)
            )
        ).to_pylist()
    )
    local_cat = pixels.Catalog(tmp_path / "local_table")
    stats = local_cat.catalog(root, workers=0)
    assert stats.listed == 4
    local = _by_path(local_cat.sql_arrow("SELECT * FROM object_catalog").to_pylist())

    members = {f"zip://{m}::{archive}" for m in ("p1/ct/CT_small.dcm", "p1/mr.dcm", "../evil.dcm")}
    assert set(got) == set(local) == members | {str(root / "plain.dcm")}
    for path in got:
        assert _pick(got[path], COMPARED) == _pick(local[path], COMPARED), path

    ct = got[f"zip://p1/ct/CT_small.dcm::{archive}"]
    ds = pydicom.dcmread(sample_file("CT_small.dcm"), stop_before_pixels=True)
    assert ct["error"] is None and ct["SOPInstanceUID"] == ds.SOPInstanceUID
    assert ct["original_path"] == str(archive) and ct["local_path"] is None
    assert ct["relative_path"] == "study.zip/p1/ct/CT_small.dcm"
    assert ct["frame_offsets"] and ct["meta"]
    assert ct["modificationTime"] == datetime(2021, 3, 4, 5, 6, 8, tzinfo=UTC)  # the member's
    assert got[f"zip://p1/mr.dcm::{archive}"]["Modality"] == "MR"
    evil = got[f"zip://../evil.dcm::{archive}"]
    assert evil["meta"] is None and evil["SOPInstanceUID"] is None
    assert "'../evil.dcm'" in evil["error"] and "traversal" in evil["error"]
    assert not (tmp_path / "evil.dcm").exists()
