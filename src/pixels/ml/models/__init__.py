"""Segmentation models: a small registry, each model saying what it needs.

- ``ct-tissue`` (:mod:`pixels.ml.models.ct_tissue`): weight-free, any CT.
- ``bundle:PATH``: a MONAI bundle from a local folder (:mod:`pixels.ml.models.bundle`).
- your own: any object following :class:`Model`, added with :func:`register`.

>>> from pixels.ml.models import get_model
>>> get_model("ct-tissue").name
'ct-tissue'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pixels.errors import ModelError
from pixels.ml import deps
from pixels.ml.models.base import Code, Model, Segment, check_input

__all__ = [
    "Code",
    "Model",
    "ModelInfo",
    "Segment",
    "available_models",
    "check_input",
    "get_model",
    "register",
]

BUNDLE_PREFIX = "bundle:"


def _ct_tissue() -> Model:
    from pixels.ml.models.ct_tissue import CTTissue

    return CTTissue()


#: name -> (factory, modules it needs, one-line description)
_REGISTRY: dict[str, tuple[Callable[[], Model], tuple[str, ...], str]] = {
    "ct-tissue": (
        _ct_tissue,
        ("scipy", "highdicom"),
        "CT: body, lung, bone, fat, soft tissue, air from Hounsfield thresholds (no weights)",
    ),
}


def register(
    model: Model | Callable[[], Model],
    name: str | None = None,
    *,
    needs: tuple[str, ...] = (),
    description: str = "",
) -> None:
    """Add a model (or a factory of one) to the registry under ``name`` (default ``model.name``).

    A registered name may not start with ``bundle:``; registering a name again replaces it.
    """
    if isinstance(model, Model):
        instance = model
        key = name or model.name
        factory: Callable[[], Model] = lambda: instance  # noqa: E731
    else:
        if name is None:
            raise ValueError("register(factory) needs a name")
        key, factory = name, model
    if key.startswith(BUNDLE_PREFIX) or not key:
        raise ValueError(f"invalid model name {key!r}")
    _REGISTRY[key] = (factory, needs, description)


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (tests restore the registry with it)."""
    _REGISTRY.pop(name, None)


def get_model(spec: str) -> Model:
    """The model named ``spec``: a registered name or ``bundle:PATH``.

    Raises
    ------
    ModelError
        Unknown name (the message lists the known ones), a missing dependency
        (what to install), or a bundle that cannot be loaded (why).
    """
    if spec.startswith(BUNDLE_PREFIX):
        from pixels.ml.models.bundle import BundleModel

        return BundleModel(spec[len(BUNDLE_PREFIX) :])
    entry = _REGISTRY.get(spec)
    if entry is None:
        known = ", ".join(sorted(_REGISTRY)) + ", bundle:PATH"
        raise ModelError(f"unknown model {spec!r}; known: {known}")
    factory, needs, _ = entry
    for module in needs:
        deps.need(module, f"model {spec}")
    return factory()


@dataclass(frozen=True)
class ModelInfo:
    """What ``pixels models`` prints: name, whether it can run here, why (not), what it does."""

    name: str
    available: bool
    reason: str
    description: str


def available_models(*, bundles: bool = True) -> list[ModelInfo]:
    """Every registered model and ``bundle:PATH``, with whether it can run here and why not.

    ``bundles=False`` leaves ``bundle:PATH`` out, and with it the import of torch and
    MONAI that checks it (about 6-10 s of CPU: the MONAI Label server's ``info/``).
    """
    out = []
    for name, (_, needs, description) in sorted(_REGISTRY.items()):
        missing = [f"{m}: {deps.status(m)[1]}" for m in needs if not deps.status(m)[0]]
        out.append(ModelInfo(name, not missing, "; ".join(missing) or "ready", description))
    if not bundles:
        return out
    missing = [f"{m}: {deps.status(m)[1]}" for m in ("torch", "monai") if not deps.status(m)[0]]
    out.append(
        ModelInfo(
            "bundle:PATH",
            not missing,
            "; ".join(missing) or "ready (give the folder of a MONAI bundle)",
            "a MONAI bundle from a local folder (configs/inference.json, models/model.pt or .ts)",
        )
    )
    return out
