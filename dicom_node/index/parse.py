"""Reads a received instance far enough to trust it, before anything is written.

Three steps over the received bytes (File Meta Information + data set, PS3.10 7.1):

1. the File Meta group is split off (PS3.10 7.1, always Explicit VR Little Endian);
2. the whole data set is walked once, element headers only, values never decoded: every declared
   length must fit the bytes received (PS3.5 7.1), every VR must be a PS3.5 6.2 VR, sequences and
   items must be delimited (PS3.5 7.5), nesting is bounded, no File Meta element may appear in the
   data set (PS3.10 7.1), encapsulated Pixel Data must be a fragment sequence (PS3.5 A.4) and a
   deflated data set must inflate (PS3.5 A.5);
3. the elements before Pixel Data (the header) become a pydicom data set of undecoded elements
   at the positions the walk found (not read a second time); values the receive path needs are
   read straight from their bytes when no decoding could change them (`plain_text`,
   `plain_int`), by pydicom otherwise; native Pixel Data is checked to be at least Rows x
   Columns x Samples x Bits Allocated / 8 x Frames (PS3.5 8.1.1).

Pixel values are never decoded. The content hash (`content_sha256`) covers the Pixel Data value as
received (the whole data set for objects without pixels), so a duplicate can be compared without
decoding; it is computed only when a repeated SOP Instance UID is compared, not on receipt.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
import tempfile
import zlib
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Final, Literal, cast

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_node.buffers import Received
from dicom_node.errors import (
    CannotUnderstand,
    MalformedDataSet,
    OutOfResources,
    PixelDataTooShort,
    TruncatedDataSet,
)

MAX_DEPTH = 32
"""Deepest sequence nesting accepted; real objects stay far below (a guard against stack abuse)."""
MAX_INFLATED_BYTES = 2 * 1024**3
"""A deflated data set that inflates beyond this is refused (a guard against deflate bombs)."""
INFLATE_IN_MEMORY_BYTES = 8 * 1024**2
"""A deflated data set inflating beyond this is inflated into a scratch file (`_inflate`)."""
INFLATE_STEP = 1024**2
"""How much a deflated data set is inflated at a time (here and in the receive path's check)."""
INFLATE_INPUT_STEP = 64 * 1024
"""How much of a deflate stream is fed to the inflater at a time (`inflated`)."""
_scratch: Path | None = None

PARSE_ERRORS: tuple[type[Exception], ...] = (
    InvalidDicomError, ValueError, KeyError, TypeError, IndexError, EOFError, struct.error,
    NotImplementedError, OverflowError, RecursionError, zlib.error, UnicodeError, LookupError,
)
"""What decoding damaged bytes can raise; every one means 0xC000 Cannot Understand."""

_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# Float / Double Float / Pixel Data (PS3.6 group 7FE0) and their fixed bits per sample.
_PIXEL_TAGS: dict[int, int | None] = {0x7FE00008: 32, 0x7FE00009: 64, 0x7FE00010: None}
_NATIVE = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                     DeflatedExplicitVRLittleEndian})
_HALF_CHROMA = ("YBR_FULL_422", "YBR_PARTIAL_422")


@dataclass(frozen=True)
class ParsedInstance:
    """The header of a structurally sound data set."""

    dataset: Dataset
    """Every top-level element before the pixel data (values decoded on access)."""


