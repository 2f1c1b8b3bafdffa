"""A plain functional re-statement of the spec (§1-§3) over a published-layout state dict.

No timm, no modules, no SDPA: explicit softmax attention, explicit pyramids. The model code
must match it to float32 rounding for the same weights and inputs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fuse.testing.published_layout import SIZES, TAPS


def _ln(x, sd, p, eps):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def _lin(x, sd, p):
    return x @ sd[p + ".weight"].T + sd[p + ".bias"]


def pos_embed(sd, p, gh, gw):
    pos = sd[p + "pos_embed"].float()
    if gh == gw == 37:
        return pos
    c = pos.shape[-1]
    grid = pos[:, 1:].reshape(1, 37, 37, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / 37, (gw + 0.1) / 37), mode="bicubic", antialias=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, c)], 1)


def vit_tokens(sd, p, x, size):
    """Returns the list of tokens (with cls) after every block, plus the patch grid."""
    c, depth, heads, ffn, _, _ = SIZES[size]
    gh, gw = x.shape[-2] // 14, x.shape[-1] // 14
    t = F.conv2d(x, sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"], stride=14)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([sd[p + "cls_token"].expand(t.shape[0], -1, -1), t], 1) + pos_embed(sd, p, gh, gw)
    out = []
    for i in range(depth):
        b = f"{p}blocks.{i}."
        h = _ln(t, sd, b + "norm1", 1e-6)
        qkv = _lin(h, sd, b + "attn.qkv").reshape(t.shape[0], t.shape[1], 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        h = (att @ v).transpose(1, 2).reshape(t.shape)
        t = t + sd[b + "ls1.gamma"] * _lin(h, sd, b + "attn.proj")
        h = _ln(t, sd, b + "norm2", 1e-6)
        if ffn == "mlp":
            h = _lin(F.gelu(_lin(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
        else:
            a, g = _lin(h, sd, b + "mlp.w12").chunk(2, -1)
            h = _lin(F.silu(a) * g, sd, b + "mlp.w3")
        t = t + sd[b + "ls2.gamma"] * h
        out.append(t)
    return out, gh, gw


def _rcu(x, sd, p):
    h = F.conv2d(F.relu(x), sd[p + ".conv1.weight"], sd[p + ".conv1.bias"], padding=1)
    return x + F.conv2d(F.relu(h), sd[p + ".conv2.weight"], sd[p + ".conv2.bias"], padding=1)


def _refine(sd, p, x, skip=None, size=None):
    if skip is not None:
        x = x + _rcu(skip, sd, p + ".resConfUnit1")
    x = _rcu(x, sd, p + ".resConfUnit2")
    x = F.interpolate(x, size=size, scale_factor=None if size else 2, mode="bilinear", align_corners=True)
    return F.conv2d(x, sd[p + ".out_conv.weight"], sd[p + ".out_conv.bias"])


def dpt(sd, feats, gh, gw, kind="relative", max_depth=1.0, p="depth_head."):
    maps = []
    for i, f in enumerate(feats):
        x = f.transpose(1, 2).reshape(f.shape[0], f.shape[2], gh, gw)
        x = F.conv2d(x, sd[f"{p}projects.{i}.weight"], sd[f"{p}projects.{i}.bias"])
        w, b = sd.get(f"{p}resize_layers.{i}.weight"), sd.get(f"{p}resize_layers.{i}.bias")
        if i == 0:
            x = F.conv_transpose2d(x, w, b, stride=4)
        elif i == 1:
            x = F.conv_transpose2d(x, w, b, stride=2)
        elif i == 3:
            x = F.conv2d(x, w, b, stride=2, padding=1)
        maps.append(F.conv2d(x, sd[f"{p}scratch.layer{i + 1}_rn.weight"], padding=1))
    s = p + "scratch."
    path = _refine(sd, s + "refinenet4", maps[3], size=maps[2].shape[2:])
    path = _refine(sd, s + "refinenet3", path, maps[2], size=maps[1].shape[2:])
    path = _refine(sd, s + "refinenet2", path, maps[1], size=maps[0].shape[2:])
    path = _refine(sd, s + "refinenet1", path, maps[0])
    out = F.conv2d(path, sd[s + "output_conv1.weight"], sd[s + "output_conv1.bias"], padding=1)
    out = F.interpolate(out, (gh * 14, gw * 14), mode="bilinear", align_corners=True)
    out = F.relu(F.conv2d(out, sd[s + "output_conv2.0.weight"], sd[s + "output_conv2.0.bias"], padding=1))
    out = F.conv2d(out, sd[s + "output_conv2.2.weight"], sd[s + "output_conv2.2.bias"])[:, 0]
    return F.relu(out) if kind == "relative" else torch.sigmoid(out) * max_depth


def depth_anything(sd, x, size, head=None):
    """Relative DA-V2 (also the stage-1 student: merged weights used as they are)."""
    tokens, gh, gw = vit_tokens(sd, "pretrained.", x, size)
    feats = [_ln(tokens[i], sd, "pretrained.norm", 1e-6)[:, 1:] for i in TAPS[size]]
    return dpt(sd, feats, gh, gw, "relative")


def _decouple(sd, p, tokens, gh, gw):
    b, n, c = tokens.shape
    x = tokens.transpose(1, 2).reshape(b, c, gh, gw)
    kern = sd[p + ".gaussian_kernel"].expand(c, 1, 3, 3)
    gauss = [x]
    for _ in range(2):
        g = gauss[-1]
        blurred = F.conv2d(g, kern, padding=1, groups=c)
        gauss.append(F.interpolate(blurred, size=(g.shape[2] // 2, g.shape[3] // 2), mode="bilinear", align_corners=False))
    lap = [gauss[k] - F.interpolate(gauss[k + 1], size=gauss[k].shape[2:], mode="bilinear", align_corners=False)
           for k in range(2)] + [gauss[2]]

    def top_down(pyr, name):
        f = pyr[2]
        for k in (1, 0):
            up = F.interpolate(f, size=pyr[k].shape[2:], mode="bilinear", align_corners=False)
            q = f"{p}.fusion_convs_{name}.{k}."
            h = F.conv2d(torch.cat([pyr[k], up], 1), sd[q + "0.weight"], sd[q + "0.bias"], groups=8)
            h = h.view(b, 8, c // 8, *h.shape[2:]).permute(0, 2, 1, 3, 4).reshape(h.shape)  # channel shuffle
            f = F.conv2d(F.relu(h), sd[q + "3.weight"], sd[q + "3.bias"], groups=8)
        return f.flatten(2).transpose(1, 2)

    return top_down(gauss, "g"), top_down(lap, "l")


def _cross(sd, p, x1, x2, heads):
    b, n, c = x1.shape
    x1, x2 = _ln(x1, sd, p + ".norm1", 1e-5), _ln(x2, sd, p + ".norm1", 1e-5)
    hd = c // heads // 2

    def split(t):
        return t.view(b, n, heads, hd).permute(0, 2, 1, 3)

    q, k, v = split(_lin(x1, sd, p + ".W_q")), split(_lin(x2, sd, p + ".W_k")), split(_lin(x2, sd, p + ".W_v"))
    att = (q @ k.transpose(-2, -1) / math.sqrt(hd)).softmax(-1)
    out = (att @ v).permute(0, 2, 1, 3).reshape(b, n, c // 2)
    return x1 + _lin(out, sd, p + ".out_proj")


def fredfuse(sd, p, img, evt, gh, gw, heads):
    il, ih = _decouple(sd, p + "img_feature_decouple", img, gh, gw)
    el, eh = _decouple(sd, p + "vox_feature_decouple", evt, gh, gw)
    fused = _cross(sd, p + "low_cross_att", il, el, heads) + _cross(sd, p + "high_cross_att", eh, ih, heads)
    return _ln(_lin(_ln(fused, sd, p + "norm1", 1e-5), sd, p + "out_proj"), sd, p + "norm2", 1e-5)


def fuse_forward(sd, image, events, size, head="metric", max_depth=80.0):
    heads = SIZES[size][2]
    img_tokens, gh, gw = vit_tokens(sd, "image_encoder.", image, size)
    evt_tokens, _, _ = vit_tokens(sd, "prompt_encoder.", events, size)
    feats = []
    for i in TAPS[size]:
        fused = fredfuse(sd, f"prompt_fuse.{i}.", img_tokens[i][:, 1:], evt_tokens[i][:, 1:], gh, gw, heads)
        tokens = torch.cat([img_tokens[i][:, :1], fused], 1)
        feats.append(_ln(tokens, sd, "image_encoder.norm", 1e-6)[:, 1:])
    return dpt(sd, feats, gh, gw, head, max_depth)
