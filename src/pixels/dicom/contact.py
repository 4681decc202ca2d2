"""Contact sheets: many thumbnails tiled into one image a person can look at."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tile:
    """One cell of a contact sheet: encoded image bytes (or None) and a caption."""

    image: bytes | None
    caption: str


def contact_sheet(
    tiles: Sequence[Tile], *, columns: int = 6, cell: int = 256, fmt: str = "png"
) -> bytes:
    """Tile thumbnails into one image, each centred in its cell with a caption under it.

    A tile without an image (no pixel data, decode error) shows its caption on a
    dark cell, so the sheet still accounts for every row asked for.

    Returns
    -------
    bytes
        The sheet, PNG (default) or JPEG.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not tiles:
        raise ValueError("no tiles: the query selected no rows")
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    caption_h = 28
    pad = 4
    sheet = Image.new(
        "RGB", (columns * (cell + pad) + pad, rows * (cell + caption_h + pad) + pad), (24, 24, 24)
    )
    draw = ImageDraw.Draw(sheet)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        x0 = pad + c * (cell + pad)
        y0 = pad + r * (cell + caption_h + pad)
        draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(0, 0, 0))
        if tile.image:
            img = Image.open(io.BytesIO(tile.image)).convert("RGB")
            scale = cell / max(img.width, img.height)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            # small images are enlarged with visible pixels, large ones reduced smoothly
            resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
            img = img.resize(size, resample)
            sheet.paste(img, (x0 + (cell - img.width) // 2, y0 + (cell - img.height) // 2))
        text = tile.caption
        while text and draw.textlength(text, font=font) > cell:
            text = text[:-2] + "…" if len(text) > 2 else ""
        draw.text((x0 + 2, y0 + cell + 6), text, fill=(220, 220, 220), font=font)
    out = io.BytesIO()
    sheet.save(out, format="JPEG" if fmt == "jpeg" else "PNG")
    return out.getvalue()
