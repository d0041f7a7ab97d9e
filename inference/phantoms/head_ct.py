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
from .families import Appearance, draw_anatomy, family
from .lesions import Lesion, draw_lesion, lesion_mask

_CHUNK = 8
EDEMA_HU = 16.0


@dataclass(frozen=True)
class PhantomSpec:
    """What to build: matrix (z, y, x), pixel and slice size (mm), subtypes, seed, noise (HU).

    ``family`` (see :mod:`.families`) draws anatomy, acquisition and artefacts from that
    family's ranges (``noise_hu`` is then the family's); slices thicker than 1.5 mm are then
    integrated over their thickness (3 sub-slices), as a real thick reconstruction is.
    """

    shape: tuple[int, int, int] = (32, 256, 256)
    pixel_mm: float = 0.9
    slice_mm: float = 5.0
    subtypes: tuple[str, ...] = ()
    seed: int = 0
    noise_hu: float = 6.0
    z_shift_mm: float = 0.0
    family: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.subtypes) - set(ICH_SUBTYPES)
        if unknown:
            raise ValueError(f"unknown subtypes {sorted(unknown)}")
        if self.family is not None:
            family(self.family)


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


def _grid(spec: PhantomSpec, z0: int, z1: int, dz: float = 0.0) -> Grid:
    nz, ny, nx = spec.shape
    z = (np.arange(z0, z1) - (nz - 1) / 2 + dz) * spec.slice_mm + spec.z_shift_mm
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
    appearance: Appearance | None = None
    if spec.family is None:
        anat = Anatomy.draw(rng)
    else:
        fam = family(spec.family)
        anat = draw_anatomy(rng, fam)
        appearance = Appearance.draw(rng, fam)
    lesions: list[Lesion] = [draw_lesion(s, anat, rng) for s in spec.subtypes]
    nz = spec.shape[0]
    hu = np.empty(spec.shape, dtype=np.float32)
    masks = {les.subtype: np.zeros(spec.shape, dtype=np.uint8) for les in lesions}
    if any(les.subtype == "intraparenchymal" for les in lesions):
        masks["oedema"] = np.zeros(spec.shape, dtype=np.uint8)
    subs = (-1 / 3, 0.0, 1 / 3) if appearance is not None and spec.slice_mm > 1.5 else (0.0,)
    for z0 in range(0, nz, _CHUNK):
        z1 = min(nz, z0 + _CHUNK)
        acc: np.ndarray | None = None
        votes = {k: np.zeros((z1 - z0, *spec.shape[1:]), dtype=np.float32) for k in masks}
        for dz in subs:
            chunk, chunk_masks = _render(_grid(spec, z0, z1, dz), anat, lesions)
            acc = chunk if acc is None else acc + chunk
            for key, m in chunk_masks.items():
                votes[key] += m
        assert acc is not None
        chunk = acc / len(subs)
        for key, v in votes.items():
            masks[key][z0:z1] = v / len(subs) >= 0.5
        if appearance is None:
            chunk += rng.normal(0.0, spec.noise_hu, size=chunk.shape).astype(np.float32)
        else:
            chunk = appearance.apply(chunk, _grid(spec, z0, z1), anat, spec.pixel_mm, rng)
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


def _render(g: Grid, anat: Anatomy, lesions: list[Lesion]
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Noiseless HU of grid chunk ``g`` and the boolean masks of its lesions (and oedema)."""
    chunk = anat.render(g)
    masks: dict[str, np.ndarray] = {}
    for les in lesions:
        blood, rim = lesion_mask(les, anat, g)
        blood = np.broadcast_to(blood, chunk.shape)
        if rim is not None:
            rim = np.broadcast_to(rim, chunk.shape) & ~blood
            chunk[rim] = EDEMA_HU
            masks["oedema"] = masks.get("oedema", False) | rim
        chunk[blood] = les.hu + chunk[blood] * 0.0
        masks[les.subtype] = masks.get(les.subtype, False) | blood
    return chunk, masks


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


def family_spec(rng: np.random.Generator, family_name: str, matrix: int = 160,
                max_slices: int = 48) -> PhantomSpec:
    """A random case of family ``family_name``: normal with the family's normal fraction, else
    one or two subtypes; slice thickness log-uniform in the family's range, field of view from
    the family, at most ``max_slices`` slices centred near the head's middle (thin-slice cases
    therefore cover a shorter stretch of the head)."""
    fam = family(family_name)
    subtypes: tuple[str, ...] = ()
    if rng.random() >= fam.normal_fraction:
        n = 1 if rng.random() < 0.7 else 2
        subtypes = tuple(sorted(rng.choice(ICH_SUBTYPES, size=n, replace=False).tolist()))
    lo, hi = np.log(fam.slice_mm[0]), np.log(fam.slice_mm[1])
    slice_mm = float(np.exp(rng.uniform(lo, hi)))
    nz = int(min(max_slices, max(4, round(rng.uniform(90, 150) / slice_mm))))
    return PhantomSpec(shape=(nz, matrix, matrix),
                       pixel_mm=float(rng.uniform(*fam.fov_mm) / matrix), slice_mm=slice_mm,
                       subtypes=subtypes, seed=int(rng.integers(0, 2**31 - 1)),
                       z_shift_mm=float(rng.uniform(-15, 25)), family=family_name)


def family_cohort(n: int, seed: int, family_name: str, matrix: int = 160,
                  max_slices: int = 48) -> Iterator[HeadPhantom]:
    """``n`` random phantoms of one family; deterministic in all arguments."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield make_head_ct(family_spec(rng, family_name, matrix, max_slices))
