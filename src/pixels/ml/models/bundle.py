"""``bundle:PATH``: a MONAI bundle from a local folder, run with the bundle's own config.

The standard bundle layout::

    PATH/configs/inference.json (or .yaml)   network_def, preprocessing, inferer, postprocessing
    PATH/configs/metadata.json               name, version, network_data_format (labels)
    PATH/models/model.pt                     the weights (a state dict), or models/model.ts

The config is parsed with ``monai.bundle.ConfigParser`` (``bundle_root`` set to
``PATH``), exactly as ``monai.bundle.run`` does; then, as MONAI Label's bundle
tasks do, the parts that read and write files are left out: the volume comes
from the catalog as a ``MetaTensor`` (channel first, with its RAS affine), so
``LoadImaged`` / ``EnsureChannelFirstd`` are dropped from ``preprocessing`` and
``SaveImaged`` from ``postprocessing``. Everything else runs as configured: the
bundle's spacing/orientation/intensity transforms, its inferer (a sliding
window), its post transforms (``Invertd`` brings the prediction back to the
series' voxels, ``AsDiscreted`` takes the argmax).

Labels come from ``network_data_format.outputs.pred.channel_def`` (``{"0":
"background", "1": "spleen"}``); a label's SNOMED code is looked up by name in
pydicom's code dictionary (``spleen`` -> SCT 78961009 Spleen), else it is
described as an Anatomical Structure with its own name. Accepted modalities come
from ``network_data_format.inputs.image.modality`` when the bundle gives it.

GPU: the network runs on CUDA when ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from pixels.errors import ModelError
from pixels.ml.deps import need
from pixels.ml.models.base import ANATOMICAL_STRUCTURE, Code, Segment

__all__ = ["BundleModel", "read_labels"]

_FILE_TRANSFORMS_PRE = {"LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureChannelFirst"}
_FILE_TRANSFORMS_POST = {"SaveImaged", "SaveImage"}


def _snomed(name: str) -> Code:
    """The SCT code pydicom's dictionary gives for a label name, else Anatomical Structure."""
    from pydicom.sr.codedict import codes

    key = "".join(w[:1].upper() + w[1:] for w in re.split(r"[\s_\-]+", name.strip()) if w)
    try:
        c = getattr(codes.SCT, key)
    except AttributeError:
        return ANATOMICAL_STRUCTURE
    return Code(str(c.value), str(c.scheme_designator), str(c.meaning))


def read_labels(metadata: dict[str, Any]) -> tuple[Segment, ...]:
    """Segments from a bundle's ``metadata.json`` (``channel_def`` of the ``pred`` output)."""
    outputs = (metadata.get("network_data_format") or {}).get("outputs") or {}
    out: dict[str, Any] = outputs.get("pred") or next(iter(outputs.values()), {})
    channel_def = out.get("channel_def") or {}
    segments = []
    for key, name in sorted(channel_def.items(), key=lambda kv: int(kv[0])):
        label = int(key)
        if label == 0 or str(name).lower() == "background":
            continue
        code = _snomed(str(name))
        category = ANATOMICAL_STRUCTURE
        segments.append(Segment(label, str(name), category, code))
    return tuple(segments)


def _drop(compose: Any, names: set[str]) -> Any:
    transforms = [t for t in compose.transforms if type(t).__name__ not in names]
    compose.transforms = tuple(transforms) if isinstance(compose.transforms, tuple) else transforms
    return compose


