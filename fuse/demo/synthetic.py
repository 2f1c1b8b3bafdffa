"""Procedural driving recordings written in the MVSEC hdf5 layout (spec §7).

Why this exists: users without MVSEC, a GPU or model weights still need data on which the
whole FUSE pipeline runs and on which depth is learnable both from images and from events.
A recording is a camera driving down a street of box-shaped buildings, parked vans, walls and
lamp posts, rendered by a vectorized ray caster (ground plane + vertical boxes + sky). The same
scene generator serves the "day" and the "night" variant: a seed fixes the layout, the
trajectory and the textures, ``night`` only changes the lighting and the frame sensor.

Depth cues in the images: ground-plane perspective, texture scale and blur (mip-mapped
textures), distance fog and box ground-contact lines. Events are simulated from the
log-radiance of sub-frame renders (per-pixel reference levels and thresholds, several events
per crossing, timestamps interpolated between sub-frames), so their density follows motion
parallax. At night the frame camera sees a dark, low-contrast, motion-blurred and noisy image
while the events still come from the (high dynamic range) scene radiance.

Files (dtypes as in MVSEC):

``<name>_data.hdf5``
    ``davis/left/events`` N×4 float64 (x, y, t [s], p ∈ {−1, +1}), sorted by t;
    ``davis/left/image_raw`` M×H×W uint8; ``davis/left/image_raw_ts`` M float64 [s];
    ``davis/left/image_raw_event_inds`` M int64, index of the first event with t ≥ the image
    timestamp (events between images i−1 and i are ``events[inds[i-1]:inds[i]]``).
``<name>_gt.hdf5``
    ``davis/left/depth_image_rect`` K×H×W float32 metres (NaN = no depth: sky, and anything
    farther than ``max_depth``, like a LiDAR out of range) with ``depth_image_rect_ts``;
    ``depth_image_raw`` / ``depth_image_raw_ts`` are copies of the rectified ones (the
    synthetic camera has no distortion).

Not written: IMU, right DAVIS, VI-sensor, velodyne, ``blended_image_rect``, ``odometry``,
``pose`` and ``flow_dist``.
"""
from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
from tqdm import tqdm

from fuse.atomic import files_together
from fuse.data.constants import DATASETS

MVSEC_HEIGHT = 260
MVSEC_WIDTH = 346
# Left DAVIS of MVSEC outdoor_day (fx, fy, cx, cy) at 346x260.
MVSEC_INTRINSICS = (226.38, 226.15, 173.65, 133.73)

CAMERA_HEIGHT = 1.65  # metres above the road; every box is taller, so no box top is visible
LANE_X = 1.9  # the camera drives in the right lane; obstacles keep clear of LANE_X ± 1.1 m
NEAR = 0.2
FAR = 160.0  # boxes beyond this are not traced (fog has swallowed them)

TEXTURE_SIZE = 512
MIP_LEVELS = 4  # blur sigma 0, 1, 4, 16 texels: one 4-channel image, one remap per render
GROUND_TEXELS = 40.0  # texture texels per metre on the ground
SKY_TEXELS = 300.0  # texels per radian on the sky
HORIZON = 0.8  # day sky radiance at the horizon, also the fog colour
NIGHT_SKY = 0.03  # city sky glow, also the colour of the night haze
LOG_EPS = 2e-2  # dark-current floor of the event pixel's log response: dims contrast at night

SKY, GROUND, BOX = 0, 1, 2
BUILDING, WALL, POLE, VEHICLE = 0, 1, 2, 3


@dataclass(frozen=True)
class Camera:
    """Pinhole camera, no distortion; intrinsics scale with the image size."""

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def mvsec_like(cls, height: int = MVSEC_HEIGHT, width: int = MVSEC_WIDTH) -> Camera:
        sx, sy = width / MVSEC_WIDTH, height / MVSEC_HEIGHT
        fx, fy, cx, cy = MVSEC_INTRINSICS
        return cls(height, width, fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)


@dataclass(frozen=True)
class RecordingConfig:
    """Everything that determines a recording's bytes."""

    frames: int = 200
    seed: int = 0
    night: bool = False
    height: int = MVSEC_HEIGHT
    width: int = MVSEC_WIDTH
    image_rate: float = 40.0
    depth_rate: float = 20.0
    depth_offset: float = 0.004  # depth timestamps lag the nearest image by this much [s]
    substeps: int = 10  # sub-frame renders per image interval, for the event simulator
    contrast_threshold: float = 0.2
    threshold_spread: float = 0.03  # relative per-pixel threshold variation
    noise_rate: float | None = None  # background events per pixel per second (None: by variant)
    max_depth: float = DATASETS["mvsec"].max_depth
    t_start: float = 1000.0
    warmup: float = 0.1  # seconds of events and images before the first depth frame


@dataclass
class Recording:
    """Arrays of one recording, named after their MVSEC datasets."""

    events: np.ndarray
    image_raw: np.ndarray
    image_raw_ts: np.ndarray
    image_raw_event_inds: np.ndarray
    depth_image_rect: np.ndarray
    depth_image_rect_ts: np.ndarray
    camera: Camera
    config: RecordingConfig


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """Independent, reproducible random streams (layout, textures, sensor noise, ...)."""
    return np.random.default_rng([seed, *stream])


