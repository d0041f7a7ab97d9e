"""A pipeline that records, when its job starts, whether highdicom's module attribute map is
already loaded in the process that runs it (loaded by the pipeline registry as
`tests.integration.workers.standard_tables_probe:Probe`)."""

from __future__ import annotations

import os
from pathlib import Path

from highdicom._standard_utils import get_module_attribute_map

from workers.messages import JobContext, PipelineResult
from workers.noop import NoopPipeline


class Probe(NoopPipeline):
    """The no-op pipeline, writing `tables.<pid>` into `record_dir` when a job starts: "loaded"
    or "absent" (the map's cache as the job finds it, before anything of the job encodes)."""

    def run(self, context: JobContext) -> PipelineResult:
        state = "loaded" if get_module_attribute_map.cache_info().currsize else "absent"
        record = self._record
        assert record is not None, "the probe needs record_dir"
        (record / f"tables.{os.getpid()}").write_text(state)
        return super().run(context)


def states(record: Path) -> dict[int, str]:
    """pid -> what the probe found, for every process that ran a probe job."""
    return {int(path.suffix[1:]): path.read_text() for path in record.glob("tables.*")}
