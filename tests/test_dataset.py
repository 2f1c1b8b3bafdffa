"""EventDepthDataset on tiny generated processed folders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fuse.data.constants import IMAGENET_MEAN, IMAGENET_STD
from fuse.data.dataset import EventDepthDataset
from fuse.data.layout import read_split_list
from fuse.errors import DataFormatError

H, W = 26, 34  # small sensor; resized to 28 x 42 with size=28


def write_processed(
    root: Path,
    seq: str = "seq",
    n: int = 3,
    gray: bool = True,
    bins: int = 3,
    height: int = H,
    width: int = W,
    seed: int = 0,
) -> Path:
    """A processed folder ``root/seq/{images,depths,voxels}`` and its list ``root/seq.txt``."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "depths", "voxels"):
        (root / seq / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        stem = f"{i:06d}"
        shape = (height, width) if gray else (height, width, 3)
        cv2.imwrite(str(root / seq / "images" / f"{stem}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
        depth = rng.uniform(1.0, 60.0, (height, width)).astype(np.float32)
        depth[0, :3] = np.nan
        np.save(root / seq / "depths" / f"{stem}.npy", depth)
        voxel = rng.normal(size=(bins, height, width)).astype(np.float32)
        voxel[:, rng.random((height, width)) < 0.5] = 0.0
        np.save(root / seq / "voxels" / f"{stem}.npy", voxel)
        lines.append(f"{seq}/images/{stem}.png {seq}/depths/{stem}.npy {seq}/voxels/{stem}.npy")
    (root / f"{seq}.txt").write_text("\n".join(lines) + "\n")
    return root / f"{seq}.txt"


def test_train_sample_shapes_and_types(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    sample = EventDepthDataset(split, "mvsec", mode="train", size=28, seed=0)[0]
    assert set(sample) == {"image", "voxel", "depth", "valid_mask", "image_path"}
    assert sample["image"].shape == (3, 28, 28) and sample["image"].dtype == torch.float32
    assert sample["voxel"].shape == (3, 28, 28) and sample["voxel"].dtype == torch.float32
    assert sample["depth"].shape == (28, 28) and sample["depth"].dtype == torch.float32
    assert sample["valid_mask"].shape == (28, 28) and sample["valid_mask"].dtype == torch.bool
    assert sample["image_path"] == str(tmp_path / "seq" / "images" / "000000.png")


def test_eval_keeps_depth_at_sensor_resolution(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    sample = EventDepthDataset(split, "mvsec", mode="val", size=28)[1]
    assert sample["image"].shape == (3, 28, 42)
    assert sample["voxel"].shape == (3, 28, 42)
    assert sample["depth"].shape == (H, W)
    raw = np.load(tmp_path / "seq" / "depths" / "000001.npy")
    np.testing.assert_array_equal(sample["depth"].numpy(), raw)  # NaN kept, nothing clipped


def test_image_normalization_and_grayscale_replication(tmp_path: Path) -> None:
    split = write_processed(tmp_path, gray=True)
    sample = EventDepthDataset(split, "mvsec", mode="test", resize=False)[0]
    gray = cv2.imread(str(tmp_path / "seq" / "images" / "000000.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    for c in range(3):
        expected = (gray - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        np.testing.assert_allclose(sample["image"][c].numpy(), expected, atol=1e-5)


def test_color_image_is_read_as_rgb(tmp_path: Path) -> None:
    split = write_processed(tmp_path, gray=False, n=1)
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 120, 250
    cv2.imwrite(str(tmp_path / "seq" / "images" / "000000.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    image = EventDepthDataset(split, "dense", mode="test", resize=False)[0]["image"].numpy()
    restored = image.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    np.testing.assert_allclose(restored[0, 0], [10 / 255, 120 / 255, 250 / 255], atol=1e-5)


def test_voxel_normalization_formula(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    voxel = EventDepthDataset(split, "mvsec", mode="test", resize=False)[2]["voxel"].numpy()
    raw = np.load(tmp_path / "seq" / "voxels" / "000002.npy")
    nz = raw != 0
    expected = np.where(nz, (raw - raw[nz].mean()) / raw[nz].std(), 0.0)
    np.testing.assert_allclose(voxel, expected, rtol=1e-5, atol=1e-5)


def test_valid_mask_rule(tmp_path: Path) -> None:
    split = write_processed(tmp_path, n=1)
    depth = np.full((H, W), 10.0, dtype=np.float32)
    depth[0, :6] = [np.nan, np.inf, 0.0, -1.0, 80.0, 80.5]
    np.save(tmp_path / "seq" / "depths" / "000000.npy", depth)
    mask = EventDepthDataset(split, "mvsec", mode="test")[0]["valid_mask"].numpy()
    assert mask[0, :6].tolist() == [False, False, False, False, True, False]  # max_depth 80 for MVSEC
    assert mask[1:].all()
    dense_mask = EventDepthDataset(split, "dense", mode="test")[0]["valid_mask"].numpy()
    assert dense_mask[0, 5]  # 80.5 m is valid under DENSE's 1000 m


def test_train_mask_follows_the_crop(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    sample = EventDepthDataset(split, "mvsec", mode="train", size=28, seed=3)[0]
    depth, mask = sample["depth"].numpy(), sample["valid_mask"].numpy()
    np.testing.assert_array_equal(mask, np.isfinite(depth) & (depth > 0) & (depth <= 80))


def test_seeded_samples_are_reproducible_and_vary_with_epoch(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    ds = EventDepthDataset(split, "mvsec", mode="train", size=28, seed=11, degradation="fuse_stage2")
    a, b = ds[0], ds[0]
    for key in ("image", "voxel", "depth"):
        assert torch.equal(torch.nan_to_num(a[key]), torch.nan_to_num(b[key]))
    draws = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.append(ds[0]["image"])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_degradation_keeps_a_clean_copy(tmp_path: Path) -> None:
    split = write_processed(tmp_path, gray=False)
    clean = EventDepthDataset(split, "eventscape", mode="val", size=28)[0]
    degraded = EventDepthDataset(
        split, "eventscape", mode="val", size=28, degradation="low_light", seed=1
    )[0]
    assert torch.equal(degraded["image_clean"], clean["image"])
    assert not torch.equal(degraded["image"], clean["image"])
    assert torch.equal(degraded["voxel"], clean["voxel"])  # low light leaves events alone


def test_dataloader_batches(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    loader = DataLoader(EventDepthDataset(split, "mvsec", mode="train", size=28, seed=0), batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 28, 28)
    assert batch["valid_mask"].dtype == torch.bool
    assert len(batch["image_path"]) == 2


def test_absolute_paths_and_blank_lines(tmp_path: Path) -> None:
    write_processed(tmp_path / "data")
    other = tmp_path / "lists" / "abs.txt"
    other.parent.mkdir()
    lines = [
        " ".join(str(tmp_path / "data" / f) for f in line.split())
        for line in (tmp_path / "data" / "seq.txt").read_text().splitlines()
    ]
    other.write_text("\n" + "\n\n".join(lines) + "\n\n")
    assert len(read_split_list(other)) == 3
    assert len(EventDepthDataset(other, "mvsec", mode="test")) == 3


def test_missing_files_are_listed_at_construction(tmp_path: Path) -> None:
    split = write_processed(tmp_path, n=4)
    for i in range(4):
        (tmp_path / "seq" / "voxels" / f"{i:06d}.npy").unlink()
    (tmp_path / "seq" / "depths" / "000000.npy").unlink()
    (tmp_path / "seq" / "images" / "000003.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        EventDepthDataset(split, "mvsec")
    message = str(info.value)
    assert "6 file(s)" in message and str(split) in message
    assert "000000.npy" in message and "and 1 more" in message


def test_missing_split_list(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        EventDepthDataset(tmp_path / "nope.txt", "mvsec")


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    split.write_text(split.read_text() + "only/two fields\n")
    with pytest.raises(DataFormatError, match=r"seq\.txt:4"):
        EventDepthDataset(split, "mvsec")


def test_unknown_dataset_and_mode(tmp_path: Path) -> None:
    split = write_processed(tmp_path)
    with pytest.raises(ValueError, match="mvsec"):
        EventDepthDataset(split, "kitti")
    with pytest.raises(ValueError, match="mode"):
        EventDepthDataset(split, "mvsec", mode="eval")


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: _truncate(d / "voxels" / "000001.npy", 200), "voxels/000001.npy"),
        (lambda d: _truncate(d / "depths" / "000001.npy", 100), "depths/000001.npy"),
        (lambda d: _truncate(d / "images" / "000001.png", 60), "images/000001.png"),
        (lambda d: np.save(d / "depths" / "000001.npy", np.zeros((H, W + 1), np.float32)), "shape"),
        (lambda d: np.save(d / "depths" / "000001.npy", np.zeros((H, W), np.int32)), "floating point"),
        (lambda d: np.save(d / "voxels" / "000001.npy", np.zeros((2, 3, H, W), np.float32)), "voxel must have shape"),
        (lambda d: np.save(d / "voxels" / "000001.npy", np.full((3, H, W), np.nan, np.float32)), "NaN or inf"),
        (lambda d: np.save(d / "voxels" / "000001.npy", np.zeros((3, H, W), np.int16)), "floating point"),
        (lambda d: cv2.imwrite(str(d / "images" / "000001.png"), np.zeros((H, W), np.uint16)), "8-bit"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, corrupt, message: str) -> None:
    split = write_processed(tmp_path)
    corrupt(tmp_path / "seq")
    ds = EventDepthDataset(split, "mvsec", mode="test")
    with pytest.raises(DataFormatError, match=message) as info:
        ds[1]
    assert "000001" in str(info.value)


def test_wrong_bin_count_is_rejected(tmp_path: Path) -> None:
    split = write_processed(tmp_path, bins=5)
    with pytest.raises(DataFormatError, match="5 bins, expected 3"):
        EventDepthDataset(split, "mvsec", mode="test", num_bins=3)[0]
    assert EventDepthDataset(split, "mvsec", mode="test", num_bins=5)[0]["voxel"].shape[0] == 5


def test_reads_what_the_mvsec_preparation_writes(tmp_path: Path) -> None:
    """Layout contract: the MVSEC script's output loads in every mode without conversion."""
    import importlib.util
    import sys

    from tests.mvsec_fixtures import write_recording

    (tmp_path / "raw").mkdir()
    write_recording(tmp_path / "raw", "outdoor_day2")
    script = Path(__file__).resolve().parents[1] / "scripts" / "process_mvsec_hdf5.py"
    spec = importlib.util.spec_from_file_location("mvsec_prep_for_dataset_test", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--root", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "outdoor_day2"]) == 0
    split = tmp_path / "out" / "outdoor_day2.txt"
    train = EventDepthDataset(split, "mvsec", mode="train", size=14, seed=0, num_bins=3)
    sample = train[0]
    assert sample["image"].shape == (3, 14, 14) and sample["voxel"].shape == (3, 14, 14)
    test = EventDepthDataset(split, "mvsec", mode="test", size=14)
    assert len(test) == len(train) > 0
    assert test[0]["depth"].shape == (12, 16)
