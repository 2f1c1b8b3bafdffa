"""The Paddle port's weight files (``.pdparams``), read and written without Paddle (spec fcfrnet.md §4, §7).

``paddle.save(model.state_dict())`` pickles a plain dict of numpy arrays under the module names,
plus a ``StructuredToParameterName@@`` table of Paddle's internal parameter names. The names
differ from PyTorch's only in BatchNorm's running statistics (``_mean``, ``_variance``), the
batch counter PyTorch keeps and Paddle does not, and the ``_layers.`` prefix of weights saved from
a ``paddle.DataParallel`` model. Neither network has a Linear layer, so no weight is transposed.

A pickle can name any callable and run it while loading; ``PaddleUnpickler`` resolves only what
a dict of numpy arrays needs and refuses every other name before anything is called.
"""
from __future__ import annotations

import codecs
import collections
import os
import pickle

import numpy as np
import torch
from torch import nn

from fuse.atomic import atomic_write
from fuse.errors import CheckpointError

try:  # numpy >= 2 pickles arrays with numpy._core; numpy 1 with numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core.multiarray import _reconstruct

NAME_TABLE = "StructuredToParameterName@@"  # paddle.save's table: key -> Paddle parameter name
DATA_PARALLEL_PREFIX = "_layers."
BATCH_COUNTER = "num_batches_tracked"  # PyTorch's BatchNorm only
PADDLE_SUFFIXES = {"running_mean": "_mean", "running_var": "_variance"}
TORCH_SUFFIXES = {paddle: torch_name for torch_name, paddle in PADDLE_SUFFIXES.items()}
PICKLE_PROTOCOL = 4  # paddle.save's default

# Everything a pickled dict of numpy arrays refers to by name: the array and dtype rebuilders
# (both numpy module paths), OrderedDict (a state dict pickled as is) and _codecs.encode (bytes
# in the protocol-2 pickles older Paddle versions write). Dicts, lists and strings need no name.
ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,
}


class PaddleUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays in dicts and nothing else: any other global is a ``CheckpointError``
    raised before it is imported or called."""

    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.path} refers to {module}.{name}, which a weight file never needs: only numpy arrays in "
                "dicts are read, because unpickling anything else can run code. A Paddle training checkpoint "
                "also pickles its args and metrics; save its weights alone, in Paddle: "
                "paddle.save(paddle.load(PATH)['model'], 'weights.pdparams')") from None


def read_pdparams(path: str | os.PathLike) -> dict:
    """The dict a ``.pdparams`` file holds, unpickled by ``PaddleUnpickler``."""
    try:
        with open(path, "rb") as handle:
            raw = PaddleUnpickler(handle, str(path)).load()
    except CheckpointError:
        raise
    except OSError as error:
        raise CheckpointError(f"Paddle weights {path} could not be opened ({error.strerror}); check the path") from None
    except Exception as error:  # pickle raises many types for damaged or foreign files
        reason = " ".join(str(error).split())
        raise CheckpointError(f"{path} is not a Paddle weight file (a pickled dict of numpy arrays): {reason}; "
                              "this project's own checkpoints load with fuse.weights.load_model") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a Paddle state dict")
    return raw


def torch_name(key: str) -> str:
    """A Paddle state-dict key as this project's model names it."""
    return _rename_last(key.removeprefix(DATA_PARALLEL_PREFIX), TORCH_SUFFIXES)


def paddle_name(name: str) -> str:
    """A model key as the Paddle port's state dict names it."""
    return _rename_last(name, PADDLE_SUFFIXES)


def _rename_last(name: str, renames: dict[str, str]) -> str:
    module, dot, last = name.rpartition(".")
    return module + dot + renames.get(last, last)


def is_batch_counter(name: str) -> bool:
    return name.endswith(f".{BATCH_COUNTER}")


def paddle_state(model: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """``model``'s weights as ``paddle.save(state_dict)`` writes them: Paddle names (``prefix``
    ``"_layers."`` for a DataParallel model), numpy arrays, no batch counters."""
    return {prefix + paddle_name(name): tensor.detach().cpu().numpy().copy()
            for name, tensor in model.state_dict().items() if not is_batch_counter(name)}


def save_pdparams(model: nn.Module, path: str | os.PathLike, prefix: str = "") -> None:
    """Write ``model``'s weights as a ``.pdparams`` file, laid out as Paddle writes one (the
    name table's Paddle parameter names are placeholders: nothing reads them)."""
    state: dict = paddle_state(model, prefix)
    state[NAME_TABLE] = {name: f"param_{index}" for index, name in enumerate(state)}
    atomic_write(path, lambda handle: pickle.dump(state, handle, protocol=PICKLE_PROTOCOL))


def torch_state(raw: dict, path: str) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, str]]:
    """A Paddle state dict in this project's names: ``(tensors, file name of each tensor, ignored
    entries with the reason)``. Values may be numpy arrays (a ``.pdparams`` file) or tensors."""
    tensors, file_names, ignored = {}, {}, {}
    for key, value in raw.items():
        if key == NAME_TABLE:
            ignored[key] = "paddle.save's table of internal parameter names, not a tensor"
            continue
        if not isinstance(key, str) or not isinstance(value, (np.ndarray, torch.Tensor)):
            raise CheckpointError(f"{path} holds a {type(value).__name__} under {key!r}, where a Paddle state dict "
                                  "holds arrays under names only")
        name = torch_name(key)
        tensors[name], file_names[name] = torch.as_tensor(value), key
    return tensors, file_names, ignored
