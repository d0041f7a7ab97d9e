"""Phantom families: ranges from which a head CT phantom's anatomy, acquisition and artefacts
are drawn, so that a model can be trained on one family and measured on another.

``train`` is deliberately wide (skull thickness and shape, head size, HU calibration offset,
noise, reconstruction kernel, slice thickness 0.5-5 mm, field of view, streaks, motion,
calcifications that are not bleeds, beam-hardening brightening under the inner table).
``heldout`` is made with DIFFERENT generator parameters, never used in training: boxier skulls
(superellipsoid exponent 2.45-2.8 against 1.8-2.4), denser and thicker bone, a larger HU
calibration offset (|offset| 12-20 HU against at most 12), spatially correlated noise (training
noise is white), smoother kernels (blur sigma 1.2-1.8 mm against at most 1.2), brighter grey and
white matter, and more calcifications. See :data:`FAMILIES` for the exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import SCALP_MM, Anatomy, Grid

Range = tuple[float, float]


@dataclass(frozen=True)
class Family:
    """Ranges (uniform unless said) of one phantom family."""

    name: str
    head_x: Range
    head_y: Range
    head_z: Range
    shape_p: Range
    skull_mm: Range
    skull_hu: Range
    csf_mm: Range
    grey_hu: Range
    white_hu: Range
    calc_p: float
    calc_n: tuple[int, int]
    calc_hu: Range
    calc_r: Range
    hu_offset: Range  # magnitude; the sign is drawn
    noise_hu: Range
    noise_corr_mm: Range  # Gaussian correlation length of the noise; 0 = white
    blur_mm: Range
    sharpen: Range
    slice_mm: Range  # log-uniform
    fov_mm: Range
    streak_p: float
    streak_hu: Range
    motion_p: float
    motion_mm: Range
    cupping_hu: Range
    normal_fraction: float = 0.4


FAMILIES: dict[str, Family] = {
    "train": Family(
        name="train", head_x=(62, 82), head_y=(80, 102), head_z=(72, 90), shape_p=(1.8, 2.4),
        skull_mm=(3, 10), skull_hu=(600, 1500), csf_mm=(0.8, 3.5), grey_hu=(32, 42),
        white_hu=(22, 32), calc_p=0.7, calc_n=(1, 4), calc_hu=(110, 700), calc_r=(1.0, 4.5),
        hu_offset=(0, 12), noise_hu=(2, 14), noise_corr_mm=(0, 0), blur_mm=(0, 1.2),
        sharpen=(0, 0.6), slice_mm=(0.5, 5.0), fov_mm=(180, 300), streak_p=0.35,
        streak_hu=(10, 60), motion_p=0.2, motion_mm=(1, 4), cupping_hu=(0, 10)),
    "heldout": Family(
        name="heldout", head_x=(64, 80), head_y=(82, 98), head_z=(74, 88), shape_p=(2.45, 2.8),
        skull_mm=(8, 12), skull_hu=(1500, 1900), csf_mm=(1.0, 3.0), grey_hu=(38, 46),
        white_hu=(28, 35), calc_p=0.85, calc_n=(2, 5), calc_hu=(150, 900), calc_r=(1.5, 4.0),
        hu_offset=(12, 20), noise_hu=(4, 10), noise_corr_mm=(0.6, 1.2), blur_mm=(1.2, 1.8),
        sharpen=(0, 0), slice_mm=(0.625, 5.0), fov_mm=(200, 260), streak_p=0.5,
        streak_hu=(20, 50), motion_p=0.25, motion_mm=(1, 3), cupping_hu=(4, 12)),
}


def family(name: str) -> Family:
    """The family called ``name``; ValueError for an unknown one."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown phantom family {name!r}; known: {sorted(FAMILIES)}") from None


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def draw_anatomy(rng: np.random.Generator, fam: Family) -> Anatomy:
    """An :class:`Anatomy` with the family's ranges, including calcifications that are not
    bleeds (basal ganglia, falx and dural plaques, pineal, choroid plexus)."""
    axes = np.array([_u(rng, fam.head_x), _u(rng, fam.head_y), _u(rng, fam.head_z)])
    tex = np.column_stack([
        rng.normal(size=(6, 3)) / rng.uniform(8, 20, size=(6, 1)),
        rng.uniform(0, 2 * np.pi, size=6), rng.uniform(0.5, 1.5, size=6)])
    skull = _u(rng, fam.skull_mm)
    shape_p = _u(rng, fam.shape_p)
    grey = _u(rng, fam.grey_hu)
    white = min(_u(rng, fam.white_hu), grey - 4.0)
    inner = axes - SCALP_MM - skull
    calcs: list[tuple[float, float, float, float, float]] = []
    if rng.random() < fam.calc_p:
        for _ in range(int(rng.integers(fam.calc_n[0], fam.calc_n[1] + 1))):
            kind = rng.integers(0, 3)
            r, c_hu = _u(rng, fam.calc_r), _u(rng, fam.calc_hu)
            if kind == 0:  # basal ganglia, often bilateral
                side = float(rng.choice([-1.0, 1.0]))
                calcs.append((side * rng.uniform(16, 26), rng.uniform(-10, 6),
                              rng.uniform(-2, 10), r, c_hu))
            elif kind == 1:  # falx plaque: midline, high
                calcs.append((0.0, rng.uniform(-40, 40), rng.uniform(15, 0.8 * inner[2]),
                              r * 0.7, c_hu))
            else:  # dural plaque against the inner table
                d = rng.normal(size=3)
                d[2] = abs(d[2])
                d /= np.linalg.norm(d)
                s = d / np.sum(np.abs(d / inner) ** shape_p) ** (1 / shape_p)
                calcs.append((float(s[0]), float(s[1]), float(s[2]), r * 0.6, c_hu))
    return Anatomy(axes=axes, skull_mm=skull, csf_mm=_u(rng, fam.csf_mm),
                   vent_scale=float(rng.uniform(0.7, 1.6)),
                   pineal_calc=bool(rng.random() < 0.6), plexus_calc=bool(rng.random() < 0.6),
                   falx_hu=float(rng.uniform(30, 70)) if rng.random() < 0.4 else 0.0, tex=tex,
                   shape_p=shape_p, skull_hu=_u(rng, fam.skull_hu),
                   grey_hu=grey, white_hu=white, calcs=tuple(calcs))


