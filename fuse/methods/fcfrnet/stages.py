"""FCFR-Net's training stages ``std`` and ``fcfrnet`` (``python -m fuse std|fcfrnet``), their task and
config section.

The shared trainer runs both (``optim.weight_decay: 0`` makes its AdamW the port's Adam;
``optim.schedule: step`` its x0.1 every 10 epochs; checkpoints, exact resume, DDP, AMP). The task
feeds KITTI depth-completion frames (``data.py``): STD reads the LiDAR points (``fcfrnet.sparse``),
FCFRNet the coarse maps STD made (``fcfrnet.coarse``, written by ``fcfrnet-predict --name``), as
the Paddle port trains stage 2 on precomputed stage-1 maps (spec §2, §5). The loss is the port's
``dense`` mode (spec §4): the mean squared error in metres of the training output (STD ``100 y``,
FCFRNet ``85 (y + d / 85)``) over the pixels with ground truth. Validation scores the
``kitti_completion`` metrics per image and averaged (``metrics.py``); ``rmse_mm`` picks
``best.pth``, as the port's ``rank_metric: rmse``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fuse.errors import ConfigError
from fuse.evaluate.metrics import all_reduce_sums
from fuse.methods.fcfrnet.data import Augmentation, CompletionDataset, network_image
from fuse.methods.fcfrnet.kitti import CROP, SPARSE, SPLITS, split_frames
from fuse.methods.fcfrnet.metrics import KEYS, image_metrics
from fuse.methods.fcfrnet.model import FCFRNET_KIND, HEAD, IMAGE_CHANNELS, STD_KIND, STRIDE, WIRINGS
from fuse.train.config import Key, register_section
from fuse.train.stages import Stage, register_stage
from fuse.train.tasks import EpochDataset, Losses, Task, normalized

if TYPE_CHECKING:
    from fuse.train.trainer import Trainer

SECTION = "fcfrnet"
register_section(SECTION, {
    "root": Key(None, "KITTI depth-completion folder holding train/, val/ and depth_selection/ (docs/fcfrnet.md)",
                example=""),
    "raw": Key(None, "folder of the KITTI raw drives' colour images (null: fcfrnet.root)", example=""),
    "train_split": Key("train", "split to train on", choices=SPLITS),
    "val_split": Key("val_selection", "split scored after each epoch (null: no validation, no best.pth)",
                     choices=(None, *SPLITS)),
    "sparse": Key(SPARSE, "stage std: folder of the input depth beside groundtruth (velodyne_raw: the LiDAR points)"),
    "coarse": Key(None, "stage fcfrnet: folder of STD's coarse maps beside velodyne_raw, written by fcfrnet-predict "
                  "--name (spec §5: the port trains FCFRNet on precomputed coarse maps)", example=""),
    "input_mode": Key("rgbd", "image the networks take besides depth: rgbd (colour), gd (gray) or d (none; spec §1)",
                      choices=tuple(IMAGE_CHANNELS)),
    "wiring": Key("released", "stage fcfrnet: released (branch 2 fed branch 1's half from conv4_2 on, as the "
                  "released weights) or clean (spec §3.1)", choices=WIRINGS),
    "energy_kernel": Key(5, "stage fcfrnet: energy-fusion window, odd (spec §3.2: the port's 5; the paper's "
                         "comment says 3)", low=1),
    "fusion_gain": Key(2.0, "stage fcfrnet: factor of the fused features (spec §3.2)", low=0.0, open_low=True),
    "max_depth": Key(85.0, "stage fcfrnet: coarse-depth clamp and output scale in metres (spec §1)", low=0.0,
                     open_low=True),
    "min_depth": Key(0.9, "evaluation floor of the outputs in metres (spec §1, §2)", low=0.0, open_low=True),
    "output_scale": Key(100.0, "stage std: metres per unit of the network's output (spec §2)", low=0.0,
                        open_low=True),
    "crop": Key(list(CROP), f"bottom crop (height, width) of every frame, multiples of {STRIDE} (spec §4: 352 1216)",
                low=STRIDE),
    "train_crop": Key(None, f"random window (height, width) of the bottom crop for training, multiples of {STRIDE} "
                      "(null: none, as the port; smaller for CPU runs)", low=STRIDE, example=[0, 0]),
    "flip": Key(True, "random horizontal flips of training frames, p = 0.5 (spec §4)"),
    "jitter": Key(0.1, "colour jitter of training images: brightness, contrast and saturation factors from "
                  "U[1 - jitter, 1 + jitter] (spec §4: 0.1; 0: off)", low=0.0, high=1.0),
}, "fcfrnet.*: FCFR-Net's KITTI data, model options and augmentation")

MODEL_OPTIONS = {
    STD_KIND: ("input_mode", "output_scale", "min_depth"),
    FCFRNET_KIND: ("input_mode", "wiring", "energy_kernel", "fusion_gain", "max_depth", "min_depth"),
}


def student_options(trainer: Trainer) -> dict:
    """The builder options of the stage's network from the section (``model.py``'s configs)."""
    settings = trainer.config.section(SECTION)
    return {name: getattr(settings, name) for name in MODEL_OPTIONS[trainer.kind]}


def _size(settings: Any, key: str) -> tuple[int, int] | None:
    """``fcfrnet.<key>`` as (height, width), checked against the networks' stride."""
    value = getattr(settings, key)
    if value is not None and any(side % STRIDE for side in value):
        raise ConfigError(f"config key '{SECTION}.{key}' must be two multiples of {STRIDE} (the networks' stride), "
                          f"got {list(value)}")
    return None if value is None else (int(value[0]), int(value[1]))


