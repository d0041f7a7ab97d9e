"""The Storage and Verification SCP against DCMTK's echoscu/storescu (real peers)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from tests.support.peers.dcmtk import ct_series, dataset_bytes, echoscu, run, storescu


def _stored_paths(node) -> dict[str, Path]:
    with node.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT sop_instance_uid, path FROM instances").all()
    return {r[0]: Path(r[1]) for r in rows}


def test_echo_succeeds(node_factory):
    node = node_factory()
    result = echoscu(node.server.port)
    assert result.returncode == 0, result.stderr
    out = result.stderr + result.stdout
    assert "Received Echo Response" in out and "Success" in out


@pytest.mark.parametrize("layer", ["native", "pynetdicom"])
def test_uncompressed_series_is_stored_bit_exact_and_indexed(node_factory, tmp_path, layer):
    node = node_factory(upper_layer=layer)
    files = ct_series(tmp_path / "src")
    result = storescu(node.server.port, files)
    assert result.returncode == 0, result.stderr
    stored = _stored_paths(node)
    assert len(stored) == len(files)
    for f in files:
        sop = pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(stored[sop]) == dataset_bytes(f)
    with node.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT modality, body_part_examined, instance_count, calling_ae FROM series"
        ).one()
    assert tuple(row) == ("CT", "HEAD", len(files), "INFERNODE_SCU")


def _compressed(kind: str, src: Path, dst: Path) -> None:
    if kind == "j2k":
        ds = pydicom.dcmread(src)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(dst, enforce_file_format=True)
        return
    tool = {
        "jpeg-lossless": ["dcmcjpeg"],
        "jpeg-baseline": ["dcmcjpeg", "+eb"],
        "jpeg-ls": ["dcmcjpls"],
        "rle": ["dcmcrle"],
        "deflated": ["dcmconv", "+td"],
        "implicit": ["dcmconv", "+ti"],
    }[kind]
    result = run([*tool, str(src), str(dst)])
    assert result.returncode == 0, result.stderr


# storescu proposes only uncompressed syntaxes unless told; each flag proposes the file's own.
STORESCU_FLAG = {
    "jpeg-lossless": "-xs",
    "jpeg-baseline": "-xy",
    "jpeg-ls": "-xt",
    "rle": "",
    "deflated": "-xd",
    "implicit": "-xi",
    "j2k": "-xv",
}

EXPECTED_TS = {
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "rle": "1.2.840.10008.1.2.5",
    "deflated": "1.2.840.10008.1.2.1.99",
    "implicit": "1.2.840.10008.1.2",
    "j2k": "1.2.840.10008.1.2.4.90",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_TS))
def test_transfer_syntax_is_kept_as_received(node_factory, tmp_path, kind):
    node = node_factory()
    src = ct_series(tmp_path / "src", slices=2, size=32)
    if kind == "jpeg-baseline":
        # Baseline JPEG is 8-bit: make an 8-bit source as a modality would.
        ds = pydicom.dcmread(src[0])
        pixels = ds.pixel_array
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = (pixels.astype("uint16") % 256).astype("uint8").tobytes()
        ds.save_as(src[0])
    target = tmp_path / f"{kind}.dcm"
    _compressed(kind, src[0], target)
    sent_ts = str(pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    assert sent_ts == EXPECTED_TS[kind]
    if STORESCU_FLAG[kind]:
        result = storescu(node.server.port, [target], extra=[STORESCU_FLAG[kind]])
    else:
        # storescu cannot propose RLE; dcmsend proposes each file's own transfer syntax.
        result = run(["dcmsend", "-v", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                      "127.0.0.1", str(node.server.port), str(target)])
    assert result.returncode == 0, result.stderr
    stored = _stored_paths(node)
    assert len(stored) == 1
    path = next(iter(stored.values()))
    stored_meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    assert str(stored_meta.TransferSyntaxUID) == sent_ts
    if kind != "deflated":
        assert dataset_bytes(path) == dataset_bytes(target)
    else:
        # Deflate is applied on the wire; the data set must decode to the same elements.
        assert pydicom.dcmread(path) == pydicom.dcmread(target)
    with node.engine.connect() as conn:
        (ts,) = conn.exec_driver_sql("SELECT transfer_syntax_uid FROM instances").one()
    assert ts == sent_ts


@pytest.mark.parametrize(
    ("calling", "called", "peers", "message", "label"),
    [
        ("STRANGER", "INFERNODE", None, "Calling AE Title Not Recognized", "calling_ae"),
        ("INFERNODE_SCU", "WRONGNODE", None, "Called AE Title Not Recognized", "called_ae"),
        # The address may connect (another peer uses it), but not as this AE title.
        ("INFERNODE_SCU", "INFERNODE", [{"ae_title": "INFERNODE_SCU", "hosts": ["10.9.9.0/24"]},
                                        {"ae_title": "OTHER_SCU", "hosts": ["127.0.0.1"]}],
         "Calling AE Title Not Recognized", "source_address"),
    ],
)
@pytest.mark.parametrize("layer", ["native", "pynetdicom"])
def test_unknown_peers_are_rejected_with_the_right_reason(
    node_factory, calling, called, peers, message, label, layer
):
    node = node_factory(upper_layer=layer, **({"peers": peers} if peers else {}))
    result = echoscu(node.server.port, calling=calling, called=called)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Association Rejected" in out
    assert "Rejected Permanent" in out
    assert message in out
    sample = node.registry.get_sample_value(
        "infernode_association_rejections_total", {"reason": label}
    )
    assert sample == 1.0


@pytest.mark.parametrize("layer", ["native", "pynetdicom"])
def test_beyond_the_association_limit_the_reject_is_transient(node_factory, layer):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    node = node_factory(max_associations=1, upper_layer=layer)
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE")
    assert held.is_established
    try:
        result = echoscu(node.server.port)
        out = result.stdout + result.stderr
        assert result.returncode != 0
        assert "Rejected Transient" in out
        assert "Local Limit Exceeded" in out
    finally:
        held.release()
    assert echoscu(node.server.port).returncode == 0