@dataclass(frozen=True)
class Appearance:
    """Acquisition and reconstruction of one study: calibration offset (HU), noise (HU) and its
    correlation (mm), kernel blur (mm) and sharpening, streaks (angle, offset mm, HU, width mm,
    z range mm), motion ghost (shift mm, angle, weight), brightening under the inner table (HU).
    """

    hu_offset: float = 0.0
    noise_hu: float = 6.0
    noise_corr_mm: float = 0.0
    blur_mm: float = 0.0
    sharpen: float = 0.0
    streaks: tuple[tuple[float, float, float, float, float, float], ...] = ()
    motion: tuple[float, float, float] | None = None
    cupping_hu: float = 0.0

    @staticmethod
    def draw(rng: np.random.Generator, fam: Family) -> Appearance:
        streaks = []
        if rng.random() < fam.streak_p:
            z_lo = float(rng.uniform(-60, 10))
            for _ in range(int(rng.integers(1, 4))):
                streaks.append((float(rng.uniform(0, np.pi)), float(rng.uniform(-40, 40)),
                                _u(rng, fam.streak_hu) * float(rng.choice([-1.0, 1.0])),
                                float(rng.uniform(0.8, 2.5)), z_lo, z_lo + rng.uniform(10, 50)))
        motion = None
        if rng.random() < fam.motion_p:
            motion = (_u(rng, fam.motion_mm), float(rng.uniform(0, 2 * np.pi)),
                      float(rng.uniform(0.15, 0.4)))
        return Appearance(hu_offset=_u(rng, fam.hu_offset) * float(rng.choice([-1.0, 1.0])),
                          noise_hu=_u(rng, fam.noise_hu),
                          noise_corr_mm=_u(rng, fam.noise_corr_mm),
                          blur_mm=_u(rng, fam.blur_mm), sharpen=_u(rng, fam.sharpen),
                          streaks=tuple(streaks), motion=motion,
                          cupping_hu=_u(rng, fam.cupping_hu))

    def apply(self, hu: np.ndarray, g: Grid, anat: Anatomy, pixel_mm: float,
              rng: np.random.Generator) -> np.ndarray:
        """The noiseless chunk ``hu`` (z, y, x) as the scanner would show it."""
        head = hu > -900
        if self.cupping_hu:
            inside = np.broadcast_to(anat.intracranial(g), hu.shape)
            depth = np.broadcast_to(anat.depth_below_inner_table(g), hu.shape)
            hu = hu + np.where(inside, self.cupping_hu * np.exp(-depth / 5.0), 0.0).astype(
                np.float32)
        if self.motion is not None:
            shift_mm, ang, w = self.motion
            sh = (0.0, shift_mm * np.sin(ang) / pixel_mm, shift_mm * np.cos(ang) / pixel_mm)
            hu = (1 - w) * hu + w * ndimage.shift(hu, sh, order=1, mode="nearest")
        if self.blur_mm > 0:
            hu = ndimage.gaussian_filter(hu, (0, self.blur_mm / pixel_mm, self.blur_mm / pixel_mm))
        if self.sharpen > 0:  # edge enhancement of soft tissue (bone edges would ring)
            soft = np.clip(hu, -50.0, 150.0)
            hu = hu + self.sharpen * (soft - ndimage.gaussian_filter(soft, (0, 1.0, 1.0)))
        for ang, off, amp, width, z0, z1 in self.streaks:
            d = g.x * np.cos(ang) + g.y * np.sin(ang) - off
            band = (amp * np.exp(-((d / width) ** 2))).astype(np.float32)
            hu = hu + np.where(head & (g.z >= z0) & (g.z <= z1), band, 0.0).astype(np.float32)
        hu = np.where(head, hu + self.hu_offset, hu)
        noise = rng.normal(0.0, 1.0, size=hu.shape).astype(np.float32)
        if self.noise_corr_mm > 0:
            s = self.noise_corr_mm / pixel_mm
            noise = ndimage.gaussian_filter(noise, (0, s, s))
            noise /= max(float(noise.std()), 1e-6)
        return np.asarray(hu + self.noise_hu * noise, dtype=np.float32)
