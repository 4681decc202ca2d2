"""The README's Spark snippet, runnable on this machine (Spark in local mode).

    python examples/spark_catalog.py SOURCE_FOLDER TABLE_FOLDER [local[N]]

On a cluster (Databricks, EMR, Dataproc) use the session you are given instead
of ``local_session`` and keep the rest as it is.
"""

import sys

from pixels.engines.spark import local_session

source, table = sys.argv[1], sys.argv[2]
spark = local_session(sys.argv[3] if len(sys.argv) > 3 else "local[2]")
spark.sparkContext.setLogLevel("ERROR")

# --- the dbx.pixels snippet, only the import line changed ---
from pixels import Catalog  # noqa: E402
from pixels.dicom import DicomMetaExtractor, DicomThumbnailExtractor  # noqa: E402

catalog = Catalog(spark, table=table)
catalog_df = catalog.catalog(source)
meta_df = DicomMetaExtractor(catalog).transform(catalog_df)
thumbnail_df = DicomThumbnailExtractor().transform(meta_df)
catalog.save(thumbnail_df)
catalog.load().groupBy("Modality").count().show()
# ------------------------------------------------------------

spark.stop()