# ----------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class Trajectory:
    """Forward driving with a varying speed, a lateral sway and a look-around yaw."""

    speed: float
    speed_var: float
    speed_period: float
    speed_phase: float
    sway: float
    sway_period: float
    sway_phase: float
    look: float
    look_period: float
    look_phase: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Trajectory:
        return cls(
            speed=rng.uniform(5.5, 8.0), speed_var=0.12, speed_period=rng.uniform(6.0, 10.0),
            speed_phase=rng.uniform(0, 2 * np.pi), sway=rng.uniform(0.25, 0.45),
            sway_period=rng.uniform(5.0, 8.0), sway_phase=rng.uniform(0, 2 * np.pi),
            look=np.deg2rad(rng.uniform(2.0, 4.0)), look_period=rng.uniform(3.0, 6.0),
            look_phase=rng.uniform(0, 2 * np.pi),
        )

    def pose(self, t: float) -> tuple[float, float, float]:
        """Camera (X, Z, yaw) at ``t`` seconds after the start; yaw > 0 turns right."""
        w = 2 * np.pi / self.speed_period
        z = self.speed * (t - self.speed_var / w * (np.cos(w * t + self.speed_phase) - np.cos(self.speed_phase)))
        ws = 2 * np.pi / self.sway_period
        x = LANE_X + self.sway * np.sin(ws * t + self.sway_phase)
        forward = self.speed * (1 + self.speed_var * np.sin(w * t + self.speed_phase))
        heading = np.arctan2(self.sway * ws * np.cos(ws * t + self.sway_phase), forward)
        yaw = heading + self.look * np.sin(2 * np.pi * t / self.look_period + self.look_phase)
        return float(x), float(z), float(yaw)


@dataclass
class Boxes:
    """Vertical boxes standing on the ground, one row per box.

    Surface detail is a grid of rectangles ("windows", "bricks", a van's window band) of
    albedo ``win_albedo`` on a textured base of albedo ``albedo``.
    """

    x0: np.ndarray
    x1: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    top: np.ndarray
    kind: np.ndarray
    albedo: np.ndarray
    contrast: np.ndarray
    tex_scale: np.ndarray
    tex_u: np.ndarray
    tex_v: np.ndarray
    win_period_s: np.ndarray
    win_width_s: np.ndarray
    win_period_y: np.ndarray
    win_width_y: np.ndarray
    win_y0: np.ndarray
    win_y1: np.ndarray
    win_albedo: np.ndarray


