"""Synthetic indoor stereo recordings with camera poses, in the MVSEC hdf5 layout, for DERD-Net.

Why this exists: DERD-Net (``shared/spec/derd-net.md`` §1-§3) builds Disparity Space Images over
1-6.5 m from the events of two cameras and their known trajectory. The street demo
(:mod:`fuse.demo.synthetic`) has one camera, no poses and depths up to 80 m; this scene has what
DERD-Net reads, so its pipeline runs, and can be checked against exact depth, without MVSEC.

Scene: a closed room (floor, ceiling, four walls) with boxes and shelves along the walls. Every
surface carries sharpened fractal noise ("camouflage": edges of every size and orientation and no
period, so events are dense and matching them across views is unambiguous); the floor is also
tiled. The left camera hovers near the middle of the room like a hand-held or flying camera:
position and yaw / pitch / roll are each a base value plus a slow and a fast sinusoid
(:class:`Motion`: about 0.4 m/s and 15 deg/s on average, at most about 0.9 m/s and 35 deg/s,
chosen to resemble indoor_flying's slow drone flights, whose exact speeds are not in our sources).
It keeps more than 1 m from every surface (1.2 m from boxes and walls), and the far corners are
within about 6.5 m, so what it sees lies in DERD-Net's 1-6.5 m.

Cameras: MVSEC indoor_flying's two DAVIS as calibrated (:data:`INDOOR_LEFT`, :data:`INDOOR_RIGHT`:
raw intrinsics and Kalibr ``equidistant`` = OpenCV fisheye distortion), scaled to the image size,
the right one at the calibration's ``cam1.T_cn_cnm1`` (:data:`T_RIGHT_LEFT`: 0.0999 m baseline,
0.7 deg rotation). Events and frames are in the raw (distorted) pixels, as MVSEC's, so DERD-Net's
undistortion into ``P0`` (:data:`INDOOR_RECT`, spec §2.3) is exercised. (An ``equidistant`` model
with zero coefficients is no pinhole but an f-theta lens, so a pinhole render could not be declared
in MVSEC's format.) Each camera is ray cast (:class:`RoomRenderer`) at sub-frame times; events come
from the street demo's :class:`~fuse.demo.synthetic.EventSimulator` and frames from its day
sensor, both imported.

Files (names and dtypes as in MVSEC; times in seconds):

``<name>_data.hdf5``
    ``davis/{left,right}/events`` N x 4 float64 (x, y, t, p in {-1, +1}), sorted by t;
    ``davis/{left,right}/image_raw`` M x H x W uint8 with ``image_raw_ts`` (M float64) and
    ``image_raw_event_inds`` (M int64: first event with t >= the image time).
``<name>_gt.hdf5``
    ``davis/left/depth_image_raw`` K x H x W float32 metres (z-depth in the raw left camera, every
    pixel finite) with ``depth_image_raw_ts``; ``depth_image_rect`` + ``_ts``: the same in the
    undistorted pinhole camera ``P0`` with identity rectification (DERD-Net's virtual camera);
    ``davis/left/pose`` P x 4 x 4 float64 ``T_world_cam`` of the left camera with ``pose_ts``.
``<name>_calib.yaml``
    MVSEC's camchain format (Kalibr): ``cam0``, ``cam1`` (``intrinsics``, ``distortion_model``,
    ``distortion_coeffs``, ``projection_matrix`` = ``[P0 | 0]`` for both, ``rectification_matrix``
    = I, ``resolution``, ``rostopic``) and ``cam1.T_cn_cnm1``, as
    ``fuse.methods.derdnet.calibration`` reads it.

Conventions: camera x right, y down, z forward (Kalibr, OpenCV); world z up. ``pose`` is MVSEC's
``/davis/left/pose``: the left DAVIS's pose in the world, ``X_world = T · X_cam`` (MVSEC's data
format page: a PoseStamped; its calibration page: "the ground truth pose has been transformed into
the left DAVIS camera frame"; its ``tools/gt_flow/compute_flow.py`` builds 4 x 4 matrices from
those messages and takes ``inv(H0) · H1`` as the camera's motion; dvs_mcemvs reads the topic as
``T_w_cam``, spec §2.1).
``T_cn_cnm1`` maps cam0 (left) coordinates to cam1 (right) ones (MVSEC's calibration page).
Poses come at :data:`POSE_RATE` (MVSEC's rate is not in our sources). Linear / slerp
interpolation between them errs by under 0.1 mm at these speeds. The config's ``night`` and
``max_depth`` do not apply: there is no night variant, and every wall is nearer than 6.5 m.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import yaml
from tqdm import tqdm

from fuse.atomic import files_together
from fuse.demo.synthetic import (
    MVSEC_HEIGHT,
    MVSEC_WIDTH,
    TEXTURE_SIZE,
    EventCamera,
    RecordingConfig,
    _dataset,
    _day_frame,
    _fractal_mips,
    _pulses,
    _render_in_order,
    _rng,
    _timeline,
    first_event_indices,
)

__all__ = ["Lens", "INDOOR_LEFT", "INDOOR_RIGHT", "INDOOR_RECT", "T_RIGHT_LEFT", "POSE_RATE", "room_lenses",
           "Motion", "Room", "RoomRenderer", "CameraStream", "RoomRecording", "generate_room", "camchain", "save_room",
           "write_room"]


@dataclass(frozen=True)
class Lens:
    """A camera of MVSEC's calibration: ``intrinsics`` (fx, fy, cx, cy) at ``width`` x ``height`` and
    Kalibr's ``equidistant`` distortion (OpenCV fisheye: ``theta_d = theta (1 + k1 theta^2 + ... +
    k4 theta^8)``), or an ideal pinhole when ``distortion`` is None."""

    width: int
    height: int
    intrinsics: tuple[float, float, float, float]
    distortion: tuple[float, float, float, float] | None = None

    def scaled(self, width: int, height: int, square: bool = False) -> Lens:
        """The lens for another image size (pixel centres at integer coordinates); ``square`` keeps
        fy = fx, as DERD-Net's virtual camera assumes (``DsiGrid.for_camera`` uses fx for both axes)."""
        sx, sy = width / self.width, height / self.height
        fx, fy, cx, cy = self.intrinsics
        focal_y = fx * sx if square else fy * sy
        return Lens(width, height, (fx * sx, focal_y, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5), self.distortion)

    @property
    def K(self) -> np.ndarray:
        fx, fy, cx, cy = self.intrinsics
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def normalized(self) -> tuple[np.ndarray, np.ndarray]:
        """``x / z`` and ``y / z`` (H, W) of the ray through every pixel."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        if self.distortion is None:
            fx, fy, cx, cy = self.intrinsics
            return (u - cx) / fx, (v - cy) / fy
        pixels = np.stack([u.ravel(), v.ravel()], axis=-1)[None]
        rays = cv2.fisheye.undistortPoints(pixels, self.K, np.array(self.distortion).reshape(1, 4))[0]
        return rays[:, 0].reshape(u.shape), rays[:, 1].reshape(u.shape)

    def pixels(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates of rays with ``x / z = a``, ``y / z = b`` (the forward model)."""
        if self.distortion is not None:
            r = np.hypot(a, b)
            theta = np.arctan(r)
            k1, k2, k3, k4 = self.distortion
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
            scale = np.where(r > 0, theta_d / np.maximum(r, 1e-12), 1.0)
            a, b = a * scale, b * scale
        fx, fy, cx, cy = self.intrinsics
        return fx * a + cx, fy * b + cy


