"""Low-rank adaptation (LoRA) of linear layers, in the tensor layout of loralib (spec §9).

A plain layer holds ``lora_A`` (r x in) and ``lora_B`` (out x r); a grouped layer (the fused
``qkv`` projection, loralib's ``MergedLinear`` with q, k and v enabled) holds ``lora_A``
(g*r x in) and ``lora_B`` (out x r) where output rows ``[i*out/g, (i+1)*out/g)`` are adapted by
``lora_B`` rows of that slice times ``lora_A`` rows ``[i*r, (i+1)*r)``. The update is
``delta = scaling * B.A`` with ``scaling = alpha / r``.

Merging caches ``weight + delta`` in a separate tensor instead of writing into ``weight``, so
the stored ``weight`` is always the un-adapted one and unmerging is exact. In eval mode, when
no gradient can reach the layer's parameters, the forward merges by itself (as loralib does
on ``eval()``): the merged weight is cached until ``weight``, ``lora_A`` or ``lora_B`` change.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "mlp.w12", "mlp.w3")


class LoRALinear(nn.Linear):
    """``nn.Linear`` plus a trainable low-rank update; keeps ``weight``/``bias`` key names."""

    def __init__(self, in_features: int, out_features: int, rank: int = 8, alpha: float = 1.0,
                 groups: int = 1, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        if out_features % groups:
            raise ValueError(f"out_features {out_features} not divisible by LoRA groups {groups}")
        self.rank, self.alpha, self.groups = rank, alpha, groups
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(groups * rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank, device=device, dtype=dtype))
        self.merged_weight: torch.Tensor | None = None
        self._eval_cache: tuple[tuple, torch.Tensor] | None = None
        self.reset_lora()

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, alpha: float, groups: int = 1) -> "LoRALinear":
        """Wrap an existing layer, sharing its weight and bias tensors."""
        layer = cls(linear.in_features, linear.out_features, rank, alpha, groups, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer

    def reset_lora(self) -> None:
        """loralib's initialization: A Kaiming-uniform, B zero, so the update starts at zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)
        self.merged_weight = None

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``scaling * B.A`` (block-diagonal over groups), shape out x in."""
        rows = self.out_features // self.groups
        blocks = [self.lora_B[g * rows:(g + 1) * rows] @ self.lora_A[g * self.rank:(g + 1) * self.rank]
                  for g in range(self.groups)]
        return torch.cat(blocks, dim=0) * self.scaling

    @property
    def merged(self) -> bool:
        return self.merged_weight is not None

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into one weight for inference or a frozen encoder (fewer FLOPs)."""
        self.merged_weight = self.weight + self.delta_weight()

    def unmerge(self) -> None:
        self.merged_weight = None

    def _eval_weight(self) -> torch.Tensor | None:
        """Merged weight for an eval-mode forward that no gradient can pass through, else None.

        Cached per version of the three tensors, so an update of any of them (an optimizer
        step, ``load_state_dict``) is seen. Computed outside inference mode so that the cached
        tensor may also serve later calls whose input requires grad.
        """
        params = (self.weight, self.lora_A, self.lora_B)
        if self.training or (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
            return None
        if any(p.is_inference() for p in params):  # no version counter to key the cache on
            return None
        key = tuple((id(p), p._version) for p in params)
        if self._eval_cache is None or self._eval_cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._eval_cache = (key, self.weight + self.delta_weight())
        return self._eval_cache[1]

    def _apply(self, fn, recurse=True):
        # A device or dtype move invalidates the cached merged weight; recompute it after the move.
        was_merged = self.merged
        self.merged_weight = None
        self._eval_cache = None
        result = super()._apply(fn, recurse)
        if was_merged:
            self.merge()
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged_weight is not None:
            if torch.is_grad_enabled() and (self.lora_A.requires_grad or self.lora_B.requires_grad):
                raise RuntimeError("a merged LoRA layer cannot train its adapters; call unmerge() first")
            return F.linear(x, self.merged_weight, self.bias)
        merged = self._eval_weight()
        if merged is not None:
            return F.linear(x, merged, self.bias)
        out = F.linear(x, self.weight, self.bias)
        low = F.linear(x, self.lora_A)  # (..., groups * rank)
        if self.groups == 1:
            return out + F.linear(low, self.lora_B) * self.scaling
        rows = self.out_features // self.groups
        parts = [F.linear(low[..., g * self.rank:(g + 1) * self.rank], self.lora_B[g * rows:(g + 1) * rows])
                 for g in range(self.groups)]
        return out + torch.cat(parts, dim=-1) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}, groups={self.groups}"


def add_lora(module: nn.Module, rank: int = 8, alpha: float = 1.0,
             targets: Iterable[str] = DEFAULT_TARGETS) -> list[str]:
    """Replace every ``nn.Linear`` whose qualified name ends with a target by a ``LoRALinear``.

    ``attn.qkv`` gets three groups (q, k, v adapted separately, as loralib's ``MergedLinear``).
    Returns the names of the wrapped layers.
    """
    targets = tuple(targets)
    wrapped = []
    for name, child in list(module.named_modules()):
        if not isinstance(child, nn.Linear) or isinstance(child, LoRALinear):
            continue
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        groups = 3 if name.endswith("attn.qkv") else 1
        setattr(parent, attr, LoRALinear.from_linear(child, rank, alpha, groups))
        wrapped.append(name)
    return wrapped


def lora_layers(module: nn.Module) -> list[LoRALinear]:
    return [m for m in module.modules() if isinstance(m, LoRALinear)]


def merge_lora(module: nn.Module) -> None:
    """Merge every LoRA layer of ``module`` (see ``LoRALinear.merge``)."""
    for layer in lora_layers(module):
        layer.merge()


def unmerge_lora(module: nn.Module) -> None:
    for layer in lora_layers(module):
        layer.unmerge()
