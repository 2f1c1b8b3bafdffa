"""FUSE: image + event-camera monocular depth estimation (arXiv 2503.19739).

The public API is imported lazily so that light commands (``python -m fuse eval``) do not pay
for importing torch and timm.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["ModelConfig", "build_model", "list_models", "load_weights"]


def build_model(name: str, **options):
    """A randomly initialized model of a registered kind (``fuse.list_models()``)."""
    from fuse.registry import model_kind

    return model_kind(name).build(**options)


def list_models() -> list[str]:
    """The registered model kinds (``fuse.registry``)."""
    from fuse.registry import list_models as _list

    return _list()


def load_weights(model, path, strict: bool = True, into=None):
    """Load a checkpoint file into ``model`` (see ``fuse.weights.load_weights``)."""
    from fuse.weights import load_weights as _load

    return _load(model, path, strict=strict, into=into)


def __getattr__(name: str):
    if name == "ModelConfig":
        from fuse.methods.fuse import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'fuse' has no attribute {name!r}")
