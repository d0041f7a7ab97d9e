"""MR diffusion phantoms of acute ischaemic stroke: b0, DWI (b≈1000), ADC and the truth mask.

``make_stroke_mr(spec)`` is deterministic for a given spec (seed included). Signals follow the
mono-exponential model S_b = S_0 exp(-b ADC) (Stejskal-Tanner) per tissue: white and grey matter
(ADC ~700-950 x 10^-6 mm²/s), CSF in ventricles, fissure and sulci (~3000), acute infarct
(~400-550, mildly T2-bright, so DWI-hyperintense). Lesion borders carry partial volume (signals
mixed by the voxel's covered fraction, truth = fraction >= 0.5, parenchyma only). Noise is Rician
(magnitude of complex Gaussian), a smooth multiplicative bias field is shared by b0 and DWI, and
the ADC map is computed from the noisy images as a scanner does (background 0 or left noisy).

Two parameter families: ``train`` and ``heldout`` differ in tissue contrast, lesion contrast,
noise, bias, resolution, brain shape and lesion shape, so a method tuned or trained on one is
measured on data it has not seen. Geometry is LPS (PS3.3 C.7.6.2.1.1): +x is the patient's left.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..types import StudyInput, Volume

Family = Literal["train", "heldout"]
Range = tuple[float, float]


@dataclass(frozen=True)
class StrokeLesionSpec:
    """One infarct: side, equivalent-sphere radius (mm; nominal volume 4/3 pi r^3), elongation
    (longest / shortest axis) and lobulation (0 smooth, ~0.3 irregular border)."""

    hemisphere: Literal["left", "right"]
    radius_mm: float
    elongation: float = 1.0
    lobulation: float = 0.0

    @staticmethod
    def of_volume(hemisphere: Literal["left", "right"], volume_ml: float,
                  elongation: float = 1.0, lobulation: float = 0.0) -> StrokeLesionSpec:
        r = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        return StrokeLesionSpec(hemisphere, r, elongation, lobulation)


@dataclass(frozen=True)
class FamilyParams:
    """Ranges each phantom of a family draws from (ADC in 10^-6 mm²/s, T2 relative to CSF)."""

    adc_wm: Range
    adc_gm: Range
    adc_csf: Range
    adc_lesion: Range
    adc_lesion_rim: Range
    t2_wm: Range
    t2_gm: Range
    t2_lesion_boost: Range
    noise: Range
    bias: Range
    axes_mm: tuple[Range, Range, Range]
    wobble: float
    cortex_mm: Range
    sulci: float
    pixel_mm: Range
    slice_mm: Range
    fov_mm: Range
    slab_mm: Range
    yaw_deg: float
    max_elongation: float
    max_lobulation: float
    background: Literal["zero", "noise"] | None


FAMILIES: dict[str, FamilyParams] = {
    "train": FamilyParams(
        adc_wm=(700, 780), adc_gm=(800, 900), adc_csf=(2800, 3200), adc_lesion=(420, 520),
        adc_lesion_rim=(0, 50), t2_wm=(0.52, 0.58), t2_gm=(0.66, 0.74),
        t2_lesion_boost=(0.15, 0.35), noise=(0.010, 0.020), bias=(0.05, 0.15),
        axes_mm=((64, 70), (80, 88), (58, 66)), wobble=0.04, cortex_mm=(2.5, 3.5), sulci=0.55,
        pixel_mm=(1.8, 2.4), slice_mm=(5.0, 6.0), fov_mm=(200, 230), slab_mm=(100, 130),
        yaw_deg=4.0, max_elongation=1.6, max_lobulation=0.15, background="zero"),
    "heldout": FamilyParams(
        adc_wm=(740, 860), adc_gm=(850, 980), adc_csf=(2600, 3000), adc_lesion=(400, 540),
        adc_lesion_rim=(0, 60), t2_wm=(0.58, 0.66), t2_gm=(0.76, 0.86),
        t2_lesion_boost=(0.10, 0.30), noise=(0.015, 0.028), bias=(0.12, 0.25),
        axes_mm=((60, 74), (76, 94), (55, 70)), wobble=0.07, cortex_mm=(2.0, 4.0), sulci=0.45,
        pixel_mm=(1.3, 1.7), slice_mm=(3.0, 4.0), fov_mm=(210, 240), slab_mm=(100, 130),
        yaw_deg=10.0, max_elongation=2.2, max_lobulation=0.3, background=None),
}


@dataclass(frozen=True)
class StrokePhantomSpec:
    """What to build: matrix (z, y, x), spacing (z, y, x) mm, lesions, seed, family.

    ``noise`` (sigma relative to the CSF b0 signal) and ``bias`` (peak relative amplitude) are
    drawn from the family when None. ``mimics`` adds T2 shine-through spots (DWI-bright, ADC
    high: not infarct); ``artefacts`` adds DWI-bright, ADC-low spots in the scalp.
    """

    shape: tuple[int, int, int] = (20, 96, 96)
    spacing: tuple[float, float, float] = (5.5, 2.2, 2.2)
    lesions: tuple[StrokeLesionSpec, ...] = ()
    seed: int = 0
    family: Family = "train"
    noise: float | None = None
    bias: float | None = None
    b_value: float = 1000.0
    mimics: int = 0
    artefacts: bool = False
    signal_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}")


@dataclass(frozen=True)
class StrokePhantom:
    """A phantom study and its truth: ``truth`` is the uint8 union infarct mask, ``lesion_labels``
    numbers each lesion (1..n in spec order) and ``lesion_volumes_ml`` are their truth volumes."""

    spec: StrokePhantomSpec
    b0: Volume
    dwi: Volume
    adc: Volume
    truth: np.ndarray
    lesion_labels: np.ndarray
    lesion_volumes_ml: tuple[float, ...] = field(default=())

    def study_input(self, channels: tuple[str, ...] = ("dwi", "adc")) -> StudyInput:
        """The channels a pipeline receives, e.g. ``("dwi", "b0")`` to make it compute ADC."""
        vols = {"dwi": self.dwi, "adc": self.adc, "b0": self.b0}
        return StudyInput({c: vols[c] for c in channels})


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def _waves(rng: np.random.Generator, n: int, scale_mm: Range) -> np.ndarray:
    """(n, 5) random plane waves: wave vector (3, rad/mm), phase, amplitude."""
    k = rng.normal(size=(n, 3))
    k *= (2 * np.pi / rng.uniform(*scale_mm, size=(n, 1))) / np.linalg.norm(k, axis=1,
                                                                           keepdims=True)
    return np.column_stack([k, rng.uniform(0, 2 * np.pi, n), rng.uniform(0.5, 1.0, n)])


def _field(w: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=np.float32)
    for kx, ky, kz, ph, a in w:
        out += np.float32(a) * np.sin(kx * x + ky * y + kz * z + ph).astype(np.float32)
    return out / np.float32(max(1.0, float(np.abs(w[:, 4]).sum()) ** 0.5))


@dataclass
class _Head:
    """Drawn anatomy and tissue properties of one phantom."""

    axes: np.ndarray
    wobble: np.ndarray
    cortex_mm: float
    sulci: np.ndarray
    vent: float
    adc: dict[str, float]
    t2: dict[str, float]

    @staticmethod
    def draw(fam: FamilyParams, rng: np.random.Generator) -> _Head:
        axes = np.array([_u(rng, r) for r in fam.axes_mm])
        wob = _waves(rng, 5, (60, 140))
        wob[:, 4] *= fam.wobble
        t2 = {"wm": _u(rng, fam.t2_wm), "gm": _u(rng, fam.t2_gm), "csf": 1.0, "scalp": 0.3,
              "bone": 0.03}
        adc = {"wm": _u(rng, fam.adc_wm), "gm": _u(rng, fam.adc_gm), "csf": _u(rng, fam.adc_csf),
               "scalp": 1100.0, "bone": 1500.0}
        return _Head(axes=axes, wobble=wob, cortex_mm=_u(rng, fam.cortex_mm),
                     sulci=_waves(rng, 6, (10, 22)), vent=_u(rng, (0.8, 1.3)), adc=adc, t2=t2)

    def rho(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Normalised radius: < 1 inside the brain surface."""
        r = np.sqrt((x / self.axes[0]) ** 2 + (y / self.axes[1]) ** 2 + (z / self.axes[2]) ** 2)
        return r / (1.0 + _field(self.wobble, x, y, z))

    def tissues(self, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                fam: FamilyParams) -> np.ndarray:
        """Label map: 0 air, 1 scalp, 2 bone, 3 CSF, 4 grey matter, 5 white matter."""
        rho = self.rho(x, y, z)
        a = float(self.axes.mean())
        lab = np.zeros(rho.shape, dtype=np.uint8)
        lab[rho < 1.0 + 12.0 / a] = 1
        lab[rho < 1.0 + 8.0 / a] = 2
        lab[rho < 1.0 + 2.0 / a] = 3
        brain = rho < 1.0
        cortex = brain & (rho > 1.0 - self.cortex_mm / a)
        lab[brain] = 5
        lab[cortex] = 4
        sulcus = cortex & (_field(self.sulci, x, y, z) > fam.sulci)
        deep = ((np.abs(x) - 17) / 9) ** 2 + ((y + 2) / 15) ** 2 + ((z - 2) / 11) ** 2 < 1
        lab[brain & deep] = 4
        v = self.vent
        vent = ((np.abs(x) - 6 * v) / (4.5 * v)) ** 2 + ((y + 4) / (24 * v)) ** 2 + (
            (z - 12) / (8 * v)) ** 2 < 1
        fissure = (np.abs(x) < 1.2) & (z > 8) & brain & (rho > 0.35)
        lab[sulcus | (vent & brain) | fissure] = 3
        return lab


