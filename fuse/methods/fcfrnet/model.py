"""STD (sparse-to-coarse) and FCFRNet (coarse-to-fine) of FCFR-Net (AAAI 2021), spec fcfrnet.md §2-§3.

Module names are those of the Paddle port (DianaNerualNetwork/Paddle_FCFRNet ``FCFRNet/model.py``,
PaddleDepth ``models/STD/std.py``), so that its released state dicts load key for key
(``paddle.py``). Both networks take the image scaled to [0, 1] and depth in metres, ``(B, C, H, W)``
with H and W multiples of 16, and return depth in metres ``(B, H, W)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import UsageError
from fuse.methods.fcfrnet.layers import (
    channel_shuffle, conv_bn_relu, convt_bn_relu, depth_head, energy_fusion, initialize, resnet34_body)
from fuse.registry import ModelKind, register_model

STD_KIND = "std"
FCFRNET_KIND = "fcfrnet"
HEAD = "metric"
INPUTS = ("image", "sparse_depth")
STRIDE = 16  # four stride-2 stages: layer2..layer4 and conv6 (spec §3)
STEM_WIDTH = 64
BOTTLENECK = 512
IMAGE_CHANNELS = {"rgbd": 3, "gd": 1, "d": 0}  # spec §1: the input modes; d uses no image
WIRINGS = ("released", "clean")  # spec §3.1


def _config_from_dict(cls: type, kind: str, options: dict):
    """``cls(**options)`` from builder keywords or ``to_dict()`` output; another kind or head, or an
    unknown option, is a ``UsageError`` listing the options."""
    options = dict(options)
    given_kind, given_head = options.pop("kind", kind), options.pop("head", HEAD)
    names = [field.name for field in fields(cls)]
    unknown = sorted(set(options) - set(names))
    if given_kind != kind or given_head != HEAD or unknown:
        raise UsageError(f"{kind} takes the options {names} (kind {kind!r}, head {HEAD!r}); got kind "
                         f"{given_kind!r}, head {given_head!r}, unknown {unknown}")
    return cls(**options)


def _check_mode(kind: str, input_mode: str) -> None:
    if input_mode not in IMAGE_CHANNELS:
        raise UsageError(f"{kind}'s input_mode is one of {sorted(IMAGE_CHANNELS)} (spec §1), got {input_mode!r}")


@dataclass(frozen=True)
class StdConfig:
    """STD's options (spec §2); the defaults are the layers the spec lists (``rgbd`` stems)."""

    input_mode: str = "rgbd"
    output_scale: float = 100.0  # spec §2: the network predicts depth / 100
    min_depth: float = 0.9  # spec §2: the evaluation floor (Velodyne's minimum range)
    kind: ClassVar[str] = STD_KIND
    head: ClassVar[str] = HEAD

    def __post_init__(self) -> None:
        _check_mode(STD_KIND, self.input_mode)
        if not 0 < self.min_depth < self.output_scale:
            raise UsageError(f"STD needs 0 < min_depth < output_scale, got {self.min_depth} and {self.output_scale}")

    def to_dict(self) -> dict:
        return {"kind": STD_KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, options: dict) -> "StdConfig":
        return _config_from_dict(cls, STD_KIND, options)


@dataclass(frozen=True)
class FcfrNetConfig:
    """FCFRNet's options (spec §3, §7); the defaults are those of the released weights."""

    input_mode: str = "rgbd"
    wiring: str = "released"  # spec §3.1: "clean" feeds branch 2 its own shuffled half
    energy_kernel: int = 5  # spec §3.2: the port's window (the paper's comment says 3)
    fusion_gain: float = 2.0  # spec §3.2
    max_depth: float = 85.0  # spec §1: coarse depth clamp and output scale (KITTI)
    min_depth: float = 0.9  # spec §1: the evaluation floor
    kind: ClassVar[str] = FCFRNET_KIND
    head: ClassVar[str] = HEAD

    def __post_init__(self) -> None:
        _check_mode(FCFRNET_KIND, self.input_mode)
        if self.wiring not in WIRINGS:
            raise UsageError(f"FCFRNet's wiring is one of {WIRINGS} (spec §3.1), got {self.wiring!r}")
        if self.energy_kernel < 1 or self.energy_kernel % 2 == 0:
            raise UsageError(f"FCFRNet's energy_kernel must be odd and >= 1 to keep the feature size, "
                             f"got {self.energy_kernel}")
        if not 0 < self.min_depth < self.max_depth:
            raise UsageError(f"FCFRNet needs 0 < min_depth < max_depth, got {self.min_depth} and {self.max_depth}")

    def to_dict(self) -> dict:
        return {"kind": FCFRNET_KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, options: dict) -> "FcfrNetConfig":
        return _config_from_dict(cls, FCFRNET_KIND, options)


