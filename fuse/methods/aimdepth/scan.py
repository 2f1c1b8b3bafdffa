"""The selective scan of Mamba (S6) in plain PyTorch: a chunked scan and its sequential reference.

Per channel c with state size n (spec §3), ``Δ_t = softplus(δ_t + b)``, ``Ā_t = exp(Δ_t A)``:

    h_t = Ā_t ⊙ h_{t-1} + Δ_t B_t x_t,        y_t = <C_t, h_t> + D x_t

Shapes follow the CUDA kernel of ``mamba_ssm`` (``selective_scan_fn``) so either can serve:
``u``, ``delta``: (b, c, L); ``A``: (c, n); ``B``, ``C``: (b, g, n, L), shared by the c / g
channels of a group (SS2D scans four directions as four groups); ``D``: (c,).

:func:`selective_scan` cuts the sequence into chunks of ``chunk`` steps and runs (1) one loop over
the positions of a chunk for all chunks at once, from a zero state; (2) a loop over chunks that
carries each chunk's end state into the next; (3) one vectorized pass adding the carried states,
decayed by ``exp(A · cumsum Δ)``, to every position. Every exponent is ``A · (a sum of Δ) <= 0``,
so no chunk length can overflow (log-space scans with ``exp(-A cumsum Δ)`` do). Python runs
``chunk + L / chunk`` steps instead of ``L`` (the default chunk, about ``sqrt(L)``, makes that
about ``2 sqrt(L)``); autograd differentiates it as written.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_CHUNK: int | None = None  # None: about sqrt(L), which balances the two loops


def _discretized(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _check(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> int:
    """The number of channels per group; shapes that do not fit are a ValueError."""
    batch, channels, length = u.shape
    if A.shape[0] != channels or B.ndim != 4 or B.shape != C.shape or B.shape[0] != batch \
            or B.shape[2] != A.shape[1] or B.shape[3] != length or channels % B.shape[1]:
        raise ValueError(f"selective scan shapes do not fit: u {tuple(u.shape)}, A {tuple(A.shape)}, "
                         f"B {tuple(B.shape)}, C {tuple(C.shape)}; expected u (b, c, L), A (c, n), "
                         "B and C (b, g, n, L) with g dividing c")
    return channels // B.shape[1]


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
                             delta_softplus: bool = False) -> torch.Tensor:
    """The recurrence exactly as written, one time step after another (for tests and benchmarks)."""
    per_group = _check(u, A, B, C)
    batch, channels, length = u.shape
    grouped = (batch, B.shape[1], per_group)
    delta = _discretized(delta, delta_bias, delta_softplus).reshape(*grouped, length)
    x = u.float().reshape(*grouped, length)
    A = A.float().reshape(*grouped[1:], -1)
    B, C = B.float()[:, :, None], C.float()[:, :, None]  # (b, g, 1, n, L): one row per group
    state = x.new_zeros(*grouped, A.shape[-1])
    outputs = []
    for step, B_t, C_t, x_t in zip(delta.unbind(-1), B.unbind(-1), C.unbind(-1), x.unbind(-1)):
        state = torch.exp(step[..., None] * A) * state + step[..., None] * B_t * x_t[..., None]
        outputs.append((state * C_t).sum(-1))
    y = torch.stack(outputs, dim=-1).reshape(batch, channels, length)
    return y if D is None else y + D.float()[:, None] * u.float()


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
                   delta_softplus: bool = False, chunk: int | None = DEFAULT_CHUNK) -> torch.Tensor:
    """``selective_scan_reference``'s output (float32, (b, c, L)), computed chunk-parallel."""
    per_group = _check(u, A, B, C)
    batch, channels, length = u.shape
    groups, states = B.shape[1], A.shape[1]
    delta = _discretized(delta, delta_bias, delta_softplus)
    chunk = max(1, min(chunk or math.ceil(math.sqrt(length)), length))
    chunks = math.ceil(length / chunk)
    pad = chunks * chunk - length  # padded steps: Δ = 0 and x = 0 leave the state as it is

    def blocks(x: torch.Tensor) -> torch.Tensor:  # (b, c, L) -> (b, g, m, chunks, chunk)
        return F.pad(x.float(), (0, pad)).reshape(batch, groups, per_group, chunks, chunk)

    def state_blocks(x: torch.Tensor) -> torch.Tensor:  # (b, g, n, L) -> (b, g, 1, chunks, chunk, n)
        x = F.pad(x.float(), (0, pad)).reshape(batch, groups, states, chunks, chunk)
        return x.permute(0, 1, 3, 4, 2)[:, :, None]

    step, x = blocks(delta), blocks(u)
    Bs, Cs = state_blocks(B), state_blocks(C)
    A = A.float().reshape(groups, per_group, 1, 1, states)  # broadcasts over (b, g, m, chunks, chunk, n)
    # Decays and inputs of every step at once, so that the loop below is one fused multiply-add per
    # step with nothing to broadcast (broadcasting inside the loop would make autograd reduce A's
    # and B's gradients once per step).
    decay = torch.exp(step[..., None] * A)  # (b, g, m, chunks, chunk, n)
    drive = (step * x)[..., None] * Bs
    # (1) every chunk from a zero state, all chunks at once; unbind, not indexing, so that autograd
    # does not allocate a full-size gradient per step
    local = torch.zeros_like(drive[..., 0, :])
    states = []
    for decay_j, drive_j in zip(decay.unbind(-2), drive.unbind(-2)):
        local = torch.addcmul(drive_j, decay_j, local)
        states.append(local)
    # (2) carry end states across chunks: start_k = decay_{k-1} * start_{k-1} + end_{k-1}
    elapsed = step.cumsum(-1)[..., None] * A  # log of the decay from the chunk's start to each position (<= 0)
    chunk_decays, ends = torch.exp(elapsed[..., -1, :]).unbind(3), local.unbind(3)
    starts = [torch.zeros_like(ends[0])]
    for k in range(1, chunks):
        starts.append(torch.addcmul(ends[k - 1], chunk_decays[k - 1], starts[-1]))
    start = torch.stack(starts, dim=3)[..., None, :]  # (b, g, m, chunks, 1, n)
    # (3) each position's state: its chunk's own part plus the carried state, decayed; read out with C
    state = torch.addcmul(torch.stack(states, dim=-2), torch.exp(elapsed), start)
    y = (state * Cs).sum(-1)
    y = y.reshape(batch, channels, chunks * chunk)[..., :length]
    return y if D is None else y + D.float()[:, None] * u.float()