# MVSEC camchain-imucam-indoor_flying.yaml (the values of spec §2.3 and tests/test_derdnet_dsi.py):
# the left and right DAVIS (cam0, cam1: intrinsics, distortion_coeffs) and cam0's projection_matrix.
INDOOR_LEFT = Lens(346, 260, (226.38018519795807, 226.15002947047415, 173.6470807871759, 133.73271487507847),
                   (-0.048031442223833355, 0.011330957517194437, -0.055378166304281135, 0.021500973881459395))
INDOOR_RIGHT = Lens(346, 260, (226.0181418548734, 225.7869434267677, 174.5433576736815, 124.21627572590607),
                    (-0.04846669832871334, 0.010092844338123635, -0.04293073765014637, 0.005194706897326005))
INDOOR_RECT = Lens(346, 260, (199.6530123165822, 199.6530123165822, 177.43276376280926, 126.81215684365904))
# The same file's cam1.T_cn_cnm1 (left -> right coordinates; baseline 0.09988 m, spec §2.3).
T_RIGHT_LEFT = np.array([
    [0.9999285439274112, 0.011088072985503046, -0.004467849222081981, -0.09988137641750752],
    [-0.011042817783611191, 0.9998887260774646, 0.01002953830336461, -0.0003927067773089277],
    [0.004578560319692358, -0.009979483987103495, 0.9999397215256256, 1.8880107752680777e-06],
    [0.0, 0.0, 0.0, 1.0],
])
POSE_RATE = 100.0  # poses per second in davis/left/pose

