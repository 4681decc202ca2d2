"""dbx.pixels' own example code, run on local Spark with only the import line changed.

Each test is one snippet as dbx.pixels users write it, taken from (and credited to)
databricks-industry-solutions/pixels: its README, the notebooks ``install/dcm-demo.ipynb``,
``notebooks/DE-ID/DICOM - Catalog Dataset.py``, ``notebooks/VariantMigration.ipynb``,
``workflow/extract_meta.ipynb``, and its tests ``tests/dbx/test_catalog.py``,
``test_zip.py``, ``test_stream.py``. The snippets are re-typed here (short usage lines),
with three kinds of change only:

* ``from dbx.pixels ...`` -> ``from pixels ...``;
* paths (``/Volumes/...``, ``s3://hls-eng-data-public/...``) -> real DICOM files of
  pydicom's test data copied under a temporary folder, and the volume -> a folder;
* the widgets' ``table`` / ``IDENTIFIER(:table)`` -> a table name, read in SQL as the
  temporary view of its last part (no metastore outside Databricks).

Snippets needing Databricks services are in ``DATABRICKS_ONLY`` (listed in the
README with the reason) and checked to fail with a message saying so. The SQL
cells using VARIANT paths (``meta:['00100010']...``) need Spark 4.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from corpus import sample_file
from pixels.dicom import *  # noqa: F403  (README line 02: ``from dbx.pixels.dicom import *``)
from pixels.schema import row_id

pytestmark = pytest.mark.spark

#: dbx.pixels snippets that cannot run outside Databricks, and why (README lists them).
DATABRICKS_ONLY = {
    "README: managed file events (useManagedFileEvents=True)": "Auto Loader file events "
    "are a Databricks service; Pixels streams with Spark's file source",
    "README: DicomMetaAnonymizerExtractor": "dbx.pixels' de-identification transformers "
    "are not in Pixels (`pixels deid` de-identifies a catalog)",
    "install/dcm-demo.ipynb cells 2-3 (%run ./config/setup, init_widgets)": "Databricks "
    "widgets and the workspace setup notebook",
    "DE-ID notebook: init_catalog_schema_volume()": "creates Unity Catalog schemas and volumes",
    "dcm-demo / DE-ID SQL cells run as %sql with IDENTIFIER(:table) / ${table}": "notebook "
    "parameters; the same queries run here with spark.sql on the table's view",
    "VariantMigration: ALTER TABLE ... RENAME": "renames a metastore table (runs only when "
    "meta is not a VARIANT; Pixels' Spark 4 view already is)",
    "DE-ID notebook: count(DISTINCT meta:['00100010'].Value[0].Alphabetic)": "Spark 4 (OSS) "
    "cannot count distinct VARIANT values (no ::STRING cast; Databricks' `:` on JSON text "
    "returns strings); the dcm-demo form with ::STRING runs",
}

_names = itertools.count()


def _spark4(spark: Any, view: str) -> bool:
    """Spark 4: VARIANT paths run. Spark 3.5 (no VARIANT): ``meta`` is text in the view,
    a VARIANT path fails in Spark's parser, and the test runs the ``get_json_object`` form."""
    if int(spark.version.split(".")[0]) >= 4:
        return True
    from pyspark.errors import PySparkException

    assert spark.table(view).schema["meta"].dataType.typeName() == "string"
    with pytest.raises(PySparkException):
        spark.sql(f"SELECT meta:['00100010'].Value[0] FROM {view}").collect()
    return False


