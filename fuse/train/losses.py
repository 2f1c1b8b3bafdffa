"""Training losses of the three stages (spec §4)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def feature_cosine_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                        alpha: float = 0.85, beta: float = 0.2) -> torch.Tensor:
    """FeatureCos: per tapped layer, ``mean(1 - cos)`` over tokens with ``beta <= cos <= alpha``.

    Tokens already aligned beyond ``alpha`` or hopelessly apart below ``beta`` are left out;
    the loss averages over the layers that kept any token (zero when none did).
    """
    losses = []
    for s, t in zip(student, teacher):
        cos = F.cosine_similarity(s, t.detach(), dim=-1)
        keep = (cos >= beta) & (cos <= alpha)
        if keep.any():
            losses.append((1 - cos[keep]).mean())
    if not losses:
        return student[0].sum() * 0.0
    return torch.stack(losses).mean()


def l1_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between student and (detached) teacher outputs."""
    return (student - teacher.detach()).abs().mean()


def silog_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    """Scale-invariant log loss on valid pixels: ``sqrt(mean(d^2) - lambd * mean(d)^2)``, d = log t - log p.

    Targets that are NaN, infinite or not positive never count, whatever ``valid`` says.
    """
    valid = valid & torch.isfinite(target) & (target > 0)
    if not valid.any():
        return pred.sum() * 0.0
    d = torch.log(target[valid]) - torch.log(pred[valid])
    return torch.sqrt((d ** 2).mean() - lambd * d.mean() ** 2)


def disparity_l1_loss(pred: torch.Tensor, depth: torch.Tensor, min_depth: float) -> torch.Tensor:
    """L1 to the inverse depth ``min_depth / depth``; pixels without depth (sky, beyond range) count as 0."""
    target = torch.where(torch.isfinite(depth) & (depth > 0), min_depth / depth.clamp(min=min_depth), 0.0)
    return (pred - target).abs().mean()