@dataclass(frozen=True)
class _Pixels:
    tag: int
    header_at: int
    start: int
    end: int
    encapsulated: bool


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Walker:
    """Walks element headers of one data set held in `buf` (PS3.5 7.1, 7.5)."""

    def __init__(self, buf: Received, *, implicit: bool, little: bool) -> None:
        endian = "<" if little else ">"
        self.buf = buf
        self.implicit = implicit
        self.little = little
        self.tag = struct.Struct(endian + "HH")
        self.u16 = struct.Struct(endian + "H")
        self.u32 = struct.Struct(endian + "L")
        self.pixels: _Pixels | None = None
        self.header: list[tuple[int, bytes | None, int, int, int]] = []
        """Top-level elements before the pixel data: tag, VR (None: implicit), declared
        length, where the value starts and ends."""

    def dataset(self, pos: int, end: int, *, depth: int, top: bool, delimited: bool) -> int:
        """Walks elements from `pos`; returns the position after the data set (after its item
        delimiter when `delimited`). Raises TruncatedDataSet or MalformedDataSet."""
        buf, top_pixels = self.buf, top and self.pixels is None
        while pos < end:
            if pos + 8 > end:
                if top and not any(buf[pos:end]):
                    return end  # zero padding after the last element, as some writers leave
                raise TruncatedDataSet(f"element header cut short at byte {pos}")
            group, element = self.tag.unpack_from(buf, pos)
            tag = group << 16 | element
            if tag == _ITEM_END:
                if delimited:
                    return pos + 8
                raise MalformedDataSet("item delimiter outside an undefined-length item")
            if group == 0xFFFE:
                raise MalformedDataSet(f"item tag {_tag_text(tag)} outside a sequence")
            vr, length, header = self._element_header(pos, end, tag)
            if top and group == 0x0002:
                raise MalformedDataSet("File Meta element (0002,xxxx) inside the data set")
            start = pos + header
            is_pixels = top_pixels and tag in _PIXEL_TAGS
            if length == _UNDEFINED:
                if is_pixels:
                    pos = self._fragments(start, end)
                elif self._is_sequence(tag, vr, undefined=True):
                    pos = self.sequence(start, None, end, depth=depth + 1)
                else:
                    raise MalformedDataSet(f"undefined length on non-sequence {_tag_text(tag)}")
            else:
                value_end = start + length
                if value_end > end:
                    raise TruncatedDataSet(
                        f"{_tag_text(tag)} declares {length} bytes, {end - start} remain")
                if self._is_sequence(tag, vr, undefined=False):
                    self.sequence(start, value_end, value_end, depth=depth + 1)
                pos = value_end
            if is_pixels:
                self.pixels = _Pixels(tag, start - header, start, pos,
                                      encapsulated=length == _UNDEFINED)
                top_pixels = False
            elif top_pixels:
                self.header.append((tag, vr, length, start, pos))
        if delimited:
            raise TruncatedDataSet("an undefined-length item ends without its delimiter")
        return pos

    def _element_header(self, pos: int, end: int, tag: int) -> tuple[bytes | None, int, int]:
        if self.implicit:
            return None, self.u32.unpack_from(self.buf, pos + 4)[0], 8
        vr = self.buf[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise TruncatedDataSet(f"element header cut short at byte {pos}")
            return vr, self.u32.unpack_from(self.buf, pos + 8)[0], 12
        if vr in _SHORT_VRS:
            return vr, self.u16.unpack_from(self.buf, pos + 6)[0], 8
        raise MalformedDataSet(f"unknown VR in {_tag_text(tag)}")

    @staticmethod
    def _is_sequence(tag: int, vr: bytes | None, *, undefined: bool) -> bool:
        if vr is not None:
            # Explicit VR: SQ, or UN of undefined length (PS3.5 6.2.2).
            return vr == b"SQ" or (undefined and vr == b"UN")
        if undefined:
            return True  # Implicit VR: only a sequence may have an undefined length here.
        try:
            return bool(dictionary_VR(tag) == "SQ")
        except KeyError:
            return False  # a private element of defined length is opaque

    def sequence(self, pos: int, value_end: int | None, end: int, *, depth: int) -> int:
        """Walks the items of a sequence (PS3.5 7.5); `value_end` None: undefined length."""
        if depth > MAX_DEPTH:
            raise MalformedDataSet(f"sequences nested deeper than {MAX_DEPTH}")
        limit = end if value_end is None else value_end
        while pos < limit:
            if pos + 8 > limit:
                raise TruncatedDataSet(f"item header cut short at byte {pos}")
            group, element = self.tag.unpack_from(self.buf, pos)
            tag, length = group << 16 | element, self.u32.unpack_from(self.buf, pos + 4)[0]
            if tag == _SEQ_END and value_end is None:
                return pos + 8
            if tag != _ITEM:
                raise MalformedDataSet(f"{_tag_text(tag)} where a sequence item was expected")
            if length == _UNDEFINED:
                pos = self.dataset(pos + 8, limit, depth=depth, top=False, delimited=True)
                continue
            item_end = pos + 8 + length
            if item_end > limit:
                raise TruncatedDataSet(f"an item declares {length} bytes, {limit - pos - 8} remain")
            self.dataset(pos + 8, item_end, depth=depth, top=False, delimited=False)
            pos = item_end
        if value_end is None:
            raise TruncatedDataSet("a sequence ends without its delimiter")
        return pos

    def _fragments(self, pos: int, end: int) -> int:
        """Encapsulated Pixel Data: items of defined length, then a delimiter (PS3.5 A.4)."""
        while True:
            if pos + 8 > end:
                raise TruncatedDataSet("encapsulated Pixel Data ends without its delimiter")
            group, element = self.tag.unpack_from(self.buf, pos)
            tag, length = group << 16 | element, self.u32.unpack_from(self.buf, pos + 4)[0]
            if tag == _SEQ_END:
                return pos + 8
            if tag != _ITEM or length == _UNDEFINED:
                raise MalformedDataSet("encapsulated Pixel Data holds something else than items")
            if pos + 8 + length > end:
                raise TruncatedDataSet(
                    f"a Pixel Data fragment declares {length} bytes, {end - pos - 8} remain")
            pos += 8 + length


def read_file_meta(raw: Received) -> tuple[Dataset, int]:
    """The File Meta Information of a Part 10 stream and the offset of its data set.

    Raises MalformedDataSet without the "DICM" prefix, TruncatedDataSet when cut short.
    """
    pos = _file_meta_end(raw)
    try:
        meta = read_dataset(BytesIO(raw[132:pos]), is_implicit_VR=False, is_little_endian=True)
    except PARSE_ERRORS as exc:
        raise MalformedDataSet(f"File Meta cannot be parsed: {type(exc).__name__}") from exc
    return meta, pos


def _file_meta_end(raw: Received) -> int:
    """The offset of the data set after the File Meta Information, whose element headers are
    checked to fit (its values are not read: the receive path needs only where it ends)."""
    if len(raw) < 132 or raw[128:132] != b"DICM":
        raise MalformedDataSet("no DICOM File Meta Information (PS3.10 7.1)")
    walker = _Walker(raw, implicit=False, little=True)
    pos, end = 132, len(raw)
    if raw[132:140] == b"\x02\x00\x00\x00UL\x04\x00" and len(raw) >= 144:
        # File Meta Information Group Length (Type 1) delimits the group: a group 0002 element
        # after it belongs to the data set, where it is refused.
        end = 144 + walker.u32.unpack_from(raw, 140)[0]
        if end > len(raw):
            raise TruncatedDataSet("File Meta Information cut short")
    while pos + 8 <= end and walker.u16.unpack_from(raw, pos)[0] == 0x0002:
        group, element = walker.tag.unpack_from(raw, pos)
        _, length, header = walker._element_header(pos, end, group << 16 | element)
        if pos + header + length > end:
            raise TruncatedDataSet("File Meta Information cut short")
        pos += header + length
    return pos


def use_scratch_folder(folder: Path | None) -> None:
    """Where a deflated data set larger than `INFLATE_IN_MEMORY_BYTES` is inflated (an unlinked
    file; the ingestor names its spool's `.tmp/`). None: the system's temporary folder."""
    global _scratch
    _scratch = folder


def inflated(data: Received, offset: int = 0) -> Generator[bytes, None, None]:
    """The inflation of the raw deflate stream `data[offset:]` (a Deflated Explicit VR Little
    Endian data set, PS3.5 A.5), at most INFLATE_STEP bytes at a time. The input is fed in
    pieces of INFLATE_INPUT_STEP read through a view (neither it nor its rest is ever copied
    whole). Raises TruncatedDataSet when the input ends before the stream does, zlib.error
    when it does not inflate; what follows the stream's end is ignored."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with memoryview(data) as view:
        pending: bytes | memoryview = b""
        try:
            for at in range(offset, len(view), INFLATE_INPUT_STEP):
                pending = view[at:at + INFLATE_INPUT_STEP]
                while pending and not inflater.eof:
                    chunk = inflater.decompress(pending, INFLATE_STEP)
                    pending = inflater.unconsumed_tail
                    if chunk:
                        yield chunk
                if inflater.eof:
                    return
        finally:
            pending = b""  # no view of `data` outlives this (its mapping may be closed next)
    while not inflater.eof:  # output zlib still holds once every input byte went in
        chunk = inflater.decompress(b"", INFLATE_STEP)
        if not chunk:
            raise TruncatedDataSet("deflated data set ends before its deflate stream does")
        yield chunk


def _inflate(data: Received, offset: int) -> Received:
    """Inflates the deflated data set `data[offset:]`. Up to `INFLATE_IN_MEMORY_BYTES` it stays
    in memory; beyond, it goes to an unlinked file in the scratch folder, mapped read-only, so
    that memory holds at most that much per data set whatever it inflates to (the page cache
    holds the rest, which the kernel can reclaim). The receive path checked the inflated size
    against `max_inflated_bytes` before (`dicom_node.ingest.check_inflated_size`);
    `MAX_INFLATED_BYTES` bounds any caller."""
    chunks: list[bytes] = []
    held = total = 0
    spill: BinaryIO | None = None
    try:
        with closing(inflated(data, offset)) as pieces:  # its view of `data` ends here
            for chunk in pieces:
                total += len(chunk)
                if total > MAX_INFLATED_BYTES:
                    raise MalformedDataSet("deflated data set inflates beyond the size limit")
                if spill is None and held + len(chunk) > INFLATE_IN_MEMORY_BYTES:
                    spill = _scratch_file()
                    spill.writelines(chunks)
                    chunks.clear()
                if spill is not None:
                    spill.write(chunk)
                else:
                    chunks.append(chunk)
                    held += len(chunk)
        if spill is None:
            return b"".join(chunks)
        spill.flush()
        return mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ)
    except zlib.error as exc:
        raise MalformedDataSet("deflated data set cannot be inflated") from exc
    except OSError as exc:
        raise OutOfResources(
            f"no room to inflate a deflated data set: {exc.strerror or type(exc).__name__}"
        ) from exc
    finally:
        if spill is not None:
            spill.close()  # unlinked already; the mapping keeps its pages while it is used


def _scratch_file() -> BinaryIO:
    if _scratch is not None:
        try:
            return tempfile.TemporaryFile(dir=_scratch)
        except OSError:
            pass  # the folder is gone or full: the system's temporary folder
    return tempfile.TemporaryFile()


def parse_instance(raw: Received, transfer_syntax: str) -> ParsedInstance:
    """Validates the structure of `raw` (File Meta + data set in `transfer_syntax`) and parses
    its header. Raises TruncatedDataSet, MalformedDataSet, PixelDataTooShort or CannotUnderstand.
    """
    walker, buf, start = _walk(raw, transfer_syntax)
    try:
        ds = _header_dataset(walker, buf, start)
    except PARSE_ERRORS as exc:
        raise CannotUnderstand(f"data set cannot be parsed: {type(exc).__name__}") from exc
    if walker.pixels is not None:
        _check_pixels(ds, walker.pixels, native=transfer_syntax in _NATIVE)
    return ParsedInstance(dataset=ds)


def _header_dataset(walker: _Walker, buf: Received, start: int) -> Dataset:
    """The header (the top-level elements before the pixel data) as a pydicom data set of
    undecoded elements, from the positions the walker found: what pydicom's own reader
    (`read_dataset`) makes of the same bytes once the walker has accepted them, without
    reading them a second time. Values are decoded by pydicom on access, as before."""
    implicit, little = walker.implicit, walker.little
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag, vr, length, value_start, value_end in walker.header:
        name = None if vr is None else vr.decode("ascii")
        value = (buf[value_start:value_end] if length
                 else cast(bytes | None, empty_value_for_VR(name, raw=True)))
        key = BaseTag(tag)
        elements[key] = RawDataElement(key, name, length, value, value_start - start,
                                       implicit, little)
    return Dataset(elements)


def content_sha256(raw: Received, transfer_syntax: str) -> str:
    """SHA-256 (hex) of the Pixel Data value of `raw` (File Meta + data set in
    `transfer_syntax`) as it is encoded, or of the whole data set when it has no pixels: equal
    for two copies of an instance whose pixel data are byte for byte the same in the same
    transfer syntax, whatever their headers. Raises what `parse_instance` raises for a damaged
    structure."""
    walker, buf, start = _walk(raw, transfer_syntax)
    pixels = walker.pixels
    view = memoryview(buf)
    value = view[start:] if pixels is None else view[pixels.start:pixels.end]
    return hashlib.sha256(value).hexdigest()


def _walk(raw: Received, transfer_syntax: str) -> tuple[_Walker, Received, int]:
    """Walks the data set of `raw` (inflated first when deflated): the walker (which found the
    pixel data), the walked buffer and where the data set starts in it."""
    offset = _file_meta_end(raw)
    buf, start = raw, offset
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        buf, start = _inflate(raw, offset), 0
    walker = _Walker(buf, implicit=transfer_syntax == ImplicitVRLittleEndian,
                     little=transfer_syntax != ExplicitVRBigEndian)
    walker.dataset(start, len(buf), depth=0, top=True, delimited=False)
    return walker, buf, start


NOT_PLAIN: Final = False
"""What `plain_text` and `plain_int` answer when pydicom must decode the value."""

_TAGS: dict[str, tuple[int, str]] = {}
_DIGITS = re.compile(r"^ *[+-]?[0-9]+ *$")


def _tag_vr(keyword: str) -> tuple[int, str]:
    known = _TAGS.get(keyword)
    if known is None:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        known = _TAGS[keyword] = (tag, dictionary_VR(tag))
    return known


def _undecoded(ds: Dataset, keyword: str) -> RawDataElement | None | Literal[False]:
    """The element of `keyword` as read and not yet decoded, encoded in its dictionary VR
    (implicitly, or explicitly with that VR); None when absent; NOT_PLAIN otherwise."""
    tag, vr = _tag_vr(keyword)
    element = ds.get_item(tag)
    if element is None:
        return None
    if (not isinstance(element, RawDataElement) or element.VR not in (None, vr)
            or not isinstance(element.value, bytes)):
        return NOT_PLAIN
    return element


def plain_text(ds: Dataset, keyword: str, *,
               multi: bool = False) -> str | None | Literal[False]:
    """The value of a string element read straight from its bytes when they are ASCII without
    escape sequences and, unless `multi` (the caller splits the values at each backslash),
    without a value delimiter: then every character set of PS3.3 C.12.1.1.2 decodes them the
    same, and pydicom's own decoding (its conversion per VR and character set, about 10 us per
    element) would give the same text, up to the padding it strips. None when absent;
    NOT_PLAIN when pydicom must decode it."""
    element = _undecoded(ds, keyword)
    if not element:
        return element
    value = cast(bytes, element.value)  # bytes, checked in `_undecoded`
    if not value.isascii() or b"\x1b" in value or (not multi and b"\\" in value):
        return NOT_PLAIN
    return value.decode("ascii")


def plain_int(ds: Dataset, keyword: str) -> int | None | Literal[False]:
    """The value of a US element (two bytes) or of an IS element of plain digits, read straight
    from its bytes: what pydicom's conversion gives. None when absent; NOT_PLAIN otherwise."""
    element = _undecoded(ds, keyword)
    if not element:
        return element
    value = cast(bytes, element.value)
    vr = _tag_vr(keyword)[1]
    if vr == "US" and len(value) == 2:
        return int.from_bytes(value, "little" if element.is_little_endian else "big")
    if vr == "IS" and value.isascii() and _DIGITS.match(text := value.decode("ascii")):
        return int(text)
    return NOT_PLAIN


