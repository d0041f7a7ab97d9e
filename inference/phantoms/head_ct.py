"""Axial head CT phantoms: a normal head plus haemorrhages by subtype, with ground truth.

``make_head_ct(spec)`` is deterministic for a given spec (seed included). The volume is built in
z chunks so a 300 x 512 x 512 study does not need many full-size temporaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..ich.labels import ICH_CLASSES, ICH_SUBTYPES
from ..types import Volume
from .anatomy import Anatomy, Grid
from .lesions import Lesion, draw_lesion, lesion_mask

_CHUNK = 8
EDEMA_HU = 16.0


@dataclass(frozen=True)
class PhantomSpec:
    """What to build: matrix (z, y, x), pixel and slice size (mm), subtypes, seed, noise (HU)."""

    shape: tuple[int, int, int] = (32, 256, 256)
    pixel_mm: float = 0.9
    slice_mm: float = 5.0
    subtypes: tuple[str, ...] = ()
    seed: int = 0
    noise_hu: float = 6.0
    z_shift_mm: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.subtypes) - set(ICH_SUBTYPES)
        if unknown:
            raise ValueError(f"unknown subtypes {sorted(unknown)}")


@dataclass(frozen=True)
class HeadPhantom:
    """A phantom study with its ground truth.

    ``masks`` maps each present subtype (and ``oedema`` around an IPH) to a uint8 (z, y, x) mask;
    ``slice_labels`` is (z, 6) uint8 in :data:`ICH_CLASSES` order; ``any`` is their union.
    """

    spec: PhantomSpec
    volume: Volume
    masks: dict[str, np.ndarray]
    slice_labels: np.ndarray

    @property
    def study_labels(self) -> dict[str, int]:
        return {k: int(self.slice_labels[:, i].max()) for i, k in enumerate(ICH_CLASSES)}

    @property
    def blood_mask(self) -> np.ndarray:
        """Union of all haemorrhage masks (oedema excluded)."""
        out = np.zeros(self.volume.array.shape, dtype=np.uint8)
        for key, m in self.masks.items():
            if key in ICH_SUBTYPES:
                out |= m
        return out


def _grid(spec: PhantomSpec, z0: int, z1: int) -> Grid:
    nz, ny, nx = spec.shape
    z = (np.arange(z0, z1) - (nz - 1) / 2) * spec.slice_mm + spec.z_shift_mm
    y = (np.arange(ny) - (ny - 1) / 2) * spec.pixel_mm
    x = (np.arange(nx) - (nx - 1) / 2) * spec.pixel_mm
    f = np.float32
    return Grid(z=z.reshape(-1, 1, 1).astype(f), y=y.reshape(1, -1, 1).astype(f),
                x=x.reshape(1, 1, -1).astype(f))


def make_head_ct(spec: PhantomSpec, min_area_mm2: float = 10.0) -> HeadPhantom:
    """Build the phantom described by ``spec``.

    A slice is labelled positive for a subtype when its mask covers at least ``min_area_mm2``
    (smaller partial-volume slivers are invisible to a reader too).
    """
    rng = np.random.default_rng(spec.seed)
    anat = Anatomy.draw(rng)
    lesions: list[Lesion] = [draw_lesion(s, anat, rng) for s in spec.subtypes]
    nz, ny, nx = spec.shape
    hu = np.empty(spec.shape, dtype=np.float32)
    masks = {les.subtype: np.zeros(spec.shape, dtype=np.uint8) for les in lesions}
    if any(les.subtype == "intraparenchymal" for les in lesions):
        masks["oedema"] = np.zeros(spec.shape, dtype=np.uint8)
    for z0 in range(0, nz, _CHUNK):
        z1 = min(nz, z0 + _CHUNK)
        g = _grid(spec, z0, z1)
        chunk = anat.render(g)
        for les in lesions:
            blood, rim = lesion_mask(les, anat, g)
            blood = np.broadcast_to(blood, chunk.shape)
            if rim is not None:
                rim = np.broadcast_to(rim, chunk.shape) & ~blood
                chunk[rim] = EDEMA_HU
                masks["oedema"][z0:z1] |= rim.astype(np.uint8)
            chunk[blood] = les.hu + chunk[blood] * 0.0
            masks[les.subtype][z0:z1] |= blood.astype(np.uint8)
        chunk += rng.normal(0.0, spec.noise_hu, size=chunk.shape).astype(np.float32)
        hu[z0:z1] = chunk
    min_px = min_area_mm2 / spec.pixel_mm**2
    labels = np.zeros((nz, len(ICH_CLASSES)), dtype=np.uint8)
    for i, key in enumerate(ICH_CLASSES[1:], start=1):
        if key in masks:
            labels[:, i] = masks[key].reshape(nz, -1).sum(axis=1) >= min_px
    labels[:, 0] = labels[:, 1:].max(axis=1)
    ids = tuple(f"phantom-{spec.seed}-{k}" for k in range(nz))
    vol = Volume.from_array(hu, (spec.slice_mm, spec.pixel_mm, spec.pixel_mm), ids)
    return HeadPhantom(spec=spec, volume=vol, masks=masks, slice_labels=labels)


def random_spec(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (32, 256, 256),
    normal_fraction: float = 0.35,
) -> PhantomSpec:
    """A random case: normal with ``normal_fraction``, else one or two subtypes; field of view,
    noise and head position vary."""
    subtypes: tuple[str, ...] = ()
    if rng.random() >= normal_fraction:
        n = 1 if rng.random() < 0.7 else 2
        subtypes = tuple(sorted(rng.choice(ICH_SUBTYPES, size=n, replace=False).tolist()))
    fov = rng.uniform(200, 250)
    return PhantomSpec(shape=shape, pixel_mm=float(fov / shape[1]),
                       slice_mm=float(150.0 / shape[0]) if shape[0] > 40 else 5.0,
                       subtypes=subtypes, seed=int(rng.integers(0, 2**31 - 1)),
                       noise_hu=float(rng.uniform(3, 10)), z_shift_mm=float(rng.uniform(-8, 12)))


def phantom_cohort(
    n: int, seed: int, shape: tuple[int, int, int] = (32, 256, 256), normal_fraction: float = 0.35
) -> Iterator[HeadPhantom]:
    """``n`` random phantoms; the same (n, seed, shape) always gives the same cohort."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield make_head_ct(random_spec(rng, shape, normal_fraction))