def _grid(spec: StrokePhantomSpec, rng: np.random.Generator, fam: FamilyParams
          ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The LPS affine of the volume and anatomy coordinates (mm from the brain centre)."""
    nz, ny, nx = spec.shape
    sz, sy, sx = spec.spacing
    shift = np.array([rng.uniform(-12, 12), rng.uniform(-8, 8), rng.uniform(-6, 14)])
    yaw = math.radians(rng.uniform(-fam.yaw_deg, fam.yaw_deg))
    centre_lps = np.array([rng.uniform(-30, 30), rng.uniform(-30, 30), rng.uniform(-40, 40)])
    origin = centre_lps - np.array([(nx - 1) * sx, (ny - 1) * sy, (nz - 1) * sz]) / 2 - shift
    affine = np.eye(4)
    affine[:3, 0] = (0, 0, sz)
    affine[:3, 1] = (0, sy, 0)
    affine[:3, 2] = (sx, 0, 0)
    affine[:3, 3] = origin
    f = np.float32
    gx = (origin[0] + np.arange(nx) * sx - centre_lps[0]).reshape(1, 1, -1)
    gy = (origin[1] + np.arange(ny) * sy - centre_lps[1]).reshape(1, -1, 1)
    gz = (origin[2] + np.arange(nz) * sz - centre_lps[2]).reshape(-1, 1, 1)
    c, s = math.cos(yaw), math.sin(yaw)
    xa = (c * gx + s * gy).astype(f)
    ya = (-s * gx + c * gy).astype(f)
    return affine, (xa, ya, gz.astype(f))


@dataclass(frozen=True)
class _Placed:
    """A lesion placed in anatomy coordinates, with its own signal properties."""

    centre: np.ndarray
    rot: np.ndarray
    axes: np.ndarray
    lobes: np.ndarray
    side: int
    adc: float
    rim: float
    boost: float


def _place(les: StrokeLesionSpec, head: _Head, zr: Range, placed: list[_Placed],
           rng: np.random.Generator, fam: FamilyParams) -> _Placed:
    """Rejection-sample a centre in the lesion's hemisphere, deep enough to fit in the brain,
    within the slab and apart from the lesions already placed."""
    r, e = les.radius_mm, max(1.0, les.elongation)
    axes = r * np.array([e ** (2 / 3), e ** (-1 / 3), e ** (-1 / 3)])
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    lobes = _waves(rng, 4, (15, 35))
    lobes[:, 4] *= les.lobulation
    side = 1 if les.hemisphere == "left" else -1
    reach = float(axes.max()) * (1 + les.lobulation)
    half = (zr[1] - zr[0]) / 2
    zlo, zhi = zr[0] + min(reach, half) * 0.7, zr[1] - min(reach, half) * 0.7
    best: np.ndarray | None = None
    for attempt in range(600):
        slack = min(1.0, attempt / 300)
        c = np.array([side * rng.uniform(4 + 0.6 * r, 58), rng.uniform(-70, 60),
                      rng.uniform(min(zlo, zhi), max(zlo, zhi))])
        rho = float(head.rho(*(np.float32(v).reshape(1) for v in c))[0])
        if rho > 1.0 - (1 - slack) * 0.8 * r / float(head.axes.min()) - 0.06:
            continue
        best = c
        if all(np.linalg.norm(c - p.centre) > reach + float(p.axes.max()) + 4 for p in placed):
            break
    if best is None:
        best = np.array([side * 25.0, 0.0, (zr[0] + zr[1]) / 2])
    return _Placed(centre=best, rot=rot, axes=axes, lobes=lobes, side=side,
                   adc=_u(rng, fam.adc_lesion), rim=_u(rng, fam.adc_lesion_rim),
                   boost=_u(rng, fam.t2_lesion_boost))


def _fraction(p: _Placed, x: np.ndarray, y: np.ndarray, z: np.ndarray,
              spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume fraction of each voxel inside the lesion (radial distance to its surface
    over the voxel's width along that direction) and the normalised radius q (< 1 inside)."""
    d = [x - np.float32(p.centre[0]), y - np.float32(p.centre[1]), z - np.float32(p.centre[2])]
    dist = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + np.float32(1e-3)
    local = [sum(np.float32(p.rot[j, i]) * d[j] for j in range(3)) / np.float32(p.axes[i])
             for i in range(3)]
    q = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2) + np.float32(1e-6)
    u = [di / dist * np.float32(30.0) for di in d]
    q = (q / (np.float32(1.0) + _field(p.lobes, *u))).astype(np.float32)
    width = (np.abs(d[0]) * spacing[2] + np.abs(d[1]) * spacing[1]
             + np.abs(d[2]) * spacing[0]) / dist
    signed = dist * (1.0 - 1.0 / q)
    frac = np.clip(0.5 - signed / width, 0.0, 1.0)
    frac *= np.clip(0.5 + p.side * x / np.float32(spacing[2]), 0.0, 1.0)
    return frac.astype(np.float32), q.astype(np.float32)


