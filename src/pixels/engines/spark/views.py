"""Spark views of the catalog for dbx.pixels users: VARIANT ``meta``, image-struct thumbnails.

The table keeps one definition (``meta`` JSON text, ``thumbnail`` image bytes);
these are how Spark shows it the way dbx.pixels' tables look:

* :func:`pixels.engines.spark.transform.as_variant` — ``meta`` as a VARIANT on
  Spark 4 (``meta:['00100010'].Value[0].Alphabetic``);
* :func:`with_thumbnail_image` — ``thumbnail`` as Spark's image struct
  (``origin, height, width, nChannels, mode, data``), which Databricks'
  ``display()`` draws as pictures.
"""

from __future__ import annotations

from typing import Any

#: Spark's image schema (``pyspark.ml.image.ImageSchema``) as DDL.
IMAGE_DDL = "struct<origin:string,height:int,width:int,nChannels:int,mode:int,data:binary>"

#: OpenCV type of 8-bit images by channel count (what Spark's image schema records in ``mode``).
_OPENCV_MODE = {1: 0, 3: 16, 4: 24}


def image_struct(data: bytes | None, origin: str | None) -> dict[str, Any] | None:
    """Encoded image bytes (JPEG/PNG) as a Spark image struct row (``None`` for no image).

    Pixels are 8-bit, row-major, channels in OpenCV's order (BGR/BGRA), as Spark's
    image data source writes them.
    """
    if not data:
        return None
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        img: Image.Image = opened
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        channels = 1
    else:
        channels = arr.shape[2]
        arr = arr[..., [2, 1, 0, 3][:channels]] if channels == 4 else arr[..., ::-1]
    return {
        "origin": origin,
        "height": int(arr.shape[0]),
        "width": int(arr.shape[1]),
        "nChannels": channels,
        "mode": _OPENCV_MODE[channels],
        "data": np.ascontiguousarray(arr).tobytes(),
    }


def with_thumbnail_image(df: Any, outputCol: str = "thumbnail", inputCol: str = "thumbnail") -> Any:
    """``df`` with ``outputCol`` holding the thumbnail as a Spark image struct.

    By default the binary ``thumbnail`` column is replaced in place, where
    dbx.pixels users (and ``display()``) expect the image; rows without a
    thumbnail get null. The table is not changed: this is a view of its rows.

    Examples
    --------
    >>> display(with_thumbnail_image(catalog.load()))            # doctest: +SKIP
    >>> catalog.load(thumbnail_image=True)                       # the same  # doctest: +SKIP
    """
    from pyspark.sql import functions as sf

    if inputCol not in df.columns:
        from pixels.errors import PixelsError

        raise PixelsError(
            f"with_thumbnail_image needs the column {inputCol!r} (run DicomThumbnailExtractor)"
        )
    # a lambda: pyspark 4 warns that it cannot infer an eval type from image_struct's hints
    to_image = sf.udf(lambda data, origin: image_struct(data, origin), IMAGE_DDL)
    return df.withColumn(outputCol, to_image(sf.col(inputCol), sf.col("path")))


__all__ = ["IMAGE_DDL", "image_struct", "with_thumbnail_image"]
