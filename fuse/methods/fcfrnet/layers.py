"""FCFRNet's building blocks (spec fcfrnet.md §3): conv and deconv units, the ResNet-34 body,
channel-shuffle extraction and energy-based fusion.

Each unit is an ``nn.Sequential`` whose indices are the Paddle port's (conv at 0, BatchNorm at 1),
so that the module names are the released checkpoint's keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

LEAKY_SLOPE = 0.2  # spec §3: every cbr / ctbr unit
RESNET34_BLOCKS = (3, 4, 6, 3)  # spec §3: BasicBlocks of layer1..layer4
RESNET34_WIDTHS = (64, 128, 256, 512)
INIT_STD = 1e-3  # spec §4: conv / deconv weights N(0, 1e-3)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> nn.Sequential:
    """spec §3 ``cbr``: Conv2d without bias, BatchNorm, LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(LEAKY_SLOPE))


def convt_bn_relu(in_channels: int, out_channels: int, stride: int = 2) -> nn.Sequential:
    """spec §3 ``ctbr``: 3 x 3 ConvTranspose2d without bias (padding 1; output padding 1 when it
    doubles the size), BatchNorm, LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride, padding=1, output_padding=stride - 1, bias=False),
        nn.BatchNorm2d(out_channels), nn.LeakyReLU(LEAKY_SLOPE))


def depth_head(in_channels: int) -> nn.Sequential:
    """spec §2, §3 ``convtf``: Conv 1 x 1 to one channel, with bias, no BN, no activation; a
    one-element Sequential so that its keys are Paddle's ``convtf.0.*``."""
    return nn.Sequential(nn.Conv2d(in_channels, 1, kernel_size=1))


def resnet_stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """One ``layerN`` of a torchvision ResNet: BasicBlocks, the first with a 1 x 1 projection when
    the stride or the width changes (spec §3: torchvision-style ResNet-34)."""
    downsample = None
    if stride != 1 or in_channels != width:
        downsample = nn.Sequential(conv1x1(in_channels, width, stride), nn.BatchNorm2d(width))
    layers = [BasicBlock(in_channels, width, stride, downsample)]
    layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet34_body() -> list[nn.Sequential]:
    """``layer1``..``layer4`` of ResNet-34 without stem or max-pool (spec §2, §3): strides 1, 2, 2, 2."""
    stages, in_channels = [], RESNET34_WIDTHS[0]
    for index, (width, blocks) in enumerate(zip(RESNET34_WIDTHS, RESNET34_BLOCKS)):
        stages.append(resnet_stage(in_channels, width, blocks, stride=1 if index == 0 else 2))
        in_channels = width
    return stages


def initialize(module: nn.Module) -> None:
    """spec §4: conv / deconv weights N(0, 1e-3) with zero bias; BatchNorm gamma 1, beta 0 (the
    Torch original's values, not the Paddle port's gamma 0)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def channel_shuffle(colour: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """spec §3.1: interleave the channels of the two branches ``[A0, B0, A1, B1, ...]``; branch 1
    continues with the first half, branch 2 with the second."""
    batch, channels, height, width = colour.shape
    mixed = torch.stack((colour, depth), dim=2).reshape(batch, 2 * channels, height, width)
    return mixed[:, :channels], mixed[:, channels:]


def window_energy(features: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """spec §3.2: per channel, the sum of squares over a ``kernel_size``-square window, zero padded
    (a fixed all-ones kernel, as in the port: one convolution over every channel alike)."""
    batch, channels, height, width = features.shape
    ones = features.new_ones(1, 1, kernel_size, kernel_size)
    squares = (features * features).reshape(batch * channels, 1, height, width)
    return F.conv2d(squares, ones, padding=kernel_size // 2).reshape(batch, channels, height, width)


def energy_fusion(colour: torch.Tensor, depth: torch.Tensor, kernel_size: int = 5, gain: float = 2.0) -> torch.Tensor:
    """spec §3.2: per element, the branch with the higher window energy (ties go to branch 1),
    times ``gain`` (2 in the port)."""
    keep_colour = window_energy(colour, kernel_size) >= window_energy(depth, kernel_size)
    return gain * torch.where(keep_colour, colour, depth)
