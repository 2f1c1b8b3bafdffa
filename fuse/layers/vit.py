"""DINOv2 ViT encoder as used by Depth Anything V2, built from timm layers (spec §1).

Parameter names follow the DINOv2/DA-V2 checkpoints (``cls_token``, ``pos_embed``,
``mask_token``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,
mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``), so DA-V2 files load by prefix alone.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import Mlp, PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from fuse.layers.attention import Attention
from fuse.layers.sizes import PATCH_SIZE, PRETRAIN_GRID, EncoderSize, check_input_size

POS_EMBED_OFFSET = 0.1  # DA-V2's "+0.1" work-around in the bicubic position-embedding resize


class SwiGLUFFN(nn.Module):
    """DINOv2's fused SwiGLU feed-forward (vitg): ``w3(silu(a) * b)`` with ``[a, b] = w12(x)``."""

    def __init__(self, in_features: int, hidden_features: int, bias: bool = True, **_: object) -> None:
        super().__init__()
        hidden = (int(hidden_features * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(in_features, 2 * hidden, bias=bias)
        self.w3 = nn.Linear(hidden, in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class DinoVisionTransformer(nn.Module):
    """Patch embedding, class token, DA-V2-interpolated position embedding and timm blocks.

    The blocks are exposed so that FUSE can run two encoders in lockstep.
    """

    def __init__(self, size: EncoderSize, in_chans: int = 3) -> None:
        super().__init__()
        self.size = size
        dim = size.embed_dim
        self.embed_dim, self.num_heads = dim, size.num_heads
        self.patch_embed = PatchEmbed(img_size=PATCH_SIZE * PRETRAIN_GRID, patch_size=PATCH_SIZE,
                                      in_chans=in_chans, embed_dim=dim, strict_img_size=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + PRETRAIN_GRID ** 2, dim))
        # Present in every DINOv2 checkpoint; only used by DINOv2's masked pre-training, never here.
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)
        mlp_layer = SwiGLUFFN if size.ffn == "swiglu" else Mlp
        self.blocks = nn.ModuleList(
            Block(dim, size.num_heads, mlp_ratio=size.mlp_ratio, qkv_bias=True, init_values=1.0,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), mlp_layer=mlp_layer, attn_layer=Attention)
            for _ in range(size.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DINOv2's initialization (used when no checkpoint is loaded, e.g. in tests and demos)."""
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def interpolated_pos_embed(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
        """Position embedding for a ``grid_h x grid_w`` token grid, exactly as DA-V2 computes it.

        The 37x37 table is used as is for a square 37x37 grid; otherwise it is resized with
        bicubic interpolation (no antialias) by ``scale_factor=((g + 0.1) / 37)`` in float32.
        Results are cached per size while the table is not being trained.
        """
        pos = self.pos_embed
        if grid_h == grid_w == PRETRAIN_GRID:
            return pos.to(dtype)
        cacheable = not (torch.is_grad_enabled() and pos.requires_grad)
        key = (grid_h, grid_w, dtype, pos.device, pos._version)
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        pos32 = pos.float()
        table = pos32[:, 1:].reshape(1, PRETRAIN_GRID, PRETRAIN_GRID, -1).permute(0, 3, 1, 2)
        scale = ((grid_h + POS_EMBED_OFFSET) / PRETRAIN_GRID, (grid_w + POS_EMBED_OFFSET) / PRETRAIN_GRID)
        table = F.interpolate(table, scale_factor=scale, mode="bicubic", antialias=False)
        if table.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(f"position-embedding resize gave {tuple(table.shape[-2:])}, expected {(grid_h, grid_w)}")
        table = table.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        result = torch.cat((pos32[:, :1], table), dim=1).to(dtype)
        if cacheable:
            self._pos_cache = {key: result}
        return result

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> tokens (B, 1 + H/14 * W/14, embed) with cls and positions."""
        height, width = x.shape[-2:]
        check_input_size(height, width)
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens), dim=1)
        return tokens + self.interpolated_pos_embed(height // PATCH_SIZE, width // PATCH_SIZE, tokens.dtype)

    def tapped_tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tokens (with cls, not normalized) after each tapped block; later blocks are not run."""
        tokens = self.prepare_tokens(x)
        taps = set(self.size.taps)
        tapped = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in taps:
                tapped.append(tokens)
            if len(tapped) == len(taps):
                break
        return tapped

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalized patch tokens (cls dropped) after each tapped block: what the DPT head reads."""
        return [self.norm(tokens[:, 1:]) for tokens in self.tapped_tokens(x)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)
