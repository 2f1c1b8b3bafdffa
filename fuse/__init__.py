"""FUSE: image + event-camera monocular depth estimation (arXiv 2503.19739)."""
from fuse.models import ModelConfig, build_model

__all__ = ["ModelConfig", "build_model", "load_weights"]
__version__ = "0.1.0"


def load_weights(model, path, strict: bool = True, into: str | None = None):
    """Load a checkpoint file into ``model`` (see ``fuse.engine.weights.load_weights``)."""
    from fuse.engine.weights import load_weights as _load

    return _load(model, path, strict=strict, into=into)