def _spots(x: np.ndarray, y: np.ndarray, z: np.ndarray, centres: list[np.ndarray],
           radius: float) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=bool)
    for c in centres:
        out |= (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < radius**2
    return out


def make_stroke_mr(spec: StrokePhantomSpec) -> StrokePhantom:
    """Build the phantom described by ``spec`` (b0, DWI at ``spec.b_value``, ADC, truth)."""
    fam = FAMILIES[spec.family]
    rng = np.random.default_rng(spec.seed)
    head = _Head.draw(fam, rng)
    affine, (x, y, z) = _grid(spec, rng, fam)
    lab = head.tissues(x, y, z, fam)
    t2 = np.zeros(lab.shape, np.float32)
    adc = np.zeros(lab.shape, np.float32)
    for i, key in ((1, "scalp"), (2, "bone"), (3, "csf"), (4, "gm"), (5, "wm")):
        t2[lab == i], adc[lab == i] = head.t2[key], head.adc[key]
    adc += np.float32(15.0) * _field(_waves(rng, 4, (8, 20)), x, y, z) * (lab >= 4)
    paren = lab >= 4
    a = float(head.axes.mean())
    extras = rng.normal(size=(spec.mimics + 4, 3))
    for m in range(spec.mimics):
        c = extras[m] * np.array([18, 25, 12]) * np.array([1, 1, 0.6])
        spot = _spots(x, y, z, [c], float(rng.uniform(4, 8))) & (lab == 5)
        t2[spot], adc[spot] = head.t2["wm"] * 1.8, float(rng.uniform(1100, 1300))
    if spec.artefacts:
        dirs = extras[spec.mimics:] / np.linalg.norm(extras[spec.mimics:], axis=1, keepdims=True)
        cs = [dv * head.axes * (1 + 10.0 / a) for dv in dirs]
        spot = _spots(x, y, z, cs, float(rng.uniform(2.5, 4.0))) & (lab <= 2) & (lab >= 1)
        t2[spot], adc[spot] = 0.7, 350.0
    nz = spec.shape[0]
    zc = z[:, 0, 0]
    zr = (float(zc.min()), float(zc.max()))
    b = spec.b_value * 1e-6
    s0 = t2.copy()
    sb = t2 * np.exp(-b * adc)
    frac_max = np.zeros(lab.shape, np.float32)
    labels = np.zeros(lab.shape, np.uint8)
    placed: list[_Placed] = []
    for i, les in enumerate(spec.lesions, start=1):
        p = _place(les, head, zr, placed, rng, fam)
        placed.append(p)
        f, q = _fraction(p, x, y, z, spec.spacing)
        f = np.where(paren & (f > frac_max), f, 0.0).astype(np.float32)
        upd = f > 0
        lesion_adc = p.adc + p.rim * np.minimum(q, 1.0) ** 2
        lesion_t2 = t2 * (1 + p.boost)
        s0[upd] = ((1 - f) * t2 + f * lesion_t2)[upd]
        sb[upd] = ((1 - f) * t2 * np.exp(-b * adc) + f * lesion_t2 * np.exp(-b * lesion_adc))[upd]
        frac_max = np.maximum(frac_max, f)
        labels[upd & (f >= 0.5)] = i
    truth = ((frac_max >= 0.5) & paren).astype(np.uint8)
    labels *= truth
    bias_amp = spec.bias if spec.bias is not None else _u(rng, fam.bias)
    bias = np.exp(np.float32(bias_amp) * _field(_waves(rng, 3, (150, 300)), x, y, z))
    sigma = spec.noise if spec.noise is not None else _u(rng, fam.noise)
    scale = np.float32(spec.signal_scale)

    def rician(sig: np.ndarray) -> np.ndarray:
        re = sig + rng.normal(0, sigma, sig.shape).astype(np.float32)
        im = rng.normal(0, sigma, sig.shape).astype(np.float32)
        return np.rint(np.sqrt(re**2 + im**2) * scale).astype(np.float32)

    b0_img, dwi_img = rician(s0 * bias), rician(sb * bias)
    with np.errstate(divide="ignore", invalid="ignore"):
        adc_img = -np.log(np.maximum(dwi_img, 1) / np.maximum(b0_img, 1)) / b
    adc_img = np.rint(np.clip(adc_img, 0, 4000)).astype(np.float32)
    background = fam.background or ("zero" if rng.random() < 0.5 else "noise")
    if background == "zero":
        adc_img[b0_img < 6 * sigma * scale] = 0.0
    ids = tuple(f"stroke-{spec.seed}-{k}" for k in range(nz))

    def vol(arr: np.ndarray) -> Volume:
        return Volume(array=arr, spacing=spec.spacing, affine=affine, slice_ids=ids)

    vox_ml = float(np.prod(spec.spacing)) / 1000.0
    vols = tuple(float((labels == i).sum()) * vox_ml for i in range(1, len(spec.lesions) + 1))
    return StrokePhantom(spec=spec, b0=vol(b0_img), dwi=vol(dwi_img), adc=vol(adc_img),
                         truth=truth, lesion_labels=labels, lesion_volumes_ml=vols)


def random_stroke_spec(rng: np.random.Generator, family: Family = "train",
                       normal_fraction: float = 0.1) -> StrokePhantomSpec:
    """A random case of ``family``: resolution and coverage from the family, no lesion with
    ``normal_fraction``, else 1-3 lesions of 0.2-80 mL (log-uniform) on random sides."""
    fam = FAMILIES[family]
    pixel, thick = _u(rng, fam.pixel_mm), _u(rng, fam.slice_mm)
    n_xy = int(round(_u(rng, fam.fov_mm) / pixel))
    nz = int(round(_u(rng, fam.slab_mm) / thick))
    lesions: list[StrokeLesionSpec] = []
    if rng.random() >= normal_fraction:
        n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        for _ in range(n):
            ml = float(np.exp(rng.uniform(np.log(0.2), np.log(80.0))))
            side: Literal["left", "right"] = "left" if rng.random() < 0.5 else "right"
            lesions.append(StrokeLesionSpec.of_volume(
                side, ml, float(rng.uniform(1.0, fam.max_elongation)),
                float(rng.uniform(0.0, fam.max_lobulation))))
    return StrokePhantomSpec(shape=(nz, n_xy, n_xy), spacing=(thick, pixel, pixel),
                             lesions=tuple(lesions), seed=int(rng.integers(0, 2**31 - 1)),
                             family=family, mimics=int(rng.integers(0, 3)),
                             artefacts=bool(rng.random() < 0.3))


def stroke_cohort(n: int, seed: int, family: Family = "train",
                  normal_fraction: float = 0.1) -> Iterator[StrokePhantom]:
    """``n`` random phantoms of ``family``; the same arguments always give the same cohort."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield make_stroke_mr(random_stroke_spec(rng, family, normal_fraction))
