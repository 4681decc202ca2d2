"""A tiny MONAI bundle made by the tests: a UNet trained for a few steps on generated volumes.

It learns "voxels above 300 HU" (a bone-like label) and is saved in the standard bundle
layout (configs/inference.json, configs/metadata.json, models/model.pt), so it runs through
the same code path as a downloaded bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

INFERENCE = {
    "imports": ["$import torch"],
    "bundle_root": ".",
    "device": "$torch.device('cpu')",
    "network_def": {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [8, 16],
        "strides": [2],
        "num_res_units": 0,
        "norm": "batch",
    },
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {
                "_target_": "Spacingd",
                "keys": "image",
                "pixdim": [1.0, 1.0, 2.5],
                "mode": "bilinear",
            },
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "image",
                "a_min": -1000,
                "a_max": 1500,
                "b_min": 0.0,
                "b_max": 1.0,
                "clip": True,
            },
            {"_target_": "EnsureTyped", "keys": "image"},
        ],
    },
    "inferer": {
        "_target_": "SlidingWindowInferer",
        "roi_size": [32, 32, 8],
        "sw_batch_size": 2,
        "overlap": 0.25,
    },
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "image",
                "nearest_interp": False,
                "to_tensor": True,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'"},
        ],
    },
}

METADATA = {
    "name": "tiny_bone_ct",
    "version": "0.1.0",
    "task": "voxels above 300 HU, learned from generated volumes",
    "network_data_format": {
        "inputs": {"image": {"type": "image", "modality": "CT", "num_channels": 1}},
        "outputs": {
            "pred": {
                "type": "image",
                "num_channels": 2,
                "channel_def": {"0": "background", "1": "bone"},
            }
        },
    },
}


def make_bundle(dest: Path, steps: int = 60, seed: int = 0) -> Path:
    """Train the tiny UNet on generated smooth HU fields (label: above 300 HU); save the bundle."""
    import torch
    from monai.networks.nets import UNet
    from scipy.ndimage import gaussian_filter

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend (CI has 2 cores)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net_args = {k: v for k, v in INFERENCE["network_def"].items() if k != "_target_"}  # type: ignore[union-attr]
    net = UNet(**net_args)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(steps):
        hu = gaussian_filter(rng.normal(0, 1, (4, 32, 32, 8)), sigma=(0, 3, 3, 1))
        hu = hu / hu.std() * 600 + rng.uniform(-300, 300)
        x = torch.from_numpy(np.clip((hu + 1000) / 2500, 0, 1)).float()[:, None]
        y = torch.from_numpy(hu > 300).long()
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    (dest / "configs").mkdir(parents=True, exist_ok=True)
    (dest / "models").mkdir(exist_ok=True)
    (dest / "configs" / "inference.json").write_text(json.dumps(INFERENCE, indent=2))
    (dest / "configs" / "metadata.json").write_text(json.dumps(METADATA, indent=2))
    torch.save(net.state_dict(), dest / "models" / "model.pt")
    return dest
