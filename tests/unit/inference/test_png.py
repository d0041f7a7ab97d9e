import struct
import zlib

import numpy as np
import pytest

from inference.explain.png import encode_png, overlay_png


def _decode(png: bytes) -> tuple[int, int, int, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, b"", None
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    w, h, _depth, color = hdr[:4]
    return w, h, color, zlib.decompress(idat)


def test_grey_round_trip():
    img = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)
    w, h, color, raw = _decode(encode_png(img))
    assert (w, h, color) == (4, 3, 0)
    rows = [raw[i * 5 + 1:(i + 1) * 5] for i in range(3)]
    assert np.array_equal(np.frombuffer(b"".join(rows), np.uint8).reshape(3, 4), img)


def test_overlay_is_rgb_and_red_where_hot():
    hu = np.full((8, 8), 40.0)
    heat = np.zeros((8, 8))
    heat[2, 3] = 1.0
    w, h, color, raw = _decode(overlay_png(hu, heat))
    assert (w, h, color) == (8, 8, 2)
    px = np.frombuffer(raw, np.uint8).reshape(8, 1 + 24)[:, 1:].reshape(8, 8, 3)
    assert px[0, 0].tolist() == [128, 128, 128]
    assert px[2, 3, 0] > px[2, 3, 2]


def test_rejects_wrong_dtype():
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2), dtype=np.float32))
