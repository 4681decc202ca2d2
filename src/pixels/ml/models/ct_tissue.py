"""``ct-tissue``: a weight-free CT model (Hounsfield thresholds, connected components, morphology).

Works on any CT, with no download. The shapes (body, lungs) are found on a
copy of the volume averaged over blocks of about 2 mm (2 x 2 in-plane pixels
and 2 slices for a 0.86 mm x 1.25 mm CT: 8 times fewer voxels), where the
morphology and the connected components are cheap; the tissue classes are then
taken from the full-resolution Hounsfield units, and the body's outline is
refined at full resolution. Steps, on a volume in Hounsfield units:

1. **Body**: blocks above -500 HU inside the reconstruction circle (values
   below -1500 HU are the scanner's padding), opened in each slice with a
   3 mm disk (cuts the thin links to the table, blankets, cables), the large 3-D
   connected components kept (at least 10 % of the largest: the body; a table
   or a hand apart from it is dropped when smaller), then holes filled slice by
   slice (lungs, bowel gas and the airway are inside the body). At full
   resolution, the voxels of the body's outer block layer are body where they
   are above -500 HU (or lung).
2. **Lung**: air-like blocks (below -400 HU) inside the body, in 3-D components
   of at least 3 % of the body (or 200 mL), vessels and airway walls inside
   them filled slice by slice. Where the field of view cuts through the chest,
   lung is open to the image edge: such a region outside the body that touches
   both the body and the image edge, and whose median is above -900 HU
   (parenchyma, not air: -1000 HU, -950 HU on some scanners), is lung too.
3. **Air**: the other air-like voxels inside the body (bowel gas, airway,
   sinuses).
4. **Bone**: 200 HU and above (cortical and dense trabecular bone; iodinated
   contrast in vessels also reaches it), specks under 10 mm³ removed.
5. **Fat**: -400 to -30 HU (fat is -190 to -30; the voxels between air and fat
   are mostly fat/air partial volume).
6. **Soft tissue**: the rest of the body (-30 to 200 HU: muscle, organs, blood,
   fluid).

Labels 1-5 are Lung, Bone, Fat, Soft tissue, Air; ``Body`` (label 6 in binary
SEGs) is their union. Codes are SNOMED CT, as pydicom's code dictionary has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pixels.ml.deps import need
from pixels.ml.models.base import ANATOMICAL_STRUCTURE, SUBSTANCE, TISSUE, Code, Segment

__all__ = ["CTTissue", "ct_tissue_labels"]

LUNG, BONE, FAT, SOFT, AIR = 1, 2, 3, 4, 5

PADDING_HU = -1500.0
BODY_HU = -500.0
AIR_HU = -400.0
FAT_MAX_HU = -30.0
BONE_HU = 200.0
#: Lung parenchyma (about -850 HU with its vessels) vs air (-1000 HU; -950 on some scanners).
LUNG_MEDIAN_HU = -900.0
#: Size of the blocks the shapes are found on (mm, in-plane and along Z).
WORK_MM = 2.0
#: Blocks across a slice at least (smaller images are worked on with smaller blocks).
MIN_BLOCKS = 64


def _disk(radius: int) -> list[tuple[int, int]]:
    """In-plane offsets ``(dy, dx)`` of a disk of ``radius`` pixels."""
    r = range(-radius, radius + 1)
    return [(dy, dx) for dy in r for dx in r if dy * dy + dx * dx <= radius * radius]


CROSS = _disk(1)


def _span(n: int, d: int) -> tuple[slice, slice]:
    """Where ``out[i]`` and ``m[i + d]`` overlap along an axis of ``n``: (out slice, m slice)."""
    return slice(max(0, -d), n - max(0, d)), slice(max(0, d), n - max(0, -d))


def _morph(
    m: np.ndarray, offsets: list[tuple[int, int]], *, erode: bool, border: bool = False
) -> np.ndarray:
    """Binary erosion / dilation of each slice of ``m`` ``(Z, Y, X)`` by a symmetric in-plane
    structuring element (its ``offsets``), outside the image taken as ``border``.

    The same result as ``scipy.ndimage.binary_erosion`` / ``binary_dilation`` with that
    element and ``border_value``, as one shifted AND / OR per offset (several times faster
    than scipy's generic iteration on large masks).
    """
    out = m.copy()
    _, ny, nx = m.shape
    for dy, dx in offsets:
        if dy == dx == 0:
            continue
        (oy, iy), (ox, ix) = _span(ny, dy), _span(nx, dx)
        if erode:
            out[:, oy, ox] &= m[:, iy, ix]
            if not border:  # neighbours outside the image are background
                out[:, : max(0, -dy)] = False
                out[:, ny - max(0, dy) :] = False
                out[:, :, : max(0, -dx)] = False
                out[:, :, nx - max(0, dx) :] = False
        else:
            out[:, oy, ox] |= m[:, iy, ix]
            if border:
                out[:, : max(0, -dy)] = True
                out[:, ny - max(0, dy) :] = True
                out[:, :, : max(0, -dx)] = True
                out[:, :, nx - max(0, dx) :] = True
    return out


def _fill_holes_per_slice(mask: np.ndarray, ndi: Any) -> np.ndarray:
    """``mask`` ``(Z, Y, X)`` with the holes of each slice filled (as ``binary_fill_holes``
    on each slice: background not 4-connected to the slice's border), in one labelling."""
    within = np.zeros((3, 3, 3), bool)
    within[1] = ndi.generate_binary_structure(2, 1)
    comp, n = ndi.label(~mask, structure=within)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for side in (comp[:, 0], comp[:, -1], comp[:, :, 0], comp[:, :, -1]):
        outside[side] = True
    outside[0] = False  # the mask itself
    return ~outside[comp]


def _factors(
    spacing: tuple[float, float, float], shape: tuple[int, ...] = (512, 512, 1)
) -> tuple[int, int]:
    """Integer block sizes (in-plane, along Z) that bring voxels to about :data:`WORK_MM`,
    leaving at least :data:`MIN_BLOCKS` blocks across each slice (a small crop is not
    shrunk to a few blocks that the 3 mm opening would erase)."""
    inplane = max(min(float(spacing[0]), float(spacing[1])), 1e-3)
    f = max(1, min(round(WORK_MM / inplane), min(shape[0], shape[1]) // MIN_BLOCKS))
    return f, max(1, round(WORK_MM / max(float(spacing[2]), 1e-3)))


def _counts(n: int, f: int) -> np.ndarray:
    """Voxels in each block of ``f`` along an axis of ``n`` (the last block may be short)."""
    return np.minimum(f, n - np.arange(0, n, f)).astype(np.float32)


def _pool(v: np.ndarray, fz: int, f: int, *, mean: bool = True) -> np.ndarray:
    """Block sums (or means) of ``v`` ``(Z, Y, X)`` over ``fz x f x f`` blocks (last ones short)."""
    z, y, x = v.shape
    out = np.zeros((-(-z // fz), -(-y // f), -(-x // f)), np.float32)
    for a in range(fz):
        for b in range(f):
            for c in range(f):
                part = v[a::fz, b::f, c::f]
                out[: part.shape[0], : part.shape[1], : part.shape[2]] += part
    if mean:
        out /= _counts(z, fz)[:, None, None]
        out /= _counts(y, f)[None, :, None]
        out /= _counts(x, f)[None, None, :]
    return out


def _up(m: np.ndarray, fz: int, f: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling of a block mask back to ``shape`` ``(Z, Y, X)``."""
    zs, ys, _ = m.shape
    rows = np.repeat(m, f, axis=2)[:, :, : shape[2]]  # along the contiguous axis first
    out = np.empty((zs, fz, ys, f, shape[2]), m.dtype)
    out[...] = rows[:, None, :, None, :]
    return out.reshape(zs * fz, ys * f, shape[2])[: shape[0], : shape[1]]


def _shapes(
    hu: np.ndarray, vox_ml: float, inplane_mm: float, ndi: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Body and lung masks of a block-averaged volume ``(Z, Y, X)`` (steps 1 and 2)."""
    valid = hu > PADDING_HU
    dense = valid & (hu > BODY_HU)
    disk = _disk(max(1, round(3.0 / max(inplane_mm, 1e-3))))
    opened = _morph(_morph(dense, disk, erode=True), disk, erode=False)
    comp, n = ndi.label(opened)
    if n == 0:
        return np.zeros(hu.shape, bool), np.zeros(hu.shape, bool)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    body = (sizes >= 0.1 * sizes.max())[comp]
    # the opening rounded the surface off: take back the dense voxels touching the kept part
    body |= _morph(body, disk, erode=False) & dense
    body = _fill_holes_per_slice(body, ndi) & valid
    big = min(0.03 * float(body.sum()), 200.0 / vox_ml)
    # a field of view that cuts through the chest leaves lung open to the image edge: outside
    # regions whose median is lung parenchyma, not air (-1000 HU), are lung and inside the body
    comp, n = ndi.label(valid & ~body & (hu < AIR_HU))
    if n:
        sizes = np.bincount(comp.ravel())
        edge = np.unique(
            np.concatenate(
                [
                    comp[:, 0].ravel(),
                    comp[:, -1].ravel(),
                    comp[:, :, 0].ravel(),
                    comp[:, :, -1].ravel(),
                ]
            )
        )
        near = _morph(body, CROSS, erode=False)
        touching = np.unique(comp[near])
        for c in np.intersect1d(edge, touching):
            if c and sizes[c] >= big:
                region = comp == c
                if float(np.median(hu[region])) > LUNG_MEDIAN_HU:
                    body |= region
    comp, n = ndi.label(body & (hu < AIR_HU))
    lung = np.zeros(hu.shape, bool)
    if n:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        keep = sizes >= big
        if keep.any():
            lung = _fill_holes_per_slice(keep[comp], ndi) & body
    return body, lung


def _refine(
    shape_s: np.ndarray, fz: int, f: int, full: tuple[int, ...], test: np.ndarray, ndi: Any
) -> np.ndarray:
    """A block mask at full resolution: its inner blocks whole, its outer block layer where
    ``test`` holds (the outline follows the voxels, not the blocks)."""
    if fz == f == 1:
        return shape_s.copy()
    core = _morph(shape_s, CROSS, erode=True, border=True)
    shell = _morph(shape_s, CROSS, erode=False) & ~core
    return _up(core, fz, f, full) | (_up(shell, fz, f, full) & test)


def ct_tissue_labels(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Label map (``uint8``, same shape) of a CT volume ``[X, Y, Z]`` in Hounsfield units."""
    ndi = need("scipy.ndimage", "the ct-tissue model")
    v = np.asarray(hu, dtype=np.float32).transpose(2, 1, 0)  # (Z, Y, X): slices contiguous
    full = v.shape
    f, fz = _factors(spacing, hu.shape)
    vox_ml = float(np.prod(spacing)) / 1000.0
    inplane = min(float(spacing[0]), float(spacing[1]))
    small = _pool(v, fz, f) if f * fz > 1 else v
    body_s, lung_s = _shapes(small, vox_ml * f * f * fz, inplane * f, ndi)
    del small
    if not body_s.any():
        return np.zeros(hu.shape, np.uint8)
    airish = v < AIR_HU
    lung = _refine(lung_s, fz, f, full, airish, ndi)
    body = _refine(body_s, fz, f, full, (v > BODY_HU) | lung, ndi)
    lung &= body
    labels = np.zeros(full, np.uint8)
    np.copyto(labels, SOFT, where=body)
    np.copyto(labels, FAT, where=body & (v <= FAT_MAX_HU))
    bone = body & (v >= BONE_HU) & ~lung
    if bone.any():
        # specks under 10 mm^3: components of the blocks holding bone, sized in voxels
        counts = _pool(bone, fz, f, mean=False) if f * fz > 1 else bone.astype(np.float32)
        comp, _ = ndi.label(counts > 0, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(comp.ravel(), weights=counts.ravel())
        min_vox = max(1, round(0.01 / vox_ml))
        keep = sizes >= min_vox
        keep[0] = False
        kept = keep[comp]
        bone &= _up(kept, fz, f, full) if f * fz > 1 else kept
    np.copyto(labels, BONE, where=bone)
    airish &= body
    np.copyto(labels, AIR, where=airish)
    np.copyto(labels, LUNG, where=lung)
    return labels.transpose(2, 1, 0)  # [X, Y, Z], slices contiguous like the volume


class CTTissue:
    """The ``ct-tissue`` model (see the module docstring)."""

    name = "ct-tissue"
    version = "1"
    modalities: tuple[str, ...] = ("CT",)
    min_slices = 1
    description = "body, lung, bone, fat, soft tissue, air from Hounsfield thresholds (no weights)"
    segments = (
        Segment(
            LUNG,
            "Lung",
            ANATOMICAL_STRUCTURE,
            Code("39607008", "SCT", "Lung"),
            None,
            (128, 174, 255),
        ),
        Segment(BONE, "Bone", TISSUE, Code("272673000", "SCT", "Bone"), None, (241, 214, 145)),
        Segment(FAT, "Fat", TISSUE, Code("55603005", "SCT", "Fat"), None, (255, 230, 0)),
        Segment(
            SOFT, "Soft tissue", TISSUE, Code("87784001", "SCT", "Soft tissue"), None, (220, 80, 80)
        ),
        Segment(AIR, "Air", SUBSTANCE, Code("15158005", "SCT", "Air"), None, (60, 200, 200)),
        Segment(
            6,
            "Body",
            ANATOMICAL_STRUCTURE,
            Code("38266002", "SCT", "Entire body"),
            (1, 2, 3, 4, 5),
            (180, 180, 180),
        ),
    )

    def __call__(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """Label map of a CT volume in Hounsfield units."""
        return ct_tissue_labels(np.asarray(volume, dtype=np.float32), spacing)
