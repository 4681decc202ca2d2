"""``ct-tissue``: a weight-free CT model (Hounsfield thresholds, connected components, morphology).

Works on any CT, with no download. Steps, on a volume in Hounsfield units:

1. **Body**: voxels above -500 HU inside the reconstruction circle (values
   below -1500 HU are the scanner's padding), opened in each slice with a
   3 mm disk (cuts the thin links to the table, blankets, cables), the large 3-D
   connected components kept (at least 10 % of the largest: the body; a table
   or a hand apart from it is dropped when smaller), then holes filled slice by
   slice (lungs, bowel gas and the airway are inside the body).
2. **Lung**: air-like voxels (below -400 HU) inside the body, in 3-D components
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


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def _per_slice(fn: object, mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for k in range(mask.shape[2]):
        out[:, :, k] = fn(mask[:, :, k])  # type: ignore[operator]
    return out


def ct_tissue_labels(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Label map (``uint8``, same shape) of a CT volume ``[X, Y, Z]`` in Hounsfield units."""
    ndi = need("scipy.ndimage", "the ct-tissue model")
    vox_ml = float(np.prod(spacing)) / 1000.0
    valid = hu > PADDING_HU
    dense = valid & (hu > BODY_HU)
    radius = max(1, round(3.0 / max(min(spacing[0], spacing[1]), 1e-3)))
    opened = ndi.binary_opening(dense, structure=_disk(radius)[:, :, None])
    comp, n = ndi.label(opened)
    if n == 0:
        return np.zeros(hu.shape, np.uint8)
    sizes = np.bincount(comp.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1
    body = np.isin(comp, keep)
    del comp, opened
    # the opening rounded the surface off: take back the dense voxels touching the kept part
    body = ndi.binary_dilation(body, structure=_disk(radius)[:, :, None]) & dense | body
    body = _per_slice(ndi.binary_fill_holes, body) & valid
    big = min(0.03 * float(body.sum()), 200.0 / vox_ml)
    # a field of view that cuts through the chest leaves lung open to the image edge: outside
    # regions whose median is lung parenchyma, not air (-1000 HU), are lung and inside the body
    comp, n = ndi.label(valid & ~body & (hu < AIR_HU))
    if n:
        sizes = np.bincount(comp.ravel())[1:]
        medians = ndi.median(hu, comp, np.arange(1, n + 1))
        cut = np.flatnonzero((sizes >= big) & (np.asarray(medians) > LUNG_MEDIAN_HU)) + 1
        edge = np.unique(
            np.concatenate(
                [comp[0].ravel(), comp[-1].ravel(), comp[:, 0].ravel(), comp[:, -1].ravel()]
            )
        )
        touching = np.unique(comp[ndi.binary_dilation(body, structure=_disk(1)[:, :, None])])
        cut = cut[np.isin(cut, edge) & np.isin(cut, touching)]
        if cut.size:
            body |= np.isin(comp, cut)
    airish = body & (hu < AIR_HU)
    comp, n = ndi.label(airish)
    lung = np.zeros(hu.shape, bool)
    if n:
        sizes = np.bincount(comp.ravel())[1:]
        lung_ids = np.flatnonzero(sizes >= big) + 1
        if lung_ids.size:
            lung = _per_slice(ndi.binary_fill_holes, np.isin(comp, lung_ids)) & body
    del comp
    labels = np.zeros(hu.shape, np.uint8)
    labels[body] = SOFT
    labels[body & (hu <= FAT_MAX_HU)] = FAT
    bone = body & (hu >= BONE_HU) & ~lung
    comp, n = ndi.label(bone)
    if n:
        sizes = np.bincount(comp.ravel())
        min_vox = max(1, round(0.01 / vox_ml))  # 10 mm^3
        bone &= sizes[comp] >= min_vox
    del comp
    labels[bone] = BONE
    labels[airish & ~lung] = AIR
    labels[lung] = LUNG
    return labels


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