def _json(path: str) -> str:
    """A dbx.pixels VARIANT path as Spark 3.5's ``get_json_object`` (``$.00100010.Value[0]``)."""
    return "get_json_object(meta, '$." + path + "')"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real DICOM files laid out as dbx.pixels' examples expect them.

    ``dicom/patient5397/``: CT and MR (PatientName set), the CT with an Anatomic Region
    and a View Code sequence added (a real file, mutated); ``dicom/patient0007/``:
    ``0007.LEFT_MLO.dcm``; ``un/``: pydicom's ``J2K_pixelrep_mismatch.dcm`` (UN
    elements); ``zips/benigns_21.zip`` and ``benigns_22.zip`` (two members each).
    """
    root = tmp_path_factory.mktemp("dbx-data")
    pat = root / "dicom" / "patient5397"
    pat.mkdir(parents=True)
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = "T-D4000", "SRT"
    region.CodeMeaning = "Abdomen"
    view = Dataset()
    view.CodeValue, view.CodingSchemeDesignator = "R-10242", "SRT"
    view.CodeMeaning = "cranio-caudal"
    ds.AnatomicRegionSequence = Sequence([region])
    ds.ViewCodeSequence = Sequence([view])
    ds.save_as(pat / "patient5397_ct.dcm")
    shutil.copyfile(sample_file("MR_small.dcm"), pat / "patient5397_mr.dcm")
    other = root / "dicom" / "patient0007"
    other.mkdir()
    shutil.copyfile(sample_file("MR_small.dcm"), other / "0007.LEFT_MLO.dcm")
    un = root / "un"
    un.mkdir()
    shutil.copyfile(sample_file("J2K_pixelrep_mismatch.dcm"), un / "j2k.dcm")
    zips = root / "zips"
    zips.mkdir()
    for n in (21, 22):
        with zipfile.ZipFile(zips / f"benigns_{n}.zip", "w") as zf:
            zf.write(sample_file("CT_small.dcm"), f"benigns_{n}/ct.dcm")
            zf.write(sample_file("MR_small.dcm"), f"benigns_{n}/mr.dcm")
    (zips / "readme.txt").write_text("not a zip")
    return root


@pytest.fixture
def names(tmp_path: Path) -> dict[str, str]:
    """A fresh table name (and its SQL view), volume folder and checkpoint folder."""
    n = next(_names)
    return {
        "table": f"main.pixels_solacc_test.object_catalog_{n}",
        "view": f"object_catalog_{n}",
        "volume": str(tmp_path / "volume"),
        "checkpoints": str(tmp_path / "volume" / "checkpoints"),
        "unzipped": str(tmp_path / "volume" / "unzipped"),
    }


# ------------------------------------------------------------------ README.md


def test_readme_ingestion_is_easy(spark: Any, data: Path, names: dict[str, str]) -> None:
    """README "DICOM data ingestion is easy" (lines 01-06), ``Catalog(spark)``'s default table."""
    from pixels import Catalog  # 01  (02, the star import, is at the top of this module)

    catalog = Catalog(spark)  # 03
    catalog_df = catalog.catalog(str(data / "dicom"))  # 04
    meta_df = DicomMetaExtractor(catalog).transform(catalog_df)  # noqa: F405  # 05
    catalog.save(meta_df)  # 06

    rows = {r["relative_path"]: r for r in catalog.load().collect()}
    assert set(rows) == {
        "patient5397/patient5397_ct.dcm",
        "patient5397/patient5397_mr.dcm",
        "patient0007/0007.LEFT_MLO.dcm",
    }
    assert rows["patient5397/patient5397_ct.dcm"]["Modality"] == "CT"
    assert catalog.table_name == "main.pixels_solacc.object_catalog"
    spark.sql("DROP VIEW IF EXISTS object_catalog")
    shutil.rmtree(catalog.table.uri)


def test_readme_incremental_processing(spark: Any, data: Path, names: dict[str, str]) -> None:
    """README "Incremental processing": ``streaming=True, streamCheckpointBasePath=``."""
    from pixels import Catalog
    from pixels.dicom import DicomMetaExtractor

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    path = str(data / "dicom")
    catalog_df = catalog.catalog(
        path, streaming=True, streamCheckpointBasePath=names["checkpoints"]
    )
    catalog.save(DicomMetaExtractor(catalog).transform(catalog_df))
    assert catalog.load().count() == 3
    # a second run of the same cell reads nothing again
    again = catalog.catalog(path, streaming=True, streamCheckpointBasePath=names["checkpoints"])
    catalog.save(DicomMetaExtractor(catalog).transform(again))
    assert catalog.load().count() == 3


