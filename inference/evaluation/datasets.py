"""Labelled sets for evaluation: held-out phantoms, the RSNA ICH layout, NIfTI + masks.

Every loader yields :class:`LabelledStudy` lazily, one study in memory at a time.

RSNA Intracranial Hemorrhage Detection layout: ``<root>/<csv>`` with rows ``ID,Label`` where
ID is ``ID_<image>_<class>`` (classes: any, epidural, intraparenchymal, intraventricular,
subarachnoid, subdural) and images ``<root>/<image_dir>/ID_<image><ext>``. Grouping images into
studies and ordering them needs each image's header, which this package does not read: the caller
injects ``read_slice`` (``dicom_node`` provides a DICOM one; tests use a stub over .npy files).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..ich.labels import ICH_CLASSES, ICH_SUBTYPES
from ..phantoms import phantom_cohort
from ..phantoms.head_ct import HeadPhantom, family_cohort
from ..types import Volume


@dataclass(frozen=True)
class LabelledStudy:
    """A study with study-level labels (class key -> 0/1), optional slice labels (z, classes)
    and optional masks (class key -> uint8 (z, y, x))."""

    study_id: str
    volume: Volume
    labels: dict[str, int]
    slice_labels: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class RsnaSlice:
    """What ``read_slice`` returns for one RSNA image: HU pixels, its study key, its position
    along the slice normal (mm) and its pixel spacing (row, column mm)."""

    pixels: np.ndarray
    study_key: str
    position_mm: float
    pixel_mm: tuple[float, float]


SliceReader = Callable[[Path], RsnaSlice]


def phantom_dataset(n: int, seed: int, shape: tuple[int, int, int] = (32, 256, 256)
                    ) -> Iterator[LabelledStudy]:
    """Held-out phantoms of the original generator: use a seed the training never used."""
    for ph in phantom_cohort(n, seed, shape):
        yield _labelled(ph)


def family_dataset(n: int, seed: int, family: str, matrix: int = 256, max_slices: int = 48
                   ) -> Iterator[LabelledStudy]:
    """Phantoms of one family (:mod:`inference.phantoms.families`), e.g. ``heldout``."""
    for ph in family_cohort(n, seed, family, matrix, max_slices):
        yield _labelled(ph)


def _labelled(ph: HeadPhantom) -> LabelledStudy:
    return LabelledStudy(study_id=f"phantom-{ph.spec.seed}", volume=ph.volume,
                         labels=ph.study_labels, slice_labels=ph.slice_labels,
                         masks={**ph.masks, "any": ph.blood_mask})


def read_rsna_labels(csv_path: Path) -> dict[str, dict[str, int]]:
    """image id -> {class: 0/1} from an RSNA label CSV.

    Raises:
        InputError: a row's ID does not have the ``ID_<image>_<class>`` form.
    """
    out: dict[str, dict[str, int]] = defaultdict(dict)
    with csv_path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            image, _, cls = row["ID"].rpartition("_")
            if not image.startswith("ID_") or cls not in ICH_CLASSES:
                raise InputError(f"{csv_path.name}: unexpected ID {row['ID']!r}")
            out[image][cls] = int(float(row["Label"]))
    return dict(out)


def rsna_dataset(root: Path, read_slice: SliceReader, csv_name: str = "stage_2_train.csv",
                 image_dir: str = "stage_2_train", ext: str = ".dcm") -> Iterator[LabelledStudy]:
    """Studies from the RSNA ICH layout, slices sorted by position; study label = any slice.

    Raises:
        InputError: an image listed in the CSV is missing, or slices of a study differ in size.
    """
    labels = read_rsna_labels(root / csv_name)
    by_study: dict[str, list[tuple[float, str, RsnaSlice]]] = defaultdict(list)
    for image in sorted(labels):
        path = root / image_dir / f"{image}{ext}"
        if not path.is_file():
            raise InputError(f"RSNA image {path.name} listed in {csv_name} is missing")
        sl = read_slice(path)
        by_study[sl.study_key].append((sl.position_mm, image, sl))
    for study_key in sorted(by_study):
        items = sorted(by_study[study_key], key=lambda t: t[0])
        shapes = {it[2].pixels.shape for it in items}
        if len(shapes) != 1:
            raise InputError(f"study {study_key}: slices of different sizes {sorted(shapes)}")
        arr = np.stack([it[2].pixels.astype(np.float32) for it in items])
        pos = np.array([it[0] for it in items])
        dz = float(np.median(np.diff(pos))) if len(pos) > 1 else 5.0
        py, px = items[0][2].pixel_mm
        vol = Volume.from_array(arr, (abs(dz) or 5.0, py, px), tuple(it[1] for it in items))
        slice_labels = np.array([[labels[it[1]].get(c, 0) for c in ICH_CLASSES] for it in items],
                                dtype=np.uint8)
        study = {c: int(slice_labels[:, i].max()) for i, c in enumerate(ICH_CLASSES)}
        yield LabelledStudy(study_id=study_key, volume=vol, labels=study,
                            slice_labels=slice_labels)


# Label values in the mask files; override for sets that number classes differently.
DEFAULT_MASK_LABELS: Mapping[int, str] = {i + 1: k for i, k in enumerate(ICH_SUBTYPES)}


def nifti_dataset(root: Path, image_dir: str = "images", mask_dir: str = "masks",
                  mask_labels: Mapping[int, str] = DEFAULT_MASK_LABELS,
                  min_voxels: int = 1) -> Iterator[LabelledStudy]:
    """Studies from ``root/images/<case>.nii[.gz]`` with label maps ``root/masks/<case>...``.

    NIfTI arrays are (i, j, k) with an affine to RAS; they are turned into (z, y, x) and LPS
    (x and y negated) to match :class:`Volume`. A case without a mask file is a normal.
    """
    import nibabel as nib

    for img_path in sorted((root / image_dir).glob("*.nii*")):
        case = img_path.name.split(".nii")[0]
        img: Any = nib.load(str(img_path))
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim != 3:
            raise InputError(f"{img_path.name}: expected a 3-D image")
        vol = _nifti_volume(data, img.affine, img.header.get_zooms()[:3], case)
        masks: dict[str, np.ndarray] = {}
        mask_files = sorted((root / mask_dir).glob(f"{case}.nii*"))
        if mask_files:
            mask_img: Any = nib.load(str(mask_files[0]))
            lab = np.asarray(mask_img.dataobj).astype(np.int32)
            if lab.shape != data.shape:
                raise InputError(f"{case}: mask shape {lab.shape} != image {data.shape}")
            lab = lab.transpose(2, 1, 0)
            for value, key in mask_labels.items():
                m = (lab == value).astype(np.uint8)
                if int(m.sum()) >= min_voxels:
                    masks[key] = m
        nz = vol.array.shape[0]
        slice_labels = np.zeros((nz, len(ICH_CLASSES)), dtype=np.uint8)
        for i, key in enumerate(ICH_CLASSES[1:], start=1):
            if key in masks:
                slice_labels[:, i] = masks[key].reshape(nz, -1).sum(axis=1) >= min_voxels
        slice_labels[:, 0] = slice_labels[:, 1:].max(axis=1)
        if masks:
            masks["any"] = np.maximum.reduce([masks[k] for k in masks])
        labels = {c: int(slice_labels[:, i].max()) for i, c in enumerate(ICH_CLASSES)}
        yield LabelledStudy(study_id=case, volume=vol, labels=labels,
                            slice_labels=slice_labels, masks=masks)


def _nifti_volume(data: np.ndarray, affine: np.ndarray, zooms: tuple, case: str) -> Volume:
    arr = np.ascontiguousarray(data.transpose(2, 1, 0))
    # index (z, y, x) -> (i, j, k) permutation, then RAS -> LPS
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64) @ perm
    spacing = (float(zooms[2]), float(zooms[1]), float(zooms[0]))
    ids = tuple(f"{case}-{k}" for k in range(arr.shape[0]))
    return Volume(array=arr, spacing=spacing, affine=lps, slice_ids=ids)
