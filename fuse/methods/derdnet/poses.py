"""Camera trajectories for the space sweep: timestamps + ``T_world_cam`` (4 x 4), interpolated in time.

Interpolation follows dvs_mcemvs' ``LinearTrajectory::getPoseAt``
(``mapper_emvs_stereo/include/mapper_emvs_stereo/trajectory.hpp``, tub-rip/dvs_mcemvs ``49fbc7e``):
``T(t) = T0 · exp(α · log(T0⁻¹ T1))`` with ``α = (t - t0) / (t1 - t0)``, where ``exp`` / ``log``
are minkindr's ``QuatTransformation`` ones (``quat-transformation-inl.h``, ethz-asl/minkindr): the
translation and the rotation vector of the quaternion taken separately, not the SE(3) log.
Expanded, this is exactly

* translation: linear, ``p0 + α (p1 - p0)``;
* rotation: quaternion slerp along the shorter arc (minkindr's ``log(-q) = log(q)``).

So spec §2.2's "[unknown: slerp assumed]" is settled by the sources: slerp + linear translation.

Coverage (same file): ``poses_.upper_bound(t)`` must be neither the first nor past the last pose,
so a pose exists for ``t_first <= t < t_last`` (the last pose's own time is *not* covered).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from fuse.errors import RecordingError

__all__ = ["Trajectory", "read_mvsec_poses"]

# Rotation matrices are accepted when R Rᵀ is the identity to this tolerance (float32-stored poses).
_ORTHO_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Control poses ``T_world_cam`` (N, 4, 4) at strictly increasing ``times`` (N,) seconds.

    ``source`` names where the poses came from, for error messages. Build with
    :meth:`from_poses`, which sorts and drops repeated times as dvs_mcemvs' ``std::map`` does.
    """

    times: np.ndarray
    T_world_cam: np.ndarray
    source: str = "trajectory"

    def __post_init__(self) -> None:
        n = len(self.times)
        if self.times.shape != (n,) or self.T_world_cam.shape != (n, 4, 4):
            raise RecordingError(f"{self.source}: poses must be (N, 4, 4) with N timestamps, "
                                 f"got {self.T_world_cam.shape} and {self.times.shape}")
        if n < 2:  # LinearTrajectory: CHECK_GE(poses_.size(), 2u)
            raise RecordingError(f"{self.source}: {n} pose(s); interpolation needs at least 2")
        if not (np.all(np.isfinite(self.times)) and np.all(np.isfinite(self.T_world_cam))):
            raise RecordingError(f"{self.source}: poses or timestamps are not finite")
        if np.any(np.diff(self.times) <= 0):
            raise RecordingError(f"{self.source}: pose timestamps must increase strictly; use Trajectory.from_poses")
        R = self.T_world_cam[:, :3, :3]
        error = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
        if np.any(error > _ORTHO_TOL) or np.any(np.linalg.det(R) < 0):
            i = int(np.argmax((error > _ORTHO_TOL) | (np.linalg.det(R) < 0)))
            raise RecordingError(f"{self.source}: pose {i} (t={self.times[i]}) has no rotation matrix in its top-left 3x3")

    @classmethod
    def from_poses(cls, times: np.ndarray, T_world_cam: np.ndarray, source: str = "trajectory") -> "Trajectory":
        """Sort by time; of poses sharing a time keep the first (``std::map::insert``)."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        T = np.asarray(T_world_cam, dtype=np.float64)
        order = np.argsort(times, kind="stable")
        times, T = times[order], T[order]
        keep = np.concatenate(([True], np.diff(times) > 0)) if len(times) else np.zeros(0, bool)
        return cls(times[keep], T[keep], source)

    @property
    def span(self) -> tuple[float, float]:
        return float(self.times[0]), float(self.times[-1])

    def covers(self, t: np.ndarray | float) -> np.ndarray:
        """Whether a pose exists at ``t``: ``t_first <= t < t_last`` (``LinearTrajectory``)."""
        t = np.asarray(t, dtype=np.float64)
        return (t >= self.times[0]) & (t < self.times[-1])

    def at(self, t: np.ndarray | float) -> np.ndarray:
        """``T_world_cam`` at each time ``t`` (shape ``t.shape + (4, 4)``); uncovered times raise."""
        t = np.asarray(t, dtype=np.float64)
        if not np.all(self.covers(t)):
            bad = float(t.reshape(-1)[np.flatnonzero(~self.covers(t).reshape(-1))[0]])
            first, last = self.span
            raise RecordingError(
                f"{self.source}: no pose at t={bad:.6f} s; poses cover {first:.6f} <= t < {last:.6f} s "
                "(as dvs_mcemvs' LinearTrajectory); choose windows inside that range or supply longer poses"
            )
        upper = np.searchsorted(self.times, t, side="right")  # std::map::upper_bound
        lower = upper - 1
        alpha = (t - self.times[lower]) / (self.times[upper] - self.times[lower])
        T0, T1 = self.T_world_cam[lower], self.T_world_cam[upper]
        out = np.zeros(t.shape + (4, 4))
        out[..., :3, :3] = quaternion_to_matrix(slerp(matrix_to_quaternion(T0[..., :3, :3]),
                                                      matrix_to_quaternion(T1[..., :3, :3]), alpha))
        out[..., :3, 3] = T0[..., :3, 3] + alpha[..., None] * (T1[..., :3, 3] - T0[..., :3, 3])
        out[..., 3, 3] = 1.0
        return out

    def right_multiplied(self, T: np.ndarray) -> "Trajectory":
        """Control poses ``T_world_cam · T`` (``applyTransformationRight``): the right camera's
        trajectory is ``left.right_multiplied(inv(T_right_left))``. Applied before interpolation,
        as the C++ does (afterwards would differ slightly in translation)."""
        return Trajectory(self.times, self.T_world_cam @ np.asarray(T, dtype=np.float64), self.source)

    def trimmed(self, tmin: float, tmax: float) -> "Trajectory":
        """The poses dvs_mcemvs loads for ``start_time_s = tmin``, ``stop_time_s = tmax``
        (``parse_rosbag_gt``): those at ``t >= tmin`` up to and including the first one after ``tmax``.
        With it, packets of the first window whose middle event precedes the first pose get no pose."""
        start = int(np.searchsorted(self.times, tmin, side="left"))
        stop = int(np.searchsorted(self.times, tmax, side="right")) + 1
        return Trajectory(self.times[start:stop], self.T_world_cam[start:stop], self.source)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` as (w, x, y, z) of rotation matrices ``(..., 3, 3)``.

    Shepperd's method: the largest of 4w², 4x², 4y², 4z² sets the divisor, so it stays accurate
    near 180° rotations where the trace formula loses precision.
    """
    m = np.asarray(R, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    diag = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1)
    a, b, c = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    d, e, f = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    candidates = np.stack([
        np.stack([diag[..., 0], a, b, c], axis=-1),
        np.stack([a, diag[..., 1], d, e], axis=-1),
        np.stack([b, d, diag[..., 2], f], axis=-1),
        np.stack([c, e, f, diag[..., 3]], axis=-1),
    ], axis=-2)
    k = np.argmax(diag, axis=-1)[..., None, None]
    q = np.take_along_axis(candidates, np.broadcast_to(k, k.shape[:-2] + (1, 4)), axis=-2)[..., 0, :]
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of unit quaternions (w, x, y, z)."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from ``q0`` (alpha 0) to ``q1`` (alpha 1) along the shorter arc."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    tiny = sin_theta < 1e-12  # (nearly) equal rotations: the weights tend to 1 - alpha and alpha
    safe = np.where(tiny, 1.0, sin_theta)
    w0 = np.where(tiny, 1 - alpha, np.sin((1 - alpha) * theta) / safe)
    w1 = np.where(tiny, alpha, np.sin(alpha * theta) / safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def read_mvsec_poses(gt_path: str | os.PathLike, camera: str = "left") -> Trajectory:
    """MVSEC ground-truth poses ``davis/<camera>/pose`` (N, 4, 4) at ``davis/<camera>/pose_ts``
    of ``<seq>_gt.hdf5``, read as ``T_world_cam`` (spec §10: the ``/davis/left/pose`` topic that
    dvs_mcemvs uses; hand-eye = identity)."""
    path = os.fspath(gt_path)
    keys = (f"davis/{camera}/pose", f"davis/{camera}/pose_ts")
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in keys if not isinstance(handle.get(key), h5py.Dataset)]
            if missing:
                raise RecordingError(f"{path}: missing dataset '{missing[0]}'; pass an MVSEC <sequence>_gt.hdf5 file")
            poses, times = handle[keys[0]][()], handle[keys[1]][()]
    except FileNotFoundError:
        raise RecordingError(f"{path}: MVSEC ground-truth file not found") from None
    except OSError as err:
        raise RecordingError(f"{path}: cannot read as hdf5 (truncated or corrupt file?): {err}") from None
    return Trajectory.from_poses(times, poses, source=f"{path}:{keys[0]}")