def test_readme_managed_file_events_fail_clearly(
    spark: Any, data: Path, names: dict[str, str]
) -> None:
    """README "managed file events": an Auto Loader service, refused with the reason."""
    from pixels import Catalog
    from pixels.errors import PixelsError

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    with pytest.raises(PixelsError, match="Auto Loader"):
        catalog.catalog(
            str(data / "dicom"),
            streaming=True,
            streamCheckpointBasePath=names["checkpoints"],
            useManagedFileEvents=True,
            includeExistingFiles=True,
            allowOverwrites=False,
            maxFileAge="90 days",
        )


def test_readme_built_in_unzip(spark: Any, data: Path, names: dict[str, str]) -> None:
    """README "Built-in unzip": ``extractZip=True, extractZipBasePath=``."""
    from pixels import Catalog
    from pixels.dicom import DicomMetaExtractor

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(
        str(data / "zips"), extractZip=True, extractZipBasePath=names["unzipped"]
    )
    catalog.save(DicomMetaExtractor(catalog).transform(catalog_df))
    rows = catalog.load().collect()
    members = sorted(r["relative_path"].rsplit("/", 1)[-1] for r in rows if r["original_path"])
    assert members == ["ct.dcm", "ct.dcm", "mr.dcm", "mr.dcm"]
    assert all(r["error"] is None for r in rows if r["original_path"])
    assert sorted(p.name for p in Path(names["unzipped"]).rglob("*.dcm")) == members


def test_readme_metadata_anonymization_is_not_built(spark: Any, names: dict[str, str]) -> None:
    """README "Metadata Anonymization": not in Pixels, said so, naming `pixels deid`."""
    from pixels import Catalog

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    with pytest.raises(
        NotImplementedError, match=r"transformers are not in Pixels; .* `pixels deid --table T"
    ):
        DicomMetaAnonymizerExtractor(  # noqa: F405
            catalog,
            anonym_mode="METADATA",
            fp_key="00112233445566778899aabbccddeeff",
            fp_tweak="a1b2c3d4e5f60708",
            anonymization_base_path=names["volume"],
        )


def test_readme_remove_un_tags(spark: Any, data: Path, names: dict[str, str]) -> None:
    """README "Remove UN Tags": ``DicomMetaExtractor(catalog, remove_un_tags=True)``."""
    from pixels import Catalog

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(str(data / "un"))

    meta_df = DicomMetaExtractor(  # noqa: F405
        catalog,
        remove_un_tags=True,
    ).transform(catalog_df)

    catalog.save(meta_df)

    (row,) = catalog.load(variant=False).collect()
    meta = json.loads(row["meta"])
    # the same file without remove_un_tags
    full_catalog = Catalog(spark, table=str(Path(names["volume"]) / "full"))
    full_df = DicomMetaExtractor(full_catalog, useVariant=False).transform(  # noqa: F405
        full_catalog.catalog(str(data / "un"))
    )
    full = json.loads(full_df.first()["meta"])
    un = sorted(t for t, el in full.items() if el.get("vr") == "UN")
    assert un, "the test file has UN elements"
    assert not any(el.get("vr") == "UN" for el in meta.values())
    assert set(full) - set(meta) == set(un)
    assert row["Rows"] == pydicom.dcmread(data / "un" / "j2k.dcm").Rows


def test_readme_permissive_mode(spark: Any, data: Path, names: dict[str, str]) -> None:
    """README "Permissive Mode": streaming listing, ``permissive=True``."""
    from pixels import Catalog

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(str(data / "dicom"), streaming=True)

    meta_df = DicomMetaExtractor(  # noqa: F405
        catalog,
        permissive=True,
    ).transform(catalog_df)

    catalog.save(meta_df)
    assert catalog.load().count() == 3
    if int(spark.version.split(".")[0]) >= 4:
        assert "_corrupt_record" in meta_df.columns


# ------------------------------------------------------- install/dcm-demo.ipynb


