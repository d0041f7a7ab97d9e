"""Head anatomy for phantoms: scalp, skull, CSF, grey/white matter, ventricles, calcifications.

Coordinates are millimetres from the head centre in LPS axes (x left, y posterior, z superior).
The head is a set of nested superellipsoids (exponent ``shape_p``; 2 is an ellipsoid). Their
gauge ``r`` is positively homogeneous of degree 1, so depth below the inner table along the ray
from the centre has a closed form for every exponent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALP_MM = 4.0


@dataclass(frozen=True)
class Grid:
    """Broadcastable coordinate arrays (mm) of a grid chunk: z (n,1,1), y (1,m,1), x (1,1,k)."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.shape[0], self.y.shape[1], self.x.shape[2])


@dataclass(frozen=True)
class Anatomy:
    """Random but plausible head dimensions (mm) and normal structures."""

    axes: np.ndarray  # scalp outer semi-axes (x, y, z)
    skull_mm: float
    csf_mm: float
    vent_scale: float
    pineal_calc: bool
    plexus_calc: bool
    falx_hu: float
    tex: np.ndarray  # (n, 5): wave vector (3), phase, amplitude
    shape_p: float = 2.0
    skull_hu: float = 1000.0
    grey_hu: float = 37.0
    white_hu: float = 27.0
    # extra calcifications that are not bleeds: (x, y, z, radius mm, HU)
    calcs: tuple[tuple[float, float, float, float, float], ...] = ()

    @property
    def inner_axes(self) -> np.ndarray:
        return self.axes - SCALP_MM - self.skull_mm

    @staticmethod
    def draw(rng: np.random.Generator) -> Anatomy:
        axes = np.array([rng.uniform(68, 78), rng.uniform(86, 98), rng.uniform(76, 86)])
        tex = np.column_stack([
            rng.normal(size=(6, 3)) / rng.uniform(8, 20, size=(6, 1)),
            rng.uniform(0, 2 * np.pi, size=6), rng.uniform(0.5, 1.5, size=6)])
        return Anatomy(axes=axes, skull_mm=float(rng.uniform(5, 8)),
                       csf_mm=float(rng.uniform(1.0, 2.5)), vent_scale=float(rng.uniform(0.8, 1.4)),
                       pineal_calc=bool(rng.random() < 0.5), plexus_calc=bool(rng.random() < 0.5),
                       falx_hu=float(rng.uniform(30, 60)) if rng.random() < 0.35 else 0.0, tex=tex)

    def _r(self, g: Grid, axes: np.ndarray) -> np.ndarray:
        if self.shape_p == 2.0:
            return np.sqrt((g.x / axes[0]) ** 2 + (g.y / axes[1]) ** 2 + (g.z / axes[2]) ** 2)
        p = self.shape_p
        return np.asarray((np.abs(g.x / axes[0]) ** p + np.abs(g.y / axes[1]) ** p
                           + np.abs(g.z / axes[2]) ** p) ** (1 / p))

    def head(self, g: Grid) -> np.ndarray:
        return self._r(g, self.axes) < 1

    def skull_outer(self, g: Grid) -> np.ndarray:
        return self._r(g, self.axes - SCALP_MM) < 1

    def intracranial(self, g: Grid) -> np.ndarray:
        return self._r(g, self.inner_axes) < 1

    def brain(self, g: Grid) -> np.ndarray:
        return self._r(g, self.inner_axes - self.csf_mm) < 1

    def depth_below_inner_table(self, g: Grid) -> np.ndarray:
        """Distance (mm) from a point to the inner table along the ray from the centre."""
        r = np.maximum(self._r(g, self.inner_axes), 1e-3)
        dist = np.sqrt(g.x**2 + g.y**2 + g.z**2)
        return dist * (1 - r) / r

    def angle(self, g: Grid) -> np.ndarray:
        """In-plane angle (radians) of a point on the normalised ellipse."""
        return np.arctan2(g.y / self.axes[1], g.x / self.axes[0])

    def inner_surface_point(self, direction: np.ndarray) -> np.ndarray:
        d = direction / np.linalg.norm(direction)
        p = self.shape_p
        return np.asarray(d / np.sum(np.abs(d / self.inner_axes) ** p) ** (1 / p))

    def _ventricle_params(self) -> tuple[float, float, float, np.ndarray]:
        s = self.vent_scale
        return 8.0 * s**0.5, 2.0, 12.0, np.array([4.0 * s, 22.0, 8.0 * s])

    def ventricles(self, g: Grid, side: int = 0) -> np.ndarray:
        """Lateral ventricles; ``side`` -1 right, +1 left, 0 both."""
        cx, cy, cz, ax = self._ventricle_params()
        out = np.zeros(np.broadcast_shapes(g.z.shape, g.y.shape, g.x.shape), dtype=bool)
        for sgn in ((-1, 1) if side == 0 else (side,)):
            out |= (((g.x - sgn * cx) / ax[0]) ** 2 + ((g.y - cy) / ax[1]) ** 2
                    + ((g.z - cz) / ax[2]) ** 2) < 1
        return out

    def ventricle_y_range(self) -> tuple[float, float]:
        _, cy, _, ax = self._ventricle_params()
        return cy - ax[1], cy + ax[1]

    def texture(self, g: Grid) -> np.ndarray:
        # separable products of 1-D waves: cheap on large grids, smooth, chunk-independent
        t = np.zeros(np.broadcast_shapes(g.z.shape, g.y.shape, g.x.shape), dtype=np.float32)
        for kx, ky, kz, ph, amp in self.tex:
            t += (amp * np.sin(kz * g.z + ph)).astype(np.float32) * (
                np.sin(ky * g.y * 2 + ph) * np.sin(kx * g.x * 2 - ph)).astype(np.float32)
        return t

    def render(self, g: Grid) -> np.ndarray:
        """Normal head density (HU) on ``g``, without noise."""
        shape = np.broadcast_shapes(g.z.shape, g.y.shape, g.x.shape)
        hu = np.full(shape, -1000.0, dtype=np.float32)
        hu[np.broadcast_to(self.head(g), shape)] = 25.0
        tex = self.texture(g)
        skull = np.broadcast_to(self.skull_outer(g), shape)
        hu[skull] = self.skull_hu + 150.0 * tex[skull]
        hu[np.broadcast_to(self.intracranial(g), shape)] = 6.0
        brain = np.broadcast_to(self.brain(g), shape)
        depth = self.depth_below_inner_table(g) - self.csf_mm
        grey = (depth < 3.5) | (((np.abs(g.x) - 22) / 7) ** 2 + (g.y / 12) ** 2
                                + ((g.z - 5) / 9) ** 2 < 1)
        tissue = np.where(grey, self.grey_hu, self.white_hu) + 1.5 * tex
        hu[brain] = np.broadcast_to(tissue, shape)[brain]
        hu[np.broadcast_to(self.ventricles(g), shape)] = 6.0
        if self.falx_hu:
            falx = (np.abs(g.x) < 0.8) & (g.z > -10) & brain
            hu[falx] = self.falx_hu
        calcs = []
        if self.pineal_calc:
            calcs.append((0.0, 20.0, 4.0, 2.5))
        if self.plexus_calc:
            cx, _, _, _ = self._ventricle_params()
            calcs += [(-cx, 18.0, 10.0, 2.0), (cx, 18.0, 10.0, 2.0)]
        for cx_, cy_, cz_, rad in calcs:
            ball = (g.x - cx_) ** 2 + (g.y - cy_) ** 2 + (g.z - cz_) ** 2 < rad**2
            hu[np.broadcast_to(ball, shape)] = 160.0
        inside = np.broadcast_to(self.intracranial(g), shape)
        for cx_, cy_, cz_, rad, c_hu in self.calcs:
            ball = (g.x - cx_) ** 2 + (g.y - cy_) ** 2 + (g.z - cz_) ** 2 < rad**2
            hu[np.broadcast_to(ball, shape) & inside] = c_hu
        return hu
