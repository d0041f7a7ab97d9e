"""The no-op pipeline: runs without a model, for wiring, tests and the queue benchmark.

Options (all optional), so a test can make it slow or failing without another pipeline class:
`model_version`, `sleep_s` (pretend to compute), `fail` (`transient` / `permanent`: always raise),
`fail_flag` (a path: fail transiently while that file exists, to test replay after a fix),
`record_dir` (append `loads.log` on construction, write `<job>.<attempt>.started` with the pid on
start and append the job id to `finished.log` on success: evidence of what ran, where, how often).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from workers.errors import PermanentError, TransientError
from workers.messages import JobContext, OutputRef, PipelineResult

_NOOP_ROOT = "2.25."


class NoopPipeline:
    """A pipeline with no model. Its single 'output' has a UID derived from the job key."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        self.name = str(options.get("name", "noop"))
        self.model_version = str(options.get("model_version", "noop-1"))
        self.device = device
        self._sleep_s = float(options.get("sleep_s", 0.0))
        self._fail = options.get("fail")
        if self._fail not in (None, "transient", "permanent"):
            raise PermanentError(f"noop option fail={self._fail!r} is not transient/permanent")
        flag = options.get("fail_flag")
        self._fail_flag = Path(flag) if flag else None
        record = options.get("record_dir")
        self._record = Path(record) if record else None
        if self._record is not None:
            self._record.mkdir(parents=True, exist_ok=True)
            _append(self._record / "loads.log", f"{os.getpid()}\n")

    def run(self, context: JobContext) -> PipelineResult:
        if self._record is not None:
            started = self._record / f"{context.job_id}.{context.attempt}.started"
            started.write_text(f"{os.getpid()}\n")
        if self._sleep_s:
            time.sleep(self._sleep_s)
        if self._fail == "transient" or (self._fail_flag and self._fail_flag.exists()):
            raise TransientError("noop pipeline configured to fail (transient)")
        if self._fail == "permanent":
            raise PermanentError("noop pipeline configured to fail (permanent)")
        if self._record is not None:
            _append(self._record / "finished.log", f"{context.job_id}\n")
        uid = context.output_uid(_NOOP_ROOT, "noop")
        return PipelineResult(outputs=(OutputRef(kind="none", uid=uid),),
                              summary={"series": len(context.series), "device": self.device})


def _append(path: Path, line: str) -> None:
    # O_APPEND writes of one short line are atomic, so concurrent workers do not interleave
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