@pytest.fixture
def demo_table(spark: Any, data: Path, names: dict[str, str]) -> dict[str, str]:
    """dcm-demo.ipynb cells 5, 6, 8 and 10 (catalog with extractZip, permissive meta, save)."""
    path, table, volume, write_mode = str(data), names["table"], names["volume"], "overwrite"

    from pixels import Catalog
    from pixels.dicom import DicomMetaExtractor  # The Dicom transformers

    catalog = Catalog(spark, table=table, volume=volume)
    catalog_df = catalog.catalog(path=path, extractZip=True)

    meta_df = DicomMetaExtractor(catalog, permissive=True).transform(catalog_df)

    catalog.save(meta_df, mode=write_mode)
    return names


def test_dcm_demo_catalog_and_describe(spark: Any, demo_table: dict[str, str]) -> None:
    """dcm-demo cells 5-11 (cell 11: ``describe`` the table)."""
    described = {
        r["col_name"]: r["data_type"] for r in spark.sql(f"describe {demo_table['view']}").collect()
    }
    assert described["path_tags"] == "array<string>"
    assert described["is_anon"] == "boolean" and described["rowId"] == "bigint"
    # rowId: the path's id, the same the local engine gives (pixels.schema.row_id)
    ids = spark.sql(f"select path, rowId from {demo_table['view']}").collect()
    assert len(ids) == 9 and all(r["rowId"] == row_id(r["path"]) for r in ids)
    # dbx.pixels' table columns first, in its order
    cols = spark.sql(f"select * from {demo_table['view']}").columns
    assert cols[:11] == [
        "path", "modificationTime", "length", "original_path", "relative_path", "local_path",
        "extension", "file_type", "path_tags", "is_anon", "meta",
    ]  # fmt: skip


def test_dcm_demo_select_file_columns(spark: Any, demo_table: dict[str, str]) -> None:
    """dcm-demo cell 13: the file columns, ``is_anon`` and ``meta``."""
    rows = spark.sql(
        "select path, modificationTime, length, original_path, extension, file_type, "
        f"path_tags, is_anon, meta from {demo_table['view']}"
    ).collect()
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    ct = by_name["patient5397_ct.dcm"]
    assert ct["extension"] == "dcm" and ct["file_type"] == "dicom" and ct["is_anon"] is True
    assert ct["path_tags"][-4:] == ["patient5397", "patient5397", "ct", "dcm"]
    zipped = [r for r in rows if r["original_path"]]
    assert {r["original_path"].rsplit("/", 1)[-1] for r in zipped} == {
        "benigns_21.zip",
        "benigns_22.zip",
    }


def test_rows_without_meta_are_sql_null(spark: Any, demo_table: dict[str, str]) -> None:
    """``WHERE meta IS NULL`` finds the rows without a header (the VARIANT view on Spark 4)."""
    view = demo_table["view"]
    _spark4(spark, view)
    missing = spark.sql(f"select path, file_type from {view} where meta is null").collect()
    assert [(r["path"].rsplit("/", 1)[-1], r["file_type"]) for r in missing] == [
        ("readme.txt", "unknown")
    ]
    assert spark.sql(f"select count(*) n from {view} where meta is not null").first()["n"] == 8
    # the rows read back in Python too: null where there is no header
    rows = {r["path"].rsplit("/", 1)[-1]: r["meta"] for r in spark.table(view).collect()}
    assert rows["readme.txt"] is None and rows["patient5397_ct.dcm"] is not None


