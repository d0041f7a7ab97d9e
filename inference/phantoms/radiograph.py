"""Synthetic projection radiographs of the limbs with fracture boxes as ground truth.

An image is drawn as an attenuation map (soft tissue envelope, long bones with cortex, medulla,
trabecular texture and flared ends, chains of short bones, a cast shell) and turned into a
bone-bright stored-value image (exposure, gamma, detector blur, noise, bit depth and offset),
with burned-in markers and text that are not findings. Fractures are drawn on a bone as a lucent
line across it (complete, or a cortical break from one side), the distal fragment displaced and
angulated; a growth plate is a lucent line near a bone end that is NOT a fracture. Each truth
box is the bounding box (x0, y0, x1, y1; pixel edges, DICOM SCOORD convention) of the drawn
break zone on the output pixel grid.

Anatomy is laid out relative to the image (radiographs are collimated to the part), rendered at
most :data:`RENDER_MAX` pixels on the long side and resized to the requested size (pixel-edge
convention, so boxes scale exactly). Two families draw from DIFFERENT parameter ranges
(:data:`RADIOGRAPH_FAMILIES`): models train on ``train`` and are measured on ``heldout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..types import Radiograph, Side

RENDER_MAX = 1024
Box = tuple[float, float, float, float]
Range = tuple[float, float]
RadiographFamilyName = Literal["train", "heldout"]

#: Body parts the generator draws (DICOM Body Part Examined defined terms), by layout.
LAYOUTS: dict[str, str] = {
    "FEMUR": "single", "HUMERUS": "single", "FOREARM": "pair", "LEG": "pair",
    "ELBOW": "joint", "KNEE": "joint", "WRIST": "wrist", "ANKLE": "wrist",
    "HAND": "digits", "FOOT": "digits",
}
BODY_PARTS: tuple[str, ...] = tuple(LAYOUTS)


@dataclass(frozen=True)
class RadiographFamily:
    """Uniform ranges of one family (sizes log-uniform); widths are fractions of the image's
    short side, fracture sizes fractions of the bone's radius."""

    name: str
    long_side: Range
    bone_radius: Range
    cortex: Range
    texture_px: Range  # correlation length of the trabecular texture, render pixels
    texture_amp: Range
    bone_density: Range
    tissue_density: Range
    gap: Range
    depth: Range
    tilt_deg: float  # fracture line tilt from the bone's perpendicular, up to
    displacement: Range
    angulation_deg: Range
    incomplete_p: float
    noise: Range
    noise_corr: Range  # render pixels; 0 = white noise
    signal_noise: bool  # noise grows with exposure (quantum noise) instead of constant
    blur: Range
    gamma: Range
    bits: tuple[int, ...]
    cast_p: float
    plate_p: float
    text_p: float


RADIOGRAPH_FAMILIES: dict[str, RadiographFamily] = {
    "train": RadiographFamily(
        name="train", long_side=(256, 1200), bone_radius=(0.045, 0.08), cortex=(0.15, 0.38),
        texture_px=(1.5, 4.5), texture_amp=(0.08, 0.35), bone_density=(0.75, 1.3),
        tissue_density=(0.12, 0.35), gap=(0.1, 0.3), depth=(0.55, 0.95), tilt_deg=40.0,
        displacement=(0.0, 0.5), angulation_deg=(0.0, 12.0), incomplete_p=0.35,
        noise=(0.01, 0.035), noise_corr=(0.0, 0.0), signal_noise=False, blur=(0.4, 1.3),
        gamma=(0.75, 1.3), bits=(12,), cast_p=0.2, plate_p=0.35, text_p=0.5),
    "heldout": RadiographFamily(
        name="heldout", long_side=(384, 3000), bone_radius=(0.04, 0.09), cortex=(0.3, 0.45),
        texture_px=(3.5, 6.0), texture_amp=(0.2, 0.4), bone_density=(0.7, 1.0),
        tissue_density=(0.25, 0.4), gap=(0.1, 0.25), depth=(0.55, 0.9), tilt_deg=50.0,
        displacement=(0.0, 0.4), angulation_deg=(0.0, 15.0), incomplete_p=0.4,
        noise=(0.015, 0.04), noise_corr=(0.8, 1.5), signal_noise=True, blur=(0.8, 1.5),
        gamma=(0.7, 1.4), bits=(10, 16), cast_p=0.25, plate_p=0.4, text_p=0.7),
}


