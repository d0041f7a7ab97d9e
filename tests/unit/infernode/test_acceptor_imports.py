"""An acceptor process (`infernode.acceptor`, started with multiprocessing "spawn") imports only
what receiving needs: not highdicom (the encoders, imported by `dicom_node.encode` on first use),
nor the web stack (STOW-RS's audited service lives in `infernode.audit_stow`), nor Alembic
(`infernode.db` imports it to migrate), nor pydicom's SR code dictionary (`dicom_node.encode.codes`
writes its concepts out). Each of them costs every acceptor process memory (docs/BENCHMARKS.md
rounds 7 and 8)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_an_acceptor_process_loads_no_encoder_web_or_migration_stack():
    probe = ("import json, sys; import infernode.acceptor; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}"
             " | {m for m in sys.modules if m.startswith('pydicom.sr')})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    loaded = set(json.loads(result.stdout))
    assert "infernode" in loaded and "pydicom" in loaded  # the probe imported the module
    unwanted = {"highdicom", "fastapi", "starlette", "uvicorn", "alembic", "mako",
                "pydicom.sr.codedict"}
    assert loaded.isdisjoint(unwanted), sorted(loaded & unwanted)


def test_the_encoders_are_still_there_when_asked_for():
    from dicom_node import encode
    from dicom_node.encode.outputs import encode_outputs

    assert encode.encode_outputs is encode_outputs
    assert "encode_seg" in encode.__all__ and callable(encode.encode_seg)