def test_dcm_demo_patient_count(spark: Any, demo_table: dict[str, str]) -> None:
    """dcm-demo cell 14: counts with a VARIANT path into ``meta``."""
    name = (
        "meta:['00100010'].Value[0].Alphabetic::STRING"
        if _spark4(spark, demo_table["view"])
        else _json("00100010.Value[0].Alphabetic")
    )
    (row,) = spark.sql(f"""
with x as (
  select
  format_number(count(DISTINCT {name}),0) as patient_count,
  format_number(count(1),0) num_dicoms,
  format_number(sum(length) /(1024*1024*1024), 1) as total_size_in_gb,
  format_number(avg(length), 0) avg_size_in_bytes
  from {demo_table["view"]} t
  where extension = 'dcm'
)
select patient_count, num_dicoms, total_size_in_gb, avg_size_in_bytes from x
""").collect()
    patients = {
        str(pydicom.dcmread(sample_file(f)).PatientName)
        for f in ("CT_small.dcm", "MR_small.dcm", "J2K_pixelrep_mismatch.dcm")
    }
    assert row["patient_count"] == str(len(patients))
    assert row["num_dicoms"] == "8"  # 4 files, 4 zip members


def test_dcm_demo_decode_attributes(spark: Any, demo_table: dict[str, str]) -> None:
    """dcm-demo cell 16: DICOM attributes decoded with VARIANT paths (sequences included)."""
    query = f"""
SELECT
    meta:['0020000D'].Value[0]::STRING as study_uid,
    meta:['0020000E'].Value[0]::STRING as series_instance_uid,
--    meta:['00080018'].Value[0]::STRING as sop_instance_uid,
    meta:['00100020'].Value[0]::STRING as patient_id,
    meta:['00100010'].Value[0].Alphabetic::STRING patient_name,
    meta:['00082218'].Value[0]['00080104'].Value[0]::STRING `Anatomic Region Sequence Attribute decoded`,
    meta:['0008103E'].Value[0]::STRING `Series Description Attribute`,
    meta:['00081030'].Value[0]::STRING `Study Description Attribute`,
    meta:`00540220`.Value[0].`00080104`.Value[0]::STRING `projection` -- backticks work for numeric keys
FROM {demo_table["view"]}
GROUP BY ALL
ORDER BY 1,2,3
"""
    if not _spark4(spark, demo_table["view"]):
        query = re.sub(
            r"meta:(\S+?)::STRING",
            lambda m: _json(re.sub(r"\['(\w+)'\]|\.?`(\w+)`", r".\1\2", m.group(1)).lstrip(".")),
            query,
        ).replace("GROUP BY ALL", "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8")
    rows = spark.sql(query).collect()
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    (mutated,) = [r for r in rows if r["projection"] is not None]
    assert mutated["Anatomic Region Sequence Attribute decoded"] == "Abdomen"
    assert mutated["projection"] == "cranio-caudal"
    assert mutated["study_uid"] == ct.StudyInstanceUID
    assert mutated["patient_name"] == str(ct.PatientName)


def test_dcm_demo_query_by_path_tags(spark: Any, demo_table: dict[str, str]) -> None:
    """dcm-demo cell 17: ``array_contains(path_tags, 'patient5397')`` and VARIANT fields."""
    if not _spark4(spark, demo_table["view"]):
        rows = spark.sql(f"""
SELECT {_json("00100010.Value[0].Alphabetic")} as patient_name, path, meta
FROM {demo_table["view"]}
WHERE array_contains( path_tags, 'patient5397' )
order by patient_name
""").collect()
        assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == [
            "patient5397_ct.dcm",
            "patient5397_mr.dcm",
        ]
        return
    rows = spark.sql(f"""
SELECT
  --rowid,
  meta:['00100010'].Value[0].Alphabetic::STRING as patient_name,  -- Medical information from the DICOM header
  meta:hash, meta:img_min, meta:img_max, path,            -- technical metadata
  meta                                                    -- DICOM header metadata as JSON
FROM {demo_table["view"]}
WHERE array_contains( path_tags, 'patient5397' ) -- query based on a part of the filename
order by patient_name
""").collect()
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == [
        "patient5397_ct.dcm",
        "patient5397_mr.dcm",
    ]
    assert all(r["hash"] is None for r in rows)  # deep=False: no pixel statistics, as dbx.pixels


# ------------------------------------------- notebooks/DE-ID/DICOM - Catalog Dataset.py


