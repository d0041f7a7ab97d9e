"""Diffusion b-values from headers: per instance, and per frame of Enhanced MR images.

The standard place is Diffusion b-value (0018,9087) of the MR Diffusion Macro (PS3.3
C.8.13.5.9), in the Enhanced MR per-frame or shared functional groups (C.7.6.16) and, on some
scanners, at the top level of classic MR images. Classic images from most scanners carry it in
private elements instead, found through their private creators (PS3.5 7.8.1): Siemens
(0019,xx0C) of ``SIEMENS MR HEADER`` or the CSA image header's ``B_value``, GE (0043,xx39) of
``GEMS_PARM_01``, Philips (2001,xx03) of ``Philips Imaging DD 001``; last, the conventions of
Sequence Name (``*ep_b1000t``) and Image Comments (``b=1000``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from dicom_node.volume import csa

_PRIVATE_B_VALUES = (
    # (group, element offset, private creator, how to read the value)
    (0x0019, 0x0C, "SIEMENS MR HEADER", "number"),  # (0019,100C) B_value
    (0x0043, 0x39, "GEMS_PARM_01", "ge"),  # (0043,1039) Slop_int_6..9: b-value first
    (0x2001, 0x03, "Philips Imaging DD 001", "number"),  # (2001,1003) Diffusion B-Factor
)
DIRECTIONAL = frozenset({"DIRECTIONAL", "BMATRIX"})
"""Diffusion Directionality (0018,9075) values of single-direction frames: not a trace."""


@dataclass(frozen=True)
class FrameB:
    """One frame's diffusion facts: 1-based frame number, b-value (None when the frame has
    none), and Diffusion Directionality (upper case, "" when absent)."""

    frame_number: int
    b_value: float | None
    directionality: str


def first_number(value: Any) -> float | None:
    """The first value of a DS/IS/FD/bytes element as a number; None when not a number."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip(" \x00")
    if isinstance(value, list | tuple) or (hasattr(value, "__len__")
                                            and not isinstance(value, str | bytes)):
        value = value[0] if len(value) else None
    if isinstance(value, str):
        value = value.split("\\")[0].strip()
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _private_b_value(ds: Dataset) -> float | None:
    """The b-value where each vendor keeps it in classic MR objects, found through its private
    creator so that another vendor's element at the same tag is never read."""
    for group, offset, creator, kind in _PRIVATE_B_VALUES:
        try:
            block = ds.private_block(group, creator)
            element = ds.get(block.get_tag(offset))
        except (KeyError, ValueError):
            continue
        if element is None:
            continue
        value = first_number(element.value)
        if value is None:
            continue
        if kind == "ge" and value >= 1e9:
            value -= 1e9  # GE adds 10^9 to the b-value on some releases
        return value
    return csa.number(csa.header(ds), "B_value")


def _diffusion_item(group: Dataset | None) -> Dataset | None:
    items = group.get("MRDiffusionSequence") if group is not None else None
    return items[0] if items else None


def b_value(ds: Dataset) -> float | None:
    """The instance's b-value, looked up in the order of the module docstring; for an
    Enhanced MR image only a shared one (per-frame values: `frame_b_values`)."""
    value = first_number(ds.get("DiffusionBValue"))
    if value is not None:
        return value
    shared = _diffusion_item((ds.get("SharedFunctionalGroupsSequence") or [None])[0])
    if shared is not None:
        value = first_number(shared.get("DiffusionBValue"))
        if value is not None:
            return value
    try:
        value = _private_b_value(ds)
    except (TypeError, ValueError, AttributeError):
        value = None
    if value is not None:
        return value
    for keyword, pattern in (("SequenceName", r"b(\d+)"), ("ImageComments", r"b\s*=\s*(\d+)")):
        match = re.search(pattern, str(ds.get(keyword, "")), re.IGNORECASE)
        if match:
            return float(match.group(1))
    return None


def frame_b_values(ds: Dataset) -> tuple[FrameB, ...]:
    """Each frame's b-value and directionality from the per-frame MR Diffusion Sequence of an
    Enhanced MR image (PS3.3 C.8.13.5.9), the shared one standing in for frames without;
    empty when the image has no per-frame diffusion items."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if not any(_diffusion_item(group) is not None for group in per_frame):
        return ()
    shared = _diffusion_item((ds.get("SharedFunctionalGroupsSequence") or [None])[0])
    out = []
    for number, group in enumerate(per_frame, start=1):
        item = _diffusion_item(group) or shared
        value = first_number(item.get("DiffusionBValue")) if item is not None else None
        direction = str(item.get("DiffusionDirectionality", "") if item is not None else "")
        out.append(FrameB(number, value, direction.strip().upper()))
    return tuple(out)


def trace_frames(frames: tuple[FrameB, ...]) -> dict[float, tuple[int, ...]]:
    """Frame numbers per b-value, keeping at each b-value only the isotropic (trace) or
    non-directional frames when there are any, so that single-direction frames at the same
    positions do not stand beside the trace."""
    by_b: dict[float, list[FrameB]] = {}
    for frame in frames:
        if frame.b_value is not None:
            by_b.setdefault(frame.b_value, []).append(frame)
    out = {}
    for b, group in sorted(by_b.items()):
        trace = [f for f in group if f.directionality not in DIRECTIONAL]
        out[b] = tuple(f.frame_number for f in (trace or group))
    return out
