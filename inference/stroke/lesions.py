"""From a binary lesion mask to findings: clean-up, connected lesions, sides.

Sides are patient sides: LPS +x is the patient's left (PS3.3 C.7.6.2.1.1), measured from the
brain's mid-sagittal plane (the x of the brain mask's centroid), so table offsets and the
display orientation do not matter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..types import Hemisphere, Lesion, Volume
from .channels import lps_x
from .params import PostProcess


def structure(connectivity: int) -> np.ndarray:
    """The 3-D neighbourhood of 6 (faces) or 26 (faces, edges, corners) connectivity."""
    return ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)


def clean(mask: np.ndarray, brain: np.ndarray, grid: Volume, p: PostProcess) -> np.ndarray:
    """``mask`` inside ``brain``, without components under ``min_lesion_ml`` and without small
    (< ``edge_max_ml``) components wholly inside the brain's outer ``edge_margin_mm`` rim."""
    mask = mask & brain
    labels, n = ndimage.label(mask, structure=structure(p.connectivity))
    if n == 0:
        return mask
    vox_ml = grid.voxel_volume_ml
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64) * vox_ml
    keep = sizes >= p.min_lesion_ml
    keep[0] = False
    if p.edge_margin_mm > 0 and p.edge_max_ml > 0:
        r = max(1, round(p.edge_margin_mm / min(grid.spacing[1:])))
        core = ndimage.binary_erosion(brain, structure=np.ones((1, 3, 3), bool), iterations=r)
        inner = np.bincount(labels[core].ravel(), minlength=n + 1)
        keep &= ~((inner == 0) & (sizes < p.edge_max_ml))
    out: np.ndarray = keep[labels]
    return out


def hemisphere_of(xs: np.ndarray, midline_x: float, bilateral_fraction: float) -> Hemisphere:
    """``left`` / ``right`` by where most voxels lie; ``bilateral`` when the smaller side holds
    at least ``bilateral_fraction`` of them."""
    left = float(np.mean(xs > midline_x))
    if min(left, 1.0 - left) >= bilateral_fraction:
        return "bilateral"
    return "left" if left > 0.5 else "right"


def describe(mask: np.ndarray, grid: Volume, midline_x: float, p: PostProcess
             ) -> tuple[Lesion, ...]:
    """Each connected lesion of ``mask`` with volume, centroid, side, box and the slice of its
    largest area, largest first (index 1 = largest)."""
    labels, n = ndimage.label(mask, structure=structure(p.connectivity))
    found = []
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        sub = labels[box] == i
        zyx = np.argwhere(sub) + np.array([s.start for s in box])
        count = int(zyx.shape[0])
        areas = sub.reshape(sub.shape[0], -1).sum(axis=1)
        cz, cy, cx = (float(v) for v in zyx.mean(axis=0))
        found.append((count, cz, cy, cx, box, int(np.argmax(areas)) + box[0].start,
                      hemisphere_of(lps_x(grid, zyx), midline_x, p.bilateral_fraction)))
    found.sort(key=lambda t: (-t[0], t[1], t[2], t[3]))
    return tuple(
        Lesion(index=k, volume_ml=count * grid.voxel_volume_ml, voxel_count=count,
               centroid_zyx=(cz, cy, cx), hemisphere=side,
               bbox=(box[0].start, box[1].start, box[2].start,
                     box[0].stop, box[1].stop, box[2].stop),
               slice_index_of_max_area=top)
        for k, (count, cz, cy, cx, box, top, side) in enumerate(found, start=1))


def laterality(lesions: tuple[Lesion, ...]) -> Hemisphere | None:
    """The side of all lesions together: one side when all agree, else ``bilateral``."""
    sides = {les.hemisphere for les in lesions}
    if not sides:
        return None
    return sides.pop() if len(sides) == 1 else "bilateral"


def key_slice_index(mask: np.ndarray) -> int | None:
    """The slice with the largest lesion area (the reader's first look), None when empty."""
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.any() else None
