"""DERD-Net's published table (spec derd-net.md §8, the NeurIPS 2025 poster), with its peer rows.

MVSEC is the three-fold cross-validation on indoor_flying 1-3 (totals over the three test
folds); DSEC is zurich_city_04a, trained on one half and tested on the other. MVSEC prints
errors in cm, DSEC in m; bad-pix in %, #Points in millions. All are ``derdnet_points`` numbers.
"""
from __future__ import annotations

from fuse.evaluate.published import PublishedRow, register_rows

PROTOCOL = "derdnet_points"
SOURCE = ("DERD-Net NeurIPS 2025 poster (tub-rip/DERD-Net assets/2025_NeurIPS_DERD-Net_poster.pdf), "
          "results table; spec derd-net.md §8")
SEQUENCES = {"mvsec": "indoor_flying1-3", "dsec": "zurich_city_04a"}
KEYS = {"mvsec": ("mae_cm", "medae_cm", "bad_pix", "points_m"), "dsec": ("mae_m", "medae_m", "bad_pix", "points_m")}

# method: (MVSEC mean, median, bad-pix, #points / DSEC mean, median, bad-pix, #points)
TABLE = {
    "EMVS (monocular)": "33.78/14.35/3.84/1.27 5.64/2.52/13.68/1.31",
    "ESVO (stereo)": "22.70/9.83/2.83/1.56 3.93/1.62/10.54/9.40",
    "MC-EMVS (stereo)": "20.07/9.53/1.35/0.81 3.27/0.90/10.75/1.25",
    "DERD-Net monocular + F_orig": "23.68/11.55/2.78/1.21 3.12/1.60/5.50/2.10",
    "DERD-Net stereo + F_orig": "11.69/5.50/0.89/0.79 1.61/0.46/4.12/1.67",
    "DERD-Net stereo + F_denser": "15.24/6.68/1.70/2.77 1.80/0.54/5.04/4.64",
    "DERD-Net multi-pixel stereo + F_denser": "15.68/6.73/1.74/11.33 1.79/0.54/4.61/14.74",
}


def _rows() -> tuple[PublishedRow, ...]:
    rows = []
    for method, cells in TABLE.items():
        for dataset, values in zip(("mvsec", "dsec"), cells.split(), strict=True):
            metrics = dict(zip(KEYS[dataset], map(float, values.split("/")), strict=True))
            rows.append(PublishedRow(method, dataset, SEQUENCES[dataset], None, metrics, PROTOCOL, SOURCE))
    return tuple(rows)


ROWS = _rows()
register_rows(ROWS)
