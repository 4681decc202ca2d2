"""The Spark engine (scale-out): the per-file functions of the local engine run in executors.

* :mod:`~pixels.engines.spark.session` — recognising sessions, a local session, Delta detection;
* :mod:`~pixels.engines.spark.listing` — distributed listing and the streaming file source;
* :mod:`~pixels.engines.spark.transform` — ``mapInArrow`` wrappers of the per-file work;
* :mod:`~pixels.engines.spark.writer` — Parquet from executors, one Delta commit by the driver;
* :mod:`~pixels.engines.spark.catalog` — :class:`SparkCatalog`, the dbx.pixels-style API.

pyspark is imported only when a Spark object is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixels.engines.spark.catalog import SparkCatalog
    from pixels.engines.spark.session import local_session

__all__ = ["SparkCatalog", "local_session"]


def __getattr__(name: str) -> Any:
    if name == "SparkCatalog":
        from pixels.engines.spark.catalog import SparkCatalog

        return SparkCatalog
    if name == "local_session":
        from pixels.engines.spark.session import local_session

        return local_session
    raise AttributeError(f"module 'pixels.engines.spark' has no attribute {name!r}")