class BundleModel:
    """A MONAI bundle as a :class:`~pixels.ml.models.Model` (see the module docstring).

    Parameters
    ----------
    path : str
        The bundle folder.

    Raises
    ------
    ModelError
        The folder is not a bundle (what is missing), its config does not parse,
        or torch / monai are not installed.
    """

    family = Code("123110", "DCM", "Artificial Intelligence")

    def __init__(self, path: str) -> None:
        need("torch", "bundle models")
        need("monai", "bundle models")
        self.path = os.path.abspath(os.path.expanduser(path))
        cfg_dir = os.path.join(self.path, "configs")
        config = next(
            (
                os.path.join(cfg_dir, f)
                for f in ("inference.json", "inference.yaml", "inference.yml")
                if os.path.isfile(os.path.join(cfg_dir, f))
            ),
            None,
        )
        if config is None:
            raise ModelError("not a MONAI bundle: no configs/inference.json or .yaml", self.path)
        meta_path = os.path.join(cfg_dir, "metadata.json")
        self.metadata: dict[str, Any] = {}
        if os.path.isfile(meta_path):
            with open(meta_path, encoding="utf-8") as f:
                self.metadata = json.load(f)
        self.weights = next(
            (
                os.path.join(self.path, "models", f)
                for f in ("model.pt", "model.ts")
                if os.path.isfile(os.path.join(self.path, "models", f))
            ),
            None,
        )
        if self.weights is None:
            raise ModelError("not a MONAI bundle: no models/model.pt or models/model.ts", self.path)
        self.config_path = config
        self.name = f"bundle:{self.metadata.get('name') or os.path.basename(self.path)}"
        self.version = str(self.metadata.get("version") or "0")
        self.segments = read_labels(self.metadata)
        if not self.segments:
            raise ModelError(
                "the bundle's metadata.json names no labels "
                "(network_data_format.outputs.pred.channel_def)",
                self.path,
            )
        image_in = ((self.metadata.get("network_data_format") or {}).get("inputs") or {}).get(
            "image"
        ) or {}
        modality = image_in.get("modality")
        self.modalities: tuple[str, ...] = (str(modality).upper(),) if modality else ()
        self.min_slices = 1
        self._parts: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"BundleModel({self.path!r})"

    def _load(self) -> dict[str, Any]:
        if self._parts is not None:
            return self._parts
        import torch
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        try:
            parser.read_config(self.config_path)
            if self.metadata:
                parser.read_meta(os.path.join(os.path.dirname(self.config_path), "metadata.json"))
            parser["bundle_root"] = self.path
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            if "device" in parser:
                parser["device"] = f"$torch.device('{device.type}')"
            if self.weights and self.weights.endswith(".ts"):
                network = torch.jit.load(self.weights, map_location=device)
            else:
                key = "network_def" if "network_def" in parser else "network"
                network = parser.get_parsed_content(key)
                state = torch.load(self.weights, map_location=device, weights_only=True)
                if (
                    isinstance(state, dict)
                    and "model" in state
                    and isinstance(state["model"], dict)
                ):
                    state = state["model"]
                network.load_state_dict(state)
                network = network.to(device)
            network.eval()
            pre = _drop(parser.get_parsed_content("preprocessing"), _FILE_TRANSFORMS_PRE)
            post = _drop(parser.get_parsed_content("postprocessing"), _FILE_TRANSFORMS_POST)
            inferer = parser.get_parsed_content("inferer")
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"cannot load the bundle: {type(e).__name__}: {e}", self.path) from e
        self._parts = {
            "network": network,
            "pre": pre,
            "post": post,
            "inferer": inferer,
            "device": device,
        }
        return self._parts

    def __call__(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """Label map of ``volume`` (``[X, Y, Z]``); ``spacing`` only when called without an affine."""
        return self.predict(volume, np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]))

    def predict(self, volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """Label map of ``volume`` whose voxel -> RAS map is ``affine``."""
        import torch
        from monai.data import MetaTensor

        parts = self._load()
        image = MetaTensor(
            torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None],
            affine=torch.as_tensor(affine, dtype=torch.float64),
            meta={"original_channel_dim": 0, "space": "RAS", "filename_or_obj": "pixels"},
        )
        data = parts["pre"]({"image": image})
        with torch.no_grad():
            x = data["image"].as_tensor()[None].to(parts["device"])
            data["pred"] = parts["inferer"](x, parts["network"])[0].cpu()
        data = parts["post"](data)
        pred = data["pred"]
        pred = pred.as_tensor() if hasattr(pred, "as_tensor") else torch.as_tensor(pred)
        if pred.ndim == 4:
            pred = pred[0] if pred.shape[0] == 1 else pred.argmax(0)
        labels = pred.round().to(torch.int64).numpy()
        if labels.shape != volume.shape:
            raise ModelError(
                f"{self.name}: the postprocessing returned shape {labels.shape} for a volume of "
                f"shape {volume.shape} (does it end with Invertd?)",
                self.path,
            )
        return labels.astype(np.uint8)