def _int(ds: Dataset, keyword: str) -> int | None:
    plain = plain_int(ds, keyword)
    if plain is not NOT_PLAIN:
        return plain
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except PARSE_ERRORS:
        return None


def _photometric(ds: Dataset) -> str:
    plain = plain_text(ds, "PhotometricInterpretation")
    if plain is not NOT_PLAIN and (plain is None or "\0" not in plain):
        return (plain or "").strip()
    try:
        return str(ds.get("PhotometricInterpretation", "")).strip()
    except PARSE_ERRORS:
        return ""


def _check_pixels(ds: Dataset, pixels: _Pixels, *, native: bool) -> None:
    if pixels.encapsulated != (not native) and pixels.tag == 0x7FE00010:
        form = "encapsulated" if pixels.encapsulated else "native"
        raise MalformedDataSet(f"{form} Pixel Data does not fit the transfer syntax (PS3.5 A.4)")
    if pixels.encapsulated:
        return
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    bits = _PIXEL_TAGS[pixels.tag] or _int(ds, "BitsAllocated")
    if not rows or not columns or not bits:
        raise PixelDataTooShort("Pixel Data without readable Rows, Columns, Bits Allocated")
    samples = _int(ds, "SamplesPerPixel") or 1
    photometric = _photometric(ds) if samples == 3 else ""
    if samples == 3 and photometric in _HALF_CHROMA:
        samples = 2  # two chroma samples shared by each pair of pixels (PS3.3 C.7.6.3.1.2)
    frames = max(_int(ds, "NumberOfFrames") or 1, 1)
    expected = (rows * columns * samples * frames * bits + 7) // 8
    length = pixels.end - pixels.start
    if length < expected:
        raise PixelDataTooShort(f"Pixel Data has {length} bytes, {expected} expected")