@dataclass(frozen=True)
class RadiographSpec:
    """What to draw: body part, size (None: drawn from the family), number of fractures."""

    body_part: str = "FOREARM"
    fractures: int = 1
    family: RadiographFamilyName = "train"
    seed: int = 0
    rows: int | None = None
    cols: int | None = None

    def __post_init__(self) -> None:
        if self.body_part not in LAYOUTS:
            raise ValueError(f"unknown body part {self.body_part!r}; known: {BODY_PARTS}")
        if self.family not in RADIOGRAPH_FAMILIES:
            raise ValueError(f"unknown radiograph family {self.family!r}")
        if self.fractures < 0:
            raise ValueError("fractures must be >= 0")


@dataclass(frozen=True)
class RadiographPhantom:
    """The image (float32 stored values, bone bright), truth boxes and header facts."""

    image: np.ndarray
    boxes: tuple[Box, ...]
    pixel_spacing_mm: tuple[float, float]
    body_part: str
    laterality: Side
    spec: RadiographSpec

    def radiograph(self, image_id: str = "phantom") -> Radiograph:
        """The phantom as the pipeline's input value."""
        return Radiograph(array=self.image, image_id=image_id,
                          pixel_spacing_mm=self.pixel_spacing_mm, body_part=self.body_part,
                          laterality=self.laterality)


@dataclass
class _Bone:
    """A bone in render pixels: axis from p0 to p1 (x, y), shaft radius, relative cortex."""

    p0: np.ndarray
    p1: np.ndarray
    radius: float
    cortex: float
    density: float
    flare: float = 1.4
    long: bool = True
    tip: float = 0.05  # axial fraction over which the end rounds off (0.5: an ellipse)
    plates: list[float] = field(default_factory=list)  # axial fractions of growth plates
    fracture: _Fracture | None = None


@dataclass(frozen=True)
class _Fracture:
    t: float
    tilt: float
    gap: float
    depth: float
    shift: float
    angle: float
    extent: float  # 1 = complete; else the fraction of the width broken from one side
    side: float


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _size(spec: RadiographSpec, fam: RadiographFamily, rng: np.random.Generator
          ) -> tuple[int, int]:
    if spec.rows and spec.cols:
        return spec.rows, spec.cols
    long = int(round(math.exp(_u(rng, (math.log(fam.long_side[0]), math.log(fam.long_side[1]))))))
    short = int(round(long * _u(rng, (0.72, 1.0))))
    return (long, short) if rng.random() < 0.75 else (short, long)


def _layout(part: str, fam: RadiographFamily, rng: np.random.Generator, h: int, w: int
            ) -> list[_Bone]:
    """Bones in render pixels, the main axis along the image's long side."""
    s = float(min(h, w))
    L = float(max(h, w))
    r = _u(rng, fam.bone_radius) * s
    kind = LAYOUTS[part]

    def bone(a: tuple[float, float], b: tuple[float, float], rad: float, long: bool = True
             ) -> _Bone:
        return _Bone(np.array(a) * [L, s], np.array(b) * [L, s], rad, _u(rng, fam.cortex),
                     _u(rng, fam.bone_density), flare=_u(rng, (1.25, 1.6)), long=long)

    c = 0.5 + _u(rng, (-0.08, 0.08))
    bones: list[_Bone] = []
    if kind == "single":
        bones.append(bone((-0.1, c), (_u(rng, (0.75, 1.1)), c + _u(rng, (-0.06, 0.06))), r))
    elif kind in ("pair", "joint", "wrist"):
        end = 1.1 if kind == "pair" else _u(rng, (0.5, 0.6))
        sep = _u(rng, (1.4, 2.6)) * r / s
        conv = _u(rng, (-0.6, 0.3)) * sep
        bones.append(bone((-0.1, c - sep / 2), (end, c - sep / 2 + conv / 2), r))
        bones.append(bone((-0.1, c + sep / 2), (end - 0.03, c + sep / 2 - conv / 2),
                          r * _u(rng, (0.55, 0.8))))
        if kind == "joint":
            gap = _u(rng, (0.02, 0.04))
            bones.append(bone((end + gap + 0.03, c), (1.1, c + _u(rng, (-0.05, 0.05))),
                              r * _u(rng, (1.0, 1.25))))
        elif kind == "wrist":
            bones += _digits(rng, fam, end + 0.03, c, r * 0.6, s, L, n_seg=2)
    else:
        bones += _digits(rng, fam, _u(rng, (0.0, 0.15)), c, r * 0.55, s, L, n_seg=3)
    return bones


