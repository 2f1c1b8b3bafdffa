"""Scaled dot-product attention, and the ViT attention layer that uses it.

One function for every attention in the project (the encoders' self-attention and FreDFuse's
cross-attention), so that the choice of kernel lives in one place.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q kᵀ / sqrt(d)) v`` for ``(B, heads, N, d)`` queries and ``(B, heads, M, d)`` keys/values.

    torch's ``scaled_dot_product_attention`` everywhere except bfloat16 on CPU without dropout:
    there SDPA's flash kernel is no faster than in float32, while two bfloat16 batched matrix
    products (the scale folded into the first) around a softmax are about 1.6x faster at the
    token counts of this project (BENCHMARKS.md, operator table). Both compute the same formula;
    they differ by bfloat16 rounding only.
    """
    if q.dtype != torch.bfloat16 or q.device.type != "cpu" or dropout_p > 0.0:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    b, heads, n, d = q.shape
    m = k.shape[-2]
    q, k, v = q.reshape(b * heads, n, d), k.reshape(b * heads, m, d), v.reshape(b * heads, m, d)
    unused = q.new_empty(1, 1, 1).expand(b * heads, n, m)  # beta=0: only its shape matters
    scores = torch.baddbmm(unused, q, k.transpose(1, 2), beta=0.0, alpha=d ** -0.5)
    return torch.bmm(scores.softmax(dim=-1), v).view(b, heads, n, d)


class Attention(TimmAttention):
    """timm's ViT attention (same parameters: ``qkv``, ``proj``) computed with :func:`attention`.

    DINOv2 uses none of timm's optional parts (q/k norms, gates, attention masks).
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("DINOv2 attention takes no mask")
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = attention(q, k, v, self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(self.norm(out.transpose(1, 2).reshape(b, n, self.attn_dim))))
