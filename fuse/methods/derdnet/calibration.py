"""MVSEC stereo calibration (Kalibr camchain yaml) and the undistortion lookup table (spec §2.3).

dvs_mcemvs' ``calib_type=yaml_mvsec`` path (``mapper_emvs_stereo/src/calib.cpp``,
``get_camera_calib_yaml_mvsec``, tub-rip/dvs_mcemvs ``49fbc7e``) reads, per camera ``cam0`` /
``cam1``: ``resolution`` [W, H], ``intrinsics`` [fx, fy, cx, cy], ``distortion_model``
(``equidistant`` = OpenCV fisheye), ``distortion_coeffs`` (4 numbers) and ``projection_matrix``
(3 x 4); and ``cam1.T_cn_cnm1`` (4 x 4, maps cam0 coordinates to cam1 coordinates). Then:

* the rectification rotation is ignored (R = I);
* cam1's projection matrix is replaced by cam0's (``camera_info[1].P = camera_info[0].P``), so
  both cameras are undistorted into one pinhole image with ``P0``'s intrinsics;
* every raw integer pixel is mapped once by ``cv::fisheye::undistortPoints(K, D, R = I, P0)``
  (``MapperEMVS::precomputeRectifiedPoints``, float32 points in and out) into a lookup table.

The C++ also accepts ``radtan`` / ``none`` models and computes a ``P`` when the yaml has none;
MVSEC's file has neither case, so here only ``equidistant`` with an explicit
``projection_matrix`` is read, and anything else is a :class:`DataFormatError` naming the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import yaml

from fuse.errors import DataFormatError, MissingDataError

__all__ = ["Camera", "StereoCalibration", "read_mvsec_camchain", "undistortion_table"]


@dataclass(frozen=True, eq=False)
class Camera:
    """One DAVIS camera: raw intrinsics ``K`` (3 x 3), fisheye ``D`` (4,), projection ``P`` (3 x 4)."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    P: np.ndarray

    @property
    def pinhole(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) of the undistorted image, i.e. of ``P``: the sweep's ``K_ev`` and virtual camera."""
        return float(self.P[0, 0]), float(self.P[1, 1]), float(self.P[0, 2]), float(self.P[1, 2])


@dataclass(frozen=True, eq=False)
class StereoCalibration:
    """Left (cam0) and right (cam1, with ``P`` = cam0's ``P``) cameras and ``T_right_left`` = ``T_cn_cnm1``."""

    left: Camera
    right: Camera
    T_right_left: np.ndarray
    path: str

    @property
    def baseline(self) -> float:
        """Distance between the optical centres in metres (MVSEC indoor_flying: 0.0999 m)."""
        return float(np.linalg.norm(self.T_right_left[:3, 3]))


def read_mvsec_camchain(path: str | os.PathLike) -> StereoCalibration:
    """Read MVSEC's ``camchain-imucam-<scene>.yaml`` as dvs_mcemvs' ``yaml_mvsec`` path does."""
    path = os.fspath(path)
    try:
        with open(path) as handle:
            doc = yaml.safe_load(handle)
    except FileNotFoundError:
        raise MissingDataError(f"{path}: calibration file not found; pass MVSEC's camchain-imucam-*.yaml") from None
    except (OSError, yaml.YAMLError) as err:
        raise DataFormatError(f"{path}: cannot read the calibration yaml: {err}") from None
    left = _camera(doc, "cam0", path)
    right = _camera(doc, "cam1", path)
    right = Camera(right.width, right.height, right.K, right.D, left.P)  # dvs_mcemvs: P1 = P0
    T = _matrix(_key(doc, ("cam1", "T_cn_cnm1"), path), (4, 4), "cam1.T_cn_cnm1", path)
    return StereoCalibration(left, right, T, path)


def _key(doc: Any, keys: tuple[str, ...], path: str) -> Any:
    """``doc[k0][k1]...``; a missing key is an error naming the file and the dotted key."""
    node = doc
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            name = ".".join(keys[: depth + 1])
            raise DataFormatError(
                f"{path}: missing key '{name}'; expected an MVSEC camchain yaml (Kalibr format with "
                "cam0/cam1 intrinsics, distortion_coeffs, projection_matrix and cam1.T_cn_cnm1)"
            )
        node = node[key]
    return node


def _matrix(value: Any, shape: tuple[int, ...], name: str, path: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != shape or not np.all(np.isfinite(array)):
        raise DataFormatError(f"{path}: '{name}' must hold finite numbers of shape {shape}, got {value!r}")
    return array


def _camera(doc: Any, cam: str, path: str) -> Camera:
    width, height = (int(v) for v in _matrix(_key(doc, (cam, "resolution"), path), (2,), f"{cam}.resolution", path))
    fx, fy, cx, cy = _matrix(_key(doc, (cam, "intrinsics"), path), (4,), f"{cam}.intrinsics", path)
    model = _key(doc, (cam, "distortion_model"), path)
    if model != "equidistant":
        raise DataFormatError(f"{path}: '{cam}.distortion_model' is {model!r}; only 'equidistant' (MVSEC) is supported")
    D = _matrix(_key(doc, (cam, "distortion_coeffs"), path), (4,), f"{cam}.distortion_coeffs", path)
    P = _matrix(_key(doc, (cam, "projection_matrix"), path), (3, 4), f"{cam}.projection_matrix", path)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return Camera(width, height, K, D, P)


def undistortion_table(camera: Camera) -> np.ndarray:
    """Undistorted position ``(H * W, 2)`` float32 of every raw pixel, row-major (index ``y * W + x``).

    ``cv2.fisheye.undistortPoints`` with R = I and ``camera.P`` as new projection, on float32
    points as in ``fisheye_rectifyPoint`` (dvs_mcemvs ``mapper_emvs_stereo.cpp``).
    """
    ys, xs = np.mgrid[0 : camera.height, 0 : camera.width]
    raw = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)[None]
    out = cv2.fisheye.undistortPoints(raw, camera.K, camera.D.reshape(1, 4), R=np.eye(3), P=camera.P)
    return np.ascontiguousarray(out[0], dtype=np.float32)