class _BoxList:
    """Collects boxes while a layout is generated."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, ...]] = []

    def add(self, rng: np.random.Generator, x0: float, x1: float, z0: float, z1: float, top: float,
            kind: int) -> None:
        albedo = rng.uniform(0.25, 0.65)
        contrast = rng.uniform(0.05, 0.12)
        scale = rng.uniform(30.0, 60.0)
        tex_u, tex_v = rng.uniform(0, TEXTURE_SIZE, 2)
        if kind == BUILDING:
            ps, py = rng.uniform(2.5, 4.5), rng.uniform(2.8, 3.6)
            win = (ps, ps * rng.uniform(0.35, 0.65), py, py * rng.uniform(0.35, 0.55), rng.uniform(1.0, 2.5),
                   top - 1.0, albedo * (rng.uniform(0.4, 0.65) if rng.random() < 0.8 else rng.uniform(1.3, 1.6)))
        elif kind == WALL:
            albedo = rng.uniform(0.35, 0.6)  # mortar; the "windows" are bricks
            ps, py = rng.uniform(0.4, 0.6), rng.uniform(0.15, 0.25)
            win = (ps, ps - 0.03, py, py - 0.03, 0.0, top, albedo * rng.uniform(0.8, 1.2))
        elif kind == VEHICLE:
            albedo = rng.uniform(0.15, 0.85)
            win = (1.0, 1.0, 100.0, rng.uniform(0.5, 0.7), top - rng.uniform(1.1, 1.3), top - 0.2, albedo * 0.4)
        else:
            albedo, contrast = rng.uniform(0.1, 0.25), 0.1
            win = (1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
        self.rows.append((min(x0, x1), max(x0, x1), z0, z1, top, kind, albedo, contrast, scale, tex_u, tex_v, *win))

    def build(self) -> Boxes:
        cols = np.array(self.rows, dtype=np.float64).T
        names = list(Boxes.__dataclass_fields__)
        geometry = ("x0", "x1", "z0", "z1", "top")
        values = {name: cols[i] if name in geometry else cols[i].astype(np.float32) for i, name in enumerate(names)}
        values["kind"] = cols[names.index("kind")].astype(np.int64)
        return Boxes(**values)


SEGMENT_LENGTH = 40.0


def _segment_layout(seed: int, index: int, boxes: _BoxList, lamps: list[tuple[float, float, float]]) -> None:
    """Populate the street between Z = index·40 m and (index+1)·40 m.

    Each segment draws from its own random stream, so a longer recording of the same seed
    starts with the same street.
    """
    rng = _rng(seed, 3, index + 1000)
    z_begin, z_end = index * SEGMENT_LENGTH, (index + 1) * SEGMENT_LENGTH
    for side in (-1.0, 1.0):
        z = z_begin + rng.uniform(0.0, 3.0)
        while z < z_end - 3.0:
            length = min(rng.uniform(6.0, 22.0), z_end - z)
            if rng.random() < 0.15:
                boxes.add(rng, side * 8.8, side * 9.2, z, z + length, rng.uniform(2.0, 3.0), WALL)
            else:
                inner = rng.uniform(9.0, 14.0)
                boxes.add(rng, side * inner, side * (inner + rng.uniform(6.0, 16.0)), z, z + length,
                          rng.uniform(5.0, 25.0), BUILDING)
            z += length + (rng.uniform(3.0, 10.0) if rng.random() < 0.3 else rng.uniform(0.0, 1.5))
        z = z_begin + rng.uniform(0.0, 6.0)
        while z < z_end - 5.0:
            length = min(rng.uniform(15.0, 40.0), z_end - z)
            inner = rng.uniform(26.0, 40.0)
            boxes.add(rng, side * inner, side * (inner + rng.uniform(10.0, 30.0)), z, z + length,
                      rng.uniform(12.0, 40.0), BUILDING)
            z += length + rng.uniform(0.0, 6.0)
        lamp_z = z_begin + rng.uniform(0.0, SEGMENT_LENGTH / 2)
        for z in (lamp_z, lamp_z + SEGMENT_LENGTH / 2):
            boxes.add(rng, side * 6.6, side * 6.85, z, z + 0.25, 6.8, POLE)
            lamps.append((side * 6.2, 6.6, z + 0.12))
        for z in np.arange(z_begin, z_end - 6.0, 7.0):
            if rng.random() < 0.4:
                start = z + rng.uniform(0.0, 1.5)
                boxes.add(rng, side * 3.9, side * 5.8, start, start + rng.uniform(4.4, 5.5), rng.uniform(1.9, 2.7), VEHICLE)
            if rng.random() < 0.1:
                start = z + rng.uniform(0.0, 1.0)
                boxes.add(rng, side * 7.2, side * 7.35, start, start + 0.15, rng.uniform(2.2, 3.2), POLE)
        if side < 0 and rng.random() < 0.3:
            start = z_begin + rng.uniform(0.0, SEGMENT_LENGTH - 8.0)
            boxes.add(rng, -3.2, -1.3, start, start + rng.uniform(5.0, 8.0), rng.uniform(2.5, 3.5), VEHICLE)


def _fractal_mips(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Tileable multi-scale noise (amplitude ∝ 1/f, like natural images) and its mip levels.

    Level l is blurred with sigma = 4^l / 4 texels (level 0 nearly sharp), the prefilter for a
    footprint of 4^l texels per pixel, so far-away textures blur instead of aliasing into
    event storms. Returned as one (size+1)² × 4 float32 image, wrap-padded by one texel for
    bilinear lookups.
    """
    f = np.fft.fftfreq(size)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((size, size))) / radius
    spectrum[0, 0] = 0.0
    spectrum /= np.fft.ifft2(spectrum).real.std()
    levels = [np.fft.ifft2(spectrum * np.exp(-2 * (np.pi * (4.0 ** level / 4) * radius) ** 2)).real
              for level in range(MIP_LEVELS)]
    return np.pad(np.stack(levels, axis=-1), ((0, 1), (0, 1), (0, 0)), mode="wrap").astype(np.float32)


@dataclass
class Scene:
    """Street layout, lamps, trajectory and textures of one seed."""

    seed: int
    boxes: Boxes
    lamps: np.ndarray
    trajectory: Trajectory
    mips: np.ndarray = field(repr=False)

    @classmethod
    def generate(cls, seed: int, duration: float) -> Scene:
        """Layout long enough for ``duration`` seconds of driving plus the view ahead."""
        trajectory = Trajectory.random(_rng(seed, 1))
        z_end = trajectory.pose(duration)[1] + FAR
        boxes = _BoxList()
        lamps: list[tuple[float, float, float]] = []
        for index in range(-1, int(math.ceil(z_end / SEGMENT_LENGTH))):
            _segment_layout(seed, index, boxes, lamps)
        return cls(seed, boxes.build(), np.array(lamps, dtype=np.float32), trajectory, _fractal_mips(_rng(seed, 2)))


# ----------------------------------------------------------------------------- rendering


def _interval(x: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float, footprint: np.ndarray) -> np.ndarray:
    """Coverage of [lo, hi) by a pixel whose box footprint is centred at x (anti-aliased)."""
    half = footprint / 2
    return (np.minimum(np.maximum(x + half, lo), hi) - np.minimum(np.maximum(x - half, lo), hi)) / footprint


def _pulses(x: np.ndarray, period: np.ndarray | float, width: np.ndarray | float, footprint: np.ndarray) -> np.ndarray:
    """Box-filtered coverage of the pulse train [k·period, k·period + width)."""

    def integral(y: np.ndarray) -> np.ndarray:
        k = np.floor(y / period)
        return k * width + np.minimum(np.maximum(y - k * period, 0.0), width)

    half = footprint / 2
    return (integral(x + half) - integral(x - half)) / footprint


