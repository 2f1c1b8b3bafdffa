"""Key names and shapes of the published checkpoints, written from the spec (§1, §2, §3, §9).

Independent of the model code (``fuse.layers``, ``fuse.methods``): tests fill these layouts with
random values and check that every tensor reaches the right parameter and that outputs match
``fuse/testing/reference_fuse.py``.
"""
from __future__ import annotations

import torch

SIZES = {  # embed, depth, heads, ffn, head features, head out_channels
    "vitt": (96, 4, 3, "mlp", 32, (24, 48, 96, 96)),
    "vits": (384, 12, 6, "mlp", 64, (48, 96, 192, 384)),
    "vitb": (768, 12, 12, "mlp", 128, (96, 192, 384, 768)),
    "vitl": (1024, 24, 16, "mlp", 256, (256, 512, 1024, 1024)),
    "vitg": (1536, 40, 24, "swiglu", 384, (1536,) * 4),
}
TAPS = {"vitt": (0, 1, 2, 3), "vits": (2, 5, 8, 11), "vitb": (2, 5, 8, 11), "vitl": (4, 11, 17, 23),
        "vitg": (9, 19, 29, 39)}
LORA_RANK = 8


def dinov2_layout(prefix: str, size: str, in_chans: int = 3, lora: bool = False) -> dict[str, tuple]:
    """DINOv2 as in DA-V2. ``lora``: upstream's loralib adapters, rank 8, in every block: ``attn.qkv``
    (``MergedLinear``, q/k/v enabled), ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2`` (``Linear``).

    vitg's SwiGLU ``w12``/``w3`` adapters exist upstream only without xFormers (with it the fused
    xFormers ``SwiGLU`` has none), so they are left out here.
    """
    c, depth, _, ffn, _, _ = SIZES[size]
    keys = {"cls_token": (1, 1, c), "pos_embed": (1, 1 + 37 * 37, c), "mask_token": (1, c),
            "patch_embed.proj.weight": (c, in_chans, 14, 14), "patch_embed.proj.bias": (c,),
            "norm.weight": (c,), "norm.bias": (c,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "norm1.weight": (c,), b + "norm1.bias": (c,), b + "attn.qkv.weight": (3 * c, c),
                     b + "attn.qkv.bias": (3 * c,), b + "attn.proj.weight": (c, c), b + "attn.proj.bias": (c,),
                     b + "ls1.gamma": (c,), b + "norm2.weight": (c,), b + "norm2.bias": (c,), b + "ls2.gamma": (c,)})
        if ffn == "mlp":
            keys.update({b + "mlp.fc1.weight": (4 * c, c), b + "mlp.fc1.bias": (4 * c,),
                         b + "mlp.fc2.weight": (c, 4 * c), b + "mlp.fc2.bias": (c,)})
        else:
            hidden = (int(4 * c * 2 / 3) + 7) // 8 * 8
            keys.update({b + "mlp.w12.weight": (2 * hidden, c), b + "mlp.w12.bias": (2 * hidden,),
                         b + "mlp.w3.weight": (c, hidden), b + "mlp.w3.bias": (c,)})
        if lora:
            keys.update({b + "attn.qkv.lora_A": (3 * LORA_RANK, c), b + "attn.qkv.lora_B": (3 * c, LORA_RANK),
                         b + "attn.proj.lora_A": (LORA_RANK, c), b + "attn.proj.lora_B": (c, LORA_RANK)})
            if ffn == "mlp":
                keys.update({b + "mlp.fc1.lora_A": (LORA_RANK, c), b + "mlp.fc1.lora_B": (4 * c, LORA_RANK),
                             b + "mlp.fc2.lora_A": (LORA_RANK, 4 * c), b + "mlp.fc2.lora_B": (c, LORA_RANK)})
    return {prefix + k: v for k, v in keys.items()}


