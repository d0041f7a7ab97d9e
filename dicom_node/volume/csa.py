"""Siemens CSA headers: the private per-image and per-series parameter blocks of Siemens MR.

Siemens classic MR images carry two private OB elements under the private creator
``SIEMENS CSA HEADER`` (PS3.5 7.8.1 private blocks): the image header at (0029,xx10) and the
series header at (0029,xx20). Their layout is Siemens' own (not part of DICOM) and is read the
way the open readers (nibabel, dcm2niix, GDCM) read it:

* CSA2: ``SV10`` + 4 bytes, then uint32 tag count and uint32 check (77); CSA1 has no ``SV10``
  prefix and starts with the tag count.
* each tag: name char[64] (NUL-terminated), VM int32, VR char[4], SyngoDT int32, item count
  int32, check int32 (77 or 205);
* each item: four int32 (in CSA2 the second is the item length; in CSA1 the first minus the
  first tag's item count), then that many bytes of text, padded to a multiple of 4.

All integers little endian. Values stay text (trailing NULs and blanks removed); `number` and
`numbers` convert them. A block that does not follow this layout is reported as absent, never
guessed at: the caller then falls back to the public attributes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset

CREATOR = "SIEMENS CSA HEADER"
IMAGE_HEADER_OFFSET = 0x10
SERIES_HEADER_OFFSET = 0x20
_CHECKS = (77, 205)
_MAX_TAGS = 1000
_MAX_ITEMS = 10000

CsaHeader = Mapping[str, tuple[str, ...]]
"""Tag name -> the text of its non-empty items."""


class CsaFormatError(ValueError):
    """The bytes do not follow the CSA1 / CSA2 layout."""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[tuple[Any, ...], int]:
    size = struct.calcsize(fmt)
    if offset + size > len(data):
        raise CsaFormatError("CSA header ends inside a field")
    return struct.unpack_from(fmt, data, offset), offset + size


def parse(data: bytes) -> dict[str, tuple[str, ...]]:
    """The tags of one CSA1 or CSA2 block, each with its non-empty item texts.

    Raises:
        CsaFormatError: the block is truncated or its counts and checks are implausible.
    """
    csa2 = data[:4] == b"SV10"
    (count, _check), offset = _unpack("<2I", data, 8 if csa2 else 0)
    if count < 1 or count > _MAX_TAGS:
        raise CsaFormatError(f"CSA header with {count} tags")
    out: dict[str, tuple[str, ...]] = {}
    first_items = 0
    for number in range(count):
        fields, offset = _unpack("<64si4s3i", data, offset)
        raw_name, _vm, _vr, _syngo_dt, items, check = fields
        if check not in _CHECKS or not 0 <= items <= _MAX_ITEMS:
            raise CsaFormatError(f"CSA tag {number}: implausible item count or check")
        if number == 0:
            first_items = items
        values: list[str] = []
        for _ in range(items):
            (x0, x1, _x2, _x3), offset = _unpack("<4i", data, offset)
            length = int(x1) if csa2 else int(x0) - first_items
            if length < 0 or offset + length > len(data):
                if csa2:
                    raise CsaFormatError(f"CSA tag {number}: item runs past the header")
                break  # CSA1 pads a tag with items of no length; the rest is unused
            text = data[offset:offset + length].split(b"\x00", 1)[0].decode("latin-1").strip()
            if text:
                values.append(text)
            offset += length + (-length % 4)
        name = bytes(raw_name).split(b"\x00", 1)[0].decode("latin-1")
        out[name] = tuple(values)
    return out


def header(ds: Dataset, element_offset: int = IMAGE_HEADER_OFFSET) -> dict[str, tuple[str, ...]]:
    """The CSA image header (or, with SERIES_HEADER_OFFSET, the series header) of `ds`;
    empty when the instance has none or it cannot be parsed."""
    try:
        block = ds.private_block(0x0029, CREATOR)
        element = ds.get(block.get_tag(element_offset))
    except (KeyError, ValueError):
        return {}
    if element is None or not isinstance(element.value, bytes | bytearray):
        return {}
    try:
        return parse(bytes(element.value))
    except CsaFormatError:
        return {}


def numbers(csa: CsaHeader, name: str) -> tuple[float, ...]:
    """The numeric items of tag `name` (empty when absent or not numbers)."""
    try:
        return tuple(float(v) for v in csa.get(name, ()))
    except ValueError:
        return ()


def number(csa: CsaHeader, name: str) -> float | None:
    """The first numeric item of tag `name`, or None."""
    values = numbers(csa, name)
    return values[0] if values else None
