"""A model at one input size, with every size-dependent constant precomputed: what the exporters trace.

Tracing a model as it runs eagerly records the computations whose results only depend on the
input size, and those are what break exports: the bicubic resize of the 37x37 position table
(DA-V2's ``+0.1`` scale factor; ONNX ``Resize`` rounds sizes and weights differently), and the
depthwise Gaussian kernel FreDFuse expands to its channel count from the input's shape (a
convolution weight of traced, unknown shape). :class:`FixedSizeModel` computes each of them once,
at construction, **with the model's own code** (``DinoVisionTransformer.interpolated_pos_embed``
for the tables, so the numbers are the eager ones bit for bit), and holds them as buffers; while
its forward runs, the model reads those buffers instead of recomputing them. LoRA updates are
merged into buffers too (``weight + B.A``, as the eager eval path does), so an export holds one
weight per layer. The model itself is not changed: the overrides live on the instances only
while :meth:`FixedSizeModel.forward` runs, and are removed afterwards.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import UsageError
from fuse.layers.lora import LoRALinear
from fuse.layers.sizes import PATCH_SIZE
from fuse.layers.vit import DinoVisionTransformer
from fuse.registry import model_kind

_MISSING = object()


def check_export_size(height: int, width: int) -> None:
    """An export size must be a positive multiple of the patch size on both sides."""
    if min(height, width) <= 0 or height % PATCH_SIZE or width % PATCH_SIZE:
        near = [max(PATCH_SIZE, round(value / PATCH_SIZE) * PATCH_SIZE) for value in (height, width)]
        raise UsageError(f"export size {height}x{width} is not a multiple of {PATCH_SIZE} (the patch size) "
                         f"on both sides; e.g. --size {near[0]} {near[1]}")


def _decouplers(model: nn.Module) -> list[nn.Module]:
    """FreDFuse's Gaussian-Laplacian decouplers, found by what they hold (a ``gaussian_kernel``
    buffer, a ``blur`` method, ``fusion_convs_g`` whose width is the token width), so that this
    core package names no method."""
    return [m for m in model.modules() if hasattr(m, "gaussian_kernel") and callable(getattr(m, "blur", None))]


def _fixed_blur(kernel: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``GaussianLaplacianDecoupler.blur`` with its kernel already expanded to the channels."""
    def blur(x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x.permute(0, 3, 1, 2), kernel.to(x.dtype), padding=kernel.shape[-1] // 2,
                       groups=kernel.shape[0])
        return out.permute(0, 2, 3, 1)

    return blur


class FixedSizeModel(nn.Module):
    """``model`` for ``height x width`` inputs: ``forward(*inputs) -> (B, height, width)`` depth.

    ``inputs`` are the model kind's inputs in order (``image``, ``events``), exactly what the
    model's own forward takes (ImageNet-normalized RGB; standardized voxel grids). The batch size
    is free. Put ``model`` in eval mode first; the buffers are computed in float32.
    """

    def __init__(self, model: nn.Module, height: int, width: int) -> None:
        super().__init__()
        kind = model.config.kind
        check_export_size(height, width)
        self.model = model
        self.height, self.width = height, width
        self.input_names = tuple(model_kind(kind).inputs)
        self._encoders = [m for m in model.modules() if isinstance(m, DinoVisionTransformer)]
        self._decoupler_modules = _decouplers(model)
        self._lora = [m for m in model.modules() if isinstance(m, LoRALinear)]
        grid = (height // PATCH_SIZE, width // PATCH_SIZE)
        with torch.no_grad():
            for index, encoder in enumerate(self._encoders):
                table = encoder.interpolated_pos_embed(*grid, torch.float32)
                self.register_buffer(f"pos_embed_{index}", table.detach().clone(), persistent=False)
            for index, module in enumerate(self._decoupler_modules):
                channels = module.fusion_convs_g[0][0].out_channels
                kernel = module.gaussian_kernel.float().expand(channels, 1, -1, -1).clone()
                self.register_buffer(f"blur_kernel_{index}", kernel, persistent=False)
            for index, layer in enumerate(self._lora):
                merged = layer.merged_weight if layer.merged else layer.weight + layer.delta_weight()
                self.register_buffer(f"lora_weight_{index}", merged.detach().clone(), persistent=False)

    def _overrides(self) -> list[tuple[object, str, object]]:
        pairs: list[tuple[object, str, object]] = []
        for index, encoder in enumerate(self._encoders):
            table = getattr(self, f"pos_embed_{index}")
            pairs.append((encoder, "interpolated_pos_embed", self._positions(encoder, table)))
        for index, module in enumerate(self._decoupler_modules):
            pairs.append((module, "blur", _fixed_blur(getattr(self, f"blur_kernel_{index}"))))
        for index, layer in enumerate(self._lora):
            pairs.append((layer, "merged_weight", getattr(self, f"lora_weight_{index}")))
        return pairs

    def _positions(self, encoder: DinoVisionTransformer, table: torch.Tensor) -> Callable:
        grid = (self.height // PATCH_SIZE, self.width // PATCH_SIZE)

        def interpolated_pos_embed(grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
            if (grid_h, grid_w) != grid:
                raise UsageError(f"this model was fixed to {self.height}x{self.width} inputs, got "
                                 f"{grid_h * PATCH_SIZE}x{grid_w * PATCH_SIZE}")
            return table.to(dtype)

        return interpolated_pos_embed

    @contextmanager
    def _fixed(self) -> Iterator[None]:
        """Install the precomputed constants on the model's modules (instance attributes) for one call."""
        saved = []
        try:
            for obj, name, value in self._overrides():
                saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
                object.__setattr__(obj, name, value)
            yield
        finally:
            for obj, name, old in reversed(saved):
                if old is _MISSING:
                    del obj.__dict__[name]
                else:
                    object.__setattr__(obj, name, old)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise UsageError(f"a {self.model.config.kind} model takes {self.input_names}, got {len(inputs)} inputs")
        for name, tensor in zip(self.input_names, inputs):
            if tuple(tensor.shape[-2:]) != (self.height, self.width):
                raise UsageError(f"this model was fixed to {self.height}x{self.width} inputs, got {name} of "
                                 f"{tuple(tensor.shape[-2:])}")
        with self._fixed():
            return self.model(*inputs)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread: FUSE then runs its encoders in turn on the calling thread
    (``fuse.layers.parallel``), where a tracer sees every operator."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