def dpt_layout(prefix: str, size: str, encoder: str | None = None) -> dict[str, tuple]:
    in_ch = SIZES[encoder or size][0]
    _, _, _, _, f, oc = SIZES[size]
    keys = {}
    for i in range(4):
        keys[f"projects.{i}.weight"] = (oc[i], in_ch, 1, 1)
        keys[f"projects.{i}.bias"] = (oc[i],)
        keys[f"scratch.layer{i + 1}_rn.weight"] = (f, oc[i], 3, 3)
        r = f"scratch.refinenet{i + 1}."
        keys[r + "out_conv.weight"], keys[r + "out_conv.bias"] = (f, f, 1, 1), (f,)
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                keys[f"{r}{unit}.{conv}.weight"], keys[f"{r}{unit}.{conv}.bias"] = (f, f, 3, 3), (f,)
    keys.update({"resize_layers.0.weight": (oc[0], oc[0], 4, 4), "resize_layers.0.bias": (oc[0],),
                 "resize_layers.1.weight": (oc[1], oc[1], 2, 2), "resize_layers.1.bias": (oc[1],),
                 "resize_layers.3.weight": (oc[3], oc[3], 3, 3), "resize_layers.3.bias": (oc[3],),
                 "scratch.output_conv1.weight": (f // 2, f, 3, 3), "scratch.output_conv1.bias": (f // 2,),
                 "scratch.output_conv2.0.weight": (32, f // 2, 3, 3), "scratch.output_conv2.0.bias": (32,),
                 "scratch.output_conv2.2.weight": (1, 32, 1, 1), "scratch.output_conv2.2.bias": (1,)})
    return {prefix + k: v for k, v in keys.items()}


def fredfuse_layout(prefix: str, c: int) -> dict[str, tuple]:
    keys = {"out_proj.weight": (c, c), "out_proj.bias": (c,), "norm1.weight": (c,), "norm1.bias": (c,),
            "norm2.weight": (c,), "norm2.bias": (c,)}
    for dec in ("img_feature_decouple", "vox_feature_decouple"):
        keys[f"{dec}.gaussian_kernel"] = (1, 1, 3, 3)
        for pyr in ("g", "l"):
            for level in (0, 1):
                p = f"{dec}.fusion_convs_{pyr}.{level}."
                keys.update({p + "0.weight": (c, 2 * c // 8, 1, 1), p + "0.bias": (c,),
                             p + "3.weight": (c, c // 8, 1, 1), p + "3.bias": (c,)})
    for att in ("low_cross_att", "high_cross_att"):
        a = att + "."
        keys.update({a + "temperature": (), a + "out_proj.weight": (c, c // 2), a + "out_proj.bias": (c,)})
        for proj in ("W_q", "W_k", "W_v"):
            keys[a + proj + ".weight"], keys[a + proj + ".bias"] = (c // 2, c), (c // 2,)
        for norm in ("norm1", "norm2"):
            keys[a + norm + ".weight"], keys[a + norm + ".bias"] = (c,), (c,)
    return {prefix + k: v for k, v in keys.items()}


def depth_anything_layout(size: str, head: str | None = None, lora: bool = False, in_chans: int = 3) -> dict:
    return {**dinov2_layout("pretrained.", size, in_chans, lora), **dpt_layout("depth_head.", head or size, size)}


def fuse_layout(size: str, head: str | None = None, event_bins: int = 3) -> dict:
    c = SIZES[size][0]
    keys = {**dinov2_layout("image_encoder.", size), **dinov2_layout("prompt_encoder.", size, event_bins, lora=True),
            **dpt_layout("depth_head.", head or size, size)}
    for tap in TAPS[size]:
        keys.update(fredfuse_layout(f"prompt_fuse.{tap}.", c))
    return keys


def random_state(layout: dict[str, tuple], seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Random values with sane statistics: norms/LayerScale near 1, the Gaussian kernel exact."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("gaussian_kernel"):
            ax = torch.tensor([-1.0, 0.0, 1.0])
            k = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / 2)
            state[key] = (k / k.sum()).view(1, 1, 3, 3)
        elif key.endswith("output_conv2.2.bias"):
            state[key] = torch.ones(shape)  # keeps a ReLU ending away from all-zero outputs
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ls1.gamma", "ls2.gamma")):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = scale * torch.randn(shape, generator=g)
    return state
