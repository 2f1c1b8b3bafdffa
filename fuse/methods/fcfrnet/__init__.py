"""FCFR-Net (AAAI 2021): depth completion in two stages, STD (sparse-to-coarse) and FCFRNet (coarse-to-fine).

Importing this package registers the model kinds ``std`` and ``fcfrnet``, the checkpoint family
that reads the Paddle port's state dicts and this project's files of both kinds, the command
``fcfrnet-convert``, the ``kitti_completion`` protocol and the published KITTI rows, the training
stages ``std`` and ``fcfrnet`` with the config section ``fcfrnet`` and the command
``fcfrnet-predict``. Facts: ``shared/spec/fcfrnet.md``; use: ``docs/fcfrnet.md``.
"""
from fuse.methods.fcfrnet import convert, weights  # importing them registers the command and the family
from fuse.methods.fcfrnet import kitti, metrics, published  # importing them registers the protocol and rows
from fuse.methods.fcfrnet import predict, stages  # importing them registers the command, the stages and section
from fuse.methods.fcfrnet.model import FcfrNet, FcfrNetConfig, Std, StdConfig, build_fcfrnet, build_std
from fuse.methods.fcfrnet.weights import load_paddle_model, load_pdparams
from fuse.methods.fcfrnet import events  # importing it registers the command fcfrnet-from-events

__all__ = [
    "FcfrNet", "FcfrNetConfig", "Std", "StdConfig", "build_fcfrnet", "build_std", "convert", "load_paddle_model",
    "load_pdparams", "weights", "kitti", "metrics", "published", "predict", "stages", "events",
]