NEAR = 0.05  # metres; boxes are clipped here before projecting their outline (all lie > 1 m away)
SHARPNESS = 8.0  # tanh gain on the unit-variance noise: blotches with crisp, anti-aliased edges
AMBIENT = 0.55  # share of the light that does not depend on the surface's orientation
LIGHT = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])  # toward the main light (world)
TILE = 0.5  # floor tile period [m]
GROUT = 0.015  # floor grout width [m]
DAY_NOISE_RATE = 0.05  # background events per pixel per second, as the street demo's day variant
FLOOR = 4  # surface index of the floor: 2 * axis (z) + 0 (low side)
SHADE, CONTRAST, TEXELS, OFFSET_U, OFFSET_V, AXIS = range(6)  # rows of Room.look

# The left camera looking along world +y, level: columns are the camera's x (right), y (down),
# z (forward) axes in world coordinates.
LEVEL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# Per channel (x, y, z [m], yaw, pitch, roll [rad]): amplitudes and shortest periods [s] of the
# slow and the fast sinusoid.
_AMPLITUDE = np.array([[0.35, 0.12], [0.35, 0.12], [0.15, 0.05], [0.6, 0.08], [0.12, 0.04], [0.10, 0.03]])
_PERIOD = np.array([[6.0, 2.0], [6.0, 2.0], [4.0, 1.5], [9.0, 2.0], [4.0, 1.5], [4.0, 1.5]])

_CORNERS = ((np.arange(8)[:, None] >> np.arange(3)) & 1).astype(bool)  # (8, 3): hi side per axis
_EDGES = np.array([(i, i | 1 << k) for i in range(8) for k in range(3) if not i >> k & 1])  # (12, 2)
_SIDE_SAMPLES = 33  # points per side of a box's outline mapped through the lens (plus a pixel of margin)


def room_lenses(height: int = MVSEC_HEIGHT, width: int = MVSEC_WIDTH) -> tuple[Lens, Lens, Lens]:
    """Left and right raw lenses and the undistorted pinhole ``P0`` (square pixels), at this size."""
    return (INDOOR_LEFT.scaled(width, height), INDOOR_RIGHT.scaled(width, height),
            INDOOR_RECT.scaled(width, height, square=True))