def test_catalog_dataset_notebook(spark: Any, data: Path, names: dict[str, str]) -> None:
    """DE-ID "DICOM - Catalog Dataset": catalog, meta, thumbnails, save; then its SQL cells."""
    path, table, volume, write_mode = str(data / "dicom"), names["table"], names["volume"], "append"

    from pixels import Catalog
    from pixels.dicom import DicomMetaExtractor, DicomThumbnailExtractor  # The Dicom transformers

    catalog = Catalog(spark, table=table, volume=volume)
    catalog_df = catalog.catalog(path=path, extractZip=True)
    meta_df = DicomMetaExtractor(catalog).transform(catalog_df)
    thumbnail_df = DicomThumbnailExtractor().transform(meta_df)
    catalog.save(thumbnail_df, mode=write_mode)

    rows = spark.sql(f"select * from {names['view']}").collect()  # %sql select * from ${table}
    assert len(rows) == 3 and all(r["thumbnail"] for r in rows)
    described = spark.sql(f"describe {names['view']}").collect()  # %sql describe ${table}
    assert "thumbnail" in {r["col_name"] for r in described}
    # its patient count, `count(DISTINCT meta:['00100010'].Value[0].Alphabetic)`, has no
    # ::STRING: Spark 4 cannot count distinct VARIANTs (see DATABRICKS_ONLY); dcm-demo
    # cell 14 (with ::STRING) runs in test_dcm_demo_patient_count
    # display(thumbnail_df) shows Spark image structs: the option of load()
    images = catalog.load(thumbnail_image=True).select("path", "thumbnail").collect()
    ct = next(r for r in images if r["path"].endswith("patient5397_ct.dcm"))
    img = ct["thumbnail"]
    assert img["nChannels"] == 1 and img["mode"] == 0
    assert len(img["data"]) == img["width"] * img["height"] > 0


# ------------------------------------------------------------ workflow / migration


def test_extract_meta_workflow(spark: Any, data: Path, names: dict[str, str]) -> None:
    """workflow/extract_meta.ipynb: streaming + extractZip + maxUnzippedRecordsPerFile, deep=False."""
    path, table, volume = str(data / "zips"), names["table"], names["volume"]

    from pixels import Catalog
    from pixels.dicom import DicomMetaExtractor

    catalog = Catalog(spark, table=table, volume=volume)
    catalog_df = catalog.catalog(
        path=path, extractZip=True, streaming=True, maxUnzippedRecordsPerFile=1024
    )

    meta_df = DicomMetaExtractor(catalog, deep=False).transform(catalog_df)
    catalog.save(meta_df, mode="append")

    rows = catalog.load().collect()
    assert sorted(r["Modality"] for r in rows if r["original_path"]) == ["CT", "CT", "MR", "MR"]


def test_variant_migration_notebook(spark: Any, demo_table: dict[str, str]) -> None:
    """notebooks/VariantMigration.ipynb: on Pixels' Spark 4 view ``meta`` is a VARIANT already.

    (Spark 3.5 has no VARIANT to migrate to: ``meta`` stays text and ``parse_json`` is unknown.)
    """
    if not _spark4(spark, demo_table["view"]):
        from pyspark.errors import PySparkException

        with pytest.raises(PySparkException):
            spark.sql("SELECT parse_json('{}')").collect()
        return
    from pyspark.sql.functions import expr

    old_table = demo_table["view"]
    new_table = demo_table["view"]
    printed = []

    old_df = spark.read.table(old_table)
    if old_df.schema["meta"].dataType.typeName() != "variant":
        if old_table == new_table:
            spark.sql(f"ALTER TABLE {old_table} RENAME TO {old_table}_old")
            old_table = old_table + "_old"
        spark.read.table(old_table).withColumn("meta", expr("parse_json(meta)")).write.mode(
            "append"
        ).saveAsTable(new_table)
    else:
        printed.append("Meta column is already variant type")
    assert printed == ["Meta column is already variant type"]


# ------------------------------------------------------------------ tests/dbx


