"""What a segmentation model is to Pixels: the :class:`Model` protocol and its segments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Code", "Model", "Segment", "check_input"]


@dataclass(frozen=True, slots=True)
class Code:
    """A coded concept: value, coding scheme designator, meaning (``("39607008", "SCT", "Lung")``)."""

    value: str
    scheme: str
    meaning: str


#: Segmented property categories (DICOM CID 7150) used by the built-in models.
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
TISSUE = Code("85756007", "SCT", "Tissue")
SUBSTANCE = Code("105590001", "SCT", "Substance")


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment a model produces.

    Attributes
    ----------
    label : int
        Its value in the model's label map (1..255).
    name : str
        Segment Label (0062,0005), e.g. ``"Lung"``.
    category, type : Code
        Segmented Property Category / Type Code Sequences (0062,0003)/(0062,000F).
    includes : tuple of int, optional
        A segment made of other labels (``Body`` = every tissue label): written
        in binary SEGs only, where segments may overlap.
    color : tuple of 3 int, optional
        Display colour (RGB 0..255).
    """

    label: int
    name: str
    category: Code
    type: Code
    includes: tuple[int, ...] | None = None
    color: tuple[int, int, int] | None = None

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """This segment's voxels in a label map."""
        if self.includes:
            return np.isin(labels, self.includes)
        return labels == self.label


@runtime_checkable
class Model(Protocol):
    """A segmentation model: a callable volume -> label map, with its segments.

    Attributes
    ----------
    name : str
        Registry name (``ct-tissue``), also the SEG's algorithm name.
    version : str
        Written as the algorithm version.
    segments : sequence of Segment
        The labels it produces (and union segments).
    modalities : tuple of str
        Modalities it accepts (empty: any).
    min_slices : int
        Fewest slices it works on.

    ``model(volume, spacing)`` takes a ``float32`` ``[X, Y, Z]`` volume in
    modality units (Hounsfield units for CT) and the voxel size in mm, and
    returns an integer label map of the same shape (0 = background).

    Examples
    --------
    >>> import numpy as np
    >>> from pixels.ml.models import Code, Segment, register
    >>> class Bright:
    ...     name, version, modalities, min_slices = "bright", "1", ("CT",), 1
    ...     segments = (Segment(1, "Bright", Code("91723000", "SCT", "Anatomical Structure"),
    ...                         Code("272673000", "SCT", "Bone")),)
    ...     def __call__(self, volume, spacing):
    ...         return (volume > 300).astype(np.uint8)
    >>> register(Bright())                                      # doctest: +SKIP
    """

    @property
    def name(self) -> str:
        """Registry and algorithm name."""
        ...

    @property
    def version(self) -> str:
        """Algorithm version."""
        ...

    @property
    def segments(self) -> Sequence[Segment]:
        """The labels it produces (and union segments)."""
        ...

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities it accepts (empty: any)."""
        ...

    @property
    def min_slices(self) -> int:
        """Fewest slices it works on."""
        ...

    def __call__(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """Label map of ``volume``."""
        ...


def check_input(model: Model, modality: str | None, n_slices: int) -> str | None:
    """Why ``model`` refuses a series (its modality, too few slices), or None."""
    if model.modalities and (modality or "") not in model.modalities:
        return (
            f"model {model.name} takes {'/'.join(model.modalities)} series, "
            f"this one is {modality or 'without Modality (0008,0060)'}"
        )
    if n_slices < model.min_slices:
        return f"model {model.name} needs at least {model.min_slices} slices, the series has {n_slices}"
    return None
