"""Published KITTI depth-completion rows of FCFR-Net and its stage-1 network (spec fcfrnet.md §5).

The test row was scored by the KITTI benchmark server on its withheld ground truth; the
val_selection rows were computed by the Paddle ports with the metric code ``kitti_completion``
restates. Columns: RMSE and MAE in mm, iRMSE and iMAE in 1/km.
"""
from __future__ import annotations

from fuse.evaluate.published import PublishedRow, register_rows
from fuse.methods.fcfrnet.metrics import KEYS

PROTOCOL = "kitti_completion"
DATASET = "kitti"

# (method, split, "RMSE/MAE/iRMSE/iMAE", source)
TABLE = (
    ("FCFR-Net", "test", "735.81/217.15/2.20/0.98",
     "FCFR-Net, AAAI 2021, and the KITTI depth-completion leaderboard (online test set); spec fcfrnet.md §5"),
    ("FCFR-Net Paddle port", "val_selection", "784.224/222.639/2.370/1.014",
     "DianaNerualNetwork/Paddle_FCFRNet README (the authors' Torch weights converted, STD coarse input), "
     "1000 val_selection_cropped frames; spec fcfrnet.md §5"),
    ("STD (Ma et al. 2019)", "val_selection", "814.73/242.639/2.80/1.21",
     "PaddlePaddle/PaddleDepth PaddleCompletion (STD alone); spec fcfrnet.md §2 and §5"),
)

ROWS = tuple(
    PublishedRow(method, DATASET, split, None, dict(zip(KEYS, map(float, cells.split("/")), strict=True)), PROTOCOL,
                 source)
    for method, split, cells, source in TABLE
)
register_rows(ROWS)