def _digits(rng: np.random.Generator, fam: RadiographFamily, x0: float, c: float, r: float,
            s: float, L: float, n_seg: int) -> list[_Bone]:
    """Rays of short bones (metacarpal/metatarsal + phalanges) fanning out from ``x0``,
    separated by joint spaces, with round carpal/tarsal blobs at the base."""
    out: list[_Bone] = []
    n_rays = int(rng.integers(3, 6))
    spread = _u(rng, (0.35, 0.6))
    for k in range(n_rays):
        y = c + (k - (n_rays - 1) / 2) * spread / n_rays
        ang = (y - c) * _u(rng, (0.2, 0.6))
        x = x0 + 0.06
        lens = [_u(rng, (0.22, 0.3)), _u(rng, (0.13, 0.18)), _u(rng, (0.08, 0.12))][:n_seg]
        for j, ln in enumerate(lens):
            x1, y1 = x + ln * math.cos(ang), y + ln * math.sin(ang) * L / s
            rad = r * (1.0 - 0.15 * j) * _u(rng, (0.85, 1.1))
            out.append(_Bone(np.array([x * L, y * s]), np.array([x1 * L, y1 * s]), rad,
                             _u(rng, fam.cortex), _u(rng, fam.bone_density),
                             flare=_u(rng, (1.3, 1.6)), long=False))
            gap = _u(rng, (0.012, 0.022))
            x, y = x1 + gap * math.cos(ang), y1 + gap * math.sin(ang) * L / s
    for _ in range(int(rng.integers(4, 8))):  # carpals / tarsals: short round bones
        cx, cy = x0 + _u(rng, (-0.05, 0.04)), c + _u(rng, (-0.15, 0.15))
        rad = r * _u(rng, (1.0, 1.5))
        out.append(_Bone(np.array([cx * L, cy * s]), np.array([cx * L + rad * 2.2, cy * s]),
                         rad, _u(rng, fam.cortex), _u(rng, fam.bone_density), flare=1.0,
                         long=False, tip=0.5))
    return out


def _to_image(bones: list[_Bone], h: int, w: int, rng: np.random.Generator) -> None:
    """Rotate the layout (drawn along x on an L x s canvas) into an h x w image in place."""
    L, s = max(h, w), min(h, w)
    theta = _u(rng, (-0.25, 0.25)) + (math.pi if rng.random() < 0.5 else 0.0)
    mirror = rng.random() < 0.5
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    for b in bones:
        for name in ("p0", "p1"):
            p = getattr(b, name) - [L / 2, s / 2]
            if mirror:
                p = p * [1, -1]
            p = rot @ p
            p = p + [L / 2, s / 2]
            setattr(b, name, p if w >= h else p[::-1].copy())