def _rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` by ``angle`` about coordinate axis 0, 1 or 2."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    out = np.zeros(np.shape(angle) + (3, 3))
    out[..., axis, axis] = 1.0
    out[..., i, i], out[..., i, j], out[..., j, i], out[..., j, j] = c, -s, s, c
    return out


@dataclass(frozen=True)
class Motion:
    """Trajectory of the left camera: x, y, z [m], yaw, pitch, roll [rad], each ``base`` plus two
    sinusoids (a slow sweep and a faster wobble), so velocities are smooth and bounded."""

    base: np.ndarray  # (6,)
    amplitude: np.ndarray  # (6, 2)
    period: np.ndarray  # (6, 2) seconds
    phase: np.ndarray  # (6, 2) radians

    @classmethod
    def random(cls, rng: np.random.Generator) -> Motion:
        """Hovering within 0.7 m of the room's centre (x = y = 0) at 1.15-1.75 m height, facing any way."""
        base = np.array([*rng.uniform(-0.2, 0.2, 2), rng.uniform(1.35, 1.55), rng.uniform(-np.pi, np.pi), 0.0, 0.0])
        return cls(base, _AMPLITUDE * rng.uniform(0.8, 1.0, (6, 2)), _PERIOD * rng.uniform(1.0, 1.5, (6, 2)),
                   rng.uniform(0.0, 2 * np.pi, (6, 2)))

    def state(self, t: np.ndarray | float) -> np.ndarray:
        """``(..., 6)`` channel values at times ``t`` (seconds since the start)."""
        t = np.asarray(t, dtype=np.float64)[..., None, None]
        return self.base + (self.amplitude * np.sin(2 * np.pi * t / self.period + self.phase)).sum(-1)

    def pose(self, t: np.ndarray | float) -> np.ndarray:
        """``T_world_cam`` ``(..., 4, 4)``: yaw about world z, then pitch about the camera's x and roll
        about its optical axis."""
        x, y, z, yaw, pitch, roll = np.moveaxis(self.state(t), -1, 0)
        out = np.zeros(np.shape(x) + (4, 4))
        out[..., :3, :3] = _rotation(2, yaw) @ LEVEL @ _rotation(0, pitch) @ _rotation(2, roll)
        out[..., :3, 3] = np.stack([x, y, z], axis=-1)
        out[..., 3, 3] = 1.0
        return out


def _boxes(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes against the walls (floor-standing, or shelves higher up), at most 1.1 m deep."""
    box_lo, box_hi = [], []
    for _ in range(int(rng.integers(6, 11))):
        axis, side = int(rng.integers(2)), bool(rng.integers(2))  # the wall: its normal axis and side
        along = 1 - axis
        shelf = rng.random() < 0.25
        width = rng.uniform(0.4, 1.4)
        depth = rng.uniform(0.25, 0.4) if shelf else rng.uniform(0.3, 1.1)
        bottom = rng.uniform(0.9, 1.9) if shelf else 0.0
        height = rng.uniform(0.04, 0.3) if shelf else rng.uniform(0.3, 1.8)
        start = rng.uniform(lo[along], hi[along] - width)
        a, b = np.empty(3), np.empty(3)
        a[along], b[along] = start, start + width
        a[axis], b[axis] = (hi[axis] - depth, hi[axis]) if side else (lo[axis], lo[axis] + depth)
        a[2], b[2] = bottom, bottom + height
        box_lo.append(a)
        box_hi.append(b)
    return np.array(box_lo, np.float32), np.array(box_hi, np.float32)


def _appearance(rng: np.random.Generator, boxes: int) -> np.ndarray:
    """Per surface (:data:`SHADE`, :data:`CONTRAST`, :data:`TEXELS`, :data:`OFFSET_U`, :data:`OFFSET_V`,
    :data:`AXIS` of its normal).

    ``SHADE`` is albedo times light: ambient plus the main light on the face's normal (room faces
    point inwards, box faces outwards), fixed per face because the light is directional.
    """
    surfaces = 6 + 6 * boxes
    index = np.arange(surfaces)
    axis, high = index % 6 // 2, index % 2 == 1
    outwards = np.where(index < 6, ~high, high)
    facing = np.maximum(np.where(outwards, 1.0, -1.0) * LIGHT[axis], 0.0)
    look = np.empty((6, surfaces), np.float32)
    look[SHADE] = rng.uniform(0.25, 0.75, surfaces) * (AMBIENT + (1 - AMBIENT) * facing)
    look[CONTRAST] = rng.uniform(0.15, 0.3, surfaces)
    look[TEXELS] = rng.uniform(25.0, 40.0, surfaces)
    look[OFFSET_U:AXIS] = rng.uniform(0.0, TEXTURE_SIZE, (2, surfaces))
    look[AXIS] = axis
    return look


def _band_pass(mips: np.ndarray) -> np.ndarray:
    """Noise with blobs of about 2 to 30 texels (mip level 1 minus level 3), unit variance: fine
    detail for dense events, no large smooth areas."""
    band = mips[..., 1] - mips[..., 3]
    return np.ascontiguousarray(band / band.std(), dtype=np.float32)


def _face(on_x: np.ndarray, on_y: np.ndarray, high: list[np.ndarray]) -> np.ndarray:
    """``2 * axis + side`` (uint8) of the face a ray meets: ``on_x`` / ``on_y`` where it is the x / y
    face (else z), ``high[axis]`` where it is the face on the high side of that axis."""
    side = [h.view(np.uint8) for h in high]
    return np.where(on_x, side[0], np.where(on_y, side[1] + np.uint8(2), side[2] + np.uint8(4)))


@dataclass
class Room:
    """Geometry, surface appearance, texture and camera motion of one seed.

    Surfaces are indexed ``2 * axis + side`` for the room (side 1: the high wall of that axis)
    and ``6 + 6 * box + 2 * axis + side`` for the boxes (at most 10 boxes: indices fit uint8);
    ``look`` has one column per surface.
    """

    lo: np.ndarray  # (3,) float32 interior bounds
    hi: np.ndarray
    box_lo: np.ndarray  # (M, 3) float32
    box_hi: np.ndarray
    look: np.ndarray  # (6, 6 + 6M) float32, see _appearance
    motion: Motion
    texture: np.ndarray = field(repr=False)  # (TEXTURE_SIZE + 1)^2 float32 band-passed noise, wrap-padded

    @classmethod
    def generate(cls, seed: int) -> Room:
        rng = _rng(seed, 101)
        half = rng.uniform([3.0, 3.4], [3.6, 4.0])  # the camera stays within 0.7 m of the centre
        lo = np.array([-half[0], -half[1], 0.0], np.float32)
        hi = np.array([half[0], half[1], rng.uniform(2.8, 3.1)], np.float32)
        box_lo, box_hi = _boxes(rng, lo, hi)
        return cls(lo, hi, box_lo, box_hi, _appearance(_rng(seed, 102), len(box_lo)), Motion.random(_rng(seed, 103)),
                   _band_pass(_fractal_mips(_rng(seed, 104))))


class RoomRenderer:
    """Vectorized ray caster for one camera of the rig; ``T_left_cam`` places it on the left camera.

    Rays have camera z = 1, so ray parameters are z-depths. Every ray leaves the room through its
    nearest wall (slab test of the interior); each box is slab-tested only on the pixels of its
    projected outline, and a nearer entry replaces the hit. Per-pixel arrays are (H, W), one per
    coordinate, so box outlines are plain slices.
    """

    def __init__(self, room: Room, lens: Lens, T_left_cam: np.ndarray) -> None:
        self.room, self.lens, self.T_left_cam = room, lens, np.asarray(T_left_cam, dtype=np.float64)
        a, b = lens.normalized()
        self.a, self.b = a.astype(np.float32), b.astype(np.float32)
        self.extent = (a.min(), a.max(), b.min(), b.max())

    def pose(self, t: float) -> np.ndarray:
        """``T_world_cam`` of this camera at ``t`` seconds since the start."""
        return self.room.motion.pose(t) @ self.T_left_cam

    def trace(self, t: float) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
        """Z-depth (H, W) float32, surface index (H, W), world ray components (3 x (H, W)), origin (3,)."""
        T = self.pose(t)
        R, origin = T[:3, :3].astype(np.float32), T[:3, 3].astype(np.float32)
        rays = tuple(R[k, 0] * self.a + R[k, 1] * self.b + R[k, 2] for k in range(3))
        inverse = tuple(1 / np.where(d == 0, np.float32(1e-30), d) for d in rays)  # a parallel ray: +1e30
        positive = [d >= 0 for d in rays]
        room = self.room
        exits = [np.where(p, hi - o, lo - o) * inv
                 for p, inv, lo, hi, o in zip(positive, inverse, room.lo, room.hi, origin)]
        depth = np.minimum(np.minimum(exits[0], exits[1]), exits[2])
        surface = _face(exits[0] == depth, exits[1] == depth, positive)
        for box, window in enumerate(self._outlines(T)):
            if window is not None:
                self._enter_box(box, window, origin, rays, inverse, depth, surface)
        return depth, surface, rays, origin

    def _outlines(self, T: np.ndarray) -> list[tuple[slice, slice] | None]:
        """Per box, the rows and columns of the image rectangle it can cover (None: out of view).

        A box's corners in front of the NEAR plane and its edges' crossings of it bound it in
        ``x / z``, ``y / z`` (straight lines stay straight there); that rectangle, cut to the lens's
        view, is mapped to pixels along its sides (through a fisheye, straight sides bend). All
        boxes at once: a few array operations instead of a few per box.
        """
        room, lens = self.room, self.lens
        corners = np.where(_CORNERS, room.box_hi[:, None], room.box_lo[:, None])  # (M, 8, 3)
        cam = (corners - T[:3, 3]) @ T[:3, :3]  # R^T (X - o): camera coordinates
        p, q = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (NEAR - p[..., 2]) / (q[..., 2] - p[..., 2])
            points = np.concatenate([cam, p + s[..., None] * (q - p)], axis=1)  # (M, 20, 3)
            valid = np.concatenate([cam[..., 2] >= NEAR, (s > 0) & (s < 1)], axis=1)
            a, b = points[..., 0] / points[..., 2], points[..., 1] / points[..., 2]
        a_min, a_max, b_min, b_max = self.extent
        a0 = np.maximum(np.where(valid, a, np.inf).min(axis=1), a_min)
        a1 = np.minimum(np.where(valid, a, -np.inf).max(axis=1), a_max)
        b0 = np.maximum(np.where(valid, b, np.inf).min(axis=1), b_min)
        b1 = np.minimum(np.where(valid, b, -np.inf).max(axis=1), b_max)
        seen = (a0 <= a1) & (b0 <= b1)
        if not seen.any():
            return [None] * len(seen)
        t = np.linspace(0.0, 1.0, _SIDE_SAMPLES)
        a0, a1, b0, b1 = (c[seen, None] for c in (a0, a1, b0, b1))
        along_a, along_b = a0 + t * (a1 - a0), b0 + t * (b1 - b0)
        u, v = lens.pixels(np.concatenate(np.broadcast_arrays(along_a, along_a, a0, a1), axis=1),
                           np.concatenate(np.broadcast_arrays(b0, b1, along_b, along_b), axis=1))
        c0 = np.maximum(np.floor(u.min(axis=1)) - 1, 0).astype(int)
        c1 = np.minimum(np.ceil(u.max(axis=1)) + 2, lens.width).astype(int)
        r0 = np.maximum(np.floor(v.min(axis=1)) - 1, 0).astype(int)
        r1 = np.minimum(np.ceil(v.max(axis=1)) + 2, lens.height).astype(int)
        windows: list[tuple[slice, slice] | None] = [None] * len(seen)
        for i, box in enumerate(np.flatnonzero(seen)):
            if c0[i] < c1[i] and r0[i] < r1[i]:
                windows[box] = (slice(r0[i], r1[i]), slice(c0[i], c1[i]))
        return windows

    def _enter_box(self, box: int, window: tuple[slice, slice], origin: np.ndarray, rays: tuple[np.ndarray, ...],
                   inverse: tuple[np.ndarray, ...], depth: np.ndarray, surface: np.ndarray) -> None:
        """Slab test of one box on the pixels of ``window``; nearer entries overwrite depth and surface."""
        lo, hi = self.room.box_lo[box] - origin, self.room.box_hi[box] - origin
        positive = [d[window] >= 0 for d in rays]
        near = [np.where(p, lo[k], hi[k]) * inverse[k][window] for k, p in enumerate(positive)]
        far = [np.where(p, hi[k], lo[k]) * inverse[k][window] for k, p in enumerate(positive)]
        enter = np.maximum(np.maximum(near[0], near[1]), near[2])
        current = depth[window]
        hit = (enter <= np.minimum(np.minimum(far[0], far[1]), far[2])) & (enter > 0) & (enter < current)
        current[hit] = enter[hit]
        face = np.uint8(6 + 6 * box) + _face(near[0] == enter, near[1] == enter, [~p for p in positive])
        surface[window][hit] = face[hit]

    def radiance(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Linear radiance (H, W) float32 in about [0.05, 1] and the z-depth (H, W) float32."""
        depth, surface, rays, origin = self.trace(t)
        x, y, z = (o + depth * d for o, d in zip(origin, rays))
        shade, contrast, texels, offset_u, offset_v, axis = (np.take(row, surface) for row in self.room.look)
        u = np.where(axis == 0, y, x) * texels + offset_u
        v = np.where(axis == 2, y, z) * texels + offset_v
        radiance = shade * (1 + contrast * np.tanh(SHARPNESS * self._texture(u, v)))
        floor = surface == FLOOR
        # Metres per pixel on the floor: z / f along the ray, stretched by the grazing angle.
        dx, dy, dz = (d[floor] for d in rays)
        footprint = depth[floor] * (dx * dx + dy * dy + dz * dz) / (self.lens.intrinsics[0] * np.abs(dz))
        x, y = x[floor], y[floor]
        tiles = 1 - (1 - _pulses(x, TILE, GROUT, footprint)) * (1 - _pulses(y, TILE, GROUT, footprint))
        radiance[floor] *= 1 - 0.5 * tiles
        return radiance.astype(np.float32, copy=False), depth

    def _texture(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Bilinear lookup of texel coordinates (H, W) in the wrapped noise image."""
        size = np.float32(TEXTURE_SIZE)
        u, v = ((c - np.floor(c / size) * size).astype(np.float32, copy=False) for c in (u, v))
        return cv2.remap(self.room.texture, u, v, cv2.INTER_LINEAR)

    def depth(self, t: float) -> np.ndarray:
        """Z-depth (H, W) float32 metres."""
        return self.trace(t)[0]


@dataclass
class CameraStream:
    """One DAVIS camera's arrays, named after their MVSEC datasets."""

    events: np.ndarray
    image_raw: np.ndarray
    image_raw_ts: np.ndarray
    image_raw_event_inds: np.ndarray


@dataclass
class RoomRecording:
    """Arrays of one stereo recording, named after their MVSEC datasets."""

    left: CameraStream
    right: CameraStream
    depth_image_raw: np.ndarray
    depth_image_rect: np.ndarray
    depth_ts: np.ndarray  # of both depth datasets
    pose: np.ndarray
    pose_ts: np.ndarray
    lenses: tuple[Lens, Lens, Lens]  # left, right, rectified (room_lenses)
    T_right_left: np.ndarray
    config: RecordingConfig


def _camera_stream(renderer: RoomRenderer, config: RecordingConfig, image_t: np.ndarray, sub_t: np.ndarray,
                   camera_index: int, workers: int, progress: bool) -> CameraStream:
    """Events of every sub-frame interval and a frame at every image time, for one camera."""
    noise_rate = DAY_NOISE_RATE if config.noise_rate is None else config.noise_rate
    frame_rng = _rng(config.seed, 105, camera_index)
    images = np.empty((len(image_t), renderer.lens.height, renderer.lens.width), dtype=np.uint8)
    dvs = EventCamera(config.contrast_threshold, config.threshold_spread, noise_rate,
                      _rng(config.seed, 106, camera_index))
    renders = _render_in_order(renderer, sub_t, workers)
    desc = ("left", "right")[camera_index]
    for i, radiance in enumerate(tqdm(renders, total=len(sub_t), desc=desc, disable=not progress)):
        dvs.add(radiance, float(sub_t[i]))
        j, rest = divmod(i, config.substeps)
        if rest == 0 and j < len(image_t):
            images[j] = _day_frame(radiance, frame_rng)
    events = dvs.events(config.t_start)
    image_ts = image_t + config.t_start
    return CameraStream(events, images, image_ts, first_event_indices(events, image_ts))


def generate_room(config: RecordingConfig, workers: int = 2, progress: bool = False) -> RoomRecording:
    """Render both cameras' events and frames, the left depth and the left poses of one recording.

    Timing as the street demo (``_timeline``: images, sub-frames, 20 Hz depth). The result depends
    on ``config`` only, not on ``workers``: every random draw comes from a stream seeded by
    ``config.seed``, consumed in time order.
    """
    if config.frames < 1:
        raise ValueError(f"frames must be >= 1, got {config.frames}")
    if config.night:
        raise ValueError("the room scene has no night variant")
    lenses = room_lenses(config.height, config.width)
    depth_t, image_t, sub_t = _timeline(config)
    room = Room.generate(config.seed)
    left_cam, right_cam = np.eye(4), np.linalg.inv(T_RIGHT_LEFT)
    renderers = [RoomRenderer(room, lens, T) for lens, T in zip(lenses, (left_cam, right_cam, left_cam))]
    left, right = (_camera_stream(renderers[i], config, image_t, sub_t, i, workers, progress) for i in range(2))
    # Poses from the first sub-frame to one beyond the last: dvs_mcemvs needs t < the last pose time.
    pose_t = np.arange(int(math.ceil(sub_t[-1] * POSE_RATE)) + 2) / POSE_RATE
    return RoomRecording(
        left=left,
        right=right,
        depth_image_raw=np.stack([renderers[0].depth(float(t)) for t in depth_t]),
        depth_image_rect=np.stack([renderers[2].depth(float(t)) for t in depth_t]),
        depth_ts=depth_t + config.t_start,
        pose=room.motion.pose(pose_t),
        pose_ts=pose_t + config.t_start,
        lenses=lenses,
        T_right_left=T_RIGHT_LEFT.copy(),
        config=config,
    )


def camchain(lenses: tuple[Lens, Lens, Lens], T_right_left: np.ndarray) -> dict[str, Any]:
    """MVSEC's camchain yaml content for (left, right, rectified) lenses: both cameras with the
    rectified ``P0`` as ``projection_matrix`` and identity ``rectification_matrix`` (the synthetic
    rig is not stereo-rectified; dvs_mcemvs ignores R and uses cam0's ``P`` for cam1, spec §2.3)."""
    fx, fy, cx, cy = lenses[2].intrinsics
    P = [[fx, 0.0, cx, 0.0], [0.0, fy, cy, 0.0], [0.0, 0.0, 1.0, 0.0]]

    def cam(lens: Lens, topic: str) -> dict[str, Any]:
        return {"camera_model": "pinhole", "distortion_model": "equidistant",
                "distortion_coeffs": list(lens.distortion), "intrinsics": list(lens.intrinsics),
                "projection_matrix": P, "rectification_matrix": np.eye(3).tolist(),
                "resolution": [lens.width, lens.height], "rostopic": topic}

    return {"cam0": cam(lenses[0], "/davis/left/image_raw"),
            "cam1": {**cam(lenses[1], "/davis/right/image_raw"),
                     "T_cn_cnm1": np.asarray(T_right_left, dtype=float).tolist()}}


def _write_stream(group: h5py.Group, stream: CameraStream) -> None:
    _dataset(group, "events", stream.events, 1 << 16)
    _dataset(group, "image_raw", stream.image_raw, 1)
    _dataset(group, "image_raw_ts", stream.image_raw_ts, 1 << 12)
    _dataset(group, "image_raw_event_inds", stream.image_raw_event_inds, 1 << 12)


def save_room(recording: RoomRecording, out_dir: str | os.PathLike, name: str) -> tuple[Path, Path, Path]:
    """Write ``<name>_data.hdf5``, ``<name>_gt.hdf5`` and ``<name>_calib.yaml`` under temporary
    names, then rename them into place, so readers never see a half-written file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    finals = (out / f"{name}_data.hdf5", out / f"{name}_gt.hdf5", out / f"{name}_calib.yaml")
    with files_together(finals) as temps:
        attrs = {"generator": "fuse.demo.room", "seed": recording.config.seed}
        with h5py.File(temps[0], "w", track_order=False) as f:
            f.attrs.update(attrs)
            _write_stream(f.create_group("davis/left"), recording.left)
            _write_stream(f.create_group("davis/right"), recording.right)
        with h5py.File(temps[1], "w", track_order=False) as f:
            f.attrs.update(attrs)
            left = f.create_group("davis/left")
            for kind in ("rect", "raw"):
                _dataset(left, f"depth_image_{kind}", getattr(recording, f"depth_image_{kind}"), 1)
                _dataset(left, f"depth_image_{kind}_ts", recording.depth_ts, 1 << 12)
            _dataset(left, "pose", recording.pose, 1 << 10)
            _dataset(left, "pose_ts", recording.pose_ts, 1 << 12)
        temps[2].write_text(yaml.safe_dump(camchain(recording.lenses, recording.T_right_left)))
    return finals


def write_room(out_dir: str | os.PathLike, name: str, frames: int = 200, seed: int = 0, height: int = MVSEC_HEIGHT,
               width: int = MVSEC_WIDTH, workers: int = 2, progress: bool = False,
               **options: float) -> tuple[Path, Path, Path]:
    """Generate a room recording and write it; returns (data_path, gt_path, calibration_path).

    ``options`` are further :class:`~fuse.demo.synthetic.RecordingConfig` fields (rates, thresholds, ...).
    """
    config = RecordingConfig(frames=frames, seed=seed, height=height, width=width, **options)
    return save_room(generate_room(config, workers=workers, progress=progress), out_dir, name)
