"""Files the node did not make: the DICOM files pydicom ships (its charset_files, written by
other toolkits in Arabic, French, German, Greek, Japanese (ISO 2022 IR 87 / 13), Hebrew,
Korean (ISO 2022 IR 149), Russian, UTF-8 and GB18030, and test_files CT/MR images, RLE and
JPEG 2000 among them), sent by DCMTK dcmsend to the node: each is stored with its names in
their own character set and its pixels unchanged, and indexed. Two of the files are CR objects
without Pixel Data: the node stores them as received (the pipelines then say they cannot be
read), as a store-and-forward SCP does."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicom_node.index.store import IndexStore
from tests.support.peers.dcmtk import run

DATA = Path(pydicom.__file__).parent / "data"
# every charset file that is a storable object (the two chrSQEncoding files have no SOP class)
CHARSET_IMAGES = sorted(p for p in (DATA / "charset_files").glob("chr*.dcm")
                        if "SOPClassUID" in pydicom.dcmread(p, stop_before_pixels=True))
IMAGES = [DATA / "test_files" / name for name in (
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm")]


def test_the_shipped_files_are_real() -> None:
    # the charset images come from other toolkits: a dozen character sets, Japanese included
    charsets = {str(pydicom.dcmread(p).get("SpecificCharacterSet")) for p in CHARSET_IMAGES}
    assert len(CHARSET_IMAGES) >= 14 and any("2022 IR 87" in c for c in charsets)


@pytest.mark.parametrize("path", CHARSET_IMAGES + IMAGES, ids=lambda p: p.name)
def test_each_real_image_is_stored_bit_exact_and_indexed(node_factory, path: Path) -> None:
    node = node_factory()
    # dcmsend proposes each file's own transfer syntax (RLE, JPEG 2000 included)
    sent = run(["dcmsend", "-v", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE", "127.0.0.1",
                str(node.server.port), str(path)])
    assert sent.returncode == 0, sent.stderr[-2000:]
    source = pydicom.dcmread(path)
    stored = IndexStore(node.engine).stored_instance(str(source.SOPInstanceUID))
    assert stored is not None, IndexStore(node.engine).failures()
    # what the sender's data set held, byte for byte (the file meta may differ)
    on_disk = pydicom.dcmread(stored.path)
    assert on_disk.get("PatientName") == source.get("PatientName")
    assert on_disk.get("SpecificCharacterSet") == source.get("SpecificCharacterSet")
    assert on_disk.get("PixelData") == source.get("PixelData")