def test_dbx_tests_catalog_import_and_init(spark: Any, names: dict[str, str]) -> None:
    """tests/dbx/test_catalog.py: test_catalog_import, test_catalog_init."""
    from pixels.version import __version__

    assert __version__ >= "0.0.6"

    from pixels import Catalog

    catalog = Catalog(spark=spark, table=names["table"], volume=names["volume"])
    assert catalog is not None
    assert catalog.is_anon


def test_dbx_tests_catalog_path_and_save(spark: Any, data: Path, names: dict[str, str]) -> None:
    """tests/dbx/test_catalog.py: catalog_path + public path (positional reads), the three saves."""
    from pixels import Catalog

    dicom_file_path = str(data / "dicom" / "patient0007") + "/"
    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(path=dicom_file_path)
    assert catalog_df is not None
    assert catalog_df.count() == 1
    assert catalog_df.columns[:9] == [
        "path",
        "modificationTime",
        "length",
        "original_path",
        "relative_path",
        "local_path",
        "extension",
        "file_type",
        "path_tags",
    ]  # fmt: skip  (dbx.pixels' 9; Pixels' own after them)
    row = catalog_df.collect()[0]
    assert row[0] == dicom_file_path + "0007.LEFT_MLO.dcm"
    assert row[2] == (data / "dicom" / "patient0007" / "0007.LEFT_MLO.dcm").stat().st_size
    assert row[6] == "dcm"

    catalog.save(catalog_df)  # test_catalog_save
    assert catalog.load().count() == 1

    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    other = names["table"] + "_uc"
    catalog.save(df=catalog_df, table=other)  # test_catalog_save_uc
    assert catalog.load(table=other).count() == 1

    dbfs = str(Path(names["volume"]) / "dbfs" / "tmp" / "main.pixels.object_catalog")
    catalog.save(df=catalog_df, path=dbfs, userMetadata="saved by test_catalog_save_dbfs")
    from deltalake import DeltaTable

    dt = DeltaTable(dbfs)
    assert dt.to_pyarrow_table(columns=["path"]).num_rows == 1
    assert dt.history(1)[0]["userMetadata"] == "saved by test_catalog_save_dbfs"


def test_dbx_tests_unzip_glob(spark: Any, data: Path, names: dict[str, str]) -> None:
    """tests/dbx/test_zip.py test_catalog_unzip: a globbed zip path, ``extractZip=True``."""
    from pixels import Catalog

    zip_file_path = str(data / "zips" / "benigns_21*zip")
    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(
        path=zip_file_path, extractZip=True, extractZipBasePath=names["unzipped"]
    )
    assert catalog_df is not None
    catalog.save(df=catalog_df)
    rows = catalog.load().collect()
    assert len(rows) == 2
    assert {r["original_path"].rsplit("/", 1)[-1] for r in rows} == {"benigns_21.zip"}


def test_dbx_tests_unzip_glob_stream(spark: Any, data: Path, names: dict[str, str]) -> None:
    """tests/dbx/test_zip.py test_catalog_unzip_stream: the same, streaming."""
    from pixels import Catalog

    zip_file_path = str(data / "zips" / "benigns_21*zip")
    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(
        path=zip_file_path,
        extractZip=True,
        extractZipBasePath=names["unzipped"],
        streaming=True,
        streamCheckpointBasePath=names["checkpoints"],
    )
    assert catalog_df is not None
    catalog.save(df=catalog_df)
    rows = catalog.load().collect()
    assert len(rows) == 2
    assert {r["original_path"].rsplit("/", 1)[-1] for r in rows} == {"benigns_21.zip"}


def test_dbx_tests_stream(spark: Any, data: Path, names: dict[str, str]) -> None:
    """tests/dbx/test_stream.py test_catalog_stream."""
    from pixels import Catalog

    dicom_file_path = str(data / "dicom" / "patient5397") + "/"
    catalog = Catalog(spark, table=names["table"], volume=names["volume"])
    catalog_df = catalog.catalog(
        path=dicom_file_path, streaming=True, streamCheckpointBasePath=names["checkpoints"]
    )
    assert catalog_df is not None
    catalog.save(df=catalog_df)
    assert catalog.load().count() == 2