def _ground_albedo(x: np.ndarray, z: np.ndarray, fp_x: np.ndarray, fp_z: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Asphalt with lane markings, a tiled sidewalk and a grass verge."""
    fp_x, fp_z = np.maximum(fp_x, 1e-3), np.maximum(fp_z, 1e-3)
    ax = np.abs(x)
    road = _interval(ax, 0.0, 6.0, fp_x)
    walk = _interval(ax, 6.0, 8.5, fp_x)
    verge = 1.0 - road - walk
    tiles = 1 - (1 - _pulses(x, 1.0, 0.06, fp_x)) * (1 - _pulses(z, 1.0, 0.06, fp_z))
    base = (road * 0.16 * (1 + 0.1 * tex)
            + walk * 0.42 * (1 + 0.08 * tex) * (1 - 0.3 * tiles)
            + verge * 0.25 * (1 + 0.15 * tex))
    marks = np.clip(_interval(x, -0.08, 0.08, fp_x) * _pulses(z, 9.0, 3.0, fp_z)
                    + _interval(ax, 3.6, 3.75, fp_x), 0.0, 1.0)
    return base * (1 - marks) + 0.7 * marks


def _box_albedo(boxes: Boxes, index: np.ndarray, face_s: np.ndarray, y: np.ndarray, fp_s: np.ndarray,
                fp_y: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Textured base with a grid of window (or brick) rectangles."""
    fp_s, fp_y = np.maximum(fp_s, 1e-3), np.maximum(fp_y, 1e-3)
    y0 = boxes.win_y0[index]
    windows = (_pulses(face_s, boxes.win_period_s[index], boxes.win_width_s[index], fp_s)
               * _pulses(y - y0, boxes.win_period_y[index], boxes.win_width_y[index], fp_y)
               * _interval(y, y0, boxes.win_y1[index], fp_y))
    base = boxes.albedo[index] * (1 + boxes.contrast[index] * tex)
    return base * (1 - windows) + boxes.win_albedo[index] * windows


@dataclass
class Surface:
    """Per-pixel geometry of one render (flattened, row-major)."""

    kind: np.ndarray  # SKY, GROUND or BOX
    depth: np.ndarray  # camera z [m], inf for sky
    box: np.ndarray  # box index, -1 where none
    normal_x: np.ndarray  # horizontal normal of box faces (0 elsewhere)
    normal_z: np.ndarray
    world: tuple[np.ndarray, np.ndarray, np.ndarray]  # X, Y, Z
    face_s: np.ndarray  # horizontal coordinate along a box face [m]
    footprint_s: np.ndarray  # metres per pixel along face_s (ground: along X)
    footprint_y: np.ndarray  # metres per pixel along Y (ground: along Z)


class Renderer:
    """Ray caster for one scene and camera; ``night`` switches lighting, not geometry.

    Per-pixel work is float32 and free of Python loops over pixels. The camera only yaws, so
    every image column is a vertical plane of rays: boxes are intersected per column, and
    in a column the visible box of a row is the nearest box whose top is above that row.
    """

    def __init__(self, scene: Scene, camera: Camera, night: bool) -> None:
        self.scene, self.camera, self.night = scene, camera, night
        h, w = camera.height, camera.width
        self.a = (np.arange(w) - camera.cx) / camera.fx
        b = (np.arange(h) - camera.cy) / camera.fy
        self.cols = np.tile(np.arange(w), h)
        self.pixel_a = self.a[self.cols].astype(np.float32)
        self.pixel_b = np.repeat(b, w).astype(np.float32)
        with np.errstate(divide="ignore"):
            self.z_ground = np.where(self.pixel_b > 0, CAMERA_HEIGHT / self.pixel_b, np.inf).astype(np.float32)
        self.open_kind = np.where(self.pixel_b > 0, GROUND, SKY).astype(np.int8)
        self.elevation = np.arctan2(-self.pixel_b, np.hypot(1.0, self.pixel_a)).astype(np.float32)
        self.level_offset = np.arange(h * w) * MIP_LEVELS
        sun = np.array([0.45, 0.75, -0.5])
        self.sun = sun / np.linalg.norm(sun)

    def _visible_boxes(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
        """Per pixel: distance to the visible box (inf if none), its index, x-face flag; and pose."""
        cam, boxes = self.camera, self.scene.boxes
        px, pz, yaw = self.scene.trajectory.pose(t)
        dx = self.a * np.cos(yaw) + np.sin(yaw)
        dz = -self.a * np.sin(yaw) + np.cos(yaw)
        near = np.flatnonzero((boxes.z1 > pz - 10.0) & (boxes.z0 < pz + FAR))
        with np.errstate(divide="ignore", invalid="ignore"):
            tx0 = (boxes.x0[near, None] - px) / dx
            tx1 = (boxes.x1[near, None] - px) / dx
            tz0 = (boxes.z0[near, None] - pz) / dz
            tz1 = (boxes.z1[near, None] - pz) / dz
        enter_x, enter_z = np.minimum(tx0, tx1), np.minimum(tz0, tz1)
        z_in = np.maximum(enter_x, enter_z)
        hit = (z_in <= np.minimum(np.maximum(tx0, tx1), np.maximum(tz0, tz1))) & (z_in > NEAR)
        z_in = np.where(hit, z_in, np.inf)
        order = np.argsort(z_in, axis=0, kind="stable")
        z_sorted = np.take_along_axis(z_in, order, axis=0)
        with np.errstate(invalid="ignore"):
            v_top = np.where(np.isfinite(z_sorted),
                             cam.cy + cam.fy * (CAMERA_HEIGHT - boxes.top[near][order]) / z_sorted, np.inf)
        # Sorted box k covers rows >= first_row[k] not already taken by nearer boxes; decode
        # these runs column by column into a per-pixel slot (len(near) = no box).
        first_row = np.clip(np.ceil(np.minimum.accumulate(v_top, axis=0)), 0, cam.height).astype(np.int64)
        bounds = np.vstack([np.full((1, cam.width), cam.height), first_row])
        runs = np.vstack([first_row[-1:], (bounds[:-1] - bounds[1:])[::-1]]).T
        labels = np.tile(np.arange(len(near), -1, -1), cam.width)
        slot = np.repeat(labels, runs.ravel()).reshape(cam.width, cam.height).T.ravel()
        flat = slot * cam.width + self.cols
        z_box = np.vstack([z_sorted, np.full((1, cam.width), np.inf)]).ravel()[flat].astype(np.float32)
        index = np.vstack([near[order], np.zeros((1, cam.width), dtype=np.int64)]).ravel()[flat]
        x_face = np.vstack([np.take_along_axis(enter_x >= enter_z, order, axis=0),
                            np.zeros((1, cam.width), dtype=bool)]).ravel()[flat]
        return z_box, index, x_face, (px, pz, yaw)

    def surface(self, t: float) -> Surface:
        """Trace all pixels at time ``t`` (seconds since the start)."""
        cam = self.camera
        z_box, index, x_face, (px, pz, yaw) = self._visible_boxes(t)
        is_box = z_box < self.z_ground
        kind = np.where(is_box, np.int8(BOX), self.open_kind)
        depth = np.minimum(z_box, self.z_ground)
        x_face &= is_box
        cos, sin = float(np.cos(yaw)), float(np.sin(yaw))
        dxp = self.pixel_a * cos + sin
        dzp = -self.pixel_a * sin + cos
        finite = np.where(kind == SKY, np.float32(0.0), depth)
        wx, wz = float(px) + finite * dxp, float(pz) + finite * dzp
        wy = np.where(is_box, CAMERA_HEIGHT - self.pixel_b * finite, np.float32(0.0))
        normal_x = np.where(x_face, -np.sign(dxp), np.float32(0.0))
        normal_z = np.where(is_box & ~x_face, -np.sign(dzp), np.float32(0.0))
        face_s = np.where(x_face, wz, wx)
        ray_n = np.maximum(np.abs(np.where(x_face, dxp, dzp)), np.float32(0.05))
        # Box faces: metres per pixel along the face and vertically. Ground: along X and Z,
        # from the Jacobian of the ground point with respect to (column, row).
        per_row = finite * finite / (cam.fy * CAMERA_HEIGHT)
        cos_fx, sin_fx = abs(float(np.cos(yaw))) / cam.fx, abs(float(np.sin(yaw))) / cam.fx
        fp_s = np.where(is_box, finite / (cam.fx * ray_n), finite * cos_fx + per_row * np.abs(dxp))
        fp_y = np.where(is_box, finite / cam.fy, finite * sin_fx + per_row * np.abs(dzp))
        box = np.where(is_box, index, -1)
        return Surface(kind, depth, box, normal_x, normal_z, (wx, wy, wz), face_s, fp_s, fp_y)

    def depth(self, t: float, max_depth: float) -> np.ndarray:
        """Metric z-depth (float32, H×W); NaN for sky and beyond ``max_depth``."""
        depth = np.minimum(self._visible_boxes(t)[0], self.z_ground)
        depth = np.where(depth <= max_depth, depth, np.float32(np.nan))
        return depth.reshape(self.camera.height, self.camera.width)

    def _texture(self, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Trilinear lookup in the scene's mip-mapped noise (texel coordinates, any scale)."""
        shape = (self.camera.height, self.camera.width)
        size = np.float32(TEXTURE_SIZE)
        mu = (u - np.floor(u / size) * size).reshape(shape)
        mv = (v - np.floor(v / size) * size).reshape(shape)
        levels = cv2.remap(self.scene.mips, mu, mv, cv2.INTER_LINEAR).ravel()
        level = np.clip(0.5 * np.log2(np.maximum(footprint, np.float32(1e-6))), 0.0, MIP_LEVELS - 1.001)
        low = level.astype(np.int64)
        at = self.level_offset + low
        below = levels[at]
        return below + (levels[at + 1] - below) * (level - low)

    def radiance(self, t: float) -> tuple[np.ndarray, Surface]:
        """Linear scene radiance (H×W float32, ~[0, 1], lamp glow above) and the geometry."""
        s = self.surface(t)
        boxes = self.scene.boxes
        _, camera_z, yaw = self.scene.trajectory.pose(t)
        wx, wy, wz = s.world
        ground, box, sky = (np.flatnonzero(s.kind == k) for k in (GROUND, BOX, SKY))
        index = s.box[box]

        tex_u, tex_v, footprint = np.empty((3, s.kind.size), dtype=np.float32)
        tex_u[ground], tex_v[ground] = wx[ground] * GROUND_TEXELS, wz[ground] * GROUND_TEXELS
        footprint[ground] = np.maximum(s.footprint_s[ground], s.footprint_y[ground]) * GROUND_TEXELS
        scale = boxes.tex_scale[index].astype(np.float32)
        tex_u[box] = s.face_s[box] * scale + boxes.tex_u[index]
        tex_v[box] = wy[box] * scale + boxes.tex_v[index]
        footprint[box] = np.maximum(s.footprint_s[box], s.footprint_y[box]) * scale
        tex_u[sky] = (np.arctan(self.pixel_a[sky]) + yaw) * SKY_TEXELS
        tex_v[sky] = self.elevation[sky] * SKY_TEXELS
        footprint[sky] = 16.0  # clouds: only the smooth mip levels
        tex = self._texture(tex_u, tex_v, footprint)

        albedo = np.zeros(s.kind.size, dtype=np.float32)
        albedo[ground] = _ground_albedo(wx[ground], wz[ground], s.footprint_s[ground], s.footprint_y[ground],
                                        tex[ground])
        albedo[box] = _box_albedo(boxes, index, s.face_s[box], wy[box], s.footprint_s[box],
                                  s.footprint_y[box], tex[box])
        distance = np.where(s.kind == SKY, np.float32(0.0), s.depth)
        if self.night:
            fog = np.exp(distance / np.float32(-50.0))  # haze lit by the city
            value = albedo * self._night_light(s, camera_z) * fog + NIGHT_SKY * (1 - fog)
            value[sky] = NIGHT_SKY * (1 + 0.3 * tex[sky])
        else:
            shade = np.maximum(s.normal_x * float(self.sun[0]) + s.normal_z * float(self.sun[2]), np.float32(0.0))
            light = np.where(s.kind == BOX, 0.55 + 0.45 / float(self.sun[1]) * shade, np.float32(1.0))
            fog = np.exp(distance / np.float32(-250.0))
            value = albedo * light * fog + HORIZON * (1 - fog)
            value[sky] = HORIZON - 0.3 * np.clip(self.elevation[sky], 0, 1) + 0.06 * tex[sky]
        image = value.reshape(self.camera.height, self.camera.width)
        if self.night:
            image = image + self._lamp_glow(t, s)
        return image.astype(np.float32), s

    def _night_light(self, s: Surface, camera_z: float) -> np.ndarray:
        """Ambient + low headlight beams + street-lamp pools, as irradiance per pixel."""
        wx, wy, wz = s.world
        depth = np.where(np.isfinite(s.depth), s.depth, 1e6)
        beam = np.exp(-(self.pixel_a ** 2) / (2 * 0.35 ** 2) - np.maximum(wy - 1.5, 0.0) / 3.0)
        light = 0.05 + 1.2 * beam / (1 + (depth / 12.0) ** 2)
        lamps = self.scene.lamps
        for lx, ly, lz in lamps[(lamps[:, 2] > camera_z - 10.0) & (lamps[:, 2] < camera_z + 50.0)].tolist():
            light = light + 0.6 * 36.0 / ((wx - lx) ** 2 + (wy - ly) ** 2 + (wz - lz) ** 2 + 36.0)
        return light

    def _lamp_glow(self, t: float, s: Surface) -> np.ndarray:
        """Bright, unoccluded lamp heads as Gaussian blobs (what saturates a night frame)."""
        cam = self.camera
        px, pz, yaw = self.scene.trajectory.pose(t)
        glow = np.zeros((cam.height, cam.width), dtype=np.float64)
        depth = s.depth.reshape(cam.height, cam.width)
        rel_x, rel_z = self.scene.lamps[:, 0] - px, self.scene.lamps[:, 2] - pz
        cam_x = rel_x * np.cos(yaw) - rel_z * np.sin(yaw)
        cam_z = rel_x * np.sin(yaw) + rel_z * np.cos(yaw)
        ahead = (cam_z > 0.5) & (cam_z < FAR)
        for x, z, y in zip(cam_x[ahead], cam_z[ahead], self.scene.lamps[ahead, 1]):
            u = cam.cx + cam.fx * x / z
            v = cam.cy + cam.fy * (CAMERA_HEIGHT - y) / z
            sigma = max(0.7, cam.fx * 0.25 / z)
            reach = int(4 * sigma) + 1
            u0, u1 = max(int(u) - reach, 0), min(int(u) + reach + 1, cam.width)
            v0, v1 = max(int(v) - reach, 0), min(int(v) + reach + 1, cam.height)
            if u0 >= u1 or v0 >= v1:
                continue
            centre = depth[min(max(int(round(v)), 0), cam.height - 1), min(max(int(round(u)), 0), cam.width - 1)]
            if centre < z - 1.0:
                continue
            gu = np.exp(-((np.arange(u0, u1) - u) ** 2) / (2 * sigma ** 2))
            gv = np.exp(-((np.arange(v0, v1) - v) ** 2) / (2 * sigma ** 2))
            glow[v0:v1, u0:u1] += 3.0 * gv[:, None] * gu[None, :]
        return glow


# ----------------------------------------------------------------------------- sensors


class EventSimulator:
    """DVS model on log radiance sampled at sub-frame times.

    Each pixel keeps a reference log level and fires one event per threshold crossing
    (several per sub-frame interval when the change is large), timestamped by linear
    interpolation between the two samples. Thresholds vary slightly per pixel and polarity;
    background-activity noise events are added at ``noise_rate`` Hz per pixel.
    """

    def __init__(self, log_radiance: np.ndarray, t: float, threshold: float, spread: float,
                 noise_rate: float, rng: np.random.Generator) -> None:
        self.shape = log_radiance.shape
        self.reference = log_radiance.ravel().astype(np.float64)
        self.previous = self.reference.copy()
        self.t = t
        size = self.reference.size
        self.positive = threshold * np.exp(spread * rng.standard_normal(size))
        self.negative = threshold * np.exp(spread * rng.standard_normal(size))
        self.noise_rate = noise_rate
        self.rng = rng

    def step(self, log_radiance: np.ndarray, t: float) -> np.ndarray:
        """Events (n×4 float64: x, y, t, p) between the previous sample and this one, sorted."""
        new = log_radiance.ravel().astype(np.float64)
        diff = new - self.reference
        up = np.floor(np.maximum(diff, 0.0) / self.positive)
        down = np.floor(np.maximum(-diff, 0.0) / self.negative)
        counts = (up + down).astype(np.int64)
        pixels = np.flatnonzero(counts)
        n = counts[pixels]
        sign = np.where(up[pixels] > 0, 1.0, -1.0)
        threshold = np.where(sign > 0, self.positive[pixels], self.negative[pixels])
        pix = np.repeat(pixels, n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 1
        level = self.reference[pix] + np.repeat(sign * threshold, n) * k
        before, after = self.previous[pix], new[pix]
        change = np.where(after != before, after - before, 1.0)
        frac = np.clip((level - before) / change, 0.0, 1.0)
        times = self.t + frac * (t - self.t)
        polarity = np.repeat(sign, n)
        self.reference[pixels] += sign * threshold * n

        n_noise = self.rng.poisson(self.noise_rate * new.size * (t - self.t))
        noise_pix = self.rng.integers(0, new.size, n_noise)
        noise_t = self.t + self.rng.random(n_noise) * (t - self.t)
        noise_p = np.where(self.rng.random(n_noise) < 0.5, -1.0, 1.0)

        pix = np.concatenate([pix, noise_pix])
        times = np.concatenate([times, noise_t])
        polarity = np.concatenate([polarity, noise_p])
        order = np.argsort(times, kind="stable")
        width = self.shape[1]
        events = np.stack([pix % width, pix // width, times, polarity], axis=1)[order].astype(np.float64)
        self.previous, self.t = new, t
        return events


class EventCamera:
    """A DVS fed with a camera's sub-frame radiance renders in time order: the first render sets
    the reference levels, each later one adds the events since the one before."""

    def __init__(self, threshold: float, spread: float, noise_rate: float, rng: np.random.Generator) -> None:
        self.threshold, self.spread, self.noise_rate, self.rng = threshold, spread, noise_rate, rng
        self.simulator: EventSimulator | None = None
        self.chunks: list[np.ndarray] = []

    def add(self, radiance: np.ndarray, t: float) -> None:
        log_radiance = np.log(radiance + LOG_EPS)
        if self.simulator is None:
            self.simulator = EventSimulator(log_radiance, t, self.threshold, self.spread, self.noise_rate, self.rng)
        else:
            self.chunks.append(self.simulator.step(log_radiance, t))

    def events(self, t_start: float) -> np.ndarray:
        """Every event so far (n×4: x, y, t, p), timestamps shifted by the recording's start time."""
        events = np.concatenate(self.chunks)
        events[:, 2] += t_start
        return events


def first_event_indices(events: np.ndarray, image_ts: np.ndarray) -> np.ndarray:
    """MVSEC's ``image_raw_event_inds``: the index of the first event at or after each image."""
    return np.searchsorted(events[:, 2], image_ts, side="left").astype(np.int64)


def _day_frame(radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Well-exposed gamma-encoded frame with mild read noise."""
    value = 255.0 * np.clip(radiance, 0.0, 1.0) ** (1 / 2.2) + rng.normal(0.0, 1.0, radiance.shape)
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


def _night_frame(radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Under-exposed linear frame: black level, shot noise (3 e-/DN) and read noise."""
    signal = 255.0 * 0.3 * np.clip(radiance, 0.0, 4.0)
    shot = rng.poisson(signal * 3.0) / 3.0
    value = 8.0 + shot + rng.normal(0.0, 2.5, radiance.shape)
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- recording


def _timeline(config: RecordingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative times of depth frames, images and sub-frames (images lie on sub-frames).

    Images and events start ``warmup`` seconds before the first depth frame and run one image
    interval past the last one, so every depth frame has a 50 ms event window, an image
    within ``depth_offset`` and an event index after every image.
    """
    depth_t = config.warmup + config.depth_offset + np.arange(config.frames) / config.depth_rate
    n_images = int(math.ceil((depth_t[-1] + 1.0 / config.depth_rate) * config.image_rate)) + 1
    image_t = np.arange(n_images) / config.image_rate
    sub_t = np.arange((n_images + 1) * config.substeps) / (config.image_rate * config.substeps)
    return depth_t, image_t, sub_t


def _render_in_order(renderer: Renderer, times: np.ndarray, workers: int) -> Iterator[np.ndarray]:
    """Radiance at each time, in order. A few threads overlap renders: numpy and OpenCV
    release the GIL in their loops, and each render is a pure function of its time."""

    def render(t: float) -> np.ndarray:
        return renderer.radiance(float(t))[0]

    if workers <= 1:
        yield from map(render, times)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for t in times:
            pending.append(pool.submit(render, t))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def generate_recording(config: RecordingConfig, workers: int = 2, progress: bool = False) -> Recording:
    """Render images, events and depth of one recording.

    The result depends on ``config`` only (not on ``workers``): every random draw comes from
    a stream seeded by ``config.seed`` and consumed in time order.
    """
    if config.frames < 1:
        raise ValueError(f"frames must be >= 1, got {config.frames}")
    camera = Camera.mvsec_like(config.height, config.width)
    depth_t, image_t, sub_t = _timeline(config)
    renderer = Renderer(Scene.generate(config.seed, float(sub_t[-1])), camera, config.night)
    variant = int(config.night)
    frame_rng = _rng(config.seed, 4, variant)
    noise_rate = config.noise_rate if config.noise_rate is not None else (0.4 if config.night else 0.05)
    exposure: deque[np.ndarray] = deque(maxlen=8 if config.night else 1)  # night frames are motion-blurred

    images = np.empty((len(image_t), camera.height, camera.width), dtype=np.uint8)
    dvs = EventCamera(config.contrast_threshold, config.threshold_spread, noise_rate, _rng(config.seed, 5, variant))
    renders = _render_in_order(renderer, sub_t, workers)
    for i, radiance in enumerate(tqdm(renders, total=len(sub_t), desc="render", disable=not progress)):
        dvs.add(radiance, float(sub_t[i]))
        exposure.append(radiance)
        j, rest = divmod(i, config.substeps)
        if rest == 0 and j < len(image_t):
            images[j] = (_night_frame(np.mean(exposure, axis=0), frame_rng) if config.night
                         else _day_frame(radiance, frame_rng))
    events = dvs.events(config.t_start)
    image_ts = image_t + config.t_start
    return Recording(
        events=events,
        image_raw=images,
        image_raw_ts=image_ts,
        image_raw_event_inds=first_event_indices(events, image_ts),
        depth_image_rect=np.stack([renderer.depth(float(t), config.max_depth) for t in depth_t]),
        depth_image_rect_ts=depth_t + config.t_start,
        camera=camera,
        config=config,
    )


def _dataset(group: h5py.Group, name: str, data: np.ndarray, chunk_rows: int) -> None:
    """Chunked, uncompressed (fast to write and read), without timestamps: same data, same bytes."""
    chunks = (max(1, min(chunk_rows, len(data))), *data.shape[1:])
    group.create_dataset(name, data=data, chunks=chunks, maxshape=(None, *data.shape[1:]), track_times=False)


def save_recording(recording: Recording, out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``<name>_data.hdf5`` and ``<name>_gt.hdf5`` under temporary names, then rename both
    into place, so readers never see a half-written file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    finals = (out / f"{name}_data.hdf5", out / f"{name}_gt.hdf5")
    with files_together(finals) as temps:
        cam, cfg = recording.camera, recording.config
        attrs = {"generator": "fuse.demo.synthetic", "seed": cfg.seed, "night": cfg.night,
                 "intrinsics_fx_fy_cx_cy": np.array([cam.fx, cam.fy, cam.cx, cam.cy])}
        with h5py.File(temps[0], "w", track_order=False) as f:
            f.attrs.update(attrs)
            left = f.create_group("davis/left")
            _dataset(left, "events", recording.events, 1 << 16)
            _dataset(left, "image_raw", recording.image_raw, 1)
            _dataset(left, "image_raw_ts", recording.image_raw_ts, 1 << 12)
            _dataset(left, "image_raw_event_inds", recording.image_raw_event_inds, 1 << 12)
        with h5py.File(temps[1], "w", track_order=False) as f:
            f.attrs.update(attrs)
            left = f.create_group("davis/left")
            for kind in ("rect", "raw"):  # copies, not hard links: visititems() sees a linked object once
                _dataset(left, f"depth_image_{kind}", recording.depth_image_rect, 1)
                _dataset(left, f"depth_image_{kind}_ts", recording.depth_image_rect_ts, 1 << 12)
    return finals


def write_recording(out_dir: str | os.PathLike, name: str, frames: int = 200, seed: int = 0,
                    night: bool = False, height: int = MVSEC_HEIGHT, width: int = MVSEC_WIDTH,
                    workers: int = 2, progress: bool = False, **options: float) -> tuple[Path, Path]:
    """Generate a recording and write it; returns (data_path, gt_path).

    ``options`` are further :class:`RecordingConfig` fields (rates, thresholds, ...).
    """
    config = RecordingConfig(frames=frames, seed=seed, night=night, height=height, width=width, **options)
    return save_recording(generate_recording(config, workers=workers, progress=progress), out_dir, name)