def _frame(b: _Bone, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Axial (px from p0) and signed perpendicular coordinates of pixel centres; bone length."""
    v = b.p1 - b.p0
    length = float(np.hypot(*v))
    ax = v / length
    dx, dy = xs - b.p0[0], ys - b.p0[1]
    return dx * ax[0] + dy * ax[1], -dx * ax[1] + dy * ax[0], length


def _profile(b: _Bone, a: np.ndarray, d: np.ndarray, length: float, tex: np.ndarray
             ) -> np.ndarray:
    """Projected bone thickness: a hollow cylinder (cortex + textured medulla) whose radius
    flares towards the ends and rounds off at the tips."""
    t = a / length
    e = np.minimum(t, 1 - t)
    g = 1 + (b.flare - 1) * np.clip(1 - e / 0.18, 0, 1) ** 2
    cap = np.sqrt(np.clip(1 - (np.clip(b.tip - e, 0, None) / b.tip) ** 2, 0, 1))
    r_out = b.radius * g * np.where(e >= 0, cap, 0)
    r_in = r_out * (1 - b.cortex / g)
    outer = np.sqrt(np.clip(r_out ** 2 - d ** 2, 0, None))
    inner = np.sqrt(np.clip(r_in ** 2 - d ** 2, 0, None))
    return (2 * (outer - inner) + 0.45 * 2 * inner * tex) * b.density


def _draw_bone(b: _Bone, tex: np.ndarray, canvas: np.ndarray) -> np.ndarray | None:
    """Add the bone's attenuation to ``canvas``; returns the break zone mask (full canvas)
    when the bone has a fracture."""
    h, w = canvas.shape
    pad = b.radius * b.flare * 1.6 + 4
    x0 = int(max(0, math.floor(min(b.p0[0], b.p1[0]) - pad)))
    x1 = int(min(w, math.ceil(max(b.p0[0], b.p1[0]) + pad)))
    y0 = int(max(0, math.floor(min(b.p0[1], b.p1[1]) - pad)))
    y1 = int(min(h, math.ceil(max(b.p0[1], b.p1[1]) + pad)))
    if x1 <= x0 or y1 <= y0:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    a, d, length = _frame(b, xs, ys)
    tx = tex[y0:y1, x0:x1]
    f = b.fracture
    if f is None:
        val = _profile(b, a, d, length, tx)
        zone = None
    else:
        af = f.t * length
        q = (a - af) * math.cos(f.tilt) - d * math.sin(f.tilt)
        ca, sa = math.cos(-f.angle), math.sin(-f.angle)
        da, dd = a - af, d - f.shift
        a2, d2 = af + ca * da - sa * dd, sa * da + ca * dd
        distal = q > 0
        val = np.where(distal, _profile(b, a2, d2, length, tx), _profile(b, a, d, length, tx))
        across = (d * f.side / b.radius + 1) / 2 >= 1 - f.extent
        line = (np.abs(q) < f.gap / 2) & across
        val = np.where(line, val * (1 - f.depth), val)
        near = np.abs(q) < max(f.gap / 2 + 1.0, 0.3 * b.radius)
        zone_local = near & (val > 0.02 * b.radius) & (np.abs(d) < b.radius * 1.6)
        zone_local &= (np.abs(d) < b.radius * 1.05) | (np.abs(d - f.shift) < b.radius * 1.05)
        zone = np.zeros(canvas.shape, dtype=bool)
        zone[y0:y1, x0:x1] = zone_local
    for tp in b.plates:
        q = a - tp * length + 0.25 * b.radius * np.sin(d / b.radius * 3.0)
        val = np.where(np.abs(q) < 0.06 * b.radius + 0.6, val * 0.45, val)
    canvas[y0:y1, x0:x1] += val
    return zone


def _capsule_chord(bones: list[_Bone], scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Projected thickness of a smooth envelope around the bones (soft tissue, casts): the max
    over bones of a capsule's chord length, computed on a coarse grid and resized."""
    h, w = shape
    k = 4
    ys, xs = np.mgrid[0:(h + k - 1) // k, 0:(w + k - 1) // k].astype(np.float32) * k + k / 2
    out = np.zeros(xs.shape, dtype=np.float32)
    for b in bones:
        a, d, length = _frame(b, xs, ys)
        ac = np.clip(a, 0, length)
        dist2 = (a - ac) ** 2 + d ** 2
        R = b.radius * scale
        out = np.maximum(out, 2 * np.sqrt(np.clip(R ** 2 - dist2, 0, None)))
    return _resize(out, (h, w))


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with pixel-edge alignment (antialiased when shrinking)."""
    if img.shape == shape:
        return img.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False,
                        antialias=shape[0] < img.shape[0])
    return out[0, 0].numpy()


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], corr: float) -> np.ndarray:
    n = rng.standard_normal(shape).astype(np.float32)
    if corr > 0:
        n = ndimage.gaussian_filter(n, corr)
        n /= max(float(n.std()), 1e-6)
    return n


# 5x7 glyphs for burned-in markers and annotation text.
_GLYPHS = {
    "L": ["10000"] * 6 + ["11111"], "R": ["11110", "10001", "10001", "11110", "10100", "10010",
                                         "10001"],
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "T": ["11111"] + ["00100"] * 6, "E": ["11111", "10000", "10000", "11110", "10000", "10000",
                                          "11111"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
}


def _burn_text(img: np.ndarray, text: str, y: int, x: int, px: int, value: float) -> None:
    """Burn ``text`` (capitals of :data:`_GLYPHS`) into ``img`` with ``px``-pixel dots."""
    for i, ch in enumerate(text):
        glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[ch]])
        big = np.kron(glyph, np.ones((px, px), dtype=bool))
        gy, gx = y, x + i * 6 * px
        hh, ww = min(big.shape[0], img.shape[0] - gy), min(big.shape[1], img.shape[1] - gx)
        if hh > 0 and ww > 0 and gy >= 0 and gx >= 0:
            img[gy:gy + hh, gx:gx + ww][big[:hh, :ww]] = value


def _fracture(rng: np.random.Generator, fam: RadiographFamily, b: _Bone) -> _Fracture:
    complete = rng.random() >= fam.incomplete_p
    r = b.radius
    return _Fracture(
        t=_u(rng, (0.25, 0.75) if b.long else (0.3, 0.7)),
        tilt=math.radians(_u(rng, (-fam.tilt_deg, fam.tilt_deg))),
        gap=max(1.2, _u(rng, fam.gap) * r), depth=_u(rng, fam.depth),
        shift=(_u(rng, fam.displacement) * r * float(rng.choice([-1.0, 1.0]))) if complete
        else 0.0,
        angle=math.radians(_u(rng, fam.angulation_deg) * float(rng.choice([-1.0, 1.0])))
        if complete else 0.0,
        extent=1.0 if complete else _u(rng, (0.35, 0.7)), side=float(rng.choice([-1.0, 1.0])))


def _choose_fractured(rng: np.random.Generator, fam: RadiographFamily, bones: list[_Bone],
                      n: int, shape: tuple[int, int]) -> None:
    """Put ``n`` fractures on distinct bones whose break point lies well inside the image."""
    h, w = shape
    cands = [i for i, b in enumerate(bones) if b.radius * 3 < np.hypot(*(b.p1 - b.p0))]
    rng.shuffle(cands)
    placed = 0
    for i in cands:
        if placed == n:
            break
        b = bones[i]
        for _ in range(6):
            fr = _fracture(rng, fam, b)
            p = b.p0 + fr.t * (b.p1 - b.p0)
            m = 2 * b.radius + 4
            if m < p[0] < w - m and m < p[1] < h - m:
                b.fracture = fr
                placed += 1
                break


def _box(zone: np.ndarray, scale: tuple[float, float], pad: float) -> Box | None:
    """Bounding box of a render-grid mask, in output pixel edges (x0, y0, x1, y1)."""
    rows = np.flatnonzero(zone.any(axis=1))
    cols = np.flatnonzero(zone.any(axis=0))
    if rows.size == 0:
        return None
    sy, sx = scale
    h, w = zone.shape
    return (max(0.0, (cols[0] - pad) * sx), max(0.0, (rows[0] - pad) * sy),
            min(w * sx, (cols[-1] + 1 + pad) * sx), min(h * sy, (rows[-1] + 1 + pad) * sy))


def make_radiograph(spec: RadiographSpec) -> RadiographPhantom:
    """Draw one radiograph; the same spec always gives the same image and boxes."""
    fam = RADIOGRAPH_FAMILIES[spec.family]
    rng = np.random.default_rng([spec.seed, 0 if spec.family == "train" else 1])
    rows, cols = _size(spec, fam, rng)
    k = min(1.0, RENDER_MAX / max(rows, cols))
    h, w = max(8, int(round(rows * k))), max(8, int(round(cols * k)))
    bones = _layout(spec.body_part, fam, rng, h, w)
    _to_image(bones, h, w, rng)
    if rng.random() < fam.plate_p:
        for b in bones:
            if b.long:
                b.plates = [t for t in (0.09, 0.91) if rng.random() < 0.7]
    # Fractures from a stream of their own: the same seed draws the same limb with and
    # without them (tests compare the two).
    frac_rng = np.random.default_rng([spec.seed, 0 if spec.family == "train" else 1, 2])
    _choose_fractured(frac_rng, fam, bones, spec.fractures, (h, w))
    tex = _noise_field(rng, (h, w), _u(rng, fam.texture_px))
    tex = 1 + _u(rng, fam.texture_amp) * tex
    att = np.zeros((h, w), dtype=np.float32)
    zones = [z for b in bones if (z := _draw_bone(b, tex, att)) is not None]
    s = float(min(h, w))
    att *= 1.0 / s
    att += _u(rng, fam.tissue_density) * _capsule_chord(bones, _u(rng, (2.0, 3.2)), (h, w)) / s
    if rng.random() < fam.cast_p:
        outer = _capsule_chord(bones, 4.0, (h, w))
        inner = _capsule_chord(bones, 3.4, (h, w))
        att += _u(rng, (0.6, 1.2)) * (outer - inner) / s * (0.9 + 0.1 * tex)
    att = ndimage.gaussian_filter(att, _u(rng, fam.blur))
    mu = _u(rng, (3.0, 5.0))
    img = 1 - np.exp(-mu * att)
    img = np.clip(img / max(float(img.max()), 1e-6), 0, 1) ** _u(rng, fam.gamma)
    img = _resize(img, (rows, cols))
    sy, sx = rows / h, cols / w
    boxes = tuple(bx for z in zones if (bx := _box(z, (sy, sx), 1.0)) is not None)
    sigma = _u(rng, fam.noise)
    noise = _noise_field(rng, (rows, cols), _u(rng, fam.noise_corr) / k)
    img = img + sigma * noise * (np.sqrt(0.2 + img) if fam.signal_noise else 1.0)
    _markers(rng, fam, img)
    bits = int(rng.choice(fam.bits))
    top = 2 ** bits - 1
    offset = float(rng.integers(0, top // 8 + 1))
    gain = _u(rng, (0.6, 0.95)) * (top - offset)
    stored = np.round(np.clip(img, 0, 1) * gain + offset).astype(np.float32)
    side: Side = "left" if rng.random() < 0.5 else "right"
    spacing = float(np.clip(_u(rng, (0.1, 0.3)), 0.1, 0.3))
    return RadiographPhantom(image=stored, boxes=boxes, pixel_spacing_mm=(spacing, spacing),
                             body_part=spec.body_part, laterality=side, spec=spec)


def _markers(rng: np.random.Generator, fam: RadiographFamily, img: np.ndarray) -> None:
    """A side marker (L or R) and sometimes annotation text, burned in at full brightness."""
    rows, cols = img.shape
    px = max(2, int(min(rows, cols) * _u(rng, (0.006, 0.012))))
    y = int(rng.integers(2, max(3, rows // 8)))
    x = int(rng.integers(2, max(3, cols // 8)))
    if rng.random() < 0.5:
        y = rows - y - 8 * px
    if rng.random() < 0.5:
        x = cols - x - 6 * px
    _burn_text(img, str(rng.choice(["L", "R"])), max(0, y), max(0, x), px, 1.0)
    if rng.random() < fam.text_p:
        text = "".join(rng.choice(list(_GLYPHS), size=int(rng.integers(2, 7))))
        tpx = max(1, px // 2)
        ty = int(rng.integers(0, max(1, rows // 10)))
        _burn_text(img, text, ty if rng.random() < 0.5 else rows - ty - 8 * tpx,
                   int(rng.integers(0, max(1, cols // 3))), tpx, 1.0)


def random_radiograph_spec(rng: np.random.Generator, family: RadiographFamilyName,
                           seed: int, normal_fraction: float = 0.4) -> RadiographSpec:
    """A spec with a random body part and 0 (normal), 1 or 2 fractures."""
    part = str(rng.choice(BODY_PARTS))
    n = 0 if rng.random() < normal_fraction else (2 if rng.random() < 0.15 else 1)
    return RadiographSpec(body_part=part, fractures=n, family=family, seed=seed)


def radiograph_cohort(n: int, seed: int, family: RadiographFamilyName = "train",
                      normal_fraction: float = 0.4) -> list[RadiographSpec]:
    """``n`` reproducible specs (each with its own seed derived from ``seed``)."""
    rng = np.random.default_rng([seed, 17])
    return [random_radiograph_spec(rng, family, int(rng.integers(0, 2 ** 31)), normal_fraction)
            for _ in range(n)]
