"""Registry of encoder and DPT-head sizes (spec §1).

Encoder size and head size are separate settings: the FUSE release notes describe the
Small/Base/Large variants as differing only in the depth head, while the upstream code ties
the head to the encoder. ``HEAD_SIZES`` holds the DPT widths DA-V2 pairs with each encoder.
"""
from __future__ import annotations

from dataclasses import dataclass

PATCH_SIZE = 14
PRETRAIN_GRID = 37  # DA-V2 trains at 518 px: 37x37 patch positions in ``pos_embed``


@dataclass(frozen=True)
class EncoderSize:
    """A DINOv2 ViT as used by Depth Anything V2."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    taps: tuple[int, ...]
    ffn: str = "mlp"  # "mlp" (GELU MLP x4) or "swiglu" (DINOv2's fused SwiGLU, vitg)
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class HeadSize:
    """Widths of a DPT head: ``features`` inside the refinenets, ``out_channels`` per tap."""

    name: str
    features: int
    out_channels: tuple[int, int, int, int]


ENCODER_SIZES: dict[str, EncoderSize] = {
    "vitt": EncoderSize("vitt", embed_dim=96, depth=4, num_heads=3, taps=(0, 1, 2, 3)),
    "vits": EncoderSize("vits", embed_dim=384, depth=12, num_heads=6, taps=(2, 5, 8, 11)),
    "vitb": EncoderSize("vitb", embed_dim=768, depth=12, num_heads=12, taps=(2, 5, 8, 11)),
    "vitl": EncoderSize("vitl", embed_dim=1024, depth=24, num_heads=16, taps=(4, 11, 17, 23)),
    "vitg": EncoderSize("vitg", embed_dim=1536, depth=40, num_heads=24, taps=(9, 19, 29, 39), ffn="swiglu"),
}

HEAD_SIZES: dict[str, HeadSize] = {
    "vitt": HeadSize("vitt", features=32, out_channels=(24, 48, 96, 96)),
    "vits": HeadSize("vits", features=64, out_channels=(48, 96, 192, 384)),
    "vitb": HeadSize("vitb", features=128, out_channels=(96, 192, 384, 768)),
    "vitl": HeadSize("vitl", features=256, out_channels=(256, 512, 1024, 1024)),
    "vitg": HeadSize("vitg", features=384, out_channels=(1536, 1536, 1536, 1536)),
}

SIZE_ALIASES = {"small": "vits", "base": "vitb", "large": "vitl", "giant": "vitg", "tiny": "vitt",
                "s": "vits", "b": "vitb", "l": "vitl", "g": "vitg", "t": "vitt"}


def _canonical(name: str) -> str:
    return SIZE_ALIASES.get(name.lower(), name.lower())


def encoder_size(name: str) -> EncoderSize:
    """Look up an encoder size by name (``vits`` or an alias such as ``small``)."""
    key = _canonical(name)
    if key not in ENCODER_SIZES:
        raise ValueError(f"unknown encoder size {name!r}; expected one of {sorted(ENCODER_SIZES)}")
    return ENCODER_SIZES[key]


def head_size(name: str) -> HeadSize:
    """Look up a DPT head size by name (same names as the encoders it is paired with in DA-V2)."""
    key = _canonical(name)
    if key not in HEAD_SIZES:
        raise ValueError(f"unknown head size {name!r}; expected one of {sorted(HEAD_SIZES)}")
    return HEAD_SIZES[key]


def check_input_size(height: int, width: int) -> None:
    """Raise a clear error when a spatial size is not a multiple of the patch size."""
    if height % PATCH_SIZE or width % PATCH_SIZE:
        raise ValueError(
            f"input size {height}x{width} is not a multiple of {PATCH_SIZE}; resize or crop to e.g. "
            f"{max(PATCH_SIZE, height // PATCH_SIZE * PATCH_SIZE)}x{max(PATCH_SIZE, width // PATCH_SIZE * PATCH_SIZE)}"
        )
