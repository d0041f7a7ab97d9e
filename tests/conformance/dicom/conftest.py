"""Sample results of each kind, encoded and written to disk once per session for the validators."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicom_node import synth
from dicom_node.encode import (
    EncodeContext,
    EncodedOutputs,
    Finding,
    MaskFinding,
    NotAnalysed,
    Pipeline,
    codes,
    encode_outputs,
)
from dicom_node.encode.samples import (
    ct_head_case,
    fixed_clock,
    mr_stroke_case,
    radiograph_case,
    sample_algorithm,
)


@dataclass
class Scenario:
    name: str
    sources: list[Dataset]
    findings: list[Finding] | NotAnalysed
    ctx: EncodeContext
    outputs: EncodedOutputs
    folder: Path

    @property
    def source_paths(self) -> list[Path]:
        return sorted((self.folder / "src").glob("*.dcm"))

    def path(self, kind: str) -> Path:
        return self.folder / f"{kind}.dcm"

    @property
    def output_paths(self) -> list[Path]:
        return [self.path(k) for k in ("seg", "sr", "kos") if self.path(k).exists()]


def _context(sources: list[Dataset], pipeline: Pipeline) -> EncodeContext:
    algorithm = sample_algorithm(f"InferNode {pipeline.value}", "1.2.0", pipeline.value.encode())
    return EncodeContext.for_job(
        str(sources[0].StudyInstanceUID), pipeline, algorithm, fixed_clock()
    )


def _dx_mask_findings(source: Dataset) -> list[Finding]:
    mask = np.zeros((int(source.Rows), int(source.Columns)), dtype=bool)
    mask[12:40, 10:30] = True
    return [
        MaskFinding("fracture-region", codes.FRACTURE, codes.FRACTURE_MORPHOLOGY, codes.BONE,
                    mask, 0.2 * 0.2 * 1.0, probability=0.8)
    ]


def _build(name: str, root: Path) -> Scenario:
    if name == "ct_ich":
        case = ct_head_case()
        sources, pipeline = case.sources, Pipeline.ICH
        findings: list[Finding] | NotAnalysed = [*case.masks, *case.probabilities]
    elif name == "mr_stroke":
        case = mr_stroke_case()
        sources, pipeline, findings = case.sources, Pipeline.STROKE, list(case.masks)
    elif name == "dx_fracture":
        case = radiograph_case()
        sources, pipeline, findings = case.sources, Pipeline.FRACTURE, list(case.boxes)
    elif name == "dx_mask":
        case = radiograph_case()
        sources, pipeline = case.sources, Pipeline.FRACTURE
        findings = _dx_mask_findings(case.sources[0])
    elif name == "ct_negative":
        case = ct_head_case()
        sources, pipeline = case.sources, Pipeline.ICH
        findings = [f for f in case.probabilities if not f.positive]
    elif name == "dx_negative":
        sources, pipeline, findings = radiograph_case().sources, Pipeline.FRACTURE, []
    elif name == "ct_not_analysed":
        sources, pipeline = ct_head_case().sources, Pipeline.ICH
        findings = NotAnalysed("no axial non-contrast series in the study")
    else:  # pragma: no cover - test wiring
        raise KeyError(name)
    ctx = _context(sources, pipeline)
    outputs = encode_outputs(sources, findings, ctx)
    folder = root / name
    synth.write_series(sources, str(folder / "src"))
    for kind, ds in (("seg", outputs.seg), ("sr", outputs.sr), ("kos", outputs.kos)):
        if ds is not None:
            ds.save_as(folder / f"{kind}.dcm", enforce_file_format=True)
    return Scenario(name, sources, findings, ctx, outputs, folder)


SCENARIOS = (  # keep in step with test_dicom_validators.SCENARIOS
    "ct_ich", "mr_stroke", "dx_fracture", "dx_mask", "ct_negative", "dx_negative",
    "ct_not_analysed",
)


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    root = tmp_path_factory.mktemp("encoded")
    return {name: _build(name, root) for name in SCENARIOS}


class Validators:
    """dicom3tools, run as processes; their text reports are what the tests judge."""

    def run(self, *args: str | Path) -> str:
        """stdout and stderr together (the tools report on stderr, and their exit status
        differs between versions)."""
        if shutil.which(str(args[0])) is None:
            pytest.fail(f"{args[0]} is not installed (Debian package dicom3tools)")
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    @staticmethod
    def errors(report: str) -> list[str]:
        """The lines that fail the gate of STANDARDS.md: those starting "Error"."""
        return [line for line in report.splitlines() if line.startswith("Error")]


@pytest.fixture(scope="session")
def validators() -> Validators:
    return Validators()