def check_inputs(kind: str, input_mode: str, image: torch.Tensor | None, depth: torch.Tensor) -> None:
    """One ``UsageError`` per kind of bad input, naming the shapes and the fix."""
    channels = IMAGE_CHANNELS[input_mode]
    shown = f"image {None if image is None else tuple(image.shape)} and depth {tuple(depth.shape)}"
    wanted = f"{kind} ({input_mode}) takes " + (f"an image (B, {channels}, H, W) in [0, 1] and " if channels else "")
    wanted += "depth (B, 1, H, W) in metres"
    if channels and image is None:
        raise UsageError(f"{wanted}; got no image: pass one, or build the model with input_mode='d'")
    tensors = (depth,) if not channels else (image, depth)
    if any(tensor.ndim != 4 for tensor in tensors):
        raise UsageError(f"{wanted}; got {shown}: add the missing axes, e.g. depth[:, None] for (B, H, W)")
    if channels and image.shape[1] != channels:
        fitting = [mode for mode, count in IMAGE_CHANNELS.items() if count == image.shape[1]]
        other = f", or build the model with input_mode={fitting[0]!r}" if fitting else ""
        raise UsageError(f"{wanted}; got {shown}: give a {channels}-channel image{other}")
    if depth.shape[1] != 1:
        raise UsageError(f"{wanted}; got {shown}: give one depth channel")
    if channels and (image.shape[0] != depth.shape[0] or image.shape[2:] != depth.shape[2:]):
        raise UsageError(f"{wanted}; got {shown}, which differ in batch or size: give one depth map per image, "
                         "resized or cropped to the image's size")
    height, width = depth.shape[2:]
    if height % STRIDE or width % STRIDE:
        padded = (-(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE)
        raise UsageError(f"{wanted} with H and W multiples of {STRIDE}; got {shown}: pad or crop to e.g. "
                         f"{padded[0]} x {padded[1]} (KITTI: the 352 x 1216 bottom crop)")


class Std(nn.Module):
    """STD (Ma et al., ICRA 2019), the sparse-to-coarse stage (spec §2): a ResNet-34 U-Net from
    sparse depth and the image to dense depth."""

    def __init__(self, config: StdConfig | None = None) -> None:
        super().__init__()
        self.config = config or StdConfig()
        image_channels = IMAGE_CHANNELS[self.config.input_mode]
        # spec §2 (the port's 64 // len(mode) and 64 * 3 // len(mode)): rgbd 16 + 48, gd 32 + 32, d 64
        depth_width = STEM_WIDTH // len(self.config.input_mode)
        self.conv1_d = conv_bn_relu(1, depth_width, 3, padding=1)
        if image_channels:
            self.conv1_img = conv_bn_relu(image_channels, STEM_WIDTH - depth_width, 3, padding=1)
        self.conv2, self.conv3, self.conv4, self.conv5 = resnet34_body()
        self.conv6 = conv_bn_relu(BOTTLENECK, BOTTLENECK, 3, stride=2, padding=1)
        self.convt5 = convt_bn_relu(512, 256)
        self.convt4 = convt_bn_relu(256 + 512, 128)
        self.convt3 = convt_bn_relu(128 + 256, 64)
        self.convt2 = convt_bn_relu(64 + 128, 64)
        self.convt1 = convt_bn_relu(64 + 64, 64, stride=1)
        self.convtf = depth_head(64 + STEM_WIDTH)
        initialize(self)

    def forward(self, image: torch.Tensor | None, sparse_depth: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] and sparse depth in metres (0 = no point) -> depth in metres ``(B, H, W)``;
        in ``d`` mode ``image`` is not used and may be None."""
        check_inputs(STD_KIND, self.config.input_mode, image, sparse_depth)
        stem = self.conv1_d(sparse_depth)
        if IMAGE_CHANNELS[self.config.input_mode]:
            stem = torch.cat((stem, self.conv1_img(image)), 1)  # spec §2: depth first
        skips = [stem]
        for stage in (self.conv2, self.conv3, self.conv4, self.conv5):
            skips.append(stage(skips[-1]))
        y = self.convt5(self.conv6(skips[-1]))
        for decoder, skip in zip((self.convt4, self.convt3, self.convt2, self.convt1, self.convtf), reversed(skips)):
            y = decoder(torch.cat((y, skip), 1))
        return self.to_metres(y).squeeze(1)

    def to_metres(self, y: torch.Tensor) -> torch.Tensor:
        """spec §2: ``100 y`` when training; ``ReLU(100 y - 0.9) + 0.9`` at evaluation."""
        depth = self.config.output_scale * y
        if self.training:
            return depth
        return F.relu(depth - self.config.min_depth) + self.config.min_depth


class FcfrNet(nn.Module):
    """FCFRNet, the coarse-to-fine stage (spec §3): colour and depth ResNet-34 branches that swap
    half their channels after every stage, energy fusion at the bottleneck, a U-Net decoder
    that predicts a residual on the coarse depth."""

    def __init__(self, config: FcfrNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or FcfrNetConfig()
        image_channels = IMAGE_CHANNELS[self.config.input_mode]
        self.conv1_d_2 = conv_bn_relu(1, STEM_WIDTH, 3, padding=1)
        if image_channels:
            self.conv1_img = conv_bn_relu(image_channels, STEM_WIDTH, 3, padding=1)
        self.conv2, self.conv3, self.conv4, self.conv5 = resnet34_body()  # branch 1 (colour)
        self.conv2_2, self.conv3_2, self.conv4_2, self.conv5_2 = resnet34_body()  # branch 2 (depth)
        self.conv6 = conv_bn_relu(BOTTLENECK, BOTTLENECK, 3, stride=2, padding=1)
        self.conv6_2 = conv_bn_relu(BOTTLENECK, BOTTLENECK, 3, stride=2, padding=1)
        self.convt5 = convt_bn_relu(512, 256)
        self.convt4 = convt_bn_relu(256 + 2 * 512, 128)
        self.convt3 = convt_bn_relu(128 + 2 * 256, 64)
        self.convt2 = convt_bn_relu(64 + 2 * 128, 64)
        self.convt1 = convt_bn_relu(64 + 2 * 64, 64, stride=1)
        self.convtf = depth_head(64 + 2 * STEM_WIDTH)
        initialize(self)

    def forward(self, image: torch.Tensor | None, coarse_depth: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] and coarse dense depth in metres -> depth in metres ``(B, H, W)``; in
        ``d`` mode ``image`` is not used and may be None (both branches start from the depth stem:
        the port's own ``d`` mode has no branch-1 input)."""
        check_inputs(FCFRNET_KIND, self.config.input_mode, image, coarse_depth)
        coarse = coarse_depth.clamp(max=self.config.max_depth) / self.config.max_depth  # spec §1
        depth_stem = self.conv1_d_2(coarse)
        colour_stem = self.conv1_img(image) if IMAGE_CHANNELS[self.config.input_mode] else depth_stem
        stages = ((self.conv2, self.conv2_2), (self.conv3, self.conv3_2), (self.conv4, self.conv4_2),
                  (self.conv5, self.conv5_2), (self.conv6, self.conv6_2))
        colour, depth = colour_stem, depth_stem
        skips = [(colour_stem, depth_stem)]  # spec §3: the last skip is the two stems
        for index, (colour_stage, depth_stage) in enumerate(stages):
            # spec §3.1 wiring quirk: from conv4_2 on, branch 2 reads branch 1's shuffled half
            depth_input = colour if self.config.wiring == "released" and index >= 2 else depth
            colour, depth = channel_shuffle(colour_stage(colour), depth_stage(depth_input))
            skips.append((colour, depth))  # spec §3: skips are the post-shuffle tensors
        skips.pop()  # the conv6 pair is fused (spec §3.2), not skipped
        y = self.convt5(energy_fusion(colour, depth, self.config.energy_kernel, self.config.fusion_gain))
        decoders = (self.convt4, self.convt3, self.convt2, self.convt1, self.convtf)
        for decoder, (colour_skip, depth_skip) in zip(decoders, reversed(skips)):
            y = decoder(torch.cat((y, colour_skip, depth_skip), 1))
        return self.to_metres(y, coarse).squeeze(1)

    def to_metres(self, y: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """spec §1: ``85 (y + d / 85)`` when training; at evaluation ``ReLU(. - 0.9) + 0.9``, clamped
        to [0.9, 85]."""
        depth = self.config.max_depth * (y + coarse)
        if self.training:
            return depth
        return (F.relu(depth - self.config.min_depth) + self.config.min_depth).clamp(max=self.config.max_depth)


def build_std(**options) -> Std:
    """``fuse.build_model("std", input_mode=...)``: a randomly initialized STD (spec §4 initialization)."""
    return Std(StdConfig.from_dict(options))


def build_fcfrnet(**options) -> FcfrNet:
    """``fuse.build_model("fcfrnet", input_mode=..., wiring=...)``: a randomly initialized FCFRNet."""
    return FcfrNet(FcfrNetConfig.from_dict(options))


register_model(ModelKind(
    STD_KIND, build_std, INPUTS, {HEAD: "metric_depth"}, (STD_KIND,),
    "STD (Ma et al., ICRA 2019), FCFR-Net's sparse-to-coarse stage: image + sparse depth -> dense depth", HEAD))
register_model(ModelKind(
    FCFRNET_KIND, build_fcfrnet, INPUTS, {HEAD: "metric_depth"}, (FCFRNET_KIND,),
    "FCFR-Net (AAAI 2021) coarse-to-fine stage: image + coarse depth -> refined depth", HEAD))