def input_folder(kind: str, settings: Any) -> str:
    """The folder of the network's depth input: the LiDAR points (STD) or STD's coarse maps (FCFRNet)."""
    if kind == STD_KIND:
        return settings.sparse
    if not settings.coarse:
        raise ConfigError(f"config key '{SECTION}.coarse' is not set: stage fcfrnet refines STD's coarse maps; write "
                          "them with ./fcfrnet.sh coarse (python -m fuse fcfrnet-predict --name NAME) and set "
                          f"{SECTION}.coarse=NAME")
    return settings.coarse


def datasets(trainer: Trainer) -> tuple[EpochDataset, EpochDataset | None]:
    """Augmented frames of ``fcfrnet.train_split``; bottom-cropped frames of ``fcfrnet.val_split``."""
    settings = trainer.config.section(SECTION)
    if not settings.root:
        raise ConfigError(f"config key '{SECTION}.root' is not set: give the KITTI depth-completion folder "
                          "(docs/fcfrnet.md)")
    crop, window = _size(settings, "crop"), _size(settings, "train_crop")
    folder = input_folder(trainer.kind, settings)
    frames = split_frames(settings.root, settings.train_split, settings.raw, folder)
    train = CompletionDataset(frames, crop, Augmentation(settings.flip, settings.jitter, window),
                              seed=trainer.config.run.seed)
    if settings.val_split is None:
        return train, None
    return train, CompletionDataset(split_frames(settings.root, settings.val_split, settings.raw, folder), crop)


def masked_mse(prediction: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the pixels with ground truth (gt > 0); 0, still differentiable, where
    a batch has none (the port's loss would be NaN there)."""
    valid = gt > 0
    if not valid.any():
        return prediction.sum() * 0.0
    return (prediction[valid] - gt[valid]).square().mean()


def compute_losses(trainer: Trainer, batch: dict) -> Losses:
    device, settings = trainer.device, trainer.config.section(SECTION)
    image = network_image(batch["image"].to(device, non_blocking=True), settings.input_mode)
    depth = batch["depth"].to(device, non_blocking=True)
    gt = batch["gt"].to(device, non_blocking=True)
    with trainer.autocast():
        prediction = trainer.model(image, depth)
    loss = masked_mse(prediction.float(), gt)
    return loss, {"mse": loss}, prediction


def metric_sums(trainer: Trainer, batch: dict, prediction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums of each image's KITTI metrics (``metrics.image_metrics``) and the count of scored images."""
    scored = [metrics for pred, gt in zip(prediction.float().cpu().numpy(), batch["gt"].numpy())
              if (metrics := image_metrics(pred, gt))]
    sums = {key: sum(metrics[key] for metrics in scored) for key in KEYS} | {"frames": len(scored)}
    return {key: torch.tensor(float(value), dtype=torch.float64, device=trainer.device) for key, value in sums.items()}


def empty_sums() -> dict[str, float]:
    return dict.fromkeys((*KEYS, "frames"), 0.0)


def finalize(sums: dict[str, torch.Tensor]) -> dict:
    """The images' metrics averaged, as the ``kitti_completion`` protocol."""
    total = all_reduce_sums(sums)
    frames = int(total["frames"])
    if not frames:
        return {"frames": 0}
    return {key: float(total[key]) / frames for key in KEYS} | {"frames": frames}


def panel(trainer: Trainer, batch: dict, prediction: torch.Tensor) -> list[torch.Tensor]:
    """Image | input depth | prediction | ground truth of the first sample."""
    return [normalized(batch["image"][0].mean(0)), normalized(batch["depth"][0, 0]), normalized(prediction[0]),
            normalized(batch["gt"][0])]


COMPLETION_TASK = Task("kitti_completion", student_options, datasets, compute_losses, metric_sums, empty_sums,
                       finalize, panel)


def _stage(kind: str, description: str) -> Stage:
    return register_stage(Stage(kind, kind, HEAD, False, ("mse",), lambda name: True, lambda name: False, description,
                                select_by="rmse_mm", task=COMPLETION_TASK, depth_metrics=True))


STD_STAGE = _stage(STD_KIND, "train STD, FCFR-Net's stage 1, on KITTI depth completion (image + LiDAR points -> "
                             "depth, masked MSE in metres, spec §4)")
FCFRNET_STAGE = _stage(FCFRNET_KIND, "train FCFRNet, FCFR-Net's stage 2, on KITTI depth completion (image + STD's "
                                     "coarse maps -> depth, masked MSE in metres, spec §4)")
