"""An acceptor process (`infernode.acceptor`, started with multiprocessing "spawn") imports only
what receiving needs: not highdicom (the encoders, imported by `dicom_node.encode` on first use)
nor the web stack (STOW-RS's audited service lives in `infernode.audit_stow`). Each of them
costs every acceptor process memory (docs/BENCHMARKS.md round 7)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_an_acceptor_process_loads_neither_highdicom_nor_the_web_stack():
    probe = ("import json, sys; import infernode.acceptor; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    loaded = set(json.loads(result.stdout))
    assert "infernode" in loaded and "pydicom" in loaded  # the probe imported the module
    assert loaded.isdisjoint({"highdicom", "fastapi", "starlette", "uvicorn"}), (
        sorted(loaded & {"highdicom", "fastapi", "starlette", "uvicorn"}))


def test_the_encoders_are_still_there_when_asked_for():
    from dicom_node import encode
    from dicom_node.encode.outputs import encode_outputs

    assert encode.encode_outputs is encode_outputs
    assert "encode_seg" in encode.__all__ and callable(encode.encode_seg)
