"""Spark sessions: recognising them, building a local one, and what they can write.

pyspark is optional: nothing here imports it until a Spark object is handled.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_INSTALL = "the Spark engine needs pyspark (pip install 'pixels-lake[spark]') and Java 17+"


def require_pyspark() -> None:
    """Raise :class:`ImportError` saying what to install when pyspark is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as e:
        raise ImportError(_INSTALL) from e


def is_spark_session(obj: object) -> bool:
    """True for a ``pyspark.sql.SparkSession`` (classic or Spark Connect)."""
    if "pyspark" not in sys.modules:
        return False
    return type(obj).__name__ == "SparkSession" and type(obj).__module__.startswith("pyspark.")


def is_spark_dataframe(obj: object) -> bool:
    """True for a ``pyspark.sql.DataFrame`` (classic or Spark Connect)."""
    if "pyspark" not in sys.modules:
        return False
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pyspark.")


def local_session(
    master: str = "local[2]",
    *,
    app_name: str = "pixels",
    driver_memory: str = "2g",
    conf: dict[str, str] | None = None,
) -> Any:
    """A Spark session on this machine, set up for cataloging small files.

    Binds the driver to 127.0.0.1, turns the web UI off, uses UTC, and lowers
    ``spark.sql.files.openCostInBytes`` so thousands of small files do not become
    thousands of partitions. ``driver_memory`` only applies when no JVM runs yet.

    Examples
    --------
    >>> spark = local_session("local[4]", driver_memory="4g")      # doctest: +SKIP
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.files.openCostInBytes": str(64 << 10),
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "1024",
        "spark.python.worker.reuse": "true",
    }
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for k, v in settings.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def delta_configured(spark: Any) -> bool:
    """Whether ``spark`` can read and write Delta tables itself (Delta Lake jars present).

    True on Databricks and on sessions configured with ``DeltaSparkSessionExtension``;
    ``PIXELS_SPARK_DELTA=0``/``1`` overrides the detection.
    """
    forced = os.environ.get("PIXELS_SPARK_DELTA")
    if forced in ("0", "1"):
        return forced == "1"
    conf = spark.conf
    if conf.get("spark.databricks.clusterUsageTags.clusterId", None):
        return True
    ext = conf.get("spark.sql.extensions", None) or ""
    return "DeltaSparkSessionExtension" in ext


def default_parallelism(spark: Any) -> int:
    """Task slots of the session (at least 1)."""
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # Spark Connect has no SparkContext
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "8")))
