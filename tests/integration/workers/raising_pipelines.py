"""Pipelines that fail on purpose, for the not-analysed tests (loaded by the node's pipeline
registry as `tests.integration.workers.raising_pipelines:NAME`)."""

from __future__ import annotations

import errno

from workers.messages import JobContext, PipelineResult
from workers.pipelines.unavailable import NoModelPipeline

QUOTED_VALUE = "Smith^Johnathan"
"""A patient-name-like value quoted by the exception, as library exceptions quote the data."""


class HeaderQuirk(NoModelPipeline):
    """Fails the way a blind header read does: the same way every time."""

    def run(self, context: JobContext) -> PipelineResult:
        raise AttributeError(f"'FileDataset' object has no attribute 'PatientBirthDate' "
                             f"(PatientName {QUOTED_VALUE})")


class DiskHiccup(NoModelPipeline):
    """Fails the way a shared spool mount going away does: worth retrying."""

    def run(self, context: JobContext) -> PipelineResult:
        raise OSError(errno.EIO, f"I/O error reading {QUOTED_VALUE}")
